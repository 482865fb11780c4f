"""Reading a splat file into a ready splat object: the one path every entry point uses."""
from __future__ import annotations

import os

import bpy

from ...bridge.formats import FormatError, read_splats, table
from ..common import compat
from .controls import attach_splat_modifier
from .pointcloud import is_legacy, splats_to_object, update_object_splats

EXTENSIONS = table.FILE_EXTENSIONS

# Splats overlap deeply: Cycles must see through hundreds of layers, and Russian roulette on
# transparent bounces turns the faint far layers into fireflies.
CYCLES_TRANSPARENT_BOUNCES = 1024
CYCLES_MIN_TRANSPARENT_BOUNCES = 128
# Splats the viewport redraws on every view change by default; larger scenes start with a random
# subset there (Display Ratio), renders always get every splat.
VIEWPORT_SPLATS = 250_000


def configure_render(scene) -> None:
    """Raise the scene's Cycles transparency limits to what splats need (never lowers them)."""
    cycles = getattr(scene, "cycles", None)
    if cycles is None:
        return
    cycles.transparent_max_bounces = max(cycles.transparent_max_bounces, CYCLES_TRANSPARENT_BOUNCES)
    cycles.min_transparent_bounces = max(cycles.min_transparent_bounces, CYCLES_MIN_TRANSPARENT_BOUNCES)


def import_splats(path: str, collection=None, sh_degree: int = 3, z_up: bool = True, setup_render: bool = True,
                 *, name: str | None = None, into=None):
    """Read a splat file into a ready splat object: the one way from a file to an object (the import
    operator, drag and drop, a training run's snapshots and its final splats).

    A new object (native on Blender 5.3+, named ``name`` or after the file) gets its controls, the SH
    degree shown and a viewport display ratio; ``into``, a splat object, is updated in place instead
    (a training run's live object: transform, modifiers and settings kept). FormatError (file +
    problem) when the file is bad; nothing is left behind on failure, because the file is fully read
    and checked before any data-block exists, and whatever was made is removed if a later step fails."""
    if not os.path.isfile(path):
        raise FormatError(path, "no such file")
    splats = read_splats(path)
    if into is not None:
        legacy = is_legacy(into)
        update_object_splats(into, splats)
        if legacy:  # a Splatwork 0.1 object converted by the update: the modifier for its new layout
            attach_splat_modifier(into)
        return into
    if name is None:
        base = os.path.basename(path)
        name = table.strip_extension(base)
        if name == base:  # read by content whatever it is called
            name = os.path.splitext(base)[0]
    obj = new_splat_object(splats, name, collection, sh_degree, setup_render)
    # 3DGS scenes are usually y-down (COLMAP); turning the object, not the data, keeps them raw.
    if z_up:
        obj.rotation_euler = (-1.5707963267948966, 0.0, 0.0)
    return obj


def new_splat_object(splats, name: str, collection=None, sh_degree: int = 3, setup_render: bool = True):
    """A new splat object holding ``splats`` with its controls, the SH degree shown and a viewport
    display ratio: what :func:`import_splats` and the glTF importer make. Nothing is left behind when
    a step fails."""
    obj = splats_to_object(splats, name, collection)
    try:
        mod = attach_splat_modifier(obj)
        compat.set_modifier_input(mod, "SH Degree", min(sh_degree, splats.sh_degree))
        compat.set_modifier_input(mod, "Display Ratio", min(1.0, VIEWPORT_SPLATS / max(1, len(splats))))
        if setup_render:
            configure_render(bpy.context.scene)
    except BaseException:
        remove_object(obj)
        raise
    return obj


def remove_object(obj) -> None:
    """Remove an object and its data-block when nothing else uses it (failed imports)."""
    data = obj.data
    bpy.data.objects.remove(obj)
    if data is not None and data.users == 0:
        bpy.data.pointclouds.remove(data)
