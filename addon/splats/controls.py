"""The modifier every splat object gets: native splat controls on 5.3+, the quad preview before.

Blender 5.3 draws and renders ``GAUSSIAN_SPLAT`` point clouds itself, so there the geometry-nodes
quad preview would only be slower; what artists still need from Splatwork is the controls. They
are a light geometry-nodes modifier ("Splat Controls") that keeps the point cloud a Gaussian
splat (geometry nodes carry the type through) and only removes points, SH bands or scales splats:

* SH Degree: drops the ``radiance:sh_<k>`` bands above it, so the renderers use fewer bands;
* Opacity Threshold, Crop Box and Display Ratio (viewport only): delete the splats they hide, as
  they do the splats the cleanup tools hid (``.splatwork_hidden``);
* Scale Multiplier: multiplies ``scale``.

On 5.0-5.2 the "Splat Preview" modifier (``preview_nodes.py``) draws the splats as camera-facing
quads and has the same controls plus its own. ``attach_splat_modifier`` picks the right one.
"""
from __future__ import annotations

import numpy as np

from ...bridge.formats import cleanup
from ...bridge.formats.splatset import SH_REST_COUNT
from ..common import compat
from .node_builder import NodeBuilder, versioned_group
from .pointcloud import SCALE, is_native, read_alphas, read_hidden, read_positions, sh_name
from .preview_nodes import INPUTS, MODIFIER_NAME, attach_preview, common_parts, declare_interface, hidden_splats

GROUP_NAME = "Splatwork Splat Controls"
CONTROLS_MODIFIER = "Splat Controls"
VERSION_KEY = "splatwork_controls_version"
CONTROLS_VERSION = 2
CONTROL_NAMES = ("SH Degree", "Opacity Threshold", "Scale Multiplier", "Display Ratio", "Crop Box")
CONTROL_INPUTS = tuple(row for row in INPUTS if row[0] in CONTROL_NAMES)


def splat_modifier(obj):
    """The object's Splatwork modifier (controls or quad preview), or None."""
    for name in (CONTROLS_MODIFIER, MODIFIER_NAME):
        mod = obj.modifiers.get(name)
        if mod is not None and mod.type == "NODES" and mod.node_group is not None:
            return mod
    return None


def crop_box(obj):
    """The Crop Box object the object's controls use, or None."""
    mod = splat_modifier(obj)
    if mod is None or "Crop Box" not in _input_names(mod):
        return None
    return compat.get_modifier_input(mod, "Crop Box")


def to_crop_box(obj, box) -> np.ndarray:
    """4x4 from the object's own space into the box's unit cube (the controls' Object Info is relative)."""
    return np.linalg.inv(np.array(box.matrix_world, np.float64)) @ np.array(obj.matrix_world, np.float64)


def _input_names(mod) -> set[str]:
    return {item.name for item in mod.node_group.interface.items_tree if item.item_type == "SOCKET"}


def shown_in_renders(obj) -> np.ndarray | None:
    """The splats the object's controls let through to a render (and export writes): not hidden by
    the cleanup tools, not below the Opacity Threshold, inside the Crop Box. None: all of them.

    The renderers' own cut-off (alpha below 1/255, which 3DGS never draws) and the viewport's
    Display Ratio are not applied: the first is the renderers' business, not an edit, and the
    second is a viewport setting."""
    hidden = read_hidden(obj)
    mod = splat_modifier(obj)
    if mod is not None:
        names = _input_names(mod)
        threshold = compat.get_modifier_input(mod, "Opacity Threshold") if "Opacity Threshold" in names else 0.0
        if threshold > 0:
            hidden |= cleanup.below_opacity(read_alphas(obj), threshold)
        box = compat.get_modifier_input(mod, "Crop Box") if "Crop Box" in names else None
        if box is not None:
            hidden |= cleanup.outside_box(read_positions(obj), to_crop_box(obj, box))
    return None if not hidden.any() else ~hidden


def attach_splat_modifier(obj, scene=None):
    """The controls on a native splat (5.3+), else the quad preview; an existing one of the other
    kind is removed, so converting an old object swaps its modifier."""
    if compat.NATIVE_SPLATS and is_native(obj):
        old = obj.modifiers.get(MODIFIER_NAME)
        mod = obj.modifiers.get(CONTROLS_MODIFIER)
        if mod is None or mod.type != "NODES":
            mod = obj.modifiers.new(CONTROLS_MODIFIER, "NODES")
        mod.node_group = ensure_controls_group()
        if old is not None:
            _carry_settings(old, mod)
            obj.modifiers.remove(old)
        return mod
    old = obj.modifiers.get(CONTROLS_MODIFIER)
    mod = attach_preview(obj, scene)
    if old is not None:
        _carry_settings(old, mod)
        obj.modifiers.remove(old)
    return mod


def _carry_settings(old, new) -> None:
    names = _input_names(old)
    for name in CONTROL_NAMES:
        if name in names:
            compat.set_modifier_input(new, name, compat.get_modifier_input(old, name))


def ensure_controls_group():
    return versioned_group(GROUP_NAME, VERSION_KEY, CONTROLS_VERSION, _build)


def _build(group) -> None:
    parts = common_parts()
    declare_interface(group, CONTROL_INPUTS)
    b = NodeBuilder(group)
    gin = b.node("NodeGroupInput")
    gout = b.node("NodeGroupOutput")
    arg = {name: gin.outputs[name] for name in CONTROL_NAMES}
    alpha = b.out(b.group(parts["Base"]), "Alpha")
    kept = b.out(b.node("GeometryNodeDeleteGeometry", {"Geometry": gin.outputs["Geometry"],
                                                      "Selection": hidden_splats(b, arg, parts, alpha)},
                        domain="POINT"))
    scale = b.node("GeometryNodeInputNamedAttribute", {"Name": SCALE}, data_type="FLOAT_VECTOR")
    geometry = b.out(b.node("GeometryNodeStoreNamedAttribute", {
        "Geometry": kept, "Name": SCALE,
        "Value": b.vmath("SCALE", b.out(scale, "Attribute"), scale=arg["Scale Multiplier"]),
    }, data_type="FLOAT_VECTOR", domain="POINT"))
    # Each band's coefficients go when the degree is below it (bands 3, 2, 1 in turn).
    for band in (3, 2, 1):
        without = geometry
        for k in range(SH_REST_COUNT[band - 1], SH_REST_COUNT[band]):
            without = b.out(b.node("GeometryNodeRemoveAttribute", {"Geometry": without, "Name": sh_name(k)}))
        below = b.compare("LESS_THAN", arg["SH Degree"], band - 0.5)
        geometry = b.switch("GEOMETRY", below, geometry, without)
    b.links.new(geometry, gout.inputs[0])
