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


ADDON_SIDE = ["bridge/envcheck.py", *[str(p.relative_to(ROOT)) for folder in ("bridge/protocol", "bridge/formats",
                                                                              "bridge/client")
                                     for p in _sources(folder)]]


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
ADDON_MAY_IMPORT = ("bridge.formats", "bridge.protocol", "bridge.client", "bridge.envcheck")


@pytest.mark.parametrize("path", _sources("addon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_addon_imports_from_bridge_only_formats_protocol_client_and_envcheck(path):
    bad = {m for m in resolved_imports(path) if (m == "bridge" or m.startswith("bridge."))
           and not any(m == ok or m.startswith(ok + ".") for ok in ADDON_MAY_IMPORT)}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}; the add-on may use only {ADDON_MAY_IMPORT}"


def test_the_import_resolver_sees_relative_imports():
    addon_jobs = resolved_imports(ROOT / "addon" / "common" / "jobs.py")
    assert "bridge.protocol" in addon_jobs and "addon.setup.runtime" in addon_jobs and "bridge.client" in addon_jobs
    assert "bridge.formats.table" in resolved_imports(ROOT / "addon" / "splats" / "operators.py")


def test_jobs_and_preferences_do_not_import_each_other_and_one_module_picks_the_python():
    assert "addon.setup.preferences" not in resolved_imports(ROOT / "addon" / "common" / "jobs.py")
    assert "addon.setup.runtime" in resolved_imports(ROOT / "addon" / "setup" / "preferences.py")
    for rel in ("addon/common/jobs.py", "addon/setup/preferences.py", "addon/training/panel.py"):
        text = (ROOT / rel).read_text()
        assert "def bridge_python" not in text and "def detect_python" not in text, rel


@pytest.mark.parametrize("path", _sources("bridge") + _sources("addon"), ids=lambda p: str(p.relative_to(ROOT)))
def test_packages_import_themselves_relatively(path):
    """Inside the installed extension bridge/ is bl_ext.<repo>.splatwork.bridge: absolute imports break."""
    bad = _imports(path) & {"bridge", "addon", "splatwork"}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad} absolutely; use relative imports"


def _module_graph() -> dict[str, set[str]]:
    """Every module of addon/ and bridge/ -> the modules of those two it imports, function-local imports
    included (a circle through a function-local import is a circle all the same)."""
    paths = {}
    for folder in ("addon", "bridge"):
        for path in _sources(folder):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in paths.items():
        deps = set()
        for name in resolved_imports(path):
            while name and name not in paths:  # a name taken from a module counts as that module
                name = name.rpartition(".")[0]
            if name and name != module:
                deps.add(name)
        graph[module] = deps
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, circles, counter = {}, {}, set(), [], [], 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def test_no_module_imports_itself_in_a_circle():
    assert _circles(_module_graph()) == []


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Inside bridge/, what the packages the add-on imports may take from the rest of the bridge: they run
# in Blender (no torch), so never the trainer, the rasterizer or a command; and nothing but a client
# imports the client.
BRIDGE_MAY_IMPORT = {
    "bridge.formats": (),
    "bridge.protocol": ("bridge.formats",),
    "bridge.client": ("bridge.protocol", "bridge.formats"),
    "bridge.raster": ("bridge.formats",),
}


@pytest.mark.parametrize("package", sorted(BRIDGE_MAY_IMPORT))
def test_bridge_packages_import_only_what_lies_below_them(package):
    allowed = (package, *BRIDGE_MAY_IMPORT[package])
    bad = {f"{module} -> {dep}" for module, deps in _module_graph().items()
           if module == package or module.startswith(package + ".")
           for dep in deps
           if dep.startswith("bridge") and not any(dep == a or dep.startswith(a + ".") for a in allowed)}
    assert not bad, f"{package} may import only {allowed}: {sorted(bad)}"


def test_only_clients_import_the_client():
    bad = {f"{module} -> {dep}" for module, deps in _module_graph().items() if module.startswith("bridge")
           and not module.startswith("bridge.client") for dep in deps if dep.startswith("bridge.client")}
    assert not bad, sorted(bad)



def _version_reads(source: str) -> list[int]:
    """Lines that read ``bpy.app.version`` (the number, not ``version_string``, which only names it)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and node.attr in ("version", "version_file")
            and isinstance(node.value, ast.Attribute) and node.value.attr == "app"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "bpy"]


def test_only_compat_compares_blender_versions():
    """What differs between Blender versions is asked of addon/common/compat.py, in the add-on and in the tests."""
    assert _version_reads("import bpy\nif bpy.app.version >= (5, 2, 0):\n    pass\n") == [2]
    assert _version_reads("print(bpy.app.version_string)") == []
    compat = ROOT / "addon" / "common" / "compat.py"
    found = {str(p.relative_to(ROOT)): lines for p in [*_sources("addon"), *_sources("tests"), ROOT / "__init__.py"]
             if p != compat and (lines := _version_reads(p.read_text()))}
    assert not found, f"bpy.app.version read outside addon/common/compat.py: {found}"
