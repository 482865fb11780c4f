"""SIFT features and verified matches in the COLMAP database, in small batches for progress and cancel.

pycolmap reports nothing while it works, and the database cannot be watched from another connection
meanwhile (COLMAP does not wait for locks: a reader at the wrong moment aborts it with "database is
locked"). So the photos are extracted, and the pairs matched, a batch per pycolmap call, with a
Progress event and a stop check between batches and the cancel token inside each.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from ..protocol import EXIT_BAD_INPUT, BridgeError
from .inputs import WorkingImage
from .options import MIN_PHOTOS, OVERLAP_HINT
from .stages import StageRunner

MIN_INLIERS = 15  # COLMAP's min_num_matches: fewer verified matches do not link two photos
SEQUENTIAL_OVERLAP = 10  # neighbours each frame is matched with, plus 2, 4, 8, ... frames ahead
_BATCHES = 20  # progress granularity: about 5 % per event


def _batch_size(count: int, threads: int) -> int:
    # Never smaller than the thread count, so every batch keeps every thread busy.
    workers = threads if threads > 0 else (os.cpu_count() or 1)
    return max(math.ceil(count / _BATCHES), workers, 1)


def extract(runner: StageRunner, database: Path, image_dir: Path, images: list[WorkingImage],
            single_camera: bool, threads: int) -> None:
    import pycolmap

    total = len(images)
    runner.stage("extracting_features", f"{total} photos")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    # COLMAP's own default: larger photos ("high" quality) keep their full size for the model and
    # training, but SIFT runs on a copy this size (keypoints are scaled back), because CPU SIFT time
    # and memory grow with the pixel count while matches stop improving.
    extraction.max_image_size = 3200
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    names = [im.name for im in images]
    step = _batch_size(total, threads)
    runner.progress("extracting_features", 0, total, images_processed=0)
    for start in range(0, total, step):
        batch = names[start:start + step]
        runner.run(lambda token, batch=batch: pycolmap.extract_features(
            database, image_dir, image_names=batch, camera_mode=mode, reader_options=reader,
            extraction_options=extraction, cancellation_token=token))
        if single_camera and reader.existing_camera_id < 0:
            # Later batches join the first batch's camera; each call would otherwise make its own.
            with _open(database) as db:
                reader.existing_camera_id = db.read_all_cameras()[0].camera_id
        done = start + len(batch)
        runner.progress("extracting_features", done, total, images_processed=done)
    with _open(database) as db:
        found = sum(1 for im in db.read_all_images() if db.num_keypoints_for_image(im.image_id) > 0)
    if found < MIN_PHOTOS:
        raise BridgeError("bad_input", f"features were found in only {found} of {total} photos",
                          "The photos may be blank, blurred or tiny. " + OVERLAP_HINT, EXIT_BAD_INPUT)


def auto_matcher(video: bool) -> str:
    # Video frames are ordered: neighbours overlap and distant frames rarely do. Photos are not.
    return "sequential" if video else "exhaustive"


def pairs_for(names: list[str], matcher: str) -> list[tuple[str, str]]:
    """The photo pairs a matcher compares: every pair, or neighbours in order (COLMAP's sequential
    matcher with quadratic overlap: the next ``SEQUENTIAL_OVERLAP`` frames and frames 2^k ahead)."""
    n = len(names)
    if matcher == "exhaustive":
        return [(names[i], names[j]) for i in range(n) for j in range(i + 1, n)]
    pairs: list[tuple[str, str]] = []
    for i in range(n):
        ahead = set(range(1, SEQUENTIAL_OVERLAP + 1)) | {1 << k for k in range(SEQUENTIAL_OVERLAP)}
        pairs += [(names[i], names[i + k]) for k in sorted(ahead) if i + k < n]
    return pairs


def match(runner: StageRunner, database: Path, scratch: Path, names: list[str], matcher: str,
          threads: int) -> None:
    import pycolmap

    runner.stage("matching", matcher)
    pairs = pairs_for(names, matcher)
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = threads
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(scratch)
    step = _batch_size(len(pairs), threads)
    runner.progress("matching", 0, len(pairs))
    try:
        for start in range(0, len(pairs), step):
            batch = pairs[start:start + step]
            scratch.write_text("".join(f"{a} {b}\n" for a, b in batch), encoding="utf-8")
            runner.run(lambda token: pycolmap.match_image_pairs(
                database, matching_options=options, pairing_options=pairing, cancellation_token=token))
            runner.progress("matching", start + len(batch), len(pairs))
    finally:
        scratch.unlink(missing_ok=True)
    with _open(database) as db:
        _, geometries = db.read_two_view_geometries()
    if not any(len(g.inlier_matches) >= MIN_INLIERS for g in geometries):
        raise BridgeError("no_overlap", f"none of the {len(names)} photos share enough features with another",
                          OVERLAP_HINT, EXIT_BAD_INPUT)


def _open(database: Path):
    """The COLMAP database, opened between pycolmap calls (never while one runs), closed after use."""
    import pycolmap

    return contextlib.closing(pycolmap.Database.open(database))
