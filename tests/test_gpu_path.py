"""The GPU path on a machine without a GPU: the environment check with real and hidden compilers, the
kernel probe and the rasterizer fallback, the device rule, and the kernel build failing cleanly."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import BRIDGE_PYTHON, ROOT

from bridge import device, envcheck, toolchain
from bridge.build_kernels import TEMP_PREFIX, cudart_link_dir, remove_leftovers
from bridge.protocol import BridgeError, decode_event
from bridge.raster import select_backend


def _bridge(args, env=None, timeout=180):
    proc = subprocess.run([BRIDGE_PYTHON, "-m", "bridge", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc, [e for e in map(decode_event, proc.stdout.splitlines()) if e is not None]


def _check(env):
    proc, _ = _bridge(["check", "--json"], env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_check_finds_the_real_nvcc_and_compiler_on_path():
    env = {**os.environ, "PATH": os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])}
    env.pop("CUDA_HOME", None), env.pop("CUDA_PATH", None)
    info = _check(env)
    nvcc = info["kernels"]["nvcc_found"]
    if not os.path.isfile("/usr/local/bin/nvcc"):
        pytest.skip("this machine has no /usr/local/bin/nvcc")
    assert nvcc and nvcc[0]["source"] == "PATH" and nvcc[0]["version"].startswith("13."), nvcc
    compiler = info["kernels"]["compiler"]
    assert compiler and os.path.basename(compiler["path"]) in ("c++", "g++", "clang++"), compiler
    assert compiler["version"]
    text = "\n".join(t for _, t in envcheck.report_lines(info))
    assert f"nvcc {nvcc[0]['version']} ({nvcc[0]['path']})" in text and "C++ compiler: " in text
    assert info["cuda"] is False and info["kernels"]["state"] == "no_cuda"


def test_check_with_the_compilers_hidden(tmp_path):
    empty = tmp_path / "no-cuda"
    empty.mkdir()
    # PATH hides nvcc, gcc and nvidia-smi; CUDA_HOME, once set, is the only place torch's JIT looks.
    env = {**os.environ, "PATH": str(empty), "CUDA_HOME": str(empty)}
    env.pop("CXX", None)
    info = _check(env)
    assert info["kernels"]["nvcc_found"] == [] and info["kernels"]["nvcc"] is None
    assert info["kernels"]["compiler"] is None and info["gpu"] is None
    text = "\n".join(t for _, t in envcheck.report_lines(info))
    assert "No C++ compiler found" in text and "none found" in text and "No NVIDIA GPU found" in text


def test_check_by_path_still_prints_one_marked_line():
    proc = subprocess.run([BRIDGE_PYTHON, str(ROOT / "bridge" / "envcheck.py")], capture_output=True, text=True,
                          timeout=180, cwd="/")
    marked = [line for line in proc.stdout.splitlines() if line.startswith(envcheck.MARKER)]
    assert proc.returncode == 0 and len(marked) == 1, proc.stderr
    assert json.loads(marked[0][len(envcheck.MARKER):])["packages"]["torch"].startswith("2.13.0")


def test_report_says_what_to_install_when_kernels_cannot_be_built():
    info = {"cuda": True, "device": "GPU", "cuda_version": "12.8", "driver_fits": False,
            "gpu": {"name": "GPU", "driver": "535.1", "cuda": "11.8", "memory_free_mb": 1000, "memory_total_mb": 8000},
            "kernels": {"state": "unbuildable", "missing": "nvcc was not found", "nvcc": None, "compiler": None,
                        "nvcc_found": [], "hint": "Install the CUDA Toolkit 12.8"}}
    lines = envcheck.report_lines(info)
    errors = [t for level, t in lines if level == "error"]
    assert any("older than torch's CUDA 12.8: update the driver" in t for t in errors)
    assert any(t.startswith("gsplat's CUDA kernels cannot be built: nvcc was not found. Install the CUDA Toolkit")
               and "PyTorch rasterizer" in t for t in errors)
    assert any("1,000 MB of 8,000 MB free" in t for _, t in lines)


def test_the_installer_takes_cuda_13_where_the_driver_runs_it_and_nvidia_ships_the_compiler():
    # driver_cuda is nvidia-smi's "CUDA Version: X.Y" (driver 580 says 13.0), "" when it prints none
    linux, windows = ("linux", "x86_64"), ("win32", "AMD64")
    for driver in ("13.0", "13.1", "14.2"):
        assert toolchain.torch_build(driver, *linux) == toolchain.torch_build(driver, *windows) == "cu130"
    for driver in ("12.8", "12.2", "11.8", ""):
        assert toolchain.torch_build(driver, *linux) == toolchain.torch_build(driver, *windows) == "cu128"
    assert toolchain.torch_build("13.0", "linux", "aarch64") == "cu128"  # the extension ships for x86_64 only
    assert toolchain.torch_build(None, *linux) == toolchain.torch_build(None, *windows) == "cpu"
    assert toolchain.torch_build(None, "darwin", "arm64") == toolchain.torch_build("13.0", "darwin", "arm64") == "cpu"
    build, gpu = envcheck.torch_build_here()  # this machine: no nvidia-smi
    assert (build, gpu) == ("cpu", None)


def test_the_advice_when_no_nvcc_matches_torch():
    linux = ("linux", "x86_64")
    toolkit = "install the CUDA Toolkit 12.8 from developer.nvidia.com/cuda-downloads (nvcc is part of it)"
    assert toolchain.missing_nvcc_advice("12.8", "12.4", *linux) == (
        "Update the NVIDIA driver to 580 or newer (CUDA 13) from nvidia.com/drivers and press Install Training "
        "Environment again (then no CUDA Toolkit is needed), or " + toolkit)
    assert toolchain.missing_nvcc_advice("12.8", "13.0", "win32", "AMD64") == (
        "Press Install Training Environment again: with this driver it installs torch's CUDA 13 build and "
        "NVIDIA's compiler wheels, no CUDA Toolkit needed; or " + toolkit)
    assert toolchain.missing_nvcc_advice("12.8", "13.0", "linux", "aarch64") == "I" + toolkit[1:]
    pip = ("pip install nvidia-cuda-nvcc==13.0.* nvidia-cuda-cccl==13.0.* nvidia-cuda-crt==13.0.* "
           "nvidia-nvvm==13.0.* nvidia-cuda-runtime==13.0.*")
    assert toolchain.missing_nvcc_advice("13.0", "13.0", *linux) == (
        "Press Install Training Environment again (it installs NVIDIA's CUDA 13 compiler wheels), or install "
        "them into the training environment: " + pip)
    assert toolchain.missing_nvcc_advice("13.0", "13.0", "linux", "aarch64") == (
        f"Install NVIDIA's CUDA 13 compiler into the training environment ({pip}) or the CUDA Toolkit")


def test_the_runtime_wheel_gets_the_unversioned_cudart_torch_links_with(tmp_path):
    """NVIDIA's runtime wheel has lib/libcudart.so.13 only; torch's JIT links with -lcudart."""
    wheel = tmp_path / "nvidia" / "cu13"
    (wheel / "lib").mkdir(parents=True)
    (wheel / "lib" / "libcudart.so.13").write_bytes(b"")
    folder = cudart_link_dir(str(wheel), str(tmp_path / "build" / "link"))
    if sys.platform == "win32":  # the Windows wheel has lib/x64/cudart.lib, where torch looks
        assert folder is None
        return
    assert os.readlink(os.path.join(folder, "libcudart.so")) == str(wheel / "lib" / "libcudart.so.13")
    assert cudart_link_dir(str(wheel), folder) == folder  # again: the link is there already
    (wheel / "lib" / "libcudart.so").symlink_to("libcudart.so.13")  # a CUDA Toolkit's layout
    assert cudart_link_dir(str(wheel), str(tmp_path / "other")) is None
    assert cudart_link_dir(str(tmp_path / "nothing"), str(tmp_path / "other")) is None
    assert not (tmp_path / "other").exists()


def test_the_kernel_probe_and_its_test_hook_go_through_one_path():
    code = "from bridge.raster import kernels; print(kernels.kernels_unavailable())"
    plain = subprocess.run([BRIDGE_PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    off = subprocess.run([BRIDGE_PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**os.environ, "SPLATWORK_GSPLAT_KERNELS": "off"})
    assert "CUDA is not available to torch" in plain.stdout, plain.stderr
    assert "turned off (SPLATWORK_GSPLAT_KERNELS=off)" in off.stdout, off.stderr
    assert select_backend("auto", "cpu", torch.float64) == "torch"


def test_the_device_rule():
    assert device.choose("auto", True, False, "") == device.Choice("cuda", "gsplat")
    fallback = device.choose("auto", True, False, "gsplat's CUDA kernels are not built yet")
    assert (fallback.device, fallback.backend) == ("cuda", "torch")
    assert "not built yet" in fallback.notice and "Build GPU Kernels" in fallback.notice
    assert "slower" in fallback.notice
    assert device.choose("cuda-torch", True, False, "") == device.Choice("cuda", "torch")
    assert device.choose("auto", False, True, "x") == device.Choice("mps", "torch")
    assert device.choose("auto", False, False, "x") == device.Choice("cpu", "torch")
    assert device.choose("cpu", True, True, "") == device.Choice("cpu", "torch")
    # With the compiled rasterizer (Warp) importable: gsplat first, then Warp on the GPU, then on the CPU.
    assert device.choose("auto", True, False, "", warp_unavailable="") == device.Choice("cuda", "gsplat")
    on_gpu = device.choose("auto", True, False, "gsplat's CUDA kernels are not built yet", warp_unavailable="")
    assert (on_gpu.device, on_gpu.backend) == ("cuda", "warp") and "Build GPU Kernels" in on_gpu.notice
    assert device.choose("auto", False, True, "x", warp_unavailable="") == device.Choice("cpu", "warp")
    assert device.choose("cpu", True, True, "", warp_unavailable="") == device.Choice("cpu", "warp")
    assert device.choose("cuda-torch", True, False, "", warp_unavailable="") == device.Choice("cuda", "torch")
    assert device.choose("mps", False, True, "", warp_unavailable="") == device.Choice("mps", "torch")
    why = device.choose("auto", False, False, "x", warp_unavailable="warp-lang does not import (No module)")
    assert why.backend == "torch" and "warp-lang does not import" in why.reason
    with pytest.raises(BridgeError) as err:
        device.choose("cuda", True, False, "gsplat's CUDA kernels are not built yet")
    assert err.value.kind == "no_gsplat_kernels" and "cuda-torch" in err.value.hint
    for name in ("cuda", "cuda-torch"):
        with pytest.raises(BridgeError) as err:
            device.choose(name, False, False, "")
        assert err.value.kind == "no_cuda"
    with pytest.raises(BridgeError) as err:
        device.choose("mps", False, False, "")
    assert err.value.kind == "no_mps"


def test_training_on_cuda_without_cuda_fails_at_once_with_a_hint(tmp_path):
    for name in ("cuda", "cuda-torch"):
        proc, events = _bridge(["train", "--model", str(tmp_path), "--images", str(tmp_path), "--out",
                                str(tmp_path / "out"), "--device", name, "--ipc"])
        assert proc.returncode == 2, proc.stderr
        assert events[-1].type == "error" and events[-1].kind == "no_cuda" and "auto" in events[-1].hint


def test_build_kernels_fails_cleanly_without_a_gpu(tmp_path):
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    proc, events = _bridge(["build-kernels", "--ipc"], env=env)
    assert proc.returncode == 1, proc.stderr
    assert events[0].type == "hello" and events[-1].type == "error" and events[-1].kind == "no_cuda"
    assert events[-1].message and events[-1].hint
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").iterdir())
    proc, events = _bridge(["build-kernels", "--if-possible", "--ipc"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert [e.type for e in events] == ["hello", "log", "done"]
    assert events[1].level == "warning" and "not built" in events[1].message
    assert events[2].metrics["built"] is False


def test_leftovers_of_killed_builds_are_removed(tmp_path):
    dead = tmp_path / f"{TEMP_PREFIX}999999999"
    live = tmp_path / f"{TEMP_PREFIX}{os.getpid()}"
    poisoned = tmp_path / "gsplat_cuda"
    for folder in (dead, live, poisoned):
        folder.mkdir()
    (poisoned / "lock").write_text("")
    (poisoned / "ops.cuda.o").write_text("half")
    removed = remove_leftovers(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(poisoned)]) and live.is_dir()
    poisoned.mkdir()
    (poisoned / ("gsplat_cuda.pyd" if sys.platform == "win32" else "gsplat_cuda.so")).write_text("")
    assert remove_leftovers(str(tmp_path)) == [] and poisoned.is_dir()


def test_the_gpu_raster_benchmark_runs_with_tiny_settings():
    proc = subprocess.run([BRIDGE_PYTHON, str(ROOT / "benchmarks" / "bench_raster_gpu.py"), "--device", "cpu",
                           "--splats", "300", "--width", "32", "--height", "24", "--steps", "2", "--warmup", "1"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"][0]["backend"] == "torch" and result["rows"][0]["steps_per_sec"] > 0
    assert result["rows"][1]["backend"] == "warp" and result["rows"][1]["steps_per_sec"] > 0
    assert result["rows"][2] == {"backend": "gsplat", "skipped": "gsplat needs CUDA tensors"}
