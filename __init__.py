# SPDX-License-Identifier: GPL-3.0-or-later
"""Splatwork: Gaussian splats in Blender. The extension root registers ``addon`` and names the
glTF add-on's user extensions (it looks for these two names on every enabled add-on's module)."""

from .addon import register, unregister
from .addon.output.gltf import SplatExport as glTF2ExportUserExtension  # noqa: N812 - the glTF add-on's name
from .addon.output.gltf import SplatImport as glTF2ImportUserExtension  # noqa: N812

__all__ = ["glTF2ExportUserExtension", "glTF2ImportUserExtension", "register", "unregister"]
