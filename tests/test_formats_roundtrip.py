"""Random splat sets through every writer and reader: exact where lossless, within the stated bounds."""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_formats import assert_same, quat_error

from bridge.formats import SH_C0, SplatSet, read_splats, write_splats
from bridge.formats.compressed_ply import morton_order
from bridge.formats.splatset import SH_REST_COUNT

RUNS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def splat_sets(draw, lo_scale=-9.5, hi_scale=5.5, dc=1.7, rest=0.95):
    """Values inside every format's representable range, so each bound below applies everywhere."""
    n = draw(st.integers(1, 600))
    degree = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    f = np.float32
    quats = rng.normal(size=(n, 4))
    if draw(st.booleans()):
        quats[: n // 2] = [1, 0, 0, 0]  # many real splats are unrotated
    return SplatSet(
        means=(rng.normal(size=(n, 3)) * spread).astype(f),
        scales=rng.uniform(lo_scale, hi_scale, (n, 3)).astype(f),
        quats=quats.astype(f),
        opacities=rng.uniform(-7, 7, n).astype(f),
        sh_dc=rng.uniform(-dc, dc, (n, 3)).astype(f),
        sh_rest=rng.uniform(-rest, rest, (n, SH_REST_COUNT[degree], 3)).astype(f),
    )


def _round_trip(tmp_path, splats, fmt, **options):
    path = tmp_path / f"s.{fmt}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_splats(path, splats, fmt=fmt, **options)
    return read_splats(path)


def _quat_error(a, b):
    return quat_error(a.quats, b.quats)


@RUNS
@given(splats=splat_sets(lo_scale=-30, hi_scale=30, dc=50, rest=50))
def test_ply_is_bit_exact(tmp_path, splats):
    assert_same(_round_trip(tmp_path, splats, "ply"), splats)


@RUNS
@given(splats=splat_sets())
def test_splat_within_bounds(tmp_path, splats):
    back = _round_trip(tmp_path, splats, "splat")
    np.testing.assert_array_equal(back.means, splats.means)
    assert np.abs(back.scales - splats.scales).max() <= 1e-5
    assert np.abs(back.sh_dc - splats.sh_dc).max() <= 0.5 / 255 / SH_C0 + 1e-5
    assert np.abs(back.alphas() - splats.alphas()).max() <= 0.5 / 255 + 1e-6
    assert _quat_error(back, splats) <= 0.016
    assert back.sh_degree == 0


@RUNS
@given(splats=splat_sets(), version=st.sampled_from([2, 3, 4]))
def test_spz_within_bounds(tmp_path, splats, version):
    back = _round_trip(tmp_path, splats, "spz", version=version)
    extent = float(np.abs(splats.means).max())
    bits = next(b for b in range(16, -1, -1) if extent * 2**b < 2**23 - 1)
    assert np.abs(back.means - splats.means).max() <= 2.0 ** -(bits + 1) * 1.001 + 1e-6 * extent
    assert np.abs(back.scales - splats.scales).max() <= 1 / 32 + 1e-5
    assert np.abs(back.sh_dc - splats.sh_dc).max() <= 0.5 / (255 * 0.15) + 1e-5
    assert np.abs(back.alphas() - splats.alphas()).max() <= 0.5 / 255 + 1e-6
    assert _quat_error(back, splats) <= (0.12 if version == 2 else 0.0025)
    if splats.sh_degree:
        assert np.abs(back.sh_rest[:, :3] - splats.sh_rest[:, :3]).max() <= 4.5 / 128 + 1e-6
        assert np.abs(back.sh_rest[:, 3:] - splats.sh_rest[:, 3:]).max(initial=0) <= 8.5 / 128 + 1e-6


@RUNS
@given(splats=splat_sets(rest=3.9))
def test_compressed_ply_within_bounds(tmp_path, splats):
    back = _round_trip(tmp_path, splats, "compressed_ply")
    ref = splats.subset(morton_order(splats.means))  # the writer's order
    n_chunks = -(-len(ref) // 256)

    def chunk_span(values):
        pad = np.concatenate([values, np.repeat(values[-1:], n_chunks * 256 - len(values), axis=0)])
        blocks = pad.reshape(n_chunks, 256, -1).astype(np.float64)
        return np.repeat(blocks.max(axis=1) - blocks.min(axis=1), 256, axis=0)[: len(values)]

    steps = np.array([2047.0, 1023.0, 2047.0])
    assert (np.abs(back.means - ref.means) <= chunk_span(ref.means) / steps / 2 * 1.001 + 1e-6).all()
    assert (np.abs(back.scales - ref.scales) <= chunk_span(ref.scales) / steps / 2 * 1.001 + 1e-5).all()
    color_step = chunk_span(ref.sh_dc * SH_C0) / 255
    assert (np.abs(back.sh_dc - ref.sh_dc) <= color_step / 2 / SH_C0 * 1.001 + 1e-4).all()
    assert np.abs(back.alphas() - ref.alphas()).max() <= 0.5 / 255 + 1e-6
    assert _quat_error(back, ref) <= 0.0025
    assert back.sh_degree == ref.sh_degree
    assert np.abs(back.sh_rest - ref.sh_rest).max(initial=0) <= 1 / 64 + 1e-6
