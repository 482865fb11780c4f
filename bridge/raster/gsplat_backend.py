"""gsplat's CUDA rasterizer behind our signature (CUDA tensors only)."""
from __future__ import annotations

from torch import Tensor


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    packed: bool = False,
    **options,
) -> tuple[Tensor, Tensor, dict]:
    from gsplat import rasterization  # imported late: loading it is slow and needs CUDA to be useful

    render_colors, render_alphas, info = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=packed, **options
    )
    info["backend"] = "gsplat"
    info["packed"] = packed
    return render_colors, render_alphas, info
