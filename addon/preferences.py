"""Add-on preferences: which Python runs the bridge, and installing / checking that environment.

``bridge_python_setting()`` is the interpreter the artist chose ("" when automatic) and
``managed_python()`` the one "Install training environment" makes; ``jobs.bridge_python()`` picks.
"""
from __future__ import annotations

import os

import bpy

ADDON_ID = __package__.rpartition(".")[0]  # the extension's module: the preferences' bl_idname


def prefs():
    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def bridge_python_setting() -> str:
    p = prefs()
    if p is None or not p.python_path:
        return ""
    return bpy.path.abspath(p.python_path)


def managed_env_dir(create: bool = False) -> str | None:
    """The virtual environment the add-on installs, in the extension's user folder."""
    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="training-env", create=create)
    except ValueError:  # not running as an installed extension
        return None


def managed_python() -> str | None:
    env = managed_env_dir()
    if not env:
        return None
    return os.path.join(env, "Scripts", "python.exe") if os.name == "nt" else os.path.join(env, "bin", "python")


class SplatworkPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    python_path: bpy.props.StringProperty(
        name="Bridge Python",
        description="Python interpreter with PyTorch and gsplat that runs training and reconstruction; "
        "empty: detected automatically",
        subtype="FILE_PATH",
    )

    def draw(self, context):
        from . import jobs

        layout = self.layout
        layout.prop(self, "python_path")
        detected = jobs.bridge_python()
        layout.label(text=f"In use: {detected}" if detected else "No Python with PyTorch found")


_classes = (SplatworkPreferences,)


def register() -> None:
    for cls in _classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
