"""The training environment's pins have a wheel for every Python and platform the installer serves.

*Install Training Environment* makes its venv from Blender's own Python (3.11 in Blender 5.0, 3.13
from 5.1), on each platform the extension ships for. Here each row of ``BRIDGE_PINS`` is resolved
against the package index (``pip install --dry-run --only-binary=:all: --python-version ...
--platform ...``): only metadata is fetched, no wheel is installed. torch's own CUDA/CPU indexes are
not reachable from CI, so torch is resolved against PyPI, which has the same version for each of
these platforms. Dependencies are not followed (``--no-deps``): each pin is checked for a wheel,
which is what goes wrong when a Python version moves on (numpy 1.26 has none for 3.13).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64", "macosx_11_0_arm64"],
}


@pytest.fixture(scope="module")
def prefs(splatwork):
    return splatwork.addon.setup.preferences


def _index_reachable() -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "plyfile", "--disable-pip-version-check"],
                           capture_output=True, text=True, timeout=120)
    return probe.returncode == 0


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
@pytest.mark.parametrize("python", [(3, 11), (3, 13)], ids=["py3.11", "py3.13"])
def test_every_pin_has_a_wheel(prefs, tmp_path, python, platform):
    if not _index_reachable():
        if os.environ.get("CI"):
            pytest.fail("the package index is not reachable from CI: the pins cannot be checked")
        pytest.skip("the package index is not reachable from this machine")
    packages = prefs.bridge_packages(python)
    assert any(p.startswith("numpy==") for p in packages) and packages[0] == prefs.TORCH
    argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
            "--ignore-requires-python", "--only-binary=:all:", "--disable-pip-version-check",
            "--python-version", f"{python[0]}.{python[1]}", "--target", str(tmp_path / "target"), "-q"]
    for tag in PLATFORMS[platform]:
        argv += ["--platform", tag]
    result = subprocess.run([*argv, *packages], capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert result.returncode == 0, f"Python {python} on {platform}: " + " | ".join(errors or [result.stderr[-500:]])


@pytest.mark.parametrize("platform", ["linux-x64", "windows-x64"])
def test_the_cuda_13_compiler_wheels_exist_and_need_nothing_else(prefs, tmp_path, platform):
    """The installer's CUDA 13 route adds NVIDIA's compiler wheels on Linux and Windows x86_64. They are
    resolved with their dependencies (nvcc needs nvvm, crt and the runtime): every wheel pip picks is one
    of the pins, at the pinned version, so nothing drifts to a newer CUDA 13.x next to nvcc 13.0."""
    if not _index_reachable():
        if os.environ.get("CI"):
            pytest.fail("the package index is not reachable from CI: the pins cannot be checked")
        pytest.skip("the package index is not reachable from this machine")
    report = tmp_path / "report.json"
    argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
            "--disable-pip-version-check", "--python-version", "3.11", "--target", str(tmp_path / "target"),
            "--report", str(report), "-q"]
    for tag in PLATFORMS[platform]:
        argv += ["--platform", tag]
    result = subprocess.run([*argv, *prefs.CUDA13_COMPILER], capture_output=True, text=True, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert result.returncode == 0, f"{platform}: " + " | ".join(errors or [result.stderr[-500:]])
    picked = {f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.loads(report.read_text())["install"]}
    assert picked == set(prefs.CUDA13_COMPILER)


def test_an_untested_python_is_refused_clearly(prefs):
    with pytest.raises(prefs.UnsupportedPython, match="Python 3.9 .*tested: 3.11, 3.13"):
        prefs.bridge_packages((3, 9))
    assert "numpy==1.26.4" in prefs.bridge_packages((3, 11))
    assert "numpy==2.5.5" in prefs.bridge_packages((3, 13))
