"""EWA projection of 3D Gaussians into pinhole cameras, with gsplat 1.5.3's culling rules.

Every rule here mirrors gsplat's fused CUDA projection so both backends agree on which splats
are drawn and how large they are: the perspective Jacobian is evaluated at the mean clamped to
the frustum widened by 30 % (a splat far off-screen must not smear across the image), eps2d is
added to the screen covariance, and the screen-space radius is opacity aware.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat: a splat fainter than this is never drawn
MAX_EXTENT_SIGMAS = 3.33


@dataclass
class Projected:
    """Per camera and splat, shape [C, N, ...]. Entries with a zero radius are culled (and zeroed)."""

    means2d: Tensor  # [C, N, 2] pixels, +x right, +y down, pixel centres at +0.5
    conics: Tensor  # [C, N, 3] inverse screen covariance (a, b, c): sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2
    depths: Tensor  # [C, N] camera-space z
    radii: Tensor  # [C, N, 2] int32 half extents in pixels
    opacities: Tensor  # [C, N] opacity times the antialiasing compensation when used

    @property
    def visible(self) -> Tensor:
        return (self.radii > 0).all(dim=-1)


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariance R S S R^T [N, 3, 3]; quaternions are w x y z and need not be unit."""
    w, x, y, z = (quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)).unbind(-1)
    rot = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(quats.shape[:-1] + (3, 3))
    m = rot * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    antialiased: bool = False,
) -> Projected:
    rot_c = viewmats[:, None, :3, :3]  # [C, 1, 3, 3]
    means_c = (rot_c @ means[None, :, :, None])[..., 0] + viewmats[:, None, :3, 3]  # [C, N, 3]
    covars_c = rot_c @ quat_scale_to_covar(quats, scales)[None] @ rot_c.transpose(-1, -2)

    tz = means_c[..., 2]
    in_depth = (tz >= near_plane) & (tz <= far_plane)
    # Culled splats still flow through the graph; a safe depth keeps their (unused) values finite,
    # so zero upstream gradients never meet an infinity and turn into NaN.
    z = torch.where(in_depth, tz, torch.ones_like(tz))
    fx, fy = Ks[:, None, 0, 0], Ks[:, None, 1, 1]
    cx, cy = Ks[:, None, 0, 2], Ks[:, None, 1, 2]
    margin_x = 0.3 * 0.5 * width / fx  # 30 % of the half field of view, as a tangent
    margin_y = 0.3 * 0.5 * height / fy
    tx = z * torch.clamp(means_c[..., 0] / z, min=-(cx / fx + margin_x), max=(width - cx) / fx + margin_x)
    ty = z * torch.clamp(means_c[..., 1] / z, min=-(cy / fy + margin_y), max=(height - cy) / fy + margin_y)
    zeros = torch.zeros_like(z)
    jac = torch.stack(
        [fx / z, zeros, -fx * tx / (z * z), zeros, fy / z, -fy * ty / (z * z)], dim=-1
    ).reshape(z.shape + (2, 3))
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * means_c[..., 0] / z + cx, fy * means_c[..., 1] / z + cy], dim=-1)

    opac = opacities[None].expand_as(z)
    if antialiased:
        # Mip-Splatting's compensation keeps a splat's total energy when eps2d widens it.
        # The floor keeps sqrt's gradient finite for degenerate splats; they fall under 1/255 anyway.
        opac = opac * torch.sqrt(torch.clamp(det_orig / det_safe, min=1e-20))

    with torch.no_grad():
        # Beyond this many sigmas the splat's alpha is under the threshold anyway (opacity-aware box).
        extent = torch.sqrt(2.0 * torch.log(opac.clamp_min(1e-30) / ALPHA_THRESHOLD)).clamp(max=MAX_EXTENT_SIGMAS)
        radius = torch.ceil(extent[..., None] * torch.sqrt(torch.stack([a, c], dim=-1).clamp_min(0.0)))
        ok = ok & (opac >= ALPHA_THRESHOLD) & ~((radius[..., 0] <= radius_clip) & (radius[..., 1] <= radius_clip))
        mx, my = means2d[..., 0], means2d[..., 1]
        rx, ry = radius[..., 0], radius[..., 1]
        ok = ok & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.where(ok[..., None], radius, torch.zeros_like(radius)).to(torch.int32)

    keep = ok[..., None]
    return Projected(
        means2d=torch.where(keep, means2d, torch.zeros_like(means2d)),
        conics=torch.where(keep, conics, torch.zeros_like(conics)),
        depths=torch.where(ok, tz, torch.zeros_like(tz)),
        radii=radii,
        opacities=opac,
    )
