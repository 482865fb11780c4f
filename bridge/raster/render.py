"""Render a SplatSet from one pinhole camera, numpy in and numpy out (tests, render passes)."""
from __future__ import annotations

import numpy as np
import torch

from ..formats.splatset import SplatSet
from .rasterize import rasterize


def render_splats(
    splats: SplatSet,
    K: np.ndarray,
    world_to_camera: np.ndarray,
    width: int,
    height: int,
    sh_degree: int | None = None,
    background: np.ndarray | None = None,
    device: str = "cpu",
    backend: str = "auto",
) -> dict[str, np.ndarray]:
    """{"rgb": (H, W, 3), "alpha": (H, W), "depth": (H, W)} float32, top row first.

    ``K`` is 3x3 and ``world_to_camera`` 4x4 in OpenCV axes (COLMAP's ``View.world_to_camera()``).
    ``sh_degree`` defaults to all the bands the splats have. ``rgb`` is composited over
    ``background`` (black when None); ``depth`` is the expected camera z of what covers the pixel,
    0 where nothing does (``alpha`` tells which).
    """
    K = np.asarray(K, dtype=np.float64)
    world_to_camera = np.asarray(world_to_camera, dtype=np.float64)
    if K.shape != (3, 3) or world_to_camera.shape != (4, 4):
        raise ValueError(f"K must be 3x3 and world_to_camera 4x4, got {K.shape} and {world_to_camera.shape}")
    degree = splats.sh_degree if sh_degree is None else sh_degree
    if not 0 <= degree <= splats.sh_degree:
        raise ValueError(f"sh_degree {degree} asked for, but the splats have SH degree {splats.sh_degree}")

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    coeffs = np.concatenate([splats.sh_dc[:, None, :], splats.sh_rest], axis=1)
    bg = None if background is None else tensor(np.asarray(background, np.float32).reshape(1, 3))
    with torch.no_grad():
        colours, alphas, _ = rasterize(
            tensor(splats.means),
            tensor(splats.quats),
            tensor(np.exp(splats.scales)),
            torch.sigmoid(tensor(splats.opacities)),
            tensor(coeffs),
            tensor(world_to_camera[None]),
            tensor(K[None]),
            int(width),
            int(height),
            sh_degree=degree,
            backgrounds=bg,
            render_mode="RGB+ED",
            backend=backend,
        )
    out = colours[0].cpu().numpy()
    return {
        "rgb": np.ascontiguousarray(out[..., :3]),
        "alpha": np.ascontiguousarray(alphas[0, ..., 0].cpu().numpy()),
        "depth": np.ascontiguousarray(out[..., 3]),
    }
