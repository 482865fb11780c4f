"""Fault drills for ``python -m bridge train``: signals, a full disk, damaged or planted checkpoints and
a diverging run, each a real subprocess on the tiny scene of ``test_train.py``. Whatever happens, the
last good checkpoint survives and the error names the file and what to do."""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import finish, make_scene, of_type, scene_args, start, wait_for

from bridge import client, protocol
from bridge.formats.atomic import ordinary_mode

QUICK = ("--snapshot-every", 0, "--test-every", 0, "--progress-every", 1)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("fault_scene"))


@pytest.fixture(scope="module")
def good_checkpoint(scene, tmp_path_factory) -> Path:
    """A real checkpoint at step 2 (read-only for the tests: copy it)."""
    out = tmp_path_factory.mktemp("good") / "out"
    seen: list = []
    proc = start(scene_args(scene, out, "--steps", 2, *QUICK), out.parent / "log.txt")
    assert finish(proc, seen) == protocol.EXIT_OK, proc.log_tail()
    return out / "checkpoints" / "last.pt"


def _out_with(tmp_path: Path, name: str, content: bytes) -> Path:
    out = tmp_path / name
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(content)
    return out


def _edited(checkpoint: Path, edit) -> bytes:
    payload = torch.load(checkpoint, weights_only=True)
    edit(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


class _Planted:
    """What an attacker would put at OUT/checkpoints/last.pt: unpickling it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_signals_stop_like_the_stop_command_and_sigkill_loses_no_checkpoint(scene, tmp_path):
    """SIGTERM and SIGINT save and end with Done(stopped), exit 0; after SIGKILL the checkpoint is
    intact and the killed write's temporary file is cleaned up; every run then resumes."""
    runs = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        out = tmp_path / sig.name
        args = scene_args(scene, out, "--steps", 1000, "--checkpoint-every", 2, *QUICK)
        runs[sig] = (out, args, start(args, tmp_path / f"{sig.name}.log"), [])
    for sig, (_, _, proc, seen) in runs.items():
        assert wait_for(proc, seen, lambda e: isinstance(e, protocol.Log) and "checkpoint at step 4" in e.message)
        os.kill(proc.proc.pid, sig)  # mid-run: steps take milliseconds here, so this lands mid-step or between
    for sig, (out, _, proc, seen) in runs.items():
        code = finish(proc, seen)
        if sig == signal.SIGKILL:
            assert code == -signal.SIGKILL
            # What a write killed halfway leaves behind.
            (out / "checkpoints" / ".tmp-abc123-last.pt").write_bytes(b"half a checkpoint")
            continue
        assert code == protocol.EXIT_OK, (sig, proc.log_tail())
        done = seen[-1]
        assert isinstance(done, protocol.Done) and done.status == "stopped", (sig, seen[-3:])
        assert (out / "splats.ply").is_file() and f"{sig.name} received" in proc.log_tail()
        # Outputs are ordinary files (0o666 less the umask), not mkstemp's private 0o600.
        for path in (out / "splats.ply", out / "metrics.json", out / "checkpoints" / "last.pt"):
            assert path.stat().st_mode & 0o777 == ordinary_mode(), path

    resumed = {}
    for sig, (_, args, _, _) in runs.items():
        proc = start([*args, "--resume"], tmp_path / f"{sig.name}-2.log")
        resumed[sig] = (proc, [])
    for sig, (proc, seen) in resumed.items():
        event = wait_for(proc, seen, lambda e: isinstance(e, protocol.Log) and "resumed from" in e.message)
        assert event, (sig, proc.log_tail())
        assert int(event.message.rsplit(" ", 1)[1]) >= 4
        assert wait_for(proc, seen, lambda e: isinstance(e, protocol.Progress))
        proc.send("stop")
        assert finish(proc, seen) == protocol.EXIT_OK and seen[-1].status == "stopped", proc.log_tail()
    kill_out = runs[signal.SIGKILL][0]
    assert not list((kill_out / "checkpoints").glob(".tmp-*"))
    assert any("left by an interrupted write" in e.message for e in of_type(resumed[signal.SIGKILL][1], protocol.Log))


def test_one_run_at_a_time_in_an_output_folder(scene, tmp_path):
    """A second run on a folder in use waits, then fails with "busy" naming the folder and the holder;
    one that waits long enough goes on from the first run's final checkpoint; a SIGKILLed holder leaves
    no lock behind."""
    out = tmp_path / "out"
    args = scene_args(scene, out, "--steps", 100_000, "--checkpoint-every", 2, *QUICK)
    first, first_seen = start(args, tmp_path / "first.log"), []
    assert wait_for(first, first_seen, lambda e: isinstance(e, protocol.Progress)), first.log_tail()
    pid = first.proc.pid

    seen: list = []
    second = start([*args, "--resume", "--lock-wait", 1.5], tmp_path / "second.log")
    assert finish(second, seen) == protocol.EXIT_BAD_INPUT, second.log_tail()
    waiting = [e for e in of_type(seen, protocol.Stage) if e.stage == "waiting"]
    assert len(waiting) == 1 and str(out) in waiting[0].message and f"pid {pid} on " in waiting[0].message
    error = seen[-1]
    assert isinstance(error, protocol.Error) and error.kind == "busy", seen[-3:]
    assert str(out) in error.message and f"pid {pid}" in error.message and "another output folder" in error.hint
    assert not of_type(seen, protocol.Progress) and first.poll() is None, "the first run went on untouched"

    # Resume while the first run is still going: it waits, and goes on from where the first one saved.
    seen = []
    third = start([*args, "--resume"], tmp_path / "third.log")
    assert wait_for(third, seen, lambda e: isinstance(e, protocol.Stage) and e.stage == "waiting"), third.log_tail()
    first.send("stop")
    assert finish(first, first_seen) == protocol.EXIT_OK and first_seen[-1].status == "stopped"
    resumed = wait_for(third, seen, lambda e: isinstance(e, protocol.Log) and "resumed from" in e.message)
    assert resumed and int(resumed.message.rsplit(" ", 1)[1]) == first_seen[-1].metrics["step"], third.log_tail()
    assert wait_for(third, seen, lambda e: isinstance(e, protocol.Progress))

    os.kill(third.proc.pid, signal.SIGKILL)  # the kernel drops its lock with it
    assert finish(third, seen) == -signal.SIGKILL
    seen = []
    fourth = start([*args, "--resume", "--lock-wait", 0], tmp_path / "fourth.log")
    assert wait_for(fourth, seen, lambda e: isinstance(e, protocol.Progress)), fourth.log_tail()
    assert not [e for e in of_type(seen, protocol.Stage) if e.stage == "waiting"]
    fourth.send("stop")
    assert finish(fourth, seen) == protocol.EXIT_OK and seen[-1].status == "stopped"


def test_snapshots_rotate_across_resumes_and_stale_temporaries_go(scene, tmp_path):
    out = tmp_path / "out"
    snapshots = out / "snapshots"
    for steps in (3, 6, 9):
        seen: list = []
        extra = ["--resume"] if steps > 3 else []
        if steps == 9:
            (snapshots / ".tmp-xyz-splats_000009.ply").write_bytes(b"left by a killed run")
        proc = start(scene_args(scene, out, "--steps", steps, "--snapshot-every", 1, "--test-every", 0, *extra),
                     tmp_path / f"log{steps}.txt")
        assert finish(proc, seen) == protocol.EXIT_OK, proc.log_tail()
        assert [s.step for s in of_type(seen, protocol.Snapshot)] == list(range(steps - 2, steps))
    # The README promises the last two: here from the last run (steps 7 and 8; 9 is the final export).
    assert sorted(p.name for p in snapshots.iterdir()) == [
        "preview_000007.png", "preview_000008.png", "splats_000007.ply", "splats_000008.ply"]


def test_damaged_foreign_and_planted_checkpoints_are_refused_without_running_them(scene, good_checkpoint,
                                                                                 tmp_path):
    marker = tmp_path / "marker"
    good = good_checkpoint.read_bytes()
    buffer = io.BytesIO()
    torch.save({"format": 1, "step": 2, "rng": {"numpy": np.random.get_state()}}, buffer)

    def with_nan(payload):
        payload["params"]["means"][0, 0] = float("nan")

    cases = {
        "pickle": (pickle.dumps(_Planted(marker)), "would run code"),
        "torch_pickle": (_torch_bytes(_Planted(marker)), "would run code"),
        "old_format": (buffer.getvalue(), "older Splatwork (format 1)"),
        "truncated": (good[: len(good) // 2], "unreadable checkpoint"),
        "no_params": (_edited(good_checkpoint, lambda p: p.pop("params")), "no 'params'"),
        "nan": (_edited(good_checkpoint, with_nan), "'means' holds NaN"),
        "short_state": (_edited(good_checkpoint, lambda p: p["optimizers"]["means"]["state"][0].update(
            exp_avg=torch.zeros(3, 3))), "'exp_avg' of 'means' does not match"),
    }
    assert not marker.exists()
    procs = {}
    for name, (content, _) in cases.items():
        out = _out_with(tmp_path, name, content)
        procs[name] = (out, start(scene_args(scene, out, "--steps", 5, "--resume", *QUICK), tmp_path / f"{name}.log"))
    for name, (content, needle) in cases.items():
        out, proc = procs[name]
        seen: list = []
        assert finish(proc, seen) == protocol.EXIT_BAD_INPUT, (name, proc.log_tail())
        error = seen[-1]
        assert isinstance(error, protocol.Error) and error.kind == "bad_input", (name, seen)
        path = str(out / "checkpoints" / "last.pt")
        assert error.message.startswith(path) and needle in error.message and error.hint, (name, error)
        assert "weights_only=False" not in error.message + error.hint  # torch's advice is not passed on
        assert (out / "checkpoints" / "last.pt").read_bytes() == content, name
        assert not (out / "splats.ply").exists()
    assert not marker.exists(), "a checkpoint ran code"


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": 2, "job": obj}, buffer)
    return buffer.getvalue()


def test_a_diverging_run_stops_with_the_last_good_checkpoint_intact(scene, good_checkpoint, tmp_path):
    """Finite but absurd colours (1e30) turn the loss and then every gradient into NaN on the first
    step. Caught at the progress report (loss) or, without one, before the checkpoint (parameters)."""
    def absurd(payload):
        payload["params"]["sh0"].fill_(1e30)

    content = _edited(good_checkpoint, absurd)
    cases = {"progress": ("--progress-every", 1, "--checkpoint-every", 1000),
             "checkpoint": ("--progress-every", 1000, "--checkpoint-every", 2)}
    procs = {}
    for name, flags in cases.items():
        out = _out_with(tmp_path, name, content)
        args = scene_args(scene, out, "--steps", 100, "--resume", "--snapshot-every", 0, "--test-every", 0, *flags)
        procs[name] = (out, start(args, tmp_path / f"{name}.log"))
    for name, (out, proc) in procs.items():
        seen: list = []
        assert finish(proc, seen) == protocol.EXIT_FAILED, (name, proc.log_tail())
        error = seen[-1]
        assert isinstance(error, protocol.Error) and error.kind == "diverged", (name, seen[-3:])
        assert "step 3" in error.message if name == "progress" else "step 4" in error.message, error
        assert "NaN" in error.message and "(step 2) is intact" in error.hint, error
        assert (out / "checkpoints" / "last.pt").read_bytes() == content, name
        assert not (out / "splats.ply").exists()


def _assert_disk_full(proc, out: Path, before: bytes) -> None:
    seen: list = []
    assert finish(proc, seen) == protocol.EXIT_FAILED, proc.log_tail()
    error = seen[-1]
    assert isinstance(error, protocol.Error) and error.kind == "disk_full", seen[-3:]
    assert str(out / "checkpoints" / "last.pt") in error.message and "(step 2) is intact" in error.hint, error
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    assert not [p for p in out.rglob(".tmp-*")], "a temporary file outlived its failed write"


def test_a_file_size_limit_fails_the_write_cleanly(scene, good_checkpoint, tmp_path):
    """RLIMIT_FSIZE makes writes past 16 kB fail (EFBIG), as a full disk fails them (ENOSPC)."""
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(good_checkpoint, out / "checkpoints" / "last.pt")
    before = (out / "checkpoints" / "last.pt").read_bytes()
    limit = 16 * 1024
    assert len(before) > limit
    wrapper = (f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
               "os.execv(sys.executable, [sys.executable, '-m', 'bridge', *sys.argv[1:]])")
    argv = [sys.executable, "-c", wrapper, "train",
            *map(str, scene_args(scene, out, "--steps", 50, "--resume", "--checkpoint-every", 2, *QUICK)), "--ipc"]
    from conftest import ROOT

    _assert_disk_full(client.BridgeProcess(argv, log_path=str(tmp_path / "log.txt"), cwd=str(ROOT)), out, before)


@contextlib.contextmanager
def _small_tmpfs(folder: Path, size: str):
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs: mounting one needs root and mount(8)")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_keeps_the_last_checkpoint_and_names_the_file(scene, good_checkpoint, tmp_path):
    with _small_tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        (out / "checkpoints").mkdir(parents=True)
        shutil.copy(good_checkpoint, out / "checkpoints" / "last.pt")
        before = (out / "checkpoints" / "last.pt").read_bytes()
        # Fill the disk up to 8 kB: the next checkpoint cannot fit.
        free = shutil.disk_usage(disk).free
        with open(disk / "filler", "wb") as fh:
            fh.write(b"\0" * max(0, free - 8192))
        proc = start(scene_args(scene, out, "--steps", 50, "--resume", "--checkpoint-every", 2, *QUICK),
                     tmp_path / "log.txt")
        _assert_disk_full(proc, out, before)


def _dataset_job(scene, model: Path, images: Path | None = None):
    from types import SimpleNamespace

    return SimpleNamespace(model=str(model), images=str(images or scene.images), init="sfm", test_every=8,
                           downscale=1.0, background=[0.0, 0.0, 0.0])


def _write_model(folder: Path, camera, views) -> None:
    from bridge.formats.cameras import Reconstruction
    from bridge.formats.colmap import write_model

    n = 4
    write_model(Reconstruction({1: camera}, views, np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.zeros(n),
                               np.full(n, 2)), folder)


@pytest.mark.parametrize("name, problem", [
    ("../view_001.png", "climbs out of the images folder"), ("sub/../../view_001.png", "climbs out"),
    ("/etc/hostname", "absolute path"),
])
def test_image_names_outside_the_images_folder_are_refused_naming_image_and_model(scene, tmp_path, name,
                                                                                   problem):
    from bridge.formats.cameras import View
    from bridge.train.data import load_dataset

    views = [View(v.id, name if i == 1 else v.name, v.camera_id, v.R, v.t) for i, v in enumerate(scene.views)]
    images = tmp_path / "nested" / "images"
    images.mkdir(parents=True)
    for view in scene.views:  # the file a '..' name reaches exists, so only the name check can refuse it
        shutil.copy(scene.images / view.name, images / view.name)
        shutil.copy(scene.images / view.name, images.parent / view.name)
    model = tmp_path / "model"
    _write_model(model, scene.camera, views)
    with pytest.raises(protocol.BridgeError, match=problem) as info:
        load_dataset(_dataset_job(scene, model, images))
    assert info.value.kind == "bad_input" and info.value.exit_code == protocol.EXIT_BAD_INPUT
    assert str(model) in info.value.message and repr(name) in info.value.message


@pytest.mark.parametrize("fx, cx, problem", [
    # The model reader refuses what no camera has (its words), the trainer the ranges it trains on.
    (-45.0, 24.0, "focal length fx ?= ?-45"), (float("nan"), 24.0, "fx ?= ?nan|camera 1 is invalid"),
    (0.0, 24.0, "focal length fx ?= ?0"), (1e9, 24.0, "not between 0 and 100 image sizes|needs one in"),
    (45.0, float("inf"), "cx ?= ?inf|camera 1 is invalid"), (45.0, 1e6, "within one image size|principal point"),
])
def test_impossible_intrinsics_are_refused_before_any_image_is_read(scene, tmp_path, fx, cx, problem):
    """(The model reader already refuses non-finite values; the trainer adds the ranges.)"""
    from bridge.formats.cameras import Camera
    from bridge.train.data import load_dataset

    camera = Camera(1, "PINHOLE", scene.camera.width, scene.camera.height, np.array([fx, 45.0, cx, 18.0]))
    model = tmp_path / "model"
    _write_model(model, camera, scene.views)
    with pytest.raises(protocol.BridgeError, match=problem) as info:
        load_dataset(_dataset_job(scene, model))
    assert info.value.kind == "bad_input" and str(model) in info.value.message and "camera 1" in info.value.message
