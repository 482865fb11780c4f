"""The README's main job: the whole pipeline, headless, on the built-in synthetic scene.

    python3.11 dev.py demo [--out out] [--steps N] [--views N] [--resolution WxH] [--samples N]

Blender here is the bpy module, with throwaway user folders under OUT/.blender-user, and the
extension is built with Blender's own builder and installed from its zip, as a user would. Then:
render the synthetic scene (photos + exact COLMAP model) -> ``blender --command splatwork`` (called as
its function: import the cameras, train on the CPU backend, import the splats with the preview
modifier, save OUT/demo.blend, render a preview) -> render every held-out view with Cycles ->
OUT/report.md with the trainer's held-out PSNR/SSIM and the Cycles renders' PSNR against the photos.
Exit code: 0 done, 1 a stage failed (the report says which).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = "bl_ext.user_default.splatwork"


def _resolution(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Splatwork end-to-end demo")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--steps", type=int, default=400,
                        help="training steps (default 400: about half a minute on 2 CPU cores)")
    parser.add_argument("--views", type=int, default=24, help="synthetic camera views (every 8th is held out)")
    parser.add_argument("--resolution", type=_resolution, default=(192, 144),
                        help="synthetic image size, WxH (default 192x144)")
    parser.add_argument("--samples", type=int, default=32, help="Cycles samples of the renders")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    user_dir = out / ".blender-user"
    shutil.rmtree(user_dir, ignore_errors=True)
    os.environ["BLENDER_USER_RESOURCES"] = str(user_dir)
    sys.path.insert(0, str(ROOT / "tools"))
    import bpy  # after BLENDER_USER_RESOURCES: Blender reads it once, on import
    import build_extension

    report = Report(out)
    t0 = time.monotonic()
    build_extension.fetch_wheels(ROOT / "wheels")
    zips = build_extension.build(out / "dist")
    platform_tag = {"linux": "linux_x64", "win32": "windows_x64", "darwin": "macos_arm64"}[sys.platform]
    (zip_path,) = [z for z in zips if platform_tag in z.name]
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    if EXTENSION not in bpy.context.preferences.addons:
        return report.fail("the extension did not install")
    import importlib

    splatwork = importlib.import_module(EXTENSION)
    report.stage(f"extension built and installed from `{zip_path.name}`", t0)

    t0 = time.monotonic()
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene_dir = splatwork.addon.reconstruction.synthetic.make_synthetic_scene(out / "scene", n_views=args.views,
                                                               resolution=args.resolution)
    report.stage(f"synthetic scene: {args.views} views at {args.resolution[0]}x{args.resolution[1]} "
                 f"rendered with Cycles, exact COLMAP model in `scene/sparse/0`", t0)

    t0 = time.monotonic()
    background = splatwork.addon.reconstruction.synthetic.BACKGROUND
    blend, preview = out / "demo.blend", out / "preview.png"
    code = splatwork.addon.headless.cli.main([
        "--model", str(scene_dir / "sparse" / "0"), "--images", str(scene_dir / "images"),
        "--out", str(out / "training"), "--preset", "fast", "--steps", str(args.steps), "--downscale", "1",
        "--sh-degree", "1", "--device", "cpu", "--background", ",".join(str(c) for c in background),
        "--blend", str(blend), "--render", str(preview), "--samples", str(args.samples),
    ])
    if code != 0:
        return report.fail(f"`blender --command splatwork` failed with exit code {code} (see the output above "
                           f"and `training/train.log`)")
    report.stage("`blender --command splatwork`: cameras imported, trained on the CPU backend, splats imported "
                 "with the preview modifier, `demo.blend` saved, `preview.png` rendered", t0)

    t0 = time.monotonic()
    metrics = json.loads((out / "training" / "metrics.json").read_text())
    scene = bpy.context.scene
    _world(bpy, scene, background)
    collection = scene.splatwork_training.collection
    rows = []
    for item in metrics["eval"]:
        png = out / f"render_{Path(item['name']).stem}.png"
        splatwork.addon.headless.cli.render_preview(scene, collection, str(png), item["name"], args.samples)
        rows.append((item, png, _psnr(png, scene_dir / "images" / item["name"])))
    report.stage(f"{len(rows)} held-out views rendered with Cycles", t0)
    report.results(metrics, rows)
    report.write()
    return 0


def _world(bpy, scene, srgb) -> None:
    """The synthetic scene's background behind the renders, so they compare with its photos."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb]
    world = bpy.data.worlds.new("Demo background")
    world.color = linear
    if world.node_tree is not None:  # Blender 5 worlds render their node tree
        world.node_tree.nodes["Background"].inputs["Color"].default_value = (*linear, 1.0)
    scene.world = world
    scene.view_settings.view_transform = "Standard"


def _psnr(render: Path, photo: Path) -> float:
    import numpy as np
    from PIL import Image

    with Image.open(render) as a, Image.open(photo) as b:
        x = np.asarray(a.convert("RGB"), np.float64) / 255
        y = np.asarray(b.convert("RGB"), np.float64) / 255
    return float(10 * np.log10(1.0 / max(np.mean((x - y) ** 2), 1e-12)))


class Report:
    def __init__(self, out: Path):
        self.out = out
        self.lines = ["# Splatwork demo", "", "## Stages", ""]

    def stage(self, text: str, t0: float) -> None:
        line = f"- {text} ({time.monotonic() - t0:.1f} s)"
        print(line, flush=True)
        self.lines.append(line)

    def results(self, metrics: dict, rows) -> None:
        self.lines += [
            "", "## Result", "",
            f"- {metrics['num_splats']:,} splats after {metrics['step']} steps on `{metrics['device']}` "
            f"({metrics['backend']} backend), {metrics['train_seconds']:.0f} s of training",
            f"- held-out views (every 8th photo, never trained on): trainer PSNR {metrics['psnr']:.2f} dB, "
            f"SSIM {metrics['ssim']:.3f}",
            "", "| held-out view | trainer PSNR (dB) | SSIM | Cycles render | Cycles PSNR vs photo (dB) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for item, png, psnr in rows:
            self.lines.append(
                f"| {item['name']} | {item['psnr']:.2f} | {item['ssim']:.3f} | `{png.name}` | {psnr:.2f} |")
        self.lines += ["", "Files: `demo.blend` (cameras, splats with the preview modifier), `preview.png`, "
                       "`render_*.png`, `training/` (splats.ply, metrics.json, train.log, checkpoints)."]

    def fail(self, message: str) -> int:
        self.lines += ["", f"**Failed:** {message}"]
        self.write()
        print(f"error: {message}", file=sys.stderr)
        return 1

    def write(self) -> None:
        path = self.out / "report.md"
        tmp = path.with_name(".report.md.tmp")
        tmp.write_text("\n".join(self.lines) + "\n")
        os.replace(tmp, path)
        print(f"report: {path}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
