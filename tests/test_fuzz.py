"""A short mutation-fuzzing run of every reader (``tests/fuzzing.py``; the long run is ``benchmarks/bench_fuzz.py``).

Every input must be read or refused with a FormatError naming the file: no other exception, no hang,
no MemoryError under the workers' address-space cap, no dead worker. A failure names the seed and the
input number; ``fuzzing.reproduce(fuzzing.build_seeds(), seed, index, folder)`` writes that input.
"""
from __future__ import annotations

import os

import pytest
from fuzzing import SHARED_SPLATS, build_seeds, family_seeds, plan, run

WORKERS = min(2, os.cpu_count() or 1)
# Peak Python-heap memory of one read over (input size + 64 KiB). A reader returns float32 arrays,
# 236 bytes a splat at SH degree 3, plus transient copies of about the same size. The densest inputs
# are compressed: real SPZ v4 holds a splat in 14.7 bytes (biker.spz, measured ratio 17), SuperSplat
# PLY in 16 (ratio 10). 64 leaves room for those and catches any read that allocates from a count
# the file cannot back (those ask for gigabytes from kilobytes).
MAX_MEMORY_RATIO = 64


def _fuzz(seeds, inputs: int):
    report = run(seeds, plan(seeds, inputs), workers=WORKERS, timeout=10.0, memory_limit=1 << 30)
    failures = "\n".join(f"{f['outcome']}: seed {f['seed']!r} input {f['index']}: {f['detail']}"
                         for f in report.failures[:10])
    assert not report.failures, f"{len(report.failures)} failing inputs out of {report.total}:\n{failures}"
    assert report.max_ratio < MAX_MEMORY_RATIO, (
        f"input {report.max_ratio_input} used {report.max_ratio:.0f}x its size in memory")
    return report


def test_fuzzed_files_of_our_writers_read_or_raise_format_error():
    seeds = build_seeds(shared=None)
    report = _fuzz(seeds, 6000)
    assert report.total == 6000
    for label, counts in report.outcomes.items():  # the mutations reach both sides of every reader
        assert counts["ok"] and counts["format_error"], (label, counts)


def test_fuzzed_real_files_read_or_raise_format_error():
    if not SHARED_SPLATS.is_dir():
        pytest.skip(f"shared test data not found: {SHARED_SPLATS} (../shared/data is absent on a fresh clone)")
    seeds = [seed for seed in build_seeds() if seed.name.startswith("real:")]
    _fuzz(seeds, 600)


def test_fuzzed_job_files_arguments_machine_fields_photos_and_splats_are_taken_or_refused_in_one_line():
    """The families of tests/fuzzing.py that are not a reader's files: job files (numbers, nesting,
    sizes), the headless command's arguments, remote machine fields (read back by the real ssh -G and
    sh), photo headers claiming any size, and extreme splats given to every writer. Each input is
    accepted (and what that promises holds) or refused with one line naming what is wrong; never a
    traceback, a hang, or memory out of proportion."""
    seeds = family_seeds()
    report = _fuzz(seeds, 250 * len(seeds))
    for label, counts in report.outcomes.items():  # both sides of every family are reached
        assert counts["ok"] and counts["format_error"], (label, counts)
