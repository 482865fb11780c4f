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

from .. import protocol
from ..protocol import EXIT_BAD_INPUT, BridgeError, TrainJob
from ..runner import RunContext, job_parser, read_job
from ..runner import main as command_main
from .job import absolute_paths, bad_job

DESCRIPTION = __doc__.split("\n\n")[0]


def build_parser():
    return job_parser(TrainJob, DESCRIPTION)


def parse_job(argv: list[str]) -> TrainJob:
    return absolute_paths(read_job(TrainJob, argv))


def resolve_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise BridgeError("no_cuda", f"job field 'device': CUDA was requested but is not available "
                          f"(torch {torch.__version__}, {build})",
                          hint="Use device 'auto' or 'cpu' here, or run on a machine with an NVIDIA GPU "
                               "and a CUDA build of torch.", exit_code=EXIT_BAD_INPUT)
    if name == "mps" and not torch.backends.mps.is_available():
        raise BridgeError("no_mps", "job field 'device': Apple MPS was requested but is not available",
                          hint="Use device 'auto' or 'cpu'.", exit_code=EXIT_BAD_INPUT)
    return torch.device(name)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "gsplat", "pycolmap", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def train(ctx: RunContext, job: TrainJob) -> protocol.Done:
    job = absolute_paths(job)
    device = resolve_device(job.device)
    backend = "gsplat" if device.type == "cuda" else "torch"
    ctx.hello(device=str(device), backend=backend, versions=_versions())
    ctx.emit(protocol.Stage(stage="loading_images"))
    from .data import load_dataset
    from .trainer import Trainer

    dataset = load_dataset(job, log=ctx.log)
    ctx.claim_signals()  # again: importing pycolmap (reading the model) replaced the SIGTERM handler
    try:
        os.makedirs(job.out, exist_ok=True)
    except OSError as exc:
        raise bad_job("out", f"cannot create {job.out} ({exc.strerror})") from None
    return Trainer(ctx, job, dataset, device, backend).run()


def main(argv: list[str] | None = None) -> int:
    return command_main(TrainJob, train, list(sys.argv[1:] if argv is None else argv), DESCRIPTION)
