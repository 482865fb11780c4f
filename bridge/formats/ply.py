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
from .ply_elements import header_bytes, iter_rows, open_ply, ply_type_for, warn_trailing
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
    header = open_ply(path)
    element = header.element("vertex")
    if element is None:
        raise FormatError(path, "PLY file has no 'vertex' element")
    dtype = element.dtype(header.byte_order or "=")
    groups, extras = _layout(path, dtype.names)
    n = element.count
    outs = {group: np.empty((n, len(props)), np.float32) for group, props in groups.items()}
    extra_outs = {name: np.empty(n, dtype[name].newbyteorder("=")) for name in extras}
    plan = None
    for start, rows in iter_rows(path, header, element):
        table = _as_table(rows)
        if plan is None:
            plan = {group: _columns(rows.dtype.names, props) for group, props in groups.items()}
        end = start + len(rows)
        for group, props in groups.items():
            _gather(table, rows, props, plan[group], outs[group][start:end])
        for name, out in extra_outs.items():
            out[start:end] = rows[name]
    # 3DGS trainers write all-zero normals; dropping them keeps a PLY -> SplatSet -> PLY trip exact.
    kept = {name: v for name, v in extra_outs.items() if name not in NORMALS or v.any()}
    warn_trailing(path, header)
    return SplatSet(
        means=outs["means"], scales=outs["scales"], quats=outs["quats"], opacities=outs["opacities"].reshape(n),
        sh_dc=outs["sh_dc"], sh_rest=outs["sh_rest"].reshape(n, len(groups["sh_rest"]) // 3, 3), extras=kept,
    )


def _layout(path, names: tuple[str, ...]) -> tuple[dict[str, list[str]], list[str]]:
    """Which properties make each SplatSet array (f_rest in SplatSet order), and the extras."""
    missing = [n for group in CORE.values() for n in group if n not in names]
    if missing:
        raise FormatError(path, f"not a Gaussian splat PLY: missing properties {', '.join(missing)}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or n_rest // 3 not in SH_REST_COUNT.values():
        raise FormatError(path, f"{n_rest} f_rest properties match no SH degree (0, 9, 24 or 45 expected)")
    rest = rest_names(n_rest // 3)
    absent = [n for n in rest if n not in names]
    if absent:
        raise FormatError(path, f"f_rest properties are not numbered 0..{n_rest - 1}: {absent[0]} is missing")
    # Gathering f_rest in SplatSet order transposes the file's channel-major layout in the same pass.
    groups = {group: list(props) for group, props in CORE.items()} | {"sh_rest": rest}
    used = {n for props in groups.values() for n in props}
    return groups, [n for n in names if n not in used]


def _as_table(rows: np.ndarray) -> np.ndarray | None:
    """The rows as a plain (N, properties) array when every property has one type, else None.

    Slicing column ranges out of this view is several times faster than going field by field,
    which strides through the data once per property.
    """
    kinds = {rows.dtype.fields[n][0] for n in rows.dtype.names}
    kind = next(iter(kinds))
    if len(kinds) != 1 or rows.dtype.itemsize != len(rows.dtype.names) * kind.itemsize:
        return None
    return rows.view(kind).reshape(len(rows), len(rows.dtype.names))


def _columns(names: tuple[str, ...], props: list[str]) -> slice | list[int]:
    """The table columns of ``props``: a slice when they are adjacent and in order."""
    index = [names.index(p) for p in props]
    if index and index == list(range(index[0], index[0] + len(index))):
        return slice(index[0], index[0] + len(index))
    return index


def _gather(table, rows: np.ndarray, props: list[str], columns, out: np.ndarray) -> None:
    """Copy the named properties of ``rows`` into the (rows, len(props)) float32 ``out``."""
    if table is None:
        for i, name in enumerate(props):
            out[:, i] = rows[name]
    elif isinstance(columns, slice):
        out[...] = table[:, columns]
    elif table.dtype == np.float32:
        np.take(table, columns, axis=1, out=out)  # several times faster than table[:, columns]
    else:
        out[...] = np.take(table, columns, axis=1)


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    n, k = len(splats), splats.sh_rest.shape[1]
    floats = [*CORE["means"], *NORMALS, *CORE["sh_dc"], *(f"f_rest_{i}" for i in range(3 * k)),
              *CORE["opacities"], *CORE["scales"], *CORE["quats"]]
    others = [name for name in splats.extras if name not in NORMALS]
    clash = [name for name in others
             if name in floats or not name.isascii() or not name or any(c.isspace() for c in name)]
    if clash:
        raise FormatError(path, f"extra property '{clash[0]}' clashes with a splat property or is not a valid name")
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
