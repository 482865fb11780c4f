"""Pins copied out of the lock (``constraints.txt``) stay equal to it: the training environment's
Python 3.11 row in ``addon/setup/preferences.py`` and the wheels ``tools/build_extension.py`` ships (and the
manifest lists). Read from the source, so no Blender is needed."""
from __future__ import annotations

import ast
import re
import tomllib

from conftest import ROOT


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#;]+)", line.strip())
        if m:
            pins[_norm(m.group(1))] = m.group(2).split("+")[0]  # torch's local build tag (+cpu) aside
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_constants(path, names: set[str]) -> dict:
    """The module-level assignments to ``names``, evaluated in order (plain literals, tuples, dicts, *)."""
    values: dict = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in names:
                values[node.targets[0].id] = eval(compile(ast.Expression(node.value), str(path), "eval"),
                                                  {"__builtins__": {}}, dict(values))
    return values


def _check(pins, lock, where: str) -> None:
    for pin in pins:
        name, version = pin.split("==")
        assert _norm(name) in lock, f"{where}: {name} is not in constraints.txt"
        assert lock[_norm(name)] == version, f"{where}: {pin}, but constraints.txt has {lock[_norm(name)]}"


def test_the_training_environment_pins_for_python_3_11_are_the_lock():
    consts = _module_constants(ROOT / "addon" / "setup" / "preferences.py", {"TORCH", "_COMMON", "BRIDGE_PINS"})
    _check([consts["TORCH"], *consts["BRIDGE_PINS"][(3, 11)]], _lock(),
           "addon/setup/preferences.py BRIDGE_PINS[(3, 11)]")


def test_the_extension_wheels_are_the_lock_and_the_manifest_lists_them():
    packages = _module_constants(ROOT / "tools" / "build_extension.py", {"PACKAGES"})["PACKAGES"]
    _check(packages, _lock(), "tools/build_extension.py PACKAGES")
    wheels = tomllib.loads((ROOT / "blender_manifest.toml").read_text())["wheels"]
    for pin in packages:
        name, version = pin.split("==")
        stem = f"{name.replace('-', '_')}-{version}-"
        assert any(w.split("/")[-1].startswith(stem) for w in wheels), f"blender_manifest.toml has no {stem}*.whl"
    named = {w.split("/")[-1].split("-")[0].replace("_", "-") for w in wheels}
    assert named <= {p.split("==")[0] for p in packages}, "the manifest ships a wheel the build script does not pin"
