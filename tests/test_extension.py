"""The built zip installs, enables, disables and re-enables cleanly in a real Blender."""
from __future__ import annotations

import sys
import tomllib
import zipfile

import bpy
import pytest
from conftest import EXTENSION_MODULE, ROOT


def _snapshot():
    """Everything an add-on can leave behind: classes, handlers, properties on ID types, menus."""
    classes = {
        cls.__name__ for base in (bpy.types.Operator, bpy.types.Panel, bpy.types.PropertyGroup,
                                  bpy.types.Menu, bpy.types.AddonPreferences, bpy.types.UIList,
                                  bpy.types.FileHandler)
        for cls in base.__subclasses__()
    }
    handlers = {name: len(getattr(bpy.app.handlers, name)) for name in dir(bpy.app.handlers)
                if not name.startswith("_") and isinstance(getattr(bpy.app.handlers, name), list)}
    props = {
        (type_.__name__, name)
        for type_ in (bpy.types.Scene, bpy.types.Object, bpy.types.WindowManager, bpy.types.Camera,
                      bpy.types.Collection, bpy.types.PointCloud)
        for name in dir(type_) if "splatwork" in name.lower()
    }
    menus = {name: len(getattr(getattr(bpy.types, name), "_dyn_ui_initialize", lambda: [])())
             for name in ("TOPBAR_MT_file_import", "TOPBAR_MT_file_export", "VIEW3D_MT_add")}
    return classes, handlers, props, menus


def _running_timers(module):
    return [fn for fn in module.addon.timer_functions() if bpy.app.timers.is_registered(fn)]


def test_manifest_is_what_the_design_card_says():
    with open(ROOT / "blender_manifest.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["id"] == "splatwork"
    assert manifest["name"] == "Splatwork"
    assert manifest["blender_version_min"] >= "4.2.0"
    assert manifest["permissions"]["files"]
    wheels = manifest["wheels"]
    for package in ("plyfile", "pycolmap"):
        assert any(package in w for w in wheels), f"{package} wheel not declared"
    for tag in ("cp311", "cp313"):
        for plat in ("manylinux", "win_amd64", "macosx"):
            assert any(tag in w and plat in w for w in wheels if "pycolmap" in w), (tag, plat)


def test_zip_is_built_by_blenders_builder_without_tests_or_dev_files(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert any(n.startswith("addon/") for n in names)
    assert any(n.startswith("bridge/protocol/") for n in names)
    assert any(n.startswith("wheels/pycolmap") for n in names)
    for banned in ("tests/", "benchmarks/", "tools/", ".venv/", ".git/", "dev.py", "out/"):
        assert not any(n.startswith(banned) for n in names), banned
    top = {n.split("/")[0] for n in names}  # nothing at the top but the extension itself (no lock files)
    assert top <= {"blender_manifest.toml", "__init__.py", "README.md", "LICENSE", "addon", "bridge", "wheels"}, top


def test_install_enable_disable_reenable_leaves_nothing_behind(splatwork):
    assert EXTENSION_MODULE in bpy.context.preferences.addons
    # The wheels were installed where Blender puts extension wheels.
    assert any("extensions" in p and "site-packages" in p for p in sys.path)
    enabled = _snapshot()

    bpy.ops.preferences.addon_disable(module=EXTENSION_MODULE)
    assert EXTENSION_MODULE not in bpy.context.preferences.addons
    disabled = _snapshot()
    assert not _running_timers(splatwork)
    assert not disabled[2], f"properties left behind: {disabled[2]}"

    bpy.ops.preferences.addon_enable(module=EXTENSION_MODULE)
    assert EXTENSION_MODULE in bpy.context.preferences.addons
    assert _snapshot() == enabled

    # A second cycle leaves exactly what the first left.
    bpy.ops.preferences.addon_disable(module=EXTENSION_MODULE)
    assert _snapshot() == disabled
    bpy.ops.preferences.addon_enable(module=EXTENSION_MODULE)
    assert _snapshot() == enabled


@pytest.mark.parametrize("module", ["bridge.protocol", "bridge.formats"])
def test_addon_side_modules_import_inside_the_installed_extension(splatwork, module):
    import importlib

    importlib.import_module(f"{EXTENSION_MODULE}.{module}")
