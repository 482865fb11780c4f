"""What an SfM run is asked to do, and the limits that every stage shares."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUALITY_SIZES = {"low": 1000, "medium": 1600, "high": 0}  # longest side in pixels; 0: as shot
MIN_PHOTOS = 3  # the fewest views that triangulate anything checkable
OVERLAP_HINT = ("Photos must overlap: shoot every part of the subject from several nearby positions "
                "(about two thirds shared between neighbouring photos), keep them sharp, and avoid "
                "plain, shiny or moving subjects.")


@dataclass
class SfmOptions:
    out: Path
    images: Path | None = None
    video: Path | None = None
    every: int = 10
    matcher: str = "auto"  # auto, exhaustive, sequential
    mapper: str = "incremental"  # incremental, global
    quality: str = "medium"
    max_size: int | None = None  # overrides quality
    camera: str = "single"  # single, per-image
    threads: int = -1
    seed: int = 0
    min_registered: float = 0.5  # fraction of the photos the model must hold
    lock_wait: float = 60.0  # seconds to wait for another run in the output folder

    @property
    def working_size(self) -> int:
        return self.max_size if self.max_size is not None else QUALITY_SIZES[self.quality]
