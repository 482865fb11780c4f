"""Baking an object transform into splats: exact SH rotation, covariances, mirrors, refusals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.formats import FormatError, SplatSet
from bridge.formats.transform import (
    bake_transform,
    matrix_to_quat,
    place_splats,
    quat_to_matrix,
    rotate_sh,
    sh_basis,
    sh_rotation,
)

REST = {1: 3, 2: 8, 3: 15}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return quat_to_matrix(q[None])[0]


def unit_dirs(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def random_splats(rng: np.random.Generator, n: int, degree: int) -> SplatSet:
    f = np.float32
    return SplatSet(
        means=rng.normal(size=(n, 3)).astype(f),
        scales=rng.uniform(-4, -1, size=(n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),
        opacities=rng.normal(size=n).astype(f),
        sh_dc=rng.normal(size=(n, 3)).astype(f),
        sh_rest=rng.normal(scale=0.3, size=(n, REST.get(degree, 0), 3)).astype(f),
        extras={"label": np.arange(n, dtype=f)},
    )


def covariances(splats: SplatSet) -> np.ndarray:
    axes = quat_to_matrix(splats.quats) * np.exp(splats.scales.astype(np.float64))[:, None, :]
    return axes @ axes.transpose(0, 2, 1)


def sh_colour(rest: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """View-dependent part of each splat's colour along its own direction: (N, 3)."""
    basis = sh_basis(dirs, {3: 1, 8: 2, 15: 3}[rest.shape[1]])
    return np.einsum("nk,nkc->nc", basis, rest)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), degree=st.sampled_from([1, 2, 3]))
def test_rotated_sh_equals_original_in_the_inverse_rotated_direction(seed, degree):
    rng = np.random.default_rng(seed)
    rot = random_rotation(rng)
    rest = rng.normal(size=(50, REST[degree], 3))
    dirs = unit_dirs(rng, 50)
    turned = rotate_sh(rest, rot)
    np.testing.assert_allclose(sh_colour(turned, dirs), sh_colour(rest, dirs @ rot), atol=1e-12)


def test_band_matrices_are_orthogonal_compose_and_start_at_identity():
    rng = np.random.default_rng(1)
    a, b = random_rotation(rng), random_rotation(rng)
    for band, (da, db, dab, d_id, d_inv) in enumerate(
        zip(sh_rotation(a, 3), sh_rotation(b, 3), sh_rotation(a @ b, 3), sh_rotation(np.eye(3), 3),
            sh_rotation(a.T, 3), strict=True),
        start=1,
    ):
        size = 2 * band + 1
        np.testing.assert_allclose(da @ da.T, np.eye(size), atol=1e-12)
        np.testing.assert_allclose(da @ db, dab, atol=1e-12)
        np.testing.assert_allclose(d_id, np.eye(size), atol=1e-12)
        np.testing.assert_allclose(d_inv, da.T, atol=1e-12)


def test_degree_one_matches_the_closed_form():
    # Band 1 of 3DGS is (-y, z, -x) up to a constant, so its rotation matrix is R with those signs.
    rot = random_rotation(np.random.default_rng(2))
    perm = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], float)
    np.testing.assert_allclose(sh_rotation(rot, 1)[0], perm @ rot @ perm.T, atol=1e-12)


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(3)
    mats = np.stack([random_rotation(rng) for _ in range(200)]
                    + [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])])
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(mats)), mats, atol=1e-12)


def affine(linear: np.ndarray, offset) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = linear
    m[:3, 3] = offset
    return m


@pytest.mark.parametrize("mirror", [False, True])
def test_similarity_bakes_means_covariances_and_view_dependent_colour(mirror):
    rng = np.random.default_rng(4)
    splats = random_splats(rng, 300, 3)
    rot = random_rotation(rng)
    linear = 2.5 * rot @ (np.diag([1.0, 1.0, -1.0]) if mirror else np.eye(3))
    m = affine(linear, (0.3, -1.2, 4.0))
    baked = bake_transform(splats, m)

    np.testing.assert_allclose(baked.means, splats.means @ linear.T + m[:3, 3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(covariances(baked), linear @ covariances(splats) @ linear.T, rtol=1e-4, atol=1e-9)
    # Seen along world direction d, a splat shows what it showed along A⁻¹d (normalised) before.
    dirs = unit_dirs(rng, 300)
    before = dirs @ np.linalg.inv(linear).T
    before /= np.linalg.norm(before, axis=1, keepdims=True)
    np.testing.assert_allclose(sh_colour(baked.sh_rest, dirs), sh_colour(splats.sh_rest, before), atol=2e-5)
    np.testing.assert_array_equal(baked.opacities, splats.opacities)
    np.testing.assert_array_equal(baked.sh_dc, splats.sh_dc)
    np.testing.assert_array_equal(baked.extras["label"], splats.extras["label"])


def test_identity_changes_nothing_and_transforms_compose():
    rng = np.random.default_rng(5)
    splats = random_splats(rng, 100, 2)
    same = bake_transform(splats, np.eye(4))
    for name in ("means", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_allclose(getattr(same, name), getattr(splats, name), atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(same.quats * splats.quats, axis=1))
                               / np.linalg.norm(splats.quats, axis=1), 1.0, atol=1e-6)

    a = affine(0.7 * random_rotation(rng), (1, 2, 3))
    b = affine(1.9 * random_rotation(rng), (-2, 0, 1))
    twice = bake_transform(bake_transform(splats, a), b)
    once = bake_transform(splats, b @ a)
    np.testing.assert_allclose(twice.means, once.means, atol=1e-4)
    np.testing.assert_allclose(twice.scales, once.scales, atol=1e-5)
    np.testing.assert_allclose(covariances(twice), covariances(once), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(twice.sh_rest, once.sh_rest, atol=1e-5)


def test_non_uniform_scale_is_exact_for_shapes_without_view_dependent_colour():
    rng = np.random.default_rng(6)
    splats = random_splats(rng, 200, 0)
    linear = random_rotation(rng) @ np.diag([1.0, 3.0, 0.5]) @ random_rotation(rng)
    baked = bake_transform(splats, affine(linear, (0, 0, 1)))
    np.testing.assert_allclose(covariances(baked), linear @ covariances(splats) @ linear.T, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(baked.quats, axis=1), 1.0, atol=1e-6)


def test_non_uniform_scale_with_view_dependent_colour_is_refused_naming_the_file():
    splats = random_splats(np.random.default_rng(7), 10, 3)
    with pytest.raises(FormatError) as err:
        bake_transform(splats, np.diag([1.0, 2.0, 1.0, 1.0]), path="/tmp/out.spz")
    text = str(err.value)
    assert "/tmp/out.spz" in text and "non-uniform" in text and "SH degree 3" in text


@pytest.mark.parametrize(
    ("matrix", "problem"),
    [
        (np.diag([1.0, 0.0, 1.0, 1.0]), "zero scale"),
        (np.full((4, 4), np.nan), "finite 4x4"),
        (np.eye(3), "finite 4x4"),
        (np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]), "perspective"),
    ],
)
def test_bad_matrices_are_refused(matrix, problem):
    with pytest.raises(FormatError, match=problem):
        bake_transform(random_splats(np.random.default_rng(8), 4, 1), matrix)


def test_placing_several_objects_merges_them_in_world_space():
    rng = np.random.default_rng(9)
    a, b = random_splats(rng, 5, 1), random_splats(rng, 7, 3)
    del b.extras["label"]
    ma, mb = affine(random_rotation(rng), (1, 0, 0)), affine(2.0 * np.eye(3), (0, 5, 0))
    merged = place_splats([("a", a, ma), ("b", b, mb)])
    assert len(merged) == 12 and merged.sh_degree == 3 and not merged.extras
    np.testing.assert_allclose(merged.means[:5], bake_transform(a, ma).means)
    np.testing.assert_allclose(merged.sh_rest[:5, :3], bake_transform(a, ma).sh_rest)
    assert not merged.sh_rest[:5, 3:].any()
    np.testing.assert_allclose(merged.scales[5:], b.scales + np.log(2.0), atol=1e-6)
    with pytest.raises(FormatError, match="^b: .*non-uniform"):
        place_splats([("a", a, ma), ("b", b, np.diag([1.0, 1.0, 3.0, 1.0]))])


def test_splats_without_view_dependent_colour_bake_too():
    splats = random_splats(np.random.default_rng(10), 6, 0)
    baked = bake_transform(splats, affine(-2.0 * random_rotation(np.random.default_rng(11)), (1, 1, 1)))
    assert baked.sh_rest.shape == (6, 0, 3) and baked.sh_rest.dtype == np.float32
