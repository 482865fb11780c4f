"""``python -m bridge render JOB.json``: splat render passes for compositing, one multilayer EXR per frame.

The job (:class:`~.protocol.RenderJob`; the add-on sends it on stdin, ``--job -``) names the splat files and, per
frame, the camera (``K`` and an OpenCV ``world_to_camera``, as ``bridge.formats.cameras`` makes them
from a Blender camera), the clip range and each object's world matrix at that frame::

    {"output_dir": "/renders/shot", "name": "splats",
     "objects": [{"name": "Dog", "splats": "/tmp/job/Dog.ply"}],
     "frames": [{"frame": 1, "width": 1920, "height": 1080, "K": [[...]], "world_to_camera": [[...]],
                 "clip_start": 0.1, "clip_end": 100.0, "object_matrices": [[[...]]]}]}

Each frame gives ``<name>_<frame>.exr`` with the layer ``Splats``: ``Combined`` (R, G, B, A: linear,
premultiplied) and ``Depth`` (Z: distance along the camera's view axis, Blender's Z-pass convention,
:data:`BACKGROUND_DEPTH` where no splat is), plus ``<name>_<frame>.png``, an 8-bit sRGB preview.
"""
from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol
from .device import compile_progress, resolve
from .formats import FormatError, SplatSet, read_splats
from .formats.atomic import atomic_path
from .formats.transform import check_transform, place_splats
from .protocol import BridgeError, Done, RenderJob, clip, job_from_json
from .protocol.jobs import MAX_NAME_BYTES, MAX_PIXELS, MAX_SIDE
from .runner import NO_SPACE, RunContext
from .runner import main as command_main

__all__ = ["BACKGROUND_DEPTH", "MAX_NAME_BYTES", "MAX_PIXELS", "MAX_SIDE", "FrameJob", "load_job", "prepare",
           "render_frame", "main"]

# What Blender's Z pass holds where nothing was hit, so a Z-combine treats empty pixels alike.
BACKGROUND_DEPTH = 1e10
# The farthest a placed splat may land: float32 holds 3.4e38, and projecting squares coordinates.
MAX_PLACED = 1e18
# gsplat draws nothing fainter than this; below it a pixel has no meaningful depth.
MIN_ALPHA = 1.0 / 255.0
EXR_LAYER = "Splats"


@dataclass
class FrameJob:
    frame: int
    width: int
    height: int
    K: np.ndarray
    world_to_camera: np.ndarray
    clip_start: float
    clip_end: float
    object_matrices: list[np.ndarray]


@dataclass
class PreparedJob:
    """A checked :class:`~.protocol.RenderJob` with its matrices as numpy arrays."""

    output_dir: Path
    name: str
    object_names: list[str]
    splat_paths: list[Path]
    frames: list[FrameJob]


def prepare(job: RenderJob) -> PreparedJob:
    frames = [FrameJob(f.frame, f.width, f.height, np.asarray(f.K, np.float64),
                       np.asarray(f.world_to_camera, np.float64), f.clip_start, f.clip_end,
                       [np.asarray(m, np.float64) for m in f.object_matrices]) for f in job.frames]
    return PreparedJob(Path(job.output_dir), job.name, [o.name for o in job.objects],
                       [Path(o.splats) for o in job.objects], frames)


def load_job(path: str | os.PathLike) -> PreparedJob:
    """Read and check a job file; :class:`BridgeError` (exit code 2) names the first problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BridgeError("missing_input", f"cannot read the render job {path}: {exc.strerror}",
                          exit_code=protocol.EXIT_BAD_INPUT) from exc
    return prepare(job_from_json(RenderJob, text, str(path)))


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB decoding curve (IEC 61966-2-1), the inverse of what Blender's Standard view applies."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def render_frame(splats: list[SplatSet], names: list[str], frame: FrameJob, device: str,
                 backend: str = "auto") -> dict:
    """One frame of the splat objects, each through its matrix: {"rgba": linear premultiplied (H, W, 4),
    "depth": (H, W), "preview": straight sRGB RGBA uint8 (H, W, 4)}."""
    from .raster import render_splats

    labels = [f"frame {frame.frame}, object {name!r}" for name in names]
    scene = place_splats(list(zip(labels, splats, frame.object_matrices, strict=True)))
    # Blender clips by the distance along the view axis; gsplat culls whole splats by their centre's
    # camera z the same way, so a splat is drawn whole or not at all, as in training.
    z = scene.means.astype(np.float64) @ frame.world_to_camera[2, :3] + frame.world_to_camera[2, 3]
    scene = scene.subset((z >= frame.clip_start) & (z <= frame.clip_end))
    h, w = frame.height, frame.width
    if len(scene) == 0:
        rgb, alpha, depth = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32), np.zeros((h, w))
    else:
        out = render_splats(scene, frame.K, frame.world_to_camera, w, h, device=device, backend=backend)
        rgb, alpha, depth = out["rgb"], out["alpha"], out["depth"]
    alpha = np.clip(alpha, 0.0, 1.0)
    covered = alpha > MIN_ALPHA
    # The rasteriser composites display-referred (sRGB) colours over black; decode the straight
    # colour, then premultiply again, so that Blender's Standard view shows the trained colours.
    straight = np.where(alpha[..., None] > 0.0, rgb / np.maximum(alpha, 1e-12)[..., None], 0.0)
    straight = np.clip(straight, 0.0, 1.0)
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = srgb_to_linear(straight) * alpha[..., None]
    rgba[..., 3] = alpha
    z_pass = np.where(covered, depth, BACKGROUND_DEPTH).astype(np.float32)
    preview = np.concatenate([straight, alpha[..., None]], axis=-1)
    return {"rgba": rgba, "depth": z_pass, "preview": np.round(preview * 255.0).astype(np.uint8)}


def write_exr(path: Path, rgba: np.ndarray, depth: np.ndarray) -> None:
    """A multilayer OpenEXR Blender reads as layer ``Splats`` with passes ``Combined`` and ``Depth``.

    Written to a temporary file beside ``path`` and renamed, so a compositor never loads half a frame.
    """
    import OpenEXR

    channels = {f"{EXR_LAYER}.Combined.{c}": np.ascontiguousarray(rgba[..., i]) for i, c in enumerate("RGBA")}
    channels[f"{EXR_LAYER}.Depth.Z"] = np.ascontiguousarray(depth, np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    try:
        _write_atomically(path, lambda tmp: OpenEXR.File(header, channels).write(str(tmp)))
    except RuntimeError as exc:  # OpenEXR reports a failed write with libc's words but no errno
        for code in NO_SPACE:
            if os.strerror(code) in str(exc):
                raise OSError(code, os.strerror(code), str(path)) from exc
        raise


def write_png(path: Path, rgba8: np.ndarray) -> None:
    from PIL import Image

    _write_atomically(path, lambda tmp: Image.fromarray(rgba8).save(tmp, format="PNG"))  # (H, W, 4): RGBA


def _write_atomically(path: Path, write) -> None:
    # Both libraries want a file name, not a file object, so the temporary file is named.
    with atomic_path(path) as tmp:
        write(tmp)


def frame_paths(job: PreparedJob, frame: int) -> tuple[Path, Path]:
    stem = f"{job.name}_{frame:04d}"
    return job.output_dir / f"{stem}.exr", job.output_dir / f"{stem}.png"


def run(ctx: RunContext, request: RenderJob) -> Done:
    # Everything that can be wrong with the input is checked before torch loads (seconds) and before
    # any frame is written, so a bad job fails at once rather than at frame 50.
    job = prepare(request)
    splats = []
    for name, path in zip(job.object_names, job.splat_paths, strict=True):
        try:
            splats.append(read_splats(path))
        except FormatError as exc:
            raise BridgeError("bad_input", f"splats of {name or 'an object'}: {exc}",
                              exit_code=protocol.EXIT_BAD_INPUT) from exc
    extents = [float(np.abs(s.means.astype(np.float64)).max()) for s in splats]
    for frame in job.frames:
        for name, s, matrix, extent in zip(job.object_names, splats, frame.object_matrices, extents, strict=True):
            label = f"frame {frame.frame}, object {name!r}"
            try:
                check_transform(s, matrix, label)
            except FormatError as exc:  # e.g. a non-uniform scale on splats with view-dependent colour
                raise BridgeError("bad_input", str(exc), exit_code=protocol.EXIT_BAD_INPUT) from exc
            # Where the farthest splat lands (a bound): past float32's range it would be Inf, not a pixel.
            reach = extent * np.abs(matrix[:3, :3]).sum(axis=1).max() + np.abs(matrix[:3, 3]).max()
            if not reach < MAX_PLACED:
                raise BridgeError("bad_input", f"{label}: its matrix places splats up to {reach:.3g} scene units "
                                  f"from the origin, beyond the {MAX_PLACED:g} a render can hold",
                                  hint="Apply the object's scale, or move the scene nearer the origin.",
                                  exit_code=protocol.EXIT_BAD_INPUT)
    try:
        job.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BridgeError("bad_input", f"cannot create the output folder {job.output_dir}: {exc.strerror}",
                          hint="Choose an output folder you can write to.", exit_code=protocol.EXIT_BAD_INPUT) from exc
    _check_writable(job.output_dir)

    import torch

    choice = resolve(request.device, field="device", progress=compile_progress(ctx))
    ctx.hello(device=choice.device, backend=choice.backend, versions={"torch": torch.__version__},
              rasterizer=choice.reason)
    if choice.notice:
        ctx.log(choice.notice, level="warning")
    ctx.emit(protocol.Stage(stage="rendering", message=f"{len(job.frames)} frame(s) to {job.output_dir}"))
    written: list[Path] = []
    start = time.monotonic()
    for i, frame in enumerate(job.frames):
        if "stop" in ctx.commands.poll():
            return _done(job, written, "stopped", start)
        try:
            out = render_frame(splats, job.object_names, frame, choice.device, choice.backend)
        except torch.OutOfMemoryError:
            raise BridgeError("cuda_oom", f"out of GPU memory rendering frame {frame.frame} "
                              f"({sum(len(s) for s in splats):,} splats)",
                              hint=f"{len(written)} frame(s) were written. Render fewer splats (crop them), "
                                   "a smaller resolution, or on the CPU (--device cpu).") from None
        exr, png = frame_paths(job, frame.frame)
        try:
            write_exr(exr, out["rgba"], out["depth"])
            write_png(png, out["preview"])
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise  # the runner's disk_full error
            raise _write_error(exc, exr, written) from exc
        written.append(exr)
        elapsed = time.monotonic() - start
        ctx.emit(protocol.Progress(step=i + 1, total=len(job.frames), stage="rendering", frame=frame.frame,
                                   elapsed_sec=elapsed, eta_sec=elapsed / (i + 1) * (len(job.frames) - i - 1)))
        ctx.emit(protocol.Snapshot(step=i + 1, preview=str(png)))
    return _done(job, written, "completed", start)


# Errors of a write the user can fix by choosing another folder (exit code 2, not "a bug in Splatwork").
_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR)


def _check_writable(folder: Path) -> None:
    """Make sure a file can be made in ``folder`` (by making one), before torch loads and frames render:
    a folder without write permission, or on a read-only disk, is refused at once, naming it."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".splatwork-probe-"):
            pass
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise
        refused = exc.errno in _REFUSED
        raise BridgeError("bad_input" if refused else "write_failed",
                          f"cannot write in the output folder {clip(str(folder))}: {exc.strerror or exc}",
                          hint="Choose an output folder you can write to.",
                          exit_code=protocol.EXIT_BAD_INPUT if refused else protocol.EXIT_FAILED) from None


def _write_error(exc: OSError, path: Path, written: list[Path]) -> BridgeError:
    refused = exc.errno in _REFUSED
    return BridgeError("bad_input" if refused else "write_failed",
                       f"cannot write {clip(str(exc.filename or path))}: {exc.strerror or exc}",
                       hint=f"{len(written)} frame(s) were written. Choose an output folder you can write to.",
                       exit_code=protocol.EXIT_BAD_INPUT if refused else protocol.EXIT_FAILED)


def _done(job: PreparedJob, written: list[Path], status: str, start: float) -> Done:
    outputs = {"folder": str(job.output_dir)}
    if written:
        outputs["first_exr"], outputs["last_exr"] = str(written[0]), str(written[-1])
    seconds = time.monotonic() - start
    return Done(status=status, outputs=outputs,
                metrics={"frames": len(written), "seconds_per_frame": seconds / max(1, len(written))})


def main(argv: list[str]) -> int:
    return command_main(RenderJob, run, argv, __doc__.split("\n")[0])
