"""What the bridge interpreter has and what its GPU path will do, as JSON or as lines for people.

    python -m bridge check [--json]     (the CLI; --json for programs and tests)
    python bridge/envcheck.py           (the add-on's Check Environment: one marked JSON line)

Reports packages, the NVIDIA driver and the newest CUDA it runs (nvidia-smi), torch's CUDA build and
whether the driver runs it, gsplat's kernels (loaded from the build cache / can be built, with the nvcc
and C++ compiler found / cannot be built, what is missing and the one thing to do), fused-ssim, free
GPU memory, and which rasterizer a job on Automatic runs and why (gsplat's kernels, the compiled Warp
rasterizer, compiled already or on first use, and where its cache is, or the PyTorch one). Standard
library only at the top: the add-on imports this module for ``MARKER`` and :func:`report_lines`, which
turn the JSON into the words the panel and the CLI show.
"""
from __future__ import annotations

import importlib
import json
import os
import platform
import sys

MARKER = "SPLATWORK-CHECK "
PACKAGES = ("torch", "gsplat", "warp", "pycolmap", "plyfile", "numpy", "pytorch_msssim", "PIL", "fused_ssim")
OPTIONAL = ("fused_ssim", "warp")  # faster when present; never required


def check() -> dict:
    from . import toolchain

    info: dict = {"python": platform.python_version(), "executable": sys.executable, "packages": {}}
    for name in PACKAGES:
        try:
            info["packages"][name] = getattr(importlib.import_module(name), "__version__", "installed")
        except Exception:  # noqa: BLE001 - any failure means "not usable", reported as missing
            info["packages"][name] = None
    info["gpu"] = toolchain.nvidia_smi()
    try:
        torch = importlib.import_module("torch")  # by name: this module stays importable inside Blender
        info["cuda"] = bool(torch.cuda.is_available())
        info["device"] = torch.cuda.get_device_name(0) if info["cuda"] else ""
        info["cuda_version"] = torch.version.cuda or ""
        info["mps"] = bool(torch.backends.mps.is_available())
    except Exception as exc:  # noqa: BLE001 - a broken torch is exactly what this check reports
        info["cuda"], info["device"], info["cuda_version"], info["cuda_error"] = False, "", "", str(exc)
        info["mps"] = False
    if info["gpu"] and info["cuda_version"]:
        info["driver_fits"] = toolchain.driver_fits(info["gpu"]["cuda"], info["cuda_version"])
    info["kernels"] = _kernels(info)
    info["rasterizer"] = _rasterizer(info)
    return info


def _rasterizer(info: dict) -> dict:
    """What ``device`` "auto" picks here and why: {"backend", "device", "reason", "notice"}, plus for Warp
    "compiled" (kernels built for this machine already) and "cache". Never compiles."""
    try:
        from .device import choose
        from .raster import warp_backend

        warp_reason = warp_backend.unavailable()
        kernels = info.get("kernels", {})
        gsplat_reason = "" if kernels.get("state") == "loaded" else (kernels.get("detail") or "not built")
        choice = choose("auto", bool(info.get("cuda")), bool(info.get("mps")), gsplat_reason,
                        warp_unavailable=warp_reason)
        out = {"backend": choice.backend, "device": choice.device, "reason": choice.reason, "notice": choice.notice}
        if choice.backend == "warp":
            out["compiled"] = warp_backend.compiled(choice.device)
            out["cache"] = warp_backend.kernel_cache_dir()
            if choice.device == "cpu":
                out["threads"] = warp_backend.cpu_threads()
        return out
    except Exception as exc:  # noqa: BLE001 - the check reports, it never fails
        return {"backend": "", "device": "", "reason": "", "notice": "", "error": f"{type(exc).__name__}: {exc}"}


def torch_build_here() -> tuple[str, dict | None]:
    """Which torch build the installer takes on this machine ("cpu", "cu128" or "cu130", see
    ``toolchain.torch_build``) and the NVIDIA GPU nvidia-smi found (None without one)."""
    from . import toolchain

    gpu = toolchain.nvidia_smi()
    return toolchain.torch_build(gpu["cuda"] if gpu else None), gpu


def _kernels(info: dict) -> dict:
    """{"state": loaded | buildable | unbuildable | no_cuda, "detail", "hint", "nvcc", "compiler"}."""
    from . import toolchain

    torch_cuda = info["cuda_version"]
    nvcc, why = toolchain.pick_nvcc(torch_cuda) if torch_cuda else (None, "")
    out = {"nvcc": nvcc, "nvcc_found": toolchain.nvcc_candidates(), "compiler": toolchain.host_compiler(),
           "detail": "", "hint": ""}
    if not info["cuda"]:
        out["state"] = "no_cuda"
        return out
    try:
        from .raster import kernels

        reason = kernels.kernels_unavailable()
        out["cache"] = kernels.build_dir()
    except Exception as exc:  # noqa: BLE001
        reason = f"{type(exc).__name__}: {exc}"
    if not reason:
        out["state"] = "loaded"
    elif nvcc is not None and out["compiler"] is not None:
        out["state"], out["detail"] = "buildable", reason
    else:
        out["state"], out["detail"] = "unbuildable", reason
        if nvcc is None:
            out["missing"] = why
            out["hint"] = toolchain.missing_nvcc_advice(torch_cuda, (info["gpu"] or {}).get("cuda", ""))
        else:
            out["missing"] = "no C++ compiler found"
            out["hint"] = toolchain.missing_compiler_advice()
    return out


def report_lines(info: dict) -> list[tuple[str, str]]:
    """(level, text) lines, level "ok", "info" or "error": what the panel and ``bridge check`` print."""
    lines: list[tuple[str, str]] = []
    if "python" in info:
        lines.append(("info", f"Python {info['python']}: {info.get('executable', '')}"))
    for name, version in info.get("packages", {}).items():
        if version:
            lines.append(("ok", f"{name} {version}"))
        elif name == "warp":
            lines.append(("info", "warp-lang not installed: training uses the slower PyTorch rasterizer "
                                  "(Install Training Environment brings it)"))
        elif name in OPTIONAL:
            lines.append(("info", f"{name} not installed (optional: faster SSIM on CUDA)"))
        else:
            lines.append(("error", f"{name} missing"))
    gpu = info.get("gpu")
    if gpu:
        free = f", {gpu['memory_free_mb']:,} MB of {gpu['memory_total_mb']:,} MB free" \
            if gpu.get("memory_free_mb") is not None else ""
        lines.append(("ok", f"GPU {gpu['name']}: driver {gpu['driver']} runs CUDA up to {gpu['cuda']}{free}"))
    else:
        lines.append(("info", "No NVIDIA GPU found (nvidia-smi)"))
    torch_cuda = info.get("cuda_version", "")
    if torch_cuda:
        lines.append(("info", f"torch is built with CUDA {torch_cuda}"))
    if info.get("driver_fits") is False:
        lines.append(("error", f"The NVIDIA driver {gpu['driver']} (CUDA {gpu['cuda']}) is older than torch's "
                               f"CUDA {torch_cuda}: update the driver from nvidia.com/drivers"))
    if info.get("cuda_error"):
        lines.append(("error", f"torch does not load: {info['cuda_error']}"))
    kernels = info.get("kernels", {})
    state = kernels.get("state")
    if info.get("cuda"):
        lines.append(("ok", f"CUDA works: {info.get('device', '')}"))
    elif info.get("mps"):
        lines.append(("info", "Apple MPS works: training uses the PyTorch rasterizer on the Apple GPU"))
    elif "cuda" in info:
        lines.append(("info", "CUDA not available: training runs on the CPU"))
    nvcc, compiler = kernels.get("nvcc"), kernels.get("compiler")
    if nvcc:
        lines.append(("info", f"nvcc {nvcc['version']}: {nvcc['path']}"))
    else:
        found = ", ".join(f"nvcc {c['version']} ({c['path']})" for c in kernels.get("nvcc_found", []))
        need = f"No nvcc for torch's CUDA {torch_cuda}" if torch_cuda else "No nvcc needed by a CPU build of torch"
        lines.append(("info", need + (f"; found {found}" if found else "; none found")))
    if compiler:
        lines.append(("info", f"C++ compiler: {compiler['version'] or compiler['path']}"))
    else:
        lines.append(("info", "No C++ compiler found"))
    if state == "loaded":
        lines.append(("ok", "gsplat's CUDA kernels: built and loaded (fast path)"))
    elif state == "buildable":
        lines.append(("info", f"gsplat's CUDA kernels: {kernels['detail']}; they can be built here: "
                              "press Build GPU Kernels (python -m bridge build-kernels)"))
    elif state == "unbuildable":
        lines.append(("error", f"gsplat's CUDA kernels cannot be built: {kernels.get('missing', '')}. "
                               f"{kernels.get('hint', '')}. Until then training uses the PyTorch rasterizer "
                               "on the GPU (slower)"))
    raster = info.get("rasterizer") or {}
    if raster.get("error"):
        lines.append(("error", f"Rasterizer: could not tell ({raster['error']})"))
    elif raster.get("reason"):
        text = f"Rasterizer: {raster['reason']}"
        if raster.get("threads"):
            text += f", {raster['threads']} threads"
        if raster.get("backend") == "warp":
            text += ("; compiled for this machine" if raster.get("compiled") else
                     "; its kernels compile on the first run (seconds), then load") + f" (cache: {raster['cache']})"
        lines.append(("ok" if raster.get("backend") in ("gsplat", "warp") else "info", text))
    return lines


def report_text(lines: list[tuple[str, str]]) -> str:
    """``report_lines`` as ``bridge check`` prints them: "ok ", "!! " or blanks, then the text."""
    marks = {"ok": "ok ", "info": "   ", "error": "!! "}
    return "\n".join(marks[level] + text for level, text in lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print("usage: python -m bridge check [--json]\n\n" + __doc__.split("\n\n")[2])
        return 0
    info = check()
    if "--marker" in argv:
        print(MARKER + json.dumps(info), flush=True)
    elif "--json" in argv:
        print(json.dumps(info, indent=1), flush=True)
    else:
        print(report_text(report_lines(info)), flush=True)
    return 0


if __name__ == "__main__":
    # Run by path: make the package importable, then run as part of it (toolchain and kernels are siblings).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(importlib.import_module("bridge.envcheck").main(["--marker", *sys.argv[1:]]))
