"""Render jobs (``bridge/render.py``) are refused up front, naming the problem, before any frame."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bridge.protocol import EXIT_BAD_INPUT, BridgeError
from bridge.render import MAX_PIXELS, MAX_SIDE, load_job


def _job(tmp_path, name="splats", width=8, height=8):
    K = [[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]]  # a 53-degree lens
    frame = {"frame": 1, "width": width, "height": height, "K": K,
             "world_to_camera": np.eye(4).tolist(), "clip_start": 0.1, "clip_end": 10.0,
             "object_matrices": [np.eye(4).tolist()]}
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "name": name,
                                "objects": [{"name": "S", "splats": "s.ply"}], "frames": [frame]}))
    return path


@pytest.mark.parametrize("name, problem", [
    ("x" * 300, "longer than 200 bytes"), ("é" * 101, "longer than 200 bytes"), ("a\0b", "plain file name"),
    ("a\nb", "plain file name"), ("../up", "plain file name"), ("C:x", "plain file name"), ("", "empty"),
])
def test_output_names_that_cannot_make_file_names_are_refused(tmp_path, name, problem):
    with pytest.raises(BridgeError, match=problem) as info:
        load_job(_job(tmp_path, name=name))
    assert info.value.kind == "bad_job" and info.value.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("width, height", [(60000, 60000), (MAX_SIDE + 1, 8), (MAX_SIDE, MAX_SIDE)])
def test_resolutions_past_the_limit_are_refused_with_the_limit(tmp_path, width, height):
    with pytest.raises(BridgeError, match=f"{width}x{height} is over the limit") as info:
        load_job(_job(tmp_path, width=width, height=height))
    assert f"{MAX_SIDE} pixels a side" in info.value.message and f"{MAX_PIXELS:,}" in info.value.message
    assert info.value.hint and info.value.exit_code == EXIT_BAD_INPUT


def test_the_largest_allowed_frames_and_ordinary_names_pass(tmp_path):
    assert load_job(_job(tmp_path, name="shot 010 é" + "x" * 180, width=MAX_SIDE, height=MAX_PIXELS // MAX_SIDE))
    assert load_job(_job(tmp_path, width=7680, height=4320)).frames[0].width == 7680


def test_a_frame_that_does_not_fit_on_disk_names_the_file_and_leaves_no_temporary(tmp_path):
    import errno
    import resource

    from bridge.render import write_exr

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, old[1]))  # writes past 2000 bytes fail, as on a full disk
    try:
        with pytest.raises(OSError) as info:
            rng = np.random.default_rng(0)
            write_exr(tmp_path / "f.exr", rng.random((64, 64, 4), np.float32), rng.random((64, 64), np.float32))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
    assert info.value.errno == errno.EFBIG and info.value.filename == str(tmp_path / "f.exr")
    assert list(tmp_path.iterdir()) == []


def _render(tmp_path, job: dict) -> tuple[int, list, str]:
    import subprocess
    import sys

    from conftest import ROOT

    from bridge import protocol

    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "bridge", "render", str(path), "--ipc"], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL)
    return proc.returncode, [e for e in map(protocol.decode_event, proc.stdout.splitlines()) if e], proc.stderr


def _splat_job(tmp_path, out, **frame_changes) -> dict:
    from bridge.formats import SplatSet, write_splats

    f = np.float32
    splats = SplatSet(means=np.zeros((1, 3), f), scales=np.full((1, 3), -2, f), quats=np.array([[1, 0, 0, 0]], f),
                      opacities=np.ones(1, f), sh_dc=np.ones((1, 3), f), sh_rest=np.zeros((1, 0, 3), f))
    write_splats(tmp_path / "s.ply", splats)
    frame = {"frame": 1, "width": 8, "height": 8, "K": [[8, 0, 4], [0, 8, 4], [0, 0, 1]],
             "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]], "clip_start": 0.1,
             "clip_end": 10.0, "object_matrices": [np.eye(4).tolist()], **frame_changes}
    return {"output_dir": str(out), "objects": [{"name": "S", "splats": str(tmp_path / "s.ply")}], "frames": [frame]}


@pytest.mark.parametrize("where", ["the folder", "a new folder inside"])
def test_render_passes_into_a_folder_nobody_can_write_are_bad_input_not_a_bug(tmp_path, where):
    """A folder without write permission raised PermissionError, reported as "a bug in Splatwork"."""
    from conftest import unwritable_folder

    with unwritable_folder(tmp_path / "locked") as locked:
        out = locked if where == "the folder" else locked / "passes"
        code, events, stderr = _render(tmp_path, _splat_job(tmp_path, out))
    error = events[-1]
    assert code == EXIT_BAD_INPUT and error.kind == "bad_input", (events[-2:], stderr[-800:])
    assert str(out) in error.message and "write" in error.hint and "Traceback" not in stderr
    assert not any(e.type == "hello" for e in events), "refused before torch loads"


_I = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def _edit(matrix, row, col, value):
    out = [list(r) for r in matrix]
    out[row][col] = value
    return out


_K = [[8, 0, 4], [0, 8, 4], [0, 0, 1]]
_W2C = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]


@pytest.mark.parametrize("change, field", [
    ({"frame": 10**300}, "frames[0].frame"), ({"frame": 1_048_575}, "frames[0].frame"),
    ({"K": _edit(_K, 0, 0, 0)}, "frames[0].K"), ({"K": _edit(_K, 1, 1, -8)}, "frames[0].K"),
    ({"K": _edit(_K, 2, 2, 2)}, "frames[0].K"), ({"K": _edit(_K, 0, 0, 1e-300)}, "frames[0].K"),
    ({"K": _edit(_K, 0, 2, 1e300)}, "frames[0].K"),
    ({"world_to_camera": _edit(_W2C, 0, 0, 1e300)}, "frames[0].world_to_camera"),
    ({"world_to_camera": _edit(_W2C, 3, 2, 1)}, "frames[0].world_to_camera"),
    ({"world_to_camera": _edit(_W2C, 0, 0, 2)}, "frames[0].world_to_camera"),
    ({"world_to_camera": _edit(_W2C, 2, 3, 1e300)}, "frames[0].world_to_camera"),
    ({"object_matrices": [_edit(_I, 0, 0, 1e300)]}, "frames[0].object_matrices[0]"),
    ({"object_matrices": [_edit(_I, 0, 3, 1e300)]}, "frames[0].object_matrices[0]"),
    ({"object_matrices": [[[0] * 4, [0] * 4, [0] * 4, [0, 0, 0, 1]]]}, "frames[0].object_matrices[0]"),
], ids=["frame 1e300", "frame past Blender's", "fx 0", "fy < 0", "K[2][2] 2", "fx 1e-300", "cx 1e300",
        "camera 1e300", "camera projective", "camera scaled", "camera far 1e300", "object 1e300",
        "object far 1e300", "object collapsed"])
def test_frames_no_camera_or_object_has_are_refused_naming_the_field(tmp_path, change, field):
    """A frame number of 10^300 made a file name too long (OSError, internal); a camera with fx = 0 and
    matrices near 1e300 were accepted, with numpy overflow warnings instead of an error."""
    from bridge.protocol import JobError, RenderJob, job_from_dict

    with pytest.raises(JobError) as info:
        job_from_dict(RenderJob, _splat_job(tmp_path, tmp_path / "out", **change))
    assert info.value.field == field and len(info.value.message) < 400, info.value.message


def test_splats_a_matrix_would_place_past_float32_are_refused_before_any_frame(tmp_path):
    """A file's positions are float32 (up to 3.4e38): through a matrix within the job's bounds they can
    still land past what a render holds; that is refused naming the frame and object, not rendered as
    Inf pixels with numpy's overflow warnings."""
    from bridge.formats import SplatSet, write_splats

    f = np.float32
    far = SplatSet(means=np.array([[1e30, 0, 0]], f), scales=np.full((1, 3), -2, f), quats=np.array([[1, 0, 0, 0]], f),
                   opacities=np.ones(1, f), sh_dc=np.ones((1, 3), f), sh_rest=np.zeros((1, 0, 3), f))
    job = _splat_job(tmp_path, tmp_path / "out", object_matrices=[_edit(_I, 0, 0, 1e6)])
    write_splats(tmp_path / "s.ply", far)
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    code, events, stderr = _render(tmp_path, job)
    assert code == EXIT_BAD_INPUT and events[-1].kind == "bad_input", (events[-2:], stderr[-600:])
    assert "frame 1, object 'S'" in events[-1].message and "Warning" not in stderr
    assert not (tmp_path / "out").exists()
