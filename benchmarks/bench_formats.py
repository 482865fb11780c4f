"""Read and write speed of every splat format, next to a plain ``numpy.fromfile`` of the same bytes.

    .venv/bin/python benchmarks/bench_formats.py [--splats 1000000] [--repeat 3] [--read-repeat 7] [--dir /tmp]

Prints a Markdown table (medians of ``--repeat`` runs; warm page cache, as right after a save). On
a shared machine the CPU-time ratio (user + system time of this process) is the steadier figure.
MB/s counts the file's bytes, so compressed formats look slow per MB while being fast per splat:
the splats/s column compares them fairly. ``fromfile`` is the practical limit for reading a file.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.formats import SplatSet, read_splats, write_splats  # noqa: E402

CASES = [  # (label, format, writer options, file suffix)
    ("PLY (3DGS)", "ply", {}, ".ply"),
    ("compressed PLY", "compressed_ply", {}, ".compressed.ply"),
    (".splat", "splat", {}, ".splat"),
    ("SPZ v3 (gzip)", "spz", {"version": 3}, ".spz"),
    ("SPZ v4 (zstd)", "spz", {"version": 4}, ".v4.spz"),
]


def scene(n: int, seed: int = 0) -> SplatSet:
    """A trained-looking scene: clustered positions, small scales, mostly opaque, small SH."""
    rng = np.random.default_rng(seed)
    f = np.float32
    centres = rng.normal(size=(64, 3)) * 5
    return SplatSet(
        means=(centres[rng.integers(0, 64, n)] + rng.normal(size=(n, 3))).astype(f),
        scales=rng.normal(-4.5, 1.0, (n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),
        opacities=rng.normal(2.0, 2.0, n).astype(f),
        sh_dc=rng.normal(0.0, 0.8, (n, 3)).astype(f),
        sh_rest=rng.normal(0.0, 0.1, (n, 15, 3)).astype(f),
    )


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    """Wall and CPU (user + system, this process) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splats", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="writes per format")
    parser.add_argument("--read-repeat", type=int, default=7, help="reads (and fromfile baselines) per format")
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args(argv)

    splats = scene(args.splats)
    print(f"{args.splats:,} splats, SH degree 3; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, numpy {np.__version__}, Python {platform.python_version()}; "
          f"medians of {args.repeat} writes and {args.read_repeat} reads\n")
    print("| format | file MB | write MB/s | write Msplats/s | read MB/s | read Msplats/s | fromfile MB/s "
          "| read / fromfile (wall) | read / fromfile (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for label, fmt, options, suffix in CASES:
            path = Path(folder) / f"bench{suffix}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                write, _ = medians([timed(write_splats, path, splats, fmt=fmt, **options)
                                    for _ in range(args.repeat)])
            # Reads and the fromfile baseline alternate, so both see the same load on a shared machine.
            reads, raws = [], []
            for _ in range(args.read_repeat):
                reads.append(timed(read_splats, path))
                raws.append(timed(np.fromfile, path, np.uint8))
            (read, read_cpu), (raw, raw_cpu) = medians(reads), medians(raws)
            mb, m = path.stat().st_size / 1e6, args.splats / 1e6
            print(f"| {label} | {mb:.1f} | {mb / write:.0f} | {m / write:.2f} | {mb / read:.0f} | {m / read:.2f} "
                  f"| {mb / raw:.0f} | {read / raw:.1f}x | {read_cpu / raw_cpu:.1f}x |", flush=True)
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
