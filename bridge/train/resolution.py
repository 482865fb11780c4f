"""Coarse-to-fine training: the first part of a run trains on smaller copies of the images.

With ``res_start`` 4 and ``res_full_at`` 0.5, the first quarter of the run trains at 1/4 of the
size, the second at 1/2 and the rest at full size. A step costs about its pixel count on the CPU
rasterizer, so early steps are cheap while the splats are still coarse; the end of the run, and every
evaluation, is at full size. Images are area-averaged on the device once, intrinsics scaled exactly.
A coarse level whose smallest image would be under ``MIN_SIDE`` pixels on its short side is skipped:
splats fitted to a dozen pixels come out as specks at full size (held-out SSIM fell from 0.83 to
0.3-0.6 on the statue at 50x75 px started at 1/4), and on the CPU such tiny steps cost no less.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_SIDE = 32


class ResolutionSchedule:
    def __init__(self, images: list[torch.Tensor], Ks: list[torch.Tensor], steps: int, res_start: int,
                 full_at: float):
        """``images``: (H, W, 3) uint8 on the device; ``Ks``: their (1, 3, 3) intrinsics."""
        short = min((min(image.shape[:2]) for image in images), default=0)
        self.levels = 0  # coarse levels before full size
        while 2 ** (self.levels + 1) <= res_start and short / 2 ** (self.levels + 1) >= MIN_SIDE:
            self.levels += 1
        self.full_step = int(full_at * steps) if self.levels else 0
        self.images = {0: images}
        self.Ks = {0: Ks}
        for level in range(1, self.levels + 1):
            factor = 2 ** level
            self.images[level], self.Ks[level] = [], []
            for image, K in zip(images, Ks, strict=True):
                small, K_small = _downscale(image, K, factor)
                self.images[level].append(small)
                self.Ks[level].append(K_small)

    def level(self, step: int) -> int:
        """0 for full size, else the power of two the images are divided by at ``step``."""
        if step >= self.full_step:
            return 0
        # Equal shares of [0, full_step) per level, coarsest first.
        return self.levels - step * self.levels // self.full_step

    def view(self, step: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(image (H, W, 3) float in [0, 1], K (1, 3, 3)) of training view ``index`` at ``step``."""
        level = self.level(step)
        image = self.images[level][index]
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        return image, self.Ks[level][index]


def _downscale(image: torch.Tensor, K: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = image.shape[:2]
    h, w = max(1, round(height / factor)), max(1, round(width / factor))
    small = F.interpolate(image.permute(2, 0, 1)[None].float() / 255.0, size=(h, w), mode="area")
    scaled = K.clone()
    scaled[:, 0] *= w / width  # fx, cx: pixel (0, 0) covers [0, 1]^2, so intrinsics scale exactly
    scaled[:, 1] *= h / height
    return small[0].permute(1, 2, 0).contiguous(), scaled
