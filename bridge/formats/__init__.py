"""Splat and camera file formats: numpy and the standard library only.

Both the add-on (inside Blender) and the bridge import this package, so nothing here may import
bpy, torch or gsplat. Public API: ``SplatSet``, ``FormatError``, ``read_splats``, ``write_splats``.
"""
from .errors import FormatError
from .splatset import SH_C0, SplatSet

__all__ = ["SH_C0", "FormatError", "SplatSet"]
