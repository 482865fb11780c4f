"""Our trainer against gsplat 1.5.3's own ``examples/simple_trainer.py`` on one CUDA GPU: same data,
same settings, same machine, Default and MCMC, in one device call (under 8 minutes, kernels included).

    python3 benchmarks/bench_train_gpu.py --data DATA --kit KIT [--wheels WHL] [--steps 7000]
        [--runs anchor,ours,ours_fast,anchor_mcmc,ours_mcmc,ours_mcmc_fast] [--out DIR]
    python3 benchmarks/bench_train_gpu.py --dry [--data DATA]     # on the CPU: ours only, a few steps
    python3 benchmarks/bench_train_gpu.py --cpu --kit KIT --anchor-site SITE [--shrink 16] [--seeds 0,1,2,3]
        [--steps 2000] [--runs anchor,ours,ours_fast] [--jobs 2]   # both trainers on the CPU, no GPU

DATA holds ``images/`` and ``sparse/0`` (e.g. ../shared/data/colmap/statue_of_liberty, copied into
the carried ``.gpu/data``). KIT is ../shared/gpu-kit copied to ``.gpu/kit`` (gsplat's examples with
LPIPS stubbed, the pure-Python COLMAP reader simple_trainer imports, fused-ssim, viewer stubs);
WHL the wheels its README lists, installed into /tmp/site first. The recipe, for the device tool:
``carry [".gpu"]``, command ``python3 benchmarks/bench_train_gpu.py --data .gpu/data/statue_of_liberty
--kit .gpu/kit --wheels .gpu/whl --out $OUT``, timeout 540 s: ``--deadline`` (460 s) cuts the runs
short so the table always comes back; runs that did not fit are listed as skipped.

Both trainers: SH degree 3, black background, classic rasterization, full-size images (data factor 1:
simple_trainer would resize JPEGs its own way), every 8th image sorted by name held out, evaluated
once at the end. ``ours`` runs our defaults (gsplat's schedule); ``*_fast`` adds ``--fast-flags``;
``ours_va`` adds ``--visible-adam`` alone; ``anchor_nonorm`` is simple_trainer with
``--no-normalize_world_space`` (ours never moves the world).
MCMC runs cap at ``--cap-max``. Reported per run: process wall time (start-up, data loading and
evaluation included), training seconds and steps/s (simple_trainer's ``ellipse_time``, our
``train_seconds``), peak GPU memory (``torch.cuda.max_memory_allocated``, as both report it), splats,
held-out PSNR/SSIM. Writes ``summary.md`` and ``results.json`` to --out; exits 2 at once without CUDA.

``--cpu`` runs both trainers on the CPU, statistically (several seeds, ``--jobs`` runs at once, each on
``--threads`` torch threads): simple_trainer under CPU_ANCHOR (below: our PyTorch rasterizer in place of
gsplat's CUDA one, pytorch_msssim's SSIM in place of fused-ssim, everything else its own), its missing
pure-Python dependencies from ``--anchor-site`` (pip --target, outside the repository). Both read one
pre-reduced copy of DATA (``--shrink N``: photos reduced N times by PIL's box filter and saved as PNG, the
COLMAP intrinsics scaled to match, written by bridge.formats) at factor 1, so neither resamples.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = ("anchor", "ours", "ours_fast", "anchor_mcmc", "ours_mcmc", "ours_mcmc_fast")
RUNS = (*DEFAULT_RUNS, "ours_va", "anchor_nonorm", "ours_warp")
# ours_warp: our trainer as "ours", on the compiled Warp rasterizer instead of gsplat's kernels
# (SPLATWORK_GSPLAT_KERNELS=off, device auto: Warp on the GPU), the 7,000-step comparison.
FAST_FLAGS = "--visible-adam --res-start 4 --res-full-at 0.5 --sh-rest-every 4"
# ours_va: visible-only Adam alone (gsplat's SelectiveAdam on CUDA), the speed-up that paid on the CPU
# where coarse to fine did not (BENCHMARKS.md, "each speed-up alone").
VA_FLAGS = ["--visible-adam"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "colmap" / "statue_of_liberty")
    kits = [k for k in (ROOT / ".gpu" / "kit", ROOT.parent / "shared" / "gpu-kit") if k.is_dir()]
    p.add_argument("--kit", type=Path, default=kits[0] if kits else None,
                   help="the gpu-kit folder (default .gpu/kit, else ../shared/gpu-kit; needed for the anchor runs)")
    p.add_argument("--wheels", type=Path, help="folder of wheels to install into /tmp/site first")
    p.add_argument("--steps", type=int, help="training steps (default 7000; 20 with --dry)")
    p.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"comma-separated, from {', '.join(RUNS)}")
    p.add_argument("--cap-max", type=int, default=300_000, help="MCMC splat cap for both trainers")
    p.add_argument("--fast-flags", default=FAST_FLAGS, help="our flags for the *_fast runs")
    p.add_argument("--timeout", type=float, default=200.0, help="seconds per trainer run")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds for the whole benchmark: a run that would end later is cut short or skipped, "
                        "so one device call always returns its table (default 460; none with --cpu)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/bench_train_gpu")))
    p.add_argument("--dry", action="store_true", help="CPU: our runs only, --steps 20 at 1/16 size unless given")
    p.add_argument("--cpu", action="store_true", help="both trainers on the CPU (simple_trainer through our "
                   "PyTorch rasterizer): --steps 2000 at --shrink 16 unless given, anchor,ours,ours_fast")
    p.add_argument("--shrink", type=int, default=16, help="--cpu: reduce DATA's photos this many times first")
    p.add_argument("--pinhole", action="store_true", help="--cpu: undistort the reduced photos once (COLMAP) "
                   "into PINHOLE cameras, so both trainers read the same pixels (neither undistorts)")
    p.add_argument("--anchor-site", type=Path, default=Path("/tmp/anchor-site"),
                   help="--cpu: simple_trainer's pure-Python dependencies (pip install --target)")
    p.add_argument("--jobs", type=int, default=2, help="--cpu: runs at once")
    p.add_argument("--threads", type=int, default=1, help="--cpu: torch threads per run (both trainers)")
    p.add_argument("--seeds", default="0", help="comma-separated seed offsets: every run once per seed (ours "
                   "--seed S, simple_trainer its own 42 + S), then a table of means; one capture's held-out PSNR "
                   "can move by about 1 dB between seeds")
    args = p.parse_args(argv)
    try:
        args.seeds = [int(v) for v in args.seeds.split(",") if v.strip()] or [0]
    except ValueError:
        p.error(f"--seeds: expected whole numbers separated by commas, got {args.seeds!r}")
    if args.cpu and args.dry:
        p.error("--cpu and --dry: choose one")
    if args.cpu and args.runs == ",".join(DEFAULT_RUNS):
        args.runs = "anchor,ours,ours_fast"
    runs = [r for r in args.runs.split(",") if r]
    bad = [r for r in runs if r not in RUNS]
    if bad:
        p.error(f"unknown run(s) {', '.join(bad)}; known: {', '.join(RUNS)}")
    if args.cpu and any("mcmc" in r for r in runs):
        p.error("--cpu runs DefaultStrategy only (simple_trainer's MCMC needs gsplat's CUDA relocation)")
    if args.steps is None:
        args.steps = 20 if args.dry else 2000 if args.cpu else 7000
    if args.deadline is None:
        args.deadline = float("inf") if args.cpu else 460.0
    if args.shrink < 1 or args.jobs < 1 or args.threads < 1:
        p.error("--shrink, --jobs and --threads must be at least 1")
    if args.steps < 1:
        p.error("--steps must be at least 1")
    args.runs = [r for r in runs if not (args.dry and r.startswith("anchor"))]
    if not args.dry and any(r.startswith("anchor") for r in args.runs) and args.kit is None:
        p.error("--kit is needed for the anchor (simple_trainer) runs")
    if not (args.data / "sparse" / "0").is_dir() or not (args.data / "images").is_dir():
        p.error(f"{args.data}: needs images/ and sparse/0")
    # simple_trainer runs inside the kit's examples folder: a relative kit path (its stubs, the COLMAP
    # reader) would not be found from there (the first H100 run lost its anchor to that).
    if args.cpu and any(r.startswith("anchor") for r in args.runs) and not (args.anchor_site / "tyro").is_dir():
        p.error(f"--anchor-site {args.anchor_site}: simple_trainer's dependencies are not there (see BENCHMARKS.md)")
    args.data, args.kit, args.out = args.data.resolve(), args.kit and args.kit.resolve(), args.out.resolve()
    args.anchor_site = args.anchor_site.resolve()
    return args


def cuda_name() -> str | None:
    """The GPU's name, or None without CUDA; asked in a subprocess so a bad CUDA set-up cannot hang us."""
    code = "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


# ---- runs -------------------------------------------------------------------------------------

# simple_trainer has no seed option (it seeds with 42 + rank): for another seed it runs under this
# wrapper, which shifts utils.set_random_seed before simple_trainer imports it.
SEEDED_ANCHOR = """import runpy, sys, utils
offset, seed_of = int(sys.argv.pop(1)), utils.set_random_seed
utils.set_random_seed = lambda seed: seed_of(seed + offset)
sys.argv[0] = "simple_trainer.py"
runpy.run_path("simple_trainer.py", run_name="__main__")
"""


# --cpu: simple_trainer on the CPU, its computation otherwise untouched. Before it runs, this wrapper
# swaps gsplat's CUDA rasterization for our PyTorch rasterizer (the one our trainer uses on the CPU),
# makes fused_ssim pytorch_msssim's SSIM (what bridge/train/losses.py uses on the CPU), gives it a
# no-op tensorboard writer and harmless torch.cuda calls, shifts its seed, and runs its source with the
# CUDA device, the DataLoader workers (same RNG draws, one process) and gsplat's CUDA-only launcher
# rewritten in memory: the kit's file is never edited, and each rewrite must match exactly once.
CPU_ANCHOR = r"""import inspect, os, sys, types
offset = int(sys.argv.pop(1))
import torch
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
torch.cuda.synchronize = lambda *a, **k: None
torch.cuda.max_memory_allocated = lambda *a, **k: 0
torch.cuda.empty_cache = lambda *a, **k: None

import gsplat.rendering
from bridge.raster.rasterize import rasterize

gsplat_defaults = {k: v.default for k, v in inspect.signature(gsplat.rendering.rasterization).parameters.items()
                   if v.default is not inspect.Parameter.empty}
ours = set(inspect.signature(rasterize).parameters)
required = {}  # kwargs ours has but must hold at one value (none: ours has packed now, as gsplat)

def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs):
    for key in list(kwargs):
        if key in ours and key not in required:
            continue
        value = kwargs.pop(key)
        want = required.get(key, gsplat_defaults.get(key, inspect.Parameter.empty))
        if key not in gsplat_defaults or not (value is want or value == want):
            raise NotImplementedError(f"CPU anchor: rasterization({key}={value!r}) is not supported by "
                                      f"our rasterizer (only {want!r})")
    return rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                     backend="torch", **kwargs)

gsplat.rendering.rasterization = rasterization

from pytorch_msssim import ssim as _ssim

def fused_ssim(img1, img2, padding="same", train=True):
    if padding != "valid":
        raise NotImplementedError(f"CPU anchor: fused_ssim(padding={padding!r}); only 'valid'")
    return _ssim(img1, img2, data_range=1.0, size_average=True)

sys.modules["fused_ssim"] = types.SimpleNamespace(fused_ssim=fused_ssim)

class SummaryWriter:
    def __init__(self, *a, **k): pass
    def __getattr__(self, name): return lambda *a, **k: None

tb = types.ModuleType("torch.utils.tensorboard")
tb.SummaryWriter = SummaryWriter
sys.modules["torch.utils.tensorboard"] = tb

import utils
seed_of = utils.set_random_seed
utils.set_random_seed = lambda seed: seed_of(seed + offset)

path = os.path.abspath("simple_trainer.py")
src = open(path).read()
for old, new in (('self.device = f"cuda:{local_rank}"', 'self.device = "cpu"'),
                 ("num_workers=4,", "num_workers=0,"), ("persistent_workers=True,", "persistent_workers=False,"),
                 ("pin_memory=True,", "pin_memory=False,"), ("num_workers=1", "num_workers=0"),
                 ("cli(main, cfg, verbose=True)", "main(0, 0, 1, cfg)")):
    if src.count(old) != 1:
        raise SystemExit(f"CPU anchor: {old!r} occurs {src.count(old)} times in {path}, expected once")
    src = src.replace(old, new)
sys.argv[0] = path
module = types.ModuleType("__main__")
module.__file__ = path
sys.modules["__main__"] = module
exec(compile(src, path, "exec"), module.__dict__)
"""


def run_label(name: str, seed: int) -> str:
    return name if seed == 0 else f"{name}@{seed}"


def anchor_command(args, name: str, work: Path, seed: int = 0) -> tuple[list[str], Path]:
    if args.cpu:
        start = [sys.executable, "-c", CPU_ANCHOR, str(seed)]
    else:
        start = [sys.executable, "simple_trainer.py"] if seed == 0 else [sys.executable, "-c", SEEDED_ANCHOR, str(seed)]
    argv = [*start, "mcmc" if name.endswith("mcmc") else "default",
            "--data_dir", str(args.data.resolve()), "--data_factor", "1",
            "--result_dir", str(work / run_label(name, seed)),
            "--max_steps", str(args.steps), "--eval_steps", str(args.steps), "--save_steps", str(args.steps),
            "--disable_viewer", "--test_every", "8"]
    if name.endswith("mcmc"):
        argv += ["--strategy.cap-max", str(args.cap_max)]
    if name == "anchor_nonorm":  # a diagnostic: simple_trainer in the COLMAP world frame, as ours trains
        argv += ["--no-normalize_world_space"]
    return argv, args.kit / "gsplat-examples"


def ours_command(args, name: str, work: Path, seed: int = 0) -> tuple[list[str], Path]:
    argv = [sys.executable, "-m", "bridge", "train", "--model", str(args.data.resolve() / "sparse" / "0"),
            "--images", str(args.data.resolve() / "images"), "--out", str(work / run_label(name, seed)),
            "--steps", str(args.steps), "--seed", str(seed),
            "--progress-every", "100", "--snapshot-every", "0", "--checkpoint-every", str(10 * args.steps)]
    if args.dry:
        argv += ["--device", "cpu", "--downscale", "16"]
    else:
        device = "cpu" if args.cpu else ("auto" if name.endswith("_warp") else "cuda")
        argv += ["--device", device, "--downscale", "1"]
    if "mcmc" in name:
        argv += ["--strategy", "mcmc", "--cap-max", str(args.cap_max)]
    if name.endswith("fast"):
        argv += args.fast_flags.split()
    elif name.endswith("_va"):
        argv += VA_FLAGS
    return argv, ROOT


def run_one(args, name: str, work: Path, env: dict, timeout: float, seed: int = 0) -> dict:
    label = run_label(name, seed)
    # A fresh folder: a run that fails early must not leave an earlier run's results to be read as its own.
    shutil.rmtree(work / label, ignore_errors=True)
    argv, cwd = (anchor_command if name.startswith("anchor") else ours_command)(args, name, work, seed)
    log = work / f"{label}.log"
    if name.endswith("_warp"):  # gsplat's kernels hidden: "auto" runs the compiled Warp rasterizer
        env = dict(env, SPLATWORK_GSPLAT_KERNELS="off")
    start = time.perf_counter()
    with open(log, "wb") as fh:
        try:
            code = subprocess.run(argv, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    wall = time.perf_counter() - start
    try:
        row = parse_anchor(work / label) if name.startswith("anchor") else parse_ours(work / label, log)
    except (OSError, ValueError, KeyError) as exc:
        row = {"error": f"exit {code}: {exc}"}
    row["splat_curve"] = splat_curve(name.startswith("anchor"), log)
    return {"run": label, "wall_s": wall, "exit": code, "seed": seed, **row}


def splat_curve(anchor: bool, log: Path) -> list[tuple[int, int]]:
    """(steps done, splats) through a run: from simple_trainer's initial count and its verbose DefaultStrategy
    lines ("Step S: ... Now having N GSs.", S 0-based, so S + 1 steps are done) or our progress events."""
    curve: dict[int, int] = {}
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if anchor:
            if line.startswith("Model initialized. Number of GS:"):
                curve[0] = int(line.rsplit(":", 1)[1])
            elif line.startswith("Step ") and "Now having" in line:
                step = int(line.split()[1].rstrip(":"))
                curve[step + 1] = int(line.rsplit("Now having", 1)[1].split()[0])
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "progress":
            curve[int(event["step"])] = int(event["num_splats"])
    return sorted(curve.items())


def splats_after(curve, steps: int) -> int | None:
    """Splats after ``steps`` training steps: the last count at or before it (None if none yet)."""
    before = [n for s, n in curve if s <= steps]
    return before[-1] if before else None


def parse_anchor(folder: Path) -> dict:
    """simple_trainer's last stats: val_stepNNNN.json (psnr, ssim, num_GS), train_stepNNNN_rank0.json."""
    stats = folder / "stats"
    val = sorted(stats.glob("val_step*.json"), key=lambda p: int(p.stem.removeprefix("val_step")))
    train = sorted(stats.glob("train_step*_rank0.json"),
                   key=lambda p: int(p.stem.removeprefix("train_step").removesuffix("_rank0")))
    if not val or not train:
        raise ValueError(f"no stats in {stats}")
    v, t = json.loads(val[-1].read_text()), json.loads(train[-1].read_text())
    steps = int(val[-1].stem.removeprefix("val_step")) + 1
    return {"steps": steps, "train_s": t["ellipse_time"], "peak_gb": t["mem"], "splats": v["num_GS"],
            "psnr": v["psnr"], "ssim": v["ssim"]}


def parse_ours(folder: Path, events_log: Path) -> dict:
    """metrics.json, and the peak GPU memory from the progress events on stdout."""
    m = json.loads((folder / "metrics.json").read_text())
    peak = 0.0
    for line in events_log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "progress":
            peak = max(peak, event.get("gpu_mem_mb") or 0.0)
    if m.get("psnr") is None:
        raise ValueError(f"{folder / 'metrics.json'}: no evaluation (status {m.get('status')})")
    return {"steps": m["step"], "train_s": m["train_seconds"], "peak_gb": peak / 1024, "splats": m["num_splats"],
            "psnr": m["psnr"], "ssim": m["ssim"], "phases": m.get("phase_seconds")}


def table(rows: list[dict]) -> str:
    out = ["| run | steps | process wall s | train s | steps/s | peak GPU GB | splats | test PSNR | test SSIM |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['run']} | failed: {r['error']} | {r['wall_s']:.1f} | | | | | | |")
            continue
        rate = r["steps"] / max(r["train_s"], 1e-9)
        out.append(f"| {r['run']} | {r['steps']:,} | {r['wall_s']:.1f} | {r['train_s']:.1f} | {rate:.1f} "
                   f"| {r['peak_gb']:.2f} | {r['splats']:,} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    return "\n".join(out)


def seed_table(rows: list[dict]) -> str:
    """Per run over its seeds: mean wall and training seconds, mean PSNR/SSIM with their range."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault(r["run"].split("@")[0], []).append(r)
    out = ["| run | seeds | mean wall s | mean train s | mean PSNR (min-max) | mean SSIM (min-max) |",
           "| --- | ---: | ---: | ---: | --- | --- |"]
    for name, group in groups.items():
        mean = {k: sum(r[k] for r in group) / len(group) for k in ("wall_s", "train_s", "psnr", "ssim")}
        psnr, ssim = [r["psnr"] for r in group], [r["ssim"] for r in group]
        out.append(f"| {name} | {len(group)} | {mean['wall_s']:.1f} | {mean['train_s']:.1f} | {mean['psnr']:.2f} "
                   f"({min(psnr):.2f}-{max(psnr):.2f}) | {mean['ssim']:.4f} ({min(ssim):.4f}-{max(ssim):.4f}) |")
    return "\n".join(out)


def mean_sd(values) -> str:
    values = [float(v) for v in values if v is not None]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    digits = 3 if abs(mean) < 10 else 2 if abs(mean) < 1000 else 0
    return f"{mean:,.{digits}f} ± {sd:,.{digits}f}"


def cpu_table(rows: list[dict], marks: list[int]) -> str:
    """--cpu: per run over its seeds, mean ± sample standard deviation of every figure, splats after
    each of ``marks`` steps too."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault(r["run"].split("@")[0], []).append(r)
    head = ("| run | seeds | test PSNR | test SSIM | splats | "
            + "".join(f"splats @{m:,} | " for m in marks) + "train s | steps/s |")
    out = [head, "| --- | ---: |" + " ---: |" * (5 + len(marks))]
    for name, group in groups.items():
        cells = [mean_sd(r["psnr"] for r in group), mean_sd(r["ssim"] for r in group),
                 mean_sd(r["splats"] for r in group),
                 *(mean_sd(splats_after(r.get("splat_curve", []), m) for r in group) for m in marks),
                 mean_sd(r["train_s"] for r in group), mean_sd(r["steps"] / max(r["train_s"], 1e-9) for r in group)]
        out.append(f"| {name} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def shrink_data(src: Path, dst: Path, factor: int, pinhole: bool = False) -> Path:
    """``src`` (images/, sparse/0) reduced ``factor`` times into ``dst``: each photo by PIL's box filter,
    saved as PNG (lossless: both trainers then decode the same pixels), the COLMAP cameras' pinhole part
    scaled to the new size (distortion kept: it acts on normalised coordinates), written by
    bridge.formats. ``pinhole``: then undistorted once by COLMAP (bridge.formats.colmap.undistort) into
    PINHOLE cameras, so neither trainer undistorts and both read the same pixels and intrinsics. Made
    once; an existing ``dst`` with a model is reused."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from bridge.formats.cameras import CAMERA_MODELS, Camera
    from bridge.formats.colmap import read_model, resolve_image_path, undistort, write_model

    if (dst / "sparse" / "0").is_dir() and (dst / "images").is_dir():
        return dst
    rec = read_model(src / "sparse" / "0")
    tmp = dst.with_name(dst.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    for cam_id, cam in list(rec.cameras.items()):
        w, h = max(1, round(cam.width / factor)), max(1, round(cam.height / factor))
        names = CAMERA_MODELS[cam.model][1]
        n_pin = 3 if names[0] == "f" else 4
        if names[:n_pin] not in (("f", "cx", "cy"), ("fx", "fy", "cx", "cy")):
            raise ValueError(f"camera {cam_id}: the {cam.model} model has no pinhole part to scale")
        sx, sy = w / cam.width, h / cam.height
        scale = [sx, sx, sy] if n_pin == 3 else [sx, sy, sx, sy]
        if n_pin == 3 and abs(sx - sy) > 1e-6:
            raise ValueError(f"camera {cam_id}: {cam.width}x{cam.height} / {factor} changes the aspect")
        params = np.asarray(cam.params, np.float64).copy()
        params[:n_pin] *= scale
        rec.cameras[cam_id] = Camera(cam.id, cam.model, w, h, params)
    for view in rec.views:
        cam = rec.cameras[view.camera_id]
        with Image.open(resolve_image_path(src / "images", view.name)) as img:
            small = img.convert("RGB").resize((cam.width, cam.height), Image.BOX)
        view.name = str(Path(view.name).with_suffix(".png"))
        small.save(tmp / "images" / view.name)
    write_model(rec, tmp / "sparse" / "0")
    if pinhole:
        model, images = undistort(tmp / "sparse" / "0", tmp / "images", tmp / "pinhole")
        shutil.rmtree(tmp / "sparse")
        shutil.rmtree(tmp / "images")
        (tmp / "sparse").mkdir()
        os.replace(model, tmp / "sparse" / "0")
        os.replace(images, tmp / "images")
        shutil.rmtree(tmp / "pinhole")
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst


# ---- set-up on the device ---------------------------------------------------------------------

def install(args, env: dict) -> None:
    """Wheels into /tmp/site; gsplat's kernels and fused-ssim built side by side (about 90 s on an H200)."""
    site = Path("/tmp/site")
    if args.wheels:
        wheels = sorted(str(p) for p in args.wheels.glob("*.whl"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--target", str(site), *wheels], check=True, timeout=120)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    env.setdefault("MAX_JOBS", "14")
    env["PYTHONUNBUFFERED"] = "1"
    fused = None
    if args.kit and (args.kit / "fused-ssim").is_dir():
        fused = subprocess.Popen([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=args.kit / "fused-ssim",
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t0 = time.perf_counter()
    probe = subprocess.run([sys.executable, "-c", "from gsplat.cuda._backend import _C; print(_C is not None)"],
                           capture_output=True, text=True, env=env, timeout=300)
    print(f"gsplat kernels: {probe.stdout.strip() or probe.stderr.strip()[-300:]} ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    if fused is not None:
        try:
            fused.wait(timeout=200)
        except subprocess.TimeoutExpired:
            fused.kill()
        env["PYTHONPATH"] = os.pathsep.join([str(args.kit / "fused-ssim"), env["PYTHONPATH"]])


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.cpu:
        return main_cpu(args, started)
    gpu = "CPU (dry run)" if args.dry else cuda_name()
    if gpu is None:
        print("bench_train_gpu: needs a CUDA GPU (torch.cuda.is_available() is False here); "
              "use --dry on the CPU", file=sys.stderr)
        return 2
    work = Path("/tmp/bench_train_gpu_work") if not args.dry else args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.dry:
        install(args, env)
    anchor_env = dict(env)
    if args.kit:
        anchor_env["PYTHONPATH"] = os.pathsep.join(
            [str(args.kit / "colmapfork"), str(args.kit / "stubs"), env.get("PYTHONPATH", "")])
    rows = []
    for seed in args.seeds:  # seed by seed: a deadline still leaves every run measured at least once
        for name in args.runs:
            left = args.deadline - (time.perf_counter() - started)
            if left < 30:
                rows.append({"run": run_label(name, seed), "wall_s": 0.0,
                             "error": f"skipped: the {args.deadline:.0f} s deadline"})
                continue
            rows.append(run_one(args, name, work, anchor_env if name.startswith("anchor") else env,
                                min(args.timeout, left), seed))
            r = rows[-1]
            result = r.get("error") or f"PSNR {r['psnr']:.2f}, {r['train_s']:.1f} s training"
            print(f"{r['run']}: {result} ({r['wall_s']:.1f} s wall)", flush=True)
    size = "1/16 size" if args.dry else "full size"
    head = f"{gpu}; data {args.data.name}, {args.steps} steps, {size}; MCMC cap {args.cap_max:,}"
    text = f"{head}\n\n{table(rows)}\n"
    if len(args.seeds) > 1:
        text += f"\nOver seeds {', '.join(map(str, args.seeds))}:\n\n{seed_table(rows)}\n"
    (args.out / "summary.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps({"machine": gpu, "steps": args.steps, "rows": rows}, indent=1))
    print(text)
    return 0 if all("error" not in r for r in rows) else 1


def cpu_env(args) -> tuple[dict, dict]:
    """(ours, anchor) environments for --cpu: the same thread count for both; simple_trainer's path
    holds the kit's COLMAP reader (shadowing PyPI's pycolmap), its stubs, the scratch site and this
    repository (for bridge.raster, which the wrapper rasterizes with)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(args.threads)
    anchor = dict(env, TQDM_DISABLE="1")  # its progress bar would fill the log
    anchor["PYTHONPATH"] = os.pathsep.join(p for p in (
        str(args.kit / "colmapfork"), str(args.kit / "stubs"), str(args.anchor_site), str(ROOT),
        env.get("PYTHONPATH", "")) if p)
    return env, anchor


def main_cpu(args, started: float) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    if args.shrink > 1:
        name = f"{args.data.name}_1_{args.shrink}" + ("_pinhole" if args.pinhole else "")
        args.data = shrink_data(args.data, args.out / name, args.shrink, args.pinhole)
    env, anchor_env = cpu_env(args)
    jobs = [(name, seed) for seed in args.seeds for name in args.runs]  # runs of one seed side by side

    def one(job):
        name, seed = job
        left = args.deadline - (time.perf_counter() - started)
        if left < 30:
            row = {"run": run_label(name, seed), "wall_s": 0.0, "error": f"skipped: the {args.deadline:.0f} s deadline"}
        else:
            row = run_one(args, name, work, anchor_env if name.startswith("anchor") else env,
                          min(args.timeout, left), seed)
        result = row.get("error") or f"PSNR {row['psnr']:.2f}, {row['splats']:,} splats, {row['train_s']:.1f} s train"
        print(f"{row['run']}: {result} ({row['wall_s']:.1f} s wall)", flush=True)
        with lock, open(args.out / "rows.jsonl", "a") as fh:  # what is done survives a study cut short
            fh.write(json.dumps(row) + "\n")
        return row

    lock = threading.Lock()
    (args.out / "rows.jsonl").unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(one, jobs))
    marks = sorted({m for m in (args.steps // 4, args.steps // 2, 3 * args.steps // 4) if m > 0})
    import platform

    head = (f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.jobs} runs at once, "
            f"{args.threads} torch thread(s) each); data {args.data.name}, {args.steps} steps, factor 1")
    text = f"{head}\n\n{table(rows)}\n\nOver seeds {', '.join(map(str, args.seeds))} (mean ± sd):\n\n"
    text += cpu_table(rows, marks) + "\n"
    (args.out / "summary.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(
        {"machine": head, "steps": args.steps, "data": str(args.data), "rows": rows}, indent=1))
    print(text)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
