"""Running one long pycolmap call while staying responsive: progress events and cancel.

pycolmap's extraction, matching, mapping and undistortion block for minutes and report nothing to
Python. Each call runs on a worker thread (pycolmap releases the GIL) while this thread polls the
client's commands, so "stop" cancels through pycolmap's CancellationToken, and an optional cheap
progress probe (files written so far). Mapper callbacks report from the worker thread directly.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .. import protocol
from ..runner import RunContext

_POLL_INTERVAL = 0.25  # seconds between progress probes and command checks
_ABANDON_AFTER = 15.0  # seconds a stopped stage gets to return before the run stops without it


class Stopped(Exception):
    """The client asked the run to stop."""


class StageRunner:
    """Runs the stages of one SfM run and remembers whether a stop was asked for."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.started = time.monotonic()
        self.stop_requested = False
        self._current: tuple[str, float] | None = None
        self._seconds: dict[str, float] = {}

    def should_stop(self) -> bool:
        if "stop" in self.ctx.commands.poll():
            self.stop_requested = True
        return self.stop_requested

    def check_stop(self) -> None:
        if self.should_stop():
            raise Stopped

    def stage(self, name: str, message: str = "") -> None:
        self.check_stop()
        self._close_stage()
        self._current = (name, time.monotonic())
        self.ctx.emit(protocol.Stage(stage=name, message=message))

    def stage_seconds(self) -> dict[str, float]:
        """Seconds spent in each stage so far (benchmarks and the run summary)."""
        self._close_stage()
        return dict(self._seconds)

    def _close_stage(self) -> None:
        if self._current is not None:
            name, since = self._current
            self._seconds[name] = round(self._seconds.get(name, 0.0) + time.monotonic() - since, 2)
            self._current = (name, time.monotonic())

    def progress(self, stage: str, step: int, total: int, **fields: Any) -> None:
        self.ctx.emit(protocol.Progress(
            step=step, total=max(total, step), stage=stage,
            elapsed_sec=round(time.monotonic() - self.started, 1), **fields,
        ))

    def run(self, work: Callable[[Any], Any], probe: Callable[[], None] | None = None,
            cancellable: bool = True) -> Any:
        """``work(token)`` on a worker thread; ``probe()`` every poll; Stopped when stopped.

        A stopped stage is abandoned (the run stops without it; the caller then ends the process)
        at once when ``cancellable`` is False, because the call takes no token, or when it has not
        returned ``_ABANDON_AFTER`` seconds after its token was cancelled.
        """
        import pycolmap

        token = pycolmap.CancellationToken()
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = work(token)
            except BaseException as exc:  # noqa: BLE001 - handed to the polling thread
                outcome["error"] = exc

        worker = threading.Thread(target=target, name="sfm-stage", daemon=True)
        worker.start()
        stop_at = None
        while worker.is_alive():
            worker.join(_POLL_INTERVAL)
            if stop_at is None and self.should_stop():
                token.cancel()
                stop_at = time.monotonic()
            if stop_at is not None and (not cancellable or time.monotonic() - stop_at > _ABANDON_AFTER):
                raise Stopped
            if probe is not None and worker.is_alive():
                probe()
        if stop_at is not None or self.stop_requested:
            raise Stopped
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")


class Throttle:
    """Calls ``emit(value)`` when the probed value changed since the last call."""

    def __init__(self, probe: Callable[[], Any], emit: Callable[[Any], None]):
        self._probe = probe
        self._emit = emit
        self._last: Any = None

    def __call__(self) -> None:
        value = self._probe()
        if value is not None and value != self._last:
            self._last = value
            self._emit(value)
