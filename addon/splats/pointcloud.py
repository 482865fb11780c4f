"""The point-cloud layout of a splat object: the only code that reads or writes splat attributes.

Splat objects use Blender's own Gaussian-splat attributes (the layout Blender 5.3's PLY importer
makes and its renderers read), on every supported Blender version:

=====================  ===========================  ==========================================
attribute              type                         SplatSet field
=====================  ===========================  ==========================================
``position``           FLOAT_VECTOR                 means
``scale``              FLOAT_VECTOR                 exp(scales): linear, not log
``rotation``           QUATERNION                   quats, normalised (w x y z)
``radiance:base``      FLOAT4 (FLOAT_COLOR on 5.0)  (sh_dc RGB, sigmoid(opacities))
``radiance:sh_<k>``    FLOAT_VECTOR                 sh_rest[:, k], k = 0..14 (RGB per coefficient)
``extra:<name>``       by dtype                     extras (see ``_EXTRA_STORAGE``)
=====================  ===========================  ==========================================

On Blender 5.3+ the point cloud's type is ``GAUSSIAN_SPLAT``, so it draws and renders natively; on
5.0-5.2 it is an ordinary point cloud that the geometry-nodes preview draws. The same data-block is
a native splat once its type is switched, so files move up between versions unchanged.

Going through exp/sigmoid/normalisation, ``object_to_splats(splats_to_object(s))`` equals ``s``
within float32 rounding (opacities that round to 1.0 come back as the largest finite logit), not
bit for bit. What the attributes cannot say (the SH degree, which attributes are extras and their
original dtypes) is JSON in the data-block's ``splatwork_layout`` property; any ``GAUSSIAN_SPLAT``
point cloud without it (Blender's own importers make those) is read by the attribute names alone.

Two more point attributes belong to the cleanup tools (``cleanup.py``): ``.selection`` (BOOLEAN), the
selection Blender's own point cloud edit mode makes and reads (no attribute: every point selected,
as Blender treats it), and ``.splatwork_hidden`` (BOOLEAN), the splats the Splat Controls hide and
export leaves out; neither is part of a SplatSet.

Layout 1 (Splatwork 0.1, Blender 5.0 files) kept log-scales, opacity logits and unnormalised
quaternions under ``scale``/``rotation``/``opacity``, names that mean something else to Blender
5.3: such objects are still read (export, render passes) and :func:`convert_legacy` rewrites them.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import bpy
import numpy as np

from ...bridge.formats import SplatSet
from ...bridge.formats.splatset import SH_REST_COUNT
from ...bridge.formats.transform import bake_transform
from ..common import compat
from ..common.pointclouds import pointcloud_through_mesh

LAYOUT_KEY = "splatwork_layout"
LAYOUT_VERSION = 2
LEGACY_LAYOUT = 1

POSITION = "position"
SCALE = "scale"
ROTATION = "rotation"
BASE = "radiance:base"
EXTRA_PREFIX = "extra:"
SELECTION = ".selection"  # Blender's point cloud edit mode selection
HIDDEN = ".splatwork_hidden"
NATIVE_TYPE = "GAUSSIAN_SPLAT"
BASE_TYPE = "FLOAT4" if compat.FLOAT4 else "FLOAT_COLOR"
# Blender attribute names are at most 63 bytes.
MAX_NAME_BYTES = 63


def sh_name(k: int) -> str:
    """Attribute of the k-th higher SH coefficient (0-based, as in Blender's ``radiance:sh_<k>``)."""
    return f"radiance:sh_{k}"


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
# The foreach_get/foreach_set key of each attribute type (FLOAT4 goes through "vector").
_FIELD = {"FLOAT_VECTOR": "vector", "FLOAT4": "vector", "FLOAT_COLOR": "color", "QUATERNION": "value"}
_WIDTH = {"FLOAT_VECTOR": 3, "FLOAT4": 4, "FLOAT_COLOR": 4, "QUATERNION": 4, "INT32_2D": 2}
# Largest float32 below 1: sigmoid(x) rounds to 1.0 for x above ~16.6, whose logit is infinite.
_ALPHA_MAX = np.float32(1.0) - np.float32(2.0**-24)
_TINY = np.finfo(np.float32).tiny


class SplatLayoutError(ValueError):
    """An object that is not (or no longer) a splat object, with the object and the problem named."""


def is_native(obj) -> bool:
    """A point cloud Blender itself treats as Gaussian splats (5.3+)."""
    return obj is not None and obj.type == "POINTCLOUD" and getattr(obj.data, "type", "POINTS") == NATIVE_TYPE


def is_splat_object(obj) -> bool:
    """Any splat object: made by Splatwork (either layout), a native Gaussian splat from any source,
    or a point cloud carrying Blender's splat attributes (a 5.3 file opened in 5.2)."""
    if obj is None or obj.type != "POINTCLOUD":
        return False
    return LAYOUT_KEY in obj.data or is_native(obj) or BASE in obj.data.attributes


def is_legacy(obj) -> bool:
    """An object in Splatwork 0.1's layout (log scales and logits under Blender's native names)."""
    return is_splat_object(obj) and _stored_layout(obj).get("version") == LEGACY_LAYOUT


def describe_splat_objects() -> str:
    """What the operators look for, for their "nothing to work on" messages."""
    if compat.NATIVE_SPLATS:
        return "Gaussian splat point clouds (Data > Type: Gaussian Splat)"
    return "splat point clouds (imported or trained by Splatwork)"


def _stored_layout(obj) -> dict:
    raw = obj.data.get(LAYOUT_KEY)
    if raw is None:
        return {}
    try:
        layout = json.loads(raw)
    except (TypeError, ValueError):
        raise SplatLayoutError(f"splat object {obj.name!r}: its {LAYOUT_KEY} property is not JSON") from None
    return layout if isinstance(layout, dict) else {}


def _layout(obj) -> dict:
    if not is_splat_object(obj):
        raise SplatLayoutError(f"{getattr(obj, 'name', obj)!r} is not a splat object: "
                               f"Splatwork looks for {describe_splat_objects()}")
    layout = _stored_layout(obj)
    version = layout.get("version", LAYOUT_VERSION)
    if version > LAYOUT_VERSION:
        raise SplatLayoutError(
            f"{obj.name!r} uses splat layout {version}; this Splatwork reads up to {LAYOUT_VERSION}"
        )
    if "sh_degree" not in layout:  # made by Blender or another tool: the attributes say it
        layout = {"version": LAYOUT_VERSION, "sh_degree": _native_sh_degree(obj.data.attributes), "extras": []}
    return layout


def _native_sh_degree(attributes) -> int:
    k = 0
    while k < 15 and sh_name(k) in attributes:
        k += 1
    # An incomplete band is ignored, as a renderer would: 4 coefficients are degree 1.
    return max(d for d, count in SH_REST_COUNT.items() if count <= k)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _logit(alpha: np.ndarray) -> np.ndarray:
    a = np.clip(alpha.astype(np.float64), _TINY, _ALPHA_MAX)
    return (np.log(a) - np.log1p(-a)).astype(np.float32)


def _unit_quats(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    unit = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    unit[norm[:, 0] == 0] = (1.0, 0.0, 0.0, 0.0)
    return unit.astype(np.float32)


def _columns(splats: SplatSet) -> Iterator[tuple[str, str, np.ndarray]]:
    """(attribute name, Blender type, array) for every field, extras included, made as they are
    written so that only one group of SH planes exists at a time. Bad extras are refused here,
    before anything is written."""
    extras = _extra_names(splats)
    with np.errstate(over="ignore", under="ignore"):
        scales = np.exp(splats.scales.astype(np.float64)).astype(np.float32)
    base = np.concatenate([splats.sh_dc, _sigmoid(splats.opacities)[:, None]], axis=1)
    cols = [
        (POSITION, "FLOAT_VECTOR", splats.means),
        (SCALE, "FLOAT_VECTOR", scales),
        (ROTATION, "QUATERNION", _unit_quats(splats.quats)),
        (BASE, BASE_TYPE, base),
    ]
    planes = ((sh_name(k), "FLOAT_VECTOR", plane) for k, plane in _coefficient_planes(splats.sh_rest))
    stored = ((attr, _EXTRA_STORAGE[dtype][0], _stored_extra(splats.extras[name], dtype))
              for attr, (name, dtype) in extras.items())
    return itertools.chain(cols, planes, stored)


def _stored_extra(value: np.ndarray, dtype: str) -> np.ndarray:
    _, store_dtype, how = _EXTRA_STORAGE[dtype]
    return value.view(store_dtype) if how == "bits" else value.astype(store_dtype)


def _coefficient_planes(sh_rest: np.ndarray, group: int = 3, block: int = 4096) -> Iterator[tuple[int, np.ndarray]]:
    """(k, sh_rest[:, k] as a contiguous (N, 3) float32 array) for every coefficient k.

    Copying ``sh_rest[:, k]`` one coefficient at a time reads the whole array K times for 12 bytes
    in every 180. Instead ``group`` coefficients at a time have their axes swapped in row blocks
    that stay in cache, each RGB triple moved as one 12-byte item: 1M SH-3 splats take about a third
    of the time, and only one group (36 MB) exists at a time.
    """
    n, k, _ = sh_rest.shape
    if not n:
        yield from ((i, np.empty((0, 3), np.float32)) for i in range(k))
        return
    src = np.ascontiguousarray(sh_rest, np.float32).reshape(n, 3 * k).view("V12")  # (N, K) RGB triples
    for first in range(0, k, group):
        out = np.empty((min(group, k - first), n, 3), np.float32)
        dst = out.reshape(len(out), 3 * n).view("V12")  # (G, N)
        for start in range(0, n, block):
            dst[:, start:start + block] = src[start:start + block, first:first + group].T
        yield from enumerate(out, start=first)


def _extra_names(splats: SplatSet) -> dict[str, tuple[str, str]]:
    """Attribute name -> (extra name, dtype). Every extra lives under ``extra:<name>``, a prefix
    neither Blender's built-in attributes nor its splat attributes use, so no name can clash."""
    out = {}
    for name, value in splats.extras.items():
        dtype = value.dtype.name
        if dtype not in _EXTRA_STORAGE:
            raise SplatLayoutError(f"extra {name!r} has dtype {dtype}, which a point attribute cannot hold")
        attr = EXTRA_PREFIX + name
        if len(attr.encode()) > MAX_NAME_BYTES:
            raise SplatLayoutError(f"extra {name!r}: the name is longer than Blender's attribute names allow "
                                   f"({MAX_NAME_BYTES - len(EXTRA_PREFIX)} bytes)")
        out[attr] = (name, dtype)
    return out


def _write_columns(attributes, cols, n: int, owner: str) -> None:
    for name, kind, array in cols:
        attr = attributes.get(name)
        if attr is None or attr.data_type != kind or attr.domain != "POINT":
            if attr is not None:
                attributes.remove(attr)
            attr = attributes.new(name, kind, "POINT")
            if attr is None:  # Blender refuses names it reserves
                raise SplatLayoutError(f"{owner!r}: Blender refused the point attribute {name!r} ({kind})")
        if n:
            attr.data.foreach_set(_FIELD.get(kind, "value"), np.ascontiguousarray(array).reshape(-1))


def _layout_json(splats: SplatSet) -> str:
    extras = [[attr, name, dtype] for attr, (name, dtype) in _extra_names(splats).items()]
    return json.dumps({"version": LAYOUT_VERSION, "sh_degree": splats.sh_degree, "extras": extras})


def _new_pointcloud(name: str, splats: SplatSet, scene):
    """A PointCloud data-block holding ``splats`` (native on 5.3+); nothing is left on failure.

    Blender 5.0's Python API cannot add points to a point cloud, so there the columns go into a
    mesh's vertices (which can be sized) and Blender's own converter turns it into a point cloud,
    sharing the arrays rather than copying them. ``PointCloud.resize`` (5.1+) skips the detour.
    """
    n = len(splats)
    cols = _columns(splats)
    if compat.POINTCLOUD_RESIZE:
        pc = bpy.data.pointclouds.new(name)
        try:
            pc.resize(n)
            _write_columns(pc.attributes, cols, n, name)
        except BaseException:
            bpy.data.pointclouds.remove(pc)
            raise
    else:
        pc = pointcloud_through_mesh(name, n, scene, lambda mesh: _write_columns(mesh.attributes, cols, n, name))
    pc[LAYOUT_KEY] = _layout_json(splats)
    if compat.NATIVE_SPLATS:
        pc.type = NATIVE_TYPE
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
    modifiers and materials stay; a new count or layout swaps in a new data-block."""
    _layout(obj)
    old = obj.data
    same_shape = len(old.points) == len(splats) and _stored_layout(obj) == json.loads(_layout_json(splats))
    if same_shape:
        _write_columns(old.attributes, _columns(splats), len(splats), obj.name)
        for name in (SELECTION, HIDDEN):  # they were about the splats just replaced
            if old.attributes.get(name) is not None:
                old.attributes.remove(old.attributes[name])
        old.update_tag()
        return
    pc = _new_pointcloud(old.name, splats, bpy.context.scene)
    for material in old.materials:
        pc.materials.append(material)
    obj.data = pc
    if old.users == 0:
        bpy.data.pointclouds.remove(old)
    pc.name = obj.name


def _read(attributes, name: str, kinds: tuple[str, ...], n: int, dtype, obj_name: str) -> np.ndarray:
    attr = attributes.get(name)
    if attr is None or attr.domain != "POINT" or attr.data_type not in kinds:
        raise SplatLayoutError(f"splat object {obj_name!r} lacks its {' or '.join(kinds)} point attribute {name!r}")
    width = _WIDTH.get(attr.data_type, 1)
    out = np.empty(n * width, dtype)
    if n:
        attr.data.foreach_get(_FIELD.get(attr.data_type, "value"), out)
    return out.reshape((n, width) if width > 1 else (n,))


def object_to_splats(obj, apply_transform: bool = False) -> SplatSet:
    """The splats of any splat object (edits included; modifiers ignored).

    ``apply_transform`` bakes the object's world matrix into the splats (positions, covariances and
    the view-dependent SH rotate with it), giving what the scene shows; ``bake_transform`` raises
    FormatError for what SH cannot express (a non-uniform scale on splats with SH bands).
    """
    layout = _layout(obj)
    splats = _read_legacy(obj, layout) if layout["version"] == LEGACY_LAYOUT else _read_native(obj, layout)
    if apply_transform:
        splats = bake_transform(splats, np.array(obj.matrix_world, dtype=np.float64))
    return splats


def _read_extras(a, layout: dict, n: int, obj_name: str) -> dict[str, np.ndarray]:
    extras = {}
    for attr, name, dtype in layout.get("extras", []):
        kind, store_dtype, how = _EXTRA_STORAGE[dtype]
        raw = _read(a, attr, (kind,), n, store_dtype, obj_name)
        extras[name] = raw.view(dtype).reshape(n) if how == "bits" else raw.astype(dtype)
    return extras


def _read_rest(a, names: list[str], n: int, obj_name: str) -> np.ndarray:
    """(n, len(names), 3): one RGB attribute per higher SH coefficient, in band order."""
    rest = np.empty((n, len(names), 3), np.float32)
    for i, name in enumerate(names):
        rest[:, i] = _read(a, name, ("FLOAT_VECTOR",), n, np.float32, obj_name)
    return rest


def _read_native(obj, layout: dict) -> SplatSet:
    pc, f = obj.data, np.float32
    n, a = len(pc.points), pc.attributes
    base = _read(a, BASE, ("FLOAT4", "FLOAT_COLOR"), n, f, obj.name)
    scale = _read(a, SCALE, ("FLOAT_VECTOR",), n, f, obj.name)
    return SplatSet(
        means=_read(a, POSITION, ("FLOAT_VECTOR",), n, f, obj.name),
        scales=np.log(np.maximum(scale, _TINY)),  # a scale that underflowed to 0 comes back as the smallest
        quats=_read(a, ROTATION, ("QUATERNION",), n, f, obj.name),
        opacities=_logit(base[:, 3]),
        sh_dc=np.ascontiguousarray(base[:, :3]),
        sh_rest=_read_rest(a, [sh_name(i) for i in range(SH_REST_COUNT[layout["sh_degree"]])], n, obj.name),
        extras=_read_extras(a, layout, n, obj.name),
    )


def _read_legacy(obj, layout: dict) -> SplatSet:
    """Layout 1: log scales, logits and unnormalised quaternions, stored raw."""
    pc, f = obj.data, np.float32
    n, a = len(pc.points), pc.attributes
    rest_names = [f"sh_rest_{i + 1}" for i in range(SH_REST_COUNT[layout["sh_degree"]])]
    return SplatSet(
        means=_read(a, POSITION, ("FLOAT_VECTOR",), n, f, obj.name),
        scales=_read(a, SCALE, ("FLOAT_VECTOR",), n, f, obj.name),
        quats=_read(a, ROTATION, ("QUATERNION",), n, f, obj.name),
        opacities=_read(a, "opacity", ("FLOAT",), n, f, obj.name),
        sh_dc=_read(a, "sh_dc", ("FLOAT_VECTOR",), n, f, obj.name),
        sh_rest=_read_rest(a, rest_names, n, obj.name),
        extras=_read_extras(a, layout, n, obj.name),
    )


def convert_legacy(obj) -> None:
    """Rewrite a layout-1 object (or a native splat Splatwork has not described yet) in the current
    layout, keeping the object, its transform and materials; native on 5.3+."""
    update_object_splats(obj, object_to_splats(obj))


def make_native(obj) -> None:
    """Switch a splat object's data to Blender's Gaussian splats (5.3+), converting what must be."""
    if not compat.NATIVE_SPLATS:
        raise SplatLayoutError(f"{obj.name!r}: native Gaussian splats need Blender 5.3 or newer")
    layout = _layout(obj)
    base = obj.data.attributes.get(BASE)
    if layout["version"] == LEGACY_LAYOUT or base is None or base.data_type != BASE_TYPE:
        convert_legacy(obj)
    obj.data.type = NATIVE_TYPE


def point_count(obj) -> int:
    return len(obj.data.points)


def read_positions(obj) -> np.ndarray:
    """(N, 3) float32 positions in the object's own space."""
    _layout(obj)
    return _read(obj.data.attributes, POSITION, ("FLOAT_VECTOR",), point_count(obj), np.float32, obj.name)


def read_scales(obj) -> np.ndarray:
    """(N, 3) float32 linear scales (one standard deviation along each axis)."""
    layout = _layout(obj)
    scale = _read(obj.data.attributes, SCALE, ("FLOAT_VECTOR",), point_count(obj), np.float32, obj.name)
    if layout["version"] == LEGACY_LAYOUT:  # log scales
        with np.errstate(over="ignore"):
            np.exp(scale, out=scale)
    return scale


def read_alphas(obj) -> np.ndarray:
    """(N,) float32 opacities in [0, 1] (after the sigmoid)."""
    layout = _layout(obj)
    n, a = point_count(obj), obj.data.attributes
    if layout["version"] == LEGACY_LAYOUT:
        return _sigmoid(_read(a, "opacity", ("FLOAT",), n, np.float32, obj.name))
    attr = a.get(BASE)
    if attr is None or attr.data_type not in ("FLOAT4", "FLOAT_COLOR"):
        raise SplatLayoutError(f"{obj.name!r} has no opacity: its point attribute {BASE!r} (colour and opacity) "
                               "is missing, so it is a plain point cloud rather than splats")
    return np.ascontiguousarray(_read(a, BASE, ("FLOAT4", "FLOAT_COLOR"), n, np.float32, obj.name)[:, 3])


def _read_flags(obj, name: str, default: bool) -> np.ndarray:
    n = point_count(obj)
    attr = obj.data.attributes.get(name)
    if attr is None or attr.domain != "POINT" or n == 0:
        return np.full(n, default, bool)
    if attr.data_type == "BOOLEAN":
        out = np.empty(n, bool)
        attr.data.foreach_get("value", out)
        return out
    if attr.data_type == "FLOAT":  # a soft selection
        out = np.empty(n, np.float32)
        attr.data.foreach_get("value", out)
        return out > 0
    return np.full(n, default, bool)


def _write_flags(obj, name: str, mask: np.ndarray, drop_when_false: bool) -> None:
    pc = obj.data
    mask = np.ascontiguousarray(mask, bool)
    if len(mask) != len(pc.points):
        raise SplatLayoutError(f"{obj.name!r}: {len(mask)} flags for {len(pc.points)} splats")
    attr = pc.attributes.get(name)
    if drop_when_false and not mask.any():
        if attr is not None:
            pc.attributes.remove(attr)
    else:
        if attr is not None and (attr.data_type != "BOOLEAN" or attr.domain != "POINT"):
            pc.attributes.remove(attr)
            attr = None
        if attr is None:
            attr = pc.attributes.new(name, "BOOLEAN", "POINT")
        if len(mask):
            attr.data.foreach_set("value", mask)
    pc.update_tag()


def read_selection(obj) -> np.ndarray:
    """The points selected in Blender's point cloud edit mode (no selection attribute: all of them)."""
    return _read_flags(obj, SELECTION, True)


def write_selection(obj, mask: np.ndarray) -> None:
    _write_flags(obj, SELECTION, mask, drop_when_false=False)


def read_hidden(obj) -> np.ndarray:
    """The splats the cleanup tools hid (the Splat Controls leave them out; so does export)."""
    return _read_flags(obj, HIDDEN, False)


def write_hidden(obj, mask: np.ndarray) -> None:
    """Hide exactly ``mask``; with nothing hidden the attribute goes."""
    _write_flags(obj, HIDDEN, mask, drop_when_false=True)


# foreach_get/foreach_set key, numpy dtype and values a point of each attribute type has. Raw copies:
# BYTE_COLOR through its sRGB floats (byte / 255, exact both ways), INT8 through int32.
_RAW = {
    "FLOAT": ("value", np.float32, 1), "INT": ("value", np.int32, 1), "INT8": ("value", np.int32, 1),
    "BOOLEAN": ("value", bool, 1), "FLOAT_VECTOR": ("vector", np.float32, 3), "FLOAT2": ("vector", np.float32, 2),
    "FLOAT4": ("vector", np.float32, 4), "FLOAT_COLOR": ("color", np.float32, 4),
    "BYTE_COLOR": ("color_srgb", np.float32, 4), "QUATERNION": ("value", np.float32, 4),
    "FLOAT4X4": ("value", np.float32, 16), "INT16_2D": ("value", np.int32, 2), "INT32_2D": ("value", np.int32, 2),
}


def _raw(attr, n: int) -> np.ndarray:
    key, dtype, width = _RAW[attr.data_type]
    out = np.empty(n * width, dtype)
    if n:
        attr.data.foreach_get(key, out)
    return out.reshape(n, width)


def remove_points(obj, remove: np.ndarray) -> int:
    """Delete the points where ``remove`` is True, keeping every other point's attributes (all of
    them, whoever made them) bit for bit, in order; returns how many went. The object, its
    transform, modifiers and materials stay. On Blender 5.1+ the data-block shrinks in place; 5.0
    cannot size a point cloud from Python, so there Blender's own point cloud edit-mode Delete
    does it (in place too), or, for an object outside the view layer, a new data-block with the
    same name, properties and materials replaces it (this object's only). The selection of the
    points kept is kept."""
    pc = obj.data
    n = len(pc.points)
    remove = np.asarray(remove, bool)
    if len(remove) != n:
        raise SplatLayoutError(f"{obj.name!r}: a mask of {len(remove)} for {n} splats")
    keep = ~remove
    kept = int(keep.sum())
    if kept == n:
        return 0
    names = [a.name for a in pc.attributes if a.domain == "POINT" and a.data_type in _RAW]
    if compat.POINTCLOUD_RESIZE:
        for name in names:
            attr = pc.attributes[name]
            key = _RAW[attr.data_type][0]
            values = _raw(attr, n)
            values[:kept] = values[keep]
            attr.data.foreach_set(key, values.reshape(-1))
        pc.resize(kept)
        pc.update_tag()
        return n - kept
    if not _delete_in_edit_mode(obj, remove, keep, kept):
        _replace_with_subset(obj, keep, kept, names)
    return n - kept


def _delete_in_edit_mode(obj, remove: np.ndarray, keep: np.ndarray, kept: int) -> bool:
    """Blender 5.0: point cloud edit mode's Delete on ``remove`` (fast, in place); False, with
    nothing changed, where the object cannot enter edit mode here. Other selected point clouds are
    deselected meanwhile, so that multi-object editing cannot touch them."""
    view_layer = bpy.context.view_layer
    if obj.mode != "OBJECT" or obj.name not in bpy.context.scene.objects:
        return False
    pc = obj.data
    had_selection = pc.attributes.get(SELECTION) is not None
    selection = read_selection(obj)

    def restore(values) -> None:
        if had_selection:
            write_selection(obj, values)
        elif pc.attributes.get(SELECTION) is not None:
            pc.attributes.remove(pc.attributes[SELECTION])

    # Switching modes evaluates the object: its preview (quads for every splat) need not run for that.
    shown = [m for m in obj.modifiers if m.show_viewport]
    for mod in shown:
        mod.show_viewport = False
    view_layer.update()  # an object linked a moment ago has no place in the view layer before this
    if view_layer.objects.get(obj.name) != obj:
        for mod in shown:
            mod.show_viewport = True
        return False
    others = [o for o in view_layer.objects if o is not None and o != obj and o.type == "POINTCLOUD"
              and o.select_get()]
    was_selected, was_active = obj.select_get(), view_layer.objects.active
    view_layer.objects.active = obj  # edit mode's Delete asks the view layer, not the context
    for other in others:
        other.select_set(False)
    obj.select_set(True)
    write_selection(obj, remove)
    try:
        with bpy.context.temp_override(active_object=obj, object=obj, selected_objects=[obj],
                                       selected_editable_objects=[obj]):
            bpy.ops.object.mode_set(mode="EDIT")
            try:
                bpy.ops.pointcloud.delete()
            finally:
                bpy.ops.object.mode_set(mode="OBJECT")
    except RuntimeError:
        if len(pc.points) != len(remove):
            raise
        restore(selection)
        return False
    finally:
        obj.select_set(was_selected)
        view_layer.objects.active = was_active
        for other in others:
            other.select_set(True)
        for mod in shown:
            mod.show_viewport = True
    if len(pc.points) != kept:
        raise SplatLayoutError(f"{obj.name!r}: Blender's Delete left {len(pc.points)} points, not {kept}")
    restore(selection[keep])
    return True


def _replace_with_subset(obj, keep: np.ndarray, kept: int, names: list[str]) -> None:
    """Blender 5.0: the kept points into a mesh's vertices, converted into a new point cloud."""
    old = obj.data
    n = len(old.points)

    def fill(mesh) -> None:
        for name in names:
            if name == SELECTION:
                continue  # the converter keeps only its own selection; the kept points were unselected
            attr = old.attributes[name]
            values = _raw(attr, n)[keep]
            target = mesh.attributes.get(name)
            if target is None:
                target = mesh.attributes.new(name, attr.data_type, "POINT")
            if target is None:
                raise SplatLayoutError(f"{obj.name!r}: Blender refused the point attribute {name!r}")
            if kept:
                target.data.foreach_set(_RAW[attr.data_type][0], values.reshape(-1))

    pc = pointcloud_through_mesh(old.name, kept, bpy.context.scene, fill)
    for key in old.keys():
        pc[key] = old[key]
    for material in old.materials:
        pc.materials.append(material)
    name = old.name
    obj.data = pc
    if old.users == 0:
        bpy.data.pointclouds.remove(old)
    pc.name = name
    write_selection(obj, np.zeros(kept, bool))


def sh_degree_of(obj) -> int:
    return _layout(obj)["sh_degree"]


__all__ = ["HIDDEN", "SELECTION", "SplatLayoutError", "convert_legacy", "is_legacy", "is_native", "is_splat_object",
           "make_native", "object_to_splats", "point_count", "read_alphas", "read_hidden", "read_positions",
           "read_scales", "read_selection", "remove_points", "sh_degree_of", "splats_to_object",
           "update_object_splats", "write_hidden", "write_selection"]
