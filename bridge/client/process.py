"""A bridge (or any tool) as a subprocess whose output lines arrive on a queue: the client's end of the
pipe that ``protocol.messages`` defines. Standard library only; the add-on uses it inside Blender, the
tests and a remote run's ssh client use it as it is.
"""
from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from typing import Any

from ..protocol.messages import Event, decode_event, encode_command


class PipeProcess:
    """A subprocess started from an argument list (never a shell string) whose stdout lines arrive on a
    queue from a reader thread; the client polls :meth:`items` from its own loop (Blender: a
    ``bpy.app.timers`` callback), so nothing blocks. stderr goes to ``log_path``, or joins stdout when
    ``log_path`` is None. Installs use it as it is; :class:`BridgeProcess` reads events from the lines.
    """

    def __init__(self, argv: list[str], log_path: str | None, cwd: str | None = None,
                 env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.log_path = log_path
        self.queue: queue.Queue[Any] = queue.Queue()
        self._log = None
        if log_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self._log = open(log_path, "ab")
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NO_WINDOW  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # Ctrl-C in Blender's terminal goes to Blender only
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else subprocess.STDOUT,
            cwd=cwd,
            env=env,
            **kwargs,
        )
        self._reader = threading.Thread(target=self._read, name="bridge-output", daemon=True)
        self._reader.start()

    def parse(self, raw: bytes) -> Any:
        """What a line of output means (None: nothing); here the line's text."""
        return raw.decode("utf-8", "replace").rstrip()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            item = self.parse(raw)
            if item is not None:
                self.queue.put(item)

    def items(self) -> list:
        """What arrived since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def finished(self) -> bool:
        """The process has exited and every line it wrote has been read."""
        return self.proc.poll() is not None and not self._reader.is_alive()

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self._reader.join(timeout=5)
        self.close_stdin()
        return code

    def close_stdin(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass

    def close(self) -> None:
        self.close_stdin()
        if self._log is not None:
            self._log.close()

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with open(self.log_path or "", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""


class BridgeProcess(PipeProcess):
    """A running bridge: its events arrive on the queue; its stderr (the log) goes to ``log_path``.

    ``job``: the job as one JSON line, written to stdin before any command (``--job -``).
    """

    def __init__(self, argv: list[str], log_path: str, cwd: str | None = None,
                 env: dict[str, str] | None = None, job: str | None = None):
        super().__init__(argv, log_path, cwd, env)
        if job is not None:
            self._write(job.rstrip("\n").encode() + b"\n")

    def parse(self, raw: bytes) -> Event | None:
        return decode_event(raw)

    def events(self) -> list[Event]:
        """Events received since the last call (never blocks)."""
        return self.items()

    def send(self, cmd: str) -> bool:
        """Send a command; False when the bridge is no longer listening."""
        return self._write(encode_command(cmd).encode())

    def _write(self, line: bytes) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def stop(self, grace: float = 30.0) -> int:
        """Ask the bridge to save and exit; kill it if it has not exited after ``grace`` seconds."""
        self.send("stop")
        self.close_stdin()
        try:
            return self.wait(grace)
        except subprocess.TimeoutExpired:
            return self.kill()


def run_to_end(
    process: BridgeProcess, on_event=None, poll_interval: float = 0.05, timeout: float | None = None
) -> int:
    """Block until the bridge exits, passing each event to ``on_event`` (headless runs and tests)."""
    start = time.monotonic()
    while True:
        for event in process.events():
            if on_event is not None:
                on_event(event)
        if process.finished():
            for event in process.events():
                if on_event is not None:
                    on_event(event)
            return process.wait()
        if timeout is not None and time.monotonic() - start > timeout:
            process.kill()
            raise TimeoutError(f"bridge did not finish within {timeout} s: {process.argv}")
        time.sleep(poll_interval)
