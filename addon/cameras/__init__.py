"""COLMAP cameras in Blender: import, per-camera render settings, export (COLMAP and transforms.json).

Other parts use :func:`world_from_colmap` to place results trained in COLMAP's world next to the
imported cameras, :func:`camera_to_colmap` for one camera's K and pose as it renders now, and
:func:`cameras_to_reconstruction` to turn any Blender cameras into COLMAP ones.
"""
from __future__ import annotations

from .. import registrar
from . import activate, exporting, import_ops, panel, props
from .activate import activate_camera, apply_camera_settings
from .exporting import camera_to_colmap, cameras_to_reconstruction, world_from_colmap

__all__ = ["activate_camera", "apply_camera_settings", "camera_to_colmap", "cameras_to_reconstruction",
           "world_from_colmap"]

register, unregister = registrar(props, activate, import_ops, exporting, panel)
