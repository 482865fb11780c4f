"""Gaussian splats as Blender objects: point-cloud layout, geometry-nodes preview, import UI.

API for the other parts of the add-on::

    splats_to_object(splats, name, collection=None) -> Object   a point cloud holding every field raw
    object_to_splats(obj, apply_transform=False) -> SplatSet    exact inverse (edits included)
    update_object_splats(obj, splats)                           in place, for live training previews
    attach_preview(obj, scene=None) -> Modifier                 the shared preview node group + material
    import_splats(path, collection=None, ...) -> Object         read a file into a ready splat object
    configure_render(scene)                                     Cycles transparency limits splats need
    is_splat_object(obj) -> bool
"""
from __future__ import annotations

from . import operators, panel, viewport
from .importer import configure_render, import_splats
from .pointcloud import SplatLayoutError, is_splat_object, object_to_splats, splats_to_object, update_object_splats
from .preview_nodes import attach_preview

__all__ = ["SplatLayoutError", "attach_preview", "configure_render", "import_splats", "is_splat_object",
           "object_to_splats", "splats_to_object", "update_object_splats"]

_SUBMODULES = (operators, panel, viewport)


def register():
    for module in _SUBMODULES:
        module.register()


def unregister():
    for module in reversed(_SUBMODULES):
        module.unregister()
