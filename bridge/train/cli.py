"""``python -m bridge train``: a training job in (``protocol.TrainJob``), events out.

    python -m bridge train --model sparse/0 --images images --out run --steps 7000 --downscale 4
    python -m bridge train --job job.json [--resume] [--ipc]
    python -m bridge train --job - --ipc        (the job as the first line on stdin)

Flags use the job's field names (``sh_degree`` -> ``--sh-degree``); a flag given with ``--job``
overrides that field of the file.
"""
from __future__ import annotations

import os
import platform
import sys

from .. import STARTED, build_kernels, device, protocol
from ..outlock import output_lock
from ..protocol import TrainJob
from ..runner import RunContext, job_parser, read_job
from ..runner import main as command_main
from .clock import PhaseClock
from .job import absolute_paths, bad_job

DESCRIPTION = __doc__.split("\n\n")[0]


def build_parser():
    return job_parser(TrainJob, DESCRIPTION)


def parse_job(argv: list[str]) -> TrainJob:
    return absolute_paths(read_job(TrainJob, argv))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "gsplat", "warp-lang", "pycolmap", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def train(ctx: RunContext, job: TrainJob) -> protocol.Done:
    job = absolute_paths(job)
    clock = PhaseClock(start=STARTED)
    choice = device.resolve(job.device, field="job field 'device'", build=lambda: build_kernels.build(ctx),
                            progress=device.compile_progress(ctx))
    clock.lap("start")
    ctx.hello(device=choice.device, backend=choice.backend, versions=_versions(), rasterizer=choice.reason)
    if choice.notice:
        ctx.log(choice.notice, level="warning")
    ctx.emit(protocol.Stage(stage="loading_images"))
    from .data import load_dataset
    from .trainer import Trainer

    dataset = load_dataset(job, log=ctx.log)
    clock.lap("load_images")
    ctx.claim_signals()  # again: importing pycolmap (reading the model) replaced the SIGTERM handler
    try:
        os.makedirs(job.out, exist_ok=True)
    except OSError as exc:
        raise bad_job("out", f"cannot create {job.out} ({exc.strerror})") from None
    import torch

    if choice.backend == "warp" and choice.device == "cpu":
        # The compiled rasterizer runs its own threads, one per core; torch's ops (loss, Adam) stay on one,
        # or its idle OpenMP workers spin against the rasterizer's threads after each of them.
        torch.set_num_threads(1)
    # Before the checkpoint is read: a Resume may find the run before it still saving there.
    with output_lock(ctx, job.out, job.lock_wait) as held:
        if not held:
            return protocol.Done(status="stopped", metrics={"stage": "waiting"})
        trainer = Trainer(ctx, job, dataset, torch.device(choice.device), choice.backend)
        clock.lap("setup")
        trainer.phases = clock
        return trainer.run()


def main(argv: list[str] | None = None) -> int:
    return command_main(TrainJob, train, list(sys.argv[1:] if argv is None else argv), DESCRIPTION)
