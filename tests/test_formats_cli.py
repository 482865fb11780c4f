"""``python -m bridge.formats convert|info`` as a user runs it: a real subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT
from test_formats import random_splats

from bridge.formats import read_splats, write_splats


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.formats", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_convert_ply_to_spz_with_sh_degree_then_info(tmp_path):
    # The command is what is tested here (real files from other tools go through the readers in test_formats).
    source = tmp_path / "scene.ply"
    write_splats(source, random_splats(2000, 3, seed=5))
    out = tmp_path / "scene.spz"
    done = run("convert", str(source), str(out), "--sh-degree", "1", "--spz-version", "4")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:4] == b"NGSP"
    info = run("info", str(out), "--json")
    assert info.returncode == 0, info.stderr
    report = json.loads(info.stdout)
    assert (report["format"], report["splats"], report["sh_degree"]) == ("spz", 2000, 1)
    original = read_splats(source)
    for axis in range(3):
        assert report["bounds_min"][axis] == pytest.approx(float(original.means[:, axis].min()), abs=1e-4)
        assert report["bounds_max"][axis] == pytest.approx(float(original.means[:, axis].max()), abs=1e-4)
    assert 0 < report["opacity"]["min"] <= report["opacity"]["median"] <= report["opacity"]["max"] < 1


def test_info_prints_a_readable_summary(tmp_path):
    path = tmp_path / "s.ply"
    write_splats(path, random_splats(40, 2))
    done = run("info", str(path))
    assert done.returncode == 0, done.stderr
    assert "splats     40" in done.stdout and "SH degree  2" in done.stdout and "opacity" in done.stdout


def test_lossy_conversion_warns_what_it_drops(tmp_path):
    source = tmp_path / "s.ply"
    write_splats(source, random_splats(10, 3))
    done = run("convert", str(source), str(tmp_path / "s.splat"))
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "SH bands" in done.stderr


def test_bad_input_exits_2_with_the_file_named_and_no_traceback(tmp_path):
    fake = tmp_path / "photo.ply"
    fake.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    done = run("convert", str(fake), str(tmp_path / "out.spz"))
    assert done.returncode == 2
    assert str(fake) in done.stderr and "JPEG" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.spz").exists()
