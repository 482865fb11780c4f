"""The training benchmarks' CPU-side parts: argument handling, result parsing and tables of
benchmarks/bench_train_gpu.py (which needs CUDA to run) and the curve helpers of bench_train_speedups.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import BRIDGE_PYTHON, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_train_gpu as gpu  # noqa: E402
import bench_train_speedups as cpu  # noqa: E402


@pytest.fixture
def capture_dir(tmp_path) -> Path:
    """An (empty) capture folder as the benchmark's --data wants it: parse_args checks only that images/ and
    sparse/0 are there, and its default, the statue in ../shared/data, is absent on a fresh clone."""
    data = tmp_path / "capture"
    (data / "sparse" / "0").mkdir(parents=True)
    (data / "images").mkdir()
    return data


def test_gpu_bench_fails_fast_and_clearly_without_cuda(tmp_path, capture_dir):
    # CUDA hidden, so the refusal is what runs on a GPU machine too.
    out = subprocess.run([BRIDGE_PYTHON, str(ROOT / "benchmarks" / "bench_train_gpu.py"), "--runs", "ours",
                          "--data", str(capture_dir), "--out", str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert out.returncode == 2 and "needs a CUDA GPU" in out.stderr and "--dry" in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_bench_arguments(capsys, capture_dir):
    data = ["--data", str(capture_dir)]
    with pytest.raises(SystemExit):
        gpu.parse_args(["--runs", "ours,bogus", *data])
    assert "unknown run(s) bogus" in capsys.readouterr().err
    dry = gpu.parse_args(["--dry", *data])
    assert dry.steps == 20 and "anchor" not in dry.runs and dry.runs == ["ours", "ours_fast", "ours_mcmc",
                                                                         "ours_mcmc_fast"]
    with pytest.raises(SystemExit):
        gpu.parse_args(["--dry", "--data", str(capture_dir / "images")])
    assert "needs images/ and sparse/0" in capsys.readouterr().err
    args = gpu.parse_args(["--kit", "/kit", "--steps", "30000", "--cap-max", "500000", *data])
    argv, cwd = gpu.anchor_command(args, "anchor_mcmc", ROOT / "w")
    assert argv[2] == "mcmc" and argv[argv.index("--max_steps") + 1] == "30000" and str(cwd) == "/kit/gsplat-examples"
    assert argv[argv.index("--strategy.cap-max") + 1] == "500000" and argv[argv.index("--test_every") + 1] == "8"
    argv, _ = gpu.ours_command(args, "ours_mcmc_fast", ROOT / "w")
    assert argv[argv.index("--device") + 1] == "cuda" and argv[argv.index("--cap-max") + 1] == "500000"
    assert "--visible-adam" in argv and argv[argv.index("--downscale") + 1] == "1"


def test_gpu_bench_parses_both_trainers_and_tabulates(tmp_path):
    stats = tmp_path / "anchor" / "stats"
    stats.mkdir(parents=True)
    for step, psnr in ((999, 20.0), (6999, 25.5)):  # simple_trainer names files by the 0-based step
        (stats / f"val_step{step:04d}.json").write_text(json.dumps({"psnr": psnr, "ssim": 0.8, "lpips": 0.0,
                                                                    "num_GS": 150_000}))
        (stats / f"train_step{step:04d}_rank0.json").write_text(json.dumps({"mem": 2.5, "ellipse_time": 60.0,
                                                                            "num_GS": 150_000}))
    anchor = gpu.parse_anchor(tmp_path / "anchor")
    assert anchor == {"steps": 7000, "train_s": 60.0, "peak_gb": 2.5, "splats": 150_000, "psnr": 25.5, "ssim": 0.8}
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "metrics.json").write_text(json.dumps(
        {"status": "completed", "step": 7000, "num_splats": 140_000, "train_seconds": 30.0, "psnr": 25.6,
         "ssim": 0.81}))
    log = tmp_path / "ours.log"
    log.write_text('gsplat says hello\n{"type": "progress", "gpu_mem_mb": 1024}\n'
                   '{"type": "progress", "gpu_mem_mb": 2048}\n')
    ours = gpu.parse_ours(tmp_path / "ours", log)
    assert ours["peak_gb"] == 2.0 and ours["train_s"] == 30.0
    with pytest.raises(ValueError, match="no stats"):
        gpu.parse_anchor(tmp_path / "missing")
    text = gpu.table([{"run": "anchor", "wall_s": 70.0, **anchor}, {"run": "ours", "wall_s": 40.0, **ours},
                      {"run": "ours_fast", "wall_s": 3.0, "error": "exit 1: boom"}])
    assert "| anchor | 7,000 | 70.0 | 60.0 | 116.7 | 2.50 | 150,000 | 25.50 | 0.8000 |" in text
    assert "| ours | 7,000 | 40.0 | 30.0 | 233.3 | 2.00 | 140,000 | 25.60 | 0.8100 |" in text
    assert "| ours_fast | failed: exit 1: boom |" in text


def test_speedup_bench_curves():
    lines = [json.dumps(e) for e in (
        {"type": "progress", "step": 100, "elapsed_sec": 10.0, "num_splats": 5},
        {"type": "eval", "step": 100, "mean_psnr": 18.0, "mean_ssim": 0.5},
        {"type": "progress", "step": 200, "elapsed_sec": 30.0, "num_splats": 9},
        {"type": "eval", "step": 150, "mean_psnr": 19.0, "mean_ssim": 0.6},
        {"type": "eval", "step": 200, "mean_psnr": 21.0, "mean_ssim": 0.7},
        {"type": "done", "metrics": {"num_splats": 9, "train_seconds": 30.5}})]
    run = cpu.parse_events(["not json", *lines])
    assert run["curve"] == [(100, 10.0, 18.0, 0.5), (150, 20.0, 19.0, 0.6), (200, 30.0, 21.0, 0.7)]
    assert run["splats"] == 9 and run["train_s"] == 30.5
    assert cpu.time_to_reach(run["curve"], 20.0) == pytest.approx(25.0)
    assert cpu.time_to_reach(run["curve"], 17.0) == 10.0 and cpu.time_to_reach(run["curve"], 22.0) is None
    assert cpu.psnr_at_time(run["curve"], 15.0) == pytest.approx(18.5) and cpu.psnr_at_time(run["curve"], 31) is None
    with pytest.raises(ValueError, match="did not finish"):
        cpu.parse_events(lines[:-1])
    assert "| baseline | 200 | 30 | - |" in cpu.table({"baseline": run, "same": run})


def test_paths_are_absolute_for_simple_trainer_which_runs_in_the_kit(tmp_path, capture_dir, monkeypatch):
    data = capture_dir
    (tmp_path / "kit").mkdir()
    monkeypatch.chdir(tmp_path)
    args = gpu.parse_args(["--data", "capture", "--kit", "kit", "--out", "out", "--runs", "anchor"])
    assert args.data == data and args.kit == tmp_path / "kit" and args.out == tmp_path / "out"


def test_seeds_run_each_trainer_again_and_are_summarised(tmp_path, capture_dir):
    args = gpu.parse_args(["--dry", "--data", str(tmp_path / "capture"), "--seeds", "0,1,2", "--runs", "ours,ours_fast",
                           "--out", str(tmp_path)])
    assert args.seeds == [0, 1, 2]
    argv, _ = gpu.ours_command(args, "ours", tmp_path, seed=2)
    assert argv[argv.index("--seed") + 1] == "2" and argv[argv.index("--out") + 1] == str(tmp_path / "ours@2")
    with pytest.raises(SystemExit):
        gpu.parse_args(["--dry", "--data", str(tmp_path / "capture"), "--seeds", "one"])
    rows = [{"run": gpu.run_label("ours", s), "wall_s": 50.0 + s, "train_s": 30.0, "steps": 7000, "peak_gb": 1.0,
             "splats": 10, "psnr": 17.0 + s, "ssim": 0.8} for s in (0, 1, 2)]
    rows.append({"run": "anchor@1", "wall_s": 1.0, "error": "exit 1"})
    summary = gpu.seed_table(rows)
    assert "| ours | 3 | 51.0 | 30.0 | 18.00 (17.00-19.00) | 0.8000 (0.8000-0.8000) |" in summary
    assert "anchor" not in summary


def test_simple_trainer_runs_with_its_seed_shifted(tmp_path):
    """The wrapper shifts simple_trainer's fixed seed (42 + rank) without editing its file; checked on a
    stand-in with the same imports, in a real subprocess."""
    (tmp_path / "utils.py").write_text("def set_random_seed(seed):\n    open('seed.txt', 'w').write(str(seed))\n")
    (tmp_path / "simple_trainer.py").write_text(
        "import sys\nfrom utils import set_random_seed\n"
        "if __name__ == '__main__':\n    set_random_seed(42)\n    open('argv.txt', 'w').write(' '.join(sys.argv))\n")
    argv = [sys.executable, "-c", gpu.SEEDED_ANCHOR, "3", "default", "--max_steps", "10"]
    subprocess.run(argv, cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "seed.txt").read_text() == "45"
    assert (tmp_path / "argv.txt").read_text() == "simple_trainer.py default --max_steps 10"


# ---- --cpu: simple_trainer on the CPU beside ours ------------------------------------------------

def _anchor_site() -> Path:
    return Path(os.environ.get("SPLATWORK_ANCHOR_SITE", "/tmp/anchor-site"))


def _kit(data: Path) -> Path | None:
    return gpu.parse_args(["--dry", "--data", str(data)]).kit


def _capture(folder: Path, model: str = "SIMPLE_RADIAL", size=(64, 96), views: int = 9) -> Path:
    """A small COLMAP capture written by bridge.formats: cameras on a circle round a cloud of points,
    noise photos (enough for a trainer to run a few steps, not to learn anything)."""
    from PIL import Image

    from bridge.formats.cameras import Camera, Reconstruction, View
    from bridge.formats.colmap import write_model

    rng = np.random.default_rng(0)
    w, h = size
    params = {"SIMPLE_RADIAL": [80.0, w / 2, h / 2, -0.2], "PINHOLE": [80.0, 80.0, w / 2, h / 2]}[model]
    out = []
    (folder / "images").mkdir(parents=True)
    for i in range(views):
        a = 2 * np.pi * i / views
        center = np.array([4 * np.sin(a), 0.0, -4 * np.cos(a)])
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])  # looks at the origin
        out.append(View(i + 1, f"v{i:02d}.jpg", 1, R, -R @ center))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / "images" / f"v{i:02d}.jpg")
    points = rng.normal(size=(300, 3)) * 0.5
    write_model(Reconstruction({1: Camera(1, model, w, h, np.array(params))}, out, points,
                               rng.integers(0, 255, (300, 3)), np.full(300, 0.5), np.full(300, 2)),
                folder / "sparse" / "0")
    return folder


def test_cpu_mode_arguments(tmp_path, capsys):
    data = _capture(tmp_path / "capture", views=2)
    site = tmp_path / "site"
    (site / "tyro").mkdir(parents=True)
    base = ["--cpu", "--data", str(data), "--kit", str(tmp_path), "--anchor-site", str(site)]
    args = gpu.parse_args(base)
    assert args.steps == 2000 and args.runs == ["anchor", "ours", "ours_fast"] and args.deadline == float("inf")
    assert args.shrink == 16 and args.jobs == 2 and args.threads == 1 and not args.pinhole
    argv, cwd = gpu.anchor_command(args, "anchor", tmp_path / "w", seed=3)
    assert argv[1:4] == ["-c", gpu.CPU_ANCHOR, "3"] and argv[4] == "default" and cwd == tmp_path / "gsplat-examples"
    assert argv[argv.index("--data_factor") + 1] == "1"
    argv, _ = gpu.ours_command(args, "ours_fast", tmp_path / "w", seed=3)
    assert argv[argv.index("--device") + 1] == "cpu" and argv[argv.index("--downscale") + 1] == "1"
    assert "--visible-adam" in argv and argv[argv.index("--seed") + 1] == "3"
    ours, anchor = gpu.cpu_env(args)
    assert ours["OMP_NUM_THREADS"] == anchor["OMP_NUM_THREADS"] == "1" and "PYTHONPATH" not in ours or \
        str(tmp_path / "colmapfork") not in ours.get("PYTHONPATH", "")
    path = anchor["PYTHONPATH"].split(os.pathsep)
    assert path[:4] == [str(tmp_path / "colmapfork"), str(tmp_path / "stubs"), str(site), str(ROOT)]
    for bad, message in ((["--runs", "anchor_mcmc"], "DefaultStrategy only"), (["--dry"], "choose one"),
                         (["--jobs", "0"], "at least 1")):
        with pytest.raises(SystemExit):
            gpu.parse_args(base + bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the scratch site must hold simple_trainer's dependencies
        gpu.parse_args(base[:-1] + [str(tmp_path / "nowhere")])
    assert "dependencies are not there" in capsys.readouterr().err
    assert gpu.parse_args(base[:-1] + [str(tmp_path / "nowhere"), "--runs", "ours"]).runs == ["ours"]


@pytest.mark.parametrize("pinhole", [False, True])
def test_shrunk_capture_has_scaled_intrinsics(tmp_path, pinhole):
    from PIL import Image

    from bridge.formats.colmap import read_model

    src = _capture(tmp_path / "capture", views=2)
    dst = gpu.shrink_data(src, tmp_path / "small", 4, pinhole=pinhole)
    rec = read_model(dst / "sparse" / "0")
    cam = rec.cameras[1]
    assert [v.name for v in rec.views] == ["v00.png", "v01.png"] and len(rec.points) == 300
    with Image.open(dst / "images" / "v00.png") as img:
        assert img.size == (cam.width, cam.height)
    if pinhole:  # COLMAP's undistortion chose the size; the focal length is kept
        assert cam.model == "PINHOLE" and cam.params[0] == pytest.approx(20.0)
    else:
        assert (cam.model, cam.width, cam.height) == ("SIMPLE_RADIAL", 16, 24)
        np.testing.assert_allclose(cam.params, [20.0, 8.0, 12.0, -0.2])
    assert gpu.shrink_data(src, tmp_path / "small", 4, pinhole=pinhole) == dst  # made once


def _fake_trainer(folder: Path, body: str) -> None:
    """A stand-in for simple_trainer.py holding the lines the wrapper rewrites, with the same imports."""
    (folder / "utils.py").write_text("def set_random_seed(seed):\n    open('seed.txt', 'w').write(str(seed))\n")
    (folder / "simple_trainer.py").write_text(
        "import sys, json, torch\nfrom gsplat.rendering import rasterization\nfrom fused_ssim import fused_ssim\n"
        "from torch.utils.tensorboard import SummaryWriter\nfrom utils import set_random_seed\n"
        "class Runner:\n    def __init__(self, local_rank):\n        self.device = f\"cuda:{local_rank}\"\n"
        "        self.loader = dict(num_workers=4,\n            persistent_workers=True,\n"
        "            pin_memory=True,)\n"
        "        self.val = dict(shuffle=False, num_workers=1)\n"
        "def main(local_rank, world_rank, world_size, cfg):\n    set_random_seed(42 + local_rank)\n"
        "    runner = Runner(local_rank)\n    SummaryWriter(log_dir='tb').add_scalar('x', 1.0, 0)\n"
        + body + "\nif __name__ == '__main__':\n    cfg = None\n    cli(main, cfg, verbose=True)\n")


def test_cpu_anchor_wrapper_runs_simple_trainer_on_our_rasterizer(tmp_path):
    """The wrapper, in a real subprocess, on a stand-in trainer: CUDA device and workers rewritten, our
    PyTorch rasterizer behind gsplat's name with gsplat's info dict, SSIM as our CPU loss computes it,
    kwargs ours lacks refused unless at gsplat's defaults, the seed shifted."""
    pytest.importorskip("gsplat", reason="gsplat is not installed here")
    _fake_trainer(tmp_path, """
    dev = torch.device(runner.device)
    means = torch.tensor([[0.0, 0.0, 3.0]], device=dev, requires_grad=True)
    quats, scales = torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.3)
    K = torch.tensor([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]])
    colors, alphas, info = rasterization(means=means, quats=quats, scales=scales, opacities=torch.tensor([0.9]),
        colors=torch.ones(1, 3), viewmats=torch.eye(4)[None], Ks=K, width=32, height=32, packed=False,
        sparse_grad=False, distributed=False, camera_model="pinhole", with_ut=False, with_eval3d=False,
        rasterize_mode="classic", absgrad=False)
    info["means2d"].retain_grad()
    colors.sum().backward()
    s = fused_ssim(colors.permute(0, 3, 1, 2), colors.detach().permute(0, 3, 1, 2), padding="valid")
    refused = []
    _, _, packed = rasterization(means.detach(), quats, scales, torch.tensor([0.9]), torch.ones(1, 3),
                                 torch.eye(4)[None], K, 32, 32, packed=True)
    for bad in (dict(sparse_grad=True), dict(camera_model="fisheye"), dict(with_ut=True)):
        try:
            rasterization(means, quats, scales, torch.tensor([0.9]), torch.ones(1, 3), torch.eye(4)[None], K, 32, 32,
                          **bad)
        except NotImplementedError as exc:
            refused.append(str(exc))
    json.dump({"device": runner.device, "loader": runner.loader, "val": runner.val,
               "centre": colors[0, 16, 16].tolist(), "alpha": float(alphas.max()), "keys": sorted(info),
               "radii": list(info["radii"].shape),
               "grad": info["means2d"].grad is not None, "ssim": float(s), "refused": refused,
               "packed": [packed["packed"], packed["gaussian_ids"].tolist()],
               "argv0": sys.argv[0]}, open("out.json", "w"))""")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    subprocess.run([BRIDGE_PYTHON, "-c", gpu.CPU_ANCHOR, "2", "default"], cwd=tmp_path, env=env, check=True,
                   timeout=300)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["device"] == "cpu" and (tmp_path / "seed.txt").read_text() == "44"
    assert out["loader"] == {"num_workers": 0, "persistent_workers": False, "pin_memory": False}
    assert out["val"] == {"shuffle": False, "num_workers": 0}
    assert out["centre"][0] > 0.5 and 0.5 < out["alpha"] <= 0.99 and out["grad"] and out["ssim"] == pytest.approx(1.0)
    assert {"means2d", "radii", "width", "height", "n_cameras", "gaussian_ids"} <= set(out["keys"])
    assert out["radii"] == [1, 1, 2] and out["argv0"].endswith("simple_trainer.py")
    assert [("sparse_grad" in r, "camera_model" in r, "with_ut" in r) for r in out["refused"]] == [
        (True, False, False), (False, True, False), (False, False, True)]
    assert out["packed"] == [True, [0]]  # gsplat's packed layout passes through, as simple_trainer may ask


def test_cpu_anchor_wrapper_fails_loudly_when_simple_trainer_changed(tmp_path):
    pytest.importorskip("gsplat", reason="gsplat is not installed here")
    _fake_trainer(tmp_path, "    pass")
    source = (tmp_path / "simple_trainer.py").read_text().replace("pin_memory=True,", "pin_memory=True, ")
    (tmp_path / "simple_trainer.py").write_text(source.replace("pin_memory=True, ", "pin_memory=False,"))
    out = subprocess.run([BRIDGE_PYTHON, "-c", gpu.CPU_ANCHOR, "0"], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert out.returncode != 0 and "'pin_memory=True,' occurs 0 times" in out.stderr


def test_cpu_table_and_splat_curves(tmp_path, capture_dir):
    log = tmp_path / "anchor.log"
    log.write_text("Model initialized. Number of GS: 100\n"
                   "Step 599: 10 GSs duplicated, 5 GSs split. Now having 115 GSs.\n"
                   "Step 599: 3 GSs pruned. Now having 112 GSs.\nStep:  999 {'mem': 0.0}\n"
                   "Step 699: 0 GSs duplicated, 0 GSs split. Now having 112 GSs.\n")
    assert gpu.splat_curve(True, log) == [(0, 100), (600, 112), (700, 112)]
    log.write_text('noise\n{"type": "progress", "step": 100, "num_splats": 100}\n'
                   '{"type": "progress", "step": 700, "num_splats": 130}\n')
    curve = gpu.splat_curve(False, log)
    assert curve == [(100, 100), (700, 130)] and gpu.splats_after(curve, 699) == 100
    assert gpu.splats_after(curve, 50) is None and gpu.splat_curve(False, tmp_path / "missing.log") == []
    rows = [{"run": gpu.run_label("ours", s), "steps": 1000, "train_s": t, "splats": n, "psnr": p, "ssim": 0.5,
             "splat_curve": [(500, n // 2)]} for s, t, n, p in ((0, 10.0, 100, 18.0), (1, 20.0, 300, 20.0))]
    text = gpu.cpu_table(rows + [{"run": "anchor", "error": "exit 1"}], [500])
    assert ("| ours | 2 | 19.00 ± 1.41 | 0.500 ± 0.000 | 200.00 ± 141.42 | 100.00 ± 70.71 | 15.00 ± 7.07 "
            "| 75.00 ± 35.36 |") in text
    assert "anchor" not in text and gpu.mean_sd([None]) == "-"
    data = ["--data", str(capture_dir)]
    args = gpu.parse_args(["--kit", "/kit", "--runs", "anchor_nonorm", *data])
    assert gpu.anchor_command(args, "anchor_nonorm", tmp_path)[0][-1] == "--no-normalize_world_space"
    assert "anchor_nonorm" not in gpu.parse_args(["--kit", "/kit", *data]).runs


def test_cpu_mode_runs_both_trainers(tmp_path):
    """simple_trainer itself (the kit's) and ours, a few steps each on the CPU, through main()."""
    data = _capture(tmp_path / "capture")
    kit = _kit(data)
    if kit is None or not (kit / "gsplat-examples" / "simple_trainer.py").is_file():
        pytest.skip("the gpu-kit (.gpu/kit or ../shared/gpu-kit) is not here")
    if not (_anchor_site() / "tyro").is_dir():
        pytest.skip(f"simple_trainer's dependencies are not in {_anchor_site()} (set SPLATWORK_ANCHOR_SITE; "
                    "BENCHMARKS.md has the pip line)")
    code = gpu.main(["--cpu", "--data", str(data), "--kit", str(kit), "--anchor-site", str(_anchor_site()),
                     "--shrink", "2", "--steps", "12", "--runs", "anchor,ours", "--out", str(tmp_path / "out"),
                     "--timeout", "300"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert code == 0, results
    rows = {r["run"]: r for r in results["rows"]}
    assert rows["anchor"]["steps"] == rows["ours"]["steps"] == 12
    assert rows["anchor"]["splats"] == rows["ours"]["splats"] == 300  # no refinement before step 500
    assert "Over seeds 0 (mean ± sd)" in (tmp_path / "out" / "summary.md").read_text()
