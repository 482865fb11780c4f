"""Gradients of the rasterizers: the torch one against finite differences (float64), the compiled Warp one
against the torch one (float32: both its CPU kernels and the GPU's per-pixel ones, run on the CPU),
absgrad, packed, and gsplat's strategies reading info from both."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_raster_reference import CAMERAS, K, look_at, one_thread, scene  # noqa: F401  (one_thread: autouse)
from test_raster_reference import backend as backend  # noqa: F401  (a fixture: the compiled kernels to test)

from bridge.raster import rasterize


def tensors(data, requires_grad=True):
    return [torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=requires_grad) for a in data]


# budget=130 leaves room for two splats per 8x8 tile and slice: gradients must cross depth slices.
@pytest.mark.parametrize("mode, sh_degree, budget", [("RGB+ED", None, 130), ("RGB", 2, 1 << 22)])
def test_gradients_agree_with_finite_differences(mode, sh_degree, budget):
    means, quats, scales, opacities, colors = scene(4, 21, sh_k=None if sh_degree is None else 9, spread=0.3)
    opacities = opacities * 0.8  # keep away from the 0.999 clamp, where the gradient has a kink
    viewmats = torch.tensor(np.stack(CAMERAS), dtype=torch.float64)
    Ks = torch.tensor(np.stack([K, K]), dtype=torch.float64)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], dtype=torch.float64)

    def image(means, quats, scales, opacities, colors):
        out, alpha, _ = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 10, 8,
                                  sh_degree=sh_degree, render_mode=mode, backgrounds=bg, backend="torch",
                                  budget=200)  # tiny chunks: gradients must flow across depth slices
        return out, alpha

    inputs = tensors((means, quats, scales, opacities, colors))
    assert torch.autograd.gradcheck(image, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_means2d_gradient_and_absgrad_for_densification():
    data = tensors(scene(30, 4))
    viewmats = torch.tensor(np.stack(CAMERAS), dtype=torch.float64)
    Ks = torch.tensor(np.stack([K, K]), dtype=torch.float64)
    target = torch.rand(2, 12, 16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out, _, info = rasterize(*data, viewmats, Ks, 16, 12, absgrad=True, backend="torch")
    info["means2d"].retain_grad()
    ((out - target) ** 2).sum().backward()
    grad, absgrad = info["means2d"].grad, info["means2d"].absgrad
    assert grad.shape == absgrad.shape == (2, 30, 2)
    visible = (info["radii"] > 0).all(-1)
    assert (grad[~visible] == 0).all() and (absgrad[~visible] == 0).all()
    # |sum of per-pixel gradients| <= sum of |per-pixel gradients|, with equality for none of the busy ones.
    assert torch.all(grad.abs() <= absgrad + 1e-12)
    assert (absgrad[visible] > grad[visible].abs() + 1e-9).any()
    assert all(torch.isfinite(t.grad).all() for t in data)


def test_absgrad_is_the_sum_over_pixels_of_each_pixels_gradient():
    data = tensors(scene(8, 6, spread=0.3))
    viewmats = torch.tensor(np.stack(CAMERAS[:1]), dtype=torch.float64)
    Ks = torch.tensor(K, dtype=torch.float64)[None]
    bg = torch.tensor([[0.3, 0.1, 0.2]], dtype=torch.float64)
    out, alpha, info = rasterize(*data, viewmats, Ks, 8, 6, absgrad=True, backgrounds=bg, budget=130,
                                 backend="torch")
    image = torch.cat([out, alpha], dim=-1)[0]
    weights = torch.randn(image.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = torch.zeros_like(info["means2d"])
    for row in range(6):
        for col in range(8):
            (g,) = torch.autograd.grad((image[row, col] * weights[row, col]).sum(), info["means2d"],
                                       retain_graph=True)
            expected += g.abs()
    info["means2d"].absgrad.zero_()  # the per-pixel passes above accumulated into it too
    (image * weights).sum().backward()
    assert expected.abs().sum() > 0
    torch.testing.assert_close(info["means2d"].absgrad, expected, rtol=1e-9, atol=1e-12)


def test_packed_info_is_gsplats_packed_layout_with_the_same_image_and_gradients():
    means, *rest = scene(30, 4)
    means = np.array(means)
    means[:5, 0] += 40.0  # far to the side: off-screen for both cameras
    data = tensors((means, *rest))
    viewmats = torch.tensor(np.stack(CAMERAS), dtype=torch.float64)
    Ks = torch.tensor(np.stack([K, K]), dtype=torch.float64)
    target = torch.rand(2, 12, 16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    runs = []
    for packed in (False, True):
        inputs = [t.detach().clone().requires_grad_() for t in data]
        out, alpha, info = rasterize(*inputs, viewmats, Ks, 16, 12, packed=packed, backend="torch")
        info["means2d"].retain_grad()
        ((out - target) ** 2).sum().backward()
        runs.append((out, alpha, info, [t.grad for t in inputs]))
    (out_u, alpha_u, dense, grads_u), (out_p, alpha_p, info, grads_p) = runs
    assert not dense["packed"] and info["packed"]
    assert torch.equal(out_u, out_p) and torch.equal(alpha_u, alpha_p)
    for g_u, g_p in zip(grads_u, grads_p, strict=True):
        torch.testing.assert_close(g_p, g_u, rtol=1e-12, atol=1e-15)
    visible = (dense["radii"] > 0).all(-1)
    pairs = visible.nonzero(as_tuple=True)
    assert 0 < len(info["gaussian_ids"]) < visible.numel()  # some splats are off-screen for a camera
    assert torch.equal(info["camera_ids"], pairs[0]) and torch.equal(info["gaussian_ids"], pairs[1])
    assert (info["batch_ids"] == 0).all()
    for key in ("radii", "depths", "conics", "opacities"):
        assert torch.equal(info[key], dense[key][pairs]), key
    assert torch.equal(info["means2d"], dense["means2d"][pairs])
    torch.testing.assert_close(info["means2d"].grad, dense["means2d"].grad[pairs], rtol=1e-12, atol=1e-15)
    # absgrad's sinks are dense: such a request is answered unpacked, and info says so.
    _, _, info = rasterize(*data, viewmats, Ks, 16, 12, packed=True, absgrad=True, backend="torch")
    assert not info["packed"] and info["means2d"].shape == (2, 30, 2)


CASES = {  # name: (rasterize options, SH coefficients per channel or None)
    "rgb": (dict(), None),
    "rgb+ed, backgrounds": (dict(render_mode="RGB+ED", backgrounds=True), None),
    "sh 3, antialiased": (dict(sh_degree=3, rasterize_mode="antialiased"), 16),
    "sh 1, absgrad": (dict(sh_degree=1, absgrad=True), 4),
    "sh 2, packed": (dict(sh_degree=2, packed=True), 9),
    "depth": (dict(render_mode="D"), None),
    "expected depth": (dict(render_mode="ED"), None),
    "6 channels": (dict(), 6),
}


@pytest.mark.parametrize("case", list(CASES))
def test_warp_images_and_gradients_match_the_torch_backend(case, backend):  # noqa: F811
    """Every output the trainer and the render passes use: the image, alpha, expected depth, the leaves'
    gradients, means2d's gradient (densification), absgrad and radii, to float32 rounding."""
    if backend == "torch":
        pytest.skip("the compiled backend against the torch one")
    options, sh_k = CASES[case]
    means, quats, scales, opacities, colors = scene(60, 31, sh_k=sh_k if options.get("sh_degree") else None,
                                                    spread=0.4)
    if options.get("sh_degree") is None and sh_k:
        colors = np.random.default_rng(1).uniform(0, 1, (60, sh_k))
    width, height = 37, 29  # partial edge tiles
    target = torch.rand(2, height, width, 1, generator=torch.Generator().manual_seed(0))
    runs = {}
    for name, dtype in (("torch", torch.float64), ("warp", torch.float32)):
        leaves = [torch.tensor(np.asarray(a), dtype=dtype, requires_grad=True)
                  for a in (means, quats, scales, opacities, colors)]
        extra = dict(options)
        if extra.pop("backgrounds", False):
            extra["backgrounds"] = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], dtype=dtype)
        viewmats = torch.tensor(np.stack(CAMERAS), dtype=dtype)
        Ks = torch.tensor(np.stack([K * 2, K * 2]), dtype=dtype)
        Ks[:, 2, 2] = 1
        out, alpha, info = rasterize(*leaves, viewmats, Ks, width, height, backend=name, **extra)
        assert info["backend"] == name and info["packed"] == bool(options.get("packed"))
        info["means2d"].retain_grad()
        loss = ((out - target.to(dtype)) ** 2).mean() + (alpha * target.to(dtype)).mean()
        loss.backward()
        runs[name] = (out.detach().double(), alpha.detach().double(), info,
                      [None if t.grad is None else t.grad.double() for t in leaves])
    (out_t, alpha_t, info_t, grads_t), (out_w, alpha_w, info_w, grads_w) = runs["torch"], runs["warp"]
    assert alpha_t.max() > 0.5, "the scene must cover pixels"
    scale = max(1.0, float(out_t.abs().max()))
    torch.testing.assert_close(out_w, out_t, atol=3e-5 * scale, rtol=0)
    torch.testing.assert_close(alpha_w, alpha_t, atol=3e-5, rtol=0)
    assert torch.equal(info_w["radii"], info_t["radii"])
    for name, g_t, g_w in zip(("means", "quats", "scales", "opacities", "colors"), grads_t, grads_w, strict=True):
        if name == "colors" and options.get("render_mode") in ("D", "ED"):
            assert g_t is None and g_w is None
            continue
        assert g_t.norm() > 0, name
        assert float((g_w - g_t).norm() / g_t.norm()) < 2e-4, name
    g_t, g_w = info_t["means2d"].grad.double(), info_w["means2d"].grad.double()
    assert float((g_w - g_t).norm() / g_t.norm()) < 2e-4
    if options.get("absgrad"):
        a_t, a_w = info_t["means2d"].absgrad.double(), info_w["means2d"].absgrad.double()
        assert float((a_w - a_t).norm() / a_t.norm()) < 2e-4


def test_warp_gradients_agree_with_finite_differences_in_float32():
    """An independent check of the compiled backward: central differences of a float32 render, on a few
    well-conditioned coordinates (finite differences in float32 allow a loose tolerance only)."""
    from bridge.raster import warp_backend

    assert not warp_backend.prepare("cpu")
    means, quats, scales, opacities, colors = scene(6, 21, spread=0.3)
    opacities = opacities * 0.8
    viewmats = torch.tensor(np.stack(CAMERAS[:1]), dtype=torch.float32)
    Ks = torch.tensor(K, dtype=torch.float32)[None]
    weights = torch.rand(12, 16, 3, generator=torch.Generator().manual_seed(5))

    def loss(*leaves):
        out, alpha, _ = rasterize(*leaves, viewmats, Ks, 16, 12, backend="warp", render_mode="RGB")
        return (out[0] * weights).sum() + alpha.sum()

    leaves = [torch.tensor(np.asarray(a), dtype=torch.float32, requires_grad=True)
              for a in (means, quats, scales, opacities, colors)]
    loss(*leaves).backward()
    checked = 0
    for index, leaf in enumerate(leaves):
        flat = leaf.grad.reshape(-1)
        for k in torch.argsort(flat.abs(), descending=True)[:3].tolist():
            def at(delta, index=index, k=k):
                moved = [t.detach().clone() for t in leaves]
                moved[index].view(-1)[k] += delta
                return float(loss(*moved))
            eps = 1e-3 * max(0.05, abs(float(leaf.reshape(-1)[k])))
            numeric = (at(eps) - at(-eps)) / (2 * eps)
            assert abs(numeric - float(flat[k])) <= 2e-2 * abs(float(flat[k])) + 1e-2, (index, k)
            checked += 1
    assert checked == 15


@pytest.mark.parametrize("rasterizer", ["torch", "warp"])
@pytest.mark.parametrize("absgrad, packed", [(False, False), (True, False), (False, True)])
def test_default_strategy_densifies_from_our_info(absgrad, packed, rasterizer):
    from gsplat.strategy import DefaultStrategy

    torch.manual_seed(0)
    means, quats, scales, opacities, colors = scene(40, 8, spread=0.5)
    params = torch.nn.ParameterDict({
        "means": torch.tensor(means, dtype=torch.float32),
        "quats": torch.tensor(quats, dtype=torch.float32),
        "scales": torch.log(torch.tensor(scales, dtype=torch.float32)),
        "opacities": torch.logit(torch.tensor(opacities, dtype=torch.float32)),
        "colors": torch.tensor(colors, dtype=torch.float32),
    })
    optimizers = {k: torch.optim.Adam([v], lr=1e-3) for k, v in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, reset_every=1000, grow_grad2d=1e-9,
                               absgrad=absgrad, verbose=False)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    viewmat = torch.tensor(look_at((0.2, 0, -2.5), (0, 0, 0)), dtype=torch.float32)[None]
    Ks = torch.tensor(K, dtype=torch.float32)[None]
    for step in range(2):
        out, _, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                                 torch.sigmoid(params["opacities"]), params["colors"], viewmat, Ks, 16, 12,
                                 absgrad=absgrad, packed=packed, backend=rasterizer)
        assert info["packed"] == packed
        strategy.step_pre_backward(params, optimizers, state, step, info)
        (out - 0.5).abs().mean().backward()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=info["packed"])
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad()
    assert len(params["means"]) > 40, "with a tiny threshold, seen splats must be duplicated or split"
    assert all(len(v) == len(params["means"]) for v in params.values())
    assert torch.isfinite(params["means"]).all()


@pytest.mark.parametrize("keep_pairs", [0, 700])  # recompute every chunk; reuse the first chunks only
def test_backward_that_recomputes_alphas_matches_the_one_that_reuses_them(keep_pairs):
    from bridge.raster.composite import composite_camera
    from bridge.raster.projection import project

    means, quats, scales, opacities, colors = tensors(scene(30, 5, spread=0.3), requires_grad=False)
    proj = project(means, quats, scales, opacities, torch.tensor(np.stack(CAMERAS[:1])),
                   torch.tensor(K)[None], 16, 12)
    target = torch.rand(12, 16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = []
    for keep in (1 << 30, keep_pairs):
        leaves = [t[0].clone().requires_grad_() for t in (proj.means2d, proj.conics, proj.opacities)]
        feats = colors.clone().requires_grad_()
        colour, trans = composite_camera(*leaves, feats, proj.radii[0], proj.depths[0], 16, 12, budget=300,
                                         keep_pairs=keep)
        ((colour - target) ** 2).sum().add(trans.sum()).backward()
        grads.append([t.grad for t in (*leaves, feats)])
    assert all(g.abs().sum() > 0 for g in grads[0])
    for reused, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(recomputed, reused, rtol=1e-12, atol=1e-14)
