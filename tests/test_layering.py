"""The layering rules of the design card, checked on the source."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _sources("bridge"), ids=lambda p: str(p.relative_to(ROOT)))
def test_bridge_never_imports_bpy(path):
    bad = _imports(path) & {"bpy", "bmesh", "mathutils", "bpy_extras", "addon_utils"}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: bridge/ runs outside Blender"


@pytest.mark.parametrize("path", _sources("addon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_addon_never_imports_torch_or_gsplat(path):
    bad = _imports(path) & {"torch", "gsplat", "torchvision", "fused_ssim", "pytorch_msssim"}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: Blender's Python has no torch"


ADDON_SIDE = ["bridge/envcheck.py", *[str(p.relative_to(ROOT)) for p in _sources("bridge/protocol")],
              *[str(p.relative_to(ROOT)) for p in _sources("bridge/formats")]]


@pytest.mark.parametrize("rel", ADDON_SIDE)
def test_formats_and_protocol_need_only_numpy_and_stdlib(rel):
    import sys

    allowed = set(sys.stdlib_module_names) | {"numpy", "plyfile", "zstandard", "pycolmap"}
    bad = _imports(ROOT / rel) - allowed
    assert not bad, f"{rel} imports {bad}; the add-on imports this module inside Blender"


@pytest.mark.parametrize("path", _sources("bridge") + _sources("addon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_packages_import_themselves_relatively(path):
    """Inside the installed extension bridge/ is bl_ext.<repo>.splatwork.bridge: absolute imports break."""
    bad = _imports(path) & {"bridge", "addon", "splatwork"}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} absolutely; use relative imports"
