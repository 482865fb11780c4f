"""Everything that imports bpy: operators, panels, properties, objects and node trees.

Each submodule named in ``_MODULE_NAMES`` has ``register()`` and ``unregister()``; they register in
that order and unregister in reverse. Timers go through :func:`register_timer` so that disabling the
add-on stops every one of them.
"""
from __future__ import annotations

import importlib

import bpy

_MODULE_NAMES: tuple[str, ...] = (
    "preferences",  # add-on preferences: bridge interpreter, training environment
    "jobs",  # bridge subprocesses driven from Blender (timers, queue, cleanup)
    "splats",  # splat import, point cloud, geometry-nodes preview, File > Import, drag and drop
    "colmap",  # COLMAP camera import/export, camera activation
    "synthetic",  # the built-in synthetic scene
    "training",  # train operator and panel
    "reconstruct",  # structure-from-motion operator
    "render_passes",  # splat render passes for compositing
    "export",  # export edited splats
    "cli",  # blender --command splatwork
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
