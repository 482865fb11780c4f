"""PlayCanvas SuperSplat compressed PLY: ``chunk``, ``vertex`` and optional ``sh`` elements.

Splats come in chunks of 256; each chunk stores the min/max of position, log-scale and colour, and
each splat packs its values relative to them in four uint32:
position 11/10/11 bits (x/y/z), rotation as smallest-three (2-bit index + 3 x 10 bits, components
in ``rot_0..rot_3`` = w x y z order), log-scale 11/10/11 bits, colour 8/8/8 bits plus 8-bit alpha.
The ``sh`` element holds each ``f_rest`` (channel-major, as in PLY) as one byte over [-4, 4].

Lossy. Error bounds of a write-then-read, for values inside the representable ranges:
- position: half a step of the chunk's extent, extent/4094 on x and z, extent/2046 on y;
- log-scale: the same fractions of the chunk's log-scale range (clamped to [-20, 20]);
- SH DC: chunk colour range / 510 / SH_C0; alpha: 0.5/255 (opacity logits follow sigmoid's slope);
- rotation: each component within 0.0025 of the normalised input (up to sign: q and -q are one rotation;
  the three stored components within 0.0007, the rebuilt largest one within 0.0021);
- SH rest: 1/64 for values in [-4, 4], clipped outside.
The writer sorts splats in Morton order (as SuperSplat does) so chunks are spatially tight: the
splats come back in that order, see :func:`morton_order`. Extras are not stored.
"""
from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_write
from .errors import FormatError, warn
from .ply import channel_major, rest_names
from .ply_elements import header_bytes, read_elements, warn_trailing
from .quantize import from_smallest_three, logit, sigmoid, smallest_three, unit_quats, unorm
from .splatset import SH_C0, SH_REST_COUNT, SplatSet

CHUNK = 256
CHUNK_BOUNDS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
CHUNK_COLORS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
ROT_SCALE = np.sqrt(2.0) * 0.5  # non-largest quaternion components lie in [-1/sqrt2, 1/sqrt2]
SH_RANGE = 8.0


def read(path: str | os.PathLike) -> SplatSet:
    header, elements = read_elements(path, {"chunk", "vertex", "sh"})
    chunk, vertex, sh = elements.get("chunk"), elements.get("vertex"), elements.get("sh")
    if chunk is None or vertex is None:
        raise FormatError(path, "compressed PLY needs 'chunk' and 'vertex' elements")
    _require(path, "chunk", chunk, CHUNK_BOUNDS)
    _require(path, "vertex", vertex, PACKED)
    n = len(vertex)
    if len(chunk) != -(-n // CHUNK):
        raise FormatError(
            path, f"wrong count: {n:,} splats need {-(-n // CHUNK):,} chunks, the file has {len(chunk):,}")
    # Each splat's chunk bounds, expanded once so every decode below is a plain vector expression.
    bounds = np.repeat(np.stack([chunk[name] for name in chunk.dtype.names], axis=1).astype(np.float64),
                       CHUNK, axis=0)[:n]
    col = {name: i for i, name in enumerate(chunk.dtype.names)}

    def lerp(lo: str, hi: str, t):
        a, b = bounds[:, col[lo]], bounds[:, col[hi]]
        return a * (1.0 - t) + b * t

    pos = _unpack_111011(vertex["packed_position"])
    means = np.stack([lerp(f"min_{a}", f"max_{a}", pos[:, i]) for i, a in enumerate("xyz")], axis=1)
    sca = _unpack_111011(vertex["packed_scale"])
    scales = np.stack([lerp(f"min_scale_{a}", f"max_scale_{a}", sca[:, i]) for i, a in enumerate("xyz")], axis=1)

    packed = vertex["packed_color"].astype(np.uint32)
    rgba = np.stack([(packed >> s) & 0xFF for s in (24, 16, 8, 0)], axis=1) / 255.0
    if all(name in col for name in CHUNK_COLORS):
        color = np.stack([lerp(f"min_{c}", f"max_{c}", rgba[:, i]) for i, c in enumerate("rgb")], axis=1)
    else:  # older SuperSplat files store colour in [0, 1] without chunk bounds
        color = rgba[:, :3]

    rot = vertex["packed_rotation"].astype(np.uint32)
    others = np.stack([((rot >> s) & 0x3FF) / 1023.0 for s in (20, 10, 0)], axis=1)
    quats = from_smallest_three((rot >> 30).astype(np.intp), (others - 0.5) / ROT_SCALE)

    k = 0
    rest = np.zeros((n, 0, 3), np.float32)
    if sh is not None:
        if len(sh) != n:
            raise FormatError(path, f"wrong count: {len(sh):,} 'sh' rows for {n:,} splats")
        names = sh.dtype.names
        if len(names) % 3 or len(names) // 3 not in SH_REST_COUNT.values():
            raise FormatError(path, f"'sh' has {len(names)} properties; 9, 24 or 45 expected")
        k = len(names) // 3
        order = rest_names(k)
        _require(path, "sh", sh, order)
        raw = np.stack([sh[name] for name in order], axis=1).astype(np.float64)
        unit = np.where(raw == 0, 0.0, np.where(raw == 255, 1.0, (raw + 0.5) / 256.0))
        rest = ((unit - 0.5) * SH_RANGE).reshape(n, k, 3)

    f = np.float32
    splats = SplatSet(
        means=means.astype(f), scales=scales.astype(f), quats=quats.astype(f),
        opacities=logit(rgba[:, 3]).astype(f), sh_dc=((color - 0.5) / SH_C0).astype(f),
        sh_rest=np.ascontiguousarray(rest, f),
    )
    warn_trailing(path, header)
    return splats


def _require(path, element: str, rows: np.ndarray, names: list[str]) -> None:
    missing = [n for n in names if n not in rows.dtype.names]
    if missing:
        raise FormatError(path, f"compressed PLY element '{element}' lacks {', '.join(missing)}")


def _unpack_111011(packed: np.ndarray) -> np.ndarray:
    p = packed.astype(np.uint32)
    return np.stack([(p >> 21) / 2047.0, ((p >> 11) & 0x3FF) / 1023.0, (p & 0x7FF) / 2047.0], axis=1)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    return (unorm(t[:, 0], 11) << 21) | (unorm(t[:, 1], 10) << 11) | unorm(t[:, 2], 11)


def morton_order(means: np.ndarray) -> np.ndarray:
    """The permutation that sorts splats along a 30-bit Morton (Z-order) curve over their bounds."""
    lo, hi = means.min(axis=0), means.max(axis=0)
    cells = ((means - lo) / np.where(hi > lo, hi - lo, 1.0) * 1023).astype(np.uint64)
    code = np.zeros(len(means), np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


def _chunk_minmax(values: np.ndarray, n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk min and max of (N, C) values; the last chunk is padded with its own last row."""
    pad = n_chunks * CHUNK - len(values)
    padded = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values
    blocks = padded.reshape(n_chunks, CHUNK, -1)
    return blocks.min(axis=1), blocks.max(axis=1)


def _normalise(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Values as [0, 1] fractions of their chunk's range (0 where the range is empty)."""
    lo, hi = np.repeat(lo, CHUNK, axis=0)[:len(values)], np.repeat(hi, CHUNK, axis=0)[:len(values)]
    span = hi - lo
    return np.clip(np.divide(values - lo, span, out=np.zeros_like(values), where=span > 0), 0.0, 1.0)


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    if splats.extras:
        warn(path, f"compressed PLY cannot store extra properties; dropped {', '.join(splats.extras)}")
    splats = splats.subset(morton_order(splats.means))
    n, k = len(splats), splats.sh_rest.shape[1]
    n_chunks = -(-n // CHUNK)
    means = splats.means.astype(np.float64)
    scales = np.clip(splats.scales.astype(np.float64), -20.0, 20.0)
    color = splats.sh_dc.astype(np.float64) * SH_C0 + 0.5

    chunk_dtype = np.dtype([(name, "<f4") for name in CHUNK_BOUNDS + CHUNK_COLORS])
    chunk = np.empty((n_chunks, len(chunk_dtype.names)), np.float32)
    vertex = np.empty((n, 4), np.uint32)
    for column, values, packer in ((0, means, 0), (6, scales, 2), (12, color, 3)):
        lo, hi = _chunk_minmax(values, n_chunks)
        chunk[:, column:column + 3], chunk[:, column + 3:column + 6] = lo, hi
        # Quantise against the float32 bounds the file stores, not the float64 ones computed here.
        t = _normalise(values, lo.astype(np.float32).astype(np.float64), hi.astype(np.float32).astype(np.float64))
        if packer == 3:
            alpha = unorm(sigmoid(splats.opacities), 8)
            vertex[:, 3] = (unorm(t[:, 0], 8) << 24) | (unorm(t[:, 1], 8) << 16) | (unorm(t[:, 2], 8) << 8) | alpha
        else:
            vertex[:, packer] = _pack_111011(t)

    largest, others = smallest_three(unit_quats(splats.quats))
    o = unorm(others * ROT_SCALE + 0.5, 10)
    vertex[:, 1] = (largest.astype(np.uint32) << 30) | (o[:, 0] << 20) | (o[:, 1] << 10) | o[:, 2]

    elements = [("chunk", n_chunks, chunk_dtype), ("vertex", n, np.dtype([(p, "<u4") for p in PACKED]))]
    blocks = [chunk.astype("<f4").tobytes(), vertex.astype("<u4").tobytes()]
    if k:
        sh_dtype = np.dtype([(f"f_rest_{i}", "u1") for i in range(3 * k)])
        # (v / 8 + 0.5) * 256, truncated; clipping first keeps the float32 products exact.
        scaled = np.clip(splats.sh_rest, -SH_RANGE / 2, SH_RANGE / 2) * np.float32(256 / SH_RANGE) + np.float32(128)
        quantised = np.minimum(scaled, 255).astype(np.uint8)
        elements.append(("sh", n, sh_dtype))
        blocks.append(channel_major(quantised).tobytes())  # f_rest order as in standard PLY
    with atomic_write(path) as f:
        f.write(header_bytes(elements, ["Generated by Splatwork"]))
        for block in blocks:
            f.write(block)
