"""The trainable splats: initialisation, per-parameter Adam optimisers, conversion to a SplatSet.

Parameters are stored as gsplat's example trainer stores them (log-scales, opacity logits, SH in two
groups "sh0" (N, 1, 3) and "shN" (N, K, 3)), which is also SplatSet's layout, so export is a copy.
"""
from __future__ import annotations

import numpy as np
import torch

from ..formats import SH_C0, SplatSet

# The 3DGS learning rates as in gsplat's example trainer; "means" is multiplied by the scene scale.
LEARNING_RATES = {
    "means": 1.6e-4,
    "scales": 5e-3,
    "quats": 1e-3,
    "opacities": 5e-2,
    "sh0": 2.5e-3,
    "shN": 2.5e-3 / 20,
}
MEANS_LR_FINAL_RATIO = 0.01  # the position learning rate decays exponentially to 1 % over the run


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance from each point to its k nearest other points (the initial splat size)."""
    from scipy.spatial import cKDTree

    if len(points) <= 1:
        return np.ones(len(points))
    k = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k + 1)
    return np.sqrt(np.mean(dist[:, 1:] ** 2, axis=1))


def initial_splats(dataset, job, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Initial centres (float64) and colours in [0, 1]: the SfM points, or random in the cameras' bounds."""
    if job.init == "sfm":
        return dataset.points, dataset.colors.astype(np.float64) / 255.0
    # gsplat's random init: a cube 3x the cameras' radius around them, random colours.
    extent = 3.0 * dataset.scene_scale
    points = dataset.scene_center + extent * (rng.random((job.init_num_points, 3)) * 2.0 - 1.0)
    return points, rng.random((job.init_num_points, 3))


def create_params(points: np.ndarray, colors: np.ndarray, job, rng: np.random.Generator,
                  device: torch.device) -> torch.nn.ParameterDict:
    n = len(points)
    mcmc = job.strategy == "mcmc"
    # MCMC starts from fewer, more opaque, smaller splats (gsplat's MCMC preset); the cap also binds the init.
    if mcmc and n > job.cap_max:
        keep = rng.choice(n, job.cap_max, replace=False)
        points, colors, n = points[keep], colors[keep], job.cap_max
    init_opacity, init_scale = (0.5, 0.1) if mcmc else (0.1, 1.0)
    dist = np.maximum(knn_mean_distance(points), 1e-7)
    scales = np.log(dist * init_scale)[:, None].repeat(3, axis=1)
    quats = rng.random((n, 4))  # random unit rotations, as the reference trainer does
    k = (job.sh_degree + 1) ** 2 - 1
    sh0 = ((colors - 0.5) / SH_C0)[:, None, :]
    params = {
        "means": points,
        "scales": scales,
        "quats": quats,
        "opacities": np.full(n, np.log(init_opacity / (1.0 - init_opacity))),
        "sh0": sh0,
        "shN": np.zeros((n, k, 3)),
    }
    return torch.nn.ParameterDict({
        name: torch.nn.Parameter(torch.as_tensor(np.asarray(value), dtype=torch.float32, device=device))
        for name, value in params.items()
    })


def create_optimizers(params: torch.nn.ParameterDict, scene_scale: float,
                      visible: bool = False) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter, as gsplat's strategies expect (they edit each optimiser's state).

    ``visible``: :class:`VisibleAdam` (gsplat's fused SelectiveAdam on CUDA), whose ``step(visibility)``
    updates only the splats the step's view saw."""
    if visible and next(iter(params.values())).is_cuda:
        from gsplat.optimizers import SelectiveAdam as cls
    else:
        cls = VisibleAdam if visible else torch.optim.Adam
    return {
        name: cls([{"params": params[name], "lr": lr * (scene_scale if name == "means" else 1.0), "name": name}],
                  eps=1e-15, betas=(0.9, 0.999))
        for name, lr in LEARNING_RATES.items()
    }


class VisibleAdam(torch.optim.Adam):
    """Adam over the splats in ``visibility`` only: the others keep their values and moments.

    The update of gsplat's SelectiveAdam CUDA kernel (Taming 3DGS), rows gathered and scattered back,
    so a view that sees a tenth of the splats costs a tenth of the update. Like that kernel it applies
    no bias correction. ``step()`` without a mask is plain Adam.
    """

    @torch.no_grad()
    def step(self, visibility: torch.Tensor | None = None):
        if visibility is None:
            return super().step()
        rows = visibility.nonzero()[:, 0]
        for group in self.param_groups:
            param = group["params"][0]
            if param.grad is None:
                continue
            state = self.state[param]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            state["step"] += 1
            beta1, beta2 = group["betas"]
            grad = param.grad[rows]
            exp_avg = state["exp_avg"][rows].mul_(beta1).add_(grad, alpha=1.0 - beta1)
            exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            state["exp_avg"][rows] = exp_avg
            state["exp_avg_sq"][rows] = exp_avg_sq
            param[rows] = param[rows] - group["lr"] * exp_avg / (exp_avg_sq.sqrt() + group["eps"])
        return None


def means_scheduler(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.ExponentialLR:
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=MEANS_LR_FINAL_RATIO ** (1.0 / steps))


def to_splats(params: torch.nn.ParameterDict) -> SplatSet:
    """The current splats, in the COLMAP world frame (training never moves it)."""
    def arr(name):
        return np.ascontiguousarray(params[name].detach().float().cpu().numpy())

    quats = arr("quats")
    quats /= np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    return SplatSet(
        means=arr("means"),
        scales=arr("scales"),
        quats=np.ascontiguousarray(quats, np.float32),
        opacities=arr("opacities"),
        sh_dc=np.ascontiguousarray(arr("sh0")[:, 0, :]),
        sh_rest=arr("shN"),
    )
