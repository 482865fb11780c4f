"""The long fuzzing run: every reader against at least 100,000 mutated inputs, and the families of inputs
that are not files (job files, the headless command's arguments, remote machine fields, photo headers,
the splat writers) against their own share (``tests/fuzzing.py``).

    .venv/bin/python benchmarks/bench_fuzz.py [--inputs 120000] [--families 25000] [--workers 2] [--timeout 10]
                                              [--start 1000000] [--json figures.json] [--failures DIR]

Seeds: our writers' files in every format and SPZ version, COLMAP binary and text models, and the
real splat files in ../shared/data/splats when present. Inputs are numbered from ``--start`` (the
test suite's short run uses 0 upward, so the default explores other inputs). Prints a Markdown table
of outcomes per reader, the largest peak-memory / (size + 64 KiB) ratio, the slowest input and the
seconds; writes every failing input to ``--failures`` for a bug report. Exits 1 when any input ends
in anything but a read or a FormatError.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import fuzzing  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=120_000, help="mutated files for the readers")
    parser.add_argument("--families", type=int, default=25_000,
                        help="inputs for the families of tests/fuzzing.py, shared equally (0: none)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds an input may take before it is a hang")
    parser.add_argument("--memory", type=int, default=1024, help="MiB each worker may map beyond its start")
    parser.add_argument("--start", type=int, default=1_000_000, help="number of the first input of each seed")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--failures", help="write each failing input into this folder")
    args = parser.parse_args(argv)

    readers = fuzzing.build_seeds() if args.inputs else []
    families = fuzzing.family_seeds() if args.families else []
    seeds = readers + families
    real = sum(seed.name.startswith("real:") for seed in seeds)
    print(f"{args.inputs:,} inputs from {len(readers)} seeds ({real} real files) and {args.families:,} from "
          f"{len(families)} families, {args.workers} workers, {args.timeout:g} s and {args.memory} MiB per input; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n",
          flush=True)
    inputs = ((fuzzing.plan(readers, args.inputs, args.start) if readers else [])
              + (fuzzing.plan(families, args.families, args.start) if families else []))
    random.Random(1).shuffle(inputs)
    report = fuzzing.run(seeds, inputs, workers=args.workers, timeout=args.timeout, memory_limit=args.memory << 20)
    print(report.table())
    name, index, size = report.max_ratio_input
    print(f"\n{report.total:,} inputs in {report.seconds:.0f} s ({report.total / report.seconds:.0f} inputs/s); "
          f"slowest input {report.slowest:.2f} s; largest memory ratio {report.max_ratio:.1f} "
          f"(seed {name}, input {index}, {size:,} bytes)")
    for failure in report.failures[:20]:
        print(f"- {failure['outcome']}: seed {failure['seed']} input {failure['index']}: {failure['detail']}")
    if args.failures and report.failures:
        for failure in report.failures:
            folder = Path(args.failures) / f"{failure['seed'].replace(':', '_')}-{failure['index']}"
            folder.mkdir(parents=True, exist_ok=True)
            fuzzing.reproduce(seeds, failure["seed"], failure["index"], folder)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "inputs": report.total, "seconds": report.seconds, "slowest_seconds": report.slowest,
            "max_memory_ratio": report.max_ratio, "max_memory_ratio_input": report.max_ratio_input,
            "outcomes": {label: dict(counts) for label, counts in report.outcomes.items()},
            "memory_ratio_by_reader": report.ratio_by_label, "failures": report.failures,
        }, indent=1))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
