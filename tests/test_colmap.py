"""COLMAP models on disk: read (binary and text), write, round trips, and bad input named clearly."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import pycolmap
import pytest
from conftest import ROOT, shared_data

from bridge.formats import colmap, transforms_json
from bridge.formats.cameras import Camera, Reconstruction, View
from bridge.formats.errors import FormatError


def _statue():
    return shared_data("colmap", "statue_of_liberty", "sparse", "0")


def small_reconstruction(n_views: int = 6, n_points: int = 50, seed: int = 0) -> Reconstruction:
    """Two cameras (non-square pixels, off-centre; portrait) looking at points around the origin."""
    rng = np.random.default_rng(seed)
    cameras = {
        1: Camera(1, "PINHOLE", 64, 48, np.array([70.0, 77.0, 29.3, 26.1])),
        2: Camera(2, "OPENCV", 40, 60, np.array([55.0, 53.0, 21.0, 28.5, 0.01, -0.002, 0.0005, 0.0003])),
    }
    views = []
    for i in range(n_views):
        angle = 2 * np.pi * i / n_views
        centre = np.array([4 * np.cos(angle), 4 * np.sin(angle), 1.0 + 0.2 * i])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        views.append(View(i + 1, f"view_{i:03d}.png", 1 + i % 2, R, -R @ centre))
    points = rng.uniform(-1, 1, size=(n_points, 3))
    colors = rng.integers(0, 256, size=(n_points, 3), dtype=np.uint8)
    return Reconstruction(cameras, views, points, colors, rng.uniform(0.1, 2, n_points), np.zeros(n_points, int))


def _assert_same(a: Reconstruction, b: Reconstruction, tol: float = 1e-12):
    assert sorted(a.cameras) == sorted(b.cameras)
    for cam_id, cam in a.cameras.items():
        other = b.cameras[cam_id]
        assert (cam.model, cam.width, cam.height) == (other.model, other.width, other.height)
        np.testing.assert_allclose(other.params, cam.params, rtol=tol)
    assert [v.name for v in a.views] == [v.name for v in b.views]
    for va, vb in zip(a.views, b.views, strict=True):
        assert va.camera_id == vb.camera_id
        np.testing.assert_allclose(vb.R, va.R, atol=tol)
        np.testing.assert_allclose(vb.t, va.t, atol=tol)
    np.testing.assert_allclose(b.points, a.points, atol=tol)
    np.testing.assert_array_equal(b.colors, a.colors)


def test_binary_and_text_of_a_real_model_agree():
    folder = _statue()
    assert colmap.model_format(folder) == "binary"
    binary = colmap.read_model(folder)
    text_dir = shared_data("colmap", "statue_of_liberty", "sparse", "0")
    text = pycolmap.Reconstruction()
    text.read_text(str(text_dir))
    assert len(binary.views) == 40 and len(binary.points) == 1816
    assert binary.cameras[1].model == "SIMPLE_RADIAL"
    assert binary.cameras[1].fx == pytest.approx(2395.646389027504)
    assert binary.views == sorted(binary.views, key=lambda v: v.name)
    assert binary.track_lengths.min() >= 2 and np.all(binary.errors >= 0)
    for view in binary.views[:5]:  # the text files hold 6 significant digits
        image = text.find_image_with_name(view.name)
        np.testing.assert_allclose(image.cam_from_world().rotation.matrix(), view.R, atol=1e-5)
        np.testing.assert_allclose(view.center(), image.projection_center(), atol=1e-4)


@pytest.mark.parametrize("fmt", ["binary", "text"])
def test_points_decoded_directly_equal_pycolmaps(tmp_path, fmt):
    folder = _statue()
    if fmt == "text":  # the text copy of the same model, alone in a folder
        for name in ("cameras", "images", "points3D"):
            shutil.copy(folder / f"{name}.txt", tmp_path / f"{name}.txt")
        folder = tmp_path
    rec = colmap.read_model(folder)
    reference = pycolmap.Reconstruction(str(folder))
    ids = sorted(reference.point3D_ids())
    points = [reference.points3D[i] for i in ids]
    np.testing.assert_array_equal(rec.points, [p.xyz for p in points])
    np.testing.assert_array_equal(rec.colors, [p.color for p in points])
    np.testing.assert_array_equal(rec.errors, [p.error for p in points])
    np.testing.assert_array_equal(rec.track_lengths, [p.track.length() for p in points])


@pytest.mark.parametrize("binary", [True, False])
def test_write_then_read_is_exact(tmp_path, binary):
    rec = small_reconstruction()
    colmap.write_model(rec, tmp_path, binary=binary)
    assert colmap.model_format(tmp_path) == ("binary" if binary else "text")
    _assert_same(rec, colmap.read_model(tmp_path), tol=1e-15 if binary else 1e-12)
    # Writing the other format removes the stale files, so the folder holds one model.
    colmap.write_model(rec, tmp_path, binary=not binary)
    assert colmap.model_format(tmp_path) == ("text" if binary else "binary")
    assert not list(tmp_path.glob("*.bin" if binary else "*.txt"))
    assert not list(tmp_path.glob(".colmap-*"))


def test_real_model_round_trips_through_write_model(tmp_path):
    rec = colmap.read_model(_statue())
    colmap.write_model(rec, tmp_path)
    back = colmap.read_model(tmp_path)
    _assert_same(rec, back, tol=1e-15)
    np.testing.assert_array_equal(back.errors, rec.errors)


def test_find_models_lists_sparse_children(tmp_path):
    rec = small_reconstruction()
    for name in ("0", "1"):
        colmap.write_model(rec, tmp_path / "sparse" / name)
    (tmp_path / "sparse" / "empty").mkdir()
    assert [p.name for p in colmap.find_models(tmp_path)] == ["0", "1"]


def _copy_model(tmp_path, real: bool = True):
    """A binary model to damage: the statue's (COLMAP's own files), or one our writer makes (no tracks)."""
    dst = tmp_path / "model"
    if not real:
        colmap.write_model(small_reconstruction(), dst, binary=True)
        return dst
    shutil.copytree(_statue(), dst)
    for txt in dst.glob("*.txt"):
        txt.unlink()
    return dst


def _corrupt_truncated(folder):
    data = (folder / "points3D.bin").read_bytes()
    (folder / "points3D.bin").write_bytes(data[: len(data) // 2])
    return "points3D.bin", "truncated"


def _corrupt_huge_count(folder):
    data = (folder / "images.bin").read_bytes()
    (folder / "images.bin").write_bytes(struct.pack("<Q", 10**15) + data[8:])
    return "images.bin", "claims 1000000000000000 images"


def _corrupt_model_id(folder):
    data = bytearray((folder / "cameras.bin").read_bytes())
    data[12:16] = struct.pack("<i", 99)
    (folder / "cameras.bin").write_bytes(bytes(data))
    return "cameras.bin", "unknown model id 99"


def _corrupt_camera_reference(folder):
    data = bytearray((folder / "images.bin").read_bytes())
    data[8 + 4 + 56: 8 + 4 + 56 + 4] = struct.pack("<I", 7)
    (folder / "images.bin").write_bytes(bytes(data))
    return "images.bin", "refers to camera 7"


def _corrupt_track_reference(folder):
    data = bytearray((folder / "points3D.bin").read_bytes())
    data[8 + 51: 8 + 55] = struct.pack("<I", 9999)  # the first track entry's image id
    (folder / "points3D.bin").write_bytes(bytes(data))
    return "points3D.bin", "track entry for an image or 2D point that images.bin lacks"


def _corrupt_missing_file(folder):
    (folder / "points3D.bin").unlink()
    return "model", "missing points3D"


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_huge_count, _corrupt_model_id,
                                     _corrupt_camera_reference, _corrupt_track_reference, _corrupt_missing_file],
                         ids=lambda f: f.__name__[9:])
def test_corrupt_binary_models_raise_a_named_format_error(tmp_path, corrupt):
    # Only the track check needs a model with tracks (COLMAP's); the others damage what every binary model has.
    folder = _copy_model(tmp_path, real=corrupt is _corrupt_track_reference)
    file_name, problem = corrupt(folder)
    with pytest.raises(FormatError, match=problem) as info:
        colmap.read_model(folder)
    assert file_name in str(info.value)


def test_bad_text_and_empty_models(tmp_path):
    rec = small_reconstruction()
    colmap.write_model(rec, tmp_path / "text", binary=False)
    cameras = tmp_path / "text" / "cameras.txt"
    cameras.write_text(cameras.read_text().replace("PINHOLE 64 48", "PINHOLE 64 abc"))
    with pytest.raises(FormatError, match="cannot be read"):
        colmap.read_model(tmp_path / "text")
    empty = Reconstruction(rec.cameras, [])
    colmap.write_model(empty, tmp_path / "empty")
    with pytest.raises(FormatError, match="no registered images"):
        colmap.read_model(tmp_path / "empty")
    with pytest.raises(FormatError, match="not a folder"):
        colmap.read_model(tmp_path / "absent")


def test_transforms_json_round_trip(tmp_path):
    rec = small_reconstruction()
    path = tmp_path / "transforms.json"
    transforms_json.write_transforms(path, rec)
    doc = json.loads(path.read_text())
    assert doc["frames"][0]["file_path"] == "images/view_000.png"
    np.testing.assert_allclose(doc["frames"][1]["k1"], 0.01)
    back = transforms_json.read_transforms(path)
    for va, vb in zip(rec.views, back.views, strict=True):
        np.testing.assert_allclose(vb.R, va.R, atol=1e-12)
        np.testing.assert_allclose(vb.t, va.t, atol=1e-12)
        ca, cb = rec.cameras[va.camera_id], back.cameras[vb.camera_id]
        np.testing.assert_allclose([cb.fx, cb.fy, cb.cx, cb.cy], [ca.fx, ca.fy, ca.cx, ca.cy])
        np.testing.assert_allclose(cb.params[4:], ca.params[4:])
    path.write_text("{\"frames\": []}")
    with pytest.raises(FormatError, match="no frames"):
        transforms_json.read_transforms(path)


_FUZZ = """
import random, shutil, sys
from pathlib import Path
from bridge.formats import colmap
from bridge.formats.errors import FormatError
src, work, seeds = Path(sys.argv[1]), Path(sys.argv[2]), range(int(sys.argv[3]))
files = {f: (src / f).read_bytes() for f in ("cameras.bin", "images.bin", "points3D.bin")}
for seed in seeds:
    rng = random.Random(seed)
    folder = work / str(seed)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    name = rng.choice(sorted(files))
    data = bytearray(files[name])
    kind = rng.choice(["bytes", "truncate", "u64"])
    if kind == "bytes":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(min(len(data), 4096))] = rng.randrange(256)
    elif kind == "truncate":
        data = data[: rng.randrange(len(data))]
    else:
        at = rng.randrange(min(len(data), 4096))
        data[at: at + 8] = rng.randrange(2**64).to_bytes(8, "little")
    (folder / name).write_bytes(bytes(data))
    try:
        colmap.read_model(folder)
    except FormatError:
        pass
    shutil.rmtree(folder)
print("survived", len(seeds))
"""


def test_mutated_binary_models_never_crash_the_process(tmp_path):
    """pycolmap aborts on some corrupt files; after our checks, none of these may reach it.

    Runs in a subprocess so that an abort fails this test instead of killing the test run; any
    exception other than FormatError fails it too.
    """
    result = subprocess.run([sys.executable, "-c", _FUZZ, str(_statue()), str(tmp_path), "60"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "survived 60" in result.stdout
