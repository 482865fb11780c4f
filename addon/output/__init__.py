"""What leaves Blender: splat render passes for compositing, and export of edited splats."""
from __future__ import annotations

from .. import registrar
from . import export, render_passes

register, unregister = registrar(render_passes, export)
