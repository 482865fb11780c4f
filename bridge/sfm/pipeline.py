"""Structure from motion with pycolmap: photos (or video frames) in, a COLMAP model and undistorted
pinhole images ready for training out.

Output folder layout (``--out``)::

    splatwork-sfm.json      what this run did; also marks the folder as ours, so a re-run may clear it
    input/                  the working photos: upright, at the working size (what the model describes)
    database.db             COLMAP's features and matches
    sparse/0/               the model as mapped (SIMPLE_RADIAL cameras: with lens distortion)
    undistorted/images/     the photos undistorted to pinhole cameras ...
    undistorted/sparse/     ... and their model: what training and the Blender import use
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from ..formats.atomic import atomic_write
from ..outlock import output_lock
from ..protocol import EXIT_BAD_INPUT, BridgeError, Done
from ..protocol.jobs import OUTPUT_LOCK
from ..runner import RunContext
from . import features
from .inputs import WorkingImage, clear_folder, list_photos, prepare_photos
from .mapping import place_cameras
from .options import MIN_PHOTOS, SfmOptions
from .stages import StageRunner, Stopped, Throttle

MARKER = "splatwork-sfm.json"
_OWNED = ("input", "database.db", "database.db-wal", "database.db-shm", "sparse", "undistorted",
          ".mapping", ".undistorting", ".pairs.txt", MARKER)


def run(ctx: RunContext, opts: SfmOptions) -> Done:
    """The whole run, from the photos to the undistorted model; BridgeError for bad input."""
    import pycolmap

    ctx.claim_signals()  # importing pycolmap (glog) replaced the SIGTERM handler: SIGTERM stops like "stop"
    ctx.hello(device="cuda" if pycolmap.has_cuda else "cpu", backend="pycolmap",
              versions={"pycolmap": pycolmap.__version__, "colmap": str(pycolmap.COLMAP_version)})
    out = opts.out.resolve()
    _check_output(out)
    with output_lock(ctx, out, opts.lock_wait) as held:
        if not held:
            return Done(status="stopped", metrics={"stage": "waiting"})
        return _run(ctx, opts, out)


def _run(ctx: RunContext, opts: SfmOptions, out: Path) -> Done:
    runner = StageRunner(ctx)
    for name in _OWNED:  # an earlier run's files (_check_output made sure the folder is ours)
        clear_folder(out / name)
    _write_marker(out, {"status": "running", "options": _jsonable(asdict(opts))})
    stage = "loading_images"
    try:
        runner.stage(stage, "decoding photos" if opts.video is None else "reading video frames")
        images = _load_inputs(runner, opts, out / "input")
        camera = _camera_mode(ctx, opts, images)
        database = out / "database.db"
        stage = "extracting_features"
        features.extract(runner, database, out / "input", images, camera == "single", opts.threads)
        stage = "matching"
        matcher = opts.matcher if opts.matcher != "auto" else features.auto_matcher(opts.video is not None)
        features.match(runner, database, out / ".pairs.txt", [im.name for im in images], matcher, opts.threads)
        stage = "mapping"
        model, report = place_cameras(runner, opts, database, out, [im.name for im in images])
        stage = "undistorting"
        _undistort(runner, out, len(report["registered"]))
    except Stopped:
        _write_marker(out, {"status": "stopped", "stage": stage})
        return Done(status="stopped", metrics={"stage": stage})
    except BridgeError as exc:
        _write_marker(out, {"status": "failed", "stage": stage, "error": exc.message})
        raise

    metrics = {
        "photos": len(images),
        "registered": len(report["registered"]),
        "unregistered": report["unregistered"],
        "models": report["models"],
        "points": model.num_points3D(),
        "mean_reprojection_error": round(float(model.compute_mean_reprojection_error()), 4),
        "camera": camera, "matcher": matcher, "mapper": opts.mapper,
        "working_size": opts.working_size,
        "seconds": round(time.monotonic() - runner.started, 1),
        "stage_seconds": runner.stage_seconds(),
    }
    outputs = {
        "sparse": str(out / "undistorted" / "sparse"),
        "images": str(out / "undistorted" / "images"),
        "sparse_distorted": str(out / "sparse" / "0"),
        "input_images": str(out / "input"),
        "database": str(database),
    }
    # Working names can differ from the artist's (spaces, formats, video frames): say where each came from.
    sources = {im.name: im.source for im in images}
    _write_marker(out, {"status": "completed", "outputs": outputs, "metrics": metrics, "sources": sources})
    return Done(status="completed", outputs=outputs, metrics=metrics)


# ---------------------------------------------------------------------------------------------
# Output folder


def _check_output(out: Path) -> None:
    """Make sure ``out`` may be used: new or empty, or an earlier run of ours (whose files are replaced).

    Anything else is refused rather than cleared: an artist may point this at a COLMAP project
    or a photo folder, and nothing of theirs may be deleted.
    """
    if out.exists() and not out.is_dir():
        raise BridgeError("bad_input", f"{out}: exists and is not a folder", "Choose a folder for the result.",
                          EXIT_BAD_INPUT)
    out.mkdir(parents=True, exist_ok=True)
    entries = {p.name for p in out.iterdir()} - {OUTPUT_LOCK}
    if entries and MARKER not in entries:
        raise BridgeError(
            "bad_input", f"{out}: the output folder is not empty and was not made by Splatwork's reconstruct",
            "Choose an empty or new folder for the result; nothing in this one is changed.", EXIT_BAD_INPUT)


def _write_marker(out: Path, data: dict) -> None:
    with atomic_write(out / MARKER) as fh:
        fh.write(json.dumps(data, indent=2, default=str).encode())


def _jsonable(data: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


# ---------------------------------------------------------------------------------------------
# Stages


def _load_inputs(runner: StageRunner, opts: SfmOptions, work_dir: Path) -> list[WorkingImage]:
    if opts.video is not None:
        from .video import extract_frames

        def on_frames(read: int, total: int) -> None:
            if read % 25 == 0 or read == total:
                runner.progress("loading_images", read, total)

        images = extract_frames(opts.video, work_dir, opts.every, opts.working_size, on_frames,
                                runner.should_stop)
    else:
        photos = list_photos(opts.images)
        if len(photos) < MIN_PHOTOS:
            raise BridgeError(
                "bad_input", f"{opts.images}: {len(photos)} photo(s); at least {MIN_PHOTOS} are needed",
                "Structure from motion needs many overlapping photos of the subject: 20 to 200 work well.",
                EXIT_BAD_INPUT)
        images = prepare_photos(
            photos, work_dir, opts.working_size,
            lambda n: runner.progress("loading_images", n, len(photos), images_processed=n),
            runner.should_stop)
    runner.check_stop()
    return images


def _camera_mode(ctx: RunContext, opts: SfmOptions, images: list[WorkingImage]) -> str:
    sizes = {(im.width, im.height) for im in images}
    if opts.camera == "single" and len(sizes) > 1:
        # One camera has one image size: COLMAP would silently skip every photo of another size.
        ctx.log(f"the photos come in {len(sizes)} different sizes, so each photo gets its own camera",
                level="warning")
        return "per-image"
    return opts.camera


def _undistort(runner: StageRunner, out: Path, n: int) -> None:
    from ..formats.colmap import undistort

    runner.stage("undistorting", "to pinhole cameras for training")
    scratch = out / ".undistorting"
    clear_folder(scratch)
    probe = Throttle(lambda: _count_files(scratch / "images"),
                     lambda k: runner.progress("undistorting", k, n, images_processed=k))
    runner.run(lambda token: undistort(out / "sparse" / "0", out / "input", scratch), probe, cancellable=False)
    written = _count_files(scratch / "images")
    if written != n:
        raise BridgeError("internal", f"undistortion wrote {written} of {n} images",
                          "The log has COLMAP's messages.")
    # Renamed into place whole, so a folder named "undistorted" is always complete.
    clear_folder(out / "undistorted")
    os.replace(scratch, out / "undistorted")
    runner.progress("undistorting", n, n, images_processed=n)


def _count_files(folder: Path) -> int | None:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith("."))
    except OSError:
        return None

