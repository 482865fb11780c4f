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


def channel_major(rest: np.ndarray) -> np.ndarray:
    """(N, K, 3) SH rest values as (N, 3K) rows in the file's f_rest order, in one take()."""
    n, k = rest.shape[:2]
    return np.take(rest.reshape(n, 3 * k), [i * 3 + c for c in range(3) for i in range(k)], axis=1)


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

    core_names = {n for props in CORE.values() for n in props} | set(rest)
    table = _as_table(vertex)
    arrays = {group: _gather(table, vertex, list(props)) for group, props in CORE.items()}
    # Gathering the f_rest columns in SplatSet order (rest_names) transposes the file's channel-major
    # layout in the same pass.
    sh_rest = _gather(table, vertex, rest).reshape(len(vertex), k, 3)
    kept = {}
    for name in names:
        if name in core_names:
            continue
        values = vertex[name]
        # 3DGS trainers write all-zero normals; dropping them keeps a PLY -> SplatSet -> PLY trip exact.
        if name in NORMALS and not values.any():
            continue
        kept[name] = np.array(values, values.dtype.newbyteorder("="))  # a copy: ``vertex`` may map the file
    return SplatSet(
        means=arrays["means"],
        scales=arrays["scales"],
        quats=arrays["quats"],
        opacities=arrays["opacities"][:, 0].copy(),
        sh_dc=arrays["sh_dc"],
        sh_rest=sh_rest,
        extras=kept,
    )


def _as_table(rows: np.ndarray) -> np.ndarray | None:
    """The rows as a plain (N, properties) array when every property has one type, else None.

    Reading whole rows and slicing column ranges out of this view is several times faster than
    going field by field, which strides through the data once per property.
    """
    kinds = {rows.dtype.fields[n][0] for n in rows.dtype.names}
    kind = next(iter(kinds))
    if len(kinds) != 1 or rows.dtype.itemsize != len(rows.dtype.names) * kind.itemsize:
        return None
    return rows.view(kind).reshape(len(rows), len(rows.dtype.names))


def _gather(table: np.ndarray | None, rows: np.ndarray, names: list[str]) -> np.ndarray:
    """The named properties as one C-contiguous (N, len(names)) float32 array."""
    if table is None or not names:
        out = np.empty((len(rows), len(names)), np.float32)
        for i, name in enumerate(names):
            out[:, i] = rows[name]
        return out
    index = [rows.dtype.names.index(n) for n in names]
    if index == list(range(index[0], index[0] + len(index))):
        block = table[:, index[0]:index[0] + len(index)]
    else:
        block = np.take(table, index, axis=1)  # several times faster than table[:, index] here
    return np.array(block, np.float32, order="C")  # always a copy: ``rows`` may be a file map


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    n, k = len(splats), splats.sh_rest.shape[1]
    floats = [*CORE["means"], *NORMALS, *CORE["sh_dc"], *(f"f_rest_{i}" for i in range(3 * k)),
              *CORE["opacities"], *CORE["scales"], *CORE["quats"]]
    others = [name for name in splats.extras if name not in NORMALS]
    fields = [(name, "<f4") for name in floats]
    fields += [(name, "<" + ply_type_for(path, name, splats.extras[name])) for name in others]
    dtype = np.dtype(fields)

    normals = [splats.extras.get(name, np.zeros(n, np.float32))[:, None] for name in NORMALS]
    block = np.concatenate(
        [splats.means, *normals, splats.sh_dc, channel_major(splats.sh_rest), splats.opacities[:, None], splats.scales,
         splats.quats], axis=1, dtype="<f4")
    data = block
    if others:
        data = np.empty(n, dtype)
        # The float columns lead every row: copy them as bytes in one pass, then each extra field.
        data.view(np.uint8).reshape(n, dtype.itemsize)[:, :block.shape[1] * 4] = block.view(np.uint8)
        for name in others:
            data[name] = splats.extras[name]
    with atomic_write(path) as f:
        f.write(header_bytes([("vertex", n, dtype)]))
        data.tofile(f)
