"""Which device and rasterizer a bridge job runs on, from the job's ``device`` field.

    auto        CUDA with gsplat's kernels; else the compiled Warp rasterizer (``raster/warp_backend.py``),
                on CUDA when there is a GPU, else on the CPU's cores; else (Warp missing or failing to
                compile, with a notice) our PyTorch rasterizer on CUDA, Apple MPS or the CPU
    cuda        CUDA with gsplat's kernels (built now, once, when a toolchain exists); an error otherwise
    cuda-torch  CUDA with our PyTorch rasterizer: nothing to compile
    mps         Apple MPS with our PyTorch rasterizer (gsplat and Warp have no MPS kernels)
    cpu         the CPU with the compiled Warp rasterizer, else our PyTorch rasterizer

Warp's kernels compile on first use (seconds, a ``compiling_rasterizer`` stage with progress, see
:func:`compile_progress`), then load from the cache; a compile that fails falls back to PyTorch with a
notice naming the cause.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .protocol import EXIT_BAD_INPUT, BridgeError
from .protocol.jobs import DEVICES  # one list of device names, owned by the jobs

__all__ = ["DEVICES", "Choice", "choose", "no_cuda", "resolve"]


@dataclass
class Choice:
    device: str  # a torch device name: cuda, mps, cpu
    backend: str  # gsplat, warp or torch
    notice: str = ""  # a warning for the artist: the fast path was not available, and why
    reason: str = field(default="", compare=False)  # which rasterizer runs and why, for people (check, panel)


WARP_LABEL = "the compiled rasterizer (Warp)"


def choose(requested: str, cuda: bool, mps: bool, kernels_unavailable: str, field: str = "device",
           warp_unavailable: str = "not checked") -> Choice:
    """The rule, as a pure function of what this machine has. ``kernels_unavailable``: "" when
    gsplat's kernels load, else why not; ``warp_unavailable``: "" when Warp imports, else why not.
    Raises a BridgeError for a device this machine lacks."""
    if requested not in DEVICES:
        raise BridgeError("bad_job", f"{field} must be one of {', '.join(DEVICES)}, got {requested!r}",
                          exit_code=EXIT_BAD_INPUT)
    if requested == "auto":
        if cuda:
            if not kernels_unavailable:
                return Choice("cuda", "gsplat", reason="gsplat's CUDA kernels (built)")
            from .raster.kernels import HOW_TO_GET, fallback_notice

            if not warp_unavailable:
                return Choice("cuda", "warp", f"gsplat's CUDA kernels are not available ({kernels_unavailable}): "
                              f"training uses {WARP_LABEL} on the GPU instead; {HOW_TO_GET}.",
                              reason=f"{WARP_LABEL} on the GPU: gsplat's kernels are not available "
                                     f"({kernels_unavailable})")
            return Choice("cuda", "torch", fallback_notice(kernels_unavailable),
                          reason=f"the PyTorch rasterizer on the GPU: gsplat's kernels are not available "
                                 f"({kernels_unavailable}) and {warp_unavailable}")
        if not warp_unavailable:
            return Choice("cpu", "warp", reason=f"{WARP_LABEL} on the CPU's cores: no CUDA GPU"
                          + (" (Apple MPS is there, but Warp has no Apple GPU kernels)" if mps else ""))
        return Choice("mps" if mps else "cpu", "torch",
                      reason=f"the PyTorch rasterizer on {'Apple MPS' if mps else 'the CPU'}: {warp_unavailable}")
    if requested in ("cuda", "cuda-torch") and not cuda:
        raise no_cuda(requested, field)
    if requested == "cuda":
        if kernels_unavailable:
            from .raster.kernels import HOW_TO_GET

            raise BridgeError("no_gsplat_kernels", f"{field} 'cuda' asks for gsplat's CUDA kernels: "
                              f"{kernels_unavailable}",
                              hint=f"{HOW_TO_GET}; or choose 'CUDA (no compile)' (cuda-torch) or Automatic, "
                                   "which run our PyTorch rasterizer on the GPU.", exit_code=EXIT_BAD_INPUT)
        return Choice("cuda", "gsplat", reason="gsplat's CUDA kernels (asked for)")
    if requested == "cuda-torch":
        return Choice("cuda", "torch", reason="the PyTorch rasterizer on the GPU (asked for)")
    if requested == "mps" and not mps:
        raise BridgeError("no_mps", f"{field} 'mps': Apple MPS was requested but is not available",
                          hint="Use device 'auto' or 'cpu'.", exit_code=EXIT_BAD_INPUT)
    if requested == "cpu" and not warp_unavailable:
        return Choice("cpu", "warp", reason=f"{WARP_LABEL} on the CPU's cores (asked for the CPU)")
    where = "Apple MPS" if requested == "mps" else "the CPU"
    why = "asked for" if requested == "mps" else warp_unavailable
    return Choice(requested, "torch", reason=f"the PyTorch rasterizer on {where} ({why})")


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


def resolve(requested: str, field: str = "device", build=None, progress=None) -> Choice:
    """:func:`choose` on this machine. For 'cuda' with kernels not built yet, ``build()`` (if given)
    builds them first, as gsplat's own first use would. When the choice is Warp, its kernels are
    compiled (first time; ``progress`` as for ``warp_backend.prepare``, see :func:`compile_progress`) or
    loaded here; if that fails, the PyTorch rasterizer runs instead, with a notice naming the cause."""
    import torch

    from .raster import kernels, warp_backend

    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    reason = kernels.kernels_unavailable() if cuda and requested in ("auto", "cuda") else "not asked"
    if requested == "cuda" and cuda and reason and build is not None and kernels.built_library() is None:
        build()
        kernels.reset()
        reason = kernels.kernels_unavailable()
    warp_reason = warp_backend.unavailable() if requested in ("auto", "cpu") else "not asked"
    choice = choose(requested, cuda, mps, reason, field, warp_reason)
    if choice.backend == "torch" and requested in ("auto", "cpu") and warp_reason \
            and warp_backend.FORCE_ENV not in warp_reason and not choice.notice:
        on = {"cuda": "the GPU", "mps": "Apple MPS"}.get(choice.device, "the CPU")
        choice.notice = (f"The compiled rasterizer is not available ({warp_reason}); training uses the PyTorch "
                         f"rasterizer on {on}, which is several times slower. Install Training Environment "
                         "again to bring it.")
    if choice.backend == "warp":
        failed = warp_backend.prepare(choice.device, progress)
        if failed:
            on = "the GPU" if choice.device == "cuda" else "the CPU"
            choice = Choice(choice.device, "torch",
                            f"The compiled rasterizer could not start ({failed}); training uses the PyTorch "
                            f"rasterizer on {on} instead, which is several times slower.",
                            reason=f"the PyTorch rasterizer on {on}: the compiled one failed ({failed})")
    if requested == "auto" and choice.device == "cpu":
        why = _why_no_cuda()  # a GPU torch cannot use (an old driver) must not pass silently as "no GPU"
        if why and not why.startswith("nvidia-smi finds no"):
            choice.notice = " ".join(filter(None, [choice.notice, f"Running on the CPU (much slower): {why}."]))
    return choice


def compile_progress(ctx):
    """A ``progress`` for :func:`resolve` that shows Warp's first compile as the ``compiling_rasterizer``
    stage of a bridge command: a Stage event, then Progress events (modules compiled, seconds so far)."""
    state = {"started": None}

    def progress(done: int, total: int, what: str) -> None:
        from . import protocol

        if state["started"] is None:
            state["started"] = time.monotonic()
            ctx.emit(protocol.Stage(stage="compiling_rasterizer", message=(
                "compiling the rasterizer's kernels for this machine, once (seconds; later runs load them "
                "from the cache)")))
        ctx.emit(protocol.Progress(step=done, total=total, stage="compiling_rasterizer",
                                   elapsed_sec=round(time.monotonic() - state["started"], 1)))

    return progress
