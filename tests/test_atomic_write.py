"""Atomic writes (``bridge/formats/atomic.py``): ordinary permissions, no debris, the path in errors."""
from __future__ import annotations

import contextlib
import errno
import os
import resource

import numpy as np
import pytest

from bridge.formats.atomic import atomic_path, atomic_write, remove_stale_temporaries


@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=oct)
def test_outputs_honour_the_umask_not_mkstemps_0600(tmp_path, mask):
    from bridge.formats import write_splats
    from bridge.render import write_exr, write_png

    with _umask(mask):
        with atomic_write(tmp_path / "a.json") as fh:
            fh.write(b"{}")
        write_png(tmp_path / "b.png", np.zeros((2, 3, 4), np.uint8))
        write_exr(tmp_path / "c.exr", np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float32))
        write_splats(tmp_path / "d.ply", _one_splat())
    for name in ("a.json", "b.png", "c.exr", "d.ply"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.png", "c.exr", "d.ply"]


def _one_splat():
    from bridge.formats import SplatSet

    z = np.zeros((1, 3), np.float32)
    return SplatSet(means=z, scales=z, quats=np.array([[1, 0, 0, 0]], np.float32),
                    opacities=np.zeros(1, np.float32), sh_dc=z, sh_rest=np.zeros((1, 0, 3), np.float32))


def test_a_failed_write_keeps_the_old_file_leaves_no_temporary_and_names_the_target(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, old[1]))  # writes past 1000 bytes fail (EFBIG)
    try:
        with pytest.raises(OSError) as info, atomic_write(target) as fh:
            fh.write(b"x" * 5000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
    assert info.value.errno == errno.EFBIG and info.value.filename == str(target)
    assert target.read_bytes() == b"good" and os.listdir(tmp_path) == ["last.pt"]

    with pytest.raises(ValueError), atomic_path(target) as tmp:
        open(tmp, "wb").close()
        raise ValueError("the library failed")
    assert os.listdir(tmp_path) == ["last.pt"]


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".tmp-abc-last.pt").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    (tmp_path / ".tmp-dir").mkdir()
    assert remove_stale_temporaries(tmp_path) == [str(tmp_path / ".tmp-abc-last.pt")]
    assert sorted(os.listdir(tmp_path)) == [".tmp-dir", "last.pt"]
    assert remove_stale_temporaries(tmp_path / "absent") == []
