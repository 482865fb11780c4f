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


def resolved_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against its package (``from ..bridge
    import formats`` in addon/x.py is ``bridge.formats``; a name imported from a package counts as the
    submodule when one of that name exists)."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = ROOT.joinpath(*module.split("."), alias.name)
                out.add(f"{module}.{alias.name}" if sub.is_dir() or sub.with_suffix(".py").is_file() else module)
    return out


# What the add-on may take from the bridge: it runs inside Blender, whose Python has no torch.
ADDON_MAY_IMPORT = ("bridge.formats", "bridge.protocol", "bridge.envcheck")


@pytest.mark.parametrize("path", _sources("addon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_addon_imports_from_bridge_only_formats_protocol_and_envcheck(path):
    bad = {m for m in resolved_imports(path) if (m == "bridge" or m.startswith("bridge."))
           and not any(m == ok or m.startswith(ok + ".") for ok in ADDON_MAY_IMPORT)}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}; the add-on may use only {ADDON_MAY_IMPORT}"


def test_the_import_resolver_sees_relative_imports():
    addon_jobs = resolved_imports(ROOT / "addon" / "jobs.py")
    assert "bridge.protocol" in addon_jobs and "addon.runtime" in addon_jobs
    assert "bridge.formats.table" in resolved_imports(ROOT / "addon" / "splats" / "operators.py")


def test_jobs_and_preferences_do_not_import_each_other_and_one_module_picks_the_python():
    assert "addon.preferences" not in resolved_imports(ROOT / "addon" / "jobs.py")
    assert "addon.runtime" in resolved_imports(ROOT / "addon" / "preferences.py")
    for rel in ("addon/jobs.py", "addon/preferences.py", "addon/training/panel.py"):
        text = (ROOT / rel).read_text()
        assert "def bridge_python" not in text and "def detect_python" not in text, rel


@pytest.mark.parametrize("path", _sources("bridge") + _sources("addon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_packages_import_themselves_relatively(path):
    """Inside the installed extension bridge/ is bl_ext.<repo>.splatwork.bridge: absolute imports break."""
    bad = _imports(path) & {"bridge", "addon", "splatwork"}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} absolutely; use relative imports"
