"""What every bridge command shares: the event channel, the command reader, errors and exit codes.

A command is a function ``run(ctx, job) -> Done`` over its job dataclass (``protocol.jobs``), and
:func:`main` is its whole command line: the job from a file (``--job FILE`` or a positional FILE) or
from stdin (``--job -``: the first line under ``--ipc``, else all of stdin), then flags named after
the job's fields; any bad job becomes an Error event and exit code 2. :func:`run_command` claims stdout for events
(or, at a terminal, prints readable progress to stderr instead), starts the stdin command reader,
turns a :class:`~.protocol.BridgeError` into an Error event plus its exit code, and any other
exception into an ``internal`` error with the traceback.

SIGTERM, SIGINT and SIGHUP ask for a stop, exactly like the ``stop`` command: a training run saves its
checkpoint and splats and ends with ``Done(status="stopped")``. A second signal of either kind ends
the run at once (files are written atomically, so the last complete ones survive).
"""
from __future__ import annotations

import argparse
import errno
import os
import platform
import signal
import sys
import threading
import traceback
from collections.abc import Callable

from . import __version__, protocol
from .protocol import EXIT_BAD_INPUT, MAX_JOB_BYTES, BridgeError, CommandReader, Done, Event, EventWriter, clip
from .protocol.flags import add_job_flags
from .protocol.jobs import Job, job_from_dict, parse_job_text


class RunContext:
    def __init__(self, command: str, events: EventWriter, commands: CommandReader, human: bool):
        self.command = command
        self.events = events
        self.commands = commands
        self.human = human  # print readable progress to stderr
        self._signals = 0

    def emit(self, event: Event) -> None:
        self.events.emit(event)
        if self.human:
            line = _human_line(event)
            if line:
                print(line, file=sys.stderr, flush=True)

    def claim_signals(self) -> None:
        """Make the first SIGTERM/SIGINT ask for a stop, and a second one raise KeyboardInterrupt.

        Called at start, and again by a command once it has imported pycolmap: glog installs its own
        SIGTERM handler then (a stack trace, then death), replacing this one. (pycolmap cannot simply
        be imported first: before torch, it breaks Pillow's PNG writer with a double free in zlib.)
        """
        if threading.current_thread() is not threading.main_thread():  # Python delivers signals there only
            return
        # SIGHUP too: a remote run's session may end with it when its ssh connection drops.
        for sig in (signal.SIGTERM, signal.SIGINT, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        self._signals += 1
        if self._signals > 1:
            raise KeyboardInterrupt
        self.commands.request_stop()
        # A raw write: the handler may run while the main thread is inside sys.stderr's own write.
        os.write(2, f"{signal.Signals(signum).name} received: saving and stopping "
                    "(send it again to end at once)\n".encode())

    def log(self, message: str, level: str = "info") -> None:
        self.emit(protocol.Log(level=level, message=message))

    def hello(self, device: str = "", backend: str = "", versions: dict[str, str] | None = None,
              rasterizer: str = "") -> None:
        self.emit(
            protocol.Hello(
                command=self.command,
                bridge_version=__version__,
                python=platform.python_version(),
                device=device,
                backend=backend,
                rasterizer=rasterizer,
                versions=versions or {},
                pid=os.getpid(),
            )
        )


def _human_line(event: Event) -> str:
    if isinstance(event, protocol.Progress):
        parts = [f"[{event.stage}] {event.step}/{event.total}"]
        for label, value, fmt in (
            ("loss", event.loss, "{:.4f}"),
            ("psnr", event.psnr, "{:.2f}"),
            ("splats", event.num_splats, "{}"),
            ("it/s", event.steps_per_sec, "{:.2f}"),
            ("eta", event.eta_sec, "{:.0f}s"),
            ("registered", event.images_registered, "{}"),
        ):
            if value is not None:
                parts.append(f"{label} " + fmt.format(value))
        return "  ".join(parts)
    if isinstance(event, protocol.Stage):
        return f"== {event.stage} {event.message}".rstrip()
    if isinstance(event, protocol.Log):
        return f"{event.level}: {event.message}"
    if isinstance(event, protocol.EvalResult):
        return f"eval @ {event.step}: PSNR {event.mean_psnr:.2f} dB, SSIM {event.mean_ssim:.4f}"
    if isinstance(event, protocol.Done):
        return f"done ({event.status}): " + ", ".join(f"{k}={v}" for k, v in event.outputs.items())
    if isinstance(event, protocol.Error):
        hint = f"\nhint: {event.hint}" if event.hint else ""
        return f"error ({event.kind}): {event.message}{hint}"
    return ""


# Errors of a write that found no room: the disk or quota is full, or the file-size limit is hit.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def disk_full_error(exc: OSError, hint: str = "") -> BridgeError:
    where = f"{exc.filename}: " if exc.filename else ""
    return BridgeError("disk_full", f"{where}cannot write ({exc.strerror or exc})",
                       hint=hint or "Free some space on that disk, or choose an output folder on another one.")


# What to lower when a command runs out of memory (a bounded job can still ask for more than a machine has).
OUT_OF_MEMORY_HINTS = {
    "train": "Lower the resolution (downscale) or the number of splats (cap_max, max_splats, init_num_points).",
    "sfm": "Use a lower quality (max_size) or fewer photos.",
    "render": "Lower the resolution, or render fewer splats.",
}


def run_command(command: str, run: Callable[[RunContext], Done], ipc: bool, job_on_stdin: bool = False) -> int:
    """Run one bridge command with the protocol around it and return the process exit code.

    ``ipc``: a program drives this run: events on stdout, and end of file on stdin stops the run.
    ``job_on_stdin``: the job comes first on stdin (``RunContext.commands.job_text()``).
    """
    if ipc or not sys.stdout.isatty():
        events = protocol.claim_stdout()
        human = not ipc and sys.stderr.isatty()
    else:
        events = EventWriter(None)
        human = True
    commands = CommandReader(eof_means_stop=ipc, job_first=("line" if ipc else "all") if job_on_stdin else None)
    if ipc or sys.stdin.isatty() or job_on_stdin:
        commands.start()
    ctx = RunContext(command, events, commands, human)
    ctx.claim_signals()
    try:
        done = run(ctx)
    except BridgeError as exc:
        ctx.emit(protocol.Error(kind=exc.kind, message=exc.message, hint=exc.hint))
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            return _internal(ctx, exc)
        error = disk_full_error(exc)
        ctx.emit(protocol.Error(kind=error.kind, message=error.message, hint=error.hint))
        return error.exit_code
    except KeyboardInterrupt:
        ctx.emit(protocol.Error(kind="interrupted", message="interrupted"))
        return 130
    except MemoryError as exc:
        ctx.emit(
            protocol.Error(
                kind="out_of_memory",
                message=clip(f"out of memory: {exc}", protocol.MESSAGE_LIMIT),
                hint=OUT_OF_MEMORY_HINTS.get(command, "Close other programs, or run it on a larger machine."),
                traceback=traceback.format_exc(),
            )
        )
        return protocol.EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: report, never die silently
        return _internal(ctx, exc)
    ctx.emit(done)
    return protocol.EXIT_OK


def _internal(ctx: RunContext, exc: BaseException) -> int:
    ctx.emit(
        protocol.Error(
            kind="internal",
            message=clip(f"{type(exc).__name__}: {exc}", protocol.MESSAGE_LIMIT),
            hint="This is a bug in Splatwork; the traceback is in the log.",
            traceback=traceback.format_exc(),
        )
    )
    traceback.print_exc()
    return protocol.EXIT_FAILED


# ---------------------------------------------------------------------------------------------
# The command line of every command, made from its job dataclass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print and exit; the client needs an Error event instead
        raise BridgeError("bad_job", f"bad arguments: {message}", hint=self.format_usage().strip(),
                          exit_code=EXIT_BAD_INPUT)


def job_parser(cls: type[Job], description: str = "") -> argparse.ArgumentParser:
    """``python -m bridge CMD``'s parser: ``--job``/FILE, ``--ipc``, and one flag per job field."""
    p = _Parser(prog=f"python -m bridge {cls.command}", description=description,
                formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=None)
    p.add_argument("job_file", nargs="?", metavar="FILE", help="the job as JSON (- : read it from stdin)")
    p.add_argument("--job", metavar="FILE", help="the job as JSON (- : the first line of stdin with --ipc)")
    presets = getattr(cls, "presets", {})
    if presets:
        p.add_argument("--preset", choices=list(presets), help="start from a preset's fields; the job file and the "
                       "flags override them: " + "; ".join(f"{name}: {preset.label}, {preset.description}"
                                                         for name, preset in presets.items()))
    add_job_flags(p, cls)
    p.add_argument("--ipc", action="store_true", help="a program drives this run (events on stdout; EOF stops)")
    return p


def _wants_stdin(argv: list[str]) -> bool:
    return "-" in argv or "--job=-" in argv


def read_job(cls: type[Job], argv: list[str], commands: CommandReader | None = None) -> Job:
    """The job from its file or stdin, with the flags over it, validated; BridgeError names the problem."""
    args = vars(job_parser(cls).parse_args(argv))
    args.pop("ipc")
    source = args.pop("job") or args.pop("job_file", None)
    args.pop("job_file", None)
    preset = args.pop("preset", None)
    values: dict = dict(cls.presets[preset].fields) if preset else {}
    if source == "-":
        text = commands.job_text() if commands is not None else sys.stdin.read()
        if not text.strip():
            raise BridgeError("bad_job", "no job on stdin", hint="Send the job as one JSON line first.",
                              exit_code=EXIT_BAD_INPUT)
        values.update(parse_job_text(cls, text, "stdin"))
    elif source:
        try:
            with open(source, encoding="utf-8") as fh:
                # In pieces, up to one character over the limit (parse_job_text says so): a single
                # read(limit) would allocate the whole limit for any job, however small.
                pieces, size = [], 0
                while size <= MAX_JOB_BYTES:
                    piece = fh.read(1 << 20)
                    if not piece:
                        break
                    pieces.append(piece)
                    size += len(piece)
                text = "".join(pieces)
        except FileNotFoundError:
            raise BridgeError("missing_input", f"{clip(source)}: job file not found", hint="Check the --job path.",
                              exit_code=EXIT_BAD_INPUT) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the name
            raise BridgeError("bad_job", f"{clip(source)}: not a readable JSON job file ({clip(str(exc))})",
                              exit_code=EXIT_BAD_INPUT) from None
        values.update(parse_job_text(cls, text, source))
    values.update({k: v for k, v in args.items() if v is not None})
    return job_from_dict(cls, values)


def main(cls: type[Job], run: Callable[[RunContext, Job], Done], argv: list[str], description: str = "") -> int:
    """A whole bridge command: help, the job (errors as events, exit code 2), the run."""
    if "-h" in argv or "--help" in argv:
        job_parser(cls, description).print_help()
        return 0
    return run_command(cls.command, lambda ctx: run(ctx, read_job(cls, argv, ctx.commands)),
                       ipc="--ipc" in argv, job_on_stdin=_wants_stdin(argv))
