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
    # The oldest Blender the suite runs on (dev.py) is the oldest the extension installs on.
    import dev

    oldest = min(tuple(int(p) for p in v.split(".")) for v in dev.SUPPORTED_BLENDERS)
    assert manifest["blender_version_min"] == f"{oldest[0]}.{oldest[1]}.0"
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


@pytest.mark.parametrize("module", ["bridge.protocol", "bridge.formats", "bridge.client"])
def test_addon_side_modules_import_inside_the_installed_extension(splatwork, module):
    """The bridge packages the add-on uses load from the installed extension, every submodule, with their
    imports relative: nothing in them is the repository's ``bridge`` (importable in this test process only,
    never in an artist's Blender), so an absolute ``import bridge...`` would be caught here."""
    import importlib
    import pkgutil
    import types
    from pathlib import Path

    installed = Path(splatwork.__file__).resolve().parent
    assert not installed.is_relative_to(ROOT), installed
    package = importlib.import_module(f"{EXTENSION_MODULE}.{module}")
    names = [package.__name__] + [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    assert len(names) > 1, names
    for name in names:
        mod = importlib.import_module(name)
        assert Path(mod.__file__).resolve().is_relative_to(installed), (name, mod.__file__)
        for attr, value in vars(mod).items():
            origin = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(origin, str) and origin.split(".")[0] in ("bridge", "addon"):
                raise AssertionError(f"{name}.{attr} comes from the repository's {origin}, not the extension")
