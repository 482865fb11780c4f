"""``python -m bridge build-kernels``: build gsplat's CUDA kernels once, so training never compiles.

    python -m bridge build-kernels [--if-possible] [--max-jobs N] [--ipc]

Runs gsplat's own JIT build in a child process, into a temporary folder next to torch's extension
cache, with ``MAX_JOBS`` (default: the CPU count) and ``TORCH_CUDA_ARCH_LIST`` (default: this GPU's
compute capability) and ``CUDA_HOME`` at the nvcc that matches torch's CUDA. Progress comes from
ninja's ``[k/N]`` lines. Only a finished build is moved into the cache, so a failed, cancelled or
killed build never leaves a half-built cache behind; leftovers of killed builds are removed by the
next run. ``--if-possible`` (the installer's step) ends without error when this machine cannot build
(no GPU, no toolchain), with a warning that says why.
"""
from __future__ import annotations

import argparse
import glob
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from . import protocol
from .protocol import BridgeError
from .runner import RunContext, run_command

TEMP_PREFIX = ".splatwork-build-"
# Run in the child: gsplat's import builds (or loads) the kernels; _C is None when it could not.
BUILD_SNIPPET = ("import torch\nfrom gsplat.cuda._backend import _C\n"
                 "raise SystemExit(0 if _C is not None else 'gsplat found no CUDA toolkit')\n")
NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def prerequisites() -> tuple[dict | None, str, str]:
    """(nvcc, problem, hint): what stops a build on this machine ("" when nothing)."""
    import torch

    from .toolchain import host_compiler, missing_compiler_advice, missing_nvcc_advice, nvidia_smi, pick_nvcc

    if not torch.version.cuda:
        return None, f"torch {torch.__version__} is a CPU-only build", \
            "Install Training Environment on a machine with an NVIDIA GPU installs the CUDA build."
    if not torch.cuda.is_available():
        return None, "CUDA is not available to torch (no NVIDIA GPU, or its driver is too old)", \
            "Check Environment says which; update the NVIDIA driver."
    nvcc, why = pick_nvcc(torch.version.cuda)
    if nvcc is None:
        driver = (nvidia_smi() or {}).get("cuda", "")
        return None, f"cannot build gsplat's kernels: {why}", missing_nvcc_advice(torch.version.cuda, driver) + "."
    if host_compiler() is None:
        return None, "cannot build gsplat's kernels: no C++ compiler found", missing_compiler_advice() + "."
    return nvcc, "", ""


def remove_leftovers(root: str) -> list[str]:
    """Folders of builds that were killed (their process is gone), and a cache that an interrupted JIT
    of gsplat's own left with a lock but no library."""
    removed = []
    for path in glob.glob(os.path.join(root, TEMP_PREFIX + "*")):
        pid = path.rsplit("-", 1)[-1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    from .raster.kernels import NAME, library_file

    final = os.path.join(root, NAME)
    if os.path.isdir(final) and not os.path.isfile(os.path.join(final, library_file())):
        shutil.rmtree(final, ignore_errors=True)
        removed.append(final)
    return removed


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; a live build keeps its files open
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_env(nvcc: dict, temp_root: str, max_jobs: int | None) -> dict[str, str]:
    import torch

    env = dict(os.environ)
    env["TORCH_EXTENSIONS_DIR"] = temp_root
    env["CUDA_HOME"] = nvcc["home"]
    env["PATH"] = os.pathsep.join([os.path.dirname(nvcc["path"]), env.get("PATH", "")])
    link_dir = cudart_link_dir(nvcc["home"], os.path.join(temp_root, "link"))
    if link_dir:
        env["LIBRARY_PATH"] = os.pathsep.join(filter(None, [link_dir, env.get("LIBRARY_PATH")]))
    env["MAX_JOBS"] = str(max_jobs or env.get("MAX_JOBS") or max(1, os.cpu_count() or 1))
    if not env.get("TORCH_CUDA_ARCH_LIST"):
        major, minor = torch.cuda.get_device_capability(0)
        env["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    env["VERBOSE"] = "1"  # ninja's [k/N] lines are the progress
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cudart_link_dir(home: str, folder: str) -> str | None:
    """A folder holding the ``libcudart.so`` that torch's JIT links with (``-lcudart``), when the CUDA
    home has only the versioned library: NVIDIA's runtime wheel (``nvidia-cuda-runtime``) ships
    ``lib/libcudart.so.13`` alone. The built module then needs ``libcudart.so.13``, which torch has loaded
    already. None when nothing is missing (a CUDA Toolkit; Windows, where the wheel has ``cudart.lib``)."""
    if os.name == "nt" or any(os.path.exists(os.path.join(home, lib, "libcudart.so")) for lib in ("lib64", "lib")):
        return None
    versioned = sorted(glob.glob(os.path.join(home, "lib*", "libcudart.so.*")))
    if not versioned:
        return None
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, "libcudart.so")
    if not os.path.lexists(link):
        os.symlink(versioned[0], link)
    return folder


def build(ctx: RunContext, max_jobs: int | None = None) -> str:
    """Build into a temporary folder, then move the result into torch's cache; returns its folder.
    A BridgeError when the build fails or is stopped; nothing half-built is left either way."""
    from .raster.kernels import NAME, build_dir, extensions_root, library_file

    nvcc, problem, hint = prerequisites()
    if nvcc is None:
        raise BridgeError("no_toolchain" if torch_has_cuda() else "no_cuda", problem, hint=hint)
    root = extensions_root()
    os.makedirs(root, exist_ok=True)
    for path in remove_leftovers(root):
        ctx.log(f"removed {path}, left by an interrupted build")
    temp_root = os.path.join(root, f"{TEMP_PREFIX}{os.getpid()}")
    env = build_env(nvcc, temp_root, max_jobs)
    ctx.emit(protocol.Stage(stage="compiling_cuda", message=(
        f"nvcc {nvcc['version']} ({nvcc['path']}), MAX_JOBS={env['MAX_JOBS']}, "
        f"TORCH_CUDA_ARCH_LIST={env['TORCH_CUDA_ARCH_LIST']}")))
    try:
        _run_build(ctx, env)
        final = build_dir()
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(os.path.join(temp_root, NAME), final)
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)
    if not os.path.isfile(os.path.join(final, library_file())):
        raise BridgeError("kernel_build_failed", f"the build finished without {library_file()} in {final}",
                          hint="Build GPU Kernels again; the log has the compiler's output.")
    return final


def torch_has_cuda() -> bool:
    import torch

    return bool(torch.version.cuda) and torch.cuda.is_available()


def _run_build(ctx: RunContext, env: dict[str, str]) -> None:
    popen = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if os.name == "nt":
        popen["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        popen["start_new_session"] = True  # nvcc and ninja in one group: a stop ends them all
    proc = subprocess.Popen([sys.executable, "-c", BUILD_SNIPPET], **popen)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip())
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    tail: list[str] = []
    start, done = time.monotonic(), False
    try:
        while not done:
            if "stop" in ctx.commands.poll():
                raise BridgeError("cancelled", "the kernel build was cancelled; nothing half-built was kept",
                                  hint="Build GPU Kernels starts it again; until then training uses the "
                                       "PyTorch rasterizer on the GPU.")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                done = True
                continue
            print(line, file=sys.stderr, flush=True)  # the log keeps the compiler's output
            tail = [*tail[-40:], line]
            step = NINJA_STEP.match(line)
            if step:
                k, n = int(step.group(1)), int(step.group(2))
                elapsed = time.monotonic() - start
                ctx.emit(protocol.Progress(step=k, total=n, stage="compiling_cuda", elapsed_sec=elapsed,
                                           eta_sec=elapsed / k * (n - k)))
        code = proc.wait()
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    if code != 0:
        errors = [t for t in tail if "error" in t.lower()] or tail[-1:] or [f"exit code {code}"]
        raise BridgeError("kernel_build_failed", f"gsplat's CUDA kernels did not build: {errors[-1][:300]}",
                          hint="The log has the compiler's output. Training still runs on the GPU with the "
                               "PyTorch rasterizer (slower).")


def _kill_group(proc: subprocess.Popen) -> None:
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def run(ctx: RunContext, args: argparse.Namespace) -> protocol.Done:
    import torch

    ctx.hello(device="cuda" if torch.cuda.is_available() else "cpu", backend="gsplat",
              versions={"torch": torch.__version__})
    if args.if_possible:
        nvcc, problem, hint = prerequisites()
        if nvcc is None:
            ctx.log(f"gsplat's kernels were not built: {problem}. {hint}", level="warning")
            return protocol.Done(status="completed", metrics={"built": False, "reason": problem})
    start = time.monotonic()
    folder = build(ctx, args.max_jobs)
    from .raster import kernels

    kernels.reset()
    reason = kernels.kernels_unavailable()
    if reason:
        raise BridgeError("kernel_build_failed", f"the kernels were built into {folder} but {reason}",
                          hint="Build GPU Kernels again; the log has the details.")
    return protocol.Done(status="completed", outputs={"kernels": folder},
                         metrics={"built": True, "seconds": time.monotonic() - start})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge build-kernels", description=__doc__.split("\n")[0])
    parser.add_argument("--if-possible", action="store_true",
                        help="end without error (a warning) when this machine cannot build them")
    parser.add_argument("--max-jobs", type=int, help="parallel compile jobs (default MAX_JOBS, else the CPUs)")
    parser.add_argument("--ipc", action="store_true", help="driven by a program: events on stdout, EOF stops")
    args = parser.parse_args(argv)
    return run_command("build-kernels", lambda ctx: run(ctx, args), args.ipc)
