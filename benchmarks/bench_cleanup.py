"""The cleanup tools on a 3,000,000-splat object: each selection, hide, reveal and delete, in Blender.

    .venv/bin/python benchmarks/bench_cleanup.py [--splats 3000000] [--sh-degree 0] [--repeat 3]
    .venvs/blender-5.3.0/bin/python benchmarks/bench_cleanup.py        (native splats, numpy 2)

A synthetic capture: a sphere shell and a ground plane of uneven density holding 98 % of the splats,
2 % floaters in a box eight times the scene's size, 24 COLMAP cameras (imported with the add-on's
own importer) circling the sphere. Each step runs through the Python API the operators call
(``addon/splats/cleanup.py``: read the object's attributes, the numpy selection, write the
selection), ``--repeat`` times; printed are the median wall seconds, the median CPU seconds of this
process (the machine is shared: CPU time is what the step itself costs), and the step's peak of
numpy memory (tracemalloc, which numpy reports to) against the bytes of the object's point
attributes. Targets (issue 24): each selection under 1 s, outliers under 5 s, memory at most
twice the object's attributes.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def synthetic_splats(n: int, sh_degree: int):
    from bridge.formats import SplatSet

    rng = np.random.default_rng(0)
    s = SplatSet.empty(n, sh_degree)
    shell, floaters = n // 2, n // 50
    plane = n - shell - floaters
    d = rng.normal(size=(shell, 3)).astype(np.float32)
    d *= (2.0 / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    s.means[:shell] = d + rng.normal(0, 0.01, d.shape).astype(np.float32)
    x = rng.uniform(-5, 5, plane)
    s.means[shell:shell + plane] = np.column_stack([x, rng.uniform(-5, 5, plane) ** 3 / 25, np.full(plane, -2.0)])
    s.means[shell + plane:] = rng.uniform(-20, 20, (floaters, 3))
    s.scales[:] = np.log(rng.uniform(0.002, 0.02, (n, 3))).astype(np.float32)
    s.quats[:] = rng.normal(size=(n, 4)).astype(np.float32)
    s.opacities[:] = rng.normal(0, 3, n).astype(np.float32)
    s.sh_dc[:] = rng.normal(size=(n, 3)).astype(np.float32)
    return s


def import_cameras(bpy, views: int = 24) -> None:
    from bridge.formats import colmap
    from bridge.formats.cameras import Camera, Reconstruction, View

    rec_views = []
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, views, endpoint=False)):
        centre = np.array([6 * np.cos(angle), 6 * np.sin(angle), 1.0])
        forward = -centre / np.linalg.norm(centre)
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        rec_views.append(View(i + 1, f"v{i:03d}.png", 1, R, -R @ centre))
    rec = Reconstruction({1: Camera.pinhole(1, 1600, 1200, 1400.0, 1400.0, 800.0, 600.0)}, rec_views,
                         np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), np.zeros(0, int))
    with tempfile.TemporaryDirectory() as tmp:
        colmap.write_model(rec, tmp)
        bpy.ops.splatwork.import_colmap(model_dir=tmp, world="KEEP", backgrounds=False, points=False,
                                        animated_camera=False)


def attribute_bytes(obj) -> int:
    from splatwork.addon.splats.pointcloud import _RAW

    total = 0
    for a in obj.data.attributes:
        if a.data_type in _RAW:
            _, dtype, width = _RAW[a.data_type]
            total += len(obj.data.points) * width * (1 if a.data_type == "BOOLEAN" else np.dtype(dtype).itemsize)
    return total


def measure(fn, repeat: int) -> tuple[float, float, float, object]:
    walls, cpus, peaks, out = [], [], [], None
    for _ in range(repeat):
        tracemalloc.start()
        tracemalloc.reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return statistics.median(walls), statistics.median(cpus), max(peaks), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--splats", type=int, default=3_000_000)
    parser.add_argument("--sh-degree", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import bpy
    from bench_colmap_import import load_extension

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    load_extension()
    api = sys.modules["splatwork.addon.splats"]
    import_cameras(bpy)
    start = time.perf_counter()
    obj = api.splats_to_object(synthetic_splats(args.splats, args.sh_degree), "Bench")
    api.attach_preview(obj)
    build = time.perf_counter() - start
    attrs = attribute_bytes(obj)
    box = bpy.data.objects.new("Box", None)
    bpy.context.scene.collection.objects.link(box)
    box.scale = (4, 4, 4)
    bpy.context.view_layer.update()  # the box's matrix_world
    sys.modules["splatwork.addon.common.compat"].set_modifier_input(api.splat_modifier(obj), "Crop Box", box)

    steps = [
        ("opacity below 0.05", lambda: api.select_splats(obj, "OPACITY", threshold=0.05)),
        ("scale: largest 1 %", lambda: api.select_splats(obj, "SCALE", by="PERCENT", percent=1.0)),
        ("scale: above a size", lambda: api.select_splats(obj, "SCALE", by="SIZE", size=0.015)),
        ("distance: farthest 2 % from the median", lambda: api.select_splats(obj, "DISTANCE", percent=2.0)),
        ("distance: beyond a radius (extend)", lambda: api.select_splats(obj, "DISTANCE", "EXTEND", by="RADIUS",
                                                                         radius=8.0)),
        ("outside the crop box", lambda: api.select_splats(obj, "CROP")),
        ("unseen: outside all 24 views", lambda: api.select_splats(obj, "UNSEEN", test="FRUSTUM")),
        ("unseen: behind all 24 cameras", lambda: api.select_splats(obj, "UNSEEN", test="BEHIND")),
        ("isolated (outliers, 10 neighbours, 2.5 sd)", lambda: api.select_splats(obj, "OUTLIERS", std_ratio=2.5)),
        ("invert the selection", lambda: api.select_all_splats(obj, "INVERT")),
    ]
    print(f"Blender {bpy.app.version_string}, numpy {np.__version__}: {args.splats:,} splats, SH degree "
          f"{args.sh_degree}, point attributes {attrs / 2**20:.0f} MiB (object built in {build:.1f} s)\n")
    print("| step | wall s | CPU s | peak numpy memory | / attributes | result |")
    print("| --- | --- | --- | --- | --- | --- |")

    def row(name, result):
        wall, cpu, peak, out = result
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {peak / 2**20:.0f} MiB | {peak / attrs:.2f} | {out.message} |",
              flush=True)

    for name, fn in steps:
        row(name, measure(fn, args.repeat))
    api.select_splats(obj, "OPACITY", threshold=0.05)

    def hide_and_reveal():
        out = api.hide_splats(obj)
        api.reveal_splats(obj)
        return out

    row("hide the selection (then reveal)", measure(hide_and_reveal, args.repeat))
    row("delete the selection", measure(lambda: api.delete_splats(obj), 1))


if __name__ == "__main__":
    main()
