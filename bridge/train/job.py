"""The training job: one dataclass, read from a JSON file and/or flags, validated field by field.

Every problem raises a ``bad_job`` :class:`~..protocol.BridgeError` that names the field, so the
add-on can point at the right setting.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..protocol import EXIT_BAD_INPUT, BridgeError

DEVICES = ("auto", "cuda", "cpu", "mps")
STRATEGIES = ("default", "mcmc")
INITS = ("sfm", "random")
RES_STARTS = (1, 2, 4, 8)


@dataclass
class TrainJob:
    model: str  # COLMAP model folder (cameras/images/points3D, .bin or .txt)
    images: str  # folder with the images the model names
    out: str  # output folder: splats.ply, metrics.json, checkpoints/, previews/, snapshots/
    steps: int = 30_000
    downscale: float = 1.0  # images and intrinsics are divided by this
    sh_degree: int = 3
    strategy: str = "default"  # gsplat's DefaultStrategy, or MCMCStrategy
    cap_max: int = 1_000_000  # the MCMC splat cap
    strategy_options: dict[str, Any] = field(default_factory=dict)  # extra fields of the gsplat strategy
    antialiased: bool = False
    seed: int = 0
    test_every: int = 8  # every Nth image (sorted by name) is held out; 0 holds none out
    background: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    device: str = "auto"
    init: str = "sfm"  # from the SfM points, or random in the cameras' bounds
    init_num_points: int = 100_000  # random init only
    ssim_lambda: float = 0.2
    progress_every: int = 10
    snapshot_every: int = 1000  # preview PNG + PLY snapshot; 0 = never (snapshot command still works)
    checkpoint_every: int = 1000
    eval_steps: list[int] = field(default_factory=list)  # extra evaluations besides the final one
    resume: bool = False
    # Speed-ups (bridge/train/schedule.py). The defaults train exactly as gsplat's simple_trainer does;
    # the presets turn them on.
    schedule_scale: float = 1.0  # densification and SH-band schedule x this (gsplat's steps_scaler); 0: steps/30000
    max_splats: int = 0  # DefaultStrategy's splat budget, reached linearly over the refinement window; 0: none
    splats_per_pixel: float = 0.0  # the same budget as a multiple of a training image's pixels; 0: none
    res_start: int = 1  # train at 1/res_start of the size first (1, 2, 4 or 8), halving up to full size
    res_full_at: float = 0.5  # the fraction of the run from which images are full size
    visible_adam: bool = False  # Adam updates only splats seen in the step's view (gsplat's SelectiveAdam)
    sh_rest_every: int = 1  # the higher SH bands (shN) learn every Nth step only

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainJob)}
REQUIRED = tuple(name for name, f in FIELDS.items()
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def bad_job(name: str, problem: str, hint: str = "") -> BridgeError:
    hint = hint or f"Fix \"{name}\" in the job file or the --{name.replace('_', '-')} flag."
    return BridgeError("bad_job", f"job field '{name}': {problem}", hint=hint, exit_code=EXIT_BAD_INPUT)


def read_job_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise BridgeError("missing_input", f"{path}: job file not found", hint="Check the --job path.",
                          exit_code=EXIT_BAD_INPUT) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BridgeError("bad_job", f"{path}: not a readable JSON job file ({exc})",
                          hint="A job file is one JSON object with the job's fields.",
                          exit_code=EXIT_BAD_INPUT) from None
    if not isinstance(data, dict):
        raise BridgeError("bad_job", f"{path}: a job file holds one JSON object, got {type(data).__name__}",
                          hint="Put the job's fields in one JSON object.", exit_code=EXIT_BAD_INPUT)
    return data


def make_job(values: dict[str, Any]) -> TrainJob:
    """A validated job from field values (JSON types); unknown and missing fields are errors."""
    for name in values:
        if name not in FIELDS:
            raise bad_job(name, "unknown field", hint="Known fields: " + ", ".join(FIELDS))
    for name in REQUIRED:
        if values.get(name) in (None, ""):
            raise bad_job(name, "is required", hint=f"Give --{name.replace('_', '-')} or \"{name}\" in the job file.")
    job = TrainJob(**values)
    _check(job)
    return job


def _int(job: TrainJob, name: str, minimum: int) -> None:
    value = getattr(job, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_job(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise bad_job(name, f"must be at least {minimum}, got {value}")


def _number(job: TrainJob, name: str, low: float, high: float) -> None:
    value = getattr(job, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_job(name, f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise bad_job(name, f"must be between {low} and {high}, got {value}")
    setattr(job, name, float(value))


def _choice(job: TrainJob, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(job, name)
    if value not in choices:
        raise bad_job(name, f"must be one of {', '.join(choices)}, got {value!r}")


def _check(job: TrainJob) -> None:
    for name in ("model", "images", "out"):
        if not isinstance(getattr(job, name), str):
            raise bad_job(name, f"must be a path, got {getattr(job, name)!r}")
        setattr(job, name, os.path.abspath(os.path.expanduser(getattr(job, name))))
    _int(job, "steps", 1)
    _number(job, "downscale", 1.0, 64.0)
    _int(job, "sh_degree", 0)
    if job.sh_degree > 3:
        raise bad_job("sh_degree", f"must be 0 to 3, got {job.sh_degree}")
    _choice(job, "strategy", STRATEGIES)
    _int(job, "cap_max", 1)
    if not isinstance(job.strategy_options, dict):
        raise bad_job("strategy_options", f"must be an object of strategy fields, got {job.strategy_options!r}")
    _check_strategy_options(job)
    for name in ("antialiased", "resume"):
        if not isinstance(getattr(job, name), bool):
            raise bad_job(name, f"must be true or false, got {getattr(job, name)!r}")
    _int(job, "seed", 0)
    _int(job, "test_every", 0)
    if (not isinstance(job.background, (list, tuple)) or len(job.background) != 3
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1
                       for c in job.background)):
        raise bad_job("background", f"must be three numbers in [0, 1] (R, G, B), got {job.background!r}")
    job.background = [float(c) for c in job.background]
    _choice(job, "device", DEVICES)
    _choice(job, "init", INITS)
    _int(job, "init_num_points", 1)
    _number(job, "ssim_lambda", 0.0, 1.0)
    _int(job, "progress_every", 1)
    _int(job, "snapshot_every", 0)
    _int(job, "checkpoint_every", 1)
    _number(job, "schedule_scale", 0.0, 100.0)
    _int(job, "max_splats", 0)
    _number(job, "splats_per_pixel", 0.0, 1000.0)
    _int(job, "res_start", 1)
    if job.res_start not in RES_STARTS:
        raise bad_job("res_start", f"must be one of {', '.join(map(str, RES_STARTS))}, got {job.res_start}")
    _number(job, "res_full_at", 0.0, 1.0)
    if not isinstance(job.visible_adam, bool):
        raise bad_job("visible_adam", f"must be true or false, got {job.visible_adam!r}")
    _int(job, "sh_rest_every", 1)
    if not isinstance(job.eval_steps, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= job.steps for s in job.eval_steps):
        raise bad_job("eval_steps", f"must be a list of steps between 1 and {job.steps}, got {job.eval_steps!r}")


# Every strategy option we pass on, with its type and range: gsplat checks none of them, and a bad value
# fails mid-run (reset_every 0 divides by zero) or silently ruins it (prune_opa 2 prunes every splat).
# An option missing here is refused, so a new gsplat field is never passed on unchecked.
_INT, _NUMBER, _BOOL = "an integer", "a number", "true or false"
_POSITIVE = "a number above 0"
_OPTIONS: dict[str, tuple[str, float, float]] = {  # name -> (type, low, high), inclusive
    "prune_opa": (_NUMBER, 0.0, 0.999),
    "grow_grad2d": (_POSITIVE, 0.0, math.inf),
    "grow_scale3d": (_POSITIVE, 0.0, math.inf),
    "grow_scale2d": (_POSITIVE, 0.0, math.inf),
    "prune_scale3d": (_POSITIVE, 0.0, math.inf),
    "prune_scale2d": (_POSITIVE, 0.0, math.inf),
    "refine_scale2d_stop_iter": (_INT, 0, math.inf),
    "refine_start_iter": (_INT, 0, math.inf),
    "refine_stop_iter": (_INT, 0, math.inf),
    "reset_every": (_INT, 1, math.inf),
    "refine_every": (_INT, 1, math.inf),
    "pause_refine_after_reset": (_INT, 0, math.inf),
    "absgrad": (_BOOL, 0, 1),
    "revised_opacity": (_BOOL, 0, 1),
    "verbose": (_BOOL, 0, 1),
    "noise_lr": (_NUMBER, 0.0, math.inf),
    "min_opacity": (_NUMBER, 0.0, 0.999),
}


def _check_strategy_options(job: TrainJob) -> None:
    # The strategies are gsplat dataclasses; their field names are the public option names.
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    cls = MCMCStrategy if job.strategy == "mcmc" else DefaultStrategy
    known = [f.name for f in dataclasses.fields(cls) if f.name in _OPTIONS]
    for key, value in job.strategy_options.items():
        if key not in known:  # also cap_max (a job field of its own) and key_for_gradient (2DGS only)
            raise bad_job("strategy_options", f"{cls.__name__} has no option {key!r} we support",
                          hint="Options: " + ", ".join(known))
        kind, low, high = _OPTIONS[key]
        is_bool = isinstance(value, bool)
        if kind == _BOOL:
            if not is_bool:
                raise bad_job("strategy_options", f"{key} must be {kind}, got {value!r}")
            continue
        if is_bool or not isinstance(value, (int, float)) or (kind == _INT and not isinstance(value, int)):
            raise bad_job("strategy_options", f"{key} must be {kind}, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high) or (kind == _POSITIVE and value <= 0):
            if kind == _POSITIVE:
                bounds = "above 0"
            else:
                bounds = f"at least {low:g}" if high == math.inf else f"between {low:g} and {high:g}"
            raise bad_job("strategy_options", f"{key} must be {bounds}, got {value!r}")
