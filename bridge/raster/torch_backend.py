"""The pure-PyTorch rasterizer: gsplat.rasterization's maths on any device torch runs on (CPU, MPS).

Differentiable by autograd: projection and SH run as ordinary torch ops, compositing as
checkpointed tile chunks (see composite.py). The ``info`` dict follows gsplat's unpacked layout
([C, N, ...]), which gsplat's DefaultStrategy and MCMCStrategy read with ``packed=False``, or with
``packed=True`` its packed one (one row per camera-splat pair drawn, ``camera_ids``/``gaussian_ids``),
whose ``means2d`` receives the gradients, as gsplat's does.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .composite import DEFAULT_BUDGET, DEFAULT_SLICE, composite_camera
from .projection import project
from .sh import eval_sh


def rasterize_torch(
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
    tile_size: int = 8,
    budget: int = DEFAULT_BUDGET,
    slice_splats: int = DEFAULT_SLICE,
    composite=None,
    project=project,
    colours=None,
    name: str = "torch",
) -> tuple[Tensor, Tensor, dict]:
    """``composite`` (default: ``composite.composite_camera``) composites one camera; the compiled backend
    passes its own, its ``project`` (``projection.project``'s signature), its ``colours(degree, means, coeffs,
    viewmats)`` (the SH colours [C, N, 3], or None to use the ops here) and its ``name``, which goes into
    ``info["backend"]``."""
    n_cams, n = viewmats.shape[0], means.shape[0]
    composite = composite or composite_camera
    proj = project(
        means, quats, scales, opacities, viewmats, Ks, width, height,
        eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
        antialiased=rasterize_mode == "antialiased",
    )

    if sh_degree is None:
        feats = colors if colors.dim() == 3 else colors[None].expand(n_cams, -1, -1)
    else:
        feats = None if colours is None else colours(sh_degree, means, colors, viewmats)
        if feats is None:
            # The camera centre -R^T t of the rigid world-to-camera matrix (no general inverse: MPS lacks one).
            campos = -(viewmats[:, :3, :3].transpose(1, 2) @ viewmats[:, :3, 3:])[..., 0]  # [C, 3]
            dirs = means[None] - campos[:, None]  # [C, N, 3]
            coeffs = colors if colors.dim() == 4 else colors[None].expand(n_cams, -1, -1, -1)
            feats = torch.clamp_min(eval_sh(sh_degree, dirs, coeffs) + 0.5, 0.0)

    bg = backgrounds
    if render_mode in ("D", "ED"):
        feats = proj.depths[..., None]
        bg = None  # a depth has no background: the alpha channel says where nothing was hit
    elif render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, proj.depths[..., None]], dim=-1)
        if bg is not None:
            bg = torch.cat([bg, bg.new_zeros(n_cams, 1)], dim=-1)

    # Packed: the drawn pairs' screen means become the tensor the gradients reach (absgrad's in-place
    # sinks stay dense, so a packed request with absgrad is answered unpacked, info["packed"] says so).
    packed = packed and not absgrad
    drawn_means2d = proj.means2d
    if packed:
        camera_ids, gaussian_ids = proj.visible.nonzero(as_tuple=True)
        packed_means2d = proj.means2d[camera_ids, gaussian_ids]
        drawn_means2d = torch.zeros_like(proj.means2d).index_put((camera_ids, gaussian_ids), packed_means2d)
    sinks = means.new_zeros(n_cams, n + 1, 2) if absgrad else None
    images, alphas = [], []
    for cam in range(n_cams):
        colour, trans = composite(
            drawn_means2d[cam], proj.conics[cam], proj.opacities[cam], feats[cam], proj.radii[cam],
            proj.depths[cam], width, height, tile_size=tile_size, budget=budget, slice_splats=slice_splats,
            absgrad_sink=None if sinks is None else sinks[cam],
        )
        if bg is not None:
            colour = colour + trans[..., None] * bg[cam]
        images.append(colour)
        alphas.append(1.0 - trans)
    render_colors = torch.stack(images)
    render_alphas = torch.stack(alphas)[..., None]
    if render_mode in ("ED", "RGB+ED"):
        expected = render_colors[..., -1:] / render_alphas.clamp(min=1e-10)
        render_colors = torch.cat([render_colors[..., :-1], expected], dim=-1)

    means2d = proj.means2d
    if absgrad:
        # Filled in place by the backward pass, as gsplat fills means2d.absgrad.
        means2d.absgrad = sinks[:, :n]
    if packed:
        pairs = (camera_ids, gaussian_ids)
        return render_colors, render_alphas, {
            "backend": name, "packed": True, "batch_ids": torch.zeros_like(camera_ids),
            "camera_ids": camera_ids, "gaussian_ids": gaussian_ids, "radii": proj.radii[pairs],
            "means2d": packed_means2d, "depths": proj.depths[pairs], "conics": proj.conics[pairs],
            "opacities": proj.opacities[pairs], "width": width, "height": height, "tile_size": tile_size,
            "n_cameras": n_cams,
        }
    info = {
        "backend": name,
        "packed": False,
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": proj.radii,
        "means2d": means2d,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": proj.opacities,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": n_cams,
    }
    return render_colors, render_alphas, info
