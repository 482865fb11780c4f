"""The trainer's parts in process: job validation, the test split, losses against skimage, the MCMC
relocation fallback against the paper's formula, and loading a real distorted COLMAP model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import shared_data

from bridge.protocol import EXIT_BAD_INPUT, BridgeError
from bridge.train.cli import parse_job
from bridge.train.job import make_job

GOOD = {"model": "/m", "images": "/i", "out": "/o"}


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("steps", 1.5), ("downscale", 0.5), ("sh_degree", 4), ("strategy", "fancy"),
    ("device", "tpu"), ("background", [1, 2, 3]), ("background", "black"), ("test_every", -1),
    ("antialiased", "yes"), ("eval_steps", [0]), ("strategy_options", {"nope": 1}),
    ("strategy_options", {"refine_every": "often"}), ("no_such_field", 1), ("model", ""),
    # Every strategy option is range-checked: gsplat would divide by zero or prune every splat mid-run.
    ("strategy_options", {"reset_every": 0}), ("strategy_options", {"prune_opa": 2.0}),
    ("strategy_options", {"grow_grad2d": 0}), ("strategy_options", {"refine_every": 1.5}),
    ("strategy_options", {"absgrad": 1}), ("strategy_options", {"refine_start_iter": -1}),
    ("strategy_options", {"prune_opa": float("nan")}), ("strategy_options", {"key_for_gradient": "means2d"}),
    # The speed-up options.
    ("schedule_scale", -1), ("max_splats", -5), ("res_start", 3), ("res_full_at", 1.5), ("visible_adam", "yes"),
    ("sh_rest_every", 0), ("splats_per_pixel", -0.5),
])
def test_a_bad_job_field_is_named(field, value):
    with pytest.raises(BridgeError) as info:
        make_job({**GOOD, field: value})
    assert info.value.kind == "bad_job" and info.value.exit_code == EXIT_BAD_INPUT
    assert f"'{field}'" in info.value.message or f"'{field}." in info.value.message


def test_strategy_options_in_range_pass_and_out_of_range_name_the_option():
    options = {"refine_every": 50, "absgrad": True, "prune_opa": 0.01, "grow_grad2d": 1, "reset_every": 1}
    assert make_job({**GOOD, "strategy_options": options}).strategy_options == options
    assert make_job({**GOOD, "strategy": "mcmc", "strategy_options": {"noise_lr": 0, "min_opacity": 0.5}})
    with pytest.raises(BridgeError, match="'strategy_options.reset_every': must be between 1 and 1000000, got 0"):
        make_job({**GOOD, "strategy_options": {"reset_every": 0}})
    with pytest.raises(BridgeError, match="'strategy_options.min_opacity': must be between 0 and 0.999, got 1"):
        make_job({**GOOD, "strategy": "mcmc", "strategy_options": {"min_opacity": 1}})


def test_flags_override_the_job_file(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**GOOD, "steps": 500, "strategy": "mcmc", "background": [1, 1, 1]}))
    job = parse_job(["--job", str(path), "--steps", "7", "--background", "0,0.5,1", "--antialiased"])
    assert (job.steps, job.strategy, job.background, job.antialiased) == (7, "mcmc", [0.0, 0.5, 1.0], True)
    assert job.out == "/o" and job.downscale == 1.0 and job.sh_degree == 3
    with pytest.raises(BridgeError, match="bad arguments"):
        parse_job(["--steps", "many"])
    with pytest.raises(BridgeError, match="job file not found"):
        parse_job(["--job", str(tmp_path / "none.json")])


def test_a_preset_fills_its_fields_under_the_job_file_and_the_flags(tmp_path):
    from bridge.protocol import TRAIN_PRESETS

    flags = ["--model", "/m", "--images", "/i", "--out", "/o"]
    fast = parse_job(["--preset", "fast", *flags])
    assert (fast.steps, fast.downscale, fast.sh_degree, fast.snapshot_every) == (3000, 4.0, 1, 250)
    assert (fast.res_start, fast.visible_adam, fast.splats_per_pixel) == (1, True, 1.0)
    assert TRAIN_PRESETS["fast"].speedups == {"visible_adam": True, "splats_per_pixel": 1.0}
    high = parse_job(["--preset", "high", *flags])
    assert (high.steps, high.downscale, high.visible_adam, high.res_start) == (30000, 1.0, False, 1)
    path = tmp_path / "job.json"
    path.write_text(json.dumps({**GOOD, "steps": 500}))
    job = parse_job(["--preset", "standard", "--job", str(path), "--downscale", "3"])
    assert (job.steps, job.downscale, job.res_start, job.visible_adam) == (500, 3.0, 2, True)
    with pytest.raises(BridgeError, match="bad arguments: argument --preset: invalid choice"):
        parse_job(["--preset", "turbo", *flags])
    for preset in TRAIN_PRESETS.values():  # every preset is a valid job
        assert make_job({**GOOD, **preset.fields})


def test_every_8th_view_sorted_by_name_is_held_out():
    from bridge.train.data import split_indices

    train, test = split_indices(17, 8)
    assert test == [0, 8, 16] and train == [i for i in range(17) if i not in (0, 8, 16)]
    assert split_indices(3, 0) == ([0, 1, 2], [])


def test_psnr_and_ssim_match_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from bridge.train.losses import photometric_loss, psnr, ssim

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(37, 53, 3, generator=gen)
    b = (a + 0.1 * torch.randn(37, 53, 3, generator=gen)).clamp(0, 1)
    expected = structural_similarity(a.numpy(), b.numpy(), data_range=1.0, channel_axis=2,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert float(ssim(a, b)) == pytest.approx(expected, abs=1e-5)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0), abs=1e-4)
    loss = photometric_loss(a, b, 0.2)
    assert float(loss) == pytest.approx(0.8 * float((a - b).abs().mean()) + 0.2 * (1 - expected), abs=1e-5)


def _relocation_by_the_paper(o: float, n: int) -> tuple[float, float]:
    new_o = 1 - (1 - o) ** (1 / n)
    denom = sum(math.comb(i - 1, k) * (-1) ** k / math.sqrt(k + 1) * new_o ** (k + 1)
                for i in range(1, n + 1) for k in range(i))
    return new_o, o / denom


def test_mcmc_relocation_fallback_follows_the_paper():
    from bridge.train.mcmc import relocation

    binoms = torch.zeros(51, 51)  # only its size matters: N is clamped to it, as in gsplat's kernel
    opacities = torch.tensor([0.3, 0.9, 0.05, 0.5, 0.7, 0.01, 0.6])
    ratios = torch.tensor([1, 2, 3, 10, 30, 51, 80])
    scales = torch.rand(7, 3) + 0.1
    new_o, new_s = relocation(opacities, scales, ratios, binoms)
    for i in range(7):
        o, factor = _relocation_by_the_paper(float(opacities[i]), min(int(ratios[i]), 51))
        assert float(new_o[i]) == pytest.approx(o, rel=1e-5)
        assert new_s[i].tolist() == pytest.approx((scales[i] * factor).tolist(), rel=1e-4)
    assert torch.equal(new_s[0], scales[0]) or torch.allclose(new_s[0], scales[0])  # one copy: unchanged


def test_mcmc_fallbacks_are_installed_for_cpu_tensors():
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci
    from gsplat.strategy import ops

    from bridge.train import mcmc

    mcmc.install()
    mcmc.install()  # idempotent: never wraps its own wrapper
    quats, scales = torch.randn(5, 4), torch.rand(5, 3)
    covars, precis = ops.quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    expected, _ = _quat_scale_to_covar_preci(quats, scales, True, False, False)
    assert precis is None and torch.allclose(covars, expected, atol=1e-6)
    new_o, _ = ops.compute_relocation(torch.tensor([0.5]), torch.ones(1, 3), torch.tensor([2]), torch.zeros(51, 51))
    assert float(new_o[0]) == pytest.approx(1 - 0.5 ** 0.5)


def test_the_distorted_statue_of_liberty_is_undistorted_for_training(tmp_path):
    """A real SIMPLE_RADIAL model (k = -0.68): the trainer's pinhole images must show each SfM point
    where the distorted camera sees it in the photo; the plain pinhole part alone misses badly."""
    import pycolmap
    from PIL import Image

    from bridge.formats.colmap import read_model
    from bridge.train.data import load_dataset

    root = shared_data("colmap", "statue_of_liberty")
    job = make_job({"model": str(root / "sparse" / "0"), "images": str(root / "images"),
                    "out": str(tmp_path), "downscale": 8})
    data = load_dataset(job)
    assert data.undistorted and (len(data.train), len(data.test)) == (35, 5)
    rec = read_model(root / "sparse" / "0")
    views = {v.name: v for v in rec.views}
    assert [v.name for v in data.test] == [v.name for v in rec.views[::8]]

    def sample(image, xy):
        ij = np.round(xy - 0.5).astype(int)
        inside = (ij[:, 0] >= 2) & (ij[:, 1] >= 2) & (ij[:, 0] < image.shape[1] - 2) & (ij[:, 1] < image.shape[0] - 2)
        return inside, image[np.clip(ij[:, 1], 0, image.shape[0] - 1), np.clip(ij[:, 0], 0, image.shape[1] - 1)]

    errors, naive_errors = [], []
    for tv in data.test:
        view, cam = views[tv.name], rec.cameras[views[tv.name].camera_id]
        with Image.open(root / "images" / tv.name) as img:
            photo = np.asarray(img.convert("RGB").resize((100, 150), Image.BOX), np.float64)
        distorted = pycolmap.Camera(model=cam.model, width=cam.width, height=cam.height, params=cam.params)
        distorted.rescale(100, 150)
        x_cam = rec.points @ view.R.T + view.t
        in_front = x_cam[:, 2] > 0
        seen_xy = distorted.img_from_cam(x_cam[in_front])
        ours_xy = (x_cam[in_front, :2] / x_cam[in_front, 2:]) @ tv.K[:2, :2].T + tv.K[:2, 2]
        naive_xy = (x_cam[in_front, :2] / x_cam[in_front, 2:]) * distorted.params[0] + distorted.params[1:3]
        ok1, truth = sample(photo, seen_xy)
        ok2, ours = sample(tv.image.astype(np.float64), ours_xy)
        ok3, naive = sample(photo, naive_xy)
        # Judge where the distortion moves points by 2+ pixels; elsewhere both are right.
        ok = ok1 & ok2 & ok3 & (np.linalg.norm(seen_xy - naive_xy, axis=1) > 2.0)
        errors.append(np.abs(truth[ok] - ours[ok]).mean())
        naive_errors.append(np.abs(truth[ok] - naive[ok]).mean())
    assert np.mean(errors) < 0.5 * np.mean(naive_errors), (errors, naive_errors)


def test_initial_splats_from_sfm_points_or_random_in_the_cameras_bounds():
    from bridge.train import gaussians
    from bridge.train.data import Dataset

    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3))
    colors = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    data = Dataset(train=[], test=[], points=points, colors=colors, scene_scale=2.0,
                   scene_center=np.array([10.0, 0.0, 0.0]), undistorted=False)
    xyz, rgb = gaussians.initial_splats(data, make_job({**GOOD, "init": "sfm"}), rng)
    assert np.array_equal(xyz, points) and np.allclose(rgb * 255, colors)
    job = make_job({**GOOD, "init": "random", "init_num_points": 500})
    xyz, rgb = gaussians.initial_splats(data, job, rng)
    assert xyz.shape == (500, 3) and np.all(np.abs(xyz - data.scene_center) <= 3.0 * 2.0)
    assert np.abs(xyz - data.scene_center).max() > 5.0  # fills the cube, not just its middle

    params = gaussians.create_params(points, colors / 255.0, make_job({**GOOD, "sh_degree": 2}), rng, "cpu")
    splats = gaussians.to_splats(params)
    assert splats.sh_degree == 2 and np.allclose(splats.colors(), colors / 255.0, atol=1e-6)
    assert np.allclose(splats.alphas(), 0.1) and np.allclose(np.linalg.norm(splats.quats, axis=1), 1.0)
    capped = gaussians.create_params(points, colors / 255.0, make_job({**GOOD, "strategy": "mcmc", "cap_max": 20}),
                                     rng, "cpu")
    assert len(capped["means"]) == 20 and torch.allclose(torch.sigmoid(capped["opacities"]), torch.tensor(0.5))


def test_schedule_scale_scales_gsplats_schedule_with_floors_and_options_win():
    from bridge.train.strategy import make_strategy, sh_band_every, splat_budget

    def strategy(**values):
        job = make_job({**GOOD, **values})
        return make_strategy(job, 100, 1.0)[0], sh_band_every(job)

    default, every = strategy(steps=3000)  # scale 1: gsplat's absolute schedule
    assert (default.refine_start_iter, default.refine_stop_iter, default.refine_every, default.reset_every,
            every) == (500, 15_000, 100, 3000, 1000)
    scaled, every = strategy(steps=3000, schedule_scale=0)  # steps / 30,000 = 0.1
    assert (scaled.refine_start_iter, scaled.refine_stop_iter, scaled.refine_every, scaled.reset_every,
            every) == (50, 1500, 10, 300, 100)
    short, every = strategy(steps=600, schedule_scale=0)  # periods floored at 10 and 300 steps
    assert (short.refine_start_iter, short.refine_stop_iter, short.refine_every, short.reset_every,
            every) == (10, 300, 10, 300, 20)
    given, _ = strategy(steps=3000, schedule_scale=0, strategy_options={"refine_every": 50})
    assert given.refine_every == 50 and given.refine_stop_iter == 1500
    budgeted = make_strategy(make_job({**GOOD, "max_splats": 5000, "splats_per_pixel": 0.5}), 100, 1.0, 4000)[0]
    assert budgeted.max_splats == 2000  # the smaller of the two budgets
    assert splat_budget(make_job({**GOOD, "max_splats": 5000}), 4000) == 5000
    assert splat_budget(make_job({**GOOD, "splats_per_pixel": 2}), 4000) == 8000
    assert splat_budget(make_job(GOOD), 4000) == 0
    mcmc, _ = strategy(steps=3000, schedule_scale=0.5, strategy="mcmc", cap_max=500)
    assert (mcmc.refine_start_iter, mcmc.refine_stop_iter, mcmc.refine_every, mcmc.cap_max) == (250, 12_500, 50, 500)


def _fake_info(n: int, cams: int, rng) -> dict:
    means2d = torch.zeros(cams, n, 2, requires_grad=True)
    means2d.grad = torch.as_tensor(rng.normal(size=(cams, n, 2)), dtype=torch.float32)
    radii = torch.as_tensor(rng.integers(0, 3, (cams, n, 2)), dtype=torch.int32)
    return {"width": 64, "height": 48, "n_cameras": cams, "radii": radii, "gaussian_ids": None, "means2d": means2d}


def test_budget_strategy_gathers_gsplats_statistics_and_grows_within_its_budget():
    from gsplat.strategy import DefaultStrategy

    from bridge.train import gaussians
    from bridge.train.strategy import BudgetStrategy

    rng = np.random.default_rng(0)
    n = 200
    job = make_job({**GOOD, "sh_degree": 1})
    params = gaussians.create_params(rng.normal(size=(n, 3)), rng.random((n, 3)), job, rng, "cpu")
    ours, theirs = BudgetStrategy(refine_scale2d_stop_iter=10), DefaultStrategy(refine_scale2d_stop_iter=10)
    state_ours, state_theirs = ours.initialize_state(), theirs.initialize_state()
    # The same sums without torch.where (no wait for the device). One camera a step, as we train: with
    # several, gsplat's radii update keeps the last camera's value where ours keeps the largest.
    for _ in range(3):
        info = _fake_info(n, 1, rng)
        ours._update_state(params, state_ours, info)
        theirs._update_state(params, state_theirs, info)
    for key in ("grad2d", "count", "radii"):
        torch.testing.assert_close(state_ours[key], state_theirs[key])

    budget = BudgetStrategy(max_splats=260, initial_splats=n, refine_start_iter=0, refine_stop_iter=100,
                            grow_grad2d=1e-9, refine_every=10)
    optimizers = gaussians.create_optimizers(params, 1.0)
    state = budget.initialize_state(scene_scale=1e3)  # every splat counts as small: grown by duplication
    means = params["means"].detach().clone()
    assert budget.budget(0) == n and budget.budget(50) == 230 and budget.budget(1000) == 260
    budget._update_state(params, state, _fake_info(n, 1, rng))
    grads = (state["grad2d"] / state["count"].clamp_min(1)).clone()
    budget._grow_gs(params, optimizers, state, 50)  # every splat is a candidate; 30 fit
    assert len(params["means"]) == 230 and budget.grow_grad2d == 1e-9
    # the 30 grown are those with the largest gradients (duplicates are appended at the end)
    top = torch.topk(grads, 30).indices.sort().values
    torch.testing.assert_close(params["means"][n:].detach(), means[top])


def test_visible_adam_updates_only_seen_splats_as_gsplats_kernel_does():
    from bridge.train.gaussians import VisibleAdam

    torch.manual_seed(0)
    start = torch.randn(6, 3)
    param = torch.nn.Parameter(start.clone())
    opt = VisibleAdam([{"params": param, "lr": 0.1}], eps=1e-15, betas=(0.9, 0.999))
    visible = torch.tensor([True, False, True, True, False, False])
    m, v = torch.zeros(6, 3), torch.zeros(6, 3)
    expected = start.clone()
    for _ in range(3):
        grad = torch.randn(6, 3)
        param.grad = grad.clone()
        opt.step(visible)
        # SelectiveAdam's CUDA kernel: plain moments, no bias correction, rows outside the mask untouched
        m[visible] = 0.9 * m[visible] + 0.1 * grad[visible]
        v[visible] = 0.999 * v[visible] + 0.001 * grad[visible] ** 2
        expected[visible] -= 0.1 * m[visible] / (v[visible].sqrt() + 1e-15)
    torch.testing.assert_close(param.data, expected)
    torch.testing.assert_close(opt.state[param]["exp_avg"], m)
    plain = torch.nn.Parameter(start.clone())
    ref = torch.nn.Parameter(start.clone())
    a, b = VisibleAdam([plain], lr=0.1, eps=1e-15), torch.optim.Adam([ref], lr=0.1, eps=1e-15)
    for p, o in ((plain, a), (ref, b)):
        p.grad = torch.ones(6, 3)
        o.step()
    torch.testing.assert_close(plain.data, ref.data)  # no mask: torch's Adam


def test_resolution_schedule_goes_coarse_to_fine_with_exact_intrinsics():
    from bridge.train.resolution import ResolutionSchedule

    image = torch.arange(128 * 192 * 3, dtype=torch.float32).reshape(128, 192, 3) % 251
    K = torch.tensor([[[150.0, 0.0, 96.0], [0.0, 150.0, 64.0], [0.0, 0.0, 1.0]]])
    sched = ResolutionSchedule([image.to(torch.uint8)], [K], steps=1000, res_start=4, full_at=0.5)
    assert [sched.level(s) for s in (0, 249, 250, 499, 500, 999)] == [2, 2, 1, 1, 0, 0]
    small, K_small = sched.view(0, 0)
    assert small.shape == (32, 48, 3)
    torch.testing.assert_close(small[0, 0], image[:4, :4].reshape(-1, 3).mean(0) / 255.0)
    torch.testing.assert_close(K_small[0, :2], K[0, :2] / 4)  # pixel (0, 0) covers [0, 1]^2: exact
    full, K_full = sched.view(500, 0)
    assert full.shape == (128, 192, 3) and full.dtype == torch.float32 and K_full is K
    # No coarse level under 32 pixels on the short side: 1/8 of 128 would be 16.
    assert ResolutionSchedule([image.to(torch.uint8)], [K], 1000, res_start=8, full_at=0.5).levels == 2
    assert ResolutionSchedule([image[:40, :60].to(torch.uint8)], [K], 1000, res_start=4, full_at=0.5).levels == 0
    off = ResolutionSchedule([image.to(torch.uint8)], [K], steps=1000, res_start=1, full_at=0.5)
    assert off.level(0) == 0 and len(off.images) == 1


def test_eta_counts_the_dearer_full_size_steps_still_to_come():
    from bridge.train.resolution import ResolutionSchedule, StepCosts

    image = torch.zeros(128, 192, 3, dtype=torch.uint8)
    K = torch.tensor([[[150.0, 0.0, 96.0], [0.0, 150.0, 64.0], [0.0, 0.0, 1.0]]])
    sched = ResolutionSchedule([image], [K], steps=1000, res_start=4, full_at=0.5)
    assert sched.steps_left(0, 1000) == {2: 250, 1: 250, 0: 500}
    assert sched.steps_left(300, 1000) == {2: 0, 1: 200, 0: 500}
    assert all(sum(sched.steps_left(s, 1000).values()) == 1000 - s for s in range(0, 1001, 7))
    assert all(sched.level(s) == min(lv for lv, n in sched.steps_left(s, s + 1).items() if n) for s in range(1000))
    flat = ResolutionSchedule([image], [K], steps=1000, res_start=1, full_at=0.5)
    assert flat.steps_left(400, 1000) == {0: 600}

    def cost(level):  # a step costs pixels^0.4, as fixed costs make it on the CPU
        return 1e-3 * sched.pixels(level) ** 0.4

    costs = StepCosts(sched)
    for step in range(100):
        costs.add(sched.level(step), cost(sched.level(step)))
    # One level measured: later levels scale by their pixel ratio (4x, 16x here) to the power 1/3.
    expected = 150 * cost(2) + (250 * 4 ** (1 / 3) + 500 * 16 ** (1 / 3)) * cost(2)
    assert costs.eta(100, 1000) == pytest.approx(expected)
    assert costs.eta(100, 1000) > 900 * cost(2)  # what the last steps' rate alone said
    for step in range(100, 300):
        costs.add(sched.level(step), cost(sched.level(step)))
    # Two levels measured: the power is fitted, so a power-law cost is predicted exactly.
    assert costs.eta(300, 1000) == pytest.approx(200 * cost(1) + 500 * cost(0))
    for step in range(300, 600):
        costs.add(sched.level(step), cost(sched.level(step)))
    assert costs.eta(600, 1000) == pytest.approx(400 * cost(0))
