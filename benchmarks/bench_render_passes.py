"""Speed of baking object transforms (export, render passes) and of the render-passes bridge command.

    .venv/bin/python benchmarks/bench_render_passes.py [--frames 3] [--width 960 --height 540]

Prints a Markdown table. Baking is numpy in this process (median of 3, SH degree 3, a rotation plus
uniform scale, which rotates every SH band). The render runs ``python -m bridge render`` on a job of
``--frames`` frames of plush_dog.ply (../shared/data, 15k splats, SH 3) orbiting camera, or of a
synthetic 15k-splat ball without that file; the figure is the bridge's own seconds per frame
(render + EXR + PNG, torch start-up excluded) and the process's wall time.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import protocol  # noqa: E402
from bridge.formats import SplatSet, read_splats, write_splats  # noqa: E402
from bridge.formats.transform import bake_transform, quat_to_matrix  # noqa: E402

PLUSH = ROOT.parent / "shared" / "data" / "splats" / "plush_dog.ply"


def synthetic(n: int, seed: int = 0) -> SplatSet:
    rng = np.random.default_rng(seed)
    s = SplatSet.empty(n, 3)
    d = rng.normal(size=(n, 3))
    s.means[:] = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, (n, 1))
    s.scales[:] = np.log(rng.uniform(0.01, 0.04, (n, 3)))
    s.quats[:] = rng.normal(size=(n, 4))
    s.opacities[:] = rng.uniform(0.0, 4.0, n)
    s.sh_dc[:] = rng.normal(size=(n, 3))
    s.sh_rest[:] = rng.normal(scale=0.2, size=(n, 15, 3))
    return s


def object_matrix() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = 1.5 * quat_to_matrix(np.array([[0.5, 0.6, -0.3, 0.55]]))[0]
    m[:3, 3] = (0.1, 0.2, 0.3)
    return m


def bench_bake(n: int) -> float:
    splats, m = synthetic(n), object_matrix()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        bake_transform(splats, m)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_render(frames: int, width: int, height: int) -> tuple[str, float, float]:
    splats = read_splats(PLUSH) if PLUSH.is_file() else synthetic(15_105)
    label = "plush_dog.ply" if PLUSH.is_file() else "synthetic 15k"
    centre = np.median(splats.means, axis=0)
    radius = 2.5 * float(np.percentile(np.linalg.norm(splats.means - centre, axis=1), 90))
    f = 0.8 * width
    with tempfile.TemporaryDirectory() as tmp:
        write_splats(Path(tmp) / "s.ply", splats)
        job_frames = []
        for i in range(frames):
            angle = 2 * np.pi * i / max(frames, 1)
            eye = centre + radius * np.array([np.cos(angle), np.sin(angle), 0.3])
            forward = (centre - eye) / np.linalg.norm(centre - eye)
            right = np.cross(forward, (0.0, 0.0, 1.0))
            right /= np.linalg.norm(right)
            R = np.stack([right, np.cross(forward, right), forward])
            w2c = np.eye(4)
            w2c[:3, :3], w2c[:3, 3] = R, -R @ eye
            job_frames.append({"frame": i + 1, "width": width, "height": height,
                               "K": [[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]],
                               "world_to_camera": w2c.tolist(), "clip_start": 0.01, "clip_end": 1000.0,
                               "object_matrices": [np.eye(4).tolist()]})
        job = {"output_dir": str(Path(tmp) / "out"), "objects": [{"name": "bench", "splats": str(Path(tmp) / "s.ply")}],
               "frames": job_frames}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bridge", "render", str(Path(tmp) / "job.json")],
                              capture_output=True, text=True, cwd=ROOT, check=True)
        wall = time.perf_counter() - start
    done = [e for e in map(protocol.decode_event, proc.stdout.splitlines()) if isinstance(e, protocol.Done)]
    return label, done[0].metrics["seconds_per_frame"], wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--height", type=int, default=540)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_version()}, CPU only\n")
    print("| what | size | seconds |\n| --- | --- | --- |")
    for n in (100_000, 1_000_000):
        print(f"| bake_transform (rotation + scale, SH 3) | {n:,} splats | {bench_bake(n):.2f} |")
    label, per_frame, wall = bench_render(args.frames, args.width, args.height)
    print(f"| render pass, per frame (torch CPU) | {label}, {args.width}x{args.height} | {per_frame:.2f} |")
    print(f"| render pass, whole command ({args.frames} frames) | {label}, {args.width}x{args.height} | {wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
