"""Placing the cameras: COLMAP's incremental mapper (or the global one), and judging the result."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..protocol import EXIT_BAD_INPUT, BridgeError
from .inputs import clear_folder
from .options import MIN_PHOTOS, OVERLAP_HINT, SfmOptions
from .stages import StageRunner


def place_cameras(runner: StageRunner, opts: SfmOptions, database: Path, out: Path, names: list[str]):
    """Map, keep the largest model as ``out/sparse/0``; returns it and what happened.

    Fewer placed photos than ``needed()`` is an error, never a result; fewer than all is a warning
    naming the photos left out.
    """
    runner.stage("mapping", opts.mapper)
    n = len(names)
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
                          OVERLAP_HINT, EXIT_BAD_INPUT)
    best_id, best = max(models.items(), key=lambda item: item[1].num_reg_images())
    registered = sorted(im.name for im in best.images.values() if im.has_pose)
    placed = set(registered)
    unregistered = sorted(set(names) - placed)
    floor = needed(opts, n)
    runner.progress("mapping", len(registered), n, images_registered=len(registered))
    if len(registered) < floor:
        clear_folder(scratch)
        raise BridgeError(
            "partial_reconstruction",
            f"only {len(registered)} of {n} photos could be placed in one model (at least {floor} needed)",
            OVERLAP_HINT + " Photos that were not placed: " + ", ".join(unregistered[:10])
            + (" ..." if len(unregistered) > 10 else ""),
            EXIT_BAD_INPUT)
    if unregistered:
        runner.ctx.log(f"{len(unregistered)} of {n} photos could not be placed and are left out: "
                       + ", ".join(unregistered[:10]) + (" ..." if len(unregistered) > 10 else ""),
                       level="warning")
    # COLMAP may also return small models that overlap the largest one; only groups holding photos
    # the kept model lacks mean the scene fell apart.
    apart = [m for i, m in models.items() if i != best_id
             and any(im.has_pose and im.name not in placed for im in m.images.values())]
    if apart:
        runner.ctx.log(f"the photos fell apart into {len(apart) + 1} unconnected groups; the largest "
                       f"({len(registered)} photos) is kept. More photos between the groups would join them.",
                       level="warning")
    final = out / "sparse" / "0"
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch / str(best_id), final)
    clear_folder(scratch)
    return best, {"registered": registered, "unregistered": unregistered, "models": len(apart) + 1}


def needed(opts: SfmOptions, n: int) -> int:
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
    options.min_model_size = min(10, needed(opts, n))
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
