"""The cleanup tools' selection math (bridge/formats/cleanup.py): numpy only, no Blender.

Isolated splats are checked against an exact brute-force statistical outlier removal, on real
splats (plush_dog.ply) and on a synthetic scene with planted floaters."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data

from bridge.formats import cleanup, read_splats
from bridge.formats.cleanup import CleanupError, View, parse_cleanup_spec


def exact_mean_knn(points: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Every point's mean distance to its k nearest others, by brute force (float64)."""
    p = points.astype(np.float64)
    out = np.empty(len(p))
    sq = (p * p).sum(1)
    for a in range(0, len(p), block):
        d2 = sq[a:a + block, None] + sq[None, :] - 2 * p[a:a + block] @ p.T
        d2[np.arange(len(d2)), np.arange(a, a + len(d2))] = np.inf
        near = np.partition(np.maximum(d2, 0), k - 1, axis=1)[:, :k]
        out[a:a + block] = np.sqrt(near).mean(1)
    return out


def exact_sor(points, k, ratio):
    d = exact_mean_knn(points, k)
    return d > d.mean() + ratio * d.std()


def scene_with_floaters(n=20000, floaters=60, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    surface = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.normal(1.0, 0.01, (n, 1))
    far = rng.uniform(-4, 4, (floaters, 3))
    far = far[np.linalg.norm(far, axis=1) > 1.6]
    return np.concatenate([surface, far]).astype(np.float32), np.arange(n, n + len(far))


def test_isolated_finds_planted_floaters_and_matches_exact_outlier_removal():
    points, planted = scene_with_floaters()
    mask, stats = cleanup.isolated(points, 2.5, 10)
    assert set(planted) <= set(np.flatnonzero(mask)), "every planted floater is found"
    exact = exact_sor(points, 10, 2.5)
    assert (mask != exact).sum() <= 0.002 * len(points), (mask.sum(), exact.sum())
    assert stats.neighbours == 10 and stats.threshold == pytest.approx(stats.mean + 2.5 * stats.sd)


@pytest.mark.parametrize("ratio", [1.0, 2.5])
def test_isolated_on_real_splats_agrees_with_exact_outlier_removal(ratio):
    splats = read_splats(shared_data("splats", "plush_dog.ply"))
    mask, _ = cleanup.isolated(splats.means, ratio, 10)
    exact = exact_sor(splats.means, 10, ratio)
    both, either = (mask & exact).sum(), (mask | exact).sum()
    assert exact.sum() > 20
    assert both / either >= 0.9, f"{mask.sum()} selected, {exact.sum()} by the exact method, {both} in both"


def test_isolated_is_deterministic_and_leaves_its_input_alone():
    points, _ = scene_with_floaters(3000, 20, seed=4)
    before = points.copy()
    a, _ = cleanup.isolated(points, 2.0, 8)
    b, _ = cleanup.isolated(points, 2.0, 8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(points, before)


def test_isolated_handles_duplicates_lattices_and_few_points():
    grid = np.stack(np.meshgrid(*[np.arange(12.0)] * 3), -1).reshape(-1, 3).astype(np.float32)
    mask, stats = cleanup.isolated(grid, 1.0, 6)  # every inner point's 6 neighbours are at distance 1
    assert stats.mean == pytest.approx(exact_mean_knn(grid, 6).mean(), rel=0.02)
    same = np.zeros((50, 3), np.float32)
    mask, stats = cleanup.isolated(same, 2.0, 5)
    assert not mask.any() and stats.sd == 0
    with pytest.raises(CleanupError, match="needs more than 10 splats"):
        cleanup.isolated(np.zeros((10, 3), np.float32), 2.0, 10)


def test_selection_modes_combine_like_blenders():
    cur = np.array([1, 1, 0, 0], bool)
    new = np.array([1, 0, 1, 0], bool)
    assert cleanup.combine(cur, new, "REPLACE").tolist() == [1, 0, 1, 0]
    assert cleanup.combine(cur, new, "EXTEND").tolist() == [1, 1, 1, 0]
    assert cleanup.combine(cur, new, "SUBTRACT").tolist() == [0, 1, 0, 0]
    assert cleanup.combine(cur, new, "INTERSECT").tolist() == [1, 0, 0, 0]
    with pytest.raises(CleanupError, match="mode"):
        cleanup.combine(cur, new, "XOR")


def test_opacity_scale_and_distance_selections():
    alpha = np.array([0.0, 0.01, 0.5, 1.0], np.float32)
    assert cleanup.below_opacity(alpha, 0.05).tolist() == [1, 1, 0, 0]
    sizes = np.arange(1000, dtype=np.float32)[::-1]
    big = cleanup.largest(sizes, 1.0)
    assert big.sum() == 10 and set(np.flatnonzero(big)) == set(range(10))
    assert cleanup.largest(sizes, 0).sum() == 0 and cleanup.largest(sizes, 100).all()
    assert cleanup.above(sizes, 989.5).sum() == 10
    scales = np.array([[0.1, 0.3, 0.2], [1.0, 0.1, 0.1]], np.float32)
    np.testing.assert_allclose(cleanup.splat_size(scales, 2.0), [0.6, 2.0])
    points = np.array([[0, 0, 0], [3, 4, 0], [10, 0, 0]], np.float32)
    assert cleanup.far_from(points, (0, 0, 0), 5.0).tolist() == [0, 0, 1]
    assert cleanup.robust_centre(np.array([[0, 0, 0], [1, 1, 1], [100, 100, 100]], np.float32)).tolist() == [1, 1, 1]


def test_outside_box_matches_the_crop_box_unit_cube():
    to_box = np.diag([0.5, 0.5, 0.5, 1.0])  # a box of half-size 2 at the origin
    to_box[:3, 3] = (-0.5, 0, 0)  # ... moved to x = 1
    points = np.array([[1, 0, 0], [2.9, 1.9, -1.9], [3.1, 0, 0], [-1.1, 0, 0]], np.float32)
    assert cleanup.outside_box(points, to_box).tolist() == [0, 0, 1, 1]


def test_unseen_tests_every_frustum_or_only_what_is_behind():
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    looking_z = View(K, np.eye(4), 100, 80)  # at the origin, looking down +z
    back = np.eye(4)
    back[:3, :3] = np.diag([-1.0, 1.0, -1.0])  # at the origin, looking down -z
    looking_back = View(K, back, 100, 80)
    points = np.array([[0, 0, 5], [10, 0, 5], [0, 0, -5], [10, 0, -5], [0.6, 0, 1]], np.float32)
    assert cleanup.unseen(points, [looking_z], "FRUSTUM").tolist() == [0, 1, 1, 1, 1]
    assert cleanup.unseen(points, [looking_z], "FRUSTUM", margin=0.2).tolist() == [0, 1, 1, 1, 0]
    assert cleanup.unseen(points, [looking_z, looking_back], "FRUSTUM").tolist() == [0, 1, 0, 1, 1]
    assert cleanup.unseen(points, [looking_z], "BEHIND").tolist() == [0, 0, 1, 1, 0]
    assert not cleanup.unseen(points, [looking_z, looking_back], "BEHIND").any()
    with pytest.raises(CleanupError, match="no training cameras"):
        cleanup.unseen(points, [], "FRUSTUM")


@pytest.mark.parametrize("call, words", [
    (lambda: cleanup.below_opacity(np.zeros(3), 1.5), "opacity threshold must be a number in [0, 1], got 1.5"),
    (lambda: cleanup.below_opacity(np.zeros(3), float("nan")), "opacity threshold"),
    (lambda: cleanup.largest(np.zeros(3), -1), "percentage must be a number in [0, 100]"),
    (lambda: cleanup.above(np.zeros(3), -2, "radius"), "radius must be a number in [0, inf)"),
    (lambda: cleanup.isolated(np.zeros((50, 3)), -1), "outlier sd ratio"),
    (lambda: cleanup.isolated(np.zeros((50, 3)), 2, 0), "neighbour count must be a number in [1, 64]"),
    (lambda: cleanup.unseen(np.zeros((2, 3)), [], "SIDEWAYS"), "camera mode"),
])
def test_thresholds_out_of_range_are_refused_by_name(call, words):
    with pytest.raises(CleanupError) as exc:
        call()
    assert words in str(exc.value)


def test_the_cleanup_flag_parses_to_steps_in_order():
    spec = parse_cleanup_spec("opacity=0.05,outliers=2.5")
    assert spec.steps == [("opacity", 0.05), ("outliers", 2.5)] and spec.action == "hide" and spec.neighbours == 10
    spec = parse_cleanup_spec(" scale=1% , distance=12.5,unseen=Behind,neighbours=16,action=delete ")
    assert spec.steps == [("scale", ("percent", 1.0)), ("distance", ("value", 12.5)), ("unseen", "BEHIND")]
    assert spec.neighbours == 16 and spec.action == "delete"


@pytest.mark.parametrize("text, words", [
    ("", "expected KEY=VALUE pairs"),
    ("opacity", "expected KEY=VALUE"),
    ("opacity=0.05,", "expected KEY=VALUE pairs"),
    ("opacity=abc", "opacity=abc: expected a number"),
    ("opacity=2", "opacity must be a number in (0, 1]"),
    ("opacity=inf", "expected a finite number"),
    ("floaters=3", "unknown key 'floaters'"),
    ("opacity=0.1,opacity=0.2", "opacity is given twice"),
    ("scale=0%", "scale percentage must be a number in (0, 100]"),
    ("unseen=sideways", "expected frustum or behind"),
    ("outliers=2,neighbours=2.5", "whole number from 1 to 64"),
    ("action=burn,opacity=0.1", "expected hide or delete"),
    ("neighbours=8", "selects nothing"),
])
def test_bad_cleanup_flags_say_what_is_wrong(text, words):
    with pytest.raises(CleanupError) as exc:
        parse_cleanup_spec(text)
    assert words in str(exc.value)
