"""Our trainer and gsplat's simple_trainer in lockstep on the CPU: same start, same views, same noise.

    python benchmarks/anchor_lockstep.py --data DATA --kit KIT [--anchor-site SITE] [--steps 1100]
        [--own-viewmats] [--own-rng]

simple_trainer runs first (under bench_train_gpu's CPU_ANCHOR wrapper, so on our PyTorch rasterizer
and pytorch_msssim's SSIM, in the COLMAP frame: ``--no-normalize_world_space``) and records its initial
splats, the order of its training views, its world-to-camera matrices and, at the dump steps, its
parameters, the means2d gradient, DefaultStrategy's grad2d/count and the learning rates. Then our
Trainer starts from those splats, is fed the same views in the same order and the same matrices
(``--own-viewmats``: ours, which differ in the last float bit), and the same random numbers for the
strategy's splits (``--own-rng``: each its own), and the two are compared step by step. DATA should be
a PINHOLE capture (bench_train_gpu ``--cpu --pinhole`` makes one), so both read the same pixels.
"""
from __future__ import annotations

import argparse
import builtins
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUMPS = (0, 1, 100, 499, 600, 601, 700, 800, 900, 1000, 1099)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--kit", type=Path, default=ROOT / ".gpu" / "kit")
    p.add_argument("--anchor-site", type=Path, default=Path("/tmp/anchor-site"))
    p.add_argument("--steps", type=int, default=1100)
    p.add_argument("--own-viewmats", action="store_true", help="ours uses its own world-to-camera matrices")
    p.add_argument("--own-rng", action="store_true", help="no shared random numbers for the strategy's splits")
    p.add_argument("--work", type=Path, default=Path("/tmp/anchor_lockstep"))
    p.add_argument("--side", choices=("anchor", "ours"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.data, args.kit, args.work = args.data.resolve(), args.kit.resolve(), args.work.resolve()
    return args


def _snapshot(params, state, optimizers, grad):
    return {"params": {k: v.detach().clone() for k, v in params.items()}, "means2d_grad": grad,
            "grad2d": None if state["grad2d"] is None else state["grad2d"].clone(),
            "count": None if state["count"] is None else state["count"].clone(),
            "lrs": {k: o.param_groups[0]["lr"] for k, o in optimizers.items()}}


def _hook(strategy, record: dict, dumps: set[int], sync_rng: bool) -> None:
    """Wraps a DefaultStrategy's step_post_backward: dumps state, optionally reseeds torch first."""
    import torch

    post = strategy.step_post_backward

    def step_post_backward(params, optimizers, state, step, info, packed=False):
        grad = info["means2d"].grad.detach().clone() if step in dumps else None
        if sync_rng:
            torch.manual_seed(1234 + step)  # the splits' torch.randn: the same numbers on both sides
        out = post(params=params, optimizers=optimizers, state=state, step=step, info=info, packed=packed)
        if step in dumps:
            record[step] = _snapshot(params, state, optimizers, grad)
        return out

    strategy.step_post_backward = step_post_backward


def anchor_side(args) -> None:
    import torch

    sys.path[:0] = [str(ROOT / "benchmarks"), "."]
    from bench_train_gpu import CPU_ANCHOR

    def lockstep(Runner, cfg):
        cfg.max_steps, cfg.eval_steps, cfg.save_steps = args.steps, [], []
        runner = Runner(0, 0, 1, cfg)
        rec = {"init": {k: v.detach().clone() for k, v in runner.splats.items()}, "order": [], "dumps": {},
               "viewmats": [torch.linalg.inv(torch.from_numpy(runner.parser.camtoworlds[i]).float()[None])
                            for i in runner.trainset.indices]}
        cls, get = type(runner.trainset), type(runner.trainset).__getitem__

        def getitem(self, item):
            if self is runner.trainset:
                rec["order"].append(int(item))
            return get(self, item)

        cls.__getitem__ = getitem
        _hook(cfg.strategy, rec["dumps"], set(DUMPS), not args.own_rng)
        runner.train()
        torch.save(rec, args.work / "anchor.pt")

    builtins.LOCKSTEP = lockstep
    src = CPU_ANCHOR.replace('"main(0, 0, 1, cfg)"', '"LOCKSTEP(Runner, cfg)"')
    sys.argv = ["simple_trainer.py", "0", "default", "--data_dir", str(args.data), "--data_factor", "1",
                "--result_dir", str(args.work / "anchor"), "--disable_viewer", "--test_every", "8",
                "--no-normalize_world_space"]
    exec(compile(src, "CPU_ANCHOR", "exec"), {"__name__": "__main__"})


def ours_side(args) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from bridge.protocol.jobs import job_from_dict
    from bridge.train.data import load_dataset
    from bridge.train.job import TrainJob
    from bridge.train.trainer import Trainer

    anchor = torch.load(args.work / "anchor.pt", weights_only=False)

    class Quiet:
        def log(self, *a, **k):
            pass

        emit = log

    job = job_from_dict(TrainJob, {"model": str(args.data / "sparse" / "0"), "images": str(args.data / "images"),
                                   "out": str(args.work / "ours"), "downscale": 1, "steps": args.steps,
                                   "device": "cpu"})
    trainer = Trainer(Quiet(), job, load_dataset(job), torch.device("cpu"), "torch")
    for name, value in anchor["init"].items():  # only the random quaternions differ (checked: printed)
        diff = (trainer.params[name].detach() - value).abs().max().item()
        print(f"initial {name}: ours - simple_trainer's, max |diff| {diff:.3g}")
        trainer.params[name].data.copy_(value)
    order = anchor["order"]
    trainer._view_index = lambda step: order[step]
    if not args.own_viewmats:
        trainer.viewmats = [v.clone() for v in anchor["viewmats"]]
    mine: dict = {}
    _hook(trainer.strategy, mine, set(DUMPS), not args.own_rng)
    for step in range(args.steps):
        trainer.train_step(step)
    for step in sorted(set(anchor["dumps"]) & set(mine)):
        a, o = anchor["dumps"][step], mine[step]
        na, no = len(a["params"]["means"]), len(o["params"]["means"])
        line = f"after step {step}: splats simple_trainer {na:,}, ours {no:,}"
        if na == no:
            diffs = " ".join(f"{k} {(o['params'][k] - a['params'][k]).abs().max().item():.2g}" for k in a["params"])
            line += f"; params max |diff|: {diffs}"
            ga, go = a["means2d_grad"], o["means2d_grad"]
            if ga is not None and go is not None and ga.shape == go.shape:
                line += f"; means2d.grad rel diff {((go - ga).norm() / ga.norm().clamp_min(1e-30)).item():.2g}"
        same_lr = all(abs(o["lrs"][k] / a["lrs"][k] - 1) < 1e-9 for k in a["lrs"])
        print(line + ("; same learning rates" if same_lr else f"; learning rates differ: {o['lrs']} {a['lrs']}"))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side == "anchor":
        anchor_side(args)
        return 0
    if args.side == "ours":
        ours_side(args)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve()), "--data", str(args.data), "--kit", str(args.kit),
          "--anchor-site", str(args.anchor_site.resolve()), "--steps", str(args.steps), "--work", str(args.work)]
    me += ["--own-viewmats"] * args.own_viewmats + ["--own-rng"] * args.own_rng
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    anchor_env = dict(env, PYTHONPATH=os.pathsep.join(
        [str(args.kit / "colmapfork"), str(args.kit / "stubs"), str(args.anchor_site), str(ROOT)]))
    with open(args.work / "anchor.log", "w") as log:
        subprocess.run([*me, "--side", "anchor"], cwd=args.kit / "gsplat-examples", env=anchor_env, check=True,
                       stdout=log, stderr=subprocess.STDOUT)
    return subprocess.run([*me, "--side", "ours"], env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
