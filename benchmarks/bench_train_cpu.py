"""Training speed of the bridge's trainer on the CPU (our PyTorch rasterizer): steps per second at a
few image sizes and splat counts, densification off so the count stays fixed while measured.

    .venv/bin/python benchmarks/bench_train_cpu.py [--steps 10] [--threads N]

Runs the real Trainer in process on a synthetic dataset (random textured images, cameras on a ring
around random splats); prints a Markdown table for BENCHMARKS.md. Share of the machine matters:
the load average is printed with the table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.protocol import CommandReader, EventWriter  # noqa: E402
from bridge.runner import RunContext  # noqa: E402
from bridge.train.data import Dataset, TrainView  # noqa: E402
from bridge.train.job import make_job  # noqa: E402
from bridge.train.trainer import Trainer  # noqa: E402

CASES = [((64, 48), 1_000), ((128, 96), 1_000), ((128, 96), 10_000), ((256, 192), 10_000)]


def ring_dataset(width: int, height: int, num_points: int, views: int = 8, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    focal = 0.9 * width
    K = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    out = []
    for i in range(views):
        angle = 2 * np.pi * i / views
        center = np.array([4 * np.cos(angle), 4 * np.sin(angle), 1.0])
        forward = -center / np.linalg.norm(center)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, -R @ center
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        out.append(TrainView(name=f"{i:03d}.png", image=image, K=K, world_to_camera=w2c))
    return Dataset(train=out, test=[], points=rng.normal(size=(num_points, 3)) * 0.7,
                   colors=rng.integers(0, 256, (num_points, 3), dtype=np.uint8), scene_scale=4.4,
                   scene_center=np.zeros(3), undistorted=False)


def measure(width: int, height: int, num_points: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        job = make_job({"model": out, "images": out, "out": out, "steps": 10_000, "sh_degree": 3,
                        "snapshot_every": 0, "checkpoint_every": 10_000})
        ctx = RunContext("train", EventWriter(None), CommandReader(), human=False)
        trainer = Trainer(ctx, job, ring_dataset(width, height, num_points), torch.device("cpu"), "torch")
        trainer.train_step(0)  # warm-up: allocator, first-call overheads
        start = time.perf_counter()
        for step in range(1, steps + 1):
            trainer.train_step(step)
        return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print("| image | splats | steps/s | ms/step |\n| --- | --- | --- | --- |")
    for (width, height), num_points in CASES:
        rate = measure(width, height, num_points, args.steps)
        print(f"| {width}x{height} | {num_points:,} | {rate:.2f} | {1000 / rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
