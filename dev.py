#!/usr/bin/env python3
"""Splatwork's developer entry point. Needs Python 3.11 on PATH (and 3.13 to test Blender 5.1-5.3).

    python3.11 dev.py demo     create .venv if needed, then run the end-to-end demo into out/
    python3.11 dev.py test     create the environments if needed, then run ruff and the test suite on
                               every supported Blender: the whole suite on bpy 5.0.1 (.venv, Python
                               3.11), the tests that use Blender on bpy 5.1.2, 5.2.3 and 5.3.0 (.venvs/,
                               Python 3.13, with the bridge started from .venv)
    python3.11 dev.py build    build the extension zips (per platform) into dist/
    python3.11 dev.py bench    run the benchmarks in benchmarks/
    python3.11 dev.py env      only create (or update) .venv

Extra arguments after the command go to the tool (pytest, the demo, the builder). For `test`,
`--blender 5.3.0[,5.0.1...]` picks the Blender versions to run on (default: all supported).
Environments are (re)installed only when their requirements or constraints changed. Python 3.13 is
looked for as $SPLATWORK_PYTHON313, python3.13 on PATH, then pyenv's versions.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = "Scripts" if os.name == "nt" else "bin"
PY = VENV / BIN / ("python.exe" if os.name == "nt" else "python")
STAMP_NAME = ".splatwork-installed"
LOCK_FILES = ("requirements.txt", "constraints.txt")
BLENDER_LOCK_FILES = ("requirements-blender.txt", "constraints-blender.txt")
# The bpy in .venv (requirements.txt) and the other Blender versions the suite runs on.
MAIN_BLENDER = "5.0.1"
OTHER_BLENDERS = ("5.3.0", "5.2.3", "5.1.2")
SUPPORTED_BLENDERS = (*OTHER_BLENDERS, MAIN_BLENDER)
NEWEST_BLENDER = max(SUPPORTED_BLENDERS, key=lambda v: tuple(map(int, v.split("."))))


def _hash(files, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for name in files:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def _install(env: Path, python: str, wanted: str, pip_args: list[str], label: str) -> Path:
    """(Re)create ``env`` with ``python`` and pip-install ``pip_args`` unless its stamp says ``wanted``."""
    env_python = env / BIN / ("python.exe" if os.name == "nt" else "python")
    stamp = env / STAMP_NAME
    if env_python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return env_python
    if not env_python.exists():
        print(f"creating {env} ...", flush=True)
        if python == sys.executable:
            venv.EnvBuilder(with_pip=True, clear=True).create(env)
        else:
            subprocess.run([python, "-m", "venv", "--clear", str(env)], check=True)
    print(f"installing the pinned {label} environment (first time: a few minutes) ...", flush=True)
    subprocess.run([str(env_python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pip_args],
                   check=True)
    stamp.write_text(wanted)
    return env_python


def ensure_env() -> Path:
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"error: Splatwork's environment needs Python 3.11 (bpy 5.0 is built for it), "
                 f"this is {sys.version.split()[0]}: run it as 'python3.11 dev.py ...'")
    return _install(VENV, sys.executable, _hash(LOCK_FILES),
                    ["-r", str(ROOT / "requirements.txt"), "-c", str(ROOT / "constraints.txt")], "main")


def find_python313() -> str | None:
    """A Python 3.13 that really runs: pyenv's shims exist on PATH for versions that are not active
    (and fail with exit 127), so each candidate is asked for its version."""
    candidates = [os.environ.get("SPLATWORK_PYTHON313", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3")), reverse=True)
    candidates.append(shutil.which("python3.13") or "")
    for candidate in candidates:
        if not candidate or not os.path.isfile(candidate):
            continue
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def ensure_blender_env(version: str) -> Path:
    """A Python 3.13 environment with bpy ``version`` and the test tools (no torch)."""
    python = find_python313()
    if python is None:
        sys.exit(f"error: testing Blender {version} needs Python 3.13 (bpy {version} is built for it), and none "
                 "was found: install it (e.g. pyenv install 3.13), set SPLATWORK_PYTHON313 to it, or run "
                 f"'python3.11 dev.py test --blender {MAIN_BLENDER}' to test only Blender {MAIN_BLENDER}")
    return _install(ROOT / ".venvs" / f"blender-{version}", python, _hash(BLENDER_LOCK_FILES, version),
                    [f"bpy=={version}", "-r", str(ROOT / "requirements-blender.txt"),
                     "-c", str(ROOT / "constraints-blender.txt")], f"Blender {version}")


def run(args: list[str], python: Path = PY, env: dict | None = None) -> int:
    return subprocess.run([str(python), *args], cwd=ROOT, env=env).returncode


def blender_test_files() -> list[str]:
    """Test modules with at least one test that takes a Blender fixture (what the other Blender
    versions run; the rest need the main environment's torch, scipy or scikit-image)."""
    uses_blender = re.compile(r"def test_\w+\([^)]*\b(blender|splatwork|blender_with_splatwork|synthetic_scene)\b")
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if uses_blender.search(p.read_text()))


def _counts(junit: Path) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError):
        return counts
    for suite in root.iter("testsuite"):
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts["passed"] += tests - skipped - failed
        counts["failed"] += failed
        counts["skipped"] += skipped
    return counts


def ensure_sshd() -> None:
    """tests/test_remote.py starts its own sshd on 127.0.0.1: install OpenSSH's server if it is missing and
    this runs as root with apt-get (a CI container), without letting the package start a system sshd."""
    if shutil.which("sshd") or os.path.isfile("/usr/sbin/sshd"):
        return
    if os.name == "nt" or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("note: no sshd here; the remote-machine tests will skip (apt-get install openssh-server)", flush=True)
        return
    print("installing openssh-server for the remote-machine tests ...", flush=True)
    policy = Path("/usr/sbin/policy-rc.d")
    made = not policy.exists()
    if made:  # Debian's switch that keeps the package's postinst from starting a daemon on port 22
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env)
            subprocess.run(["apt-get", "install", "-y", "-q", "openssh-server"], env=env)
    finally:
        if made:
            policy.unlink()


WEB_TOOLS = ROOT / "tools" / "web"


def _apt_install(*packages: str) -> bool:
    """Install Debian packages when this runs as root with apt-get (a CI container); False otherwise."""
    if os.name == "nt" or os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env)
        return subprocess.run(["apt-get", "install", "-y", "-q", *packages], env=env).returncode == 0
    return True


def ensure_web_tools() -> None:
    """The glTF tests read our files with someone else's readers: the glTF Validator and Babylon.js in
    headless Chromium. Chromium comes from Debian's packages, the npm packages from
    tools/web/package-lock.json (npm ci: pinned, no install scripts); where that cannot be done the
    tests skip and say why."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        print("installing Chromium for the glTF browser test ...", flush=True)
        if not _apt_install("chromium"):
            print("note: no Chromium here; the glTF browser test will skip (apt-get install chromium)", flush=True)
    if not shutil.which("npm"):
        if not _apt_install("nodejs", "npm"):
            print("note: no npm here; the glTF Validator and browser tests will skip", flush=True)
            return
    stamp = WEB_TOOLS / "node_modules" / STAMP_NAME
    wanted = _hash(["tools/web/package-lock.json"])
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return
    print("installing the pinned npm packages of tools/web (npm ci) ...", flush=True)
    npm = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=WEB_TOOLS)
    if npm.returncode == 0:
        stamp.write_text(wanted)
    else:
        print("note: npm ci failed in tools/web; the glTF Validator and browser tests will skip", flush=True)


def test(rest: list[str]) -> int:
    versions = list(SUPPORTED_BLENDERS)
    if "--blender" in rest:
        i = rest.index("--blender")
        versions = rest[i + 1].split(",")
        del rest[i:i + 2]
        unknown = sorted(set(versions) - set(SUPPORTED_BLENDERS))
        if unknown:
            sys.exit(f"error: --blender {','.join(unknown)}: supported are {', '.join(SUPPORTED_BLENDERS)}")
    # Set every environment up first, so a missing Python 3.13 fails before minutes of tests.
    others = {v: ensure_blender_env(v) for v in OTHER_BLENDERS if v in versions}
    ensure_sshd()
    ensure_web_tools()
    code = run(["-m", "ruff", "check", "."])  # lint first (fast)
    if code != 0:
        return code
    results = {}
    reports = ROOT / "out" / "test-reports"
    reports.mkdir(parents=True, exist_ok=True)
    if MAIN_BLENDER in versions:
        junit = reports / f"blender-{MAIN_BLENDER}.xml"
        print(f"\n=== Blender {MAIN_BLENDER} (Python 3.11): the whole suite ===", flush=True)
        results[MAIN_BLENDER] = (run(["-m", "pytest", f"--junitxml={junit}", *rest]), junit)
    for version, python in others.items():
        junit = reports / f"blender-{version}.xml"
        print(f"\n=== Blender {version} (Python 3.13): the tests that use Blender ===", flush=True)
        env = dict(os.environ, SPLATWORK_TEST_BRIDGE_PYTHON=str(PY))
        files = [] if any(a.startswith("tests") for a in rest) else blender_test_files()  # or the caller's
        between = version not in (MAIN_BLENDER, NEWEST_BLENDER)
        marks = "blender and not ends_only" if between else "blender"  # see the marker in pyproject.toml
        args = ["-m", "pytest", "-m", marks, f"--junitxml={junit}", *files, *rest]
        results[version] = (run(args, python, env), junit)
    total = {"passed": 0, "failed": 0, "skipped": 0}
    print("\n=== Summary ===")
    worst = 0
    for version, (rc, junit) in results.items():
        counts = _counts(junit)
        for key in total:
            total[key] += counts[key]
        # pytest's "no tests ran" (5) is a failure too.
        worst = max(worst, 1 if rc == 5 else rc)
        print(f"Blender {version}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
              f" (exit {rc})")
    print(f"all: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return worst


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
    return test(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
