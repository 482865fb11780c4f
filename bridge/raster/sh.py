"""Real spherical harmonics up to degree 3, in the basis and sign convention of the 3DGS papers.

Coefficients are laid out band by band, ``(degree + 1) ** 2`` of them per channel, the first being
the DC term, exactly as gsplat and the standard 3DGS PLY store them, so trained splats render the
same with either backend.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..formats.sh import SH_C0 as C0
from ..formats.sh import sh_terms


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """The ``(degree + 1) ** 2`` basis functions at the unit directions ``dirs`` [..., 3]."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree {degree} is not supported (0 to 3)")
    x, y, z = dirs.unbind(-1)
    terms = [torch.full_like(x, C0), *sh_terms(x, y, z, degree)]
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
