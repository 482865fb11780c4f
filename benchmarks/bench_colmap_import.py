"""Importing a COLMAP model into Blender: 1,000 cameras with their background images.

    .venv/bin/python benchmarks/bench_colmap_import.py [--views 1000] [--points 20000] [--repeat 3]

Runs ``bpy.ops.splatwork.import_colmap`` in headless Blender (bpy) on a generated model (one
SIMPLE_RADIAL camera, views on a sphere, small PNGs on disk: Blender loads a background lazily, so
the photo size barely matters) and prints a Markdown table of medians. Each repeat starts from an
empty file.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from PIL import Image  # noqa: E402

from bridge.formats import colmap  # noqa: E402
from bridge.formats.cameras import Camera, Reconstruction, View  # noqa: E402


def load_extension():
    """The working tree as the ``splatwork`` package, registered (no zip build needed for timing)."""
    spec = importlib.util.spec_from_file_location("splatwork", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["splatwork"] = module
    spec.loader.exec_module(module)
    module.register()
    return module


def make_project(folder: Path, n_views: int, n_points: int) -> None:
    rng = np.random.default_rng(0)
    cam = Camera(1, "SIMPLE_RADIAL", 64, 48, np.array([60.0, 32.0, 24.0, -0.05]))
    views = []
    for i in range(n_views):
        d = rng.normal(size=3)
        centre = 5 * d / np.linalg.norm(d)
        forward = -centre / 5
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        R = np.stack([right, np.cross(forward, right), forward])
        views.append(View(i + 1, f"img_{i:05d}.png", 1, R, -R @ centre))
    points = rng.normal(size=(n_points, 3))
    colors = rng.integers(0, 256, (n_points, 3), dtype=np.uint8)
    colmap.write_model(Reconstruction({1: cam}, views, points, colors, np.ones(n_points), np.full(n_points, 3)),
                       folder / "sparse" / "0")
    (folder / "images").mkdir()
    pixels = np.zeros((48, 64, 3), np.uint8)
    for i, view in enumerate(views):
        pixels[..., 0] = i % 256
        Image.fromarray(pixels).save(folder / "images" / view.name)


def timed_import(folder: Path, **options) -> float:
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    start = time.perf_counter()
    result = bpy.ops.splatwork.import_colmap(model_dir=str(folder / "sparse" / "0"),
                                             images_dir=str(folder / "images"), **options)
    elapsed = time.perf_counter() - start
    assert result == {"FINISHED"}, result
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_extension()
    cases = [
        ("cameras + backgrounds + points + animated camera", {}),
        ("cameras + backgrounds", {"points": False, "animated_camera": False}),
        ("cameras only", {"points": False, "animated_camera": False, "backgrounds": False}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_project(folder, args.views, args.points)
        read = statistics.median(_time(lambda: colmap.read_model(folder / "sparse" / "0")) for _ in range(args.repeat))
        print(f"{args.views} views, {args.points} points; {platform.processor() or platform.machine()}, "
              f"Blender {bpy.app.version_string}\n")
        print("| import | seconds (median) |\n| --- | --- |")
        print(f"| read_model only (pycolmap + checks) | {read:.2f} |")
        for label, options in cases:
            seconds = statistics.median(timed_import(folder, **options) for _ in range(args.repeat))
            print(f"| {label} | {seconds:.2f} |")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
