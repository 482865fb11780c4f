"""Importing 1,000,000 SH-degree-3 splats from a 3DGS PLY: Splatwork vs Blender's own PLY importer.

    .venv/bin/python benchmarks/bench_splat_import.py [--splats 1000000] [--repeat 3] [--blender all]

``--blender all`` runs the imports on every supported Blender whose environment dev.py made
(bpy 5.0.1 in .venv, 5.2.3 and 5.3.0 in .venvs/); the default is this interpreter's bpy.

Writes a standard 3DGS binary PLY (62 float properties a splat) with ``bridge.formats.write_splats``,
then times, each in a fresh Blender process so peak memory is the import's own:

* ``splatwork``: ``import_splats`` (read, point cloud with every attribute, its modifier attached:
  native splats with the controls on 5.3+, the quad preview and its material before): a ready object;
* ``splatwork, node group already in the file``: the same for any import after the first in a file
  (the node group is built once per file);
* ``splatwork + first preview``: the same plus the first evaluation of the modifier from a camera
  (what the first viewport draw or render pays);
* ``wm.ply_import``: Blender's own importer of the same file, which makes a native Gaussian splat
  point cloud on 5.3+ and a mesh with the PLY's properties (no preview) before.

Prints a Markdown table of medians; peak RSS is the process's maximum resident set, with the
empty-Blender baseline shown separately.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("splatwork", "splatwork, node group already in the file", "splatwork + first preview", "wm.ply_import")


def _peak_mb() -> float:
    """This process's peak resident memory. Linux's ru_maxrss would carry over the parent's size
    across fork + exec, so the kernel's VmHWM of this process image is read where it exists."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def make_ply(path: Path, n: int) -> None:
    from bridge.formats import SplatSet, write_splats

    rng = np.random.default_rng(0)
    f = np.float32
    splats = SplatSet(
        means=rng.normal(size=(n, 3)).astype(f),
        scales=rng.normal(-4, 0.5, (n, 3)).astype(f),
        quats=rng.normal(size=(n, 4)).astype(f),
        opacities=rng.normal(size=n).astype(f),
        sh_dc=rng.normal(size=(n, 3)).astype(f),
        sh_rest=rng.normal(0, 0.1, (n, 15, 3)).astype(f),
    )
    write_splats(path, splats, fmt="ply")


def child(mode: str, path: str) -> dict:
    """One import in this (fresh) process."""
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    baseline = _peak_mb()
    if mode == "wm.ply_import":
        start = time.perf_counter()
        bpy.ops.wm.ply_import(filepath=path)
        seconds = time.perf_counter() - start
        data = bpy.context.selected_objects[0].data
        count = len(data.points) if hasattr(data, "points") else len(data.vertices)
    else:
        from bench_colmap_import import load_extension

        load_extension()
        splats_module = sys.modules["splatwork.addon.splats"]
        scene = bpy.context.scene
        camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
        scene.collection.objects.link(camera)
        scene.camera = camera
        camera.location = (0.0, -8.0, 0.0)
        camera.rotation_euler = (1.5707963, 0.0, 0.0)
        if mode == "splatwork, node group already in the file":
            if sys.modules["splatwork.addon.common.compat"].NATIVE_SPLATS:
                splats_module.controls.ensure_controls_group()
            else:
                splats_module.preview_nodes.ensure_preview_group()
        start = time.perf_counter()
        obj = splats_module.import_splats(path, z_up=False)
        if mode == "splatwork + first preview":
            obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
        seconds = time.perf_counter() - start
        count = len(obj.data.points)
    return {"seconds": seconds, "count": count, "peak_mb": _peak_mb(), "baseline_mb": baseline,
            "blender": bpy.app.version_string}


def blender_pythons(choice: str | None) -> list[str]:
    if not choice:
        return [sys.executable]
    found = [str(p) for p in (ROOT / ".venvs/blender-5.3.0/bin/python", ROOT / ".venvs/blender-5.2.3/bin/python",
                              ROOT / ".venv/bin/python") if p.exists()]
    return found if choice == "all" else [choice]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splats", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--blender", help="'all', or the Python of a bpy environment (default: this one)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    with tempfile.TemporaryDirectory(prefix="splatwork-bench-") as tmp:
        path = Path(tmp) / "splats.ply"
        make_ply(path, args.splats)
        size_mb = path.stat().st_size / 2**20
        rows = []
        for python in blender_pythons(args.blender):
            for mode in MODES:
                runs = []
                for _ in range(args.repeat):
                    out = subprocess.run([python, __file__, "--child", mode, str(path)],
                                         capture_output=True, text=True, check=True, cwd=ROOT)
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                assert all(r["count"] == args.splats for r in runs), runs
                keys = ("seconds", "peak_mb", "baseline_mb")
                rows.append((runs[0]["blender"], mode, *(statistics.median(r[key] for r in runs) for key in keys)))
    print(f"{args.splats:,} splats, SH degree 3, {size_mb:.0f} MiB PLY; median of {args.repeat} fresh processes\n")
    print("| Blender | import | seconds | peak RSS (MiB) | empty Blender (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for blender, mode, seconds, peak, baseline in rows:
        print(f"| {blender} | {mode} | {seconds:.2f} | {peak:.0f} | {baseline:.0f} |")


if __name__ == "__main__":
    main()
