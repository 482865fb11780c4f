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
from .ply_elements import PLY_NAMES, header_bytes, read_elements, warn_trailing
from .quantize import from_smallest_three, logit, sigmoid, smallest_three, unit_quats, unorm
from .splatset import SH_C0, SH_REST_COUNT, SplatSet

CHUNK = 256
CHUNK_BOUNDS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
CHUNK_COLORS = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
ROT_SCALE = np.sqrt(2.0) * 0.5  # non-largest quaternion components lie in [-1/sqrt2, 1/sqrt2]
SH_RANGE = 8.0
# Byte -> value tables: a lookup is much cheaper than the arithmetic per value.
_CODES = np.arange(256, dtype=np.float64)
SH_DECODE = ((np.where(_CODES == 0, 0, np.where(_CODES == 255, 1, (_CODES + 0.5) / 256)) - 0.5) * SH_RANGE
             ).astype(np.float32)
OPACITY_DECODE = logit(_CODES / 255).astype(np.float32)


def read(path: str | os.PathLike) -> SplatSet:
    header, elements = read_elements(path, {"chunk", "vertex", "sh"})
    chunk, vertex, sh = elements.get("chunk"), elements.get("vertex"), elements.get("sh")
    if chunk is None or vertex is None:
        raise FormatError(path, "compressed PLY needs 'chunk' and 'vertex' elements")
    _require(path, "chunk", chunk, CHUNK_BOUNDS)
    _require(path, "vertex", vertex, PACKED, "u4")
    n = len(vertex)
    if len(chunk) != -(-n // CHUNK):
        raise FormatError(
            path, f"wrong count: {n:,} splats need {-(-n // CHUNK):,} chunks, the file has {len(chunk):,}")
    f = np.float32

    def lerp(t: np.ndarray, prefix: str, axes: str) -> np.ndarray:
        """(N, 3) fractions to values between their chunk's min and max (splats padded to whole chunks)."""
        lo = np.stack([chunk[f"min_{prefix}{a}"] for a in axes], axis=1).astype(f)[:, None]
        hi = np.stack([chunk[f"max_{prefix}{a}"] for a in axes], axis=1).astype(f)[:, None]
        padded = np.zeros((len(chunk) * CHUNK, 3), f)
        padded[:n] = t
        padded = padded.reshape(len(chunk), CHUNK, 3)
        return (lo * (1 - padded) + hi * padded).reshape(-1, 3)[:n]

    means = lerp(_unpack_111011(vertex["packed_position"]), "", "xyz")
    scales = lerp(_unpack_111011(vertex["packed_scale"]), "scale_", "xyz")

    rgba = vertex["packed_color"].astype("<u4").view(np.uint8).reshape(n, 4)[:, ::-1]  # bytes r g b a
    color = rgba[:, :3].astype(f) / f(255)
    if all(name in chunk.dtype.names for name in CHUNK_COLORS):
        color = lerp(color, "", "rgb")
    # else: older SuperSplat files store colour in [0, 1] without chunk bounds

    rot = vertex["packed_rotation"].astype(np.uint32)
    others = np.stack([(rot >> s) & 0x3FF for s in (20, 10, 0)], axis=1).astype(f)
    quats = from_smallest_three((rot >> 30).astype(np.intp), (others / f(1023) - f(0.5)) / f(ROT_SCALE))

    rest = np.zeros((n, 0, 3), f)
    if sh is not None:
        if len(sh) != n:
            raise FormatError(path, f"wrong count: {len(sh):,} 'sh' rows for {n:,} splats")
        names = sh.dtype.names
        if len(names) % 3 or len(names) // 3 not in SH_REST_COUNT.values():
            raise FormatError(path, f"'sh' has {len(names)} properties; 9, 24 or 45 expected")
        order = rest_names(len(names) // 3)
        _require(path, "sh", sh, order, "u1")
        codes = np.stack([sh[name] for name in order], axis=1)
        rest = SH_DECODE[codes].reshape(n, -1, 3)

    splats = SplatSet(
        means=means, scales=scales, quats=quats.astype(f),
        opacities=OPACITY_DECODE[rgba[:, 3]],
        sh_dc=((color - f(0.5)) / f(SH_C0)).astype(f), sh_rest=rest,
    )
    warn_trailing(path, header)
    return splats


def _require(path, element: str, rows: np.ndarray, names: list[str], kind: str | None = None) -> None:
    """``names`` are properties of ``element`` (all of numpy type ``kind`` when given: packed bits are)."""
    missing = [n for n in names if n not in rows.dtype.names]
    if missing:
        raise FormatError(path, f"compressed PLY element '{element}' lacks {', '.join(missing)}")
    wrong = [n for n in names if kind is not None and rows.dtype[n].newbyteorder("=") != np.dtype(kind)]
    if wrong:
        found = PLY_NAMES[rows.dtype[wrong[0]].str[1:]]
        raise FormatError(path, f"compressed PLY property '{element}.{wrong[0]}' is {found}, {PLY_NAMES[kind]} wanted")


def _unpack_111011(packed: np.ndarray) -> np.ndarray:
    p = packed.astype(np.uint32)
    bits = np.stack([p >> 21, (p >> 11) & 0x3FF, p & 0x7FF], axis=1).astype(np.float32)
    return bits / np.array([2047, 1023, 2047], np.float32)


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


def _chunk_fractions(values: np.ndarray, n_chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-chunk min and max of (N, 3) float32 values, and each value as a [0, 1] fraction of them.

    The last chunk is padded with its own last row, which leaves its bounds unchanged. Fractions are
    computed against the float32 bounds the file stores, so decoding sees the same numbers.
    """
    n = len(values)
    pad = n_chunks * CHUNK - n
    padded = np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values
    blocks = padded.reshape(n_chunks, CHUNK, 3)
    lo, hi = blocks.min(axis=1), blocks.max(axis=1)
    span = (hi - lo)[:, None]
    t = np.divide(blocks - lo[:, None], span, out=np.zeros_like(blocks), where=span > 0)
    return lo, hi, np.clip(t, 0, 1).reshape(-1, 3)[:n]


def write(path: str | os.PathLike, splats: SplatSet) -> None:
    if splats.extras:
        warn(path, f"compressed PLY cannot store extra properties; dropped {', '.join(splats.extras)}")
    splats = splats.subset(morton_order(splats.means))
    n, k = len(splats), splats.sh_rest.shape[1]
    n_chunks = -(-n // CHUNK)
    f = np.float32
    scales = np.clip(splats.scales, -20, 20)  # as SuperSplat: keeps degenerate splats from widening a chunk
    color = splats.sh_dc * f(SH_C0) + f(0.5)

    chunk_dtype = np.dtype([(name, "<f4") for name in CHUNK_BOUNDS + CHUNK_COLORS])
    chunk = np.empty((n_chunks, len(chunk_dtype.names)), f)
    vertex = np.empty((n, 4), np.uint32)
    for column, values in ((0, splats.means), (6, scales), (12, color)):
        lo, hi, t = _chunk_fractions(values, n_chunks)
        chunk[:, column:column + 3], chunk[:, column + 3:column + 6] = lo, hi
        if column == 12:
            alpha = unorm(sigmoid(splats.opacities), 8)
            vertex[:, 3] = (unorm(t[:, 0], 8) << 24) | (unorm(t[:, 1], 8) << 16) | (unorm(t[:, 2], 8) << 8) | alpha
        else:
            vertex[:, column // 3] = _pack_111011(t)

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
