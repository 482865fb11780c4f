"""Bridge jobs on another machine over SSH: the same job, the same events, the same Job in Blender.

A machine (Preferences > Splatwork > Remote Machines) is an SSH host or an alias from ~/.ssh/config,
the Python there that has torch and gsplat, and a work folder there. :meth:`Machine.start` carries
what the job needs (the bridge's code, then each input the job names: the model, the images the
model uses, splat files, photos) into the work folder, only the files that changed since the last
time (a manifest per folder, size and modification time); a training run's images go through
``Machine.reduce_images`` when set (in Blender: at the size it trains at, reduced once and cached,
``addon/training/remote_images.py``). Then it
runs ``python -m bridge CMD --job - --ipc`` through the system ``ssh`` client (an argument list;
only the remote command line is shell text, every part quoted). The job goes as the first line
on ssh's stdin, commands follow it, events come back on its stdout, the bridge's log on its stderr:
the client cannot tell it from a local run.
Files named by events are fetched as they arrive (snapshots, previews) and the output folder when the
run ends; their paths are rewritten to the local ones.

When the connection drops or Blender goes away, ssh's end closes, the bridge sees end of file on its
stdin (``--ipc``) and stops after saving its checkpoint; the job ends with a ``connection_lost``
error, and Resume continues the run on the same machine from that checkpoint (an output folder here
always maps to the same folder there). Passwords are never stored: ssh uses keys or an agent
(``BatchMode``, so it fails rather than prompting).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import posixpath
import queue
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Callable

from .. import protocol
from ..protocol.jobs import OUTPUT_LOCK, path_fields
from .command import CODE_ROOT, bridge_args
from .errors import RemoteError
from .process import BridgeProcess

MANIFEST = ".splatwork-sync.json"
SSH_TIMEOUT = 60  # seconds for each short ssh call (a transfer gets longer)


@dataclasses.dataclass
class Machine:
    name: str
    host: str  # an SSH host, user@host, or an alias from the ssh config
    python: str  # the Python on that machine with torch and gsplat
    workdir: str  # the folder there that holds the code, the data and the runs
    ssh_config: str = ""  # an ssh config file (-F); empty: ssh's own (~/.ssh/config)
    # ``reduce_images(job, images_dir, on_main, progress) -> {name there: local path}``: the images a
    # training run needs, made smaller here; None sends the images folder as it is.
    reduce_images: Callable | None = dataclasses.field(default=None, repr=False, compare=False)

    # -- ssh ------------------------------------------------------------------------------------

    def ssh(self, remote_command: str) -> list[str]:
        """The argument list that runs ``remote_command`` (shell text, already quoted) on the machine."""
        argv = ["ssh"]
        if self.ssh_config:
            argv += ["-F", self.ssh_config]
        # BatchMode: fail rather than ask for a password nobody can type; keepalives notice a dead
        # link within a minute, so a dropped connection ends the job instead of hanging it.
        argv += ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                 "-T", self.host, "--", remote_command]
        return argv

    def run(self, remote_command: str, stdin: bytes | None = None, timeout: float = SSH_TIMEOUT) -> bytes:
        """Run a short command there; RemoteError (with ssh's own words) when it fails."""
        try:
            result = subprocess.run(self.ssh(remote_command), input=stdin or b"", capture_output=True,
                                    timeout=timeout)
        except FileNotFoundError:
            raise RemoteError("no ssh client found", "Install OpenSSH's ssh client (it must be on PATH).") from None
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.host} did not answer within {timeout:.0f} s",
                              "Check that the machine is on and reachable: ssh " + self.host) from None
        if result.returncode != 0:
            raise self._failure(result.returncode, result.stderr.decode("utf-8", "replace"))
        return result.stdout

    def _failure(self, code: int, stderr: str) -> RemoteError:
        said = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), "")
        if code == 255:
            return RemoteError(f"cannot reach {self.host} over ssh: {said or 'connection failed'}",
                               f"Check that 'ssh {self.host}' works in a terminal without a password prompt "
                               "(a key or an agent; Splatwork never stores passwords).")
        if code == 127 or "No such file or directory" in said or "not found" in said:
            return RemoteError(f"{self.host}: the remote Python '{self.python}' was not found ({said})",
                               "Set Remote Python to an interpreter there that has torch and gsplat "
                               "(e.g. a virtual environment's bin/python), then press Check.")
        return RemoteError(f"{self.host}: a remote command failed with exit code {code}: {said}",
                           "The job's log has ssh's and the remote side's messages.")

    def home_path(self, path: str) -> str:
        """A path there as shell text: quoted, with a leading ~/ left to the remote shell."""
        if path == "~" or path.startswith("~/"):
            return '"$HOME"' + ("/" + shlex.quote(path[2:]) if path[2:] else "")
        return shlex.quote(path)

    # -- the work folder ------------------------------------------------------------------------

    _absolute_workdir: str = dataclasses.field(default="", init=False, repr=False)

    def root(self) -> str:
        """The work folder there, absolute (made on first use)."""
        if not self._absolute_workdir:
            w = self.home_path(self.workdir)
            self._absolute_workdir = self.run(f"mkdir -p {w} && cd {w} && pwd").decode().strip()
        return self._absolute_workdir

    def code_dir(self) -> str:
        return posixpath.join(self.root(), "code")

    def place(self, local: str, kind: str) -> str:
        """Where a local path lives there: the same folder every time, so a resumed run finds its files."""
        local = os.path.abspath(local)
        key = hashlib.sha1(local.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return posixpath.join(self.root(), kind, f"{key}-{_safe(os.path.basename(local.rstrip(os.sep)))}")

    def sync(self, files: dict[str, str], remote_dir: str) -> int:
        """Copy ``files`` (relative name there -> local path) into ``remote_dir``, skipping those whose
        size and modification time match what was sent before; returns how many were sent."""
        d = shlex.quote(remote_dir)
        try:
            sent = json.loads(self.run(f"cat {d}/{MANIFEST} 2>/dev/null || true") or b"{}")
        except ValueError:
            sent = {}
        now = {}
        for rel, path in files.items():
            st = os.stat(path)
            now[rel] = [st.st_size, st.st_mtime_ns]
        changed = [rel for rel in files if sent.get(rel) != now[rel]]
        if not changed:
            return 0
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for rel in changed:
                tar.add(files[rel], arcname=rel, recursive=False)
            manifest = json.dumps({**sent, **now}).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
        self.run(f"mkdir -p {d} && tar -xf - -C {d}", stdin=buffer.getvalue(), timeout=3600)
        return len(changed)

    def fetch(self, remote_dir: str, names: list[str], local_dir: str, exclude: tuple[str, ...] = ()) -> None:
        """Copy ``names`` (relative to ``remote_dir``; ``["."]`` for all of it) into ``local_dir``."""
        excludes = " ".join(f"--exclude={shlex.quote(e)}" for e in exclude)
        data = self.run(f"tar -cf - {excludes} -C {shlex.quote(remote_dir)} "
                        + " ".join(shlex.quote(n) for n in names), timeout=3600)
        os.makedirs(local_dir, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(local_dir, filter="data")  # nothing outside local_dir, no links out
            else:  # Python before 3.11.4: check the names ourselves
                for member in tar.getmembers():
                    target = os.path.realpath(os.path.join(local_dir, member.name))
                    if not (member.isfile() or member.isdir()) or not target.startswith(os.path.realpath(local_dir)):
                        raise RemoteError(f"{self.host} sent an unsafe file name: {member.name}")
                tar.extractall(local_dir)

    def exists(self, remote_path: str) -> bool:
        return self.run(f"test -e {shlex.quote(remote_path)} && echo yes || true").strip() == b"yes"

    # -- jobs -----------------------------------------------------------------------------------

    def bridge_argv(self, command: str) -> list[str]:
        code = shlex.quote(self.code_dir())
        bridge = " ".join(shlex.quote(a) for a in bridge_args(command))
        return self.ssh(f"cd {code} && exec env PYTHONPATH={code} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE "
                        f"{self.home_path(self.python)} {bridge}")

    def start(self, request: protocol.Job, log_path: str) -> RemoteProcess:
        """Start the job there: the upload and then the bridge run on the returned process's own thread,
        so Blender stays responsive; anything that goes wrong arrives as an Error event."""
        return RemoteProcess(self, request, log_path)

    def prepare(self, request: protocol.Job, on_main=None, progress=None,
                ) -> tuple[list[str], protocol.Job, dict[str, str]]:
        """Carry the code and the job's inputs there: (ssh argv, the job with paths there, output
        folder there -> here). JobError (RemoteError) when it cannot. ``on_main(fn, *args)`` runs what
        must run on Blender's main thread (reducing images; None: here and now); ``progress(event)``
        hears how it goes."""
        remote_job = copy_job(request)
        self.sync(_tree(os.path.join(CODE_ROOT, "bridge"), "bridge"), self.code_dir())
        for obj, name in path_fields(remote_job, "in"):
            setattr(obj, name, self._upload(request, name, getattr(obj, name), on_main, progress))
        outputs = {}
        for obj, name in path_fields(remote_job, "out"):
            local = os.path.abspath(getattr(obj, name))
            there = self.place(local, "out")
            outputs[there] = local
            setattr(obj, name, there)
        return self.bridge_argv(request.command), remote_job, outputs

    def _upload(self, request: protocol.Job, field: str, local: str, on_main, progress) -> str:
        local = os.path.abspath(local)
        if not os.path.exists(local):
            raise RemoteError(f"{local} not found", "Was the input moved or deleted?")
        there = self.place(local, "data")
        if os.path.isfile(local):
            self.sync({os.path.basename(local): local}, there)
            return posixpath.join(there, os.path.basename(local))
        if isinstance(request, protocol.TrainJob) and field == "images" and self.reduce_images is not None:
            # Only the images the model uses, at the size the run trains at; each training size has
            # a folder there of its own, so going back to an earlier size sends nothing again.
            def reduced(done: int, total: int, name: str) -> None:
                if progress is not None:
                    progress(protocol.Stage(stage="reducing_images", message=f"{done}/{total} {name}"))

            files = self.reduce_images(request, local, on_main or _call, reduced)
            if request.downscale != 1.0:
                there += f"-downscale{request.downscale:g}"
        elif isinstance(request, protocol.SfmJob):  # sfm reads the folder's own files, not its subfolders
            files = {n: os.path.join(local, n) for n in os.listdir(local) if os.path.isfile(os.path.join(local, n))}
        else:
            files = _tree(local, "")
        self.sync(files, there)
        return there


def _call(fn, *args):
    """``on_main`` for a caller on no particular thread: run it here."""
    return fn(*args)


def copy_job(job):
    """A deep copy of a job (its nested objects too), to rewrite paths in."""
    return protocol.job_from_dict(type(job), json.loads(job.to_json()))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60] or "x"


def _tree(folder: str, prefix: str) -> dict[str, str]:
    out = {}
    for base, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        for name in names:
            if name.endswith((".pyc", ".pyo")) or name.startswith("."):
                continue
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            out[posixpath.join(prefix, rel) if prefix else rel] = path
    return out


class RemoteProcess(BridgeProcess):
    """The ssh client running a bridge there, with events translated to this machine's files.

    Its thread first uploads (a "uploading" Stage event), then starts ssh and reads the events; until
    ssh runs, ``proc`` is None, "stop" cancels the upload and the job ends stopped. What the upload
    must do on Blender's main thread (reduce an image) waits for the client's next :meth:`events`
    call, which the client makes on that thread (the jobs' timer, or ``run_to_end`` when blocking).
    """

    def __init__(self, machine: Machine, request: protocol.Job, log_path: str):
        self.machine = machine
        self.request = request
        self.outputs: dict[str, str] = {}  # output folder there -> here
        self.argv = machine.ssh("python -m bridge " + request.command)  # until the real one is known
        self.log_path = log_path
        self.queue = queue.Queue()
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc: subprocess.Popen | None = None
        self._code: int | None = None  # the exit code when ssh never ran
        self._cancelled = False
        self._main_calls: queue.Queue[_MainCall] = queue.Queue()
        self._final = threading.Event()
        self._reader = threading.Thread(target=self._run, name="remote-job", daemon=True)
        self._reader.start()

    def _run(self) -> None:
        self.queue.put(protocol.Stage(stage="uploading", message=f"to {self.machine.host}"))
        try:
            argv, remote_job, self.outputs = self.machine.prepare(self.request, self._on_main, self.queue.put)
        except _Cancelled:
            self.queue.put(protocol.Done(status="stopped"))
            self._code = protocol.EXIT_OK
            return
        except (RemoteError, OSError, ValueError, tarfile.TarError) as exc:  # ValueError: an unreadable model
            message, hint = (exc.message, exc.hint) if isinstance(exc, RemoteError) else (str(exc), "")
            self._log.write(f"upload to {self.machine.host} failed: {message}\n".encode())
            self._log.flush()
            self.queue.put(protocol.Error(kind="remote_failed", message=message, hint=hint))
            self._code = protocol.EXIT_FAILED
            return
        if self._cancelled:
            self.queue.put(protocol.Done(status="stopped"))
            self._code = protocol.EXIT_OK
            return
        self.argv = argv
        kwargs = {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {"start_new_session": True}
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         **kwargs)  # type: ignore[arg-type]
        except OSError as exc:
            self.queue.put(protocol.Error(kind="remote_failed", message=f"could not run ssh: {exc}",
                                          hint="Install OpenSSH's ssh client (it must be on PATH)."))
            self._code = protocol.EXIT_FAILED
            return
        self._write(remote_job.to_json().encode() + b"\n")
        self._read()

    def _on_main(self, fn, *args):
        """``fn(*args)`` run on Blender's main thread by :meth:`items`; waits for it (or a stop)."""
        call = _MainCall(fn, args)
        self._main_calls.put(call)
        while not call.done.wait(0.05):
            if self._cancelled:
                raise _Cancelled
        if call.error is not None:
            raise call.error
        return call.result

    def items(self) -> list:
        try:
            call = self._main_calls.get_nowait()  # one at a time: the UI stays live between them
        except queue.Empty:
            pass
        else:
            call.run()
        return super().items()

    # Before ssh runs there is no process: these answer for the upload.

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def poll(self) -> int | None:
        if self.proc is None:
            return None if self._reader.is_alive() else self._code
        return self.proc.poll()

    def finished(self) -> bool:
        return not self._reader.is_alive() and (self.proc is None or self.proc.poll() is not None)

    def wait(self, timeout: float | None = None) -> int:
        self._reader.join(timeout)
        if self.proc is None:
            if self._reader.is_alive():
                raise subprocess.TimeoutExpired(self.argv, timeout or 0)
            return self._code if self._code is not None else protocol.EXIT_FAILED
        return super().wait(timeout)

    def send(self, cmd: str) -> bool:
        if self.proc is None:
            if cmd == "stop":
                self._cancelled = True  # the upload finishes its file, then nothing starts
            return True
        return super().send(cmd)

    def kill(self) -> int:
        self._cancelled = True
        if self.proc is None:
            self._reader.join(5)
            return self._code if self._code is not None else protocol.EXIT_FAILED
        return super().kill()

    def close_stdin(self) -> None:
        if self.proc is not None:
            super().close_stdin()

    def parse(self, raw: bytes) -> protocol.Event | None:
        event = protocol.decode_event(raw)
        if isinstance(event, protocol.Snapshot):
            try:
                event.preview = self._fetch_file(event.preview)
                event.ply = self._fetch_file(event.ply)
            except (RemoteError, OSError, tarfile.TarError) as exc:  # a preview only: the run goes on
                return protocol.Log(level="warning", message=f"a snapshot could not be fetched: {exc}")
        try:
            if isinstance(event, protocol.Done):
                for there, here in self.outputs.items():
                    # The output folder comes back; checkpoints stay there, where Resume runs.
                    self.machine.fetch(there, ["."], here, exclude=("./checkpoints", "./" + OUTPUT_LOCK))
                event.outputs = {k: self._local(v) for k, v in event.outputs.items()}
        except (RemoteError, OSError, tarfile.TarError) as exc:
            message = exc.message if isinstance(exc, RemoteError) else str(exc)
            return protocol.Error(kind="fetch_failed", message=f"could not fetch the results: {message}",
                                  hint="The run's files are still on the remote machine; Resume or run again.")
        if isinstance(event, (protocol.Done, protocol.Error)):
            self._final.set()
        return event

    def _local(self, path: str | None) -> str | None:
        for there, here in self.outputs.items():
            if path and (path == there or path.startswith(there + "/")):
                return os.path.join(here, *path[len(there):].strip("/").split("/"))
        return path

    def _fetch_file(self, path: str | None) -> str | None:
        local = self._local(path)
        if path and local != path:
            self.machine.fetch(posixpath.dirname(path), [posixpath.basename(path)], os.path.dirname(local))
        return local

    def _read(self) -> None:
        super()._read()
        if self._final.is_set():
            return
        # ssh ended before the bridge said how the run ended: say what that means.
        code = self.proc.wait()
        tail = self.log_tail(2000).strip().splitlines()
        said = tail[-1] if tail else ""
        if code == 255 or code < 0:
            how = "was lost" if code < 0 or "closed" in said or "reset" in said.lower() else "failed"
            hint = ("The run there saw its input close, saved a checkpoint and stopped: press Resume to "
                    "continue it there." if isinstance(self.request, protocol.TrainJob)
                    else "The run there stopped when its input closed: run it again.")
            error = protocol.Error(kind="connection_lost", hint=hint,
                                   message=f"the connection to {self.machine.host} {how}: {said}".rstrip(": "))
        else:
            failure = self.machine._failure(code, "\n".join(tail))
            error = protocol.Error(kind="no_environment" if "not found" in failure.message else "crashed",
                                   message=failure.message, hint=failure.hint)
        self.queue.put(error)


class _Cancelled(Exception):
    """The job was stopped while its upload waited for the main thread."""


class _MainCall:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        self.result = self.error = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except Exception as exc:  # noqa: BLE001 - handed to the upload's thread, which reports it
            self.error = exc
        self.done.set()
