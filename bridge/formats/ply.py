"""Standard 3DGS PLY (Inria, gsplat, nerfstudio): one ``vertex`` element, one property per value.

Read: binary little or big endian, float or double, ASCII; with or without ``nx ny nz``; SH degree
0-3 from the number of ``f_rest_*`` properties. ``f_rest`` is channel-major: ``f_rest_{c*K+k}`` is
coefficient ``k`` of channel ``c``. Properties this format does not define are kept in
``SplatSet.extras`` and written back, so float32 files round-trip bit-exactly (values are kept as
stored: quaternions are not normalised, as trainers write them). Doubles are read into float32.

Write: binary little endian float32 in the Inria property order, always with ``nx ny nz`` (zeros
unless the splat set carries them as extras) because some viewers read the rows as a fixed struct.
"""
from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_write
from .errors import FormatError
from .ply_elements import header_bytes, ply_type_for, read_elements, warn_trailing
from .splatset import SH_REST_COUNT, SplatSet

CORE = {
    "means": ("x", "y", "z"),
    "sh_dc": ("f_dc_0", "f_dc_1", "f_dc_2"),
    "opacities": ("opacity",),
    "scales": ("scale_0", "scale_1", "scale_2"),
    "quats": ("rot_0", "rot_1", "rot_2", "rot_3"),
}
NORMALS = ("nx", "ny", "nz")


def rest_names(k: int) -> list[str]:
    """f_rest property names in SplatSet order (coefficient-major, then RGB) for K coefficients."""
    return [f"f_rest_{c * k + i}" for i in range(k) for c in range(3)]


def read(path: str | os.PathLike) -> SplatSet:
    header, arrays = read_elements(path, {"vertex"})
    if "vertex" not in arrays:
        raise FormatError(path, "PLY file has no 'vertex' element")
    splats = splats_from_vertices(path, arrays["vertex"])
    warn_trailing(path, header)
    return splats


def splats_from_vertices(path, vertex: np.ndarray) -> SplatSet:
    names = vertex.dtype.names
    missing = [n for group in CORE.values() for n in group if n not in names]
    if missing:
        raise FormatError(path, f"not a Gaussian splat PLY: missing properties {', '.join(missing)}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or n_rest // 3 not in SH_REST_COUNT.values():
        raise FormatError(path, f"{n_rest} f_rest properties match no SH degree (0, 9, 24 or 45 expected)")
    k = n_rest // 3
    rest = rest_names(k)
    absent = [n for n in rest if n not in names]
    if absent:
        raise FormatError(path, f"f_rest properties are not numbered 0..{n_rest - 1}: {absent[0]} is missing")

    wanted = {group: list(props) for group, props in CORE.items()}
    wanted["sh_rest"] = rest
    core_names = {n for props in wanted.values() for n in props}
    extras = [n for n in names if n not in core_names]
    columns = _columns(vertex, [n for props in wanted.values() for n in props])
    arrays, start = {}, 0
    for group, props in wanted.items():
        arrays[group] = columns[:, start:start + len(props)]
        start += len(props)
    n = len(vertex)
    kept = {}
    for name in extras:
        values = vertex[name]
        # 3DGS trainers write all-zero normals; dropping them keeps a PLY -> SplatSet -> PLY trip exact.
        if name in NORMALS and not values.any():
            continue
        kept[name] = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
    return SplatSet(
        means=np.ascontiguousarray(arrays["means"]),
        scales=np.ascontiguousarray(arrays["scales"]),
        quats=np.ascontiguousarray(arrays["quats"]),
        opacities=np.ascontiguousarray(arrays["opacities"][:, 0]),
        sh_dc=np.ascontiguousarray(arrays["sh_dc"]),
        sh_rest=np.ascontiguousarray(arrays["sh_rest"]).reshape(n, k, 3),
        extras=kept,
    )


def _columns(rows: np.ndarray, names: list[str]) -> np.ndarray:
    """The named fields of a structured array as one (N, len(names)) float32 array.

    When every field shares one type (the usual case) the rows are viewed as a plain 2-D array and
    gathered in one pass; going field by field would stride through the file once per property.
    """
    kinds = {rows.dtype.fields[n][0] for n in rows.dtype.names}
    if len(kinds) == 1 and rows.dtype.itemsize == len(rows.dtype.names) * next(iter(kinds)).itemsize:
        kind = next(iter(kinds))
        flat = rows.view(kind).reshape(len(rows), len(rows.dtype.names))
        index = [rows.dtype.names.index(n) for n in names]
        return flat[:, index].astype(np.float32, copy=False)
    out = np.empty((len(rows), len(names)), np.float32)
    for i, name in enumerate(names):
        out[:, i] = rows[name]
    return out


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    n, k = len(splats), splats.sh_rest.shape[1]
    floats = [*CORE["means"], *NORMALS, *CORE["sh_dc"], *(f"f_rest_{i}" for i in range(3 * k)),
              *CORE["opacities"], *CORE["scales"], *CORE["quats"]]
    others = [name for name in splats.extras if name not in NORMALS]
    fields = [(name, "<f4") for name in floats]
    fields += [(name, "<" + ply_type_for(path, name, splats.extras[name])) for name in others]
    dtype = np.dtype(fields)

    block = np.empty((n, len(floats)), np.float32)
    block[:, 0:3] = splats.means
    for i, name in enumerate(NORMALS):
        block[:, 3 + i] = splats.extras.get(name, 0.0)
    block[:, 6:9] = splats.sh_dc
    # SplatSet is (N, K, 3); the file wants channel-major f_rest_{c*K+k}.
    block[:, 9:9 + 3 * k] = splats.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k)
    tail = 9 + 3 * k
    block[:, tail] = splats.opacities
    block[:, tail + 1:tail + 4] = splats.scales
    block[:, tail + 4:tail + 8] = splats.quats
    data = block.astype("<f4", copy=False)
    if others:
        rows = np.empty(n, dtype)
        for i, name in enumerate(floats):
            rows[name] = block[:, i]
        for name in others:
            rows[name] = splats.extras[name]
        data = rows
    with atomic_write(path) as f:
        f.write(header_bytes([("vertex", n, dtype)]))
        data.tofile(f)
