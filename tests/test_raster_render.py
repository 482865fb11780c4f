"""render_splats: a SplatSet in, numpy images out; checked on real splats and against a Blender camera."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import centroid, one_splat, reference_render, shared_data
from test_raster_reference import look_at, one_thread, render  # noqa: F401  (one_thread: autouse)

from bridge.formats import SplatSet, read_splats


@pytest.fixture(params=["torch", "warp"])
def rasterizer(request):
    """render_splats on the PyTorch backend and on the compiled one (what "auto" picks on the CPU)."""
    return request.param


def test_a_splat_lands_where_the_camera_matrix_says_with_its_depth_and_colour(rasterizer):
    K = np.array([[60.0, 0, 33.0], [0, 64.0, 21.0], [0, 0, 1]])
    w2c = look_at((0.4, -0.3, -2.0), (0.0, 0.1, 0.2))
    point = np.array([0.15, 0.05, 0.1])
    out = reference_render(one_splat(point), K, w2c, 64, 48, background=np.array([0.0, 0.0, 1.0]),
                           backend=rasterizer)
    assert out["rgb"].shape == (48, 64, 3) and out["alpha"].shape == out["depth"].shape == (48, 64)
    cam = w2c[:3, :3] @ point + w2c[:3, 3]
    expected = (K @ cam)[:2] / cam[2]
    np.testing.assert_allclose(centroid(out["alpha"]), expected, atol=0.02)
    peak = np.unravel_index(np.argmax(out["alpha"]), out["alpha"].shape)
    assert out["depth"][peak] == pytest.approx(cam[2], rel=1e-5)
    # Straight colour under the splat, the background where nothing is.
    a = out["alpha"][peak]
    np.testing.assert_allclose((out["rgb"][peak] - (1 - a) * np.array([0, 0, 1.0])) / a, [0.9, 0.4, 0.1], atol=1e-5)
    np.testing.assert_allclose(out["rgb"][0, 0], [0, 0, 1.0], atol=1e-6)
    assert out["depth"][0, 0] == 0.0 and out["alpha"][0, 0] == 0.0


def test_no_splats_and_bad_requests(rasterizer):
    empty = reference_render(SplatSet.empty(0), np.diag([10.0, 10.0, 1.0]), np.eye(4), 8, 4, backend=rasterizer)
    assert not empty["alpha"].any() and empty["rgb"].shape == (4, 8, 3)
    with pytest.raises(ValueError, match="SH degree 0"):
        reference_render(SplatSet.empty(2), np.eye(3), np.eye(4), 8, 4, sh_degree=2)
    with pytest.raises(ValueError, match="K must be 3x3"):
        reference_render(SplatSet.empty(2), np.eye(4), np.eye(4), 8, 4)


def _dog_camera(splats: SplatSet, width: int, height: int):
    centre = np.median(splats.means, axis=0)
    extent = np.percentile(np.linalg.norm(splats.means - centre, axis=1), 90)
    w2c = look_at(centre + np.array([0.3, -0.4, -2.2]) * extent, centre)
    f = 0.9 * width
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]), w2c


def test_real_trained_splats_agree_with_the_naive_reference(rasterizer):
    dog = read_splats(shared_data("splats", "plush_dog.ply"))
    K, w2c = _dog_camera(dog, 16, 16)
    # The 40 splats nearest the image centre: real scales, opacities and degree-3 SH.
    cam = dog.means @ w2c[:3, :3].T + w2c[:3, 3]
    near_axis = np.argsort(np.hypot(cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]))[:40]
    subset = dog.subset(np.sort(near_axis))
    out = reference_render(subset, K, w2c, 16, 16, backend=rasterizer)
    coeffs = np.concatenate([subset.sh_dc[:, None], subset.sh_rest], axis=1)
    ref_rgb, ref_alpha, ref_depth = render(subset.means, subset.quats, np.exp(subset.scales),
                                           1 / (1 + np.exp(-subset.opacities.astype(float))), coeffs, w2c, K,
                                           16, 16, sh_degree=3)
    assert ref_alpha.max() > 0.5
    np.testing.assert_allclose(out["rgb"], ref_rgb, atol=1e-4)
    np.testing.assert_allclose(out["alpha"], ref_alpha, atol=1e-4)
    np.testing.assert_allclose(out["depth"], ref_depth, rtol=1e-4, atol=1e-4)


def test_whole_real_model_renders(rasterizer):
    """All 15k splats of a trained model, ~1000 of them under some pixels: the dense path (many depth
    slices, finished tiles dropping out) must still give a clean, sensible image."""
    dog = read_splats(shared_data("splats", "plush_dog.ply"))
    K, w2c = _dog_camera(dog, 48, 36)
    out = reference_render(dog, K, w2c, 48, 36, backend=rasterizer)
    assert all(np.isfinite(v).all() for v in out.values())
    assert 0.1 < (out["alpha"] > 0.5).mean() < 0.95, "the dog should fill part of the frame"
    assert out["rgb"].min() >= 0.0 and out["alpha"].max() <= 1.0
    covered = out["alpha"] > 0.5
    # Expected depth lies within the model's depth range wherever the model covers the pixel.
    z = dog.means @ w2c[2, :3] + w2c[2, 3]
    assert np.all((out["depth"][covered] > z.min()) & (out["depth"][covered] < z.max()))
