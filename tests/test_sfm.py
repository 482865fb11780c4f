"""``python -m bridge sfm`` as a real subprocess on real photos: results, progress, cancel, bad input.

The 40 statue photos run once (module fixture, marked slow) at 600 px, the size at which the whole
pipeline takes about a minute on two cores. Floors and tolerances, and why:

- at least 32 of 40 photos placed: these are internet photos from many cameras and days; at 600 px
  our runs place 39. COLMAP at full size places all 40, so 32 (80 %) leaves room for run-to-run
  variation of multi-threaded RANSAC while still catching a pipeline that loses the scene.
- mean reprojection error below 1.5 px (the issue's bound; our runs give about 0.85 px).
- camera centres after a similarity alignment onto the reference model sparse/0 (pycolmap's
  align_reconstructions_via_proj_centers): median error below 5 % and 90th percentile below 10 %
  of the reference's camera spread (median distance of its centres from their median). For scale:
  the two reference COLMAP runs in shared/data differ from each other by 2.5 % median, 5 % at the
  90th percentile and 18 % at worst (a distant photo slides along its viewing direction), and our
  runs give about 2 % median and 4 % at the 90th percentile.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_data
from PIL import Image

from bridge import client, protocol
from bridge.formats.colmap import read_model

STATUE = ("colmap", "statue_of_liberty")
# Ten statue photos that share many points in the reference model: all ten are placed at 600 px.
OVERLAPPING = (
    "28694662092_ef147bd65c_o.jpg", "45194583384_53c1aef0f9_o.jpg", "42308389510_313e27d74f_o.jpg",
    "49569326278_5592a1f0f9_o.jpg", "49569826016_639cc2b75e_o.jpg", "29561140525_9e8b4a29fc_o.jpg",
    "7574644852_9c9f081a67_o.jpg", "8151983731_066084233f_o.jpg", "2558473737_26550c7634_o.jpg",
    "5090398104_47d3e1112a_o.jpg",
)
MIN_REGISTERED = 32
MAX_REPROJECTION_PX = 1.5
MEDIAN_CENTRE_TOL = 0.05  # of the reference camera spread
P90_CENTRE_TOL = 0.10


class Run:
    def __init__(self, code: int, events: list[protocol.Event], log: Path):
        self.code = code
        self.events = events
        self.log = log

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]

    @property
    def done(self) -> protocol.Done | None:
        found = self.of(protocol.Done)
        return found[-1] if found else None

    @property
    def error(self) -> protocol.Error | None:
        found = self.of(protocol.Error)
        return found[-1] if found else None


def start_sfm(tmp: Path, *args) -> client.BridgeProcess:
    argv = [sys.executable, "-m", "bridge", "sfm", *[str(a) for a in args], "--threads", "2", "--ipc"]
    return client.BridgeProcess(argv, str(tmp / "sfm.log"), cwd=str(ROOT))


def run_sfm(tmp: Path, *args, timeout: float = 300) -> Run:
    process = start_sfm(tmp, *args)
    events: list[protocol.Event] = []
    try:
        code = client.run_to_end(process, events.append, timeout=timeout)
    finally:
        process.close()
    return Run(code, events, tmp / "sfm.log")


def link_photos(folder: Path, names) -> Path:
    """A photo folder of symbolic links to shared photos (nothing is copied)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = shared_data(*STATUE, "images")
    for name in names:
        (folder / name).symlink_to(source / name)
    return folder


def noise_photo(path: Path, seed: int, size=(320, 240)) -> None:
    """A photo of random texture: plenty of SIFT features, and none shared with any other photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(path, quality=92)


def noise_photos(folder: Path, count: int, seed: int = 0) -> Path:
    """A folder of ``count`` unrelated photos: for refusals that happen before any matching, which need
    photos but no scene (so they run on a fresh clone, without the shared statue)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise_photo(folder / f"noise_{i}.jpg", seed=seed + i)
    return folder


def assert_failed_cleanly(run: Run, out: Path, kinds: set[str]) -> None:
    assert run.code != 0, run.events
    assert run.done is None, "a failed run must not also report success"
    assert run.error is not None and run.error.kind in kinds, run.events
    assert run.error.hint, "every error tells the artist what to do"
    assert not (out / "undistorted").exists(), "no result may be presented after a failure"


# ---------------------------------------------------------------------------------------------
# The 40 real photos


@pytest.fixture(scope="module")
def statue_run(tmp_path_factory):
    images = shared_data(*STATUE, "images")
    tmp = tmp_path_factory.mktemp("sfm-statue")
    run = run_sfm(tmp, "--images", images, "--out", tmp / "out", "--max-size", 600)
    assert run.code == 0 and run.done is not None, (run.error, run.log.read_text()[-3000:])
    return run


def _centres(rec) -> dict[str, np.ndarray]:
    return {im.name: im.projection_center() for im in rec.images.values() if im.has_pose}


@pytest.mark.slow
def test_statue_most_photos_registered_with_low_error(statue_run):
    import pycolmap

    done = statue_run.done
    assert done.status == "completed"
    assert done.metrics["photos"] == 40
    model = pycolmap.Reconstruction(done.outputs["sparse_distorted"])
    assert model.num_reg_images() == done.metrics["registered"] >= MIN_REGISTERED
    assert model.compute_mean_reprojection_error() < MAX_REPROJECTION_PX
    assert done.metrics["mean_reprojection_error"] < MAX_REPROJECTION_PX
    assert len(done.metrics["unregistered"]) == 40 - done.metrics["registered"]
    if done.metrics["unregistered"]:  # left-out photos are said, not hidden
        warnings = " ".join(e.message for e in statue_run.of(protocol.Log) if e.level == "warning")
        assert done.metrics["unregistered"][0] in warnings


@pytest.mark.slow
def test_statue_camera_centres_match_reference_after_similarity_alignment(statue_run):
    import pycolmap

    reference = pycolmap.Reconstruction(shared_data(*STATUE, "sparse", "0"))
    ours = pycolmap.Reconstruction(statue_run.done.outputs["sparse_distorted"])
    ref_centres = _centres(reference)
    spread = float(np.median(np.linalg.norm(
        np.array(list(ref_centres.values())) - np.median(list(ref_centres.values()), axis=0), axis=1)))
    sim = pycolmap.align_reconstructions_via_proj_centers(ours, reference, max_proj_center_error=0.1 * spread)
    assert sim is not None, "no similarity aligns our cameras with the reference"
    our_centres = _centres(ours)
    names = sorted(set(our_centres) & set(ref_centres))
    assert len(names) >= MIN_REGISTERED
    errors = np.linalg.norm(sim * np.array([our_centres[n] for n in names])
                            - np.array([ref_centres[n] for n in names]), axis=1) / spread
    assert np.median(errors) < MEDIAN_CENTRE_TOL, sorted(errors)[-5:]
    assert np.percentile(errors, 90) < P90_CENTRE_TOL, sorted(errors)[-5:]


@pytest.mark.slow
def test_statue_undistorted_result_is_ready_for_training(statue_run):
    done = statue_run.done
    model = read_model(done.outputs["sparse"])
    assert {cam.model for cam in model.cameras.values()} == {"PINHOLE"}
    assert len(model.views) == done.metrics["registered"]
    images = Path(done.outputs["images"])
    for view in model.views:
        camera = model.cameras[view.camera_id]
        with Image.open(images / view.name) as img:
            assert img.size == (camera.width, camera.height)
    with Image.open(Path(done.outputs["input_images"]) / model.views[0].name) as img:
        assert max(img.size) == 600, "the working size applies to every image"
    marker = json.loads((Path(done.outputs["sparse"]).parent.parent / "splatwork-sfm.json").read_text())
    assert marker["status"] == "completed"


@pytest.mark.slow
def test_statue_progress_streams_every_stage(statue_run):
    stages = [e.stage for e in statue_run.of(protocol.Stage)]
    assert stages == ["loading_images", "extracting_features", "matching", "mapping", "undistorting"]
    progress = statue_run.of(protocol.Progress)
    extracted = [p.images_processed for p in progress if p.stage == "extracting_features"]
    assert extracted[-1] == 40 and extracted == sorted(extracted)
    registered = [p.images_registered for p in progress if p.stage == "mapping"]
    assert registered and max(registered) >= MIN_REGISTERED
    assert all(p.step <= p.total for p in progress)
    assert isinstance(statue_run.events[0], protocol.Hello)
    assert statue_run.events[0].versions["pycolmap"]


# ---------------------------------------------------------------------------------------------
# Cancel


@pytest.mark.parametrize("how", ["stop", "SIGTERM"])
def test_stop_cancels_cleanly(tmp_path, how):
    """The stop command, or SIGTERM (a logout, a scheduler, kill): a clean stop, exit 0."""
    images = link_photos(tmp_path / "photos", OVERLAPPING)
    out = tmp_path / "out"
    process = start_sfm(tmp_path, "--images", images, "--out", out, "--max-size", 600)
    events: list[protocol.Event] = []
    sent_at = None
    deadline = time.monotonic() + 120
    try:
        while not process.finished() and time.monotonic() < deadline:
            for event in process.events():
                events.append(event)
                if sent_at is None and isinstance(event, protocol.Stage) and event.stage == "extracting_features":
                    if how == "stop":
                        process.send("stop")
                    else:
                        os.kill(process.pid, signal.SIGTERM)
                    sent_at = time.monotonic()
            time.sleep(0.05)
        code = process.wait(timeout=30)
        events += process.events()
    finally:
        process.kill()
        process.close()
    assert sent_at is not None, events
    assert code == protocol.EXIT_OK
    done = [e for e in events if isinstance(e, protocol.Done)]
    assert len(done) == 1 and done[0].status == "stopped" and not done[0].outputs
    assert "undistorted" not in {p.name for p in out.iterdir()}
    assert json.loads((out / "splatwork-sfm.json").read_text())["status"] == "stopped"


# ---------------------------------------------------------------------------------------------
# Bad input: one clear message, a non-zero exit, never a result


def test_too_few_photos(tmp_path):
    images = noise_photos(tmp_path / "photos", 2)
    run = run_sfm(tmp_path, "--images", images, "--out", tmp_path / "out")
    assert_failed_cleanly(run, tmp_path / "out", {"bad_input"})
    assert run.code == protocol.EXIT_BAD_INPUT
    assert "2 photo(s)" in run.error.message and "at least 3" in run.error.message


def test_no_photos_names_what_was_found(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("not a photo")
    run = run_sfm(tmp_path, "--images", tmp_path / "photos", "--out", tmp_path / "out")
    assert_failed_cleanly(run, tmp_path / "out", {"bad_input"})
    assert "no photos" in run.error.message and "notes.txt" in run.error.message


def test_unreadable_photo_is_named(tmp_path):
    images = noise_photos(tmp_path / "photos", 4)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    run = run_sfm(tmp_path, "--images", images, "--out", tmp_path / "out")
    assert_failed_cleanly(run, tmp_path / "out", {"bad_input"})
    assert run.code == protocol.EXIT_BAD_INPUT
    assert "broken.jpg" in run.error.message and "1 of 5" in run.error.message


def test_photos_without_overlap(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(4):
        noise_photo(images / f"noise_{i}.jpg", seed=i)
    run = run_sfm(tmp_path, "--images", images, "--out", tmp_path / "out")
    assert_failed_cleanly(run, tmp_path / "out", {"no_overlap", "empty_reconstruction"})
    assert "overlap" in run.error.hint


def test_too_few_photos_placed_is_an_error_not_a_result(tmp_path):
    """Four overlapping photos among five unrelated ones: at best a model of four, under half of nine."""
    images = link_photos(tmp_path / "photos", OVERLAPPING[:4])
    for i in range(5):
        noise_photo(images / f"noise_{i}.jpg", seed=100 + i)
    run = run_sfm(tmp_path, "--images", images, "--out", tmp_path / "out", "--max-size", 400)
    assert_failed_cleanly(run, tmp_path / "out", {"partial_reconstruction", "empty_reconstruction"})
    assert json.loads((tmp_path / "out" / "splatwork-sfm.json").read_text())["status"] == "failed"


def test_refuses_an_output_folder_it_did_not_make(tmp_path):
    images = noise_photos(tmp_path / "photos", 3)
    out = tmp_path / "project"
    (out / "sparse").mkdir(parents=True)
    (out / "sparse" / "keep.txt").write_text("the artist's")
    run = run_sfm(tmp_path, "--images", images, "--out", out)
    assert_failed_cleanly(run, out, {"bad_input"})
    assert "not empty" in run.error.message
    assert (out / "sparse" / "keep.txt").read_text() == "the artist's"


@pytest.mark.skipif(os.name == "nt", reason="holds the lock with fcntl")
def test_an_output_folder_in_use_is_busy_and_untouched(tmp_path):
    import fcntl

    images = noise_photos(tmp_path / "photos", 3)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / protocol.jobs.OUTPUT_LOCK, "w") as lock:  # another run's, as the bridge holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242 elsewhere\n")
        lock.flush()
        run = run_sfm(tmp_path, "--images", images, "--out", out, "--lock-wait", 0.5)
    assert_failed_cleanly(run, out, {"busy"})
    assert run.code == protocol.EXIT_BAD_INPUT and str(out) in run.error.message
    assert "pid 4242 on elsewhere" in run.error.message
    assert sorted(p.name for p in out.iterdir()) == [protocol.jobs.OUTPUT_LOCK], "nothing written"


# ---------------------------------------------------------------------------------------------
# Video


def _write_video(path: Path, frames: int, codec: str = "mpeg4") -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (120, 400, 3), dtype=np.uint8)
        for i in range(frames):
            crop = np.ascontiguousarray(base[:, i * 4:i * 4 + 160])
            for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_frames_every_nth(tmp_path):
    from bridge.sfm.video import extract_frames

    video = tmp_path / "walk.mp4"
    _write_video(video, frames=25)
    seen = []
    frames = extract_frames(video, tmp_path / "frames", every=4, max_size=100,
                            on_progress=lambda read, total: seen.append(read), should_stop=lambda: False)
    assert [f.name for f in frames] == [f"frame_{i:06d}.jpg" for i in range(0, 25, 4)]
    assert seen[-1] == 25
    with Image.open(tmp_path / "frames" / frames[0].name) as img:
        assert img.size == (100, 75) == (frames[0].width, frames[0].height)


def test_unreadable_video_is_a_clear_error(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    run = run_sfm(tmp_path, "--video", video, "--out", tmp_path / "out")
    assert_failed_cleanly(run, tmp_path / "out", {"bad_input"})
    assert run.code == protocol.EXIT_BAD_INPUT
    assert "clip.mp4" in run.error.message and "cannot read this video" in run.error.message
    assert "H.264" in run.error.hint


def test_sequential_pairs_are_neighbours_and_powers_of_two_ahead():
    from bridge.sfm.features import SEQUENTIAL_OVERLAP, pairs_for

    names = [f"frame_{i:03d}.jpg" for i in range(40)]
    pairs = pairs_for(names, "sequential")
    assert len(pairs) == len(set(pairs))
    ahead = {names.index(b) - names.index(a) for a, b in pairs}
    assert ahead == set(range(1, SEQUENTIAL_OVERLAP + 1)) | {16, 32}
    assert ("frame_000.jpg", "frame_032.jpg") in pairs and ("frame_000.jpg", "frame_011.jpg") not in pairs
    assert len(pairs_for(names, "exhaustive")) == 40 * 39 // 2


def test_working_copies_are_upright_scaled_and_safely_named(tmp_path):
    from bridge.sfm.inputs import list_photos, prepare_photos

    photos = tmp_path / "photos"
    photos.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotate 90 degrees clockwise)
    Image.new("RGB", (400, 200), (200, 30, 30)).save(photos / "phone.jpg", exif=exif.tobytes())
    Image.new("RGBA", (300, 300), (0, 90, 200, 128)).save(photos / "my photo.png")
    Image.new("RGB", (120, 80)).save(photos / "scan.tif")
    exact = photos / "small.jpg"
    Image.new("RGB", (64, 48), (10, 200, 10)).save(exact, quality=90)
    images = prepare_photos(list_photos(photos), tmp_path / "input", 200, lambda n: None, lambda: False)
    sizes = {im.name: (im.width, im.height) for im in images}
    assert sizes == {"my_photo.png": (200, 200), "phone.jpg": (100, 200), "scan.png": (120, 80),
                     "small.jpg": (64, 48)}
    for name, size in sizes.items():
        with Image.open(tmp_path / "input" / name) as img:
            assert img.size == size and img.mode in ("RGB", "L")
    assert (tmp_path / "input" / "small.jpg").read_bytes() == exact.read_bytes(), "copied, not re-encoded"
