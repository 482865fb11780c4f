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
import functools
import json
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .messages import EXIT_BAD_INPUT, MAX_JOB_BYTES, BridgeError, clip

# Bounds shared by the fields. Every integer field has both bounds (tests/test_jobs_protocol.py holds
# them to it): a number no run can use fails here, naming the field, not later as an internal error.
MAX_STEPS = 1_000_000  # the add-on's Steps field stops here too; 30,000 is the 3DGS paper's
MAX_SPLATS = 100_000_000  # about 25 GB of splats and optimiser state: beyond any GPU we know
MAX_INIT_POINTS = 10_000_000  # random initial splats (gsplat's example: 100,000)
MAX_SEED = 2**31 - 1  # what a Blender int property holds (numpy and torch take more)
MAX_FRAME = 1_048_574  # Blender's last frame (MAXFRAME)
MAX_THREADS = 4096
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; longer paths exist on no file system we run on
MAX_TEXT_CHARS = 1024  # a name, for messages
# The most pixels a photo may have (the trainer and SfM refuse larger ones from the header, before
# decoding, and so does a remote run's upload): above the largest camera sensors (150 MP medium
# format), 600 MB decoded as RGB.
MAX_PHOTO_PIXELS = 200_000_000

_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlong = 120, 120, 40
_SHOW.maxlist = _SHOW.maxdict = 8
_SHOW.maxlevel = 3


def echoed(value: Any) -> str:
    """A value as an error message echoes it: a long string, number or list cut to a readable length."""
    try:
        return _SHOW.repr(value)
    except (RecursionError, ValueError):  # ValueError: an int with too many digits for str()
        return f"<{type(value).__name__}>"


class JobError(BridgeError):
    """A bad job: ``field`` names the offending field (``frames[2].K`` inside lists)."""

    def __init__(self, name: str, problem: str, hint: str = ""):
        # A name from the job itself (an unknown field) may hold anything: one line, cut short.
        name = clip(name if name.isprintable() else repr(name)[1:-1], 120)
        flag = name.split("[")[0].split(".")[0].replace("_", "-")  # frames[2].K and strategy_options.x: their flag's
        hint = hint or f"Fix \"{name}\" in the job file or the --{flag} flag."
        super().__init__("bad_job", f"job field '{name}': {problem}", hint=hint, exit_code=EXIT_BAD_INPUT)
        self.field = name


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | dict = (),
           low: float | None = None, high: float | None = None, above: float | None = None, flag: bool = True,
           path: str = "", label: str = "", panel: str = "", ui: str = "", max_items: int | None = None,
           factory=None) -> Any:
    """A job field: its default, its help (the flag's and the UI's tooltip), and the bounds the
    validator checks.

    ``low``/``high`` are inclusive bounds of a number, ``above`` an exclusive lower one, ``max_items``
    the longest a list may be; ``choices``
    the allowed values (a dict: value -> (label, description) for menus); ``flag=False`` keeps a
    field out of the command line (nested data only a file can hold); ``path`` marks a file or folder
    the command reads (``"in"``) or writes (``"out"``): what a client carries to another machine and
    back. For the add-on: ``label`` names it in the UI, ``panel`` (``"main"`` or ``"advanced"``) is
    where its panel shows it (empty: not shown), ``ui="color"`` draws three numbers as a colour.
    """
    choice_text = dict(choices) if isinstance(choices, dict) else {}
    metadata = {"help": help, "choices": tuple(choices), "choice_text": choice_text, "low": low, "high": high,
                "above": above, "flag": flag, "path": path, "label": label, "panel": panel, "ui": ui,
                "max_items": max_items}
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
    refine_scale2d_stop_iter: int = option(0, "stop using the on-screen size after this step", low=0, high=MAX_STEPS)
    refine_start_iter: int = option(500, "start refining at this step", low=0, high=MAX_STEPS)
    refine_stop_iter: int = option(15_000, "stop refining at this step", low=0, high=MAX_STEPS)
    reset_every: int = option(3000, "reset opacities every N steps", low=1, high=MAX_STEPS)
    refine_every: int = option(100, "refine every N steps", low=1, high=MAX_STEPS)
    pause_refine_after_reset: int = option(0, "steps without refining after a reset", low=0, high=MAX_STEPS)
    absgrad: bool = option(False, "use absolute gradients (AbsGS)")
    revised_opacity: bool = option(False, "revised opacity after splitting (arXiv 2404.06109)")
    verbose: bool = option(False, "print what each refinement did")


@dataclass
class MCMCOptions:
    """gsplat's ``MCMCStrategy``: relocate dead splats, add up to ``cap_max``, noise on positions."""

    refine_start_iter: int = option(500, "start refining at this step", low=0, high=MAX_STEPS)
    refine_stop_iter: int = option(25_000, "stop refining at this step", low=0, high=MAX_STEPS)
    refine_every: int = option(100, "refine every N steps", low=1, high=MAX_STEPS)
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
    steps: int = option(30_000, "training steps", low=1, high=MAX_STEPS, label="Steps", panel="main")
    downscale: float = option(1.0, "divide the image size by this; larger trains faster and uses less memory",
                              low=1.0, high=64.0, label="Downscale", panel="main")
    sh_degree: int = option(3, "spherical harmonics degree 0-3: view-dependent colour (0: flat colour)", low=0,
                            high=3, label="SH Degree", panel="main")
    strategy: str = option("default", "densification: gsplat's DefaultStrategy or MCMCStrategy", choices=STRATEGIES,
                           label="Densification", panel="advanced")
    cap_max: int = option(1_000_000, "MCMC: the most splats", low=1, high=MAX_SPLATS, label="Max Splats (MCMC)",
                          panel="advanced")
    strategy_options: dict[str, Any] = option(help='extra strategy fields, e.g. \'{"refine_every": 50}\'',
                                              factory=dict)
    antialiased: bool = option(False, "antialiased rasterization (Mip-Splatting's 2D filter): fewer artefacts "
                               "when the splats are seen smaller or larger than in training", label="Antialiased",
                               panel="advanced")
    packed: bool = option(False, "packed rasterization: per view only the splats it draws are kept (gsplat's "
                          "packed mode: less GPU memory on large scenes, a little slower on small ones)",
                          label="Packed", panel="advanced")
    seed: int = option(0, "random seed", low=0, high=MAX_SEED, label="Seed", panel="advanced")
    test_every: int = option(8, "hold out every Nth image sorted by name to measure quality (0: none)", low=0,
                             high=1_000_000,
                             label="Hold Out Every", panel="advanced")
    background: list[float] = option(help="colour behind the splats while training, R,G,B in [0, 1]: match a plain "
                                     "studio backdrop, else black", low=0.0, high=1.0,
                                     factory=lambda: [0.0, 0.0, 0.0], label="Background", panel="main", ui="color")
    device: str = option("auto", "auto: gsplat's kernels on CUDA, else cuda-torch, else mps, else cpu",
                         choices=DEVICES, label="Device", panel="main")
    init: str = option("sfm", "initial splats: the SfM points or random", choices=INITS)
    init_num_points: int = option(100_000, "random init: how many splats", low=1, high=MAX_INIT_POINTS)
    ssim_lambda: float = option(0.2, "weight of D-SSIM in the loss", low=0.0, high=1.0)
    progress_every: int = option(10, "a progress event every N steps", low=1, high=MAX_STEPS)
    snapshot_every: int = option(1000, "update the live splats and preview image every N steps (0: only at the "
                                 "end)", low=0, high=MAX_STEPS, label="Preview Every", panel="main")
    checkpoint_every: int = option(1000, "checkpoint every N steps", low=1, high=MAX_STEPS)
    eval_steps: list[int] = option(help="evaluate also at these steps (N,M,...)", low=1, high=MAX_STEPS,
                                   max_items=1000, factory=list)
    resume: bool = option(False, "continue from OUT/checkpoints/last.pt")
    lock_wait: float = option(60.0, "seconds to wait while another run holds the output folder (it may be "
                              "saving its checkpoint), then fail with 'busy'", low=0.0, high=3600.0)
    # Speed-ups (bridge/train/strategy.py, resolution.py, gaussians.VisibleAdam). The defaults train
    # exactly as gsplat's simple_trainer does; the presets turn them on.
    schedule_scale: float = option(1.0, "densification and SH-band schedule x this (gsplat's steps_scaler); "
                                   "0: steps/30000", low=0.0, high=100.0)
    max_splats: int = option(0, "DefaultStrategy's splat budget, reached over the refinement window (0: none)",
                             low=0, high=MAX_SPLATS)
    splats_per_pixel: float = option(0.0, "the splat budget as a multiple of a training image's pixels (0: none)",
                                     low=0.0, high=1000.0)
    res_start: int = option(1, "train at 1/res_start of the size first, halving up to full size",
                            choices=RES_STARTS)
    res_full_at: float = option(0.5, "the fraction of the run from which images are full size", low=0.0, high=1.0)
    visible_adam: bool = option(False, "Adam updates only splats seen in the step's view (SelectiveAdam)")
    sh_rest_every: int = option(1, "the higher SH bands learn every Nth step only", low=1, high=MAX_STEPS)

    # Named sets of field values (TRAIN_PRESETS below): the add-on's Preset menu and ``--preset``.
    presets: ClassVar[dict[str, TrainPreset]]

    def image_size(self, camera_width: int, camera_height: int) -> tuple[int, int]:
        """The size the images of a camera of this size are trained at (a remote run sends them at it)."""
        return (max(1, round(camera_width / self.downscale)), max(1, round(camera_height / self.downscale)))

    def check(self) -> None:
        if len(self.background) != 3:
            raise JobError("background", f"must be three numbers in [0, 1] (R, G, B), got {echoed(self.background)}")
        if any(s > self.steps for s in self.eval_steps):
            raise JobError("eval_steps",
                           f"must be a list of steps between 1 and {self.steps}, got {echoed(self.eval_steps)}")
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
            raise JobError("strategy_options", f"{gsplat} has no option {echoed(key)} we support",
                           hint="Options: " + ", ".join(fields))
        _value(value, hints[key], fields[key].metadata, f"strategy_options.{key}")


# ---------------------------------------------------------------------------------------------
# sfm

MAX_IMAGE_SIDE = 1 << 16  # pixels: the largest side of a JPEG, and more than any camera has
QUALITIES = {"low": ("Low", "Photos scaled to 1000 px (longest side): fastest"),
             "medium": ("Medium", "Photos scaled to 1600 px: the usual choice"),
             "high": ("High", "Photos as shot: slowest, most detail")}


@dataclass
class SfmJob(Job):
    command: ClassVar[str] = "sfm"

    out: str = option(help="output folder: new, empty, or an earlier sfm result", path="out")
    images: str | None = option(None, "folder of photos (its subfolders are not read)", path="in")
    video: str | None = option(None, "video file; frames are taken every --every frames", path="in")
    every: int = option(10, "with a video: use one frame out of this many", low=1, high=1_000_000,
                        label="Every Nth Frame",
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
    max_size: int | None = option(None, "working size in pixels (longest side), instead of --quality", low=64,
                                  high=MAX_IMAGE_SIDE)
    camera: str = option("single", "single: one camera for all photos; per-image: one each",
                         choices={"single": ("One Camera", "All photos from one camera and lens at one zoom"),
                                  "per-image": ("Camera per Photo", "Different cameras, lenses or zoom settings")},
                         label="Cameras", panel="main")
    min_registered: float = option(0.5, "fail unless this fraction of the photos is placed in the model",
                                   low=0.0, high=1.0)
    threads: int = option(-1, "CPU threads (-1: all)", low=-1, high=MAX_THREADS)
    lock_wait: float = option(60.0, "seconds to wait while another run holds the output folder, then fail "
                              "with 'busy'", low=0.0, high=3600.0)
    seed: int = option(0, "random seed, for repeatable results", low=0, high=MAX_SEED)

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
    frame: int = option(help="frame number", low=-MAX_FRAME, high=MAX_FRAME)
    width: int = option(help="width in pixels", low=1)  # bounded with height by RenderJob.check
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
            raise JobError("name", f"the output name {echoed(self.name)} {problem}")
        if not self.objects:
            raise JobError("objects", "is empty: name at least one splat file")
        if not self.frames:
            raise JobError("frames", "is empty: give at least one frame")
        for i, f in enumerate(self.frames):
            where = f"frames[{i}]"
            if max(f.width, f.height) > MAX_SIDE or f.width * f.height > MAX_PIXELS:
                side = "height" if f.height > MAX_SIDE >= f.width else "width"
                raise JobError(f"{where}.{side}", f"frame {f.frame}: the resolution {echoed(f.width)}x"
                               f"{echoed(f.height)} is over the limit of {MAX_SIDE} pixels a side and "
                               f"{MAX_PIXELS:,} pixels a frame",
                               hint="Lower the resolution or its percentage in the Output properties.")
            _shape(f.K, (3, 3), f"{where}.K")
            _check_K(f.K, max(f.width, f.height), f"{where}.K")
            _shape(f.world_to_camera, (4, 4), f"{where}.world_to_camera")
            _check_affine(f.world_to_camera, f"{where}.world_to_camera", rigid=True)
            if len(f.object_matrices) != len(self.objects):
                raise JobError(f"{where}.object_matrices",
                               f"has {len(f.object_matrices)} matrices for {len(self.objects)} objects")
            for j, m in enumerate(f.object_matrices):
                _shape(m, (4, 4), f"{where}.object_matrices[{j}]")
                _check_affine(m, f"{where}.object_matrices[{j}]", rigid=False)
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


# What a Blender camera and object can give, with room to spare: a focal length from 1/1000 to 10^5
# image sizes (Blender's lenses and sensors span 1/100 to 5000), and coordinates, scales and
# translations up to 10^9 scene units. Beyond them the numbers only overflow (numpy warnings and
# Inf pixels), so they are refused here, naming the field.
MIN_FOCAL_PER_SIDE, MAX_FOCAL_PER_SIDE = 1e-3, 1e5
MAX_COORDINATE = 1e9
_TOLERANCE = 1e-6  # of a rotation's rows being orthonormal (the add-on makes them exactly so, in float64)


def _check_K(K: list[list[float]], side: int, where: str) -> None:
    (fx, skew, cx), (zero, fy, cy), last = K
    for name, value in (("fx", fx), ("fy", fy)):
        if not MIN_FOCAL_PER_SIDE * side <= value <= MAX_FOCAL_PER_SIDE * side:
            raise JobError(where, f"focal length {name} = {value:g} pixels is not between {MIN_FOCAL_PER_SIDE:g} and "
                           f"{MAX_FOCAL_PER_SIDE:g} times the image's {side} pixels")
    for name, value in (("cx", cx), ("cy", cy), ("skew", skew)):
        if not abs(value) <= MAX_FOCAL_PER_SIDE * side:
            raise JobError(where, f"{name} = {value:g} is far outside the {side}-pixel image")
    if zero != 0 or list(last) != [0, 0, 1]:
        raise JobError(where, f"must be a pinhole matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]], got {echoed(K)}")


def _check_affine(m: list[list[float]], where: str, rigid: bool) -> None:
    """A 4x4 affine matrix within :data:`MAX_COORDINATE`, not flat; ``rigid``: a rotation and a translation."""
    if list(m[3]) != [0, 0, 0, 1]:
        raise JobError(where, f"must be affine (last row 0, 0, 0, 1), got {echoed(m[3])}")
    big = max(abs(v) for row in m[:3] for v in row)
    if big > MAX_COORDINATE:
        raise JobError(where, f"holds {big:g}, beyond the {MAX_COORDINATE:g} scene units a scene can span",
                       hint="Apply the object's scale, or move the scene nearer the origin.")
    a = [row[:3] for row in m[:3]]
    det = (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
           + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))
    if rigid:
        gram = [[sum(a[r][k] * a[c][k] for k in range(3)) for c in range(3)] for r in range(3)]
        if det <= 0 or any(abs(gram[r][c] - (r == c)) > _TOLERANCE for r in range(3) for c in range(3)):
            raise JobError(where, "must be a rotation and a translation (orthonormal rows, determinant +1)")
    elif abs(det) < 1e-12:
        raise JobError(where, f"has a zero scale (determinant {det:g}): it would flatten every splat")


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
    fields, hints = _schema(cls)
    for name in values:
        if name not in fields:
            raise JobError(where + str(name), "unknown field", hint=clip("Known fields: " + ", ".join(fields)))
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


@functools.cache
def _schema(cls: type) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    """A job class's fields and resolved type hints, once: resolving them per nested object made a
    render job of 20,000 frames take a minute to check."""
    return {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _value(value: Any, tp: Any, meta: dict, path: str) -> Any:
    if tp in _LEAVES:  # first: most values are numbers in lists (matrices of thousands of frames)
        return _leaf(value, tp, meta, path)
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
            raise JobError(path, f"must be a list, got {echoed(value)}")
        if meta.get("max_items") is not None and len(value) > meta["max_items"]:
            raise JobError(path, f"has {len(value):,} items, more than the {meta['max_items']:,} it may have")
        if args[0] is float and not any(meta.get(k) is not None for k in ("low", "high", "above")):
            return [_float(v, meta, path) for v in value]  # matrices: most of a long render job
        nested = dataclasses.is_dataclass(args[0]) or typing.get_origin(args[0]) is list
        return [_value(v, args[0], meta, f"{path}[{i}]" if nested else path) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise JobError(path, f"must be an object, got {echoed(value)}")
        return dict(value)
    return _leaf(value, tp, meta, path)


_LEAVES = (bool, str, int, float)
_FLOAT_MAX = 1.7976931348623157e308


def _float(value: Any, meta: dict, path: str) -> float:
    """An unbounded float field's value, quickly (``_leaf``'s rule, and its error when it is not one)."""
    if type(value) is float and value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
        return value
    if type(value) is int and -_FLOAT_MAX <= value <= _FLOAT_MAX:
        return float(value)
    return _leaf(value, float, meta, path)


def _leaf(value: Any, tp: Any, meta: dict, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise JobError(path, f"must be true or false, got {echoed(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise JobError(path, f"must be {'a path' if meta.get('path') else 'text'}, got {echoed(value)}")
        problem = _text_problem(value, bool(meta.get("path")))
        if problem:
            raise JobError(path, f"{problem}: {echoed(value)}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobError(path, f"must be an integer, got {echoed(value)}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise JobError(path, f"must be a finite number, got {echoed(value)}")
        value = float(value)
    if meta.get("choices") and value not in meta["choices"]:
        raise JobError(path, f"must be one of {', '.join(map(str, meta['choices']))}, got {echoed(value)}")
    low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
    if above is not None and not value > above:
        raise JobError(path, f"must be above {_bound(above)}, got {echoed(value)}")
    if low is not None and high is not None and not low <= value <= high:
        raise JobError(path, f"must be between {_bound(low)} and {_bound(high)}, got {echoed(value)}")
    if low is not None and value < low:
        raise JobError(path, f"must be at least {_bound(low)}, got {echoed(value)}")
    return value


def _finite(value: int | float) -> bool:
    """Finite as a float: an integer beyond the float range (1 and 400 zeros) is not."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _text_problem(value: str, is_path: bool) -> str | None:
    """Why a text field's value cannot be used (too long, a NUL, not encodable as a file name), or None."""
    limit = MAX_PATH_CHARS if is_path else MAX_TEXT_CHARS
    if len(value) > limit:
        return f"is {len(value):,} characters long, more than the {limit:,} a {'path' if is_path else 'name'} may have"
    if is_path and "\0" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return "is not valid text (a lone UTF-16 surrogate)"
    return None


def parse_job_text(cls: type, text: str, source: str) -> dict[str, Any]:
    """The JSON object in ``text`` (a job file's or stdin's content); BridgeError when it is not one."""
    source = clip(source)
    if len(text) > MAX_JOB_BYTES:
        raise BridgeError("bad_job", f"{source}: the job is larger than {MAX_JOB_BYTES >> 20} MiB",
                          hint="A job holds settings, paths and cameras, never data: check that this is the job.",
                          exit_code=EXIT_BAD_INPUT)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BridgeError("bad_job", f"{source}: not a readable JSON job ({clip(str(exc))})",
                          hint="A job is one JSON object with the job's fields.", exit_code=EXIT_BAD_INPUT) from None
    except RecursionError:
        raise BridgeError("bad_job", f"{source}: not a readable JSON job (nested too deeply)",
                          hint="A job is one JSON object with the job's fields; none is nested more than "
                               "a few levels.", exit_code=EXIT_BAD_INPUT) from None
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
