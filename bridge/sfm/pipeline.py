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
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..formats.atomic import atomic_write
from ..protocol import EXIT_BAD_INPUT, BridgeError, Done
from ..runner import RunContext
from .inputs import WorkingImage, clear_folder, list_photos, prepare_photos
from .stages import StageRunner, Stopped, Throttle, count_rows

MARKER = "splatwork-sfm.json"
_OWNED = ("input", "database.db", "database.db-wal", "database.db-shm", "sparse", "undistorted",
          ".mapping", ".undistorting", MARKER)
QUALITY_SIZES = {"low": 1000, "medium": 1600, "high": 0}  # longest side in pixels; 0: as shot
MIN_PHOTOS = 3  # the fewest views that triangulate anything checkable
_MIN_INLIERS = 15  # COLMAP's min_num_matches: fewer verified matches do not link two photos
_SEQUENTIAL_OVERLAP = 10

_OVERLAP_HINT = ("Photos must overlap: shoot every part of the subject from several nearby positions "
                 "(about two thirds shared between neighbouring photos), keep them sharp, and avoid "
                 "plain, shiny or moving subjects.")


@dataclass
class SfmOptions:
    out: Path
    images: Path | None = None
    video: Path | None = None
    every: int = 10
    matcher: str = "auto"  # auto, exhaustive, sequential
    mapper: str = "incremental"  # incremental, global
    quality: str = "medium"
    max_size: int | None = None  # overrides quality
    camera: str = "single"  # single, per-image
    threads: int = -1
    seed: int = 0
    min_registered: float = 0.5  # fraction of the photos the model must hold

    @property
    def working_size(self) -> int:
        return self.max_size if self.max_size is not None else QUALITY_SIZES[self.quality]


def run(ctx: RunContext, opts: SfmOptions) -> tuple[Done, bool]:
    """The whole run; returns the Done event and whether a worker thread was left running."""
    import pycolmap

    ctx.hello(device="cuda" if pycolmap.has_cuda else "cpu", backend="pycolmap",
              versions={"pycolmap": pycolmap.__version__, "colmap": str(pycolmap.COLMAP_version)})
    runner = StageRunner(ctx)
    out = opts.out.resolve()
    _claim_output(out)
    _write_marker(out, {"status": "running", "options": _jsonable(asdict(opts))})
    stage = "loading_images"
    try:
        runner.stage(stage, "decoding photos" if opts.video is None else "reading video frames")
        images = _load_inputs(runner, opts, out / "input")
        camera = _camera_mode(ctx, opts, images)
        database = out / "database.db"
        stage = "extracting_features"
        _extract(runner, opts, database, out / "input", images, camera)
        stage = "matching"
        matcher = _match(runner, opts, database, len(images))
        stage = "mapping"
        model, report = _map(runner, opts, database, out, images)
        stage = "undistorting"
        _undistort(runner, opts, out, len(report["registered"]))
    except Stopped:
        _write_marker(out, {"status": "stopped", "stage": stage})
        return Done(status="stopped", metrics={"stage": stage}), runner.abandoned_worker
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
    }
    outputs = {
        "sparse": str(out / "undistorted" / "sparse"),
        "images": str(out / "undistorted" / "images"),
        "sparse_distorted": str(out / "sparse" / "0"),
        "input_images": str(out / "input"),
        "database": str(database),
    }
    _write_marker(out, {"status": "completed", "outputs": outputs, "metrics": metrics})
    return Done(status="completed", outputs=outputs, metrics=metrics), False


# ---------------------------------------------------------------------------------------------
# Output folder


def _claim_output(out: Path) -> None:
    """Make ``out`` ready: new or empty, or an earlier run of ours whose files are replaced.

    Anything else is refused rather than cleared: an artist may point this at a COLMAP project
    or a photo folder, and nothing of theirs may be deleted.
    """
    if out.exists() and not out.is_dir():
        raise BridgeError("bad_input", f"{out}: exists and is not a folder", "Choose a folder for the result.",
                          EXIT_BAD_INPUT)
    out.mkdir(parents=True, exist_ok=True)
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    if MARKER not in entries:
        raise BridgeError(
            "bad_input", f"{out}: the output folder is not empty and was not made by Splatwork's reconstruct",
            "Choose an empty or new folder for the result; nothing in this one is changed.", EXIT_BAD_INPUT)
    for name in _OWNED:
        clear_folder(out / name)


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


def _extract(runner: StageRunner, opts: SfmOptions, database: Path, image_dir: Path,
             images: list[WorkingImage], camera: str) -> None:
    import pycolmap

    runner.stage("extracting_features", f"{len(images)} photos")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = opts.threads
    mode = pycolmap.CameraMode.SINGLE if camera == "single" else pycolmap.CameraMode.PER_IMAGE
    total = len(images)
    probe = Throttle(lambda: count_rows(database, "SELECT COUNT(*) FROM keypoints"),
                     lambda n: runner.progress("extracting_features", n, total, images_processed=n))
    runner.run(lambda token: pycolmap.extract_features(
        database, image_dir, image_names=[im.name for im in images], camera_mode=mode,
        reader_options=reader, extraction_options=extraction, cancellation_token=token), probe)
    found = count_rows(database, "SELECT COUNT(*) FROM keypoints WHERE rows > 0") or 0
    runner.progress("extracting_features", total, total, images_processed=found)
    if found < MIN_PHOTOS:
        raise BridgeError("bad_input", f"features were found in only {found} of {total} photos",
                          "The photos may be blank, blurred or tiny; " + _OVERLAP_HINT, EXIT_BAD_INPUT)


def _sequential_pairs(n: int, overlap: int) -> int:
    """How many pairs COLMAP's sequential matcher (quadratic overlap) compares: the progress total."""
    pairs = set()
    for i in range(n):
        for k in range(1, overlap + 1):
            if i + k < n:
                pairs.add((i, i + k))
        for k in range(overlap):
            if i + (1 << k) < n:
                pairs.add((i, i + (1 << k)))
    return len(pairs)


def _match(runner: StageRunner, opts: SfmOptions, database: Path, n: int) -> str:
    import pycolmap

    matcher = opts.matcher
    if matcher == "auto":
        # Video frames are ordered: neighbours overlap and distant frames rarely do. Photos are not.
        matcher = "sequential" if opts.video is not None else "exhaustive"
    runner.stage("matching", matcher)
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = opts.threads
    if matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = _SEQUENTIAL_OVERLAP
        pairing.quadratic_overlap = True
        pairing.num_threads = opts.threads
        total = _sequential_pairs(n, _SEQUENTIAL_OVERLAP)

        def work(token):
            pycolmap.match_sequential(database, matching_options=options, pairing_options=pairing,
                                      cancellation_token=token)
    else:
        total = n * (n - 1) // 2

        def work(token):
            pycolmap.match_exhaustive(database, matching_options=options, cancellation_token=token)

    probe = Throttle(lambda: count_rows(database, "SELECT COUNT(*) FROM two_view_geometries"),
                     lambda k: runner.progress("matching", k, total))
    runner.run(work, probe)
    linked = count_rows(database, f"SELECT COUNT(*) FROM two_view_geometries WHERE rows >= {_MIN_INLIERS}") or 0
    runner.progress("matching", total, total)
    if linked == 0:
        raise BridgeError("no_overlap", f"none of the {n} photos share enough features with another",
                          _OVERLAP_HINT, EXIT_BAD_INPUT)
    return matcher


def _map(runner: StageRunner, opts: SfmOptions, database: Path, out: Path, images: list[WorkingImage]):

    runner.stage("mapping", opts.mapper)
    n = len(images)
    scratch = out / ".mapping"
    clear_folder(scratch)
    scratch.mkdir()
    if opts.mapper == "global":
        models = runner.run(lambda token: _global_mapping(database, out / "input", scratch, opts),
                            cancellable=False)
    else:
        models = runner.run(lambda token: _incremental_mapping(runner, database, out / "input", scratch, opts,
                                                               n, token))
    if not models:
        clear_folder(scratch)
        raise BridgeError("empty_reconstruction", f"no photos could be placed: none of the {n} registered",
                          _OVERLAP_HINT, EXIT_BAD_INPUT)
    best_id, best = max(models.items(), key=lambda item: item[1].num_reg_images())
    registered = sorted(im.name for im in best.images.values() if im.has_pose)
    unregistered = sorted({im.name for im in images} - set(registered))
    needed = _needed(opts, n)
    runner.progress("mapping", len(registered), n, images_registered=len(registered))
    if len(registered) < needed:
        clear_folder(scratch)
        raise BridgeError(
            "partial_reconstruction",
            f"only {len(registered)} of {n} photos could be placed in one model (at least {needed} needed)",
            _OVERLAP_HINT + " Photos that were not placed: " + ", ".join(unregistered[:10])
            + (" ..." if len(unregistered) > 10 else ""),
            EXIT_BAD_INPUT)
    if unregistered:
        runner.ctx.log(f"{len(unregistered)} of {n} photos could not be placed and are left out: "
                       + ", ".join(unregistered[:10]) + (" ..." if len(unregistered) > 10 else ""),
                       level="warning")
    if len(models) > 1:
        runner.ctx.log(f"the photos fell apart into {len(models)} unconnected groups; the largest "
                       f"({len(registered)} photos) is kept. More photos between the groups would join them.",
                       level="warning")
    final = out / "sparse" / "0"
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch / str(best_id), final)
    clear_folder(scratch)
    return best, {"registered": registered, "unregistered": unregistered, "models": len(models)}


def _needed(opts: SfmOptions, n: int) -> int:
    """The fewest placed photos a result may have: below this it is a fragment, not the scene."""
    return max(MIN_PHOTOS, math.ceil(opts.min_registered * n))


def _incremental_mapping(runner: StageRunner, database: Path, image_dir: Path, scratch: Path,
                         opts: SfmOptions, n: int, token):
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = opts.threads
    options.random_seed = opts.seed
    # COLMAP discards a model smaller than this and frees its photos for a later, larger one:
    # too small a floor leaves the scene split into fragments (seen on the statue photos: 31 of 40
    # placed with a floor of 3, 39 of 40 with COLMAP's 10). Small sets still need a model.
    options.min_model_size = min(10, _needed(opts, n))
    registered = [0]

    def on_initial_pair() -> None:  # a new model starts from two photos
        registered[0] = 2
        runner.progress("mapping", 2, n, images_registered=2)

    def on_next_image() -> None:
        registered[0] += 1
        runner.progress("mapping", min(registered[0], n), n, images_registered=min(registered[0], n))

    return pycolmap.incremental_mapping(
        database, image_dir, scratch, options, initial_image_pair_callback=on_initial_pair,
        next_image_callback=on_next_image, cancellation_token=token)


def _global_mapping(database: Path, image_dir: Path, scratch: Path, opts: SfmOptions):
    import pycolmap

    # The global mapper needs focal lengths up front; photos without EXIF focal lengths get them
    # from the two-view geometries first, as COLMAP's own global mapper advises.
    calibration = pycolmap.ViewGraphCalibrationOptions()
    calibration.random_seed = opts.seed
    pycolmap.calibrate_view_graph(database, calibration)
    options = pycolmap.GlobalPipelineOptions()
    options.num_threads = opts.threads
    options.random_seed = opts.seed
    options.mapper.global_positioning.use_gpu = pycolmap.has_cuda
    options.mapper.bundle_adjustment.ceres.use_gpu = pycolmap.has_cuda
    return pycolmap.global_mapping(database, image_dir, scratch, options)


def _undistort(runner: StageRunner, opts: SfmOptions, out: Path, n: int) -> None:
    import pycolmap

    runner.stage("undistorting", "to pinhole cameras for training")
    scratch = out / ".undistorting"
    clear_folder(scratch)
    probe = Throttle(lambda: _count_files(scratch / "images"),
                     lambda k: runner.progress("undistorting", k, n, images_processed=k))
    runner.run(lambda token: pycolmap.undistort_images(
        scratch, out / "sparse" / "0", out / "input", output_type="COLMAP", num_threads=opts.threads,
        cancellation_token=token), probe)
    written = _count_files(scratch / "images")
    if written != n:
        raise BridgeError("internal", f"undistortion wrote {written} of {n} images",
                          "The log has COLMAP's messages.")
    clear_folder(out / "undistorted")
    os.replace(scratch, out / "undistorted")
    runner.progress("undistorting", n, n, images_processed=n)


def _count_files(folder: Path) -> int | None:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith("."))
    except OSError:
        return None

