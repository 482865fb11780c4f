"""The geometry-nodes preview: one camera-facing quad per splat, shaped like the 3DGS projection.

For each splat, seen from the camera it faces (the scene's active camera in renders, the camera that
follows the 3D viewport while the viewport draws, see ``viewport.py``):

* the camera-space centre m and depth d, and the 3DGS 2D covariance J W Sigma W^T J^T + 0.3 px^2,
  written in the plane through m parallel to the image. On that plane the projection is exactly a
  uniform scale, so a Gaussian laid on it projects to the same screen-space Gaussian 3DGS splats;
* the quad spans the ellipse out to where 3DGS stops blending (alpha < 1/255; at most 3 sigma on the
  major axis) and carries ``splat_falloff`` = (k1^2/2, k2^2/2, alpha) for the material, which
  evaluates alpha * exp(-(u^2 k1^2 + v^2 k2^2)/2) from the quad coordinates ``splat_uv``;
* ``splat_color``: SH evaluated along the camera-to-splat direction, clamped at 0 as 3DGS does, then
  decoded from sRGB (trained colours are display-referred) to the linear values Blender renders.

Quads are sorted far to near and realized, so an engine that blends in draw order (EEVEE) composites
them like 3DGS does. The group is built in code, shared by every splat object and rebuilt when
``PREVIEW_VERSION`` changes.
"""
from __future__ import annotations

import math

import bpy

from ...bridge.formats.sh import SH_C0, SH_C1, SH_C2, SH_C3
from ..common import compat
from . import material
from .node_builder import NodeBuilder, build_group, versioned_group
from .pointcloud import BASE, EXTRA_PREFIX, HIDDEN, ROTATION, SCALE, sh_name
from .viewport import ensure_view_camera

# Splatwork 0.1 (layout 1) files keep their own "Splatwork Splat Preview" group, which reads that
# layout; this one reads Blender's splat attributes, so it has another name and never replaces it.
GROUP_NAME = "Splatwork Quad Preview"
PART_PREFIX = "Splatwork Quad Part: "  # the small groups the preview is made of
LEGACY_GROUP_NAME = "Splatwork Splat Preview"
MODIFIER_NAME = "Splat Preview"
VERSION_KEY = "splatwork_preview_version"
PREVIEW_VERSION = 5

NEAR = 0.01  # camera units; quads are not built closer than this (or behind), as 3DGS culls near z
MIN_ALPHA = 1.0 / 255.0
E = math.e

# Modifier inputs: name, socket type, default, min, max, description.
INPUTS = (
    ("SH Degree", "NodeSocketInt", 3, 0, 3, "Highest SH band used for view-dependent colour"),
    ("Opacity Threshold", "NodeSocketFloat", 0.0, 0.0, 1.0, "Hide splats less opaque than this"),
    ("Scale Multiplier", "NodeSocketFloat", 1.0, 0.0, 100.0, "Scale every splat's size"),
    ("Display Ratio", "NodeSocketFloat", 1.0, 0.0, 1.0, "Fraction of splats drawn in the viewport"),
    ("Fast Points", "NodeSocketBool", False, None, None, "Draw round points instead of oriented quads"),
    ("Crop Box", "NodeSocketObject", None, None, None, "Keep only splats inside this object's unit cube"),
    ("Trainer Blending", "NodeSocketBool", False, None, None,
     "Emit the trained sRGB values undecoded so they blend exactly as in training; render with the "
     "view transform Raw. Off: linear colours, right for the view transform Standard and other CG"),
    ("Render Width", "NodeSocketInt", 1920, 1, 65536, "Output width in pixels (driven by the scene)"),
    ("Viewport Camera", "NodeSocketObject", None, None, None,
     "Camera following the 3D viewport (kept up to date by Splatwork), used while drawing the viewport"),
)


def ensure_preview_group():
    """The shared preview node group, built (or rebuilt in place) at the current version."""
    return versioned_group(GROUP_NAME, VERSION_KEY, PREVIEW_VERSION,
                           lambda group: _build(group, material.ensure_material(), _build_parts()))


def attach_preview(obj, scene=None):
    """Add (or refresh) the preview modifier on a splat object; Render Width follows the scene."""
    group = ensure_preview_group()
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is None or mod.type != "NODES":
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = group
    compat.set_modifier_input(mod, "Viewport Camera", ensure_view_camera())
    _drive_render_width(obj, mod, group, scene or bpy.context.scene)
    if not obj.data.materials:
        obj.data.materials.append(material.ensure_material())
    return mod


def _drive_render_width(obj, mod, group, scene) -> None:
    """A driver, not a handler: it keeps working in files opened without Splatwork."""
    path = compat.modifier_input_path(mod, "Render Width")
    obj.driver_remove(path)
    driver = obj.driver_add(path).driver
    driver.type = "SCRIPTED"
    for name, prop in (("width", "render.resolution_x"), ("percent", "render.resolution_percentage")):
        var = driver.variables.new()
        var.name = name
        var.type = "SINGLE_PROP"
        var.targets[0].id_type = "SCENE"
        var.targets[0].id = scene
        var.targets[0].data_path = prop
    driver.expression = "width * percent / 100"  # a simple expression: no Python, no auto-run needed


def declare_interface(group, inputs) -> None:
    """Geometry in and out, then ``inputs`` (rows as in ``INPUTS``) as the modifier's inputs."""
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    for name, kind, default, lo, hi, description in inputs:
        socket = group.interface.new_socket(name, in_out="INPUT", socket_type=kind)
        socket.description = description
        if default is not None:
            socket.default_value = default
        if lo is not None:
            socket.min_value, socket.max_value = lo, hi
        if name in ("Display Ratio", "Opacity Threshold"):
            socket.subtype = "FACTOR"


def hidden_splats(b, arg, parts, alpha):
    """True for splats the controls hide: hidden by the cleanup tools (the ``.splatwork_hidden``
    attribute), fainter than Opacity Threshold (or than 3DGS draws), outside the Crop Box, or (in
    the viewport only) outside the Display Ratio's random subset."""
    drop = b.compare("LESS_THAN", alpha, b.math("MAXIMUM", arg["Opacity Threshold"], MIN_ALPHA))
    drop = b.boolean("OR", drop, _attribute(b, HIDDEN, "BOOLEAN"))
    drop = b.boolean("OR", drop, b.out(b.group(parts["Outside Crop Box"], {"Box": arg["Crop Box"]}), "Outside"))
    subset = b.node("FunctionNodeRandomValue", {"Probability": arg["Display Ratio"],
                                                 "ID": b.node("GeometryNodeInputIndex").outputs[0]},
                    data_type="BOOLEAN")
    return b.boolean("OR", drop, b.boolean("AND", b.node("GeometryNodeIsViewport").outputs[0],
                                           b.boolean("NOT", b.out(subset, "Value"))))


def _build(group, mat, parts) -> None:
    declare_interface(group, INPUTS)

    b = NodeBuilder(group)
    gin = b.node("NodeGroupInput")
    gout = b.node("NodeGroupOutput")
    arg = {name: gin.outputs[name] for name, *_ in INPUTS}
    position = b.node("GeometryNodeInputPosition").outputs[0]
    base = b.group(parts["Base"])
    alpha = b.out(base, "Alpha")

    view = b.group(parts["View"], {"Viewport Camera": arg["Viewport Camera"]})
    to_view, ortho = b.out(view, "Object to View"), b.out(view, "Orthographic")
    from_view = b.out(b.node("FunctionNodeInvertMatrix", {0: to_view}), "Matrix")
    centre = b.out(b.node("FunctionNodeTransformPoint", {"Vector": position, "Transform": to_view}))
    persp = b.switch("FLOAT", ortho, 1.0, 0.0)
    depth = b.math("MULTIPLY", b.separate(centre)[2], -1.0)

    drop = hidden_splats(b, arg, parts, alpha)
    kept = b.node("GeometryNodeDeleteGeometry", {"Geometry": gin.outputs["Geometry"], "Selection": drop},
                  domain="POINT")

    footprint = b.group(parts["Footprint"], {"Object to View": to_view, "Projection": b.out(view, "Projection"),
                                             "Perspective": persp, "Render Width": arg["Render Width"],
                                             "Scale Multiplier": arg["Scale Multiplier"], "Alpha": alpha})
    on_plane = b.out(b.node("FunctionNodeCombineTransform", {
        "Translation": centre,
        "Rotation": b.out(b.node("FunctionNodeAxisAngleToRotation", {"Axis": (0.0, 0.0, 1.0),
                                                                     "Angle": b.out(footprint, "Angle")})),
        "Scale": b.out(footprint, "Extent"),
    }))
    quad_transform = b.out(b.node("FunctionNodeMatrixMultiply", {0: from_view, 1: on_plane}))

    eye = b.out(b.node("FunctionNodeTransformPoint", {"Vector": (0.0, 0.0, 0.0), "Transform": from_view}))
    forward = b.out(b.node("FunctionNodeTransformDirection", {"Direction": (0.0, 0.0, -1.0), "Transform": from_view}))
    direction = b.vmath("NORMALIZE", b.switch("VECTOR", ortho, b.vmath("SUBTRACT", position, eye), forward))
    srgb = b.vmath("ADD", b.vmath("SCALE", b.out(base, "DC"), scale=SH_C0), (0.5, 0.5, 0.5))
    for band in (1, 2, 3):
        term = b.out(b.group(parts[f"SH Band {band}"], {"Direction": direction}), "Colour")
        enabled = b.switch("FLOAT", b.compare("GREATER_EQUAL", arg["SH Degree"], band - 0.5), 0.0, 1.0)
        srgb = b.vmath("ADD", srgb, b.vmath("SCALE", term, scale=enabled))
    srgb = b.vmath("MAXIMUM", srgb, (0.0, 0.0, 0.0))  # 3DGS clamps below, never above
    linear = b.out(b.group(parts["sRGB to Linear"], {"Colour": srgb}), "Colour")
    color = b.switch("VECTOR", arg["Trainer Blending"], linear, srgb)

    # Quads only exist in front of a perspective camera; points (below) keep everything.
    behind = b.boolean("AND", b.compare("GREATER_THAN", persp, 0.5), b.compare("LESS_THAN", depth, NEAR))
    geometry = b.out(b.node("GeometryNodeDeleteGeometry", {"Geometry": kept.outputs[0], "Selection": behind},
                            domain="POINT"))
    for name, kind, value in (("splat_color", "FLOAT_VECTOR", color),
                              ("splat_falloff", "FLOAT_VECTOR", b.out(footprint, "Falloff")),
                              ("splat_transform", "FLOAT4X4", quad_transform)):
        geometry = b.out(b.node("GeometryNodeStoreNamedAttribute",
                                {"Geometry": geometry, "Name": name, "Value": value}, data_type=kind, domain="POINT"))
    # Only what the material reads may reach the realized quads (SH alone would be 4 x 45 floats each).
    for pattern in ("radiance:*", EXTRA_PREFIX + "*", SCALE, ROTATION):
        geometry = b.out(b.node("GeometryNodeRemoveAttribute",
                                {"Geometry": geometry, "Pattern Mode": "Wildcard", "Name": pattern}))

    points = b.node("GeometryNodeSetPointRadius", {"Points": kept.outputs[0],
                                                   "Radius": b.out(footprint, "Point Radius")})
    points_geometry = points.outputs[0]
    for name, value in (("splat_color", color), ("splat_falloff", b.combine(0.0, 0.0, alpha))):
        points_geometry = b.out(b.node("GeometryNodeStoreNamedAttribute",
                                       {"Geometry": points_geometry, "Name": name, "Value": value},
                                       data_type="FLOAT_VECTOR", domain="POINT"))

    far_first = b.math("MULTIPLY", depth, -1.0)
    sorted_points = b.node("GeometryNodeSortElements", {"Geometry": geometry, "Sort Weight": far_first}, domain="POINT")
    grid = b.node("GeometryNodeMeshGrid", {"Size X": 2.0, "Size Y": 2.0, "Vertices X": 2, "Vertices Y": 2})
    quad = b.node("GeometryNodeStoreNamedAttribute",
                  {"Geometry": grid.outputs["Mesh"], "Name": "splat_uv", "Value": position},
                  data_type="FLOAT_VECTOR", domain="POINT")
    instances = b.node("GeometryNodeInstanceOnPoints",
                       {"Points": sorted_points.outputs[0], "Instance": quad.outputs[0]})
    placed = b.node("GeometryNodeSetInstanceTransform", {"Instances": instances.outputs[0],
                                                         "Transform": _attribute(b, "splat_transform", "FLOAT4X4")})
    cleaned = b.node("GeometryNodeRemoveAttribute", {"Geometry": placed.outputs[0], "Name": "splat_transform"})
    realized = b.node("GeometryNodeRealizeInstances", {"Geometry": cleaned.outputs[0]})

    use_points = b.boolean("OR", arg["Fast Points"], b.boolean("NOT", b.out(view, "Has Camera")))
    chosen = b.switch("GEOMETRY", use_points, realized.outputs[0], points_geometry)
    shaded = b.node("GeometryNodeSetMaterial", {"Geometry": chosen, "Material": mat})
    b.links.new(shaded.outputs[0], gout.inputs[0])


def _attribute(b, name, kind):
    return b.out(b.node("GeometryNodeInputNamedAttribute", {"Name": name}, data_type=kind), "Attribute")


def common_parts() -> dict:
    """The parts the quad preview shares with the native splat controls (``controls.py``)."""
    specs = {
        "Base": ((), (("DC", "NodeSocketVector"), ("Alpha", "NodeSocketFloat")), _base),
        "Outside Crop Box": ((("Box", "NodeSocketObject"),), (("Outside", "NodeSocketBool"),), _outside_crop_box),
    }
    return {name: build_group(PART_PREFIX + name, ins, outs, fn) for name, (ins, outs, fn) in specs.items()}


def _build_parts() -> dict:
    vec, flt, mat = "NodeSocketVector", "NodeSocketFloat", "NodeSocketMatrix"
    specs = {
        "View": ((("Viewport Camera", "NodeSocketObject"),),
                 (("Object to View", mat), ("Projection", mat), ("Orthographic", "NodeSocketBool"),
                  ("Has Camera", "NodeSocketBool")), _view),
        "Unit Rotation": ((("Rotation", "NodeSocketRotation"),), (("Rotation", "NodeSocketRotation"),), _unit_rotation),
        "sRGB to Linear": ((("Colour", vec),), (("Colour", vec),), _srgb_to_linear),
    }
    for band in (1, 2, 3):
        specs[f"SH Band {band}"] = ((("Direction", vec),), (("Colour", vec),),
                                    lambda b, ins, band=band: _sh_band(b, ins, band))
    parts = common_parts()
    parts.update({name: build_group(PART_PREFIX + name, ins, outs, fn) for name, (ins, outs, fn) in specs.items()})
    footprint_inputs = (("Object to View", mat), ("Projection", mat), ("Perspective", flt),
                        ("Render Width", "NodeSocketInt"), ("Scale Multiplier", flt), ("Alpha", flt))
    footprint_outputs = (("Extent", vec), ("Angle", flt), ("Falloff", vec), ("Point Radius", flt))
    parts["Footprint"] = build_group(PART_PREFIX + "Footprint", footprint_inputs, footprint_outputs,
                                     lambda b, ins: _footprint(b, ins, parts["Unit Rotation"]))
    return parts


def _base(b, ins):
    """``radiance:base``: the degree-0 SH coefficients and the opacity (FLOAT4, or FLOAT_COLOR on 5.0;
    a colour attribute input reads both exactly)."""
    rgba = b.node("FunctionNodeSeparateColor", {0: _attribute(b, BASE, "FLOAT_COLOR")})
    return {"DC": b.combine(b.out(rgba, "Red"), b.out(rgba, "Green"), b.out(rgba, "Blue")),
            "Alpha": b.out(rgba, "Alpha")}


def _footprint(b, ins, unit_rotation):
    """The screen-space Gaussian on the image-parallel plane through the splat: the quad's extent
    and angle there, the material's falloff, and the fast-point radius."""
    to_view, persp, alpha = ins["Object to View"], ins["Perspective"], ins["Alpha"]
    position = b.node("GeometryNodeInputPosition").outputs[0]
    cx, cy, cz = b.separate(b.out(b.node("FunctionNodeTransformPoint", {"Vector": position, "Transform": to_view})))
    depth = b.math("MULTIPLY", cz, -1.0)
    # Rows of the projection's Jacobian, scaled to the image-parallel plane (Blender camera axes).
    inv_depth = b.math("DIVIDE", persp, b.math("MAXIMUM", depth, NEAR))
    p1 = b.combine(1.0, 0.0, b.math("MULTIPLY", cx, inv_depth))
    p2 = b.combine(0.0, 1.0, b.math("MULTIPLY", cy, inv_depth))
    to_view_t = b.out(b.node("FunctionNodeTransposeMatrix", {0: to_view}))
    scale = b.vmath("SCALE", _attribute(b, SCALE, "FLOAT_VECTOR"), scale=ins["Scale Multiplier"])
    rotation = b.out(b.group(unit_rotation, {"Rotation": _attribute(b, ROTATION, "QUATERNION")}), "Rotation")
    inverse_rotation = b.out(b.node("FunctionNodeInvertRotation", {0: rotation}))

    def row(p):  # p^T J_view R S: one row of the projected factor of the covariance
        world = b.out(b.node("FunctionNodeTransformDirection", {"Direction": p, "Transform": to_view_t}))
        local = b.out(b.node("FunctionNodeRotateVector", {"Vector": world, "Rotation": inverse_rotation}))
        return b.vmath("MULTIPLY", local, scale)

    r1, r2 = row(p1), row(p2)
    p00, _, _ = b.separate(b.out(b.node("FunctionNodeTransformDirection",
                                         {"Direction": (1.0, 0.0, 0.0), "Transform": ins["Projection"]})))
    pixel = b.math("DIVIDE", 2.0, b.math("MULTIPLY", p00, ins["Render Width"]))
    pixel = b.math("MULTIPLY", pixel, b.math("ADD", b.math("MULTIPLY", persp, depth), b.math("SUBTRACT", 1.0, persp)))
    dilation = b.math("MULTIPLY", b.math("MULTIPLY", pixel, pixel), 0.3)
    a = b.math("ADD", b.vmath("DOT_PRODUCT", r1, r1), dilation)
    c = b.math("ADD", b.vmath("DOT_PRODUCT", r2, r2), dilation)
    off = b.vmath("DOT_PRODUCT", r1, r2)
    half_sum = b.math("MULTIPLY", b.math("ADD", a, c), 0.5)
    half_diff = b.math("MULTIPLY", b.math("SUBTRACT", a, c), 0.5)
    root = b.math("SQRT", b.math("ADD", b.math("MULTIPLY", half_diff, half_diff), b.math("MULTIPLY", off, off)))
    major = b.math("ADD", half_sum, root)
    minor = b.math("MAXIMUM", b.math("SUBTRACT", half_sum, root), 1e-30)

    # Squared Mahalanobis radius where alpha * exp(-r^2/2) falls to 1/255 (3DGS skips beyond it).
    reach = b.math("MAXIMUM", b.math("MULTIPLY", b.math("LOGARITHM", b.math("MULTIPLY", alpha, 255.0), E), 2.0),
                   0.0)
    reach_major = b.math("MINIMUM", reach, 9.0)  # 3DGS's square reaches 3 sigma of the major axis
    sx, sy, sz = b.separate(scale)
    return {
        "Extent": b.combine(b.math("SQRT", b.math("MULTIPLY", reach_major, major)),
                            b.math("SQRT", b.math("MULTIPLY", reach, minor)), 1.0),
        "Angle": b.math("MULTIPLY", b.math("ARCTAN2", off, half_diff), 0.5),
        "Falloff": b.combine(b.math("MULTIPLY", reach_major, 0.5), b.math("MULTIPLY", reach, 0.5), alpha),
        "Point Radius": b.math("MAXIMUM", b.math("MAXIMUM", sx, sy), sz),
    }


def _view(b, ins):
    """(object -> camera matrix, projection matrix, is orthographic) of the camera the splats face:
    the viewport camera (``viewport.py``) while drawing the viewport, else the scene's active camera.

    Geometry nodes cannot read the viewport's view in a modifier (Viewport Transform works only in
    node tools), hence the camera that follows it; it has zero scale until a viewport exists.
    """
    viewport_camera = b.node("GeometryNodeObjectInfo", {"Object": ins["Viewport Camera"]}, transform_space="RELATIVE")
    use_viewport = b.boolean("AND", b.node("GeometryNodeIsViewport").outputs[0],
                             b.compare("GREATER_THAN", b.vmath("LENGTH", b.out(viewport_camera, "Scale")), 0.0))
    camera = b.node("GeometryNodeSwitch", input_type="OBJECT")
    b.set_input(camera, "Switch", use_viewport)
    b.links.new(b.node("GeometryNodeInputActiveCamera").outputs[0], camera.inputs["False"])
    b.links.new(ins["Viewport Camera"], camera.inputs["True"])
    camera = camera.outputs[0]
    camera_relative = b.node("GeometryNodeObjectInfo", {"Object": camera}, transform_space="RELATIVE")
    camera_info = b.node("GeometryNodeCameraInfo", {"Camera": camera})
    return {
        "Object to View": b.out(b.node("FunctionNodeInvertMatrix", {0: b.out(camera_relative, "Transform")}), "Matrix"),
        "Projection": b.out(camera_info, "Projection Matrix"),
        "Orthographic": b.out(camera_info, "Is Orthographic"),
        # Object Info reports no object as a zero scale: without a camera, fall back to points.
        "Has Camera": b.compare("GREATER_THAN", b.vmath("LENGTH", b.out(camera_relative, "Scale")), 0.0),
    }


def _outside_crop_box(b, ins):
    """True outside the box object's local [-1, 1]^3 (what a cube empty draws, or the default cube);
    False when no box is set, which Object Info reports as a zero scale."""
    info = b.node("GeometryNodeObjectInfo", {"Object": ins["Box"]}, transform_space="RELATIVE")
    has_box = b.compare("GREATER_THAN", b.vmath("LENGTH", b.out(info, "Scale")), 0.0)
    to_box = b.out(b.node("FunctionNodeInvertMatrix", {0: b.out(info, "Transform")}), "Matrix")
    position = b.node("GeometryNodeInputPosition").outputs[0]
    local = b.vmath("ABSOLUTE", b.out(b.node("FunctionNodeTransformPoint", {"Vector": position, "Transform": to_box})))
    x, y, z = b.separate(local)
    outside = b.compare("GREATER_THAN", b.math("MAXIMUM", b.math("MAXIMUM", x, y), z), 1.0)
    return {"Outside": b.boolean("AND", has_box, outside)}


def _unit_rotation(b, ins):
    """Trainers store unnormalised quaternions; normalise before use, as 3DGS does."""
    q = b.node("FunctionNodeRotationToQuaternion", {0: ins["Rotation"]})
    w, x, y, z = (q.outputs[i] for i in range(4))
    squares = [b.math("MULTIPLY", c, c) for c in (w, x, y, z)]
    total = b.math("ADD", b.math("ADD", squares[0], squares[1]), b.math("ADD", squares[2], squares[3]))
    length = b.math("MAXIMUM", b.math("SQRT", total), 1e-12)
    unit = {i: b.math("DIVIDE", c, length) for i, c in enumerate((w, x, y, z))}
    return {"Rotation": b.out(b.node("FunctionNodeQuaternionToRotation", unit))}


def _sh_band(b, ins, band):
    """One SH band's colour along ``Direction`` (3DGS basis, signs and coefficient order)."""
    x, y, z = b.separate(ins["Direction"])

    def mul(*factors):
        out = factors[0]
        for f in factors[1:]:
            out = b.math("MULTIPLY", out, f)
        return out

    if band == 1:
        basis, first = [mul(y, -SH_C1), mul(z, SH_C1), mul(x, -SH_C1)], 1
    else:
        xx, yy, zz = mul(x, x), mul(y, y), mul(z, z)
        if band == 2:
            basis, first = [mul(x, y, SH_C2[0]), mul(y, z, SH_C2[1]),
                            mul(b.math("SUBTRACT", mul(zz, 2.0), b.math("ADD", xx, yy)), SH_C2[2]),
                            mul(x, z, SH_C2[3]), mul(b.math("SUBTRACT", xx, yy), SH_C2[4])], 4
        else:
            basis, first = [mul(y, b.math("SUBTRACT", mul(xx, 3.0), yy), SH_C3[0]), mul(x, y, z, SH_C3[1]),
                            mul(y, b.math("SUBTRACT", mul(zz, 4.0), b.math("ADD", xx, yy)), SH_C3[2]),
                            mul(z, b.math("SUBTRACT", mul(zz, 2.0), b.math("ADD", mul(xx, 3.0), mul(yy, 3.0))),
                                SH_C3[3]),
                            mul(x, b.math("SUBTRACT", mul(zz, 4.0), b.math("ADD", xx, yy)), SH_C3[4]),
                            mul(z, b.math("SUBTRACT", xx, yy), SH_C3[5]),
                            mul(x, b.math("SUBTRACT", xx, mul(yy, 3.0)), SH_C3[6])], 9
    total = None
    for k, value in enumerate(basis, start=first):
        term = b.vmath("SCALE", _attribute(b, sh_name(k - 1), "FLOAT_VECTOR"), scale=value)
        total = term if total is None else b.vmath("ADD", total, term)
    return {"Colour": total}


def _srgb_to_linear(b, ins):
    channels = []
    for c in b.separate(ins["Colour"]):
        low = b.math("DIVIDE", c, 12.92)
        high = b.math("POWER", b.math("DIVIDE", b.math("ADD", c, 0.055), 1.055), 2.4)
        upper = b.math("GREATER_THAN", c, 0.04045)
        channels.append(b.math("ADD", low, b.math("MULTIPLY", upper, b.math("SUBTRACT", high, low))))
    return {"Colour": b.combine(*channels)}
