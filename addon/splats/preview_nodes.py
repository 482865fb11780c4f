"""The geometry-nodes preview: one camera-facing quad per splat, shaped like the 3DGS projection.

For each splat, seen from the view (the 3D viewport while drawing it, the scene camera otherwise):

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

from ...bridge.formats.splatset import SH_C0
from ...bridge.formats.transform import _C1 as SH_C1  # the 3DGS SH constants, one definition
from ...bridge.formats.transform import _C2 as SH_C2
from ...bridge.formats.transform import _C3 as SH_C3
from . import material
from .node_builder import NodeBuilder
from .pointcloud import OPACITY, ROTATION, SCALE, SH_DC, sh_rest_name

GROUP_NAME = "Splatwork Splat Preview"
MODIFIER_NAME = "Splat Preview"
VERSION_KEY = "splatwork_preview_version"
PREVIEW_VERSION = 1

NEAR = 0.01  # camera units; splats closer than this (or behind) are culled, as 3DGS culls near z
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
)


def input_identifier(group, name: str) -> str:
    return group.interface.items_tree[name].identifier


def ensure_preview_group():
    """The shared preview node group, built (or rebuilt in place) at the current version."""
    group = bpy.data.node_groups.get(GROUP_NAME)
    if group is not None and group.bl_idname == "GeometryNodeTree" and group.get(VERSION_KEY) == PREVIEW_VERSION:
        return group
    if group is None or group.bl_idname != "GeometryNodeTree":
        group = bpy.data.node_groups.new(GROUP_NAME, "GeometryNodeTree")
    group.nodes.clear()
    group.interface.clear()
    _build(group, material.ensure_material())
    group[VERSION_KEY] = PREVIEW_VERSION
    return group


def attach_preview(obj, scene=None):
    """Add (or refresh) the preview modifier on a splat object; Render Width follows the scene."""
    group = ensure_preview_group()
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is None or mod.type != "NODES":
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
    mod.node_group = group
    _drive_render_width(obj, mod, group, scene or bpy.context.scene)
    if not obj.data.materials:
        obj.data.materials.append(material.ensure_material())
    return mod


def _drive_render_width(obj, mod, group, scene) -> None:
    """A driver, not a handler: it keeps working in files opened without Splatwork."""
    path = f'modifiers["{mod.name}"]["{input_identifier(group, "Render Width")}"]'
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


def _build(group, mat) -> None:
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    for name, kind, default, lo, hi, description in INPUTS:
        socket = group.interface.new_socket(name, in_out="INPUT", socket_type=kind)
        socket.description = description
        if default is not None:
            socket.default_value = default
        if lo is not None:
            socket.min_value, socket.max_value = lo, hi
    group.interface.items_tree["Display Ratio"].subtype = "FACTOR"
    group.interface.items_tree["Opacity Threshold"].subtype = "FACTOR"

    b = NodeBuilder(group)
    gin = b.node("NodeGroupInput")
    gout = b.node("NodeGroupOutput")
    arg = {name: gin.outputs[name] for name, *_ in INPUTS}

    def attribute(name, kind):
        return b.out(b.node("GeometryNodeInputNamedAttribute", {"Name": name}, data_type=kind), "Attribute")

    position = b.node("GeometryNodeInputPosition").outputs[0]
    logit = attribute(OPACITY, "FLOAT")
    alpha = b.math("DIVIDE", 1.0, b.math("ADD", 1.0, b.math("EXPONENT", b.math("MULTIPLY", logit, -1.0))))

    view, proj, ortho = _view(b)
    to_view = view  # object space -> camera space (Blender camera: -z forward, +y up)
    from_view = b.out(b.node("FunctionNodeInvertMatrix", {0: to_view}), "Matrix")
    centre = b.out(b.node("FunctionNodeTransformPoint", {"Vector": position, "Transform": to_view}))
    cx, cy, cz = b.separate(centre)
    depth = b.math("MULTIPLY", cz, -1.0)
    persp = b.switch("FLOAT", ortho, 1.0, 0.0)

    drop = b.boolean("OR", b.compare("LESS_THAN", alpha, b.math("MAXIMUM", arg["Opacity Threshold"], MIN_ALPHA)),
                     b.boolean("AND", b.compare("GREATER_THAN", persp, 0.5), b.compare("LESS_THAN", depth, NEAR)))
    drop = b.boolean("OR", drop, _outside_crop_box(b, arg["Crop Box"], position))
    subset = b.node("FunctionNodeRandomValue", {"Probability": arg["Display Ratio"],
                                                 "ID": b.node("GeometryNodeInputIndex").outputs[0]},
                    data_type="BOOLEAN")
    drop = b.boolean("OR", drop, b.boolean("AND", b.node("GeometryNodeIsViewport").outputs[0],
                                           b.boolean("NOT", b.out(subset, 3))))
    kept = b.node("GeometryNodeDeleteGeometry", {"Geometry": gin.outputs["Geometry"], "Selection": drop},
                  domain="POINT")

    # Rows of the projection's Jacobian, scaled to the image-parallel plane (Blender camera axes).
    inv_depth = b.math("DIVIDE", persp, b.math("MAXIMUM", depth, NEAR))
    p1 = b.combine(1.0, 0.0, b.math("MULTIPLY", cx, inv_depth))
    p2 = b.combine(0.0, 1.0, b.math("MULTIPLY", cy, inv_depth))
    to_view_t = b.out(b.node("FunctionNodeTransposeMatrix", {0: to_view}))
    log_scale = attribute(SCALE, "FLOAT_VECTOR")
    scale = b.vmath("SCALE", b.vmath("POWER", (E, E, E), log_scale), scale=arg["Scale Multiplier"])
    rotation = _unit_rotation(b, attribute(ROTATION, "QUATERNION"))
    inverse_rotation = b.out(b.node("FunctionNodeInvertRotation", {0: rotation}))

    def row(p):  # p^T J_view R S: one row of the projected factor of the covariance
        world = b.out(b.node("FunctionNodeTransformDirection", {"Direction": p, "Transform": to_view_t}))
        local = b.out(b.node("FunctionNodeRotateVector", {"Vector": world, "Rotation": inverse_rotation}))
        return b.vmath("MULTIPLY", local, scale)

    r1, r2 = row(p1), row(p2)
    p00, _, _ = b.separate(b.out(b.node("FunctionNodeTransformDirection",
                                         {"Direction": (1.0, 0.0, 0.0), "Transform": proj})))
    pixel = b.math("DIVIDE", 2.0, b.math("MULTIPLY", p00, arg["Render Width"]))
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
    angle = b.math("MULTIPLY", b.math("ARCTAN2", off, half_diff), 0.5)

    # Squared Mahalanobis radius where alpha * exp(-r^2/2) falls to 1/255 (3DGS skips beyond it).
    reach = b.math("MAXIMUM", b.math("MULTIPLY", b.math("LOGARITHM", b.math("MULTIPLY", alpha, 255.0), E), 2.0),
                   0.0)
    reach_major = b.math("MINIMUM", reach, 9.0)
    extent = b.combine(b.math("SQRT", b.math("MULTIPLY", reach_major, major)),
                       b.math("SQRT", b.math("MULTIPLY", reach, minor)), 1.0)
    spin = b.out(b.node("FunctionNodeAxisAngleToRotation", {"Axis": (0.0, 0.0, 1.0), "Angle": angle}))
    on_plane = b.out(b.node("FunctionNodeCombineTransform", {"Translation": centre, "Rotation": spin, "Scale": extent}))
    quad_transform = b.out(b.node("FunctionNodeMatrixMultiply", {0: from_view, 1: on_plane}))
    falloff = b.combine(b.math("MULTIPLY", reach_major, 0.5), b.math("MULTIPLY", reach, 0.5), alpha)

    eye = b.out(b.node("FunctionNodeTransformPoint", {"Vector": (0.0, 0.0, 0.0), "Transform": from_view}))
    forward = b.out(b.node("FunctionNodeTransformDirection", {"Direction": (0.0, 0.0, -1.0), "Transform": from_view}))
    direction = b.vmath("NORMALIZE", b.switch("VECTOR", ortho, b.vmath("SUBTRACT", position, eye), forward))
    srgb = b.vmath("MAXIMUM", _sh_color(b, direction, arg["SH Degree"], attribute), (0.0, 0.0, 0.0))
    color = b.switch("VECTOR", arg["Trainer Blending"], _srgb_to_linear(b, srgb), srgb)

    geometry = kept.outputs[0]
    for name, kind, value in (("splat_color", "FLOAT_VECTOR", color), ("splat_falloff", "FLOAT_VECTOR", falloff),
                              ("splat_transform", "FLOAT4X4", quad_transform)):
        geometry = b.out(b.node("GeometryNodeStoreNamedAttribute",
                                {"Geometry": geometry, "Name": name, "Value": value}, data_type=kind, domain="POINT"))
    # Only what the material reads may reach the realized quads (SH alone would be 4 x 45 floats each).
    for pattern in ("sh_*", SCALE, ROTATION, OPACITY):
        geometry = b.out(b.node("GeometryNodeRemoveAttribute",
                                {"Geometry": geometry, "Pattern Mode": "Wildcard", "Name": pattern}))

    sx, sy, sz = b.separate(log_scale)
    points_radius = b.math("MULTIPLY", b.math("EXPONENT", b.math("MAXIMUM", b.math("MAXIMUM", sx, sy), sz)),
                           arg["Scale Multiplier"])
    points = b.node("GeometryNodeSetPointRadius", {"Points": kept.outputs[0], "Radius": points_radius})
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
                                                         "Transform": attribute("splat_transform", "FLOAT4X4")})
    cleaned = b.node("GeometryNodeRemoveAttribute", {"Geometry": placed.outputs[0], "Name": "splat_transform"})
    realized = b.node("GeometryNodeRealizeInstances", {"Geometry": cleaned.outputs[0]})

    chosen = b.switch("GEOMETRY", arg["Fast Points"], realized.outputs[0], points_geometry)
    shaded = b.node("GeometryNodeSetMaterial", {"Geometry": chosen, "Material": mat})
    b.links.new(shaded.outputs[0], gout.inputs[0])


def _view(b):
    """(object -> camera matrix, projection matrix, is orthographic) of the 3D viewport while one
    draws this object, else of the scene's active camera (renders, and viewports without a view)."""
    camera = b.node("GeometryNodeInputActiveCamera").outputs[0]
    camera_relative = b.node("GeometryNodeObjectInfo", {"Object": camera}, transform_space="RELATIVE")
    camera_info = b.node("GeometryNodeCameraInfo", {"Camera": camera})
    camera_view = b.out(b.node("FunctionNodeInvertMatrix", {0: b.out(camera_relative, "Transform")}), "Matrix")

    viewport = b.node("GeometryNodeViewportTransform")
    this_object = b.node("GeometryNodeObjectInfo", {"Object": b.node("GeometryNodeSelfObject").outputs[0]},
                         transform_space="ORIGINAL")
    viewport_view = b.out(b.node("FunctionNodeMatrixMultiply",
                                 {0: b.out(viewport, "View"), 1: b.out(this_object, "Transform")}))
    # Without a drawn view (headless, final renders) the viewport matrices are identities, whose
    # projection has a positive z-z term; every real projection has a negative one.
    _, _, zz = b.separate(b.out(b.node("FunctionNodeTransformDirection", {"Direction": (0.0, 0.0, 1.0),
                                                                         "Transform": b.out(viewport, "Projection")})))
    use_viewport = b.boolean("AND", b.node("GeometryNodeIsViewport").outputs[0], b.compare("LESS_THAN", zz, 0.0))
    view = b.switch("MATRIX", use_viewport, camera_view, viewport_view)
    proj = b.switch("MATRIX", use_viewport, b.out(camera_info, "Projection Matrix"), b.out(viewport, "Projection"))
    ortho = b.switch("BOOLEAN", use_viewport, b.out(camera_info, "Is Orthographic"), b.out(viewport, "Is Orthographic"))
    return view, proj, ortho


def _outside_crop_box(b, box_object, position):
    """True outside the box object's local [-1, 1]^3 (a default cube); False when no box is set,
    which Object Info reports as a zero scale."""
    info = b.node("GeometryNodeObjectInfo", {"Object": box_object}, transform_space="RELATIVE")
    has_box = b.compare("GREATER_THAN", b.vmath("LENGTH", b.out(info, "Scale")), 0.0)
    to_box = b.out(b.node("FunctionNodeInvertMatrix", {0: b.out(info, "Transform")}), "Matrix")
    local = b.vmath("ABSOLUTE", b.out(b.node("FunctionNodeTransformPoint", {"Vector": position, "Transform": to_box})))
    x, y, z = b.separate(local)
    return b.boolean("AND", has_box, b.compare("GREATER_THAN", b.math("MAXIMUM", b.math("MAXIMUM", x, y), z), 1.0))


def _unit_rotation(b, rotation):
    """Trainers store unnormalised quaternions; normalise before use, as 3DGS does."""
    q = b.node("FunctionNodeRotationToQuaternion", {0: rotation})
    w, x, y, z = (q.outputs[i] for i in range(4))
    squares = [b.math("MULTIPLY", c, c) for c in (w, x, y, z)]
    total = b.math("ADD", b.math("ADD", squares[0], squares[1]), b.math("ADD", squares[2], squares[3]))
    length = b.math("MAXIMUM", b.math("SQRT", total), 1e-12)
    unit = {i: b.math("DIVIDE", c, length) for i, c in enumerate((w, x, y, z))}
    return b.out(b.node("FunctionNodeQuaternionToRotation", unit))


def _sh_color(b, direction, degree, attribute):
    """0.5 + SH_C0 * dc + sum of the higher bands up to ``degree`` (3DGS basis and sign conventions)."""
    x, y, z = b.separate(direction)

    def mul(*factors):
        out = factors[0]
        for f in factors[1:]:
            out = b.math("MULTIPLY", out, f)
        return out

    xx, yy, zz = mul(x, x), mul(y, y), mul(z, z)
    bands = {
        1: [mul(y, -SH_C1), mul(z, SH_C1), mul(x, -SH_C1)],
        2: [mul(x, y, SH_C2[0]), mul(y, z, SH_C2[1]),
            mul(b.math("SUBTRACT", mul(zz, 2.0), b.math("ADD", xx, yy)), SH_C2[2]),
            mul(x, z, SH_C2[3]), mul(b.math("SUBTRACT", xx, yy), SH_C2[4])],
        3: [mul(y, b.math("SUBTRACT", mul(xx, 3.0), yy), SH_C3[0]), mul(x, y, z, SH_C3[1]),
            mul(y, b.math("SUBTRACT", mul(zz, 4.0), b.math("ADD", xx, yy)), SH_C3[2]),
            mul(z, b.math("SUBTRACT", mul(zz, 2.0), b.math("ADD", mul(xx, 3.0), mul(yy, 3.0))), SH_C3[3]),
            mul(x, b.math("SUBTRACT", mul(zz, 4.0), b.math("ADD", xx, yy)), SH_C3[4]),
            mul(z, b.math("SUBTRACT", xx, yy), SH_C3[5]), mul(x, b.math("SUBTRACT", xx, mul(yy, 3.0)), SH_C3[6])],
    }
    color = b.vmath("ADD", b.vmath("SCALE", attribute(SH_DC, "FLOAT_VECTOR"), scale=SH_C0), (0.5, 0.5, 0.5))
    k = 0
    for band, basis in bands.items():
        enabled = b.compare("GREATER_EQUAL", degree, band - 0.5)
        band_sum = None
        for value in basis:
            k += 1
            term = b.vmath("SCALE", attribute(sh_rest_name(k), "FLOAT_VECTOR"), scale=value)
            band_sum = term if band_sum is None else b.vmath("ADD", band_sum, term)
        color = b.vmath("ADD", color, b.vmath("SCALE", band_sum, scale=b.switch("FLOAT", enabled, 0.0, 1.0)))
    return color


def _srgb_to_linear(b, color):
    channels = []
    for c in b.separate(color):
        low = b.math("DIVIDE", c, 12.92)
        high = b.math("POWER", b.math("DIVIDE", b.math("ADD", c, 0.055), 1.055), 2.4)
        upper = b.math("GREATER_THAN", c, 0.04045)
        channels.append(b.math("ADD", low, b.math("MULTIPLY", upper, b.math("SUBTRACT", high, low))))
    return b.combine(*channels)
