"""Render jobs (``bridge/render.py``) are refused up front, naming the problem, before any frame."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bridge.protocol import EXIT_BAD_INPUT, BridgeError
from bridge.render import MAX_PIXELS, MAX_SIDE, load_job


def _job(tmp_path, name="splats", width=8, height=8):
    frame = {"frame": 1, "width": width, "height": height, "K": np.eye(3).tolist(),
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
