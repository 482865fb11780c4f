"""Gaussian splats as Blender objects: point-cloud layout, geometry-nodes preview, import UI.

API for the other parts of the add-on::

    splats_to_object(splats, name, collection=None) -> Object   a point cloud in Blender's splat layout
                                                                (a native Gaussian splat on 5.3+)
    object_to_splats(obj, apply_transform=False) -> SplatSet    the inverse, for any splat object
    update_object_splats(obj, splats)                           in place, for live training previews
    attach_preview(obj, scene=None) -> Modifier                 controls on 5.3+ natives, else the quad preview
    import_splats(path, collection=None, ...) -> Object         read a file into a ready splat object
    new_splat_object(splats, name, collection=None, ...)        the same from splats in memory (glTF import)
    configure_render(scene)                                     Cycles transparency limits splats need
    is_splat_object(obj) -> bool                                ours (either layout) or any Gaussian splat
    convert_legacy(obj), make_native(obj)                       older objects to the current layout / native
    select_splats, hide_splats, reveal_splats, delete_splats,   the cleanup tools (``cleanup.py``)
    separate_splats, select_all_splats, cleanup
    shown_in_renders(obj) -> mask or None                       what the controls let through (export)
"""
from __future__ import annotations

from .. import registrar
from . import cleanup as cleanup_tools
from . import operators, panel, viewport
from .cleanup import (
    Outcome,
    cleanup,
    delete_splats,
    hide_splats,
    reveal_splats,
    select_all_splats,
    select_splats,
    separate_splats,
)
from .controls import attach_splat_modifier as attach_preview
from .controls import shown_in_renders, splat_modifier
from .importer import configure_render, import_splats, new_splat_object
from .pointcloud import (
    SplatLayoutError,
    convert_legacy,
    is_legacy,
    is_native,
    is_splat_object,
    make_native,
    object_to_splats,
    splats_to_object,
    update_object_splats,
)

__all__ = ["Outcome", "SplatLayoutError", "attach_preview", "cleanup", "configure_render", "convert_legacy",
           "delete_splats", "hide_splats", "import_splats", "is_legacy", "is_native", "is_splat_object", "make_native",
           "new_splat_object", "object_to_splats", "reveal_splats", "select_all_splats", "select_splats",
           "separate_splats", "shown_in_renders", "splat_modifier", "splats_to_object", "update_object_splats"]

register, unregister = registrar(operators, panel, cleanup_tools, viewport)
