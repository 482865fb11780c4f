"""Run every CPU benchmark in this folder, one process each, and print their Markdown tables.

    python3.11 dev.py bench [NAME ...]     e.g. `python3.11 dev.py bench formats raster`

GPU benchmarks (bench_*_gpu.py) run only where CUDA is available. Copy the tables into
BENCHMARKS.md together with the machine they ran on.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(name in s.stem for name in argv)]
    has_cuda = subprocess.run(
        [sys.executable, "-c", "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"]
    ).returncode == 0
    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.platform()}, {cpu}, python {platform.python_version()}")
    failed = []
    for script in scripts:
        if script.stem.endswith("_gpu") and not has_cuda:
            print(f"\n## {script.stem}: skipped (no CUDA here)")
            continue
        print(f"\n## {script.stem}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
