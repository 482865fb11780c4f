"""The training loop: gsplat's example trainer (3DGS) with our protocol, commands and checkpoints.

One step: render a training view, L1 + lambda * D-SSIM (plus MCMC's opacity and scale
regularisers), Adam, then the gsplat strategy densifies / prunes / relocates. The job's speed-ups
(coarse-to-fine images, visible-only Adam, a splat budget, a scaled schedule, fewer SH-band updates)
are all off by default. A step waits for the device only at progress reports and at densification
steps (gsplat counts the splats it grows). The commands read on stdin are handled between steps, so
"stop" (and SIGTERM/SIGINT, see ``bridge/runner.py``) always leaves a checkpoint and an exported PLY.

What was saved stays good: parameters are checked for NaN/infinity before every checkpoint, snapshot
and export (and the loss at every progress report, where the device is waited for anyway), so a
diverged run ends with a ``diverged`` error and the last finite checkpoint on disk; a write that
finds no room ends with ``disk_full`` naming the file, the previous file intact (writes are atomic).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time

import numpy as np
import torch

from .. import protocol
from ..formats import FormatError, write_splats
from ..formats.atomic import atomic_write, remove_stale_temporaries
from ..protocol import BridgeError
from ..raster import rasterize
from ..runner import NO_SPACE, disk_full_error
from . import checkpoint, gaussians
from .clock import PhaseClock
from .job import bad_job
from .losses import mse_to_psnr, photometric_loss, psnr, ssim
from .resolution import ResolutionSchedule, StepCosts
from .strategy import make_strategy, sh_band_every

MCMC_OPACITY_REG = 0.01  # gsplat's MCMC preset
MCMC_SCALE_REG = 0.01
SNAPSHOTS_KEPT = 2  # the client may still be reading the previous one


class Trainer:
    def __init__(self, ctx, job, dataset, device: torch.device, backend: str):
        self.ctx, self.job, self.data, self.device, self.backend = ctx, job, dataset, device, backend
        self.out = job.out
        self.ckpt_path = checkpoint.checkpoint_path(job.out)
        self.background = torch.tensor(job.background, dtype=torch.float32, device=device)
        cameras = [self._camera(v) for v in dataset.train]
        self.viewmats = [viewmat for viewmat, _ in cameras]
        self.views = ResolutionSchedule([torch.from_numpy(v.image).to(device) for v in dataset.train],
                                        [K for _, K in cameras], job.steps, job.res_start, job.res_full_at)
        self.step_costs = StepCosts(self.views)  # for the ETA: coarse-to-fine steps cost more as they grow
        self.sh_band_every = sh_band_every(job)
        self.stopped = False
        self.train_seconds = 0.0
        self.phases = PhaseClock()  # the command's clock replaces it, with start-up, images and set-up
        self._seed_everything(job.seed)

        points, colors = gaussians.initial_splats(dataset, job, np.random.default_rng(job.seed))
        self.params = gaussians.create_params(points, colors, job, np.random.default_rng(job.seed + 1), device)
        self.optimizers = gaussians.create_optimizers(self.params, dataset.scene_scale, visible=job.visible_adam)
        self.scheduler = gaussians.means_scheduler(self.optimizers["means"], job.steps)
        if job.strategy == "mcmc" and backend != "gsplat":  # no gsplat kernels: PyTorch relocation and noise
            from . import mcmc

            mcmc.install()
        pixels = max((v.width * v.height for v in dataset.train), default=0)
        self.strategy, self.strategy_state = make_strategy(job, self.num_splats, dataset.scene_scale, pixels)
        self.strategy.check_sanity(self.params, self.optimizers)
        self.start_step = self.step = 0
        self.saved_step: int | None = None  # the step of the checkpoint on disk, once known good
        if job.resume:
            self._resume()
        # A run killed mid-write (SIGKILL, power) leaves its temporary file; nothing else writes here
        # (this run holds the output folder's lock: bridge/outlock.py).
        for folder in (self.out, os.path.dirname(self.ckpt_path), os.path.join(self.out, "snapshots")):
            for path in remove_stale_temporaries(folder):
                ctx.log(f"removed {path}, left by an interrupted write")

    # ---- setup ---------------------------------------------------------------------------

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _camera(self, view):
        return (torch.tensor(view.world_to_camera, dtype=torch.float32, device=self.device)[None],
                torch.tensor(view.K, dtype=torch.float32, device=self.device)[None])

    def _resume(self) -> None:
        payload = checkpoint.load(self.ckpt_path, self.device)
        saved = payload["job"] if isinstance(payload["job"], dict) else {}
        for name in ("model", "sh_degree", "strategy", "downscale"):
            if name in saved and saved[name] != getattr(self.job, name):
                raise bad_job(name, f"{getattr(self.job, name)!r} differs from the checkpoint's "
                              f"{saved[name]!r} ({self.ckpt_path})",
                              hint="Resume with the job the run started with, or start a new run.")
        self.start_step, self.strategy_state = checkpoint.restore(
            self.ckpt_path, payload, self.params, self.optimizers, self.scheduler)
        self.saved_step = self.start_step
        self.ctx.log(f"resumed from {self.ckpt_path} at step {self.start_step}")

    # ---- rendering -----------------------------------------------------------------------

    def render(self, viewmat, K, width: int, height: int, sh_degree: int, learn_sh_rest: bool = True):
        p = self.params
        # Off the steps where the higher bands learn, shN enters as a constant: no gradient, no Adam update.
        sh_rest = p["shN"] if learn_sh_rest else p["shN"].detach()
        colors, alphas, info = rasterize(
            means=p["means"], quats=p["quats"], scales=torch.exp(p["scales"]),
            opacities=torch.sigmoid(p["opacities"]), colors=torch.cat([p["sh0"], sh_rest], dim=1),
            viewmats=viewmat, Ks=K, width=width, height=height, sh_degree=sh_degree,
            backgrounds=self.background[None], absgrad=getattr(self.strategy, "absgrad", False),
            rasterize_mode="antialiased" if self.job.antialiased else "classic", packed=self.job.packed,
            backend=self.backend,
        )
        return colors[0, ..., :3], info

    @torch.no_grad()
    def render_view(self, view) -> torch.Tensor:
        viewmat, K = self._camera(view)
        image, _ = self.render(viewmat, K, view.width, view.height, self.job.sh_degree)
        return image.clamp(0.0, 1.0)

    # ---- the loop ------------------------------------------------------------------------

    def _view_index(self, step: int) -> int:
        # A fresh shuffle each epoch, computed from (seed, epoch): a resumed run sees the same order.
        n = len(self.viewmats)
        epoch, offset = divmod(step, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.job.seed * 100_003 + epoch))
        return int(order[offset])

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step; returns (loss, MSE) as device tensors, so a GPU never waits on the host."""
        idx = self._view_index(step)
        target, K = self.views.view(step, idx)
        height, width = target.shape[:2]
        sh_degree = min(step // self.sh_band_every, self.job.sh_degree)
        image, info = self.render(self.viewmats[idx], K, width, height, sh_degree,
                                  learn_sh_rest=step % self.job.sh_rest_every == 0)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, info)
        loss = photometric_loss(image, target, self.job.ssim_lambda)
        if self.job.strategy == "mcmc":
            loss = (loss + MCMC_OPACITY_REG * torch.sigmoid(self.params["opacities"]).mean()
                    + MCMC_SCALE_REG * torch.exp(self.params["scales"]).mean())
        if not loss.requires_grad:
            # Our rasterizer culled every splat of this view (gsplat's keeps the graph). NaN splats are
            # culled, so this is where a diverged run shows first; checking is a rare sync. Otherwise
            # there is nothing to learn from this view.
            self._check_finite(step + 1)
            self.scheduler.step()
            return loss.detach(), torch.mean((image.detach() - target) ** 2)
        loss.backward()
        if self.job.visible_adam:  # splats this view saw (before the strategy changes their number)
            if info["packed"]:
                visible = torch.zeros(self.num_splats, dtype=torch.bool, device=self.device)
                visible[info["gaussian_ids"]] = True
            else:
                visible = (info["radii"] > 0).all(dim=-1).any(dim=0)
            for opt in self.optimizers.values():
                opt.step(visible)
                opt.zero_grad(set_to_none=True)
        else:
            for opt in self.optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.job.strategy == "mcmc":
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info,
                                             lr=self.scheduler.get_last_lr()[0])
        else:
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, info,
                                             packed=info.get("packed", False))
        return loss.detach(), torch.mean((image.detach() - target) ** 2)

    def run(self) -> protocol.Done:
        ctx = self.ctx
        ctx.emit(protocol.Stage(stage="training", message=f"{len(self.viewmats)} training views, "
                                f"{len(self.data.test)} held out, {self.num_splats} initial splats"))
        self.step = self.start_step
        try:
            self._loop()
            return self.finish(self.step)
        except torch.OutOfMemoryError:
            raise BridgeError(
                "cuda_oom", f"out of GPU memory at step {self.step} with {self.num_splats} splats",
                hint="Raise 'downscale', turn on 'packed', or use the 'mcmc' strategy with a lower 'cap_max'. "
                     + self._intact()) from None

    def _intact(self) -> str:
        if self.saved_step is None:
            return "No checkpoint had been written yet."
        return f"The checkpoint {self.ckpt_path} (step {self.saved_step}) is intact: --resume continues from it."

    @contextlib.contextmanager
    def _writing(self):
        """Turns a failed write into an error naming the file, and says which checkpoint survived."""
        try:
            yield
        except (OSError, FormatError) as exc:
            # write_splats reports an OSError as FormatError (raised from None, the OSError kept as context)
            error = exc if isinstance(exc, OSError) else exc.__context__
            if not isinstance(error, OSError):
                raise
            if error.errno in NO_SPACE:
                raise disk_full_error(error, hint="Free some space on that disk, or choose an output folder "
                                                  "on another one. " + self._intact()) from None
            raise BridgeError("write_failed", f"{error.filename or exc}: cannot write ({error.strerror})",
                              hint="Check that the output folder is writable. " + self._intact()) from None

    def _check_finite(self, step: int, loss: float | None = None) -> None:
        """Ends the run before anything non-finite is saved. The parameter check waits for the device, so
        it runs only before saving, or when ``loss`` (already read for a progress report) is not finite."""
        if loss is not None and math.isfinite(loss):
            return
        bad = [name for name, p in self.params.items() if not bool(torch.isfinite(p).all())]
        if loss is None and not bad:
            return
        what = " and ".join(([f"parameter(s) {', '.join(bad)}"] if bad else [])
                            + (["the loss"] if loss is not None else []))
        raise BridgeError(
            "diverged", f"training diverged at step {step}: {what} became NaN or infinite; nothing of it "
                        "was saved",
            hint="Usually the learning rates are too high for the scene's scale: check the COLMAP model for "
                 "outlier points or cameras far from the scene and for wrong intrinsics, or start again with "
                 "another seed. "
                 + self._intact())

    def _loop(self) -> None:
        job, ctx = self.job, self.ctx
        # Rates use time spent in training steps only: pauses, snapshots and checkpoints do not count.
        window_seconds, window_step = self.train_seconds, self.step
        while self.step < job.steps:
            if not self._handle_commands(self.step):
                self.stopped = True
                return
            step = self.step + 1
            report = step % job.progress_every == 0 or step == job.steps
            t0 = time.perf_counter()
            loss, mse = self.train_step(self.step)
            if report:  # reading the values waits for the device, so the timing covers its work too
                loss, train_psnr = float(loss), mse_to_psnr(float(mse))
                self._check_finite(step, loss)
            seconds = time.perf_counter() - t0
            self.train_seconds += seconds
            self.step_costs.add(self.views.level(self.step), seconds)
            self.step = step
            if report:
                rate = (step - window_step) / max(self.train_seconds - window_seconds, 1e-9)
                window_seconds, window_step = self.train_seconds, step
                ctx.emit(protocol.Progress(
                    step=step, total=job.steps, loss=loss, psnr=train_psnr, num_splats=self.num_splats,
                    steps_per_sec=rate, eta_sec=self.step_costs.eta(step, job.steps),
                    elapsed_sec=self.train_seconds, gpu_mem_mb=self._gpu_mem_mb()))
            if step % job.checkpoint_every == 0 and step < job.steps:
                self.save_checkpoint(step)
            if job.snapshot_every and step % job.snapshot_every == 0 and step < job.steps:
                self.snapshot(step)
            if step in job.eval_steps and step < job.steps:
                self.evaluate(step)
                ctx.emit(protocol.Stage(stage="training"))

    def _handle_commands(self, step: int) -> bool:
        """Applies stdin commands; False when the run must stop. Blocks while paused."""
        paused = False
        while True:
            for cmd in self.ctx.commands.poll():
                if cmd == "stop":
                    return False
                if cmd == "snapshot":
                    self.snapshot(step)
                elif cmd == "pause" and not paused:
                    paused = True
                    self.ctx.log(f"paused at step {step}")
                elif cmd == "resume" and paused:
                    paused = False
                    self.ctx.log(f"resumed at step {step}")
            if not paused:
                return True
            time.sleep(0.05)

    # ---- outputs -------------------------------------------------------------------------

    @property
    def num_splats(self) -> int:
        return int(self.params["means"].shape[0])

    def _gpu_mem_mb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def save_checkpoint(self, step: int) -> None:
        self._check_finite(step)
        with self._writing():
            checkpoint.save(self.ckpt_path, step=step, params=self.params, optimizers=self.optimizers,
                            scheduler=self.scheduler, strategy_state=self.strategy_state,
                            job=self.job.to_dict())
        self.saved_step = step
        self.ctx.log(f"checkpoint at step {step}: {self.ckpt_path}")

    def snapshot(self, step: int) -> None:
        self._check_finite(step)
        folder = os.path.join(self.out, "snapshots")
        preview = os.path.join(folder, f"preview_{step:06d}.png")
        ply = os.path.join(folder, f"splats_{step:06d}.ply")
        view = (self.data.test or self.data.train)[0]
        with self._writing():
            os.makedirs(folder, exist_ok=True)
            write_png(preview, self.render_view(view))
            write_splats(ply, gaussians.to_splats(self.params))
        self.ctx.emit(protocol.Snapshot(step=step, preview=preview, ply=ply))
        _keep_newest(folder, SNAPSHOTS_KEPT, keep={preview, ply})

    @torch.no_grad()
    def evaluate(self, step: int) -> protocol.EvalResult | None:
        if not self.data.test:
            return None
        self.ctx.emit(protocol.Stage(stage="evaluating", message=f"{len(self.data.test)} held-out views"))
        results = []
        for view in self.data.test:
            image = self.render_view(view)
            target = torch.from_numpy(view.image).to(self.device).float() / 255.0
            results.append({"name": view.name, "psnr": psnr(image, target), "ssim": float(ssim(image, target))})
        event = protocol.EvalResult(step=step, images=results,
                                    mean_psnr=float(np.mean([r["psnr"] for r in results])),
                                    mean_ssim=float(np.mean([r["ssim"] for r in results])))
        self.ctx.emit(event)
        return event

    def finish(self, step: int) -> protocol.Done:
        status = "stopped" if self.stopped else "completed"
        self.phases.seconds["train"] = self.train_seconds  # the steps alone, not the loop's pauses
        self.phases.restart()
        self.save_checkpoint(step)
        self.phases.lap("checkpoint")
        result = None if self.stopped else self.evaluate(step)
        self.phases.lap("evaluate")
        self.ctx.emit(protocol.Stage(stage="exporting"))
        splats_path = os.path.join(self.out, "splats.ply")
        with self._writing():
            write_splats(splats_path, gaussians.to_splats(self.params))
        self.phases.lap("export")
        metrics = {
            "status": status,
            "step": step,
            "steps": self.job.steps,
            "num_splats": self.num_splats,
            "train_seconds": round(self.train_seconds, 3),
            "device": str(self.device),
            "backend": self.backend,
            "undistorted": self.data.undistorted,
            "psnr": result.mean_psnr if result else None,
            "ssim": result.mean_ssim if result else None,
            "eval": [dict(r) for r in result.images] if result else [],
            "phase_seconds": {name: round(seconds, 3) for name, seconds in self.phases.seconds.items()},
        }
        metrics_path = os.path.join(self.out, "metrics.json")
        with self._writing(), atomic_write(metrics_path) as fh:
            fh.write(json.dumps(metrics, indent=2).encode())
        return protocol.Done(
            status=status,
            outputs={"splats": splats_path, "metrics": metrics_path, "checkpoint": self.ckpt_path},
            metrics={k: v for k, v in metrics.items() if k != "eval"})


def _keep_newest(folder: str, count: int, keep: set[str]) -> None:
    """Keeps the ``count`` newest previews and PLYs in ``folder`` (and ``keep``), across resumed runs."""
    for prefix in ("preview_", "splats_"):
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix) and e.is_file()]
        # Newest first; the name (its zero-padded step) breaks ties of the file system's coarse clock.
        entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
        for entry in entries[count:]:
            if entry.path not in keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def write_png(path: str, image: torch.Tensor) -> None:
    from PIL import Image

    pixels = (image.detach().cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    with atomic_write(path) as fh:
        Image.fromarray(pixels).save(fh, format="PNG")
