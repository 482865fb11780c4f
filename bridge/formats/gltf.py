"""glTF 2.0 with ``KHR_gaussian_splatting``: ``.glb`` (binary) and ``.gltf`` (JSON) splat scenes.

Specification followed: KHR_gaussian_splatting, status "Release Candidate", in the KhronosGroup/glTF
repository, extensions/2.0/Khronos/KHR_gaussian_splatting (README.md and
schema/mesh.primitive.KHR_gaussian_splatting.schema.json), text as last changed by commit 63770cc7
(2026-04-15, "Editorial review"; unchanged at the repository's 77b44be7 of 2026-07-17).

What the extension says, and what this module does with it:

- A splat field is a mesh primitive with ``mode`` POINTS (0) and ``extensions.KHR_gaussian_splatting``
  ``{"kernel": "ellipse", "colorSpace": ..., "projection": "perspective", "sortingMethod":
  "cameraDistance"}`` (kernel and colorSpace required).
- Attributes (one accessor each, all with POSITION's count):
  ``POSITION`` VEC3 (float; or KHR_mesh_quantization's integer types), centres in the node's space;
  ``KHR_gaussian_splatting:ROTATION`` VEC4 unit quaternion x y z w (float, or byte/short normalised);
  ``KHR_gaussian_splatting:SCALE`` VEC3 *linear* standard deviations, never negative (float, or
  unsigned byte/short, normalised or not); ``KHR_gaussian_splatting:OPACITY`` SCALAR alpha in
  [0, 1] after the sigmoid (float, or unsigned byte/short normalised);
  ``KHR_gaussian_splatting:SH_DEGREE_0_COEF_0`` VEC3 float (the DC coefficients: colour = 0.5 +
  0.2820948 * c) and ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` VEC3 float for l = 1..3,
  n = 0..2l (m = -l..l, the real SH with the Condon-Shortley phase: exactly 3DGS's basis and order,
  so SplatSet.sh_rest[:, l*l - 1 + n] is that attribute). A degree is present whole or not at all,
  and only with every lower one. ``COLOR_0`` is an optional point-cloud fallback (ignored on reading).
- ``colorSpace`` ``srgb_rec709_display`` is what 3DGS trainers produce and what we write;
  ``lin_rec709_display`` is converted on reading (DC exactly, higher bands to first order).
- Coordinates: glTF is right-handed, +Y up, cameras look along -Z (RUB); 3DGS PLY and SplatSet are
  RDF. As for SPZ, :func:`spz.flip_yz` (a half turn about x, exact) converts both ways, so
  ``ply -> glb`` puts the scene the right way up in every glTF viewer. Node transforms are baked
  into the splats on reading (``transform.place_splats``, SH rotated with them).

Writing (``write``): one node, one mesh, one primitive; every attribute a float accessor in its own
tightly packed buffer view, plus ``COLOR_0`` (linear RGBA, unsigned byte normalised) for viewers
without the extension. Nothing is quantised: a write-then-read changes values only by float32
rounding of exp/log (scales), sigmoid/logit (opacity; alphas within 2**-24 of 1 come back as the
largest finite logit, 16.6) and quaternion normalisation. ``.glb`` keeps everything in one file;
``.gltf`` embeds the buffer as a base64 data URI (one self-contained file, a third larger).

Reading (``read``) accepts every component type the extension allows, interleaved buffer views
(byteStride), sparse accessors, primitive ``indices``, GLB's BIN chunk and, for ``.gltf``, data URIs
and external buffer files beside the ``.gltf`` (or in folders below it). Every count and offset is
checked against the bytes really there before anything is allocated. Refused, naming the
primitive and accessor: missing or mismatched accessors, counts past their buffer, non-finite
values, out-of-range opacities or negative scales, Draco (KHR_draco_mesh_compression), meshopt
(EXT_/KHR_meshopt_compression) and other compressed or unknown required versions of the data.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import struct
import urllib.parse
from dataclasses import dataclass, field

import numpy as np

from .atomic import atomic_write
from .errors import FormatError, warn
from .sh import SH_C0
from .splatset import SplatSet

EXTENSION = "KHR_gaussian_splatting"
PREFIX = EXTENSION + ":"
SPEC_VERSION = "KHR_gaussian_splatting Release Candidate (KhronosGroup/glTF 63770cc7, 2026-04-15)"
GLB_MAGIC = b"glTF"
GLB_HEADER = struct.Struct("<4sII")
CHUNK_HEADER = struct.Struct("<II")
CHUNK_JSON, CHUNK_BIN = 0x4E4F534A, 0x004E4942
POINTS = 0
ARRAY_BUFFER = 34962

POSITION = "POSITION"
ROTATION = PREFIX + "ROTATION"
SCALE = PREFIX + "SCALE"
OPACITY = PREFIX + "OPACITY"
SH0 = PREFIX + "SH_DEGREE_0_COEF_0"
# Custom attributes carrying SplatSet.extras: "_SPLATWORK_<i>", their names and dtypes in the
# primitive's extras (glTF's application-specific attributes start with an underscore).
EXTRA_PREFIX = "_SPLATWORK_"
EXTRAS_KEY = "splatwork_extras"

BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
COMPONENT_DTYPES = {BYTE: "<i1", UNSIGNED_BYTE: "<u1", SHORT: "<i2", UNSIGNED_SHORT: "<u2", UNSIGNED_INT: "<u4",
                    FLOAT: "<f4"}
COMPONENT_NAMES = {BYTE: "BYTE", UNSIGNED_BYTE: "UNSIGNED_BYTE", SHORT: "SHORT", UNSIGNED_SHORT: "UNSIGNED_SHORT",
                   UNSIGNED_INT: "UNSIGNED_INT", FLOAT: "FLOAT"}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

# (accessor type, allowed (componentType, normalized) pairs) per splat attribute, from the spec's table.
_FLOAT = (FLOAT, False)
ALLOWED = {
    POSITION: ("VEC3", {_FLOAT, (BYTE, False), (BYTE, True), (UNSIGNED_BYTE, False), (UNSIGNED_BYTE, True),
                        (SHORT, False), (SHORT, True), (UNSIGNED_SHORT, False), (UNSIGNED_SHORT, True)}),
    ROTATION: ("VEC4", {_FLOAT, (BYTE, True), (SHORT, True)}),
    SCALE: ("VEC3", {_FLOAT, (UNSIGNED_BYTE, False), (UNSIGNED_BYTE, True), (UNSIGNED_SHORT, False),
                     (UNSIGNED_SHORT, True)}),
    OPACITY: ("SCALAR", {_FLOAT, (UNSIGNED_BYTE, True), (UNSIGNED_SHORT, True)}),
}
KERNELS = ("ellipse",)
COLOR_SPACES = ("srgb_rec709_display", "lin_rec709_display")
PROJECTIONS = ("perspective",)
# Extensions that, on a splat primitive or its buffer views, mean the data is not in the accessors.
COMPRESSIONS = {
    "KHR_draco_mesh_compression": "Draco",
    "EXT_meshopt_compression": "meshopt",
    "KHR_meshopt_compression": "meshopt",
}
# The largest float32 below 1 (sigmoid rounds to 1.0 past a logit of ~16.6) and the smallest normal.
_ALPHA_MAX = np.float32(1.0) - np.float32(2.0 ** -24)
_TINY = np.finfo(np.float32).tiny
MAX_NODE_DEPTH = 1024
# What a read may decode, in float32 bytes, per byte of glTF it read (file, buffers) plus a floor:
# real files decode to about their own size (more only where attributes share accessors, as the
# extension allows: 15 SH attributes on one zero accessor decode to 3.5x); a hostile one that points
# many attributes or extras at the same bytes fails here instead of multiplying its size. Placing
# one mesh in many nodes (``read`` bakes each copy) has a budget of its own.
DECODE_RATIO, PLACE_RATIO, BUDGET_FLOOR = 16, 16, 1 << 16
# A few bytes of tolerance on alpha/scale ranges for writers that round (float32 sums etc.).
_RANGE_SLACK = 1e-6


def sh_semantic(degree: int, coef: int) -> str:
    return f"{PREFIX}SH_DEGREE_{degree}_COEF_{coef}"


def rest_semantics(degree: int) -> list[str]:
    """The higher-band SH attributes up to ``degree``, in SplatSet.sh_rest order."""
    return [sh_semantic(d, n) for d in range(1, degree + 1) for n in range(2 * d + 1)]


# --------------------------------------------------------------------------------------------------
# The container: GLB chunks or glTF JSON, and its buffers


@dataclass
class Document:
    """A parsed glTF: its JSON and the bytes of its buffers (loaded when first needed)."""

    path: str
    json: dict
    glb_bin: memoryview | None = None
    size: int = 0  # bytes read: the file and any external or embedded buffers
    spent: dict[str, int] = field(default_factory=dict)  # bytes handed out so far, per budget
    _buffers: dict[int, memoryview] = field(default_factory=dict)

    def spend(self, nbytes: int, where: str, budget: str = "decode") -> None:
        """Count ``nbytes`` more of decoded (or placed) data against the file's size; FormatError past
        the limit (``DECODE_RATIO`` / ``PLACE_RATIO``)."""
        self.spent[budget] = self.spent.get(budget, 0) + nbytes
        ratio = DECODE_RATIO if budget == "decode" else PLACE_RATIO
        if self.spent[budget] > ratio * self.size + BUDGET_FLOOR:
            what = "accessors or extras reuse" if budget == "decode" else "nodes place"
            raise FormatError(self.path, f"{where}: the file's {self.size:,} bytes would decode to more than "
                              f"{ratio}x their size ({what} the same data over and over)")

    def buffer(self, index: int, where: str) -> memoryview:
        if index in self._buffers:
            return self._buffers[index]
        buffers = _list(self, self.json, "buffers")
        if not (isinstance(index, int) and 0 <= index < len(buffers)):
            raise FormatError(self.path, f"{where}: buffer {index!r} does not exist ({len(buffers)} buffers)")
        spec = _dict(self, buffers[index], f"buffers[{index}]")
        length = _int(self, spec, "byteLength", f"buffers[{index}]", required=True)
        uri = spec.get("uri")
        if uri is None:
            if index != 0 or self.glb_bin is None:
                raise FormatError(self.path, f"buffers[{index}] has no uri and there is no GLB BIN chunk for it")
            data = self.glb_bin
        elif not isinstance(uri, str):
            raise FormatError(self.path, f"buffers[{index}].uri is not a string")
        else:
            data = self._load_uri(uri, f"buffers[{index}]")
        if len(data) < length:
            raise FormatError(self.path, f"truncated: buffers[{index}] declares {length:,} bytes, "
                              f"only {len(data):,} are there")
        view = memoryview(data)[:length]
        if uri is not None:
            self.size += len(data)
        self._buffers[index] = view
        return view

    def _load_uri(self, uri: str, where: str) -> memoryview:
        if uri.startswith("data:"):
            head, sep, payload = uri.partition(",")
            if not sep or not head.endswith(";base64"):
                raise FormatError(self.path, f"{where}: only base64 data URIs are supported")
            try:
                return memoryview(base64.b64decode(payload, validate=True))
            except (binascii.Error, ValueError):
                raise FormatError(self.path, f"{where}: the data URI is not valid base64") from None
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme or parsed.netloc:
            raise FormatError(self.path, f"{where}: {uri!r} is not a file beside the glTF (only relative file "
                              "paths and data URIs are read; nothing is downloaded)")
        relative = urllib.parse.unquote(parsed.path)
        folder = os.path.dirname(os.path.abspath(self.path))
        target = os.path.normpath(os.path.join(folder, relative))
        if os.path.isabs(relative) or os.path.commonpath([folder, target]) != folder:
            raise FormatError(self.path, f"{where}: {uri!r} points outside the glTF's folder")
        try:
            with open(target, "rb") as f:
                return memoryview(f.read())
        except OSError as exc:
            raise FormatError(self.path, f"{where}: cannot read {relative!r}: {exc.strerror or exc}") from None


def load(path: str | os.PathLike, glb_bin: memoryview | None = None) -> Document:
    """The document at ``path`` (GLB or glTF JSON); FormatError for anything that is not glTF 2.0.

    ``glb_bin``: the GLB's BIN chunk when the caller has already read it (Blender's glTF importer
    has): then only the header and JSON chunk are read here, not the whole file again."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            if glb_bin is None:
                data = f.read()
            else:  # the header, the JSON chunk's header and the JSON chunk
                data = f.read(GLB_HEADER.size + CHUNK_HEADER.size)
                if len(data) == GLB_HEADER.size + CHUNK_HEADER.size and data.startswith(GLB_MAGIC):
                    size = CHUNK_HEADER.unpack_from(data, GLB_HEADER.size)[0]
                    data += f.read(min(size, max(0, os.fstat(f.fileno()).st_size - len(data))))
            file_size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise FormatError(path, "the file is empty")
    if data.startswith(GLB_MAGIC) and glb_bin is not None:
        text = memoryview(data)[GLB_HEADER.size + CHUNK_HEADER.size:]
    elif data.startswith(GLB_MAGIC):
        text, glb_bin = _glb_chunks(path, data)
    else:
        text, glb_bin = data, None
    try:
        doc = json.loads(bytes(text).decode("utf-8-sig"), parse_constant=_bad_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(path, f"the glTF JSON is not valid: {exc}") from None
    except RecursionError:
        raise FormatError(path, "the glTF JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise FormatError(path, "the glTF JSON is not an object")
    _check_asset(path, doc)
    return Document(path, doc, glb_bin, size=file_size)


def _bad_constant(name):
    raise ValueError(f"{name} is not allowed in JSON")


def _glb_chunks(path: str, data: bytes) -> tuple[memoryview, memoryview | None]:
    if len(data) < GLB_HEADER.size + CHUNK_HEADER.size:
        raise FormatError(path, "truncated: shorter than a GLB header")
    _, version, length = GLB_HEADER.unpack_from(data)
    if version != 2:
        raise FormatError(path, f"GLB container version {version} is not supported (glTF 2.0 needs 2)")
    if length > len(data):
        raise FormatError(path, f"truncated: the GLB header says {length:,} bytes, the file has {len(data):,}")
    if length < len(data):
        warn(path, f"{len(data) - length:,} byte(s) after the GLB's declared length were ignored")
    view = memoryview(data)[:length]
    offset, chunks = GLB_HEADER.size, []
    while offset + CHUNK_HEADER.size <= length:
        size, kind = CHUNK_HEADER.unpack_from(view, offset)
        start = offset + CHUNK_HEADER.size
        if size > length - start:
            raise FormatError(path, f"truncated: GLB chunk {len(chunks)} runs {size - (length - start):,} bytes "
                              "past the end of the file")
        chunks.append((kind, view[start:start + size]))
        offset = start + size
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise FormatError(path, "the GLB's first chunk is not JSON")
    bins = [chunk for kind, chunk in chunks[1:] if kind == CHUNK_BIN]
    if len(bins) > 1:
        raise FormatError(path, "the GLB has more than one BIN chunk")
    return chunks[0][1], (bins[0] if bins else None)


def _check_asset(path: str, doc: dict) -> None:
    asset = doc.get("asset")
    if not isinstance(asset, dict) or not isinstance(asset.get("version"), str):
        raise FormatError(path, "not a glTF 2.0 file: no asset.version")
    for key in ("version", "minVersion"):
        value = asset.get(key)
        if value is None:
            continue
        major, _, minor = str(value).partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise FormatError(path, f"asset.{key} {value!r} is not a glTF version")
        if int(major) != 2 or (key == "minVersion" and int(minor) > 0):
            raise FormatError(path, f"glTF asset.{key} {value} is not supported (glTF 2.0 is)")


# --------------------------------------------------------------------------------------------------
# JSON checks that name where the problem is


def _plain(value) -> bool:
    """A JSON scalar (hashable): what may be looked up in the tables here."""
    return value is None or isinstance(value, (bool, int, float, str))


def _dict(doc: Document, value, where: str) -> dict:
    if not isinstance(value, dict):
        raise FormatError(doc.path, f"{where} is not a JSON object")
    return value


def _list(doc: Document, parent: dict, key: str) -> list:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise FormatError(doc.path, f"{key} is not a JSON array")
    return value


def _int(doc: Document, spec: dict, key: str, where: str, default: int = 0, required: bool = False,
         low: int = 0) -> int:
    if key not in spec:
        if required:
            raise FormatError(doc.path, f"{where} has no {key}")
        return default
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise FormatError(doc.path, f"{where}.{key} must be an integer >= {low}, got {value!r}")
    return value


def _item(doc: Document, key: str, index, where: str) -> dict:
    items = _list(doc, doc.json, key)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(items):
        raise FormatError(doc.path, f"{where}: {key}[{index!r}] does not exist ({len(items)} {key})")
    return _dict(doc, items[index], f"{key}[{index}]")


# --------------------------------------------------------------------------------------------------
# Accessors


def accessor(doc: Document, index, where: str) -> tuple[np.ndarray, dict]:
    """The accessor's elements as a (count, width) array of its component type (normalisation not
    applied), and its JSON. ``where`` names the user (e.g. the attribute) in errors."""
    where = f"{where}: accessor {index}"
    spec = _item(doc, "accessors", index, where)
    ctype = spec.get("componentType")
    if not _plain(ctype) or ctype not in COMPONENT_DTYPES:
        raise FormatError(doc.path, f"{where} has an invalid componentType {ctype!r}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in TYPE_WIDTHS:
        raise FormatError(doc.path, f"{where} has an invalid type {kind!r}")
    if not isinstance(spec.get("normalized", False), bool):
        raise FormatError(doc.path, f"{where}.normalized must be true or false")
    count = _int(doc, spec, "count", where, required=True, low=1)
    dtype = np.dtype(COMPONENT_DTYPES[ctype])
    width = TYPE_WIDTHS[kind]
    if "bufferView" not in spec:
        raise FormatError(doc.path, f"{where} has no data (no bufferView): a splat attribute must carry its values")
    values = _view_elements(doc, spec["bufferView"], _int(doc, spec, "byteOffset", where), count, dtype, width, where)
    sparse = spec.get("sparse")
    if sparse is not None:
        values = _apply_sparse(doc, _dict(doc, sparse, f"{where}.sparse"), values.copy(), dtype, width, where)
    return values, spec


def _view_elements(doc: Document, view_index, offset: int, count: int, dtype: np.dtype, width: int,
                   where: str) -> np.ndarray:
    """``count`` elements of ``width`` components from a buffer view (a strided view, not a copy)."""
    view = _item(doc, "bufferViews", view_index, where)
    vwhere = f"{where}: bufferView {view_index}"
    for name, label in COMPRESSIONS.items():
        if name in (view.get("extensions") or {}):
            raise FormatError(doc.path, f"{vwhere} is {label}-compressed ({name}), which Splatwork does not decode")
    element = dtype.itemsize * width
    stride = _int(doc, view, "byteStride", vwhere, default=element)
    if stride < element:
        raise FormatError(doc.path, f"{vwhere}: byteStride {stride} is smaller than one element ({element} bytes)")
    length = _int(doc, view, "byteLength", vwhere, required=True, low=1)
    start = _int(doc, view, "byteOffset", vwhere)
    buffer = doc.buffer(_int(doc, view, "buffer", vwhere, required=True), vwhere)
    if start + length > len(buffer):
        raise FormatError(doc.path, f"{vwhere} runs past the end of its buffer ({start + length:,} > {len(buffer):,} "
                          "bytes)")
    need = offset + stride * (count - 1) + element
    if need > length:
        raise FormatError(doc.path, f"{where}: {count:,} elements need {need:,} bytes of bufferView {view_index}, "
                          f"which has {length:,} (a count past the file's data)")
    return np.ndarray((count, width), dtype, buffer=buffer, offset=start + offset, strides=(stride, dtype.itemsize))


def _apply_sparse(doc: Document, sparse: dict, values: np.ndarray, dtype, width: int, where: str) -> np.ndarray:
    swhere = f"{where}.sparse"
    n = _int(doc, sparse, "count", swhere, required=True, low=1)
    if n > len(values):
        raise FormatError(doc.path, f"{swhere}.count {n:,} exceeds the accessor's count {len(values):,}")
    indices = _dict(doc, sparse.get("indices"), f"{swhere}.indices")
    itype = indices.get("componentType")
    if itype not in (UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT):
        raise FormatError(doc.path, f"{swhere}.indices has an invalid componentType {itype!r}")
    idx = _view_elements(doc, indices.get("bufferView"), _int(doc, indices, "byteOffset", swhere), n,
                         np.dtype(COMPONENT_DTYPES[itype]), 1, f"{swhere}.indices")[:, 0].astype(np.int64)
    if idx.max() >= len(values) or (len(idx) > 1 and np.any(np.diff(idx) <= 0)):
        raise FormatError(doc.path, f"{swhere}.indices must increase strictly and stay below {len(values):,}")
    spec = _dict(doc, sparse.get("values"), f"{swhere}.values")
    values[idx] = _view_elements(doc, spec.get("bufferView"), _int(doc, spec, "byteOffset", swhere), n, dtype,
                                 width, f"{swhere}.values")
    return values


def _as_float(values: np.ndarray, normalized: bool) -> np.ndarray:
    """float32 values; normalised integers mapped as glTF says (signed: max(c / max, -1))."""
    if values.dtype.kind == "f":
        return np.array(values, np.float32)
    if not normalized:
        return values.astype(np.float32)
    top = float(np.iinfo(values.dtype).max)
    out = values.astype(np.float32) / np.float32(top)
    if values.dtype.kind == "i":
        np.maximum(out, -1.0, out=out)
    return out


# --------------------------------------------------------------------------------------------------
# Splat primitives


def is_splat_primitive(primitive) -> bool:
    return isinstance(primitive, dict) and isinstance(primitive.get("extensions"), dict) \
        and EXTENSION in primitive["extensions"]


def splat_primitives(doc: Document) -> list[tuple[int, int]]:
    """(mesh index, primitive index) of every primitive carrying the extension."""
    found = []
    for m, mesh in enumerate(_list(doc, doc.json, "meshes")):
        if not isinstance(mesh, dict) or not isinstance(mesh.get("primitives"), list):
            continue
        found += [(m, p) for p, prim in enumerate(mesh["primitives"]) if is_splat_primitive(prim)]
    return found


def read_primitive(doc: Document, mesh: int, index: int, rotation: np.ndarray | None = None,
                   scale: float = 1.0) -> SplatSet:
    """The splats of ``meshes[mesh].primitives[index]`` in the primitive's own (glTF, node-local)
    coordinates, or turned by ``rotation`` and ``scale`` as :func:`turn` does (the SH bands rotated
    while they are gathered, in one pass); FormatError naming the primitive and accessor for anything
    wrong with it."""
    where = f"meshes[{mesh}].primitives[{index}]"
    primitives = _item(doc, "meshes", mesh, where).get("primitives")
    if not isinstance(primitives, list) or not 0 <= index < len(primitives):
        raise FormatError(doc.path, f"{where} does not exist")
    prim = _dict(doc, primitives[index], where)
    ext = _dict(doc, prim["extensions"][EXTENSION], f"{where}.extensions.{EXTENSION}")
    _check_extension(doc, prim, ext, where)
    if prim.get("mode", 4) != POINTS:
        raise FormatError(doc.path, f"{where}: a {EXTENSION} primitive must have mode POINTS (0), "
                          f"this one has {prim.get('mode', 4)!r}")
    attributes = _dict(doc, prim.get("attributes"), f"{where}.attributes")
    missing = [name for name in (POSITION, ROTATION, SCALE, OPACITY, SH0) if name not in attributes]
    if missing:
        raise FormatError(doc.path, f"{where}: the required attribute {missing[0]} is missing")
    degree = _sh_degree(doc, attributes, where)

    def get(name: str, check: bool = True) -> np.ndarray:
        spec = _item(doc, "accessors", attributes[name], f"{where}.attributes {name}")
        wanted_type, allowed = ALLOWED.get(name, ("VEC3", {_FLOAT}))
        normalized, ctype = spec.get("normalized", False), spec.get("componentType")
        if spec.get("type") != wanted_type or not (_plain(ctype) and _plain(normalized)) \
                or (ctype, normalized) not in allowed:
            kinds = ", ".join(COMPONENT_NAMES[c] + (" normalized" if n else "") for c, n in sorted(allowed))
            component = COMPONENT_NAMES.get(ctype, ctype) if _plain(ctype) else repr(ctype)
            have = f"{spec.get('type')!s} {component}"
            raise FormatError(doc.path, f"{where}: accessor {attributes[name]} ({name}) is {have}"
                              f"{' normalized' if normalized else ''}; the extension allows {wanted_type} of {kinds}")
        values, spec = accessor(doc, attributes[name], f"{where}.attributes {name}")
        if len(values) != count:
            raise FormatError(doc.path, f"{where}: accessor {attributes[name]} ({name}) has {len(values):,} "
                              f"elements, POSITION has {count:,}")
        doc.spend(values.size * 4 * (2 if indices is not None else 1), f"{where}: accessor {attributes[name]}")
        if not check and indices is None and values.dtype.kind == "f":
            return values  # the file's bytes as they lie (SH planes, gathered and checked below)
        out = _as_float(values, normalized)
        if indices is not None:
            out = out[indices]
        if check and not _finite(out):
            bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise FormatError(doc.path, f"{where}: accessor {attributes[name]} ({name}) has a non-finite value "
                              f"(NaN or Inf) at element {bad:,}")
        return out

    count = len(accessor(doc, attributes[POSITION], f"{where}.attributes POSITION")[0])
    indices = _indices(doc, prim, count, where)
    means = get(POSITION)
    xyzw = get(ROTATION)
    scales = get(SCALE)
    alphas = get(OPACITY)[:, 0]
    sh_dc = get(SH0)
    names = rest_semantics(degree)
    rest = _gather_sh([get(name, check=False) for name in names], len(means), rotation)
    if not _finite(rest):
        for name in names:  # which one: read again, checked
            get(name)
    _check_range(doc, where, attributes[OPACITY], OPACITY, alphas, 0.0, 1.0)
    _check_range(doc, where, attributes[SCALE], SCALE, scales, 0.0, None)
    norms = np.sqrt(np.einsum("ij,ij->i", xyzw, xyzw))
    if np.any(norms == 0):
        raise FormatError(doc.path, f"{where}: accessor {attributes[ROTATION]} ({ROTATION}) has a zero quaternion "
                          f"at element {int(np.flatnonzero(norms == 0)[0]):,}")
    quats = xyzw[:, [3, 0, 1, 2]]
    quats /= norms[:, None]
    with np.errstate(divide="ignore"):
        log_scales = np.log(np.maximum(scales, _TINY))
    a = np.clip(alphas.astype(np.float64), _TINY, _ALPHA_MAX)
    splats = SplatSet(
        means=np.ascontiguousarray(means), scales=log_scales.astype(np.float32), quats=quats,
        opacities=(np.log(a) - np.log1p(-a)).astype(np.float32), sh_dc=np.ascontiguousarray(sh_dc), sh_rest=rest,
        extras=_read_extras(doc, prim, attributes, count, indices, where),
    )
    if rotation is not None:
        splats.means, splats.quats = _turn_means_quats(splats.means, splats.quats, rotation, scale)
        if scale != 1:
            splats.scales += np.float32(np.log(scale))
    if ext.get("colorSpace") == "lin_rec709_display":
        splats = linear_to_srgb_sh(splats)
    return splats


def _finite(values: np.ndarray) -> bool:
    # NaN and Inf survive a sum: one reduction clears the usual case (an overflow of huge finite
    # values falls through to the exact check).
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(values.sum())) or bool(np.isfinite(values).all())


SH_CHUNK = 32768  # rows gathered (and rotated) at a time: blocks that stay in the cache


def _as_triples(plane: np.ndarray) -> np.ndarray:
    """An (N, 3) float32 array as N 12-byte items (a view; a copy only when its rows are not packed)."""
    plane = np.asarray(plane, np.float32)
    if plane.strides[1] != 4:
        plane = np.ascontiguousarray(plane)
    return plane.view("V12")[:, 0]


def _gather_sh(planes: list[np.ndarray], n: int, rotation: np.ndarray | None) -> np.ndarray:
    """(N, K, 3) float32 from K (N, 3) coefficient planes, rotated by ``rotation`` when given, in
    blocks of rows that stay in the cache. Each RGB triple moves as one 12-byte item (half the time
    of three floats); a rotation is applied as the sums its band matrices hold (a quarter turn's
    have 23 terms in all, the band-1 ones exact signed copies), which beats a dense matrix product
    on every numpy here."""
    k = len(planes)
    out = np.empty((n, k, 3), np.float32)
    if k == 0:
        return out
    items = out.reshape(n, 3 * k).view("V12")
    triples = [_as_triples(plane) for plane in planes]
    if rotation is None:
        for start in range(0, n, SH_CHUNK):
            for j, plane in enumerate(triples):
                items[start:start + SH_CHUNK, j] = plane[start:start + SH_CHUNK]
        return out
    from .splatset import sh_degree_for_rest_count
    from .transform import _sh_block_matrix

    matrix = _sh_block_matrix(np.asarray(rotation, np.float64), sh_degree_for_rest_count(k))
    terms = [[(j, np.float32(matrix[i, j])) for j in range(k) if abs(matrix[i, j]) > 1e-9] for i in range(k)]
    total, part = np.empty((min(SH_CHUNK, n), 3), np.float32), np.empty((min(SH_CHUNK, n), 3), np.float32)
    for start in range(0, n, SH_CHUNK):
        end = min(start + SH_CHUNK, n)
        acc, tmp = total[:end - start], part[:end - start]
        for i, row in enumerate(terms):
            acc[...] = 0
            for j, weight in row:
                np.multiply(planes[j][start:end], weight, out=tmp)
                acc += tmp
            items[start:end, i] = acc.view("V12")[:, 0]
    return out


def _check_extension(doc: Document, prim: dict, ext: dict, where: str) -> None:
    """Refuse what this reader cannot decode or interpret; warn for what it reads anyway."""
    for name, label in COMPRESSIONS.items():
        if name in prim["extensions"]:
            raise FormatError(doc.path, f"{where} is {label}-compressed ({name}), which Splatwork does not decode")
    required = {name for name in _list(doc, doc.json, "extensionsRequired") if isinstance(name, str)}
    nested = ext.get("extensions") or {}
    if not isinstance(nested, dict):
        raise FormatError(doc.path, f"{where}.extensions.{EXTENSION}.extensions is not a JSON object")
    for name in nested:
        if name in required or "compression" in name.lower():
            raise FormatError(doc.path, f"{where}: {EXTENSION} is extended by {name}, which Splatwork does not "
                              "decode (the splats' data is not in the plain accessors)")
    if "kernel" not in ext or "colorSpace" not in ext:
        absent = "kernel" if "kernel" not in ext else "colorSpace"
        raise FormatError(doc.path, f"{where}: {EXTENSION} has no {absent!r}: an unknown (pre-release?) version of "
                          f"the extension; Splatwork reads the {SPEC_VERSION}")
    if ext["colorSpace"] not in COLOR_SPACES:
        raise FormatError(doc.path, f"{where}: {EXTENSION} colorSpace {ext['colorSpace']!r} is unknown "
                          f"(known: {', '.join(COLOR_SPACES)})")
    if ext["kernel"] not in KERNELS:
        warn(doc.path, f"{where}: unknown {EXTENSION} kernel {ext['kernel']!r} read as 'ellipse' (as the "
             "extension asks of readers that do not know a kernel)")
    if ext.get("projection", "perspective") not in PROJECTIONS:
        warn(doc.path, f"{where}: {EXTENSION} projection {ext['projection']!r} is unknown; read as perspective")
    if prim.get("targets"):
        warn(doc.path, f"{where}: morph targets on a splat primitive were ignored")


def _sh_degree(doc: Document, attributes: dict, where: str) -> int:
    degree = 0
    for d in (1, 2, 3):
        names = [sh_semantic(d, n) for n in range(2 * d + 1)]
        present = [name in attributes for name in names]
        if not any(present):
            break
        if not all(present):
            raise FormatError(doc.path, f"{where}: SH degree {d} is partly defined: "
                              f"{names[present.index(False)]} is missing")
        degree = d
    later = [name for name in attributes if name.startswith(PREFIX + "SH_DEGREE_")
             and name not in (SH0, *rest_semantics(degree))]
    if later:
        raise FormatError(doc.path, f"{where}: {later[0]} is given without every lower SH coefficient "
                          f"(the complete degrees stop at {degree})")
    return degree


def _indices(doc: Document, prim: dict, count: int, where: str) -> np.ndarray | None:
    if "indices" not in prim:
        return None
    values, spec = accessor(doc, prim["indices"], f"{where}.indices")
    if spec["type"] != "SCALAR" or spec["componentType"] not in (UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT):
        raise FormatError(doc.path, f"{where}: accessor {prim['indices']} (indices) must be SCALAR unsigned integers")
    idx = values[:, 0].astype(np.int64)
    if len(idx) > count or idx.max() >= count:
        raise FormatError(doc.path, f"{where}: accessor {prim['indices']} (indices) selects more points than there "
                          f"are or points past POSITION's {count:,}")
    return idx


def _check_range(doc: Document, where: str, index, name: str, values: np.ndarray, low, high) -> None:
    bad = values < low - _RANGE_SLACK
    if high is not None:
        bad |= values > high + _RANGE_SLACK
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
        allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise FormatError(doc.path, f"{where}: accessor {index} ({name}) has {values.reshape(len(values), -1)[row]} "
                          f"at element {row:,}, outside {allowed}")


def _read_extras(doc: Document, prim: dict, attributes: dict, count: int, indices, where: str) -> dict:
    described = (prim.get("extras") or {}).get(EXTRAS_KEY) if isinstance(prim.get("extras"), dict) else None
    if not isinstance(described, dict):
        return {}
    extras = {}
    for semantic, info in described.items():
        if semantic not in attributes or not isinstance(info, dict) or not isinstance(info.get("name"), str):
            continue
        try:
            dtype = np.dtype(info.get("dtype", "float32"))
        except TypeError:
            continue
        values, _ = accessor(doc, attributes[semantic], f"{where}.attributes {semantic}")
        if len(values) != count or values.shape[1] != 1:
            raise FormatError(doc.path, f"{where}: accessor {attributes[semantic]} ({semantic}) has "
                              f"{len(values):,} elements, POSITION has {count:,}")
        doc.spend(len(values) * 8, f"{where}: accessor {attributes[semantic]}")
        column = values[:, 0] if indices is None else values[indices, 0]
        extras[info["name"]] = column.astype(dtype)
    return extras


# --------------------------------------------------------------------------------------------------
# Colour spaces


def _srgb_encode(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.sign(x) * np.where(a <= 0.0031308, 12.92 * a, 1.055 * np.power(a, 1 / 2.4) - 0.055)


def _srgb_slope(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return np.where(a <= 0.0031308, 12.92, 1.055 / 2.4 * np.power(np.maximum(a, 1e-12), 1 / 2.4 - 1))


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, np.power((c + 0.055) / 1.055, 2.4))


def linear_to_srgb_sh(splats: SplatSet) -> SplatSet:
    """Splats whose SH give linear Rec.709 colour, re-expressed for sRGB display (what Splatwork's
    renderers assume): the DC colour exactly, the view-dependent bands scaled by the transfer
    function's slope at the DC colour (exact to first order)."""
    linear = 0.5 + SH_C0 * splats.sh_dc.astype(np.float64)
    srgb = _srgb_encode(linear)
    rest = splats.sh_rest * _srgb_slope(linear)[:, None, :].astype(np.float32)
    return SplatSet(splats.means, splats.scales, splats.quats, splats.opacities,
                    ((srgb - 0.5) / SH_C0).astype(np.float32), np.ascontiguousarray(rest, np.float32),
                    splats.extras)


# --------------------------------------------------------------------------------------------------
# Axes

# Blender (x, y, z) -> glTF (x, z, -y): Blender's glTF add-on turns Z-up into Y-up so (and back).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def turn(splats: SplatSet, rotation: np.ndarray, scale: float = 1.0) -> SplatSet:
    """``splats`` turned by ``rotation`` (a proper rotation whose rows are signed unit axes, such as
    :data:`Z_UP_TO_Y_UP` or its transpose) and scaled uniformly: ``transform.bake_transform`` for
    this case, in float32 throughout. Positions move exactly (a swizzle), quaternions are multiplied
    by the turn's, the SH bands rotate exactly (:func:`_gather_sh`)."""
    means, quats = _turn_means_quats(splats.means, splats.quats, rotation, scale)
    scales = splats.scales if scale == 1 else splats.scales + np.float32(np.log(scale))
    rest = np.asarray(splats.sh_rest, np.float32)
    planes = [rest[:, k] for k in range(rest.shape[1])]
    return SplatSet(means=means, scales=scales, quats=quats, opacities=splats.opacities, sh_dc=splats.sh_dc,
                    sh_rest=_gather_sh(planes, len(rest), rotation), extras=splats.extras)


def _turn_means_quats(means: np.ndarray, quats: np.ndarray, rotation, scale: float):
    from .transform import matrix_to_quat

    rot = np.asarray(rotation, np.float64)
    axes = np.argmax(np.abs(rot), axis=1)
    signs = rot[np.arange(3), axes]
    if not (np.allclose(np.abs(signs), 1) and sorted(axes) == [0, 1, 2] and np.linalg.det(rot) > 0):
        raise ValueError("turn() takes a proper rotation made of signed axes")
    f = np.float32
    turned = np.ascontiguousarray(means[:, axes] * (signs * scale).astype(f), f)
    w, x, y, z = (f(v) for v in matrix_to_quat(rot[None])[0])
    qw, qx, qy, qz = quats[:, 0], quats[:, 1], quats[:, 2], quats[:, 3]
    return turned, np.stack([w * qw - x * qx - y * qy - z * qz, w * qx + x * qw + y * qz - z * qy,
                             w * qy - x * qz + y * qw + z * qx, w * qz + x * qy - y * qx + z * qw], axis=1)


# --------------------------------------------------------------------------------------------------
# The scene: nodes, transforms, and the whole file as one SplatSet


def node_matrix(doc: Document, node: dict, where: str) -> np.ndarray:
    """A node's local 4x4 transform (``matrix``, or translation/rotation/scale)."""
    def numbers(key, n, default):
        value = node.get(key, default)
        if not (isinstance(value, list) and len(value) == n
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise FormatError(doc.path, f"{where}.{key} must be {n} finite numbers")
        return np.array(value, np.float64)

    if "matrix" in node:
        return numbers("matrix", 16, None).reshape(4, 4).T  # column-major in glTF
    t = numbers("translation", 3, [0.0, 0.0, 0.0])
    x, y, z, w = numbers("rotation", 4, [0.0, 0.0, 0.0, 1.0])
    s = numbers("scale", 3, [1.0, 1.0, 1.0])
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if norm == 0:
        raise FormatError(doc.path, f"{where}.rotation is a zero quaternion")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    rot = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
    m = np.eye(4)
    m[:3, :3] = rot * s[None, :]
    m[:3, 3] = t
    return m


@dataclass
class PlacedSplats:
    """One node's splats: node-local (glTF axes) and the node's world matrix."""

    node: int | None
    name: str
    splats: SplatSet
    matrix: np.ndarray


def scene_splats(doc: Document) -> list[PlacedSplats]:
    """Every splat mesh the scene shows, per node, in node-local glTF coordinates (all primitives of
    a mesh merged). Meshes no node uses are returned at the identity when the file places none."""
    nodes = _list(doc, doc.json, "nodes")
    meshes = {}
    for m, p in splat_primitives(doc):
        meshes.setdefault(m, []).append(p)
    if not meshes:
        count = len(_list(doc, doc.json, "meshes"))
        raise FormatError(doc.path, f"no {EXTENSION} primitive: a glTF model without Gaussian splats "
                          f"({count} mesh(es))")
    cache: dict[int, SplatSet] = {}

    def mesh_splats(m: int) -> SplatSet:
        if m not in cache:
            parts = [read_primitive(doc, m, p) for p in meshes[m]]
            cache[m] = merge(parts)
        return cache[m]

    placed = []
    for node_index, world in _walk(doc, nodes):
        node = nodes[node_index]
        m = node.get("mesh")
        if isinstance(m, int) and not isinstance(m, bool) and m in meshes:
            splats = mesh_splats(m)
            doc.spend(_splat_bytes(splats), f"nodes[{node_index}]", "place")
            name = node.get("name") or _item(doc, "meshes", m, "node").get("name") or f"node {node_index}"
            placed.append(PlacedSplats(node_index, str(name), splats, world))
    if not placed:
        warn(doc.path, f"no node of the scene shows the {EXTENSION} meshes; they were read where they stand")
        for m in meshes:
            name = _item(doc, "meshes", m, "meshes").get("name") or f"mesh {m}"
            placed.append(PlacedSplats(None, str(name), mesh_splats(m), np.eye(4)))
    return placed


def _splat_bytes(splats: SplatSet) -> int:
    return sum(getattr(splats, k).nbytes for k in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"))


def _walk(doc: Document, nodes: list):
    """(node index, world matrix) for every node of the default scene, depth first."""
    scenes = _list(doc, doc.json, "scenes")
    if scenes:
        chosen = doc.json.get("scene", 0)
        roots = _item(doc, "scenes", chosen, "scene").get("nodes", [])
    else:  # no scene: every node that is nobody's child
        children = {c for n in nodes if isinstance(n, dict) and isinstance(n.get("children"), list)
                    for c in n["children"] if isinstance(c, int)}
        roots = [i for i in range(len(nodes)) if i not in children]
    seen = set()
    stack = [(r, np.eye(4), 0) for r in reversed(roots if isinstance(roots, list) else [])]
    while stack:
        index, parent, depth = stack.pop()
        node = _item(doc, "nodes", index, "scene")
        if index in seen:
            raise FormatError(doc.path, f"nodes[{index}] is reached twice: the node hierarchy is not a tree")
        if depth > MAX_NODE_DEPTH:
            raise FormatError(doc.path, f"the node hierarchy is deeper than {MAX_NODE_DEPTH}")
        seen.add(index)
        world = parent @ node_matrix(doc, node, f"nodes[{index}]")
        yield index, world
        children = node.get("children", [])
        if not isinstance(children, list):
            raise FormatError(doc.path, f"nodes[{index}].children is not a JSON array")
        stack += [(c, world, depth + 1) for c in reversed(children)]


def merge(parts: list[SplatSet]) -> SplatSet:
    """Several splat sets as one (lower SH degrees zero-padded; extras kept when all have them)."""
    if len(parts) == 1:
        return parts[0]
    degree = max(p.sh_degree for p in parts)
    parts = [p.with_sh_degree(degree) for p in parts]
    shared = set.intersection(*(set(p.extras) for p in parts))
    return SplatSet(*(np.concatenate([getattr(p, name) for p in parts])
                      for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest")),
                    extras={k: np.concatenate([p.extras[k] for p in parts]) for k in sorted(shared)})


def read(path: str | os.PathLike) -> SplatSet:
    """Every splat the scene shows, node transforms baked in, in SplatSet's RDF axes."""
    from .spz import flip_yz
    from .transform import place_splats

    doc = load(path)
    placed = scene_splats(doc)
    ignored = sum(len(m.get("primitives", [])) for m in _list(doc, doc.json, "meshes") if isinstance(m, dict)) \
        - len(splat_primitives(doc))
    if ignored > 0:
        warn(path, f"{ignored} mesh primitive(s) without {EXTENSION} were ignored (only the splats are read)")
    if len(placed) == 1 and np.allclose(placed[0].matrix, np.eye(4), rtol=0, atol=0):
        world = placed[0].splats
    else:
        world = place_splats([(f"{os.fspath(path)} ({p.name})", p.splats, p.matrix) for p in placed])
    return flip_yz(world, in_place=True)  # freshly decoded or placed arrays: nobody else holds them


# --------------------------------------------------------------------------------------------------
# Writing


@dataclass
class Attribute:
    """One accessor to write: its semantic, tightly packed little-endian values and JSON fields."""

    semantic: str
    values: np.ndarray  # (N, width), C-contiguous
    component_type: int
    type: str
    normalized: bool = False
    with_bounds: bool = False  # min and max (required for POSITION)

    def accessor_json(self, view: int) -> dict:
        out = {"bufferView": view, "componentType": self.component_type, "count": len(self.values), "type": self.type}
        if self.normalized:
            out["normalized"] = True
        if self.with_bounds:
            out["min"] = [float(v) for v in self.values.min(axis=0)]
            out["max"] = [float(v) for v in self.values.max(axis=0)]
        return out


EXTENSION_OBJECT = {"kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection": "perspective",
                    "sortingMethod": "cameraDistance"}
_TYPE_OF_WIDTH = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}


def encode(splats: SplatSet, path=None, fallback_colors: bool = True) -> tuple[list[Attribute], dict]:
    """The primitive's accessors for ``splats`` (already in the glTF axes the caller wants) and the
    primitive's ``extras`` (the names and dtypes of extra attributes; empty when there are none)."""
    f = np.float32
    bad = splats.nonfinite()
    if bad:
        raise FormatError(path, f"non-finite values (NaN or Inf): {bad}")
    with np.errstate(over="ignore", under="ignore"):
        scales = np.exp(splats.scales.astype(np.float64)).astype(f)
        alphas = (1.0 / (1.0 + np.exp(-splats.opacities.astype(np.float64)))).astype(f)
    if not np.isfinite(scales).all():
        raise FormatError(path, f"a log-scale of {float(splats.scales.max()):.4g} overflows the float32 linear "
                          f"scales {EXTENSION} stores")
    q = splats.quats.astype(np.float64)
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
    unit = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    unit[norm[:, 0] == 0] = (1.0, 0.0, 0.0, 0.0)
    attributes = [
        Attribute(POSITION, np.ascontiguousarray(splats.means, f), FLOAT, "VEC3", with_bounds=True),
        Attribute(ROTATION, np.ascontiguousarray(unit[:, [1, 2, 3, 0]], f), FLOAT, "VEC4"),
        Attribute(SCALE, scales, FLOAT, "VEC3"),
        Attribute(OPACITY, alphas.reshape(-1, 1), FLOAT, "SCALAR"),
        Attribute(SH0, np.ascontiguousarray(splats.sh_dc, f), FLOAT, "VEC3"),
    ]
    attributes += [Attribute(name, np.ascontiguousarray(splats.sh_rest[:, k], f), FLOAT, "VEC3")
                   for k, name in enumerate(rest_semantics(splats.sh_degree))]
    if fallback_colors:
        rgb = srgb_to_linear(np.clip(0.5 + SH_C0 * splats.sh_dc.astype(np.float64), 0.0, 1.0))
        rgba = np.concatenate([rgb, alphas[:, None]], axis=1)
        attributes.append(Attribute("COLOR_0", np.rint(rgba * 255.0).astype(np.uint8), UNSIGNED_BYTE, "VEC4",
                                    normalized=True))
    extras, described = _encode_extras(splats, path)
    return attributes + extras, ({EXTRAS_KEY: described} if described else {})


def _encode_extras(splats: SplatSet, path) -> tuple[list[Attribute], dict]:
    """Extras as float attributes where float32 holds them exactly; the rest dropped with a warning."""
    out, described, dropped = [], {}, []
    for i, (name, values) in enumerate(sorted(splats.extras.items())):
        as_float = values.astype(np.float32)
        with np.errstate(invalid="ignore"):
            exact = values.dtype.kind in "biuf" and np.array_equal(as_float.astype(values.dtype), values,
                                                                   equal_nan=values.dtype.kind == "f")
        if not exact:
            dropped.append(name)
            continue
        semantic = f"{EXTRA_PREFIX}{i}"
        out.append(Attribute(semantic, as_float.reshape(-1, 1), FLOAT, "SCALAR"))
        described[semantic] = {"name": name, "dtype": values.dtype.str.lstrip("<>=|")}
    if dropped:
        warn(path, f"extra properties float32 cannot hold exactly were not written: {', '.join(dropped)}")
    return out, described


def document(splats: SplatSet, name: str = "splats", generator: str = "Splatwork",
             path=None) -> tuple[dict, list[np.ndarray]]:
    """The glTF JSON of a one-node scene holding ``splats`` (glTF axes) and the buffer's arrays in
    order, each to be padded to 4 bytes (the JSON's buffer views already count the padding)."""
    attributes, extras = encode(splats, path)
    views, accessors, arrays, offset = [], [], [], 0
    semantics = {}
    for attr in attributes:
        size = attr.values.nbytes
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": size, "target": ARRAY_BUFFER})
        accessors.append(attr.accessor_json(len(views) - 1))
        semantics[attr.semantic] = len(accessors) - 1
        arrays.append(attr.values)
        offset += size + (-size % 4)
    primitive = {"attributes": semantics, "mode": POINTS, "extensions": {EXTENSION: dict(EXTENSION_OBJECT)}}
    if extras:
        primitive["extras"] = extras
    doc = {
        "asset": {"version": "2.0", "generator": generator},
        "extensionsUsed": [EXTENSION],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [primitive]}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    return doc, arrays


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    """A ``.glb`` (or, for a name ending in ``.gltf``, a JSON file with its buffer embedded)."""
    from .spz import flip_yz

    name = os.path.basename(os.fspath(path)).split(".")[0] or "splats"
    doc, arrays = document(flip_yz(splats), name, path=path)
    if os.fspath(path).lower().endswith(".gltf"):
        blob = b"".join(_padded(a) for a in arrays)
        doc["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode("ascii")
        with atomic_write(path) as f:
            f.write(json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8"))
        return
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    body = doc["buffers"][0]["byteLength"]
    total = GLB_HEADER.size + CHUNK_HEADER.size + len(text) + CHUNK_HEADER.size + body
    with atomic_write(path) as f:
        f.write(GLB_HEADER.pack(GLB_MAGIC, 2, total))
        f.write(CHUNK_HEADER.pack(len(text), CHUNK_JSON))
        f.write(text)
        f.write(CHUNK_HEADER.pack(body, CHUNK_BIN))
        for a in arrays:
            f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
            f.write(b"\0" * (-a.nbytes % 4))


def _padded(a: np.ndarray) -> bytes:
    return a.tobytes() + b"\0" * (-a.nbytes % 4)
