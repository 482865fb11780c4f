"""``python -m bridge train``: flags and/or a JSON job in, events out (see ``bridge/protocol.py``).

    python -m bridge train --model sparse/0 --images images --out run --steps 7000 --downscale 4
    python -m bridge train --job job.json [--resume] [--ipc]

Flags use the job's field names (``sh_degree`` -> ``--sh-degree``); a flag given with ``--job``
overrides that field of the file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from .. import protocol
from ..protocol import EXIT_BAD_INPUT, BridgeError
from ..runner import RunContext, run_command
from .job import DEVICES, INITS, STRATEGIES, bad_job, make_job, read_job_file


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print and exit; the client needs an Error event instead
        raise BridgeError("bad_job", f"bad arguments: {message}", hint=self.format_usage().strip(),
                          exit_code=EXIT_BAD_INPUT)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _background(text: str) -> list[float]:
    try:
        return [float(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected R,G,B in [0, 1], got {text!r}") from None


def _json_object(text: str) -> dict:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}") from None


def _steps(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected steps separated by commas, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m bridge train", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=None)
    p.add_argument("--job", metavar="FILE", help="JSON file with the job's fields")
    p.add_argument("--model", help="COLMAP model folder (e.g. sparse/0)")
    p.add_argument("--images", help="folder with the model's images")
    p.add_argument("--out", help="output folder")
    p.add_argument("--steps", type=int, help="training steps (default 30000)")
    p.add_argument("--downscale", type=float, help="divide the image size by this (default 1)")
    p.add_argument("--sh-degree", type=int, help="spherical harmonics degree 0-3 (default 3)")
    p.add_argument("--strategy", choices=STRATEGIES, help="densification: gsplat DefaultStrategy or MCMCStrategy")
    p.add_argument("--cap-max", type=int, help="MCMC: the most splats (default 1000000)")
    p.add_argument("--strategy-options", type=_json_object, metavar="JSON",
                   help='extra strategy fields, e.g. \'{"refine_every": 50}\'')
    p.add_argument("--antialiased", type=_bool, nargs="?", const=True, help="antialiased rasterization")
    p.add_argument("--seed", type=int)
    p.add_argument("--test-every", type=int, help="hold out every Nth image sorted by name (default 8; 0: none)")
    p.add_argument("--background", type=_background, metavar="R,G,B", help="background colour (default 0,0,0)")
    p.add_argument("--device", choices=DEVICES, help="default auto: cuda, else mps, else cpu")
    p.add_argument("--init", choices=INITS, help="initial splats: the SfM points or random (default sfm)")
    p.add_argument("--init-num-points", type=int, help="random init: how many splats (default 100000)")
    p.add_argument("--ssim-lambda", type=float, help="weight of D-SSIM in the loss (default 0.2)")
    p.add_argument("--progress-every", type=int, help="a progress event every N steps (default 10)")
    p.add_argument("--snapshot-every", type=int, help="preview PNG + PLY snapshot every N steps (0: never)")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default 1000)")
    p.add_argument("--eval-steps", type=_steps, metavar="N,M", help="evaluate also at these steps")
    p.add_argument("--schedule-scale", type=float,
                   help="scale gsplat's densification and SH schedule by this (default 1; 0: steps/30000)")
    p.add_argument("--max-splats", type=int, help="DefaultStrategy splat budget, 0: none (default 0)")
    p.add_argument("--splats-per-pixel", type=float,
                   help="splat budget as a multiple of a training image's pixels, 0: none (default 0)")
    p.add_argument("--res-start", type=int, help="start at 1/N of the image size: 1, 2, 4 or 8 (default 1)")
    p.add_argument("--res-full-at", type=float, help="fraction of the run from which images are full size (0.5)")
    p.add_argument("--visible-adam", type=_bool, nargs="?", const=True,
                   help="update only the splats seen in each step's view (default false)")
    p.add_argument("--sh-rest-every", type=int, help="the higher SH bands learn every Nth step (default 1)")
    p.add_argument("--resume", action="store_const", const=True, help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--ipc", action="store_true", help="a program drives this run (events on stdout; EOF stops)")
    return p


def parse_job(argv: list[str]):
    args = vars(build_parser().parse_args(argv))
    args.pop("ipc")
    job_file = args.pop("job")
    values = read_job_file(job_file) if job_file else {}
    values.update({k: v for k, v in args.items() if v is not None})
    return make_job(values)


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


def train(ctx: RunContext, argv: list[str]) -> protocol.Done:
    job = parse_job(argv)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        return 0
    return run_command("train", lambda ctx: train(ctx, argv), ipc="--ipc" in argv)
