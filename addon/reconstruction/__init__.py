"""Cameras and points from photos: structure from motion, and the built-in synthetic scene."""
from __future__ import annotations

from .. import registrar
from . import sfm, synthetic

register, unregister = registrar(synthetic, sfm)
