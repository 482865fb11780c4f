"""Preferences: the installer's commands, a real (offline, failing) install run, a real environment check."""
from __future__ import annotations

import os
import sys
import time

import pytest
from conftest import BRIDGE_PYTHON


def test_install_steps_are_argument_lists_with_the_right_torch_build(splatwork, tmp_path):
    prefs = splatwork.addon.setup.preferences
    env = str(tmp_path / "env")
    builds = {build: prefs.install_steps(env, build) for build in ("cpu", "cu128", "cu130")}
    python = prefs.managed_python(env)
    for steps in builds.values():
        assert all(isinstance(step, list) and all(isinstance(a, str) for a in step) for step in steps)
        assert steps[0] == [sys.executable, "-m", "venv", env]
        assert all(step[:4] == [python, "-m", "pip", "install"] for step in steps[1:4])
        assert "--progress-bar" in steps[2] and "raw" in steps[2]
        for package in ("gsplat==1.5.3", "pycolmap==4.2.1", "plyfile==1.1.3", "packaging==26.3"):
            assert package in steps[3]
    cpu, cu128, cu130 = builds["cpu"], builds["cu128"], builds["cu130"]
    # a CUDA build by its label, so installing again over another build replaces torch
    assert "torch==2.13.0" in cpu[2] and "torch==2.13.0+cu128" in cu128[2] and "torch==2.13.0+cu130" in cu130[2]
    # with an NVIDIA GPU gsplat's kernels are built during set-up (skipped with a warning without a toolchain)
    assert len(cpu) == 4
    assert cu128[4] == cu130[4] == [python, "-m", "bridge", "build-kernels", "--if-possible"]
    assert prefs.TORCH_INDEXES["cu128"] in cu128[2] and prefs.TORCH_INDEXES["cu130"] in cu130[2]
    if sys.platform != "darwin":
        assert prefs.TORCH_INDEXES["cpu"] in cpu[2]
    # CUDA 13: NVIDIA's compiler wheels come with the rest, from PyPI, so no CUDA Toolkit is needed
    assert cu130[3] == [*cu128[3], *prefs.CUDA13_COMPILER] and "nvidia-cuda-nvcc==13.0.88" in cu130[3]
    assert not any(p.startswith("nvidia-") for p in cu128[3] + cpu[3])


def test_a_failing_install_ends_cleanly_with_the_failing_step_named(splatwork, blender_with_splatwork, tmp_path,
                                                                    monkeypatch):
    """The real installer, with pip forbidden from reaching any index: the venv is made, pip fails fast."""
    prefs = splatwork.addon.setup.preferences
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    env = str(tmp_path / "env")
    steps = prefs.install_steps(env, "cpu")
    task = prefs.start_task("installation", steps[:1] + steps[2:3], block=True)
    assert os.path.isfile(prefs.managed_python(env)), "the venv step ran"
    assert task.state == "failed" and task.step == 1
    assert "exited with code" in task.error and "pip install" in task.error
    with pytest.raises(OSError):
        os.kill(task.process.proc.pid, 0)
    log = open(task.log_path).read()
    assert "-m venv" in log and "torch==2.13.0" in log


def test_check_environment_reports_packages_and_cuda_without_blocking(splatwork, blender_with_splatwork):
    prefs = splatwork.addon.setup.preferences
    task = prefs.check_environment(BRIDGE_PYTHON, block=False)
    deadline = time.monotonic() + 120
    while task.state == "running":
        assert time.monotonic() < deadline
        splatwork.addon.common.jobs.pump()
        time.sleep(0.05)
    result = prefs.CHECK_RESULT
    assert task.state == "completed", task.error
    assert result["packages"]["torch"].startswith("2.13.0")
    assert result["packages"]["gsplat"] == "1.5.3" and result["packages"]["plyfile"]
    assert result["cuda"] in (True, False) and result["executable"]


def test_build_gpu_kernels_fails_cleanly_and_the_install_step_only_warns(splatwork, blender_with_splatwork, tmp_path,
                                                                        monkeypatch):
    """The real bridge command through the preferences' task runner, on a machine without a GPU."""
    prefs = splatwork.addon.setup.preferences
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    task = prefs.start_task("kernel build", [prefs.build_kernels_step(BRIDGE_PYTHON)], block=True)
    assert task.state == "failed"
    assert "CPU-only build" in task.error or "CUDA is not available" in task.error, task.error
    assert "Install Training Environment" in task.error or "driver" in task.error  # the hint came along
    task = prefs.start_task("kernel build", [prefs.build_kernels_step(BRIDGE_PYTHON, if_possible=True)],
                            block=True)
    assert task.state == "completed" and task.warnings and "not built" in task.warnings[0]
    import bpy

    assert hasattr(bpy.types, "SPLATWORK_OT_build_kernels")


def test_the_bridges_keep_compiled_kernels_in_the_extensions_user_folder(splatwork, blender_with_splatwork,
                                                                         monkeypatch):
    """Enabling the add-on points the bridges it starts at the extension's user folder for the compiled
    rasterizer's kernel cache, unless the environment names one (the tests do, to share it across runs)."""
    import bpy

    runtime = splatwork.addon.setup.runtime
    monkeypatch.setenv(runtime.CACHE_ENV, "/somewhere/else")
    runtime.use_kernel_cache()
    assert os.environ[runtime.CACHE_ENV] == "/somewhere/else"
    monkeypatch.delenv(runtime.CACHE_ENV)
    runtime.use_kernel_cache()
    folder = bpy.utils.extension_path_user(runtime.ADDON_ID, path="kernel-cache")
    assert os.environ[runtime.CACHE_ENV] == folder and os.path.isdir(folder)
