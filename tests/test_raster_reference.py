"""A deliberately naive rasterizer in numpy float64: one splat, one pixel at a time, no tiles.

Written from the 3DGS / gsplat 1.5.3 rules, independently of bridge/raster, to check it. Tiles need
no modelling: gsplat's opacity-aware box ends where alpha falls under 1/255, so a pixel outside a
splat's tiles would skip that splat anyway.
"""
from __future__ import annotations

import math

import numpy as np

SH_C0 = 0.28209479177387814


def quat_to_matrix(q):
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def sh_value(degree, d, coeffs):
    """The 3DGS real SH sum, written out term by term (d is normalised here)."""
    x, y, z = d / np.linalg.norm(d)
    basis = [SH_C0]
    if degree >= 1:
        basis += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        basis += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                  0.31539156525252005 * (2 * z * z - x * x - y * y), -1.0925484305920792 * x * z,
                  0.5462742152960396 * (x * x - y * y)]
    if degree >= 3:
        basis += [-0.5900435899266435 * y * (3 * x * x - y * y), 2.890611442640554 * x * y * z,
                  -0.4570457994644658 * y * (4 * z * z - x * x - y * y),
                  0.3731763325901154 * z * (2 * z * z - 3 * x * x - 3 * y * y),
                  -0.4570457994644658 * x * (4 * z * z - x * x - y * y), 1.445305721320277 * z * (x * x - y * y),
                  -0.5900435899266435 * x * (x * x - 3 * y * y)]
    return sum(b * np.asarray(coeffs[i], float) for i, b in enumerate(basis))


def render(means, quats, scales, opacities, colors, viewmat, K, width, height, sh_degree=None,
           background=None, near=0.01, far=1e10, eps2d=0.3, antialiased=False):
    """(rgb-or-features [H,W,D], alpha [H,W], expected depth [H,W]) for one camera, numpy in float64."""
    viewmat, K = np.asarray(viewmat, float), np.asarray(K, float)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    cam_centre = -R.T @ t
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    splats = []
    for i in range(len(means)):
        p = R @ np.asarray(means[i], float) + t
        if not near <= p[2] <= far:
            continue
        M = quat_to_matrix(quats[i]) @ np.diag(np.asarray(scales[i], float))
        cov = R @ M @ M.T @ R.T
        # The Jacobian is taken at the mean clamped to 1.3x the frustum (gsplat's guard band).
        lim_x = (cx / fx + 0.15 * width / fx, (width - cx) / fx + 0.15 * width / fx)
        lim_y = (cy / fy + 0.15 * height / fy, (height - cy) / fy + 0.15 * height / fy)
        u = min(max(p[0] / p[2], -lim_x[0]), lim_x[1])
        v = min(max(p[1] / p[2], -lim_y[0]), lim_y[1])
        J = np.array([[fx / p[2], 0, -fx * u / p[2]], [0, fy / p[2], -fy * v / p[2]]])
        cov2 = J @ cov @ J.T
        det0 = np.linalg.det(cov2)
        cov2 = cov2 + eps2d * np.eye(2)
        det = np.linalg.det(cov2)
        if det <= 0:
            continue
        opacity = float(opacities[i])
        if antialiased:
            opacity *= math.sqrt(max(det0 / det, 0.0))
        if opacity < 1 / 255:
            continue
        if sh_degree is None:
            feat = np.asarray(colors[i], float)
        else:
            feat = np.maximum(sh_value(sh_degree, np.asarray(means[i], float) - cam_centre, colors[i]) + 0.5, 0.0)
        centre = np.array([fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy])
        splats.append((p[2], i, centre, np.linalg.inv(cov2), opacity, feat))
    splats.sort(key=lambda s: (s[0], s[1]))
    n_feat = len(colors[0]) if sh_degree is None else 3
    image = np.zeros((height, width, n_feat))
    alpha_img = np.zeros((height, width))
    depth_img = np.zeros((height, width))
    for row in range(height):
        for col in range(width):
            pix = np.array([col + 0.5, row + 0.5])
            T, acc, acc_d = 1.0, np.zeros(n_feat), 0.0
            for z, _, centre, inv, opacity, feat in splats:
                d = centre - pix
                sigma = 0.5 * d @ inv @ d
                a = min(0.999, opacity * math.exp(-sigma))
                if sigma < 0 or a < 1 / 255:
                    continue
                if T * (1 - a) <= 1e-4:
                    break
                acc += T * a * feat
                acc_d += T * a * z
                T *= 1 - a
            if background is not None:
                acc = acc + T * np.asarray(background, float)
            image[row, col] = acc
            alpha_img[row, col] = 1 - T
            depth_img[row, col] = acc_d / max(1 - T, 1e-10)
    return image, alpha_img, depth_img


# ---------------------------------------------------------------------------------------------
# The backends against the reference: the PyTorch one (float64) and the compiled Warp one (float32,
# its SIMD tile kernels, and the GPU's per-pixel kernels run on the CPU: ``warp-pixels``)

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import ROOT  # noqa: E402,F401  (puts the project on sys.path)

from bridge.raster import rasterize, select_backend  # noqa: E402

W, H = 16, 12


@pytest.fixture(autouse=True)
def one_thread():
    """These tensors are tiny: threads gain nothing, and on a busy machine OpenMP's waits cost 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

K = np.array([[18.0, 0, 7.5], [0, 17.0, 6.25], [0, 0, 1]])
BACKENDS = ["torch", "warp", "warp-pixels"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """A backend name for :func:`torch_render`; "warp-pixels" is Warp with the GPU's per-pixel kernels."""
    if request.param.startswith("warp"):
        from bridge.raster import warp_backend

        reason = warp_backend.prepare("cpu")
        if reason:
            pytest.fail(f"the compiled rasterizer does not start here: {reason}")
        if request.param == "warp-pixels":
            monkeypatch.setenv("SPLATWORK_WARP_CPU_KERNELS", "pixel")
            reason = warp_backend.prepare("cpu")
            assert not reason, reason
    return request.param


def tol(backend: str, atol: float) -> float:
    """float64 for torch; Warp computes in float32, a little over its rounding."""
    return atol if backend == "torch" else max(atol, 3e-5)


def look_at(eye, target, up=(0, -1, 0)):
    """World-to-camera, OpenCV axes (+z towards the target, +y down)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(np.asarray(up, float), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z])
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def scene(n, seed, sh_k=None, spread=0.6):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, spread, (n, 3))
    quats = rng.normal(0, 1, (n, 4))
    scales = rng.uniform(0.04, 0.3, (n, 3))
    opacities = rng.uniform(0.05, 0.99, n)
    colors = rng.uniform(0, 1, (n, 3)) if sh_k is None else rng.normal(0, 0.4, (n, sh_k, 3))
    return means, quats, scales, opacities, colors


CAMERAS = [look_at((0.3, -0.2, -3.0), (0, 0, 0)), look_at((2.5, 0.5, -1.5), (0.1, 0, 0))]


def torch_render(means, quats, scales, opacities, colors, viewmats, backend="torch", **kw):
    dtype = torch.float64 if backend == "torch" else torch.float32
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    Ks = t(np.stack([K] * len(viewmats)))
    if "backgrounds" in kw:
        kw["backgrounds"] = kw["backgrounds"].to(dtype)
    out = rasterize(t(means), t(quats), t(scales), t(opacities), t(colors), t(np.stack(viewmats)), Ks, W, H,
                    backend=backend.split("-")[0], **kw)
    assert out[2]["backend"] == backend.split("-")[0]
    return tuple(x.double() for x in out[:2]) + (out[2],)


@pytest.mark.parametrize("seed", [0, 1])
def test_rgb_ed_and_alpha_match_the_naive_reference(seed, backend):
    data = scene(24, seed)
    colors, alphas, info = torch_render(*data, CAMERAS, render_mode="RGB+ED", backend=backend)
    for cam, viewmat in enumerate(CAMERAS):
        ref_rgb, ref_alpha, ref_depth = render(*data, viewmat, K, W, H)
        np.testing.assert_allclose(colors[cam, ..., :3].numpy(), ref_rgb, atol=tol(backend, 1e-5))
        np.testing.assert_allclose(alphas[cam, ..., 0].numpy(), ref_alpha, atol=tol(backend, 1e-5))
        np.testing.assert_allclose(colors[cam, ..., 3].numpy(), ref_depth, atol=tol(backend, 1e-5) * 4)
    assert alphas.max() > 0.5, "the scene must actually cover pixels for this test to mean anything"
    assert info["radii"].shape == (2, 24, 2) and info["means2d"].shape == (2, 24, 2)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_degrees_match_the_reference(degree, backend):
    data = scene(12, 10 + degree, sh_k=16)
    colors, _, _ = torch_render(*data, CAMERAS[1:], sh_degree=degree, backend=backend)
    ref, _, _ = render(*data, CAMERAS[1], K, W, H, sh_degree=degree)
    np.testing.assert_allclose(colors[0].numpy(), ref, atol=tol(backend, 1e-5))


def test_antialiased_mode_and_backgrounds_match_the_reference(backend):
    data = scene(16, 3)
    bg = np.array([[0.2, 0.5, 0.9]])
    colors, alphas, _ = torch_render(*data, CAMERAS[:1], rasterize_mode="antialiased",
                                     backgrounds=torch.tensor(bg), backend=backend)
    ref, ref_alpha, _ = render(*data, CAMERAS[0], K, W, H, background=bg[0], antialiased=True)
    np.testing.assert_allclose(colors[0].numpy(), ref, atol=tol(backend, 1e-5))
    np.testing.assert_allclose(alphas[0, ..., 0].numpy(), ref_alpha, atol=tol(backend, 1e-5))
    # Where nothing is drawn the background shows through unchanged.
    empty = ref_alpha < 1e-6
    assert empty.any()
    np.testing.assert_allclose(colors[0].numpy()[empty], np.broadcast_to(bg, (empty.sum(), 3)),
                               atol=1e-7 if backend == "torch" else 1e-6)


def test_depth_modes_agree_with_each_other(backend):
    data = scene(16, 11)
    rgbed, alpha, _ = torch_render(*data, CAMERAS[:1], render_mode="RGB+ED", backend=backend)
    d, _, _ = torch_render(*data, CAMERAS[:1], render_mode="D", backend=backend)
    ed, _, _ = torch_render(*data, CAMERAS[:1], render_mode="ED", backend=backend)
    rgbd, _, _ = torch_render(*data, CAMERAS[:1], render_mode="RGB+D", backend=backend)
    close = dict(atol=1e-6, rtol=1e-5) if backend != "torch" else {}
    torch.testing.assert_close(ed[..., 0], rgbed[..., 3], **close)
    torch.testing.assert_close(d[..., 0], rgbd[..., 3], **close)
    torch.testing.assert_close(d, ed * alpha, **close)  # accumulated depth = expected depth x coverage
    torch.testing.assert_close(rgbd[..., :3], rgbed[..., :3], **close)


def test_early_termination_stops_before_the_splat_that_would_finish_the_pixel(backend):
    # Ten nearly opaque, wide splats stacked in depth: transmittance hits 1e-4 after two of them.
    n = 10
    means = np.stack([np.zeros(n), np.zeros(n), np.linspace(0, 2, n)], axis=1)
    quats = np.tile([1.0, 0, 0, 0], (n, 1))
    scales = np.full((n, 3), 2.0)
    opacities = np.full(n, 0.995)
    colors = np.eye(3)[np.arange(n) % 3] * 0.5 + 0.1 * np.arange(n)[:, None]
    viewmat = look_at((0, 0, -3), (0, 0, 0))
    out, alphas, _ = torch_render(means, quats, scales, opacities, colors, [viewmat], backend=backend)
    ref, ref_alpha, _ = render(means, quats, scales, opacities, colors, viewmat, K, W, H)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(alphas[0, ..., 0].numpy(), ref_alpha, atol=1e-7 if backend == "torch" else 1e-6)
    # The centre pixel took only the nearest splat: the next would have left T below 1e-4.
    a = float(alphas[0, 6, 7, 0])
    assert 0.98 < a < 0.999
    np.testing.assert_allclose(out[0, 6, 7].numpy() / a, colors[0], atol=1e-9 if backend == "torch" else 1e-6)


def test_culling_near_far_and_off_screen(backend):
    means = np.array([[0, 0, 0.005], [0, 0, 50.0], [40.0, 0, 3.0], [0.0, 0, 3.0]])
    quats = np.tile([1.0, 0, 0, 0], (4, 1))
    scales = np.full((4, 3), 0.3)
    opacities = np.full(4, 0.9)
    colors = np.eye(4)[:, :3] + np.array([0, 0, 0.0])
    _, _, info = torch_render(means, quats, scales, opacities, colors, [np.eye(4)], far_plane=20.0, backend=backend)
    visible = (info["radii"][0] > 0).all(-1).tolist()
    assert visible == [False, False, False, True]  # too near, too far, off screen, seen


def test_chunking_and_depth_slices_do_not_change_the_image():
    data = scene(40, 7, spread=0.4)
    full, full_a, _ = torch_render(*data, CAMERAS[:1])
    # 300 pairs per chunk: one 16x16 tile can hold just one splat per slice, so every tile is
    # split into depth slices that carry transmittance (and the finished flag) forward.
    tiny, tiny_a, _ = torch_render(*data, CAMERAS[:1], budget=300)
    np.testing.assert_allclose(tiny.numpy(), full.numpy(), atol=1e-12)
    np.testing.assert_allclose(tiny_a.numpy(), full_a.numpy(), atol=1e-12)


def test_tiles_are_dropped_only_where_the_splat_cannot_reach_1_255():
    """The ellipse test drops tiles of a splat's box; at every pixel centre of a dropped tile the splat's
    alpha must be under 1/255 (long thin splats make boxes that are mostly empty)."""
    from bridge.raster.composite import bin_tiles
    from bridge.raster.projection import project

    rng = np.random.default_rng(4)
    means, quats, _, opacities, _ = scene(300, 11, spread=0.5)
    scales = rng.uniform(0.01, 0.5, (300, 3)) * rng.uniform(0.02, 1.0, (300, 1)) ** [0, 1, 0]  # elongated
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    width, height, tile = 48, 40, 8
    proj = project(t(means), t(quats), t(scales), t(opacities), t(CAMERAS[0])[None], t(K * 3)[None], width, height)
    m2, conics, opac = proj.means2d[0], proj.conics[0], proj.opacities[0]
    args = (m2, proj.radii[0], proj.depths[0], tile, width // tile, height // tile)
    every = set(zip(*(x.tolist() for x in bin_tiles(*args)), strict=True))
    kept = set(zip(*(x.tolist() for x in bin_tiles(*args, conics, opac)), strict=True))
    dropped = every - kept
    assert kept <= every and len(dropped) > 0.1 * len(every)
    offsets = np.arange(tile) + 0.5
    for tile_id, splat in dropped:
        px = (tile_id % (width // tile)) * tile + offsets[None, :] - float(m2[splat, 0])
        py = (tile_id // (width // tile)) * tile + offsets[:, None] - float(m2[splat, 1])
        a, b, c = conics[splat].double().tolist()
        alpha = float(opac[splat]) * np.exp(-(0.5 * (a * px * px + c * py * py) + b * px * py))
        assert alpha.max() < 1 / 255


@pytest.mark.parametrize("seed", [4, 5])
def test_warp_binning_gives_the_same_depth_ordered_tile_lists(seed, backend):
    """The compiled binning (count, write in depth order, stable sort by tile) against ``bin_tiles``: the
    same splat-tile pairs, each tile's list in the same depth order (ties by index)."""
    if backend != "warp":
        pytest.skip("the compiled backend's binning")
    from bridge.raster import warp_backend
    from bridge.raster.composite import bin_tiles
    from bridge.raster.projection import project

    rng = np.random.default_rng(seed)
    means, quats, _, opacities, _ = scene(400, seed, spread=0.5)
    scales = rng.uniform(0.01, 0.5, (400, 3)) * rng.uniform(0.02, 1.0, (400, 1)) ** [0, 1, 0]
    means[:20, 2] = means[20:40, 2]  # equal depths: ties go by index
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    width, height = 53, 41  # partial edge tiles
    proj = project(t(means), t(quats), t(scales), t(opacities), t(CAMERAS[0])[None], t(K * 3)[None], width, height)
    m2, conics, opac, radii, depths = proj.means2d[0], proj.conics[0], proj.opacities[0], proj.radii[0], proj.depths[0]
    plan = warp_backend._Plan(m2, conics, opac, radii, depths, width, height)
    tiles_x, tiles_y = plan.tiles_x, plan.tiles_y
    tile_ids, splat_ids = bin_tiles(m2, radii, depths, plan.ts, tiles_x, tiles_y, conics, opac)
    counts = torch.bincount(tile_ids, minlength=tiles_x * tiles_y)
    assert plan.offsets[1:].tolist() == torch.cumsum(counts, 0).tolist()
    assert plan.splat_ids().tolist() == splat_ids.tolist()
    assert plan.pairs > 1000


@pytest.mark.parametrize("channels", [1, 5, 9])
def test_per_camera_colors_and_many_channels(backend, channels):
    means, quats, scales, opacities, _ = scene(10, 5)
    feats = np.random.default_rng(0).uniform(0, 1, (2, 10, channels))
    out, _, _ = torch_render(means, quats, scales, opacities, feats, CAMERAS, backend=backend)
    for cam in range(2):
        ref, _, _ = render(means, quats, scales, opacities, feats[cam], CAMERAS[cam], K, W, H)
        np.testing.assert_allclose(out[cam].numpy(), ref, atol=tol(backend, 1e-5))


def test_auto_backend_is_gsplat_on_cuda_then_warp_then_torch():
    from bridge.raster.kernels import kernels_unavailable
    from bridge.raster.warp_backend import unavailable

    # On CUDA, gsplat where its kernels load; else the compiled Warp rasterizer (CPU or CUDA, float32);
    # else ours in PyTorch (MPS, float64, no Warp).
    warp = "torch" if unavailable() else "warp"
    assert select_backend("auto", "cuda:0") == ("gsplat" if not kernels_unavailable() else "torch")
    assert select_backend("auto", "cpu") == warp
    assert select_backend("auto", "cpu", torch.float64) == select_backend("auto", "mps") == "torch"
    assert select_backend("torch", "cuda") == "torch"
    data = [torch.tensor(a, dtype=torch.float32) for a in scene(3, 0)]
    _, _, info = rasterize(*data, torch.eye(4)[None], torch.tensor(K, dtype=torch.float32)[None], W, H)
    assert info["backend"] == warp and info["packed"] is False


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(quats=torch.zeros(3, 3)), "quats must be [3, 4]"),
        (dict(render_mode="RGBD"), "render_mode 'RGBD'"),
        (dict(sh_degree=2), "SH colors must be"),
        (dict(backend="vulkan"), "unknown rasterizer backend"),
        (dict(backend="gsplat"), "needs CUDA tensors"),
        (dict(backend="warp", means=torch.zeros(3, 3).double(), quats=torch.zeros(3, 4).double(),
              scales=torch.ones(3, 3).double(), opacities=torch.ones(3).double(), colors=torch.ones(3, 3).double(),
              viewmats=torch.eye(4).double()[None], Ks=torch.tensor(K)[None]), "takes float32 tensors"),
        (dict(width=0), "positive integers"),
        (dict(opacities=torch.ones(3, dtype=torch.float64)), "one floating-point dtype"),
    ],
)
def test_bad_input_gets_one_clear_error(change, message):
    args = dict(means=torch.zeros(3, 3), quats=torch.zeros(3, 4), scales=torch.ones(3, 3),
                opacities=torch.ones(3), colors=torch.ones(3, 3), viewmats=torch.eye(4)[None],
                Ks=torch.tensor(K, dtype=torch.float32)[None], width=W, height=H)
    args.update(change)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rasterize(**args)
