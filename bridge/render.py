"""``python -m bridge render JOB.json``: splat render passes for compositing, one multilayer EXR per frame.

The job (written by the add-on's render-passes operator, or by hand) names the splat files and, per
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

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import protocol
from .device import DEVICES, resolve
from .formats import FormatError, SplatSet, read_splats
from .formats.atomic import atomic_path
from .formats.transform import check_transform, place_splats
from .protocol import BridgeError, Done
from .runner import NO_SPACE, RunContext, run_command

# What Blender's Z pass holds where nothing was hit, so a Z-combine treats empty pixels alike.
BACKGROUND_DEPTH = 1e10
# gsplat draws nothing fainter than this; below it a pixel has no meaningful depth.
MIN_ALPHA = 1.0 / 255.0
EXR_LAYER = "Splats"
# A frame's buffers take about 40 bytes a pixel (float RGBA, depth, preview, the rasteriser's
# per-pixel state): 16384 a side and 2^27 pixels (16384 x 8192, twice 8K) keep one frame near 5 GB.
MAX_SIDE = 16384
MAX_PIXELS = 2**27
# Files are "<name>_<frame>.exr"; most file systems allow 255 bytes a name.
MAX_NAME_BYTES = 200


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
class RenderJob:
    output_dir: Path
    name: str
    object_names: list[str]
    splat_paths: list[Path]
    frames: list[FrameJob]


def _bad(message: str) -> BridgeError:
    return BridgeError("bad_job", message, exit_code=protocol.EXIT_BAD_INPUT)


def _matrix(value, shape, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape != shape or not np.all(np.isfinite(m)):
        raise _bad(f"{where} must be a finite {shape[0]}x{shape[1]} matrix")
    return m


def load_job(path: str | os.PathLike) -> RenderJob:
    """Parse and check a job file; :class:`BridgeError` (exit code 2) names the first problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BridgeError("missing_input", f"cannot read the render job {path}: {exc.strerror}",
                          exit_code=protocol.EXIT_BAD_INPUT) from exc
    except ValueError as exc:
        raise _bad(f"the render job {path} is not valid JSON: {exc}") from exc
    try:
        objects, frames = list(data["objects"]), list(data["frames"])
        output_dir = Path(data["output_dir"])
        name = str(data.get("name", "splats"))
        job = RenderJob(output_dir, name, [str(o.get("name", "")) for o in objects],
                        [Path(o["splats"]) for o in objects], [])
    except (KeyError, TypeError, AttributeError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"is malformed ({exc})"
        raise _bad(f"the render job {path} {what}: it needs output_dir, a list of objects (each with "
                   "splats) and a list of frames") from exc
    if not objects or not frames:
        raise _bad(f"the render job {path} has no {'objects' if not objects else 'frames'}")
    problem = _name_problem(name)
    if problem:
        raise _bad(f"the output name {name!r} {problem}")
    for i, f in enumerate(frames):
        where = f"frame {f.get('frame', i) if isinstance(f, dict) else i}"
        try:
            width, height = int(f["width"]), int(f["height"])
            start, end = float(f["clip_start"]), float(f["clip_end"])
            matrices = f["object_matrices"]
            frame = FrameJob(int(f["frame"]), width, height, _matrix(f["K"], (3, 3), f"{where}: K"),
                             _matrix(f["world_to_camera"], (4, 4), f"{where}: world_to_camera"), start, end,
                             [_matrix(m, (4, 4), f"{where}: object matrix") for m in matrices])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"lacks {exc}" if isinstance(exc, KeyError) else f"is malformed ({exc})"
            raise _bad(f"{where} of the render job {path} {what}") from exc
        if width <= 0 or height <= 0:
            raise _bad(f"{where}: the resolution {width}x{height} is empty")
        if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
            raise BridgeError("bad_job", f"{where}: the resolution {width}x{height} is over the limit of "
                              f"{MAX_SIDE} pixels a side and {MAX_PIXELS:,} pixels a frame",
                              hint="Lower the resolution or its percentage in the Output properties.",
                              exit_code=protocol.EXIT_BAD_INPUT)
        if not 0.0 <= start < end:
            raise _bad(f"{where}: the clip range {start}..{end} is empty")
        if len(frame.object_matrices) != len(objects):
            raise _bad(f"{where} has {len(frame.object_matrices)} object matrices for {len(objects)} objects")
        job.frames.append(frame)
    return job


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot start every frame's file name, or None."""
    if not name:
        return "is empty"
    if any(c in name for c in "/\\:") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must be a plain file name (no slashes, colons or control characters)"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


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


def frame_paths(job: RenderJob, frame: int) -> tuple[Path, Path]:
    stem = f"{job.name}_{frame:04d}"
    return job.output_dir / f"{stem}.exr", job.output_dir / f"{stem}.png"


def run(ctx: RunContext, args: argparse.Namespace) -> Done:
    # Everything that can be wrong with the input is checked before torch loads (seconds) and before
    # any frame is written, so a bad job fails at once rather than at frame 50.
    job = load_job(args.job)
    splats = []
    for name, path in zip(job.object_names, job.splat_paths, strict=True):
        try:
            splats.append(read_splats(path))
        except FormatError as exc:
            raise BridgeError("bad_input", f"splats of {name or 'an object'}: {exc}",
                              exit_code=protocol.EXIT_BAD_INPUT) from exc
    for frame in job.frames:
        for name, s, matrix in zip(job.object_names, splats, frame.object_matrices, strict=True):
            try:
                check_transform(s, matrix, f"frame {frame.frame}, object {name!r}")
            except FormatError as exc:  # e.g. a non-uniform scale on splats with view-dependent colour
                raise BridgeError("bad_input", str(exc), exit_code=protocol.EXIT_BAD_INPUT) from exc
    try:
        job.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BridgeError("bad_input", f"cannot create the output folder {job.output_dir}: {exc.strerror}",
                          exit_code=protocol.EXIT_BAD_INPUT) from exc

    import torch

    choice = resolve(args.device, field="--device")
    ctx.hello(device=choice.device, backend=choice.backend, versions={"torch": torch.__version__})
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
        write_exr(exr, out["rgba"], out["depth"])
        write_png(png, out["preview"])
        written.append(exr)
        elapsed = time.monotonic() - start
        ctx.emit(protocol.Progress(step=i + 1, total=len(job.frames), stage="rendering", frame=frame.frame,
                                   elapsed_sec=elapsed, eta_sec=elapsed / (i + 1) * (len(job.frames) - i - 1)))
        ctx.emit(protocol.Snapshot(step=i + 1, preview=str(png)))
    return _done(job, written, "completed", start)


def _done(job: RenderJob, written: list[Path], status: str, start: float) -> Done:
    outputs = {"folder": str(job.output_dir)}
    if written:
        outputs["first_exr"], outputs["last_exr"] = str(written[0]), str(written[-1])
    seconds = time.monotonic() - start
    return Done(status=status, outputs=outputs,
                metrics={"frames": len(written), "seconds_per_frame": seconds / max(1, len(written))})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge render", description=__doc__.split("\n")[0])
    parser.add_argument("job", help="render job (JSON) as written by the add-on")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="auto (CUDA when available, gsplat's kernels when they load), cuda, cuda-torch, mps, cpu")
    parser.add_argument("--ipc", action="store_true", help="driven by a program: events on stdout, EOF stops")
    args = parser.parse_args(argv)
    return run_command("render", lambda ctx: run(ctx, args), args.ipc)
