"""Remote machines for real: OpenSSH's sshd on 127.0.0.1 (a throwaway host key and user key, a free
port), the system ssh client with a generated config and known_hosts, and a real bridge on the far
side (this machine, another work folder). Training there looks like a local run in Blender; a drop
of the connection stops the run there with a checkpoint, and Resume continues it; a machine without
the environment gives a clear error with a hint."""
from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import bpy
import pytest
from conftest import BRIDGE_PYTHON

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.isfile(SSHD) or shutil.which("ssh") is None:
        pytest.skip("needs OpenSSH's sshd and ssh (apt-get install openssh-server; dev.py test installs it as root)")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege separation folder sshd wants as root
    # Options for a config nobody installed: no system config (-f /dev/null), keys from the temp
    # folder (StrictModes off: it sits under /tmp), no PAM, no passwords, loopback only.
    argv = [SSHD, "-D", "-e", "-f", "/dev/null", "-p", str(port), "-o", "ListenAddress=127.0.0.1",
            "-o", f"HostKey={d / 'host_key'}", "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}",
            "-o", "StrictModes=no", "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
            "-o", "UsePAM=no", "-o", "PidFile=none", "-o", "PermitRootLogin=prohibit-password"]
    log = open(d / "sshd.log", "wb")
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while b"Server listening" not in (d / "sshd.log").read_bytes():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
        time.sleep(0.05)
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    (d / "ssh_config").write_text(
        f"Host farbox\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {d / 'user_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {d / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n")
    yield d
    server.terminate()
    server.wait(10)
    log.close()


def _machine(splatwork, sshd, tmp_path, python=BRIDGE_PYTHON, name="far"):
    return splatwork.addon.training.remote.machine(name, "farbox", python, str(tmp_path / "far"),
                                                   str(sshd / "ssh_config"))


def _pump_until(jobs, condition, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        jobs.pump()
        time.sleep(0.05)


def test_check_runs_the_environment_check_there(blender_with_splatwork, splatwork, sshd, tmp_path):
    remote = splatwork.addon.training.remote
    job = remote.check(_machine(splatwork, sshd, tmp_path), block=True)
    result = remote.check_result(job)
    assert job.state == "completed" and not result.get("error"), (result, Path(job.log_path).read_text()[-2000:])
    assert result["packages"]["torch"].startswith("2.13.0") and result["executable"] == BRIDGE_PYTHON
    assert (tmp_path / "far" / "code" / "bridge" / "__main__.py").is_file(), "the code went over"


def test_a_remote_without_the_environment_is_a_clear_error_with_a_hint(blender_with_splatwork, splatwork, sshd,
                                                                       tmp_path):
    remote = splatwork.addon.training.remote
    job = remote.check(_machine(splatwork, sshd, tmp_path, python=str(tmp_path / "no-python")), block=True)
    result = remote.check_result(job)
    assert job.state == "failed" and job.error.kind == "no_environment", job.error
    assert "no-python" in result["error"] and "not found" in result["error"] and "Remote Python" in result["hint"]
    # A Python that runs but has no torch: the check answers, and says what is missing.
    bare = shutil.which("python3.11") or shutil.which("python3")
    job = remote.check(_machine(splatwork, sshd, tmp_path, python=bare), block=True)
    result = remote.check_result(job)
    if job.done is not None and "torch" not in (job.done.metrics.get("missing") or []):
        pytest.skip(f"{bare} has torch: no bare Python to test with")
    assert "lacks" in result["error"] and "torch" in result["error"] and "Remote Python" in result["hint"]
    # No such host: ssh's own words and what to do.
    with pytest.raises(remote.RemoteError, match="cannot reach") as info:
        splatwork.bridge.client.Machine("x", "nohost.invalid", BRIDGE_PYTHON, "~/x", str(sshd / "ssh_config")).root()
    assert "without a password" in info.value.hint


def _train_there(splatwork, sshd, tmp_path, synthetic_scene, steps, snapshot_every=0):
    prefs = bpy.context.preferences.addons[splatwork.__name__].preferences
    prefs.machines.clear()
    m = prefs.machines.add()
    m.name, m.host, m.python = "far", "farbox", BRIDGE_PYTHON
    m.workdir, m.ssh_config = str(tmp_path / "far"), str(sshd / "ssh_config")
    assert bpy.ops.splatwork.import_colmap(model_dir=str(synthetic_scene / "sparse" / "0"),
                                           images_dir=str(synthetic_scene / "images")) == {"FINISHED"}
    scene = bpy.context.scene
    settings = scene.splatwork_training
    settings.source, settings.collection = "COLLECTION", scene.splatwork_colmap.collection
    settings.preset = "FAST"
    settings.steps, settings.downscale, settings.sh_degree = steps, 2.0, 0
    settings.snapshot_every, settings.device = snapshot_every, "cpu"
    settings.output_dir, settings.machine = str(tmp_path / "run"), "far"
    return scene, settings


@pytest.mark.ends_only
def test_training_there_looks_like_a_local_run(blender_with_splatwork, splatwork, sshd, synthetic_scene, tmp_path):
    jobs, training = splatwork.addon.common.jobs, splatwork.addon.training
    scene, settings = _train_there(splatwork, sshd, tmp_path, synthetic_scene, steps=6, snapshot_every=3)
    job = training.start_training(scene, block=False)
    assert job.argv[0] == "ssh" and "farbox" in job.argv
    _pump_until(jobs, lambda: not job.running)
    assert job.state == "completed" and settings.state == "completed", (job.message(), settings.message)
    assert settings.step == 6 and settings.num_splats > 0 and settings.eval_psnr > 0
    # Outputs came back to the local output folder; the events named local files.
    run = tmp_path / "run"
    assert Path(settings.splats_path).is_file() and Path(settings.splats_path).parent == run
    assert (run / "metrics.json").is_file() and (run / "train.log").is_file()
    assert not (run / "checkpoints").exists(), "checkpoints stay there, where Resume runs"
    assert not (run / ".splatwork.lock").exists(), "the lock there is not fetched"
    assert job.snapshot is not None and Path(job.snapshot.ply).is_file() and str(run) in job.snapshot.ply
    obj = settings.result_object
    assert obj is not None and len(obj.data.points) == settings.num_splats and obj.name in settings.collection.objects
    # Only the images the model uses went over, once, at the size the run trains at (downscale 2 of
    # 96x72), under the model's names: a second run sends nothing new.
    from PIL import Image

    data = next((tmp_path / "far" / "data").glob("*-images-downscale2"))
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in (synthetic_scene / "images").iterdir())
    for path in data.glob("*.png"):
        with Image.open(path) as image:
            assert image.size == (48, 36), path
    machine = splatwork.addon.training.remote.machine_named("far")
    images = splatwork.addon.training.remote_images.training_images(job.request, str(synthetic_scene / "images"))
    assert all(Path(p).parent != synthetic_scene / "images" for p in images.values()), "the reduced copies"
    assert machine.sync(images, str(data)) == 0


@pytest.mark.ends_only
def test_photos_go_over_at_the_training_size_once_and_again_only_when_changed(blender_with_splatwork, splatwork,
                                                                                sshd, tmp_path):
    from PIL import Image
    from test_remote_images import statue_subset

    model, images = statue_subset(tmp_path / "statue", 12)  # copies: one photo is touched below
    jobs, protocol = splatwork.addon.common.jobs, splatwork.bridge.protocol
    machine = _machine(splatwork, sshd, tmp_path)
    request = protocol.job_from_dict(protocol.TrainJob, {
        "model": str(model), "images": str(images), "out": str(tmp_path / "run"),
        "steps": 2, "downscale": 8.0, "sh_degree": 0, "device": "cpu", "test_every": 0, "snapshot_every": 0})
    names = sorted(p.name for p in images.iterdir())

    def train():
        reduced = []

        def on_event(job, event):
            if isinstance(event, protocol.Stage) and event.stage == "reducing_images":
                reduced.append(event.message.split(" ", 1)[1])

        job = jobs.start_job("train", request, on_event=on_event, machine=machine, block=True)
        assert job.state == "completed", job.message()
        far = next((tmp_path / "far" / "data").glob("*-images-downscale8"))
        # ctime: any write there (tar sets the modification time from the archive) changes it
        return reduced, far, {p.name: (p.stat().st_ino, p.stat().st_ctime_ns) for p in far.iterdir()
                              if not p.name.startswith(".")}

    reduced, far, sent = train()
    assert sorted(reduced) == names and sorted(sent) == names
    for name in names:  # the model's names; the photos 800x1200 there as 100x150 lossless PNG
        with Image.open(far / name) as image:
            assert image.size == (100, 150) and image.format == "PNG", name
    assert sum(p.stat().st_size for p in far.iterdir()) < 0.3 * sum(p.stat().st_size for p in images.iterdir())

    reduced, _, again = train()  # nothing changed: nothing reduced, nothing sent
    assert reduced == [] and again == sent

    touched = images / names[5]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reduced, _, third = train()
    assert reduced == [names[5]]
    assert [n for n in names if third[n] != sent[n]] == [names[5]], "only the touched photo went again"


def test_an_image_blender_cannot_read_fails_the_remote_job_naming_it(blender_with_splatwork, splatwork, sshd,
                                                                      synthetic_scene, tmp_path):
    jobs, protocol = splatwork.addon.common.jobs, splatwork.bridge.protocol
    images = tmp_path / "images"
    shutil.copytree(synthetic_scene / "images", images)
    (images / "view_003.png").write_bytes(b"this is not a PNG")
    request = protocol.job_from_dict(protocol.TrainJob, {
        "model": str(synthetic_scene / "sparse" / "0"), "images": str(images), "out": str(tmp_path / "run"),
        "steps": 2, "downscale": 2.0, "device": "cpu"})
    job = jobs.start_job("train", request, machine=_machine(splatwork, sshd, tmp_path), block=True)
    assert job.state == "failed" and job.error.kind == "remote_failed", job.error
    assert str(images / "view_003.png") in job.error.message and "cannot read" in job.error.message
    assert job.error.hint


def test_cancel_while_images_are_reduced_stops_the_job(blender_with_splatwork, splatwork, sshd, synthetic_scene,
                                                       tmp_path):
    # The upload waits for the main thread to decode each image; Cancel must not leave it waiting.
    jobs, protocol = splatwork.addon.common.jobs, splatwork.bridge.protocol
    images = tmp_path / "images"  # a copy: nothing of it is cached yet
    shutil.copytree(synthetic_scene / "images", images)
    request = protocol.job_from_dict(protocol.TrainJob, {
        "model": str(synthetic_scene / "sparse" / "0"), "images": str(images), "out": str(tmp_path / "run"),
        "steps": 2, "downscale": 2.0, "device": "cpu"})
    job = jobs.start_job("train", request, machine=_machine(splatwork, sshd, tmp_path), block=False)
    _pump_until(jobs, lambda: job.stage == "reducing_images", timeout=60)
    job.cancel()
    _pump_until(jobs, lambda: not job.running, timeout=30)
    assert job.state == "stopped", job.message()
    assert not (tmp_path / "far" / "out").exists(), "nothing started there"


@pytest.mark.ends_only
def test_a_dropped_connection_stops_the_run_there_with_a_checkpoint_and_resume_continues(
        blender_with_splatwork, splatwork, sshd, synthetic_scene, tmp_path):
    jobs, training = splatwork.addon.common.jobs, splatwork.addon.training
    scene, settings = _train_there(splatwork, sshd, tmp_path, synthetic_scene, steps=100_000)
    job = training.start_training(scene, block=False)
    _pump_until(jobs, lambda: not job.running or (job.progress is not None and job.progress.step >= 3))
    assert job.running, job.message()
    far_pid = job.hello.pid  # the bridge there (the same machine here, so its pid can be watched)
    os.kill(job.pid, signal.SIGKILL)  # the ssh client: the connection drops
    _pump_until(jobs, lambda: not job.running)
    assert job.state == "failed" and job.error.kind == "connection_lost", job.error
    assert "Resume" in job.error.hint and settings.state == "failed"

    # Resume at once: the bridge there may still be saving (it saw end of file on its stdin); the new
    # run waits for the output folder's lock, so it reads the checkpoint only once that is written.
    job = training.start_training(scene, resume=True, block=False)
    _pump_until(jobs, lambda: not job.running or job.progress is not None)
    assert job.running and job.progress.step > 3, ("resumed from the checkpoint, not from step 0", job.message())
    deadline = time.monotonic() + 10
    while _alive(far_pid):  # it let go of the lock as it exited: at most a moment ago
        assert time.monotonic() < deadline, "the new run trains while the old one still runs there"
        time.sleep(0.1)
    far_out = next((tmp_path / "far" / "out").glob("*-run"))
    assert (far_out / "checkpoints" / "last.pt").is_file() and (far_out / "splats.ply").is_file()
    job.cancel()
    _pump_until(jobs, lambda: not job.running)
    assert job.state == "stopped" and settings.state == "stopped", job.message()
    assert Path(settings.splats_path).is_file() and str(tmp_path / "run") in settings.splats_path
    assert settings.result_object is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (exited, not yet reaped by sshd) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.ends_only
def test_render_passes_there_come_back_as_if_rendered_here(blender_with_splatwork, splatwork, sshd, tmp_path):
    import numpy as np
    from test_render_passes import _plane_of_splats, read_exr, set_camera

    from bridge.formats import cameras

    scene = bpy.context.scene
    set_camera(scene, cameras.intrinsics_to_blender(20.0, 20.0, 8.0, 8.0, 16, 16), np.eye(4))
    splatwork.addon.splats.splats_to_object(_plane_of_splats(1.0, -3.0, 0.1), "S")
    prefs = bpy.context.preferences.addons[splatwork.__name__].preferences
    prefs.machines.clear()
    m = prefs.machines.add()
    m.name, m.host, m.python = "far", "farbox", BRIDGE_PYTHON
    m.workdir, m.ssh_config = str(tmp_path / "far"), str(sshd / "ssh_config")
    for where, machine in (("here", ""), ("there", "far")):
        scene.splatwork_render.machine = machine
        out = tmp_path / where
        assert bpy.ops.splatwork.render_passes(output_dir=str(out), use_frame_range=False) == {"FINISHED"}
    names = {where: sorted(p.name for p in (tmp_path / where).iterdir()) for where in ("here", "there")}
    assert names["here"] == names["there"] == ["splats_0001.exr", "splats_0001.png"]
    here, there = read_exr(tmp_path / "here" / "splats_0001.exr"), read_exr(tmp_path / "there" / "splats_0001.exr")
    assert here.keys() == there.keys() and all((here[k] == there[k]).all() for k in here)
    assert next((tmp_path / "far" / "out").glob("*-there")).is_dir(), "rendered there, fetched here"


# ---------------------------------------------------------------------------------------------
# Hostile machine fields and inputs (issue: hostile inputs, round 3)


@pytest.mark.parametrize("host", ["-V", "-oProxyCommand=touch {marker}", "-Q cipher", "farbox -oProxyCommand=x",
                                  "-l@farbox", "x@-oProxyCommand=touch {marker}", "ssh://farbox:0", "far box",
                                  "farbox\n-V"])
def test_a_host_ssh_would_read_as_an_option_is_refused_before_any_connection(sshd, tmp_path, host):
    """A host (or user) beginning with '-' was parsed by ssh as an option: -V printed ssh's version,
    which became the remote work folder; -oProxyCommand=... ran a command here. Every field is checked
    when a connection is made, and the destination goes after '--'."""
    from bridge.client import Machine, RemoteError

    marker = tmp_path / "ran"
    machine = Machine("evil", host.format(marker=marker), BRIDGE_PYTHON, str(tmp_path / "far"),
                      str(sshd / "ssh_config"))
    with pytest.raises(RemoteError) as info:
        machine.root()
    assert "machine 'evil': SSH Host" in info.value.message and "ssh://user@host:port" in info.value.hint
    assert not marker.exists() and not (tmp_path / "far").exists()


def test_the_destination_follows_double_dash_so_ssh_reads_it_as_a_destination(sshd, tmp_path):
    from bridge.client import Machine

    argv = Machine("far", "farbox", BRIDGE_PYTHON, str(tmp_path / "far"), str(sshd / "ssh_config")).ssh("pwd")
    assert argv[-3:] == ["--", "farbox", "pwd"] and argv.count("--") == 1
    # ssh itself agrees: -G prints what it would connect to (and connects nowhere).
    out = subprocess.run([*argv[:-1][:-2], "-G", "--", "farbox"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "hostname 127.0.0.1" in out.stdout, out.stderr


@pytest.mark.parametrize("field, value, label", [
    ("python", "-c", "Remote Python"), ("workdir", "-rf", "Remote Folder"), ("workdir", "a\nb", "Remote Folder"),
    ("ssh_config", "cfg\0x", "SSH Config"),
])
def test_other_fields_a_command_would_misread_are_refused(sshd, tmp_path, field, value, label):
    from bridge.client import Machine, RemoteError

    values = {"python": BRIDGE_PYTHON, "workdir": str(tmp_path / "far"), "ssh_config": str(sshd / "ssh_config")}
    values[field] = value
    with pytest.raises(RemoteError, match=f"machine 'm': {label}"):
        Machine("m", "farbox", values["python"], values["workdir"], values["ssh_config"]).root()


def test_machines_in_the_preferences_are_checked_before_a_job_starts(blender_with_splatwork, splatwork, tmp_path):
    prefs = bpy.context.preferences.addons[splatwork.__name__].preferences
    prefs.machines.clear()
    m = prefs.machines.add()
    m.name, m.host = "evil", "-oProxyCommand=touch " + str(tmp_path / "ran")
    remote = splatwork.addon.training.remote
    with pytest.raises(remote.RemoteError, match="SSH Host"):
        remote.machine_named("evil")
    with pytest.raises(RuntimeError, match="SSH Host is not usable: the host '-oProxyCommand"):  # its report
        bpy.ops.splatwork.check_machine(name="evil")
    assert "SSH Host" in remote.CHECKS["evil"]["error"] and not (tmp_path / "ran").exists()
    # The preferences draw the problem under the field as it is typed (no ssh needed to see it).
    from bridge.client.ssh import field_problem

    assert "not a host name" in field_problem("host", m.host) and field_problem("host", "user@far-box.lan") is None


def test_symlinked_inputs_arrive_as_their_content(sshd, tmp_path):
    """An image in images/ that is a symbolic link (fine for a local run) went over as a link to a path
    on this machine, so it never arrived. The content goes; a FIFO is refused naming it, not read."""
    from bridge.client import Machine, RemoteError

    machine = Machine("far", "farbox", BRIDGE_PYTHON, str(tmp_path / "far"), str(sshd / "ssh_config"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.png").write_bytes(b"\x89PNG pixels")
    (elsewhere / "photo.png").chmod(0o400)
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").symlink_to(elsewhere / "photo.png")
    (images / "b.png").write_bytes(b"plain")
    there = str(tmp_path / "far" / "images")
    assert machine.sync({"a.png": str(images / "a.png"), "b.png": str(images / "b.png")}, there) == 2
    sent = tmp_path / "far" / "images" / "a.png"
    assert not sent.is_symlink() and sent.read_bytes() == b"\x89PNG pixels"
    os.mkfifo(images / "c.png")
    with pytest.raises(RemoteError, match="c.png: cannot be sent, it is not a regular file"):
        machine.sync({"c.png": str(images / "c.png")}, there)
