"""Where a training run's wall time goes, phase by phase (metrics.json's ``phase_seconds``).

Standard library only, so the command can start the clock before torch is imported.
"""
from __future__ import annotations

import time


class PhaseClock:
    """Seconds per named phase of a run, each lap from the end of the one before (metrics.json's
    ``phase_seconds``: where the wall time goes besides the training steps)."""

    def __init__(self, start: float | None = None):
        self.seconds: dict[str, float] = {}
        self._mark = time.perf_counter() if start is None else start

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self._mark = now - self._mark, now

    def restart(self) -> None:
        self._mark = time.perf_counter()
