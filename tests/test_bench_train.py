"""The training benchmarks' CPU-side parts: argument handling, result parsing and tables of
benchmarks/bench_train_gpu.py (which needs CUDA to run) and the curve helpers of bench_train_speedups.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import BRIDGE_PYTHON, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_train_gpu as gpu  # noqa: E402
import bench_train_speedups as cpu  # noqa: E402


def test_gpu_bench_fails_fast_and_clearly_without_cuda(tmp_path):
    out = subprocess.run([BRIDGE_PYTHON, str(ROOT / "benchmarks" / "bench_train_gpu.py"), "--runs", "ours",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    if out.returncode == 0:
        pytest.skip("CUDA is available here")
    assert out.returncode == 2 and "needs a CUDA GPU" in out.stderr and "--dry" in out.stderr


def test_gpu_bench_arguments(capsys):
    with pytest.raises(SystemExit):
        gpu.parse_args(["--runs", "ours,bogus"])
    assert "unknown run(s) bogus" in capsys.readouterr().err
    dry = gpu.parse_args(["--dry"])
    assert dry.steps == 20 and "anchor" not in dry.runs and dry.runs == ["ours", "ours_fast", "ours_mcmc",
                                                                         "ours_mcmc_fast"]
    args = gpu.parse_args(["--kit", "/kit", "--steps", "30000", "--cap-max", "500000"])
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


def test_paths_are_absolute_for_simple_trainer_which_runs_in_the_kit(tmp_path, monkeypatch):
    data = tmp_path / "capture"
    (data / "sparse" / "0").mkdir(parents=True)
    (data / "images").mkdir()
    (tmp_path / "kit").mkdir()
    monkeypatch.chdir(tmp_path)
    args = gpu.parse_args(["--data", "capture", "--kit", "kit", "--out", "out", "--runs", "anchor"])
    assert args.data == data and args.kit == tmp_path / "kit" and args.out == tmp_path / "out"


def test_seeds_run_each_trainer_again_and_are_summarised(tmp_path):
    (tmp_path / "capture" / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "capture" / "images").mkdir()
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
