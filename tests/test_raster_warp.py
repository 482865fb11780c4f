"""The compiled (Warp) rasterizer's bad input and faults, its compile cache, and the fallback to PyTorch.

Its images and gradients against the PyTorch backend are in test_raster_reference.py,
test_raster_autograd.py and test_raster_render.py (every case there runs on both).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BRIDGE_PYTHON, ROOT
from test_raster_reference import CAMERAS, K, one_thread, scene  # noqa: F401  (one_thread: autouse)

from bridge import protocol
from bridge.raster import rasterize, warp_backend


@pytest.fixture(scope="module", autouse=True)
def compiled():
    reason = warp_backend.prepare("cpu")
    if reason:
        pytest.fail(f"the compiled rasterizer does not start here: {reason}")


def render(data, viewmat=CAMERAS[0], width=16, height=12, backend="warp", grad=True, **kw):
    leaves = [torch.tensor(np.asarray(a), dtype=torch.float32, requires_grad=grad) for a in data]
    out, alpha, info = rasterize(*leaves, torch.tensor(viewmat, dtype=torch.float32)[None],
                                 torch.tensor(K, dtype=torch.float32)[None], width, height, backend=backend, **kw)
    if grad and out.requires_grad:
        (out.sum() + alpha.sum()).backward()
    return out.detach(), alpha.detach(), info, [t.grad for t in leaves]


def test_a_frame_with_nothing_visible_is_the_background_with_zero_gradients():
    means, quats, scales, opacities, colors = scene(20, 1)
    means = np.asarray(means) + [0, 0, -10.0]  # all behind the camera
    bg = torch.tensor([[0.2, 0.3, 0.4]])
    out, alpha, info, grads = render((means, quats, scales, opacities, colors), backgrounds=bg)
    assert not (info["radii"] > 0).any()
    assert (alpha == 0).all() and torch.allclose(out, bg.expand(12, 16, 3)[None])
    assert all(g is None or (g == 0).all() for g in grads)


@pytest.mark.parametrize("field, value", [("means", np.nan), ("scales", np.inf), ("quats", np.nan),
                                          ("opacities", np.nan), ("means", np.inf), ("scales", 0.0)])
def test_nan_and_inf_splats_are_culled_and_the_rest_renders_as_on_torch(field, value):
    data = dict(zip(("means", "quats", "scales", "opacities", "colors"), scene(30, 2), strict=True))
    data = {k: np.array(v, dtype=np.float64) for k, v in data.items()}
    data[field][:5] = value
    out_w, alpha_w, info_w, grads_w = render(tuple(data.values()))
    out_t, alpha_t, info_t, _ = render(tuple(data.values()), backend="torch")
    assert torch.equal(info_w["radii"], info_t["radii"])
    if not np.isfinite(value):
        assert not (info_w["radii"][0, :5] > 0).all(-1).any()
    torch.testing.assert_close(out_w, out_t, atol=3e-5, rtol=0)
    torch.testing.assert_close(alpha_w, alpha_t, atol=3e-5, rtol=0)
    assert all(torch.isfinite(g[5:]).all() for g in grads_w if g is not None)


def test_nan_colours_give_nan_pixels_not_a_crash():
    means, quats, scales, opacities, colors = scene(30, 3)
    colors = np.array(colors)
    colors[0] = np.nan
    out, alpha, _, _ = render((means, quats, scales, opacities, colors))
    assert torch.isfinite(alpha).all() and out.shape == (1, 12, 16, 3)


@pytest.mark.parametrize("width, height", [(1, 1), (1, 7), (9, 1), (17, 9)])
def test_tiny_and_odd_images(width, height):
    data = scene(25, 4)
    out_w, alpha_w, _, _ = render(data, width=width, height=height)
    out_t, alpha_t, _, _ = render(data, width=width, height=height, backend="torch")
    assert out_w.shape == (1, height, width, 3)
    torch.testing.assert_close(out_w, out_t, atol=3e-5, rtol=0)
    torch.testing.assert_close(alpha_w, alpha_t, atol=3e-5, rtol=0)


def test_a_zero_size_image_is_a_clear_error():
    with pytest.raises(ValueError, match="positive integers"):
        render(scene(3, 0), width=0, height=0)


def test_a_huge_splat_covering_every_tile():
    means, quats, scales, opacities, colors = scene(10, 5)
    scales = np.array(scales)
    scales[0] = 50.0  # in front of the camera and covering the whole frame
    means = np.array(means)
    means[0] = [0.0, 0.0, 0.5]
    out_w, alpha_w, info, grads_w = render((means, quats, scales, opacities, colors), width=64, height=48)
    out_t, alpha_t, _, grads_t = render((means, quats, scales, opacities, colors), width=64, height=48,
                                        backend="torch")
    assert (info["radii"][0, 0] >= 48).all()
    torch.testing.assert_close(out_w, out_t, atol=3e-5, rtol=0)
    torch.testing.assert_close(alpha_w, alpha_t, atol=3e-5, rtol=0)
    for g_w, g_t in zip(grads_w, grads_t, strict=True):
        assert float((g_w - g_t).norm() / g_t.norm().clamp_min(1e-12)) < 2e-4


def test_many_splats_on_a_small_image_and_the_pair_limit(monkeypatch):
    """300,000 splats on 8x6 pixels: each pixel walks a long list (most never reach 1e-4). The SIMD tile
    kernels and the per-pixel ones agree; past the int32 pair limit the answer is a clear error."""
    g = torch.Generator().manual_seed(0)
    n = 300_000
    means = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0, 0, 3.0])
    data = (means, torch.randn(n, 4, generator=g), torch.rand(n, 3, generator=g) * 0.02,
            torch.rand(n, generator=g) * 0.3, torch.rand(n, 3, generator=g))
    out, alpha, _, _ = render(data, viewmat=np.eye(4), width=8, height=6, grad=False)
    monkeypatch.setenv("SPLATWORK_WARP_CPU_KERNELS", "pixel")
    assert not warp_backend.prepare("cpu")
    out_p, alpha_p, _, _ = render(data, viewmat=np.eye(4), width=8, height=6, grad=False)
    assert float(alpha.median()) > 0.99
    torch.testing.assert_close(out, out_p, atol=1e-4, rtol=0)
    torch.testing.assert_close(alpha, alpha_p, atol=1e-4, rtol=0)
    monkeypatch.setattr(warp_backend, "MAX_PAIRS", 1000)
    with pytest.raises(ValueError, match="splat-tile pairs .* limit of 1,000: use backend='torch'"):
        render(data, viewmat=np.eye(4), width=8, height=6, grad=False)


# ---- the compile cache and the fallback, through real bridge processes ----------------------------


def _train(tmp_path: Path, scene_dir: Path, out: str, env: dict) -> tuple[int, list, str]:
    args = ["--model", scene_dir / "sparse" / "0", "--images", scene_dir / "images", "--out", tmp_path / out,
            "--steps", "3", "--test-every", "0", "--progress-every", "1", "--snapshot-every", "0"]
    proc = subprocess.run([BRIDGE_PYTHON, "-m", "bridge", "train", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    events = [e for e in map(protocol.decode_event, proc.stdout.splitlines()) if e is not None]
    return proc.returncode, events, proc.stderr


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    from test_train import make_scene

    folder = tmp_path_factory.mktemp("warp_scene")
    make_scene(folder)
    return folder


def _stages(events):
    return [e for e in events if isinstance(e, (protocol.Stage, protocol.Progress))
            and e.stage == "compiling_rasterizer"]


def test_first_compile_is_a_stage_with_progress_then_cached_and_a_corrupt_cache_is_rebuilt(tiny_scene, tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "SPLATWORK_CACHE_DIR": str(cache)}
    # Another Warp version's cache beside ours is left alone and never read.
    (cache / "warp" / "1.0.0" / "wp_junk").mkdir(parents=True)
    code, events, stderr = _train(tmp_path, tiny_scene, "first", env)
    assert code == 0, stderr[-3000:]
    hello = next(e for e in events if isinstance(e, protocol.Hello))
    assert (hello.device, hello.backend) == ("cpu", "warp") and "compiled rasterizer" in hello.rasterizer
    compiling = _stages(events)
    assert isinstance(compiling[0], protocol.Stage) and isinstance(compiling[-1], protocol.Progress)
    assert compiling[-1].step == compiling[-1].total == len(warp_backend.CPU_MODULES)
    assert events.index(compiling[-1]) < events.index(hello)  # compiled before the run said what it runs
    ours = cache / "warp" / warp_backend.WARP_VERSION
    assert any(p.name.startswith("splatwork-cpu-") for p in ours.iterdir())
    assert (cache / "warp" / "1.0.0" / "wp_junk").is_dir()

    code, events, stderr = _train(tmp_path, tiny_scene, "cached", env)
    assert code == 0 and not _stages(events), stderr[-3000:]

    for obj in ours.glob("wp_*/*.o"):  # a cache cut short (a full disk, a killed copy)
        obj.write_bytes(obj.read_bytes()[:500])
    code, events, stderr = _train(tmp_path, tiny_scene, "rebuilt", env)
    assert code == 0, stderr[-3000:]
    hello = next(e for e in events if isinstance(e, protocol.Hello))
    assert hello.backend == "warp" and _stages(events)
    assert events[-1].status == "completed"


def test_a_compiled_rasterizer_that_cannot_start_falls_back_to_pytorch_naming_the_cause(tiny_scene, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    env = {**os.environ, "SPLATWORK_CACHE_DIR": str(blocker)}
    code, events, stderr = _train(tmp_path, tiny_scene, "fallback", env)
    assert code == 0, stderr[-3000:]
    hello = next(e for e in events if isinstance(e, protocol.Hello))
    assert hello.backend == "torch" and "PyTorch rasterizer" in hello.rasterizer
    warnings = [e.message for e in events if isinstance(e, protocol.Log) and e.level == "warning"]
    assert any("compiled rasterizer" in w and "not-a-folder" in w for w in warnings), warnings
    assert "Traceback" not in stderr
    assert events[-1].status == "completed"


@pytest.mark.parametrize("setting", ["", "off"])
def test_check_says_which_rasterizer_runs_and_why(setting):
    env = {**os.environ, "SPLATWORK_WARP": setting}
    proc = subprocess.run([BRIDGE_PYTHON, "-m", "bridge", "check", "--json"], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    raster = json.loads(proc.stdout)["rasterizer"]
    text = subprocess.run([BRIDGE_PYTHON, "-m", "bridge", "check"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300).stdout
    line = next(line for line in text.splitlines() if "Rasterizer:" in line)
    if setting == "off":
        assert raster["backend"] == "torch" and "turned off" in raster["reason"] and "PyTorch" in line
    else:
        assert raster["backend"] == "warp" and raster["device"] == "cpu" and raster["compiled"]
        assert "compiled rasterizer (Warp)" in line and "threads" in line and raster["cache"] in line
