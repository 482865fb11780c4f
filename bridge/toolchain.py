"""What building gsplat's CUDA kernels needs, found on this machine: the NVIDIA driver (nvidia-smi), nvcc
and a host C++ compiler. Standard library only, so the environment check can run it next to a broken torch.

``nvcc`` is looked for where torch's JIT looks (``CUDA_HOME`` / ``CUDA_PATH``, then ``PATH``, then the
default install folder) and in NVIDIA's CUDA 13 compiler wheel (``nvidia-cuda-nvcc``, which installs a
whole ``nvidia/cu13`` tree into site-packages). The CUDA 12 wheels (``nvidia-cuda-nvcc-cu12``) carry
only ptxas and libnvvm, not nvcc, so they are no route: :func:`torch_build` says which torch the
installer takes for a driver, and the advice texts say what to do where no nvcc is found.
"""
from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig

TIMEOUT = 20  # seconds for any one version query
# Where NVIDIA publishes its CUDA 13 compiler as wheels and the installer takes them (sys.platform,
# machine): with torch's CUDA 13 build they build gsplat's kernels without a CUDA Toolkit.
COMPILER_WHEEL_PLATFORMS = {("linux", "x86_64"), ("win32", "amd64")}
CUDA13_DRIVER = "580"  # the first NVIDIA driver that runs CUDA 13


def _run(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout + out.stderr if out.returncode == 0 else None


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def nvidia_smi() -> dict | None:
    """{"name", "driver", "cuda" (the newest CUDA the driver runs), "memory_free_mb", "memory_total_mb"}
    of the first NVIDIA GPU, or None when nvidia-smi is missing or finds none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    table = _run([smi, "--query-gpu=name,driver_version,memory.free,memory.total", "--format=csv,noheader,nounits"])
    if not table or not table.strip():
        return None
    fields = [f.strip() for f in table.strip().splitlines()[0].split(",")]
    if len(fields) < 4:
        return None
    header = _run([smi]) or ""
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    info = {"name": fields[0], "driver": fields[1], "cuda": cuda.group(1) if cuda else ""}
    for key, value in (("memory_free_mb", fields[2]), ("memory_total_mb", fields[3])):
        info[key] = int(value) if value.isdigit() else None
    return info


def driver_fits(driver_cuda: str, torch_cuda: str) -> bool:
    """Whether a driver that runs CUDA ``driver_cuda`` runs torch built with CUDA ``torch_cuda``: any
    driver of the same major version does (CUDA's minor-version compatibility), an older major does not."""
    have, need = version_tuple(driver_cuda), version_tuple(torch_cuda)
    return have is None or need is None or have[0] >= need[0]


def torch_build(driver_cuda: str | None, system: str = sys.platform, machine: str = platform.machine()) -> str:
    """Which torch build the installer takes: "cu130" (torch's CUDA 13 build plus NVIDIA's compiler wheels,
    so no CUDA Toolkit is needed) on Linux and Windows x86_64 when the driver runs CUDA 13, "cu128" with
    an older driver (or elsewhere), "cpu" without an NVIDIA GPU. ``driver_cuda`` is the newest CUDA the
    driver runs (nvidia-smi's "CUDA Version"; "" when it does not say), None when there is no NVIDIA GPU."""
    if driver_cuda is None or system == "darwin":
        return "cpu"
    version = version_tuple(driver_cuda)
    if version and version[0] >= 13 and (system, machine.lower()) in COMPILER_WHEEL_PLATFORMS:
        return "cu130"
    return "cu128"


def _wheel_cuda_homes() -> list[str]:
    # nvidia-cuda-nvcc (CUDA 13) installs bin/nvcc under site-packages/nvidia/cu13
    purelib = sysconfig.get_paths()["purelib"]
    return sorted(glob.glob(os.path.join(purelib, "nvidia", "cu1[3-9]")), reverse=True)


def _nvcc_in(home: str) -> str:
    return os.path.join(home, "bin", "nvcc.exe" if os.name == "nt" else "nvcc")


def nvcc_candidates() -> list[dict]:
    """Every nvcc found, best first: {"path", "home", "version", "source"}. A ``CUDA_HOME`` (or
    ``CUDA_PATH``) that is set is the only place torch's JIT looks, so then it is the only candidate."""
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if explicit:
        places = [(explicit, "CUDA_HOME")]
    else:
        places = []
        on_path = shutil.which("nvcc")
        if on_path:
            places.append((os.path.dirname(os.path.dirname(os.path.realpath(on_path))), "PATH"))
        if os.name == "nt":
            places += [(h, "default") for h in sorted(
                glob.glob("C:/Program Files/NVIDIA GPU Computing Toolkit/CUDA/v*.*"), reverse=True)]
        else:
            places.append(("/usr/local/cuda", "default"))
        places += [(h, "pip wheel") for h in _wheel_cuda_homes()]
    found, seen = [], set()
    for home, source in places:
        nvcc = _nvcc_in(home)
        if nvcc in seen or not os.path.isfile(nvcc):
            continue
        seen.add(nvcc)
        release = re.search(r"release ([\d.]+)", _run([nvcc, "--version"]) or "")
        found.append({"path": nvcc, "home": home, "version": release.group(1) if release else "", "source": source})
    return found


def pick_nvcc(torch_cuda: str) -> tuple[dict | None, str]:
    """The nvcc to build with for torch built with CUDA ``torch_cuda`` (same major version: torch's JIT
    refuses another), and, when there is none, why."""
    candidates = nvcc_candidates()
    need = version_tuple(torch_cuda)
    for nvcc in candidates:
        have = version_tuple(nvcc["version"])
        if need is None or (have is not None and have[0] == need[0]):
            return nvcc, ""
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not candidates:
        where = f"CUDA_HOME={explicit} has no bin/nvcc" if explicit else "nvcc was not found"
        return None, where
    others = ", ".join(f"{c['version'] or '?'} ({c['path']})" for c in candidates)
    return None, f"nvcc {others} does not match torch's CUDA {torch_cuda}"


def host_compiler() -> dict | None:
    """The C++ compiler nvcc and torch's JIT would call: {"path", "version"}, or None."""
    if os.name == "nt":
        cl = shutil.which("cl")
        if cl:
            return {"path": cl, "version": ((_run([cl]) or "").splitlines() or [""])[0].strip()}
        vswhere = os.path.join(os.environ.get("ProgramFiles(x86)", r"C:\Program Files (x86)"),
                               "Microsoft Visual Studio", "Installer", "vswhere.exe")
        if os.path.isfile(vswhere):
            out = _run([vswhere, "-latest", "-products", "*", "-requires",
                        "Microsoft.VisualStudio.Component.VC.Tools.x86.x64", "-property", "installationPath"])
            if out and out.strip():
                return {"path": out.strip().splitlines()[0], "version": "MSVC (found by vswhere)"}
        return None
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        path = shutil.which(name)
        if path:
            first = ((_run([path, "--version"]) or "").splitlines() or [""])[0].strip()
            return {"path": path, "version": first}
    return None


def missing_compiler_advice() -> str:
    """The one thing to install so a host compiler exists, for this platform."""
    if os.name == "nt":
        return ("Install Microsoft's Build Tools for Visual Studio 2022 with the 'Desktop development with C++' "
                "workload")
    if sys.platform == "darwin":
        return "Install the Xcode Command Line Tools (xcode-select --install)"
    return "Install a C++ compiler (Ubuntu/Debian: sudo apt install g++; Fedora: sudo dnf install gcc-c++)"


def missing_nvcc_advice(torch_cuda: str, driver_cuda: str = "", system: str = sys.platform,
                        machine: str = platform.machine()) -> str:
    """The one thing to do so an nvcc matching torch's CUDA exists: for torch's CUDA 13 build NVIDIA's
    compiler wheels, for CUDA 12 a driver that takes the installer to CUDA 13 where that route exists,
    else the CUDA Toolkit."""
    major = (version_tuple(torch_cuda) or (12,))[0]
    toolkit = f"install the CUDA Toolkit {torch_cuda} from developer.nvidia.com/cuda-downloads (nvcc is part of it)"
    wheels = (system, machine.lower()) in COMPILER_WHEEL_PLATFORMS
    if major >= 13:
        pip = (f"pip install nvidia-cuda-nvcc=={torch_cuda}.* nvidia-cuda-cccl=={torch_cuda}.* "
               f"nvidia-cuda-crt=={torch_cuda}.* nvidia-nvvm=={torch_cuda}.* nvidia-cuda-runtime=={torch_cuda}.*")
        if wheels:
            return ("Press Install Training Environment again (it installs NVIDIA's CUDA 13 compiler wheels), or "
                    f"install them into the training environment: {pip}")
        return f"Install NVIDIA's CUDA {major} compiler into the training environment ({pip}) or the CUDA Toolkit"
    if torch_build(driver_cuda, system, machine) == "cu130":
        return ("Press Install Training Environment again: with this driver it installs torch's CUDA 13 build "
                f"and NVIDIA's compiler wheels, no CUDA Toolkit needed; or {toolkit}")
    if wheels:
        return (f"Update the NVIDIA driver to {CUDA13_DRIVER} or newer (CUDA 13) from nvidia.com/drivers and press "
                f"Install Training Environment again (then no CUDA Toolkit is needed), or {toolkit}")
    return toolkit[0].upper() + toolkit[1:]
