"""The point-cloud layout of a splat object: the only code that reads or writes splat attributes.

Every :class:`SplatSet` field is stored raw (log-scales, opacity logits, unnormalised quaternions,
SH coefficients) on the point domain, so ``object_to_splats(splats_to_object(s))`` gives ``s`` back
bit for bit:

=================  ===========  =========================================
attribute          type         SplatSet field
=================  ===========  =========================================
``position``       FLOAT3       means
``scale``          FLOAT3       scales (natural log)
``rotation``       QUATERNION   quats (w x y z)
``opacity``        FLOAT        opacities (logit)
``sh_dc``          FLOAT3       sh_dc
``sh_rest_<k>``    FLOAT3       sh_rest[:, k - 1], k = 1..15 (RGB per coefficient)
``<extra name>``   by dtype     extras (see ``_EXTRA_STORAGE``)
=================  ===========  =========================================

What cannot be recovered from the attributes alone (the SH degree, which attributes are extras and
their original dtypes) is kept as JSON in the data-block's ``splatwork_layout`` custom property.
"""
from __future__ import annotations

import json

import bpy
import numpy as np

from ...bridge.formats import SplatSet
from ...bridge.formats.splatset import SH_REST_COUNT
from ...bridge.formats.transform import bake_transform
from ..pointclouds import convert_to_pointcloud

LAYOUT_KEY = "splatwork_layout"
LAYOUT_VERSION = 1

POSITION = "position"
SCALE = "scale"
ROTATION = "rotation"
OPACITY = "opacity"
SH_DC = "sh_dc"


def sh_rest_name(k: int) -> str:
    """Attribute of the k-th higher SH coefficient (1-based, as in the SH band order)."""
    return f"sh_rest_{k}"


# Names an extra may not take: the layout's own, Blender's built-in point attributes, and what the
# preview stores on its evaluated copy.
_CORE = ({POSITION, SCALE, ROTATION, OPACITY, SH_DC, "radius", "id"} | {sh_rest_name(k) for k in range(1, 16)}
         | {"splat_uv", "splat_color", "splat_falloff", "splat_transform"})

# Extras keep their dtype: storage kind per dtype, chosen so that the round trip is exact.
# "cast" stores in a wider Blender type and casts back; "bits" stores the raw bytes.
_EXTRA_STORAGE = {
    "float32": ("FLOAT", np.float32, "cast"),
    "float16": ("FLOAT", np.float32, "cast"),
    "bool": ("BOOLEAN", bool, "cast"),
    "int8": ("INT8", np.int8, "cast"),
    "uint8": ("INT", np.int32, "cast"),
    "int16": ("INT", np.int32, "cast"),
    "uint16": ("INT", np.int32, "cast"),
    "int32": ("INT", np.int32, "cast"),
    "uint32": ("INT", np.int32, "bits"),
    "float64": ("INT32_2D", np.int32, "bits"),
    "int64": ("INT32_2D", np.int32, "bits"),
    "uint64": ("INT32_2D", np.int32, "bits"),
}
_VECTOR_FIELD = {"FLOAT_VECTOR": "vector", "QUATERNION": "value"}


class SplatLayoutError(ValueError):
    """An object that is not (or no longer) a splat object, with the object and the problem named."""


def is_splat_object(obj) -> bool:
    return obj is not None and obj.type == "POINTCLOUD" and LAYOUT_KEY in obj.data


def _layout(obj) -> dict:
    if obj is None or obj.type != "POINTCLOUD":
        raise SplatLayoutError(f"{getattr(obj, 'name', obj)!r} is not a point cloud object")
    raw = obj.data.get(LAYOUT_KEY)
    if raw is None:
        raise SplatLayoutError(f"point cloud {obj.name!r} was not made by Splatwork (no {LAYOUT_KEY})")
    layout = json.loads(raw)
    if layout.get("version", 0) > LAYOUT_VERSION:
        raise SplatLayoutError(
            f"{obj.name!r} uses splat layout {layout['version']}; this Splatwork reads up to {LAYOUT_VERSION}"
        )
    return layout


def _columns(splats: SplatSet) -> list[tuple[str, str, np.ndarray]]:
    """(attribute name, Blender type, float/int array) for every field, extras included."""
    cols = [
        (POSITION, "FLOAT_VECTOR", splats.means),
        (SCALE, "FLOAT_VECTOR", splats.scales),
        (ROTATION, "QUATERNION", splats.quats),
        (OPACITY, "FLOAT", splats.opacities),
        (SH_DC, "FLOAT_VECTOR", splats.sh_dc),
    ]
    cols += [(sh_rest_name(k + 1), "FLOAT_VECTOR", splats.sh_rest[:, k]) for k in range(splats.sh_rest.shape[1])]
    for attr, (name, dtype) in _extra_names(splats).items():
        kind, store_dtype, how = _EXTRA_STORAGE[dtype]
        value = splats.extras[name]
        stored = value.view(store_dtype) if how == "bits" else value.astype(store_dtype)
        cols.append((attr, kind, stored))
    return cols


def _extra_names(splats: SplatSet) -> dict[str, tuple[str, str]]:
    """Attribute name -> (extra name, dtype). Names that clash with the core layout get a prefix."""
    out = {}
    for name, value in splats.extras.items():
        dtype = value.dtype.name
        if dtype not in _EXTRA_STORAGE:
            raise SplatLayoutError(f"extra {name!r} has dtype {dtype}, which a point attribute cannot hold")
        attr = name if name not in _CORE and not name.startswith(".") else f"extra_{name}"
        while attr in out or attr in _CORE:
            attr = f"extra_{attr}"
        if len(attr.encode()) > 63:
            raise SplatLayoutError(f"extra {name!r}: the name is longer than Blender's 63-byte attribute names")
        out[attr] = (name, dtype)
    return out


def _write_columns(attributes, cols, n: int) -> None:
    for name, kind, array in cols:
        attr = attributes.get(name)
        if attr is None or attr.data_type != kind or attr.domain != "POINT":
            if attr is not None:
                attributes.remove(attr)
            attr = attributes.new(name, kind, "POINT")
        field = _VECTOR_FIELD.get(kind, "value")
        if n:
            attr.data.foreach_set(field, np.ascontiguousarray(array).reshape(-1))


def _layout_json(splats: SplatSet) -> str:
    extras = [[attr, name, dtype] for attr, (name, dtype) in _extra_names(splats).items()]
    return json.dumps({"version": LAYOUT_VERSION, "sh_degree": splats.sh_degree, "extras": extras})


def _new_pointcloud(name: str, splats: SplatSet, scene):
    """A PointCloud data-block holding ``splats``.

    Blender 5.0's Python API cannot add points to a point cloud, so the columns go into a mesh's
    vertices (which can be sized) and Blender's own converter turns it into a point cloud, sharing
    the arrays rather than copying them. ``PointCloud.resize`` (Blender 5.1+) skips the detour.
    """
    n = len(splats)
    cols = _columns(splats)
    if hasattr(bpy.types.PointCloud, "resize"):
        pc = bpy.data.pointclouds.new(name)
        pc.resize(n)
        _write_columns(pc.attributes, cols, n)
    else:
        mesh = bpy.data.meshes.new(name)
        mesh.vertices.add(n)
        _write_columns(mesh.attributes, cols, n)
        holder = bpy.data.objects.new(name, mesh)
        scene.collection.objects.link(holder)
        try:
            pc = convert_to_pointcloud(holder, scene)
        finally:
            bpy.data.objects.remove(holder)
            if mesh.users == 0:
                bpy.data.meshes.remove(mesh)
    pc[LAYOUT_KEY] = _layout_json(splats)
    return pc


def splats_to_object(splats: SplatSet, name: str, collection=None):
    """A new point-cloud object carrying ``splats`` (linked to ``collection`` or the scene's)."""
    scene = bpy.context.scene
    pc = _new_pointcloud(name, splats, scene)
    obj = bpy.data.objects.new(name, pc)
    (collection or scene.collection).objects.link(obj)
    return obj


def update_object_splats(obj, splats: SplatSet) -> None:
    """Replace the splats of ``obj`` in place (live training preview): the object, its transform,
    modifiers and materials stay; a new count swaps in a new data-block."""
    _layout(obj)
    old = obj.data
    same_shape = len(old.points) == len(splats) and json.loads(old[LAYOUT_KEY]) == json.loads(
        _layout_json(splats)
    )
    if same_shape:
        _write_columns(old.attributes, _columns(splats), len(splats))
        old.update_tag()
        return
    pc = _new_pointcloud(old.name, splats, bpy.context.scene)
    for material in old.materials:
        pc.materials.append(material)
    obj.data = pc
    if old.users == 0:
        bpy.data.pointclouds.remove(old)
    pc.name = obj.name


def _read(attributes, name: str, kind: str, n: int, width: int, dtype, obj_name: str) -> np.ndarray:
    attr = attributes.get(name)
    if attr is None or attr.domain != "POINT" or attr.data_type != kind:
        raise SplatLayoutError(f"splat object {obj_name!r} lacks its {kind} point attribute {name!r}")
    out = np.empty(n * width, dtype)
    if n:
        attr.data.foreach_get(_VECTOR_FIELD.get(kind, "value"), out)
    return out.reshape((n, width) if width > 1 else (n,))


def object_to_splats(obj, apply_transform: bool = False) -> SplatSet:
    """The splats of a splat object (edits included; modifiers ignored).

    ``apply_transform`` bakes the object's world matrix into the splats (positions, covariances and
    the view-dependent SH rotate with it), giving what the scene shows; ``bake_transform`` raises
    FormatError for what SH cannot express (a non-uniform scale on splats with SH bands).
    """
    layout = _layout(obj)
    pc = obj.data
    n = len(pc.points)
    a, f = pc.attributes, np.float32
    k = SH_REST_COUNT[layout["sh_degree"]]
    rest = np.empty((n, k, 3), f)
    for i in range(k):
        rest[:, i] = _read(a, sh_rest_name(i + 1), "FLOAT_VECTOR", n, 3, f, obj.name)
    extras = {}
    for attr, name, dtype in layout["extras"]:
        kind, store_dtype, how = _EXTRA_STORAGE[dtype]
        width = 2 if kind == "INT32_2D" else 1
        raw = _read(a, attr, kind, n, width, store_dtype, obj.name)
        extras[name] = (raw.view(dtype).reshape(n) if how == "bits" else raw.astype(dtype))
    splats = SplatSet(
        means=_read(a, POSITION, "FLOAT_VECTOR", n, 3, f, obj.name),
        scales=_read(a, SCALE, "FLOAT_VECTOR", n, 3, f, obj.name),
        quats=_read(a, ROTATION, "QUATERNION", n, 4, f, obj.name),
        opacities=_read(a, OPACITY, "FLOAT", n, 1, f, obj.name),
        sh_dc=_read(a, SH_DC, "FLOAT_VECTOR", n, 3, f, obj.name),
        sh_rest=rest,
        extras=extras,
    )
    if apply_transform:
        splats = bake_transform(splats, np.array(obj.matrix_world, dtype=np.float64))
    return splats
