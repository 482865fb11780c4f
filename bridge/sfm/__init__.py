"""``python -m bridge sfm``: cameras and a sparse model from a folder of photos or a video.

The stages (pycolmap, CPU or CUDA as its build allows) live in ``pipeline``; this module is the
command line. Stage events: loading_images, extracting_features, matching, mapping, undistorting.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..protocol import EXIT_BAD_INPUT
from ..runner import run_command
from .options import QUALITY_SIZES, SfmOptions
from .pipeline import run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridge sfm",
        description="Structure from motion: camera poses, a sparse point cloud and undistorted images "
        "(ready for training) from overlapping photos or a video.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of photos (its subfolders are not read)")
    source.add_argument("--video", type=Path, help="video file; frames are taken every --every frames")
    p.add_argument("--every", type=int, default=10, metavar="N", help="with --video: take every Nth frame (10)")
    p.add_argument("--out", type=Path, required=True, help="output folder: new, empty, or an earlier sfm result")
    p.add_argument("--matcher", choices=("auto", "exhaustive", "sequential"), default="auto",
                   help="auto: sequential for video frames, exhaustive (every pair) for photos")
    p.add_argument("--mapper", choices=("incremental", "global"), default="incremental",
                   help="incremental (robust, default) or global (GLOMAP; faster on large sets)")
    p.add_argument("--quality", choices=tuple(QUALITY_SIZES), default="medium",
                   help="working image size: low 1000 px, medium 1600 px, high as shot (longest side)")
    p.add_argument("--max-size", type=int, default=None, metavar="PX",
                   help="working size in pixels (longest side), instead of --quality")
    p.add_argument("--camera", choices=("single", "per-image"), default="single",
                   help="single: one camera (same body and zoom) for all photos; per-image: one each")
    p.add_argument("--min-registered", type=float, default=0.5, metavar="FRACTION",
                   help="fail unless at least this fraction of the photos is placed in the model (0.5)")
    p.add_argument("--threads", type=int, default=-1, help="CPU threads (-1: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed, for repeatable results")
    p.add_argument("--ipc", action="store_true", help="driven by a program: events on stdout, EOF on stdin stops")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.max_size is not None and args.max_size < 64:
        print("error: --max-size must be at least 64 pixels", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0.0 <= args.min_registered <= 1.0:
        print("error: --min-registered is a fraction between 0 and 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    opts = SfmOptions(
        out=args.out, images=args.images, video=args.video, every=args.every, matcher=args.matcher,
        mapper=args.mapper, quality=args.quality, max_size=args.max_size, camera=args.camera,
        threads=args.threads, seed=args.seed, min_registered=args.min_registered)
    code = run_command("sfm", lambda ctx: run(ctx, opts), args.ipc)
    # Leave without finalising the interpreter: a stopped pycolmap stage that takes no cancel token
    # may still be computing on its thread. Every event is flushed as it is written and every file
    # is written atomically, so nothing is lost.
    sys.stderr.flush()
    os._exit(code)
