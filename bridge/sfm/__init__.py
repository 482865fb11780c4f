"""``python -m bridge sfm``: cameras and a sparse model from a folder of photos or a video.

The stages (pycolmap, CPU or CUDA as its build allows) live in ``pipeline``; this module is the
command line. Stage events: loading_images, extracting_features, matching, mapping, undistorting.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..protocol import SfmJob
from ..runner import main as command_main
from .options import SfmOptions
from .pipeline import run

DESCRIPTION = ("Structure from motion: camera poses, a sparse point cloud and undistorted images "
               "(ready for training) from overlapping photos or a video.")


def options(job: SfmJob) -> SfmOptions:
    return SfmOptions(
        out=Path(job.out), images=Path(job.images) if job.images else None,
        video=Path(job.video) if job.video else None, every=job.every, matcher=job.matcher,
        mapper=job.mapper, quality=job.quality, max_size=job.max_size, camera=job.camera,
        threads=job.threads, seed=job.seed, min_registered=job.min_registered, lock_wait=job.lock_wait)


def main(argv: list[str]) -> int:
    code = command_main(SfmJob, lambda ctx, job: run(ctx, options(job)), argv, DESCRIPTION)
    # Leave without finalising the interpreter: a stopped pycolmap stage that takes no cancel token
    # may still be computing on its thread. Every event is flushed as it is written and every file
    # is written atomically, so nothing is lost.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

