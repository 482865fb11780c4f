#!/usr/bin/env python3
"""Splatwork's developer entry point. Needs only Python 3.11 on PATH.

    python3.11 dev.py demo     create .venv if needed, then run the end-to-end demo into out/
    python3.11 dev.py test     create .venv if needed, then run ruff and the whole test suite
    python3.11 dev.py build    build the extension zips (per platform) into dist/
    python3.11 dev.py bench    run the benchmarks in benchmarks/

Extra arguments after the command go to the tool (pytest, the demo, the builder).
The environment is (re)installed only when requirements.txt or constraints.txt changed.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".splatwork-installed"
LOCK_FILES = ("requirements.txt", "constraints.txt")


def env_hash() -> str:
    digest = hashlib.sha256()
    for name in LOCK_FILES:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_env() -> None:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"error: Splatwork's environment needs Python 3.11 (bpy 5.0 is built for it), "
                 f"this is {sys.version.split()[0]}: run it as 'python3.11 dev.py ...'")
    if not PY.exists():
        print(f"creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = env_hash()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("installing the pinned environment (first time: a few minutes) ...", flush=True)
    subprocess.run(
        [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-r", str(ROOT / "requirements.txt"), "-c", str(ROOT / "constraints.txt")],
        check=True,
    )
    STAMP.write_text(wanted)


def run(args: list[str]) -> int:
    return subprocess.run([str(PY), *args], cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in ("demo", "test", "build", "bench", "env"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    ensure_env()
    if command == "env":
        return 0
    if command == "demo":
        return run(["tools/demo.py", *rest])
    if command == "build":
        return run(["tools/build_extension.py", *rest])
    if command == "bench":
        return run(["benchmarks/run_all.py", *rest])
    # test: lint first (fast), then the suite; pytest's "no tests ran" (5) is a failure too.
    code = run(["-m", "ruff", "check", "."])
    if code != 0:
        return code
    code = run(["-m", "pytest", *rest])
    return 1 if code == 5 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
