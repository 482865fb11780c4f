"""Training-step speed of our rasterizers (PyTorch, and the compiled Warp one) against gsplat's CUDA kernels on
the same scene and GPU.

    .venv/bin/python benchmarks/bench_raster_gpu.py [--splats 100000] [--width 1000 --height 660]
        [--steps 50] [--warmup 5] [--device cuda]

A step is what training does per view: rasterize with SH degree 3 over a background, an L1 loss,
backward. Prints a Markdown table (steps/s, ms/step, peak GPU memory) and one JSON line. gsplat runs
only where its kernels load (``bridge.raster.kernels``; built by ``python -m bridge build-kernels``),
else its row says why; Warp's row likewise (its first compile is timed apart, ``compile_s``). The
issue's GPU target: Warp within 2x of gsplat's time per step. ``--device cpu`` with tiny settings
checks that the script runs (the tests do).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def time_backend(backend: str, leaves, viewmats, Ks, width: int, height: int, steps: int, warmup: int,
                 device: str, **chunking) -> dict:
    import torch

    from bridge.raster import rasterize

    params = [t.to(device).requires_grad_(True) for t in leaves]
    viewmats, Ks = viewmats.to(device), Ks.to(device)
    target = torch.rand(1, height, width, 3, device=device, generator=None)
    background = torch.zeros(1, 3, device=device)

    def step():
        means, quats, scales, opacities, coeffs = params
        colors, _, _ = rasterize(means, quats, scales, opacities, coeffs, viewmats, Ks, width, height,
                                 sh_degree=3, backgrounds=background, backend=backend, **chunking)
        loss = (colors - target).abs().mean()
        loss.backward()
        for p in params:
            p.grad = None

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    row = {"backend": backend, "steps_per_sec": steps / seconds, "ms_per_step": 1000 * seconds / steps, **chunking}
    if device.startswith("cuda"):
        row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splats", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=660)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sweep", default="", help="the torch rasterizer at BUDGET:SLICE,... too (pixel-splat "
                        "pairs per chunk, splats per tile between early-stop checks), e.g. 4194304:128,67108864:512")
    args = parser.parse_args(argv)

    import torch
    from bench_raster import synthetic

    from bridge.raster.kernels import kernels_unavailable

    leaves, viewmats, Ks = synthetic(args.splats, args.width, args.height)
    rows = [time_backend("torch", leaves, viewmats, Ks, args.width, args.height, args.steps, args.warmup,
                         args.device)]
    from bridge.raster import warp_backend

    started = time.perf_counter()
    reason = warp_backend.prepare(args.device)
    if reason:
        rows.append({"backend": "warp", "skipped": reason})
    else:
        compile_s = time.perf_counter() - started
        rows.append(time_backend("warp", leaves, viewmats, Ks, args.width, args.height, args.steps, args.warmup,
                                 args.device))
        rows[-1]["compile_s"] = compile_s
    for pair in filter(None, args.sweep.split(",")):
        budget, slice_splats = (int(v) for v in pair.split(":"))
        rows.append(time_backend("torch", leaves, viewmats, Ks, args.width, args.height, args.steps, args.warmup,
                                 args.device, budget=budget, slice_splats=slice_splats))
        print(json.dumps(rows[-1]), flush=True)
    reason = kernels_unavailable() if args.device.startswith("cuda") else "gsplat needs CUDA tensors"
    if reason:
        rows.append({"backend": "gsplat", "skipped": reason})
    else:
        rows.append(time_backend("gsplat", leaves, viewmats, Ks, args.width, args.height, args.steps,
                                 args.warmup, args.device))
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
    print(f"{args.splats:,} splats, {args.width}x{args.height}, SH 3, forward + backward, {name}, "
          f"torch {torch.__version__}\n")
    print("| rasterizer | steps/s | ms/step | peak GPU MB |\n| --- | --- | --- | --- |")
    for row in rows:
        name = row["backend"] + (f" (budget {row['budget']:,}, slice {row['slice_splats']})" if "budget" in row else "")
        if "skipped" in row:
            print(f"| {name} | skipped: {row['skipped']} | | |")
        else:
            mem = f"{row['peak_mem_mb']:.0f}" if "peak_mem_mb" in row else "-"
            print(f"| {name} | {row['steps_per_sec']:.2f} | {row['ms_per_step']:.1f} | {mem} |")
    timed = {r["backend"]: r for r in rows if "skipped" not in r and "budget" not in r}
    if "gsplat" in timed:
        for ours in ("torch", "warp"):
            if ours in timed:
                print(f"\ngsplat is {timed['gsplat']['steps_per_sec'] / timed[ours]['steps_per_sec']:.1f}x "
                      f"the {ours} rasterizer")
    print(json.dumps({"device": name, **vars(args), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
