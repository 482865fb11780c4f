"""The trainer's speed-ups on a real capture on the CPU: held-out PSNR against training time, each
variant against today's defaults, at equal steps and at equal training time.

    .venv/bin/python benchmarks/bench_train_speedups.py [--data DIR] [--downscale 16] [--steps 1500]
        [--variants baseline,fast,...] [--parallel 2] [--out DIR] [--baseline-tree DIR]

Each variant is a real ``python -m bridge train`` run (held-out views: every 8th photo), evaluated at
``--evals`` points; runs go ``--parallel`` at a time in the listed order, so on a shared machine a
variant and the baseline see the same load when they run side by side. ``--baseline-tree`` runs the
variant named ``baseline`` from another checkout (e.g. ``git archive`` of the commit before the
speed-ups). Prints a Markdown table: final PSNR/SSIM/splats/training seconds per variant (equal
steps), the training time each variant needs to reach the baseline's final PSNR, and the baseline's
PSNR after as much training time as the variant took in all (equal time).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "colmap" / "statue_of_liberty"

# name -> extra flags of `python -m bridge train`
VARIANTS = {
    "baseline": [],
    "fast": ["--visible-adam", "--splats-per-pixel", "1", "--res-start", "4", "--res-full-at", "0.75"],  # the preset
    "budget": ["--splats-per-pixel", "1"],
    "schedule": ["--splats-per-pixel", "1", "--schedule-scale", "0"],
    "res": ["--res-start", "4", "--res-full-at", "0.75"],
    "visible_adam": ["--visible-adam"],
    "sh_rest": ["--sh-rest-every", "4"],
    "packed": ["--packed"],
}


def command(name: str, flags: list[str], args, out: Path) -> tuple[list[str], Path]:
    steps = int(flags[flags.index("--steps") + 1]) if "--steps" in flags else args.steps  # a variant may differ
    evals = sorted({max(1, round(steps * i / args.evals)) for i in range(1, args.evals)})
    argv = [sys.executable, "-m", "bridge", "train", "--model", str(args.data / "sparse" / "0"),
            "--images", str(args.data / "images"), "--out", str(out / name), "--steps", str(args.steps),
            "--downscale", str(args.downscale), "--progress-every", str(max(1, args.steps // 60)),
            "--snapshot-every", "0", "--checkpoint-every", str(10 * args.steps),
            "--eval-steps", ",".join(map(str, evals)), "--sh-degree", str(args.sh_degree), *args.flags.split(), *flags]
    cwd = args.baseline_tree if name == "baseline" and args.baseline_tree else ROOT
    return argv, Path(cwd)


def parse_events(lines) -> dict:
    """Progress and eval events of one run -> {"curve": [(step, train_s, psnr, ssim)], "splats", "train_s"}."""
    elapsed, splats, curve, done = {0: 0.0}, 0, [], None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("type")
        if kind == "progress":
            elapsed[event["step"]] = event["elapsed_sec"]
            splats = event["num_splats"]
        elif kind == "eval":
            step = event["step"]
            # evaluations follow a progress report at that step, or interpolate from the nearest ones
            curve.append((step, _at(elapsed, step), event["mean_psnr"], event["mean_ssim"]))
        elif kind == "done":
            done = event.get("metrics", {})
    if done is None:
        raise ValueError("the run did not finish (no done event)")
    return {"curve": curve, "splats": done.get("num_splats", splats), "train_s": done.get("train_seconds")}


def _at(elapsed: dict[int, float], step: int) -> float:
    if step in elapsed:
        return elapsed[step]
    steps = sorted(elapsed)
    below = max((s for s in steps if s <= step), default=0)
    above = min((s for s in steps if s >= step), default=below)
    if above == below:
        return elapsed[below]
    t = (step - below) / (above - below)
    return elapsed[below] + t * (elapsed[above] - elapsed[below])


def time_to_reach(curve, psnr: float) -> float | None:
    """Training seconds at which the (step, seconds, psnr, ssim) curve first reaches ``psnr``, interpolated."""
    prev = (0.0, -1e9)
    for _, seconds, value, _ in curve:
        if value >= psnr:
            if prev[1] < -1e8:
                return seconds
            t = (psnr - prev[1]) / max(value - prev[1], 1e-12)
            return prev[0] + t * (seconds - prev[0])
        prev = (seconds, value)
    return None


def psnr_at_time(curve, seconds: float) -> float | None:
    """PSNR of the curve at ``seconds`` of training (linear between evaluations; None past its end)."""
    prev = None
    for _, t, value, _ in curve:
        if t >= seconds:
            if prev is None:
                return value
            frac = (seconds - prev[0]) / max(t - prev[0], 1e-12)
            return prev[1] + frac * (value - prev[1])
        prev = (t, value)
    return None


def table(results: dict[str, dict]) -> str:
    base = results.get("baseline")
    rows = ["| variant | steps | train s | x faster | splats | test PSNR | test SSIM | s to baseline's PSNR "
            "| baseline PSNR at this time |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        step, seconds, value, ssim_value = r["curve"][-1]
        speed = reach = at_time = "-"
        if base and name != "baseline":
            speed = f"{base['train_s'] / r['train_s']:.2f}"
            target = base["curve"][-1][2]
            hit = time_to_reach(r["curve"], target)
            reach = "not reached" if hit is None else f"{hit:.0f} ({base['train_s'] / hit:.1f}x)"
            same = psnr_at_time(base["curve"], r["train_s"])
            at_time = "-" if same is None else f"{same:.2f}"
        rows.append(f"| {name} | {step:,} | {r['train_s']:.0f} | {speed} | {r['splats']:,} | {value:.2f} "
                    f"| {ssim_value:.3f} | {reach} | {at_time} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with images/ and sparse/0")
    parser.add_argument("--downscale", type=float, default=16.0)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--sh-degree", type=int, default=3)
    parser.add_argument("--evals", type=int, default=10, help="evaluations per run, the last at the end")
    parser.add_argument("--variants", default="baseline,fast", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--flags", default="", help="flags for every run, before the variant's (which win)")
    parser.add_argument("--full-size", action="store_true",
                        help="also score each run's splats.ply on the held-out views at the data's full size")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help='another variant, e.g. --variant "budget4k=--max-splats 4000" (then list it)')
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_train_speedups"))
    parser.add_argument("--baseline-tree", type=Path, help="checkout to run the 'baseline' variant from")
    parser.add_argument("--dry", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    variants = dict(VARIANTS)
    for extra in args.variant:
        name, _, flags = extra.partition("=")
        variants[name] = flags.split()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in variants]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(variants)}")
    if not args.dry and not (args.data / "sparse" / "0").is_dir():
        parser.error(f"{args.data}: no sparse/0 (a COLMAP model) there")
    runs = {name: command(name, variants[name], args, args.out) for name in names}
    if args.dry:
        for name, (argv_, cwd) in runs.items():
            print(f"{name} (in {cwd}): {' '.join(argv_)}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": ""}
    pending, running, results = list(names), {}, {}
    print(f"{args.data.name} at 1/{args.downscale:g}, {args.steps} steps, load average {os.getloadavg()[0]:.1f}",
          flush=True)
    while pending or running:
        while pending and len(running) < args.parallel:
            name = pending.pop(0)
            argv_, cwd = runs[name]
            log = open(args.out / f"{name}.events", "w")  # noqa: SIM115 (closed when the run ends)
            running[name] = (subprocess.Popen(argv_, cwd=cwd, stdout=log, stderr=subprocess.DEVNULL, env=env), log)
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                del running[name]
                try:
                    results[name] = parse_events((args.out / f"{name}.events").read_text().splitlines())
                except ValueError as exc:
                    print(f"{name}: failed ({exc}; exit {proc.returncode})", flush=True)
                else:
                    print(f"{name}: {results[name]['train_s']:.0f} s, PSNR {results[name]['curve'][-1][2]:.2f}",
                          flush=True)
        time.sleep(1.0)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(table({n: results[n] for n in names if n in results}))
    if args.full_size:
        print("\nHeld-out PSNR of each run's splats.ply rendered at the data's full size:")
        for name in names:
            if name in results:
                print(f"- {name}: {full_size_psnr(args, args.out / name):.2f} dB", flush=True)
    return 0


def full_size_psnr(args, run: Path) -> float:
    """Mean held-out PSNR of ``run``/splats.ply rendered at full size (downscale 1), whatever it trained at."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from bridge.formats import read_splats
    from bridge.raster import render_splats
    from bridge.train.data import load_dataset
    from bridge.train.job import make_job
    from bridge.train.losses import mse_to_psnr

    flags = args.flags.split()
    background = [float(c) for c in flags[flags.index("--background") + 1].split(",")] if "--background" in flags \
        else [0.0, 0.0, 0.0]
    data = load_dataset(make_job({"model": str(args.data / "sparse" / "0"), "images": str(args.data / "images"),
                                  "out": str(run), "background": background}))
    splats = read_splats(run / "splats.ply")
    values = []
    for view in data.test:
        rgb = render_splats(splats, view.K, view.world_to_camera, view.width, view.height,
                            background=np.array(background))["rgb"]
        mse = float(np.mean((np.clip(rgb, 0, 1) - view.image / 255.0) ** 2))
        values.append(mse_to_psnr(mse))
    return float(np.mean(values))


if __name__ == "__main__":
    sys.exit(main())
