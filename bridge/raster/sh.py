"""Real spherical harmonics up to degree 3, in the basis and sign convention of the 3DGS papers.

Coefficients are laid out band by band, ``(degree + 1) ** 2`` of them per channel, the first being
the DC term, exactly as gsplat and the standard 3DGS PLY store them, so trained splats render the
same with either backend.
"""
from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """The ``(degree + 1) ** 2`` basis functions at the unit directions ``dirs`` [..., 3]."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree {degree} is not supported (0 to 3)")
    x, y, z = dirs.unbind(-1)
    terms = [torch.full_like(x, C0)]
    if degree >= 1:
        terms += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        terms += [
            C2[0] * x * y,
            C2[1] * y * z,
            C2[2] * (2.0 * zz - xx - yy),
            C2[3] * x * z,
            C2[4] * (xx - yy),
        ]
    if degree >= 3:
        terms += [
            C3[0] * y * (3.0 * xx - yy),
            C3[1] * x * y * z,
            C3[2] * y * (4.0 * zz - xx - yy),
            C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            C3[4] * x * (4.0 * zz - xx - yy),
            C3[5] * z * (xx - yy),
            C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(terms, dim=-1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colour seen along ``dirs`` [..., 3] (any length) from ``coeffs`` [..., K, 3], K >= (degree+1)^2.

    Returns the raw SH sum; the rasterizer adds gsplat's +0.5 and clamps at 0.
    """
    n = (degree + 1) ** 2
    if coeffs.shape[-2] < n:
        raise ValueError(f"SH degree {degree} needs {n} coefficients per channel, got {coeffs.shape[-2]}")
    # The same normalisation as torch.nn.functional.normalize (and gsplat): a zero direction stays finite.
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(degree, unit)
    return torch.einsum("...k,...kc->...c", basis, coeffs[..., :n, :])
