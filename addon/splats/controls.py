"""The modifier every splat object gets: native splat controls on 5.3+, the quad preview before.

Blender 5.3 draws and renders ``GAUSSIAN_SPLAT`` point clouds itself, so there the geometry-nodes
quad preview would only be slower; what artists still need from Splatwork is the controls. They
are a light geometry-nodes modifier ("Splat Controls") that keeps the point cloud a Gaussian
splat (geometry nodes carry the type through) and only removes points, SH bands or scales splats:

* SH Degree: drops the ``radiance:sh_<k>`` bands above it, so the renderers use fewer bands;
* Opacity Threshold, Crop Box and Display Ratio (viewport only): delete the splats they hide;
* Scale Multiplier: multiplies ``scale``.

On 5.0-5.2 the "Splat Preview" modifier (``preview_nodes.py``) draws the splats as camera-facing
quads and has the same controls plus its own. ``attach_splat_modifier`` picks the right one.
"""
from __future__ import annotations

from ...bridge.formats.splatset import SH_REST_COUNT
from ..common import compat
from .node_builder import NodeBuilder, versioned_group
from .pointcloud import SCALE, is_native, sh_name
from .preview_nodes import INPUTS, MODIFIER_NAME, attach_preview, common_parts, declare_interface, hidden_splats

GROUP_NAME = "Splatwork Splat Controls"
CONTROLS_MODIFIER = "Splat Controls"
VERSION_KEY = "splatwork_controls_version"
CONTROLS_VERSION = 1
CONTROL_NAMES = ("SH Degree", "Opacity Threshold", "Scale Multiplier", "Display Ratio", "Crop Box")
CONTROL_INPUTS = tuple(row for row in INPUTS if row[0] in CONTROL_NAMES)


def splat_modifier(obj):
    """The object's Splatwork modifier (controls or quad preview), or None."""
    for name in (CONTROLS_MODIFIER, MODIFIER_NAME):
        mod = obj.modifiers.get(name)
        if mod is not None and mod.type == "NODES" and mod.node_group is not None:
            return mod
    return None


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
    names = {item.name for item in old.node_group.interface.items_tree if item.item_type == "SOCKET"}
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
