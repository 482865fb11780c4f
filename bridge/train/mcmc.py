"""MCMCStrategy off CUDA: pure-torch versions of the two gsplat kernels it calls.

gsplat's strategy ops call ``compute_relocation`` (a CUDA kernel) when they teleport or add splats,
and ``quat_scale_to_covar_preci`` (CUDA) when they add position noise. :func:`install` swaps both
names in ``gsplat.strategy.ops`` for dispatchers that keep gsplat's kernels for CUDA tensors and use
the versions here for everything else, so the unmodified MCMCStrategy runs on the torch backend.
"""
from __future__ import annotations

import torch


def relocation(opacities: torch.Tensor, scales: torch.Tensor, ratios: torch.Tensor, binoms: torch.Tensor):
    """New opacity and scale for a splat that is replaced by ``ratios`` copies of itself.

    3DGS-as-MCMC (Kheradmand et al. 2024), eq. 9: N copies with opacity o' = 1 - (1 - o)^(1/N) render
    like the original when the covariance is scaled by (o / S)^2, where
    S = sum_{i=1..N} sum_{k=0..i-1} C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1).
    Swapping the sums (sum_{i=k+1..N} C(i-1, k) = C(N, k+1)) leaves one sum over k, vectorised here.
    Like the kernel, N is clamped to [1, n_max] with n_max = len(binoms).
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).to(torch.float64)
    o = opacities.to(torch.float64)
    new_o = 1.0 - torch.pow(1.0 - o, 1.0 / n)
    k = torch.arange(n_max, dtype=torch.float64, device=o.device)  # the k of C(N, k+1)
    # C(N, k+1) from log-gammas: float64 holds every coefficient up to n_max = 51 to ~1e-15.
    log_c = torch.lgamma(n[:, None] + 1) - torch.lgamma(k + 2) - torch.lgamma(n[:, None] - k)
    valid = k[None, :] < n[:, None]
    coeff = torch.where(valid, torch.exp(torch.where(valid, log_c, 0.0)), 0.0)
    sign = 1.0 - 2.0 * (k % 2)
    terms = coeff * sign * torch.pow(new_o[:, None], k + 1) / torch.sqrt(k + 1)
    denom = terms.sum(dim=1)
    factor = (o / denom).to(scales.dtype)
    return new_o.to(opacities.dtype), scales * factor[:, None]


def _install_once():
    from gsplat.strategy import ops

    from ..raster.kernels import kernels_unavailable
    from ..raster.projection import quat_scale_to_covar

    cuda_relocation = ops.compute_relocation
    cuda_covar = ops.quat_scale_to_covar_preci

    def compute_relocation(opacities, scales, ratios, binoms):
        if opacities.is_cuda and not kernels_unavailable():
            return cuda_relocation(opacities, scales, ratios, binoms)
        return relocation(opacities, scales, ratios, binoms)

    def quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=True, triu=False):
        # the noise step asks only for full covariances
        if (quats.is_cuda and not kernels_unavailable()) or compute_preci or triu:
            return cuda_covar(quats, scales, compute_covar, compute_preci, triu)
        return quat_scale_to_covar(quats, scales), None

    ops.compute_relocation = compute_relocation
    ops.quat_scale_to_covar_preci = quat_scale_to_covar_preci


_installed = False


def install() -> None:
    global _installed
    if not _installed:
        _install_once()
        _installed = True
