"""Which device and rasterizer a bridge job runs on, from the job's ``device`` field.

    auto        CUDA with gsplat's kernels; CUDA with our PyTorch rasterizer when they cannot load
                (with a notice); else Apple MPS; else the CPU
    cuda        CUDA with gsplat's kernels (built now, once, when a toolchain exists); an error otherwise
    cuda-torch  CUDA with our PyTorch rasterizer: nothing to compile
    mps         Apple MPS with our PyTorch rasterizer (gsplat has no MPS kernels)
    cpu         the CPU with our PyTorch rasterizer
"""
from __future__ import annotations

from dataclasses import dataclass

from .protocol import EXIT_BAD_INPUT, BridgeError
from .protocol.jobs import DEVICES  # one list of device names, owned by the jobs

__all__ = ["DEVICES", "Choice", "choose", "no_cuda", "resolve"]


@dataclass
class Choice:
    device: str  # a torch device name: cuda, mps, cpu
    backend: str  # gsplat or torch
    notice: str = ""  # a warning for the artist: the fast path was not available, and why


def choose(requested: str, cuda: bool, mps: bool, kernels_unavailable: str, field: str = "device") -> Choice:
    """The rule, as a pure function of what this machine has. ``kernels_unavailable``: "" when
    gsplat's kernels load, else why not. Raises a BridgeError for a device this machine lacks."""
    if requested not in DEVICES:
        raise BridgeError("bad_job", f"{field} must be one of {', '.join(DEVICES)}, got {requested!r}",
                          exit_code=EXIT_BAD_INPUT)
    if requested == "auto":
        if cuda:
            if not kernels_unavailable:
                return Choice("cuda", "gsplat")
            from .raster.kernels import fallback_notice

            return Choice("cuda", "torch", fallback_notice(kernels_unavailable))
        return Choice("mps" if mps else "cpu", "torch")
    if requested in ("cuda", "cuda-torch") and not cuda:
        raise no_cuda(requested, field)
    if requested == "cuda":
        if kernels_unavailable:
            from .raster.kernels import HOW_TO_GET

            raise BridgeError("no_gsplat_kernels", f"{field} 'cuda' asks for gsplat's CUDA kernels: "
                              f"{kernels_unavailable}",
                              hint=f"{HOW_TO_GET}; or choose 'CUDA (no compile)' (cuda-torch) or Automatic, "
                                   "which run our PyTorch rasterizer on the GPU.", exit_code=EXIT_BAD_INPUT)
        return Choice("cuda", "gsplat")
    if requested == "cuda-torch":
        return Choice("cuda", "torch")
    if requested == "mps" and not mps:
        raise BridgeError("no_mps", f"{field} 'mps': Apple MPS was requested but is not available",
                          hint="Use device 'auto' or 'cpu'.", exit_code=EXIT_BAD_INPUT)
    return Choice(requested, "torch")


def _why_no_cuda() -> str:
    """Why a CUDA build of torch finds no CUDA, where nvidia-smi can tell ("" otherwise)."""
    import torch

    if not torch.version.cuda:
        return ""
    from .toolchain import driver_fits, nvidia_smi

    gpu = nvidia_smi()
    if gpu is None:
        return "nvidia-smi finds no NVIDIA GPU"
    if not driver_fits(gpu["cuda"], torch.version.cuda):
        return (f"the NVIDIA driver {gpu['driver']} runs CUDA up to {gpu['cuda']}, older than torch's "
                f"CUDA {torch.version.cuda}: update the driver")
    return f"nvidia-smi sees {gpu['name']} but torch cannot use it"


def no_cuda(requested: str, field: str) -> BridgeError:
    import torch

    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    why = _why_no_cuda()
    why = f"; {why}" if why else ""
    return BridgeError("no_cuda", f"{field} '{requested}': CUDA was requested but is not available "
                       f"(torch {torch.__version__}, {build}{why})",
                       hint="Use device 'auto' or 'cpu' here, or run on a machine with an NVIDIA GPU "
                            "and a CUDA build of torch.", exit_code=EXIT_BAD_INPUT)


def resolve(requested: str, field: str = "device", build=None) -> Choice:
    """:func:`choose` on this machine. For 'cuda' with kernels not built yet, ``build()`` (if given)
    builds them first, as gsplat's own first use would."""
    import torch

    from .raster import kernels

    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    reason = kernels.kernels_unavailable() if cuda and requested in ("auto", "cuda") else "not asked"
    if requested == "cuda" and cuda and reason and build is not None and kernels.built_library() is None:
        build()
        kernels.reset()
        reason = kernels.kernels_unavailable()
    choice = choose(requested, cuda, mps, reason, field)
    if requested == "auto" and choice.device == "cpu":
        why = _why_no_cuda()  # a GPU torch cannot use (an old driver) must not pass silently as "no GPU"
        if why and not why.startswith("nvidia-smi finds no"):
            choice.notice = f"Running on the CPU (much slower): {why}."
    return choice
