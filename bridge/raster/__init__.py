"""Rasterizers: ``rasterize`` with gsplat.rasterization's signature and conventions (a subset), backed
by gsplat on CUDA or by our pure-PyTorch implementation anywhere else; and ``render_splats``, a
numpy-in, numpy-out render of a :class:`~..formats.SplatSet` for tests and render passes.

Conventions (gsplat 1.5.3): quaternions w x y z (need not be unit), scales and opacities activated
(exp and sigmoid already applied), ``viewmats`` world-to-camera [C, 4, 4] in OpenCV axes (+x right,
+y down, +z forward), ``Ks`` [C, 3, 3] with pixel centres at +0.5, colours [N, D] / [C, N, D] or SH
coefficients [N, K, 3] / [C, N, K, 3] when ``sh_degree`` is given.
"""
from __future__ import annotations

from .rasterize import BACKENDS, RENDER_MODES, rasterize, select_backend
from .render import render_splats

__all__ = ["BACKENDS", "RENDER_MODES", "rasterize", "render_splats", "select_backend"]
