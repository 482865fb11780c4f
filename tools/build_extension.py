"""Build the extension zips with Blender's own extension builder.

    python tools/build_extension.py [--platform linux-x64 ...] [--out dist]

1. Downloads the wheels the manifest declares into ``wheels/`` (skipped when present), for every
   platform and Python the manifest targets, so the zips install in a Blender with no internet.
2. Checks the manifest's ``wheels`` list is exactly that set.
3. Runs ``blender_ext.py build --split-platforms`` from the bpy wheel and fails on any warning.

Run with the project's environment (``.venv/bin/python``): it needs the bpy module for the builder.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the add-on needs inside Blender besides Blender's own numpy and zstandard.
PACKAGES = ["plyfile==1.1.3", "pycolmap==4.2.1"]
# Blender 4.2-5.0 run Python 3.11 (the manifest admits 5.0+); 5.1+ run 3.13.
PYTHONS = ["3.11", "3.13"]
# Blender platform -> pip platform tags (pip matches each tag exactly).
PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64", "macosx_11_0_arm64"],
}


def blender_ext_script() -> Path:
    import bpy  # the bpy module ships Blender's scripts, the extension builder among them

    return Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def manifest() -> dict:
    with open(ROOT / "blender_manifest.toml", "rb") as fh:
        return tomllib.load(fh)


def fetch_wheels(wheel_dir: Path) -> None:
    """Download each declared wheel that is missing (pip's cache makes repeats cheap)."""
    wanted = [Path(w).name for w in manifest().get("wheels", [])]
    missing = [w for w in wanted if not (wheel_dir / w).exists()]
    if not missing:
        return
    wheel_dir.mkdir(exist_ok=True)
    for python in PYTHONS:
        for tags in PLATFORMS.values():
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", python, "--implementation", "cp", "--dest", str(wheel_dir)]
            for tag in tags:
                cmd += ["--platform", tag]
            subprocess.run(cmd + PACKAGES, check=True)
    still = [w for w in wanted if not (wheel_dir / w).exists()]
    if still:
        sys.exit(f"error: the manifest declares wheels pip did not provide: {still}")


def check_manifest_wheels(wheel_dir: Path) -> None:
    declared = {Path(w).name for w in manifest().get("wheels", [])}
    present = {p.name for p in wheel_dir.glob("*.whl")} if wheel_dir.exists() else set()
    extra = present - declared
    if extra:
        sys.exit(f"error: wheels/ holds wheels the manifest does not declare (remove them): {sorted(extra)}")


def build(out_dir: Path, split: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(blender_ext_script()), "build", "--source-dir", str(ROOT), "--output-dir", str(out_dir)]
    if split:
        cmd.append("--split-platforms")
    result = subprocess.run(cmd, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "WARN" in output.upper() or "ERROR" in output.upper():
        sys.exit(f"error: Blender's extension builder failed or warned:\n{output}")
    version = manifest()["version"]
    return sorted(out_dir.glob(f"splatwork-{version}*.zip"))


def validate(zip_path: Path) -> None:
    cmd = [sys.executable, str(blender_ext_script()), "validate", str(zip_path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "WARN" in output.upper():
        sys.exit(f"error: {zip_path.name} does not validate:\n{output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = parser.parse_args(argv)
    wheel_dir = ROOT / "wheels"
    fetch_wheels(wheel_dir)
    check_manifest_wheels(wheel_dir)
    zips = build(args.out)
    for z in zips:
        validate(z)
        print(z)
    return 0


if __name__ == "__main__":
    sys.exit(main())
