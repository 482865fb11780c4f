"""gsplat's densification strategies, with the schedule scaled to the run and an optional splat budget.

gsplat's schedule is absolute (refine from step 500 to 15,000 every 100 steps, opacity reset every
3,000: made for 30,000 steps), so a 600-step run never densifies. ``schedule_scale`` multiplies those
steps (and the SH-band interval) as simple_trainer's ``steps_scaler`` does, with floors on the
periods; 0 means steps / 30,000. Options given in ``strategy_options`` are taken as they are.
(gsplat 1.5.3's DefaultStrategy never actually resets opacities: its ``step % self.reset_every == 0 &
step > 0`` is a chained comparison that is always false. Kept as it is, like simple_trainer.)

:class:`BudgetStrategy` is gsplat's DefaultStrategy with two changes: its per-step statistics are
gathered without ``torch.where`` (which waits for the GPU every step), and with ``max_splats`` each
refinement grows only the splats with the largest gradients that fit under a budget rising linearly
from the initial count to ``max_splats`` over the refinement window (or up to the run's end, if sooner).
"""
from __future__ import annotations

import dataclasses

import torch
from gsplat.strategy import DefaultStrategy, MCMCStrategy

REFERENCE_STEPS = 30_000  # the run length gsplat's schedule was made for
SH_BAND_EVERY = 1000  # one more SH band every 1,000 steps at scale 1, as in 3DGS
# The scaled steps, each with its floor: gsplat's periods stay at least 10 and 300 steps (their 1:30
# ratio), so a 600-step run refines every 10 steps, not every 2 (and would reset opacities at most
# once, if gsplat 1.5.3's reset ever fired: see above).
_SCALED = {"refine_start_iter": 0, "refine_stop_iter": 0, "refine_every": 10, "reset_every": 300}


def schedule_scale(job) -> float:
    return job.schedule_scale if job.schedule_scale > 0 else job.steps / REFERENCE_STEPS


def sh_band_every(job) -> int:
    return max(1, int(SH_BAND_EVERY * schedule_scale(job)))


def splat_budget(job, pixels: int) -> int:
    """The DefaultStrategy budget: the smaller of ``max_splats`` and ``splats_per_pixel`` x ``pixels``
    (a training image's pixel count at the training size); 0 for none."""
    budgets = [job.max_splats] if job.max_splats > 0 else []
    if job.splats_per_pixel > 0:
        budgets.append(max(1, int(job.splats_per_pixel * pixels)))
    return min(budgets, default=0)


def make_strategy(job, num_splats: int, scene_scale: float, pixels: int = 0):
    """(strategy, state) for the job; ``num_splats`` is where the budget starts, ``pixels`` the size of
    the largest training image."""
    cls = MCMCStrategy if job.strategy == "mcmc" else BudgetStrategy
    names = {f.name for f in dataclasses.fields(cls)}
    scale = schedule_scale(job)
    options = {}
    for name, floor in _SCALED.items():
        if name in names and scale != 1.0:
            options[name] = max(floor, int(getattr(cls, name) * scale))
    options.update(job.strategy_options)
    if job.strategy == "mcmc":
        strategy = MCMCStrategy(cap_max=job.cap_max, **options)
        return strategy, strategy.initialize_state()
    strategy = BudgetStrategy(max_splats=splat_budget(job, pixels), initial_splats=num_splats, run_steps=job.steps,
                              **options)
    return strategy, strategy.initialize_state(scene_scale=scene_scale)


@dataclasses.dataclass
class BudgetStrategy(DefaultStrategy):
    max_splats: int = 0  # 0: no budget (gsplat's DefaultStrategy)
    initial_splats: int = 0
    run_steps: int = 0  # the budget is all there by the end of refinement or of the run, whichever is first

    def budget(self, step: int) -> float:
        if self.max_splats <= 0:
            return float("inf")
        stop = min(self.refine_stop_iter, self.run_steps) if self.run_steps > 0 else self.refine_stop_iter
        window = max(1, stop - self.refine_start_iter)
        frac = min(1.0, max(0.0, (step - self.refine_start_iter) / window))
        start = min(self.initial_splats, self.max_splats)
        return start + (self.max_splats - start) * frac

    def _update_state(self, params, state, info, packed: bool = False):
        if packed:
            return super()._update_state(params, state, info, packed=packed)
        # Dense masks instead of gsplat's torch.where(sel): the same sums, no wait for the device.
        grads = info[self.key_for_gradient]
        grads = grads.absgrad if self.absgrad else grads.grad  # [C, N, 2]
        n = len(params["means"])
        for key in ("grad2d", "count"):
            if state[key] is None:
                state[key] = torch.zeros(n, device=grads.device)
        sel = (info["radii"] > 0.0).all(dim=-1)  # [C, N]
        sx, sy = info["width"] / 2.0 * info["n_cameras"], info["height"] / 2.0 * info["n_cameras"]
        norms = torch.hypot(grads[..., 0] * sx, grads[..., 1] * sy)
        state["grad2d"] += torch.where(sel, norms, 0.0).sum(dim=0)
        state["count"] += sel.sum(dim=0).to(state["count"].dtype)
        if self.refine_scale2d_stop_iter > 0:
            if state["radii"] is None:
                state["radii"] = torch.zeros(n, device=grads.device)
            radii = info["radii"].max(dim=-1).values / float(max(info["width"], info["height"]))
            state["radii"] = torch.maximum(state["radii"], torch.where(sel, radii, 0.0).max(dim=0).values)

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state, step):
        room = self.budget(step) - len(params["means"])
        if room == float("inf"):
            return super()._grow_gs(params, optimizers, state, step)
        grads = state["grad2d"] / state["count"].clamp_min(1)
        candidates = int((grads > self.grow_grad2d).sum())
        room = max(0, int(room))
        if candidates <= room:
            return super()._grow_gs(params, optimizers, state, step)
        # Each duplicate or split adds one splat: keep the `room` largest gradients by raising the threshold.
        threshold = self.grow_grad2d
        if room == 0:
            self.grow_grad2d = float("inf")
        else:
            self.grow_grad2d = float(torch.topk(grads, room + 1).values[-1])
        try:
            return super()._grow_gs(params, optimizers, state, step)
        finally:
            self.grow_grad2d = threshold
