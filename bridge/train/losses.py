"""Image losses and metrics: L1 + lambda * D-SSIM for training, PSNR and SSIM for evaluation.

SSIM is the standard one (11x11 Gaussian window, sigma 1.5, valid region, data range 1), the same
definition torchmetrics, skimage (gaussian_weights, no sample covariance) and fused-ssim use.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.cache
def _fused_ssim():
    try:
        from fused_ssim import fused_ssim
    except ImportError:
        return None
    return fused_ssim


def ssim(img: torch.Tensor, ref: torch.Tensor, train: bool = False) -> torch.Tensor:
    """Mean SSIM of (H, W, 3) images in [0, 1]; differentiable."""
    a = img.permute(2, 0, 1)[None]
    b = ref.permute(2, 0, 1)[None]
    fused = _fused_ssim() if img.is_cuda else None
    if fused is not None:
        return fused(a, b, padding="valid", train=train)
    from pytorch_msssim import ssim as torch_ssim

    return torch_ssim(a, b, data_range=1.0, size_average=True)


def photometric_loss(render: torch.Tensor, target: torch.Tensor, ssim_lambda: float) -> torch.Tensor:
    l1 = F.l1_loss(render, target)
    if ssim_lambda == 0.0:
        return l1
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim(render, target, train=True))


def psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    return mse_to_psnr(float(torch.mean((img.float() - ref.float()) ** 2)))


def mse_to_psnr(mse: float) -> float:
    return 100.0 if mse <= 1e-10 else -10.0 * math.log10(mse)
