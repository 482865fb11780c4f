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

import math

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

    def steps_left(self, step: int, total: int) -> dict[int, int]:
        """How many of the steps ``step`` to ``total - 1`` train at each level: level l holds the steps
        from ceil((levels - l) full_step / levels) up to the next level's first (the last level: to the end)."""
        starts = [-(-(self.levels - level) * self.full_step // self.levels) if self.levels else 0
                  for level in range(self.levels + 1)]
        ends = [total] + starts[:-1]
        return {level: max(0, min(end, total) - max(start, step))
                for level, (start, end) in enumerate(zip(starts, ends, strict=True))}

    def pixels(self, level: int) -> float:
        return sum(image.shape[0] * image.shape[1] for image in self.images[level]) / max(len(self.images[level]), 1)

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


class StepCosts:
    """Seconds per step at each level, for an ETA that knows the full-size steps at the end cost more.

    A level trained at costs its steps' mean since the previous ETA (recent, since the number of splats
    changes it too; ETAs are asked for at progress reports, where a GPU is waited for, so the sum is
    right there too). A level not reached yet costs the current one's times its pixel ratio to a power:
    1/3 while one level is measured (fixed costs dominate small steps: on the CPU, the demo's 192x144
    steps cost 1.8-2.5x its 48x36 ones, 16^0.21-0.34), then the one fitted between the two finest levels
    measured, but no less, since the share of per-pixel work grows with the image (1.1-1.4x from
    48x36 to 96x72 there, then 1.7-1.8x to 192x144).
    """

    PRIOR_POWER = 1 / 3

    def __init__(self, schedule: ResolutionSchedule):
        self.schedule = schedule
        self.cost: dict[int, float] = {}
        self._window: dict[int, list[float]] = {}  # level -> [seconds, steps] since the last ETA

    def add(self, level: int, seconds: float) -> None:
        window = self._window.setdefault(level, [0.0, 0])
        window[0] += seconds
        window[1] += 1

    def eta(self, step: int, total: int) -> float:
        """Seconds to train the steps from ``step`` to the end of a ``total``-step run."""
        for level, (seconds, steps) in self._window.items():
            self.cost[level] = seconds / steps
        self._window.clear()
        if not self.cost:
            return 0.0
        current = min(self.cost)  # the finest level measured; later levels only grow
        power = self.PRIOR_POWER
        if len(self.cost) > 1:
            coarse = sorted(self.cost)[1]
            ratio = self.schedule.pixels(current) / self.schedule.pixels(coarse)
            cost_ratio = max(self.cost[current], 1e-12) / max(self.cost[coarse], 1e-12)
            power = min(1.0, max(power, math.log(cost_ratio) / math.log(ratio)))
        base = self.schedule.pixels(current)
        return sum(n * self.cost.get(level, self.cost[current] * (self.schedule.pixels(level) / base) ** power)
                   for level, n in self.schedule.steps_left(step, total).items())
