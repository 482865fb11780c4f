"""1,000,000 SH-degree-3 splats out of and into Blender: glTF 2.0 (KHR_gaussian_splatting, through
Blender's own glTF exporter and importer with Splatwork's user extensions) against Splatwork's PLY.

    .venv/bin/python benchmarks/bench_gltf.py [--splats 1000000] [--repeat 3] [--blender all]

The extension is built (tools/build_extension.py) and installed once into a throwaway Blender user
folder, enabled as a user has it, because the glTF add-on finds user extensions only on enabled
add-ons. Each timing runs in a fresh Blender process, after the splats were imported there untimed
(for the exports):

* ``PLY export``: File > Export > Gaussian Splats (``splatwork.export_splats``, .ply);
* ``glTF export``: File > Export > glTF 2.0 (``export_scene.gltf``, .glb);
* ``PLY import``: File > Import > Gaussian Splats (``splatwork.import_splats``): a ready splat object;
* ``glTF import``: File > Import > glTF 2.0 (``import_scene.gltf``) of the exported .glb: the same.

The modes run in turn, repeat after repeat; each ratio is the median of the glTF/PLY ratios of
neighbouring runs. Prints a Markdown table (the target: ratios under 1.5).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("PLY export", "glTF export", "PLY import", "glTF import")
MODULE = "bl_ext.user_default.splatwork"


def make_ply(path: Path, n: int) -> None:
    from bridge.formats import SplatSet, write_splats

    rng = np.random.default_rng(0)
    f = np.float32
    write_splats(path, SplatSet(
        means=rng.normal(size=(n, 3)).astype(f), scales=rng.normal(-4, 0.5, (n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f), opacities=rng.normal(size=n).astype(f),
        sh_dc=rng.normal(size=(n, 3)).astype(f), sh_rest=rng.normal(0, 0.1, (n, 15, 3)).astype(f)), fmt="ply")


def child(mode: str, folder: str) -> dict:
    """One timing in this (fresh) process; Blender's user folder is the one the parent set up."""
    import bpy

    if mode == "install":
        result = bpy.ops.extensions.package_install_files(filepath=os.path.join(folder, "splatwork.zip"),
                                                          repo="user_default", enable_on_install=True)
        assert result == {"FINISHED"} and MODULE in bpy.context.preferences.addons
        return {}
    if MODULE not in bpy.context.preferences.addons:  # the bpy module starts without the user's preferences
        bpy.ops.preferences.addon_enable(module=MODULE)
    assert MODULE in bpy.context.preferences.addons, "the installed extension is not enabled"
    bpy.ops.wm.read_homefile(use_empty=True)
    ply, glb = os.path.join(folder, "splats.ply"), os.path.join(folder, "splats.glb")
    if mode in ("PLY export", "glTF export", "make glb"):
        assert bpy.ops.splatwork.import_splats(filepath=ply) == {"FINISHED"}
    start = time.perf_counter()
    if mode == "PLY export":
        result = bpy.ops.splatwork.export_splats(filepath=os.path.join(folder, "out.ply"), use_selection=False)
    elif mode in ("glTF export", "make glb"):
        result = bpy.ops.export_scene.gltf(filepath=os.path.join(folder, "out.glb" if mode == "glTF export" else glb),
                                           export_format="GLB")
    elif mode == "PLY import":
        result = bpy.ops.splatwork.import_splats(filepath=ply)
    else:
        result = bpy.ops.import_scene.gltf(filepath=glb)
    seconds = time.perf_counter() - start
    assert result == {"FINISHED"}, result
    counts = [len(o.data.points) for o in bpy.context.scene.objects if o.type == "POINTCLOUD"]
    return {"seconds": seconds, "count": counts[-1] if counts else 0, "blender": bpy.app.version_string}


def blender_pythons(choice: str | None) -> list[str]:
    if not choice:
        return [sys.executable]
    found = [str(p) for p in (ROOT / ".venvs/blender-5.3.0/bin/python", ROOT / ".venvs/blender-5.2.3/bin/python",
                              ROOT / ".venvs/blender-5.1.2/bin/python", ROOT / ".venv/bin/python") if p.exists()]
    return found if choice == "all" else [choice]


def _run_child(python: str, mode: str, folder: Path, home: Path) -> dict:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(home))
    for var in ("BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS", "BLENDER_USER_EXTENSIONS", "BLENDER_USER_DATAFILES"):
        env.pop(var, None)
    out = subprocess.run([python, __file__, "--child", mode, str(folder)], capture_output=True, text=True, cwd=ROOT,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed on {python}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splats", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--blender", help="'all', or the Python of a bpy environment (default: this one)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    sys.path.insert(0, str(ROOT / "tools"))
    import build_extension

    rows = []
    with tempfile.TemporaryDirectory(prefix="splatwork-bench-gltf-") as tmp:
        folder = Path(tmp)
        build_extension.fetch_wheels(ROOT / "wheels")
        zips = build_extension.build(folder / "dist")
        (folder / "splatwork.zip").symlink_to([z for z in zips if "linux_x64" in z.name][0])
        make_ply(folder / "splats.ply", args.splats)
        for python in blender_pythons(args.blender):
            home = folder / f"home-{Path(python).parent.parent.name}"
            home.mkdir()
            _run_child(python, "install", folder, home)
            _run_child(python, "make glb", folder, home)
            sizes = {"PLY": (folder / "splats.ply").stat().st_size, "glTF": (folder / "splats.glb").stat().st_size}
            # A B A B ...: each glTF timing is paired with the PLY timing next to it, so the ratio holds
            # when the shared machine's speed drifts.
            times = {mode: [] for mode in MODES}
            for _ in range(args.repeat):
                for mode in MODES:
                    run = _run_child(python, mode, folder, home)
                    assert run["count"] == args.splats, run
                    times[mode].append(run["seconds"])
            medians = {mode: statistics.median(values) for mode, values in times.items()}
            for kind in ("export", "import"):
                medians[f"{kind} ratio"] = statistics.median(
                    g / p for g, p in zip(times[f"glTF {kind}"], times[f"PLY {kind}"], strict=True))
            rows.append((run["blender"], medians, sizes))
    print(f"{args.splats:,} splats, SH degree 3; median of {args.repeat} fresh Blender processes\n")
    print("| Blender | PLY export s | glTF export s | ratio | PLY import s | glTF import s | ratio "
          "| PLY MiB | glb MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for blender, m, sizes in rows:
        print(f"| {blender} | {m['PLY export']:.2f} | {m['glTF export']:.2f} | "
              f"{m['export ratio']:.2f} | {m['PLY import']:.2f} | {m['glTF import']:.2f} | "
              f"{m['import ratio']:.2f} | {sizes['PLY'] / 2**20:.0f} | {sizes['glTF'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
