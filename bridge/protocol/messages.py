"""The messages between Blender (or any client) and a bridge process. Standard library only.

Events go from the bridge to the client as JSON lines on the bridge's *original* stdout. At start-up
the bridge calls :func:`claim_stdout`, which keeps that pipe for events and points file descriptor 1
(and ``sys.stdout``) at stderr, so stray prints from torch, gsplat, pycolmap or C code land in the log
and cannot corrupt the channel. Each event carries ``"proto": "splatwork"`` and the protocol version;
the decoder ignores any other line, so a line printed before the redirect is harmless too.

Commands go from the client to the bridge as JSON lines on the bridge's stdin. When the client asks
for it (``--ipc``), end of file on stdin means the client is gone: the bridge saves and exits, so no
bridge outlives Blender.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

__all__ = ["PROTOCOL", "VERSION", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "COMMANDS", "Event", "Hello",
           "Stage", "Progress", "Snapshot", "EvalResult", "Log", "Done", "Error", "Unknown", "EVENT_TYPES",
           "BridgeError", "encode_event", "decode_event", "encode_command", "decode_command", "EventWriter",
           "claim_stdout", "CommandReader", "clip", "MESSAGE_LIMIT", "MAX_JOB_BYTES"]

PROTOCOL = "splatwork"
VERSION = 1

# Exit codes of ``python -m bridge ...``.
EXIT_OK = 0  # finished, or stopped on request with results saved
EXIT_FAILED = 1  # a runtime failure (an Error event says which)
EXIT_BAD_INPUT = 2  # a bad job, bad arguments or bad input files

COMMANDS = ("stop", "pause", "resume", "snapshot")


@dataclass
class Event:
    type: ClassVar[str] = "event"


@dataclass
class Hello(Event):
    """First event of every run."""

    type: ClassVar[str] = "hello"
    command: str  # train, sfm, render, ...
    bridge_version: str
    python: str
    device: str = ""  # cuda:0, cpu, mps
    backend: str = ""  # gsplat, warp or torch
    rasterizer: str = ""  # which rasterizer runs and why, for people ("the compiled rasterizer (Warp) on ...")
    versions: dict[str, str] = field(default_factory=dict)  # torch, gsplat, pycolmap, ...
    pid: int = 0
    protocol_version: int = VERSION


@dataclass
class Stage(Event):
    type: ClassVar[str] = "stage"
    stage: str
    message: str = ""


@dataclass
class Progress(Event):
    """Progress of the current stage; fields a stage does not have stay None."""

    type: ClassVar[str] = "progress"
    step: int
    total: int
    stage: str = "training"
    loss: float | None = None
    psnr: float | None = None
    num_splats: int | None = None
    steps_per_sec: float | None = None
    eta_sec: float | None = None
    elapsed_sec: float | None = None
    gpu_mem_mb: float | None = None
    images_processed: int | None = None  # sfm
    images_registered: int | None = None  # sfm
    frame: int | None = None  # render


@dataclass
class Snapshot(Event):
    """Files written during the run: a preview image and/or the splats so far (standard 3DGS PLY)."""

    type: ClassVar[str] = "snapshot"
    step: int
    preview: str | None = None
    ply: str | None = None


@dataclass
class EvalResult(Event):
    type: ClassVar[str] = "eval"
    step: int
    images: list[dict[str, Any]]  # [{"name": ..., "psnr": ..., "ssim": ...}, ...]
    mean_psnr: float
    mean_ssim: float


@dataclass
class Log(Event):
    type: ClassVar[str] = "log"
    level: str  # info, warning
    message: str


@dataclass
class Done(Event):
    """Last event of a successful run. ``status`` is "completed" or "stopped" (stopped on request)."""

    type: ClassVar[str] = "done"
    status: str
    outputs: dict[str, str] = field(default_factory=dict)  # role -> path, e.g. {"splats": ".../splats.ply"}
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Error(Event):
    """Last event of a failed run."""

    type: ClassVar[str] = "error"
    # bad_job, missing_input, bad_input, no_cuda, cuda_oom, empty_reconstruction, internal, busy (the
    # output folder is in use by another run: bridge/outlock.py), ...
    kind: str
    message: str
    hint: str = ""
    traceback: str = ""


@dataclass
class Unknown(Event):
    """An event from a newer bridge that this client does not know; kept so nothing is silently lost."""

    type: ClassVar[str] = "unknown"
    name: str
    data: dict[str, Any]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (Hello, Stage, Progress, Snapshot, EvalResult, Log, Done, Error)
}


# The longest message or hint an error carries, and the longest value (a path, a name) one echoes:
# a 100 MB path in a job must not become a 100 MB error line, event or report.
MESSAGE_LIMIT = 1000
VALUE_LIMIT = 300


def clip(text: str, limit: int = VALUE_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, keeping its start and end (where a path's file name is)."""
    text = str(text)
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 2)
    return f"{text[:keep - keep // 3]}...({len(text) - keep:,} characters)...{text[len(text) - keep // 3:]}"


class BridgeError(RuntimeError):
    """A failure raised inside the bridge that should end the run with an Error event (message and
    hint cut to :data:`MESSAGE_LIMIT` characters)."""

    def __init__(self, kind: str, message: str, hint: str = "", exit_code: int = EXIT_FAILED):
        message, hint = clip(message, MESSAGE_LIMIT), clip(hint, MESSAGE_LIMIT)
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_event(event: Event) -> str:
    payload = {"proto": PROTOCOL, "v": VERSION, "type": event.type}
    payload.update(dataclasses.asdict(event))
    return json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    # numpy and torch scalars, paths
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a protocol message")


def decode_event(line: str | bytes) -> Event | None:
    """The event on this line, or None when the line is not a protocol message (noise)."""
    try:
        payload = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    if not isinstance(payload, dict) or payload.get("proto") != PROTOCOL or "type" not in payload:
        return None
    name = payload.pop("type")
    payload.pop("proto", None)
    payload.pop("v", None)
    cls = EVENT_TYPES.get(name)
    if cls is None:
        return Unknown(name=str(name), data=payload)
    known = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in payload.items() if k in known})
    except TypeError:
        return Unknown(name=str(name), data=payload)


def encode_command(cmd: str) -> str:
    if cmd not in COMMANDS:
        raise ValueError(f"unknown bridge command {cmd!r}; expected one of {', '.join(COMMANDS)}")
    return json.dumps({"proto": PROTOCOL, "v": VERSION, "cmd": cmd}) + "\n"


def decode_command(line: str | bytes) -> str | None:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    text = text.strip()
    if text in COMMANDS:  # a person typing at a terminal
        return text
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(payload, dict) and payload.get("cmd") in COMMANDS:
        return payload["cmd"]
    return None


# ---------------------------------------------------------------------------------------------
# Bridge side


class EventWriter:
    """Writes events to the channel; thread-safe, one flushed line per event."""

    def __init__(self, stream: IO[str] | None):
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        if self._stream is None:
            return
        line = encode_event(event)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._stream = None  # the client is gone; keep working, the run still saves


def claim_stdout() -> EventWriter:
    """Keep the real stdout for events and send everything else printed to stderr."""
    sys.stdout.flush()
    channel_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stream = os.fdopen(channel_fd, "w", encoding="utf-8", buffering=1, newline="\n")
    return EventWriter(stream)


# The largest job a bridge reads (a file, or stdin): a render job of ten thousand frames of several
# objects takes a few megabytes; anything near this is not a job, and must not fill the memory.
MAX_JOB_BYTES = 64 << 20
COMMAND_LINE_LIMIT = 4096  # bytes of a command line on stdin read at a time


def _read_all(stream, limit: int) -> bytes:
    """Up to ``limit`` bytes, to the end of the stream (a raw stream's read may return less)."""
    pieces, size = [], 0
    while size < limit:
        piece = stream.read(min(limit - size, 1 << 20))
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


class CommandReader:
    """Reads commands from stdin on a daemon thread.

    ``eof_means_stop``: the client is a program (``--ipc``) whose going away must stop the run.

    ``job_first``: the job comes on stdin before any command: its first line (``"line"``, a program
    driving the run) or everything up to end of file (``"all"``, a job file piped in by hand); it is
    handed over by :meth:`job_text`.
    """

    def __init__(self, stream: IO[bytes] | None = None, eof_means_stop: bool = False,
                 job_first: str | None = None):
        self.commands: queue.Queue[str] = queue.Queue()
        self._stream = stream
        self._eof_means_stop = eof_means_stop
        self._stop_requested = False
        self._job_first = job_first
        self._job: queue.Queue[bytes] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="bridge-commands", daemon=True)

    def start(self) -> CommandReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        # Unbuffered reads of a duplicate of fd 0: a daemon thread blocked inside sys.stdin's buffered
        # reader holds its lock, and interpreter shutdown then aborts on it ("could not acquire lock
        # for <stdin>", exit 134) whenever the client keeps the pipe open. A raw file has no lock.
        stream = self._stream if self._stream is not None else os.fdopen(os.dup(0), "rb", buffering=0)
        try:
            if self._job_first is not None:
                # One byte over the limit at most: the reader of the job says it is too large.
                limit = MAX_JOB_BYTES + 1
                self._job.put(_read_all(stream, limit) if self._job_first == "all" else stream.readline(limit))
            while True:
                line = stream.readline(COMMAND_LINE_LIMIT)  # bounded: a line without end cannot fill memory
                if not line:
                    break
                cmd = decode_command(line)
                if cmd is not None:
                    self.commands.put(cmd)
        except (OSError, ValueError):
            if self._job_first is not None and self._job.empty():
                self._job.put(b"")
        if self._eof_means_stop:
            self.commands.put("stop")

    def job_text(self) -> str:
        """The job read from stdin ("" when stdin ended first); waits for it."""
        return self._job.get().decode("utf-8", "replace")

    def request_stop(self) -> None:
        """Make the next :meth:`poll` return "stop". Safe in a signal handler: it takes no lock (the
        queue's could be held by the very code the handler interrupted)."""
        self._stop_requested = True

    def poll(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.commands.get_nowait())
            except queue.Empty:
                break
        if self._stop_requested:
            self._stop_requested = False
            out.append("stop")
        return out
