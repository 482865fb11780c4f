"""What a bridge command is asked to do: one dataclass per command, JSON both ways, one validator.

The add-on builds a job object and sends it as one JSON line on the bridge's stdin (``--job -``); a
person writes the same JSON in a file (``--job FILE``) or gives the fields as flags (``steps`` ->
``--steps``), which override the file. :func:`job_from_dict` is the only way in: it refuses unknown
and missing fields, checks every value against its type and the bounds in the field's metadata, then
the job's own cross-field rules, and raises :class:`JobError` naming the field. Standard library only:
the add-on imports this inside Blender.

Adding an option to a command is adding a field here: the flag, the JSON and the validation follow
from the field, and so do the add-on's Blender property, its place in a panel (``panel``) and its
``blender --command splatwork`` flag (``addon/common/options.py``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .messages import EXIT_BAD_INPUT, BridgeError


class JobError(BridgeError):
    """A bad job: ``field`` names the offending field (``frames[2].K`` inside lists)."""

    def __init__(self, name: str, problem: str, hint: str = ""):
        flag = name.split("[")[0].split(".")[0].replace("_", "-")  # frames[2].K and strategy_options.x: their flag's
        hint = hint or f"Fix \"{name}\" in the job file or the --{flag} flag."
        super().__init__("bad_job", f"job field '{name}': {problem}", hint=hint, exit_code=EXIT_BAD_INPUT)
        self.field = name


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | dict = (),
           low: float | None = None, high: float | None = None, above: float | None = None, flag: bool = True,
           path: str = "", label: str = "", panel: str = "", ui: str = "", factory=None) -> Any:
    """A job field: its default, its help (the flag's and the UI's tooltip), and the bounds the
    validator checks.

    ``low``/``high`` are inclusive bounds of a number, ``above`` an exclusive lower one; ``choices``
    the allowed values (a dict: value -> (label, description) for menus); ``flag=False`` keeps a
    field out of the command line (nested data only a file can hold); ``path`` marks a file or folder
    the command reads (``"in"``) or writes (``"out"``): what a client carries to another machine and
    back. For the add-on: ``label`` names it in the UI, ``panel`` (``"main"`` or ``"advanced"``) is
    where its panel shows it (empty: not shown), ``ui="color"`` draws three numbers as a colour.
    """
    choice_text = dict(choices) if isinstance(choices, dict) else {}
    metadata = {"help": help, "choices": tuple(choices), "choice_text": choice_text, "low": low, "high": high,
                "above": above, "flag": flag, "path": path, "label": label, "panel": panel, "ui": ui}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class Job:
    command: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """One line of JSON (the form sent on stdin)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    def check(self) -> None:
        """Rules between fields, after every field has its type and bounds; raise JobError."""


def panel_fields(cls: type, panel: str | None = None) -> list[str]:
    """The fields of ``cls`` that a panel shows (``panel``: only those of that section), in field order."""
    return [f.name for f in dataclasses.fields(cls)
            if f.metadata.get("panel") and (panel is None or f.metadata["panel"] == panel)]


# ---------------------------------------------------------------------------------------------
# train

# Which rasterizer runs where (bridge/device.py owns the rule): gsplat's kernels on CUDA, our PyTorch
# rasterizer on CUDA without compiling, Apple MPS, the CPU; auto picks the first that works.
DEVICES = {
    "auto": ("Automatic", "An NVIDIA GPU with gsplat's kernels when they load, else with the PyTorch rasterizer "
             "(no compile); else Apple MPS; else the CPU"),
    "cuda": ("CUDA (gsplat kernels)", "An NVIDIA GPU with gsplat's CUDA kernels (fastest; built once during set-up)"),
    "cuda-torch": ("CUDA (no compile)", "An NVIDIA GPU with Splatwork's PyTorch rasterizer: nothing to compile, "
                   "slower than gsplat's kernels"),
    "mps": ("Apple MPS", "An Apple GPU with the PyTorch rasterizer"),
    "cpu": ("CPU", "Pure PyTorch rasterizer: slow, for small scenes and previews"),
}
TRAIN_DEVICES = tuple(DEVICES)
STRATEGIES = {
    "default": ("Default", "gsplat's DefaultStrategy: grows splats where the image needs detail, prunes faint ones"),
    "mcmc": ("MCMC", "gsplat's MCMCStrategy: a fixed budget of splats (Max Splats) moved to where they are needed"),
}
INITS = ("sfm", "random")
RES_STARTS = (1, 2, 4, 8)

# The gsplat strategy options a job may set (``strategy_options``), typed and bounded like job fields:
# gsplat checks none of them, and a bad value fails mid-run (reset_every 0 divides by zero) or silently
# ruins it (prune_opa 2 prunes every splat). An option not named here is refused, so a new gsplat field
# is never passed on unchecked. Defaults are gsplat 1.5.3's; tests/test_jobs_protocol.py holds these
# classes to gsplat's dataclasses (names and defaults). cap_max is a job field of its own.


@dataclass
class DefaultOptions:
    """gsplat's ``DefaultStrategy``: grow by gradient, prune by opacity and size."""

    prune_opa: float = option(0.005, "prune splats below this opacity", low=0.0, high=0.999)
    grow_grad2d: float = option(0.0002, "grow splats whose image-space gradient is above this", above=0.0)
    grow_scale3d: float = option(0.01, "clone below this size (of the scene), split above", above=0.0)
    grow_scale2d: float = option(0.05, "split splats above this size on screen", above=0.0)
    prune_scale3d: float = option(0.1, "prune splats above this size (of the scene)", above=0.0)
    prune_scale2d: float = option(0.15, "prune splats above this size on screen", above=0.0)
    refine_scale2d_stop_iter: int = option(0, "stop using the on-screen size after this step", low=0)
    refine_start_iter: int = option(500, "start refining at this step", low=0)
    refine_stop_iter: int = option(15_000, "stop refining at this step", low=0)
    reset_every: int = option(3000, "reset opacities every N steps", low=1)
    refine_every: int = option(100, "refine every N steps", low=1)
    pause_refine_after_reset: int = option(0, "steps without refining after a reset", low=0)
    absgrad: bool = option(False, "use absolute gradients (AbsGS)")
    revised_opacity: bool = option(False, "revised opacity after splitting (arXiv 2404.06109)")
    verbose: bool = option(False, "print what each refinement did")


@dataclass
class MCMCOptions:
    """gsplat's ``MCMCStrategy``: relocate dead splats, add up to ``cap_max``, noise on positions."""

    refine_start_iter: int = option(500, "start refining at this step", low=0)
    refine_stop_iter: int = option(25_000, "stop refining at this step", low=0)
    refine_every: int = option(100, "refine every N steps", low=1)
    min_opacity: float = option(0.005, "splats below this opacity are relocated", low=0.0, high=0.999)
    noise_lr: float = option(5e5, "learning rate of the noise on positions", low=0.0)
    verbose: bool = option(False, "print what each refinement did")


STRATEGY_OPTIONS: dict[str, type] = {"default": DefaultOptions, "mcmc": MCMCOptions}


@dataclass
class TrainJob(Job):
    command: ClassVar[str] = "train"

    model: str = option(help="COLMAP model folder (e.g. sparse/0)", path="in")
    images: str = option(help="folder with the model's images", path="in")
    out: str = option(help="output folder: splats.ply, metrics.json, checkpoints/, previews/, snapshots/",
                      path="out")
    steps: int = option(30_000, "training steps", low=1, label="Steps", panel="main")
    downscale: float = option(1.0, "divide the image size by this; larger trains faster and uses less memory",
                              low=1.0, high=64.0, label="Downscale", panel="main")
    sh_degree: int = option(3, "spherical harmonics degree 0-3: view-dependent colour (0: flat colour)", low=0,
                            high=3, label="SH Degree", panel="main")
    strategy: str = option("default", "densification: gsplat's DefaultStrategy or MCMCStrategy", choices=STRATEGIES,
                           label="Densification", panel="advanced")
    cap_max: int = option(1_000_000, "MCMC: the most splats", low=1, label="Max Splats (MCMC)", panel="advanced")
    strategy_options: dict[str, Any] = option(help='extra strategy fields, e.g. \'{"refine_every": 50}\'',
                                              factory=dict)
    antialiased: bool = option(False, "antialiased rasterization (Mip-Splatting's 2D filter): fewer artefacts "
                               "when the splats are seen smaller or larger than in training", label="Antialiased",
                               panel="advanced")
    packed: bool = option(False, "packed rasterization: per view only the splats it draws are kept (gsplat's "
                          "packed mode: less GPU memory on large scenes, a little slower on small ones)",
                          label="Packed", panel="advanced")
    seed: int = option(0, "random seed", low=0, label="Seed", panel="advanced")
    test_every: int = option(8, "hold out every Nth image sorted by name to measure quality (0: none)", low=0,
                             label="Hold Out Every", panel="advanced")
    background: list[float] = option(help="colour behind the splats while training, R,G,B in [0, 1]: match a plain "
                                     "studio backdrop, else black", low=0.0, high=1.0,
                                     factory=lambda: [0.0, 0.0, 0.0], label="Background", panel="main", ui="color")
    device: str = option("auto", "auto: gsplat's kernels on CUDA, else cuda-torch, else mps, else cpu",
                         choices=DEVICES, label="Device", panel="main")
    init: str = option("sfm", "initial splats: the SfM points or random", choices=INITS)
    init_num_points: int = option(100_000, "random init: how many splats", low=1)
    ssim_lambda: float = option(0.2, "weight of D-SSIM in the loss", low=0.0, high=1.0)
    progress_every: int = option(10, "a progress event every N steps", low=1)
    snapshot_every: int = option(1000, "update the live splats and preview image every N steps (0: only at the "
                                 "end)", low=0, label="Preview Every", panel="main")
    checkpoint_every: int = option(1000, "checkpoint every N steps", low=1)
    eval_steps: list[int] = option(help="evaluate also at these steps (N,M,...)", low=1, factory=list)
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt")
    lock_wait: float = option(60.0, "seconds to wait while another run holds the output folder (it may be "
                              "saving its checkpoint), then fail with 'busy'", low=0.0, high=3600.0)
    # Speed-ups (bridge/train/strategy.py, resolution.py, gaussians.VisibleAdam). The defaults train
    # exactly as gsplat's simple_trainer does; the presets turn them on.
    schedule_scale: float = option(1.0, "densification and SH-band schedule x this (gsplat's steps_scaler); "
                                   "0: steps/30000", low=0.0, high=100.0)
    max_splats: int = option(0, "DefaultStrategy's splat budget, reached over the refinement window (0: none)",
                             low=0)
    splats_per_pixel: float = option(0.0, "the splat budget as a multiple of a training image's pixels (0: none)",
                                     low=0.0, high=1000.0)
    res_start: int = option(1, "train at 1/res_start of the size first, halving up to full size",
                            choices=RES_STARTS)
    res_full_at: float = option(0.5, "the fraction of the run from which images are full size", low=0.0, high=1.0)
    visible_adam: bool = option(False, "Adam updates only splats seen in the step's view (SelectiveAdam)")
    sh_rest_every: int = option(1, "the higher SH bands learn every Nth step only", low=1)

    # Named sets of field values (TRAIN_PRESETS below): the add-on's Preset menu and ``--preset``.
    presets: ClassVar[dict[str, TrainPreset]]

    def image_size(self, camera_width: int, camera_height: int) -> tuple[int, int]:
        """The size the images of a camera of this size are trained at (a remote run sends them at it)."""
        return (max(1, round(camera_width / self.downscale)), max(1, round(camera_height / self.downscale)))

    def check(self) -> None:
        if len(self.background) != 3:
            raise JobError("background", f"must be three numbers in [0, 1] (R, G, B), got {self.background!r}")
        if any(s > self.steps for s in self.eval_steps):
            raise JobError("eval_steps", f"must be a list of steps between 1 and {self.steps}, got {self.eval_steps!r}")
        _check_strategy_options(self.strategy, self.strategy_options)


@dataclass(frozen=True)
class TrainPreset:
    """A named starting point for a training job: ``fields`` are TrainJob field values; a job file and
    flags override them. Those the panel shows are set by picking the preset (``shown``); the rest,
    the speed-ups, go with every run whose speed-ups are this preset's."""

    label: str
    description: str
    fields: dict[str, Any]

    @property
    def shown(self) -> dict[str, Any]:
        panel = panel_fields(TrainJob)
        return {k: v for k, v in self.fields.items() if k in panel}

    @property
    def speedups(self) -> dict[str, Any]:
        return {k: v for k, v in self.fields.items() if k not in self.shown}


# What each speed-up gains and costs is measured in BENCHMARKS.md (Training): the Fast preset's set
# trained a real capture 3.5x faster on the CPU at a higher held-out PSNR. It leaves out coarse to
# fine: on quarter-size images the coarse levels saved time but lost more quality than that time buys
# (the demo scene: 1.7 dB less held-out PSNR at equal training time).
TRAIN_PRESETS: dict[str, TrainPreset] = {
    "fast": TrainPreset(
        "Fast Preview", "A rough result in minutes: 3,000 steps on quarter-size images, visible-only updates, "
        "at most one splat per pixel",
        {"steps": 3000, "downscale": 4.0, "sh_degree": 1, "snapshot_every": 250,
         "visible_adam": True, "splats_per_pixel": 1.0}),
    "standard": TrainPreset(
        "Standard", "15,000 steps on half-size images, half-size images first, visible-only updates",
        {"steps": 15000, "downscale": 2.0, "sh_degree": 3, "snapshot_every": 1000,
         "res_start": 2, "visible_adam": True}),
    "high": TrainPreset(
        "High Quality", "30,000 steps on full-size images, as in the 3DGS paper",
        {"steps": 30000, "downscale": 1.0, "sh_degree": 3, "snapshot_every": 1000}),
}
TrainJob.presets = TRAIN_PRESETS


def _check_strategy_options(strategy: str, options: dict[str, Any]) -> None:
    """Each option named and checked as a field of the strategy's option class."""
    cls = STRATEGY_OPTIONS[strategy]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        if key not in fields:  # also cap_max (a job field of its own) and key_for_gradient (2DGS only)
            gsplat = "MCMCStrategy" if strategy == "mcmc" else "DefaultStrategy"
            raise JobError("strategy_options", f"{gsplat} has no option {key!r} we support",
                           hint="Options: " + ", ".join(fields))
        _value(value, hints[key], fields[key].metadata, f"strategy_options.{key}")


# ---------------------------------------------------------------------------------------------
# sfm

QUALITIES = {"low": ("Low", "Photos scaled to 1000 px (longest side): fastest"),
             "medium": ("Medium", "Photos scaled to 1600 px: the usual choice"),
             "high": ("High", "Photos as shot: slowest, most detail")}


@dataclass
class SfmJob(Job):
    command: ClassVar[str] = "sfm"

    out: str = option(help="output folder: new, empty, or an earlier sfm result", path="out")
    images: str | None = option(None, "folder of photos (its subfolders are not read)", path="in")
    video: str | None = option(None, "video file; frames are taken every --every frames", path="in")
    every: int = option(10, "with a video: use one frame out of this many", low=1, label="Every Nth Frame",
                        panel="main")
    matcher: str = option("auto", "auto: sequential for video frames, exhaustive (every pair) for photos",
                          choices={"auto": ("Automatic", "Sequential for video frames, exhaustive for photos"),
                                   "exhaustive": ("Exhaustive", "Compare every pair of photos: best for up to a few "
                                                  "hundred"),
                                   "sequential": ("Sequential", "Compare neighbours in name order: video frames, "
                                                  "walk-arounds")},
                          label="Matching", panel="advanced")
    mapper: str = option("incremental", "incremental (robust) or global (GLOMAP; faster on large sets)",
                         choices={"incremental": ("Incremental", "Adds photos one by one: the most robust"),
                                  "global": ("Global", "Solves all cameras at once (GLOMAP): faster on large sets")},
                         label="Mapping", panel="advanced")
    quality: str = option("medium", "working image size: low 1000 px, medium 1600 px, high as shot",
                          choices=QUALITIES, label="Quality", panel="main")
    max_size: int | None = option(None, "working size in pixels (longest side), instead of --quality", low=64)
    camera: str = option("single", "single: one camera for all photos; per-image: one each",
                         choices={"single": ("One Camera", "All photos from one camera and lens at one zoom"),
                                  "per-image": ("Camera per Photo", "Different cameras, lenses or zoom settings")},
                         label="Cameras", panel="main")
    min_registered: float = option(0.5, "fail unless this fraction of the photos is placed in the model",
                                   low=0.0, high=1.0)
    threads: int = option(-1, "CPU threads (-1: all)", low=-1)
    lock_wait: float = option(60.0, "seconds to wait while another run holds the output folder, then fail "
                              "with 'busy'", low=0.0, high=3600.0)
    seed: int = option(0, "random seed, for repeatable results", low=0)

    def check(self) -> None:
        if (self.images is None) == (self.video is None):
            raise JobError("images", "give exactly one of images (a photo folder) and video (a video file)",
                           hint="Give --images or --video, not both.")


# ---------------------------------------------------------------------------------------------
# render

RENDER_DEVICES = DEVICES
# A frame's buffers take about 40 bytes a pixel (float RGBA, depth, preview, the rasteriser's
# per-pixel state): 16384 a side and 2^27 pixels (16384 x 8192, twice 8K) keep one frame near 5 GB.
MAX_SIDE = 16384
MAX_PIXELS = 2**27
# Files are "<name>_<frame>.exr"; most file systems allow 255 bytes a name.
MAX_NAME_BYTES = 200


@dataclass
class RenderObject:
    splats: str = option(help="splat file (PLY) of this object", path="in")
    name: str = option("", "the object's name, for messages")


@dataclass
class RenderFrame:
    frame: int = option(help="frame number")
    width: int = option(help="width in pixels", low=1)
    height: int = option(help="height in pixels", low=1)
    K: list[list[float]] = option(help="3x3 pinhole intrinsics")
    world_to_camera: list[list[float]] = option(help="4x4 OpenCV world-to-camera matrix")
    clip_start: float = option(help="near clip distance", low=0.0)
    clip_end: float = option(help="far clip distance", low=0.0)
    object_matrices: list[list[list[float]]] = option(help="each object's 4x4 world matrix at this frame")


@dataclass
class RenderJob(Job):
    command: ClassVar[str] = "render"

    output_dir: str = option(help="folder for <name>_<frame>.exr and .png", path="out")
    objects: list[RenderObject] = option(help="the splat objects", flag=False)
    frames: list[RenderFrame] = option(help="cameras and object matrices per frame", flag=False)
    name: str = option("splats", "file names start with this", label="Name")
    device: str = option("auto", "as for training: auto, cuda, cuda-torch, mps or cpu", choices=RENDER_DEVICES)

    def check(self) -> None:
        problem = _name_problem(self.name)
        if problem:
            raise JobError("name", f"the output name {self.name!r} {problem}")
        if not self.objects:
            raise JobError("objects", "is empty: name at least one splat file")
        if not self.frames:
            raise JobError("frames", "is empty: give at least one frame")
        for i, f in enumerate(self.frames):
            where = f"frames[{i}]"
            if max(f.width, f.height) > MAX_SIDE or f.width * f.height > MAX_PIXELS:
                raise JobError(f"{where}.width", f"frame {f.frame}: the resolution {f.width}x{f.height} is over the "
                               f"limit of {MAX_SIDE} pixels a side and {MAX_PIXELS:,} pixels a frame",
                               hint="Lower the resolution or its percentage in the Output properties.")
            _shape(f.K, (3, 3), f"{where}.K")
            _shape(f.world_to_camera, (4, 4), f"{where}.world_to_camera")
            if len(f.object_matrices) != len(self.objects):
                raise JobError(f"{where}.object_matrices",
                               f"has {len(f.object_matrices)} matrices for {len(self.objects)} objects")
            for j, m in enumerate(f.object_matrices):
                _shape(m, (4, 4), f"{where}.object_matrices[{j}]")
            if not f.clip_start < f.clip_end:
                raise JobError(f"{where}.clip_start", f"the clip range {f.clip_start}..{f.clip_end} is empty")


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot start every frame's file name, or None."""
    if not name:
        return "is empty"
    if any(c in name for c in "/\\:") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must be a plain file name (no slashes, colons or control characters)"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def _shape(rows: list[list[float]], shape: tuple[int, int], where: str) -> None:
    if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
        raise JobError(where, f"must be a {shape[0]}x{shape[1]} matrix")


# ---------------------------------------------------------------------------------------------
# check


@dataclass
class CheckJob(Job):
    """What the bridge interpreter has (packages, CUDA); answered in the Done event's metrics."""

    command: ClassVar[str] = "check"


JOB_TYPES: dict[str, type[Job]] = {cls.command: cls for cls in (TrainJob, SfmJob, RenderJob, CheckJob)}


# ---------------------------------------------------------------------------------------------
# The validator


def job_from_dict(cls: type, values: Any, where: str = "") -> Any:
    """A checked ``cls`` from JSON values; JobError names the first bad field."""
    if not isinstance(values, dict):
        raise JobError(where or cls.__name__, f"must be a JSON object, got {type(values).__name__}",
                       hint="A job is one JSON object with the job's fields.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in values:
        if name not in fields:
            raise JobError(where + str(name), "unknown field", hint="Known fields: " + ", ".join(fields))
    kwargs = {}
    for name, f in fields.items():
        path = where + name
        if name not in values or (values[name] in (None, "") and _required(f)):
            if _required(f):
                raise JobError(path, "is required",
                               hint=f"Give --{name.replace('_', '-')} or \"{name}\" in the job file.")
            continue
        kwargs[name] = _value(values[name], hints[name], f.metadata, path)
    job = cls(**kwargs)
    if isinstance(job, Job):
        job.check()
    return job


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _value(value: Any, tp: Any, meta: dict, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return job_from_dict(tp, value, path + ".")
    if origin is list:
        if not isinstance(value, list):
            raise JobError(path, f"must be a list, got {value!r}"[:300])
        nested = dataclasses.is_dataclass(args[0]) or typing.get_origin(args[0]) is list
        return [_value(v, args[0], meta, f"{path}[{i}]" if nested else path) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise JobError(path, f"must be an object, got {value!r}"[:300])
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise JobError(path, f"must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise JobError(path, f"must be {'a path' if meta.get('path') else 'text'}, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobError(path, f"must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise JobError(path, f"must be a number, got {value!r}")
        value = float(value)
    if meta.get("choices") and value not in meta["choices"]:
        raise JobError(path, f"must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
    if above is not None and not value > above:
        raise JobError(path, f"must be above {above:g}, got {value}")
    if low is not None and high is not None and not low <= value <= high:
        raise JobError(path, f"must be between {low:g} and {high:g}, got {value}")
    if low is not None and value < low:
        raise JobError(path, f"must be at least {low:g}, got {value}")
    return value


def parse_job_text(cls: type, text: str, source: str) -> dict[str, Any]:
    """The JSON object in ``text`` (a job file's or stdin's content); BridgeError when it is not one."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BridgeError("bad_job", f"{source}: not a readable JSON job ({exc})",
                          hint="A job is one JSON object with the job's fields.", exit_code=EXIT_BAD_INPUT) from None
    if not isinstance(data, dict):
        raise BridgeError("bad_job", f"{source}: a job is one JSON object, got {type(data).__name__}",
                          hint="Put the job's fields in one JSON object.", exit_code=EXIT_BAD_INPUT)
    return data


def job_from_json(cls: type, text: str, source: str = "job") -> Any:
    return job_from_dict(cls, parse_job_text(cls, text, source))


# The file a run holds locked in its output folder while it runs (``bridge/outlock.py``): nobody
# else's business, so a client fetching the folder leaves it out.
OUTPUT_LOCK = ".splatwork.lock"


def path_fields(job: Any, direction: str) -> list[tuple[Any, str]]:
    """(object, field name) of every set path the job reads (``"in"``) or writes (``"out"``), nested
    objects included: what a client must carry to another machine, or fetch back."""
    out = []
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        if f.metadata.get("path") == direction and value is not None:
            out.append((job, f.name))
        elif isinstance(value, list):
            for item in value:
                if dataclasses.is_dataclass(item):
                    out.extend(path_fields(item, direction))
    return out
