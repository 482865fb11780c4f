"""Which Python runs the bridge, and where: the one owner of that answer (jobs, preferences and the
panels ask here; nothing else decides).

Local: the *Bridge Python* preference if set, else ``$SPLATWORK_BRIDGE_PYTHON`` (headless Blender,
render farms, CI), else :func:`detect_python`. How it runs (the one command line, its environment)
is ``bridge.client``'s; a remote machine (``addon/training/remote.py``) runs the same command line
on the far side of ``ssh``.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import bpy

ADDON_ID = __package__.rsplit(".", 2)[0]  # the extension's module (above addon.setup): the preferences' bl_idname
BRIDGE_PYTHON_ENV = "SPLATWORK_BRIDGE_PYTHON"


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


def managed_python(env_dir: str | None = None) -> str | None:
    env = env_dir or managed_env_dir()
    if not env:
        return None
    return os.path.join(env, "Scripts", "python.exe") if os.name == "nt" else os.path.join(env, "bin", "python")


CACHE_ENV = "SPLATWORK_CACHE_DIR"  # read by bridge/raster/warp_backend.py


def use_kernel_cache() -> None:
    """Point the bridges this Blender starts (jobs, checks) at the extension's user folder for the compiled
    rasterizer's kernels: ``$SPLATWORK_CACHE_DIR``, unless the environment already names one."""
    if os.environ.get(CACHE_ENV):
        return
    try:
        os.environ[CACHE_ENV] = bpy.utils.extension_path_user(ADDON_ID, path="kernel-cache", create=True)
    except (ValueError, OSError):  # not an installed extension, or no user folder: the bridge's default
        pass


def log_dir() -> str:
    """Where bridge jobs and installs write their logs: kept across sessions, so "Open Log" still works."""
    try:
        return bpy.utils.extension_path_user(ADDON_ID, path="logs", create=True)
    except ValueError:
        return os.path.join(tempfile.gettempdir(), "splatwork-logs")


def bridge_python() -> str | None:
    """The interpreter that runs the bridge here: the preference if set, else $SPLATWORK_BRIDGE_PYTHON,
    else :func:`detect_python`."""
    chosen = bridge_python_setting() or os.environ.get(BRIDGE_PYTHON_ENV, "")
    if chosen:
        return chosen
    return detect_python()


def bridge_python_problem() -> str:
    """Why no local training can start, in one line for the panels ("" when the interpreter exists)."""
    python = bridge_python()
    if not python:
        return "No Python with PyTorch set up"
    if not os.path.isfile(python):
        where = "Bridge Python" if bridge_python_setting() else f"${BRIDGE_PYTHON_ENV}"
        return f"{where} not found: {python}"
    return ""


_detected: list[str | None] = []


def detect_python(refresh: bool = False) -> str | None:
    """The first interpreter that can import torch: the environment the add-on installed, then
    Blender's own (true for the bpy module in a venv), then python3 on PATH."""
    if _detected and not refresh:
        return _detected[0]
    found = None
    managed = managed_python()
    if managed and os.path.isfile(managed):
        found = managed
    elif importlib.util.find_spec("torch") is not None and os.path.isfile(sys.executable):
        found = sys.executable
    else:
        for name in ("python3.11", "python3", "python"):
            candidate = shutil.which(name)
            if candidate and _has_torch(candidate):
                found = candidate
                break
    _detected[:] = [found]
    return found


def _has_torch(python: str) -> bool:
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
