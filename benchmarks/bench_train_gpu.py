"""Our trainer against gsplat's own ``examples/simple_trainer.py`` on one CUDA GPU, same data, same
settings, same session: wall time, peak GPU memory and held-out PSNR/SSIM at 7k and 30k steps.

    python benchmarks/bench_train_gpu.py --data DATA --gsplat-repo GSPLAT [--factor 4] [--out OUT]

DATA holds ``images/`` and ``sparse/0`` (a COLMAP model; e.g. Mip-NeRF 360's garden, whose
``images_4/`` gsplat's parser uses for --factor 4). GSPLAT is a checkout of
github.com/nerfstudio-project/gsplat at the tag of the installed gsplat (v1.5.3), with its
examples' requirements installed. Both trainers: DefaultStrategy, SH degree 3, black background,
classic rasterization, every 8th image (sorted by name) held out, 30,000 steps with evaluations at
7,000 and 30,000. Prints a Markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import protocol  # noqa: E402

STEPS = (7_000, 30_000)


def run_ours(data: Path, factor: int, out: Path) -> dict[int, dict]:
    """Our bridge as the add-on runs it; wall time and peak memory read from its events."""
    argv = [sys.executable, "-m", "bridge", "train", "--model", str(data / "sparse" / "0"),
            "--images", str(data / "images"), "--out", str(out), "--steps", str(STEPS[-1]),
            "--downscale", str(factor), "--device", "cuda", "--eval-steps", ",".join(map(str, STEPS[:-1])),
            "--progress-every", "100", "--snapshot-every", "0", "--checkpoint-every", "10000", "--ipc"]
    rows: dict[int, dict] = {}
    state = {"mem": 0.0, "splats": 0}
    start = time.perf_counter()

    def on_event(event):
        if isinstance(event, protocol.Progress):
            state["mem"] = max(state["mem"], event.gpu_mem_mb or 0.0)
            state["splats"] = event.num_splats
        elif isinstance(event, protocol.EvalResult):
            rows[event.step] = {"psnr": event.mean_psnr, "ssim": event.mean_ssim,
                                "wall_s": time.perf_counter() - start,
                                "peak_mem_gb": state["mem"] / 1024, "splats": state["splats"]}

    proc = protocol.BridgeProcess(argv, log_path=str(out / "bridge.log"), cwd=str(ROOT))
    code = protocol.run_to_end(proc, on_event)
    proc.close()
    if code != 0:
        raise SystemExit(f"our trainer failed ({code}); see {out / 'bridge.log'}")
    return rows


def run_gsplat(data: Path, factor: int, repo: Path, out: Path) -> dict[int, dict]:
    argv = [sys.executable, str(repo / "examples" / "simple_trainer.py"), "default", "--data_dir", str(data),
            "--data_factor", str(factor), "--result_dir", str(out), "--max_steps", str(STEPS[-1]),
            "--eval_steps", *map(str, STEPS), "--save_steps", str(STEPS[-1]), "--disable_viewer",
            "--test_every", "8"]
    with open(out / "simple_trainer.log", "wb") as log:
        code = subprocess.run(argv, cwd=repo / "examples", stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"gsplat's simple_trainer failed ({code}); see {out / 'simple_trainer.log'}")
    rows = {}
    for step in STEPS:
        val = json.loads((out / "stats" / f"val_step{step - 1:04d}.json").read_text())
        train = json.loads((out / "stats" / f"train_step{step - 1:04d}_rank0.json").read_text())
        rows[step] = {"psnr": val["psnr"], "ssim": val["ssim"], "wall_s": train["ellipse_time"],
                      "peak_mem_gb": train["mem"], "splats": val["num_GS"]}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--gsplat-repo", type=Path, required=True)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench_train_gpu")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU (torch.cuda.is_available() is False)")
    for name in ("ours", "gsplat"):
        (args.out / name).mkdir(parents=True, exist_ok=True)
    results = {"ours": run_ours(args.data, args.factor, args.out / "ours"),
               "gsplat simple_trainer": run_gsplat(args.data, args.factor, args.gsplat_repo, args.out / "gsplat")}
    print(f"{torch.cuda.get_device_name()}, data {args.data.name}, factor {args.factor}")
    print("| trainer | steps | wall s | peak GPU GB | splats | test PSNR | test SSIM |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rows in results.items():
        for step in STEPS:
            r = rows[step]
            print(f"| {name} | {step:,} | {r['wall_s']:.0f} | {r['peak_mem_gb']:.2f} | {r['splats']:,} "
                  f"| {r['psnr']:.2f} | {r['ssim']:.4f} |")


if __name__ == "__main__":
    main()
