"""Everything that imports bpy: operators, panels, properties, objects and node trees.

Each submodule named in ``_MODULE_NAMES`` has ``register()`` and ``unregister()``; they register in
that order and unregister in reverse (a folder's ``__init__`` does the same for its modules
with :func:`registrar`). Timers go through :func:`register_timer` so that disabling the
add-on stops every one of them.
"""
from __future__ import annotations

import importlib

import bpy

_MODULE_NAMES: tuple[str, ...] = (  # a folder per thing the artist does, and what they all share
    "setup",  # preferences: the training environment, its check, remote machines' settings
    "common",  # what every part shares: bridge jobs driven from Blender, version checks, reports
    "splats",  # splat objects: import, point cloud, geometry-nodes preview, File > Import, drag and drop
    "cameras",  # COLMAP camera import/export, camera activation
    "training",  # train operators and panel, remote machines
    "reconstruction",  # structure from motion, the built-in synthetic scene
    "output",  # render passes for compositing, export of edited splats
    "headless",  # blender --command splatwork
)
_modules: list = []
_timers: list = []


def register_timer(function, first_interval: float = 0.0, persistent: bool = False) -> None:
    """``bpy.app.timers.register`` that unregister() undoes."""
    if not bpy.app.timers.is_registered(function):
        bpy.app.timers.register(function, first_interval=first_interval, persistent=persistent)
    if function not in _timers:
        _timers.append(function)


def timer_functions() -> list:
    return list(_timers)


def registrar(*modules):
    """``(register, unregister)`` for a folder whose ``modules`` each have both: in order, then in reverse."""

    def register() -> None:
        for module in modules:
            module.register()

    def unregister() -> None:
        for module in reversed(modules):
            module.unregister()

    return register, unregister


def register() -> None:
    _modules.clear()
    for name in _MODULE_NAMES:
        module = importlib.import_module(f".{name}", __name__)
        module.register()
        _modules.append(module)


def unregister() -> None:
    for function in _timers:
        if bpy.app.timers.is_registered(function):
            bpy.app.timers.unregister(function)
    _timers.clear()
    for module in reversed(_modules):
        module.unregister()
    _modules.clear()
