# SPDX-License-Identifier: GPL-3.0-or-later
"""Splatwork: Gaussian splats in Blender. The extension root only registers ``addon``."""

from .addon import register, unregister

__all__ = ["register", "unregister"]
