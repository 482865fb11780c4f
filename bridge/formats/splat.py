"""antimatter15 ``.splat``: 32 bytes a splat, no header, no SH bands.

Per splat: position 3 x float32, linear scale 3 x float32, RGBA 4 x uint8 (colour = 0.5 + SH_C0 *
DC, alpha = sigmoid(opacity)), rotation 4 x uint8 (w x y z, normalised, ``q * 128 + 128``).
Same axes as 3DGS PLY.

Lossy. Error bounds of a write-then-read: positions exact; log-scales within 1e-6 relative
(float32 exp/log); SH DC within 0.5/255/SH_C0 (0.007) while the colour is in [0, 1], clipped
outside; alpha within 0.5/255; each unit quaternion component within 0.016 (8-bit steps,
renormalised). SH rest bands and extras are dropped (with a FormatWarning when they hold anything).
"""
from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_write
from .errors import FormatError, warn
from .quantize import logit, sigmoid, to_uint8, unit_quats
from .splatset import SH_C0, SplatSet

ROW = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])


def read(path: str | os.PathLike) -> SplatSet:
    size = os.path.getsize(path)
    if size % ROW.itemsize:
        raise FormatError(path, f"a .splat file is a whole number of 32-byte rows; this one has {size} bytes")
    rows = np.fromfile(path, ROW)
    scale = rows["scale"]
    if (scale <= 0).any():
        bad = int(np.flatnonzero((scale <= 0).any(axis=1))[0])
        raise FormatError(path, f"splat #{bad} has a scale <= 0 (a .splat scale is linear and must be positive)")
    f = np.float32
    rgba = rows["rgba"].astype(np.float64) / 255.0
    with np.errstate(divide="ignore", over="ignore"):
        scales = np.log(scale.astype(np.float64))
    return SplatSet(
        means=np.ascontiguousarray(rows["position"], f),
        scales=scales.astype(f),
        quats=unit_quats(rows["rotation"].astype(np.float64) - 128.0).astype(f),
        opacities=logit(rgba[:, 3]).astype(f),
        sh_dc=((rgba[:, :3] - 0.5) / SH_C0).astype(f),
        sh_rest=np.zeros((len(rows), 0, 3), f),
    )


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    dropped = [name for name in splats.extras]
    if splats.sh_rest.any():
        dropped.insert(0, "SH bands 1-3")
    if dropped:
        warn(path, f".splat stores no SH bands or extra properties; dropped {', '.join(dropped)}")
    rows = np.empty(len(splats), ROW)
    rows["position"] = splats.means
    # .splat stores linear float32 scales: a log-scale past +88.7 would be Inf, one below -87.3 zero or
    # a denormal, and a reader (ours among them) refuses both. Such sizes are 10^38 scene units or
    # 10^-38: kept at the nearest size float32 holds, with a warning.
    low, high = np.log(np.finfo(np.float32).tiny), np.log(np.finfo(np.float32).max)
    scales = splats.scales.astype(np.float64)
    out = (scales < low) | (scales > high)
    if out.any():
        warn(path, f".splat cannot hold the scales of {int(out.any(axis=1).sum()):,} splat(s) (log-scale outside "
                   f"{low:.1f} to {high:.1f}, first #{int(np.flatnonzero(out.any(axis=1))[0])}); they are clamped "
                   "to the nearest float32 size")
        scales = np.clip(scales, low, high)
    rows["scale"] = np.minimum(np.exp(scales), np.finfo(np.float32).max)
    rows["rgba"][:, :3] = to_uint8((0.5 + SH_C0 * splats.sh_dc.astype(np.float64)) * 255.0)
    rows["rgba"][:, 3] = to_uint8(sigmoid(splats.opacities) * 255.0)
    rows["rotation"] = to_uint8(unit_quats(splats.quats) * 128.0 + 128.0)
    with atomic_write(path) as f:
        rows.tofile(f)
