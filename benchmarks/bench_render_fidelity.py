"""Renders of a real trained model in Blender against our reference rasterizer: PSNR and seconds.

    .venv/bin/python benchmarks/bench_render_fidelity.py [--blender all] [--size 320x240]

The plush dog (../shared/data/splats/plush_dog.ply, 15,105 splats, SH degree 3) is imported with
Splatwork (native Gaussian splats on Blender 5.3+, the geometry-nodes quad preview before), seen from
three cameras, and rendered with Cycles (CPU, several sample counts, point-sized pixel filter) and
EEVEE (Mesa's software OpenGL here). Each render is compared with ``bridge.raster.render_splats``
run in the bridge's interpreter (.venv, torch) on the same camera. ``--blender all`` runs it on
every Blender environment dev.py made. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DOG = ROOT.parent / "shared" / "data" / "splats" / "plush_dog.ply"
BRIDGE_PYTHON = ROOT / ".venv" / "bin" / "python"
CAMERAS = {"front": (0.0, -0.45, 0.15), "side": (0.35, 0.3, 0.1), "above": (-0.2, -0.2, 0.4)}
# Native splats are sampled stochastically (the match grows with samples); the quad preview is exact
# at one sample (a point-sized pixel filter and no roulette on transparent bounces).
SAMPLES = {"native": {"CYCLES": (4, 16, 64), "BLENDER_EEVEE": (1, 32)},
           "quad preview": {"CYCLES": (1,), "BLENDER_EEVEE": (1,)}}


def _reference(tmp: Path, K, w2c, width, height) -> np.ndarray:
    code = ("import sys, numpy as np\n"
            "from bridge.formats import read_splats\n"
            "from bridge.raster import render_splats\n"
            "d = np.load(sys.argv[2])\n"
            "w, h = int(sys.argv[4]), int(sys.argv[5])\n"
            "rgb = render_splats(read_splats(sys.argv[1]), d['K'], d['w2c'], w, h)['rgb']\n"
            "np.save(sys.argv[3], rgb)\n")
    np.savez(tmp / "cam.npz", K=K, w2c=w2c)
    subprocess.run([str(BRIDGE_PYTHON), "-c", code, str(tmp / "world.ply"), str(tmp / "cam.npz"),
                    str(tmp / "ref.npy"), str(width), str(height)], cwd=ROOT, check=True)
    rgb = np.clip(np.load(tmp / "ref.npy"), 0, 1)
    return np.round(rgb * 255) / 255


def child(width: int, height: int) -> list[dict]:
    import bpy
    from bench_colmap_import import load_extension
    from mathutils import Vector
    from PIL import Image

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    load_extension()
    splats_module = sys.modules["splatwork.addon.splats"]
    formats = sys.modules["splatwork.bridge.formats"]
    cams = sys.modules["splatwork.bridge.formats.cameras"]
    obj = splats_module.import_splats(str(DOG))
    bpy.context.view_layer.update()  # matrix_world takes the import's y-down turn only now
    kind = "native" if splats_module.is_native(obj) else "quad preview"
    world = splats_module.object_to_splats(obj, apply_transform=True)
    scene = bpy.context.scene
    scene.world = None
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    centre = np.median(world.means, axis=0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="splatwork-fidelity-") as tmp:
        tmp = Path(tmp)
        formats.write_splats(tmp / "world.ply", world)
        for view, offset in CAMERAS.items():
            cam.location = Vector(centre + np.array(offset))
            cam.rotation_euler = (Vector(centre) - cam.location).to_track_quat("-Z", "Y").to_euler()
            bpy.context.view_layer.update()
            d = cam.data
            fx, fy, cx, cy, _, _ = cams.blender_to_intrinsics(d.lens, d.sensor_width, d.sensor_height, d.sensor_fit,
                                                              d.shift_x, d.shift_y, width, height)
            rot, t = cams.matrix_world_to_pose(np.array(cam.matrix_world))
            w2c = np.eye(4)
            w2c[:3, :3], w2c[:3, 3] = rot, t
            want = _reference(tmp, np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), w2c, width, height)
            runs = [(engine, n) for engine, counts in SAMPLES[kind].items() for n in counts]
            for engine, samples in runs:
                scene.render.engine = engine
                if engine == "CYCLES":
                    scene.cycles.device = "CPU"
                    scene.cycles.samples = samples
                    scene.cycles.use_denoising = False
                    scene.cycles.filter_width = 0.01
                else:
                    scene.eevee.taa_render_samples = samples
                    scene.render.filter_size = 0.01
                scene.render.filepath = str(tmp / "render.png")
                start = time.perf_counter()
                bpy.ops.render.render(write_still=True)
                seconds = time.perf_counter() - start
                got = np.asarray(Image.open(tmp / "render.png").convert("RGB"), np.float32) / 255
                psnr = float(10 * np.log10(1.0 / np.mean((got - want) ** 2)))
                rows.append({"blender": bpy.app.version_string, "kind": kind, "view": view,
                             "engine": "Cycles" if engine == "CYCLES" else "EEVEE", "samples": samples,
                             "psnr": psnr, "seconds": seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blender", help="'all', or the Python of a bpy environment (default: this one)")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    if args.child:
        print("RESULT " + json.dumps(child(width, height)))
        return
    if not DOG.exists():
        print(f"skipped: {DOG} not found (../shared/data is absent)")
        return
    from bench_splat_import import blender_pythons

    rows = []
    for python in blender_pythons(args.blender):
        out = subprocess.run([python, __file__, "--child", "--size", args.size], capture_output=True, text=True,
                             check=True, cwd=ROOT)
        rows += json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"plush dog (15,105 splats, SH 3) at {width}x{height}, 3 views; PSNR against the reference rasterizer\n")
    print("| Blender | splats as | engine | samples | PSNR front / side / above (dB) | seconds (mean) |")
    print("| --- | --- | --- | --- | --- | --- |")
    keys = sorted({(r["blender"], r["kind"], r["engine"], r["samples"]) for r in rows},
                  key=lambda k: (k[0], k[2], k[3]), reverse=False)
    for key in keys:
        same = [r for r in rows if (r["blender"], r["kind"], r["engine"], r["samples"]) == key]
        psnrs = " / ".join(f"{r['psnr']:.1f}" for r in same)
        seconds = sum(r["seconds"] for r in same) / len(same)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {psnrs} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
