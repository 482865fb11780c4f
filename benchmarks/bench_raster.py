"""CPU speed and memory of the rasterizers: forward only, and forward + backward as in training, for the
pure-PyTorch backend and the compiled (Warp) one.

    .venv/bin/python benchmarks/bench_raster.py [--repeat 3] [--cases 0,1,2,3] [--backends torch,warp] [--paired]

Each case and backend runs in its own subprocess so its peak memory (max RSS, which includes torch
and the inputs, about 0.4 GB; Warp adds its runtime) is its own; the backends of a case run one after
the other, so their ratio is measured under the same load. One untimed warm-up step each (Warp loads
its compiled kernels then). Prints a Markdown table: medians of ``--repeat`` runs, wall seconds and,
in brackets, the CPU seconds of the process (all threads): on a shared machine the CPU time is the
steadier figure; the last columns are the training step's wall-time and CPU-time ratios to the first
backend. ``--paired``: instead, one process per case runs the backends' training steps in turn (A B A B
...), ``--repeat`` pairs, and prints the medians of the pairs' ratios (the fairest comparison on a
machine whose load drifts; no memory figures there).

The backends run as the trainer runs them: the PyTorch one on torch's threads, the compiled one on its
own threads (one per core) with torch's ops on one thread (``bridge/train/cli.py``).
Scenes: a trained model (plush_dog.ply from ../shared/data, 15k splats, SH 3) when present, and
synthetic "trained-looking" scenes that fill the frame as a training view does: log-normal sizes,
mostly opaque, degree-3 SH, a few hundred splats deep at the centre.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = [  # (label, splats, width, height); splats 0 = the real model
    ("plush_dog.ply (real)", 0, 640, 480),
    ("synthetic", 20_000, 320, 240),
    ("synthetic", 100_000, 640, 480),
    ("synthetic", 200_000, 1000, 1000),
]


def synthetic(n: int, width: int, height: int):
    import torch

    g = torch.Generator().manual_seed(0)
    f = 0.9 * width
    depth = 3.0 + 2.0 * torch.rand(n, generator=g)
    # Uniform over the view frustum (slightly wider than the image), so every pixel is covered.
    u = (torch.rand(n, generator=g) * 1.1 - 0.05) * width
    v = (torch.rand(n, generator=g) * 1.1 - 0.05) * height
    means = torch.stack([(u - width / 2) / f * depth, (v - height / 2) / f * depth, depth], dim=-1)
    # Scale so that splats cover the frame about 30 deep on average, whatever the count.
    mean_sigma_px = math.sqrt(30 * width * height / (n * math.pi * 9))
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.5) * (mean_sigma_px * 4.0 / f)
    quats = torch.randn(n, 4, generator=g)
    opacities = torch.sigmoid(torch.randn(n, generator=g) * 2 + 1.5)
    coeffs = torch.randn(n, 16, 3, generator=g) * 0.1
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    return [means, quats, scales, opacities, coeffs], torch.eye(4)[None], K[None]


def real_model(width: int, height: int):
    import numpy as np
    import torch

    from bridge.formats import read_splats

    dog = read_splats(ROOT.parent / "shared" / "data" / "splats" / "plush_dog.ply")
    centre = np.median(dog.means, axis=0)
    extent = np.percentile(np.linalg.norm(dog.means - centre, axis=1), 90)
    eye = centre + np.array([0.3, -0.4, -2.2]) * extent
    z = (centre - eye) / np.linalg.norm(centre - eye)
    x = np.cross([0.0, -1.0, 0.0], z)
    x /= np.linalg.norm(x)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([x, np.cross(z, x), z])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    f = 0.9 * width
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    coeffs = np.concatenate([dog.sh_dc[:, None], dog.sh_rest], axis=1)
    params = [t(dog.means), t(dog.quats), t(np.exp(dog.scales)), torch.sigmoid(t(dog.opacities)), t(coeffs)]
    K = t([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    return params, t(w2c)[None], K[None]


def _load(index: int):
    import torch

    label, n, width, height = CASES[index]
    params, viewmats, Ks = real_model(width, height) if n == 0 else synthetic(n, width, height)
    target = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(1))
    return label, width, height, params, viewmats, Ks, target


def _threads_for(backend: str, default: int) -> int:
    """torch's threads while ``backend`` runs: as the trainer sets them."""
    return 1 if backend == "warp" else default


def run_case(index: int, repeat: int, backend: str = "torch") -> dict:
    import torch

    from bridge.raster import rasterize

    torch.set_num_threads(_threads_for(backend, torch.get_num_threads()))
    label, width, height, params, viewmats, Ks, target = _load(index)

    def forward(leaves):
        colors, _, info = rasterize(*leaves, viewmats, Ks, width, height, sh_degree=3, backend=backend)
        return colors, info

    fwd, train, fwd_cpu, train_cpu = [], [], [], []
    leaves = [p.clone().requires_grad_() for p in params]
    (forward(leaves)[0] - target).abs().mean().backward()  # warm-up: Warp loads its kernels here
    for _ in range(repeat):
        with torch.no_grad():
            start, start_cpu = time.perf_counter(), time.process_time()
            colors, info = forward(params)
            fwd.append(time.perf_counter() - start)
            fwd_cpu.append(time.process_time() - start_cpu)
        leaves = [p.clone().requires_grad_() for p in params]
        start, start_cpu = time.perf_counter(), time.process_time()
        colors, info = forward(leaves)
        info["means2d"].retain_grad()
        (colors - target).abs().mean().backward()
        train.append(time.perf_counter() - start)
        train_cpu.append(time.process_time() - start_cpu)
    visible = int((info["radii"] > 0).all(-1).sum())
    return {
        "label": label, "backend": backend, "splats": len(params[0]), "visible": visible,
        "size": f"{width}x{height}",
        "forward_s": statistics.median(fwd), "train_step_s": statistics.median(train),
        "forward_cpu_s": statistics.median(fwd_cpu), "train_step_cpu_s": statistics.median(train_cpu),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "threads": torch.get_num_threads(),
    }


def run_paired(index: int, repeat: int, backends: list[str]) -> dict:
    """Training steps of the backends in turn in this process: per backend the median wall and CPU seconds,
    and per later backend the median of its pairs' ratios to the first (wall, CPU)."""
    import torch

    from bridge.raster import rasterize

    label, width, height, params, viewmats, Ks, target = _load(index)
    default = torch.get_num_threads()

    def step(backend: str) -> tuple[float, float]:
        torch.set_num_threads(_threads_for(backend, default))
        leaves = [p.clone().requires_grad_() for p in params]
        start, start_cpu = time.perf_counter(), time.process_time()
        colors, _, info = rasterize(*leaves, viewmats, Ks, width, height, sh_degree=3, backend=backend)
        info["means2d"].retain_grad()
        (colors - target).abs().mean().backward()
        return time.perf_counter() - start, time.process_time() - start_cpu

    for backend in backends:
        step(backend)  # warm-up
    runs = {b: [] for b in backends}
    for _ in range(repeat):
        for backend in backends:
            runs[backend].append(step(backend))
    first = runs[backends[0]]
    out = {"label": label, "size": f"{width}x{height}", "splats": len(params[0]), "pairs": repeat, "rows": []}
    for backend in backends:
        mine = runs[backend]
        out["rows"].append({
            "backend": backend,
            "train_step_s": statistics.median(r[0] for r in mine),
            "train_step_cpu_s": statistics.median(r[1] for r in mine),
            "ratio_wall": statistics.median(a[0] / b[0] for a, b in zip(first, mine, strict=True)),
            "ratio_cpu": statistics.median(a[1] / b[1] for a, b in zip(first, mine, strict=True)),
        })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default=",".join(str(i) for i in range(len(CASES))))
    parser.add_argument("--backends", default="torch,warp", help="rasterizer backends, compared to the first")
    parser.add_argument("--paired", action="store_true", help="the backends in turn in one process per case")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # one case, in the child process
    parser.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        if args.paired:
            print(json.dumps(run_paired(args.case, args.repeat, args.backend.split(","))))
        else:
            print(json.dumps(run_case(args.case, args.repeat, args.backend)))
        return 0
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    if args.paired:
        return _main_paired(args)
    print("| scene | backend | splats (visible) | image | forward s (CPU s) | forward + backward s (CPU s) | "
          "peak RSS GB | step ratio (wall) | step ratio (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | ---: | ---: |")
    for index in (int(i) for i in args.cases.split(",")):
        if CASES[index][1] == 0 and not (ROOT.parent / "shared" / "data" / "splats" / "plush_dog.ply").exists():
            print(f"| {CASES[index][0]} | skipped: ../shared/data is absent | | | | | | |")
            continue
        first = None
        for backend in args.backends.split(","):
            proc = subprocess.run([sys.executable, __file__, "--case", str(index), "--repeat", str(args.repeat),
                                   "--backend", backend], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"| {CASES[index][0]} | {backend} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | | |")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            first = first or r
            print(f"| {r['label']} | {backend} | {r['splats']:,} ({r['visible']:,}) | {r['size']} | "
                  f"{r['forward_s']:.2f} ({r['forward_cpu_s']:.2f}) | "
                  f"{r['train_step_s']:.2f} ({r['train_step_cpu_s']:.2f}) | {r['peak_rss_gb']:.2f} | "
                  f"{first['train_step_s'] / r['train_step_s']:.1f}x | "
                  f"{first['train_step_cpu_s'] / r['train_step_cpu_s']:.1f}x |", flush=True)
    return 0


def _main_paired(args) -> int:
    print("| scene | image | backend | training step s, median (CPU s) | ratio to the first, median of pairs: "
          "wall (CPU) |")
    print("| --- | --- | --- | --- | ---: |")
    for index in (int(i) for i in args.cases.split(",")):
        if CASES[index][1] == 0 and not (ROOT.parent / "shared" / "data" / "splats" / "plush_dog.ply").exists():
            print(f"| {CASES[index][0]} | skipped: ../shared/data is absent | | | |")
            continue
        proc = subprocess.run([sys.executable, __file__, "--case", str(index), "--repeat", str(args.repeat),
                               "--backend", args.backends, "--paired"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"| {CASES[index][0]} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        for row in r["rows"]:
            print(f"| {r['label']} ({r['splats']:,} splats) | {r['size']} | {row['backend']} | "
                  f"{row['train_step_s']:.3f} ({row['train_step_cpu_s']:.3f}) | "
                  f"{row['ratio_wall']:.1f}x ({row['ratio_cpu']:.1f}x) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
