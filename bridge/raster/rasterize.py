"""The one rasterizer entry point: checks its inputs once, then hands them to the chosen backend."""
from __future__ import annotations

import torch
from torch import Tensor

from .composite import DEFAULT_BUDGET, DEFAULT_SLICE

BACKENDS = ("auto", "torch", "gsplat", "warp")
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
RASTERIZE_MODES = ("classic", "antialiased")


def select_backend(backend: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """"torch", "gsplat" or "warp" for a requested backend and the device (and dtype) of the tensors.

    "auto": gsplat on CUDA when its kernels load (``kernels.kernels_unavailable``); else the compiled
    Warp rasterizer on the CPU or CUDA when Warp imports (``warp_backend.unavailable``) and the tensors
    are float32 and its kernels compile or load (once per process; the first compile on a machine takes
    seconds, then they come from the cache: a job prepares them first, with progress, ``bridge.device``);
    else our PyTorch rasterizer (MPS, float64, no Warp).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    kind = torch.device(device).type
    if backend == "auto":
        from .kernels import kernels_unavailable

        if kind == "cuda" and not kernels_unavailable():
            return "gsplat"
        if kind in ("cpu", "cuda") and dtype == torch.float32:
            from .warp_backend import prepare, unavailable

            if not unavailable() and not prepare(device):
                return "warp"
        return "torch"
    if backend == "gsplat" and kind != "cuda":
        raise ValueError(f"the gsplat backend needs CUDA tensors, these are on {device}; use backend='torch'")
    if backend == "warp":
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"the warp backend runs on the CPU or CUDA, these tensors are on {device}; "
                             "use backend='torch'")
        if dtype != torch.float32:
            raise ValueError(f"the warp backend takes float32 tensors, these are {dtype}; use backend='torch'")
    return backend


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    rasterize_mode: str = "classic",
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    absgrad: bool = False,
    packed: bool = False,
    backend: str = "auto",
    budget: int = DEFAULT_BUDGET,
    slice_splats: int = DEFAULT_SLICE,
) -> tuple[Tensor, Tensor, dict]:
    """Render N splats into C cameras: (colours [C, H, W, ch], alphas [C, H, W, 1], info).

    ``info`` is gsplat's meta dict plus ``backend`` and ``packed``; pass ``packed=info["packed"]`` to
    a gsplat strategy. ``packed`` gives gsplat's packed layout (rows of drawn camera-splat pairs) on
    both backends; the torch backend answers a packed request with ``absgrad`` unpacked.
    ``budget`` bounds the torch backend's memory (pixel-splat pairs per chunk, ~80 bytes each);
    ``slice_splats`` is how deep into each tile's list it goes between early-stop checks.
    """
    _check(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
           render_mode, rasterize_mode)
    options = dict(
        sh_degree=sh_degree, near_plane=near_plane, far_plane=far_plane, backgrounds=backgrounds,
        render_mode=render_mode, rasterize_mode=rasterize_mode, eps2d=eps2d, radius_clip=radius_clip,
        absgrad=absgrad,
    )
    chosen = select_backend(backend, means.device, means.dtype)
    if chosen == "gsplat":
        from .gsplat_backend import rasterize_gsplat

        return rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                packed=packed, **options)
    if chosen == "warp":
        from .warp_backend import rasterize_warp

        return rasterize_warp(means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=packed,
                              **options)
    from .torch_backend import rasterize_torch

    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=packed,
                           budget=budget, slice_splats=slice_splats, **options)


def _check(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds,
           render_mode, rasterize_mode) -> None:
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode {render_mode!r} is not one of {', '.join(RENDER_MODES)}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode {rasterize_mode!r} is not one of {', '.join(RASTERIZE_MODES)}")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"width and height must be positive integers, got {width!r} x {height!r}")
    if means.dim() != 2 or means.shape[1] != 3:
        raise ValueError(f"means must be [N, 3], got {list(means.shape)}")
    n = means.shape[0]
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must be [C, 4, 4], got {list(viewmats.shape)}")
    c = viewmats.shape[0]
    for name, value, shape in (("quats", quats, (n, 4)), ("scales", scales, (n, 3)),
                               ("opacities", opacities, (n,)), ("Ks", Ks, (c, 3, 3))):
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must be {list(shape)} for {n} splats and {c} cameras, got {list(value.shape)}")
    if sh_degree is None:
        if not (colors.dim() == 2 and colors.shape[0] == n or colors.dim() == 3 and colors.shape[:2] == (c, n)):
            raise ValueError(f"colors must be [N, D] or [C, N, D] without sh_degree, got {list(colors.shape)}")
    else:
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be 0 to 3, got {sh_degree}")
        ok = colors.shape[-1] == 3 and (colors.dim() == 3 and colors.shape[0] == n
                                        or colors.dim() == 4 and colors.shape[:2] == (c, n))
        if not ok:
            raise ValueError(f"SH colors must be [N, K, 3] or [C, N, K, 3], got {list(colors.shape)}")
        if colors.shape[-2] < (sh_degree + 1) ** 2:
            need = (sh_degree + 1) ** 2
            raise ValueError(f"sh_degree {sh_degree} needs {need} SH coefficients, got {colors.shape[-2]}")
    if backgrounds is not None:
        channels = 3 if sh_degree is not None else colors.shape[-1]
        if tuple(backgrounds.shape) != (c, channels):
            raise ValueError(f"backgrounds must be [C, {channels}], got {list(backgrounds.shape)}")
    tensors = (means, quats, scales, opacities, colors, viewmats, Ks)
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1 or not next(iter(dtypes)).is_floating_point:
        raise ValueError(f"all inputs must share one floating-point dtype, got {sorted(map(str, dtypes))}")
