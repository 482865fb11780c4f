"""Splatwork without a window: ``blender --background --command splatwork``."""
from __future__ import annotations

from .. import registrar
from . import cli

register, unregister = registrar(cli)
