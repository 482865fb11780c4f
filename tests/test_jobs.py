"""Bridge jobs driven from Blender: real `python -m bridge` subprocesses, events applied by the timer pump."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bpy
import pytest
from conftest import BRIDGE_PYTHON, EXTENSION_MODULE, ROOT


def _pump_until(jobs, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {timeout} s"
        jobs.pump()
        time.sleep(0.05)


def test_bridge_root_and_python(blender_with_splatwork, splatwork):
    root = Path(splatwork.bridge.client.CODE_ROOT)
    assert (root / "bridge" / "__main__.py").is_file()
    assert (root / "blender_manifest.toml").is_file(), "bridge_root is the installed extension's root"
    # The bpy module runs inside a venv that has torch, so that interpreter is the one detected.
    assert splatwork.addon.setup.runtime.bridge_python() == BRIDGE_PYTHON


def _missing(splatwork, tmp_path):
    """A training job whose model is not there: the bridge refuses it with an Error event, exit code 2."""
    return splatwork.bridge.protocol.TrainJob(model=str(tmp_path / "no-model"), images=str(tmp_path),
                                              out=str(tmp_path / "out"))


def test_a_failing_bridge_gives_one_clean_report_in_the_ui_path(blender_with_splatwork, splatwork, tmp_path):
    jobs = splatwork.addon.common.jobs
    seen, finished = [], []
    job = jobs.start_job("probe", _missing(splatwork, tmp_path), lambda j, e: seen.append(e), finished.append,
                         block=False, log_path=str(tmp_path / "probe.log"))
    assert job.running and jobs.get_job("probe") is job and job in jobs.running_jobs()
    assert job.argv[-4:] == ["train", "--job", "-", "--ipc"], "the job goes on stdin, never as arguments"
    assert bpy.app.timers.is_registered(jobs.pump)
    _pump_until(jobs, lambda: not job.running)
    assert finished == [job] and job.state == "failed" and job.exit_code == 2
    # The bridge's own words (an Error event, not a scraped log) reach the report, and the log path is named.
    assert job.error.kind == "missing_input" and "no-model" in job.error.message and seen[-1] == job.error
    assert str(tmp_path / "probe.log") in job.message()
    assert jobs.pump() is None, "the timer stops once nothing runs"
    assert bpy.ops.splatwork.open_job_log(name="probe") == {"FINISHED"}


def test_blocking_start_runs_to_the_end_and_calls_back_once(blender_with_splatwork, splatwork, tmp_path):
    jobs = splatwork.addon.common.jobs
    finished = []
    job = jobs.start_job("probe", _missing(splatwork, tmp_path), on_finish=finished.append,
                         log_path=str(tmp_path / "l.log"))
    assert bpy.app.background and not job.running and finished == [job]
    assert job.state == "failed"
    with pytest.raises(OSError):
        os.kill(job.pid, 0)


def test_start_errors_are_job_errors_with_hints(blender_with_splatwork, splatwork, tmp_path):
    jobs = splatwork.addon.common.jobs
    with pytest.raises(jobs.StartError, match="does not exist") as info:
        jobs.start_job("probe", _missing(splatwork, tmp_path), python=str(tmp_path / "missing-python"))
    assert "preferences" in info.value.hint
    prefs = bpy.context.preferences.addons[EXTENSION_MODULE].preferences
    prefs.python_path = str(tmp_path / "nothing-here")
    try:
        with pytest.raises(jobs.StartError, match="nothing-here"):
            jobs.start_job("probe", _missing(splatwork, tmp_path))
    finally:
        prefs.python_path = ""


def test_loading_another_file_ends_every_job_without_calling_back(blender_with_splatwork, splatwork,
                                                                  synthetic_scene, tmp_path):
    """The documented choice for load_pre: stop (the bridge saves), kill after the grace period, no callbacks."""
    jobs = splatwork.addon.common.jobs
    events, finished = [], []
    request = splatwork.bridge.protocol.TrainJob(
        model=str(synthetic_scene / "sparse" / "0"), images=str(synthetic_scene / "images"),
        out=str(tmp_path / "out"), steps=1000000, device="cpu")
    job = jobs.start_job("probe", request,
                         lambda j, e: events.append(e), finished.append, block=False, log_path=str(tmp_path / "l.log"))
    _pump_until(jobs, lambda: job.hello is not None or not job.running)
    assert job.running and job.process.poll() is None, "the bridge is mid-run"
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert not job.running and job.state in ("stopped", "killed", "failed")
    assert finished == [] and not jobs.running_jobs()
    with pytest.raises(OSError):
        os.kill(job.pid, 0)


def test_quitting_blender_ends_the_bridge(splatwork, synthetic_scene, tmp_path):
    """A real Blender process (the bpy module) starts training, then quits: no bridge survives it."""
    script = textwrap.dedent(f"""
        import importlib, sys, time
        import bpy
        bpy.ops.preferences.addon_enable(module={EXTENSION_MODULE!r})
        splatwork = importlib.import_module({EXTENSION_MODULE!r})
        jobs = splatwork.addon.common.jobs
        request = splatwork.bridge.protocol.TrainJob(
            model={str(synthetic_scene / "sparse" / "0")!r}, images={str(synthetic_scene / "images")!r},
            out={str(tmp_path)!r}, steps=1000000, device="cpu")
        job = jobs.start_job("train", request, block=False)
        print("BRIDGE", job.pid, flush=True)
        while job.hello is None and job.running:
            jobs.pump()
            time.sleep(0.05)
        sys.exit(0 if job.running else 3)  # quit while the bridge is mid-run
    """)
    # Same Blender user folders as this session, where the extension is already installed.
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    pid = int(result.stdout.split("BRIDGE ", 1)[1].split()[0])
    with pytest.raises(OSError):
        os.kill(pid, 0)


def test_a_bridge_terminated_or_killed_mid_job_ends_the_job_and_blender_carries_on(blender_with_splatwork,
                                                                                   splatwork, tmp_path):
    """SIGTERM from outside (logout, a scheduler) stops the bridge as Cancel does: it saves and the job
    ends "stopped". SIGKILL (the OOM killer) fails the job with a clear error; the checkpoint survives."""
    import signal

    from test_train import make_scene


    jobs = splatwork.addon.common.jobs
    scene = make_scene(tmp_path / "scene")
    out = tmp_path / "out"
    TrainJob = splatwork.bridge.protocol.TrainJob
    finished = []
    for sig, resume in ((signal.SIGTERM, False), (signal.SIGKILL, True)):
        request = TrainJob(model=str(scene.model), images=str(scene.images), out=str(out), steps=100000,
                           device="cpu", checkpoint_every=2, progress_every=1, snapshot_every=0, test_every=0,
                           resume=resume)
        job = jobs.start_job("train", request, on_finish=finished.append, block=False,
                             log_path=str(tmp_path / f"{sig.name}.log"))
        first = 3 if sig == signal.SIGTERM else finished[-1].done.metrics["step"] + 3  # a checkpoint since
        _pump_until(jobs, lambda j=job, n=first: not j.running or (j.progress is not None and j.progress.step >= n),
                    timeout=180)
        assert job.running, job.message()
        os.kill(job.pid, sig)
        _pump_until(jobs, lambda j=job: not j.running)
        assert finished[-1] is job and not jobs.running_jobs() and jobs.pump() is None
    stopped, killed = finished
    assert stopped.state == "stopped" and stopped.exit_code == 0 and (out / "splats.ply").is_file()
    assert killed.state == "failed" and killed.error.kind == "crashed", killed.error
    assert "signal 9" in killed.error.message and killed.error.hint and killed.log_path in killed.message()
    # The killed run's last checkpoint is whole (read in the bridge's interpreter, which has torch).
    code = ("import sys; from bridge.train import checkpoint; "
            "print(checkpoint.load(checkpoint.checkpoint_path(sys.argv[1]), 'cpu')['step'])")
    step = subprocess.run([BRIDGE_PYTHON, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert int(step) > stopped.done.metrics["step"]
    # Blender carries on: operators run, and a new job of the same name starts.
    assert bpy.ops.mesh.primitive_cube_add() == {"FINISHED"}
    job = jobs.start_job("train", _missing(splatwork, tmp_path), block=False, log_path=str(tmp_path / "again.log"))
    _pump_until(jobs, lambda: not job.running)
    assert job.state == "failed" and job.exit_code == 2
