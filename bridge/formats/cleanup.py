"""Which splats to clean up: the selection math of the cleanup tools, numpy only.

Every function takes plain arrays (positions, linear scales, opacities in [0, 1], camera matrices)
and returns a boolean mask of the splats it selects; none of them changes its input. The add-on's
operators (``addon/splats/cleanup.py``) read the arrays from a splat object and write the mask to
its selection; ``blender --command splatwork --cleanup`` runs the same functions, and so can any
script, inside Blender or not (nothing here imports bpy, which is why it lives beside the other
numpy-only splat code that both sides share).

Selections:

* :func:`below_opacity`: fainter than a threshold;
* :func:`largest`: the largest N % of a value (scale, distance), or :func:`above` a size;
* :func:`far_from` a centre, :func:`outside_box` (the crop box's unit cube);
* :func:`unseen`: in no training camera's view (outside every frustum, or behind every camera);
* :func:`isolated`: statistical outlier removal, the mean distance to the k nearest neighbours
  above mean + s * sd over all splats (see :func:`isolated` for how the neighbours are found
  without SciPy).

Bad thresholds raise :class:`CleanupError` (a ValueError) naming the setting and its range.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODES = ("REPLACE", "EXTEND", "SUBTRACT", "INTERSECT")
MAX_NEIGHBOURS = 64
DEFAULT_NEIGHBOURS = 10


class CleanupError(ValueError):
    """A cleanup setting out of range or input the cleanup cannot work on; the message says which."""


def _check_range(name: str, value: float, low: float, high: float, low_open: bool = False,
                 high_open: bool = False) -> float:
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        lo = f"{'(' if low_open else '['}{low:g}"
        hi = f"{high:g}{')' if high_open else ']'}" if math.isfinite(high) else "inf)"
        raise CleanupError(f"{name} must be a number in {lo}, {hi}, got {value:g}")
    return value


def combine(current: np.ndarray | None, new: np.ndarray, mode: str = "REPLACE") -> np.ndarray:
    """The selection after ``new`` is applied to ``current`` (None: nothing selected yet) in ``mode``:
    REPLACE, EXTEND (union), SUBTRACT or INTERSECT."""
    if mode not in MODES:
        raise CleanupError(f"selection mode must be one of {', '.join(MODES)}, got {mode!r}")
    new = np.asarray(new, bool)
    if mode == "REPLACE" or current is None and mode == "EXTEND":
        return new.copy()
    if current is None:  # subtracting from or intersecting with nothing leaves nothing
        return np.zeros_like(new)
    if len(current) != len(new):
        raise CleanupError(f"the selection has {len(current)} entries, the splats {len(new)}")
    if mode == "EXTEND":
        return current | new
    if mode == "SUBTRACT":
        return current & ~new
    return current & new


def below_opacity(alpha: np.ndarray, threshold: float) -> np.ndarray:
    """Splats whose opacity (alpha in [0, 1], after the sigmoid) is below ``threshold``."""
    threshold = _check_range("opacity threshold", threshold, 0.0, 1.0)
    return np.asarray(alpha) < np.float32(threshold)


def largest(values: np.ndarray, percent: float) -> np.ndarray:
    """Exactly round(N * percent / 100) splats with the largest ``values`` (ties broken by order)."""
    percent = _check_range("percentage", percent, 0.0, 100.0)
    values = np.asarray(values)
    count = int(round(len(values) * percent / 100.0))
    mask = np.zeros(len(values), bool)
    if count >= len(values):
        mask[:] = True
    elif count > 0:
        mask[np.argpartition(values, len(values) - count)[len(values) - count:]] = True
    return mask


def above(values: np.ndarray, limit: float, name: str = "size") -> np.ndarray:
    """Splats whose value is above ``limit`` (a size or a distance, >= 0)."""
    limit = _check_range(name, limit, 0.0, math.inf)
    return np.asarray(values) > limit


def splat_size(scales: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """A splat's size: its largest linear scale (one standard deviation), times ``factor`` (the
    object's own scale), as float32."""
    size = np.max(np.asarray(scales, np.float32), axis=1)
    if factor != 1.0:
        size *= np.float32(factor)
    return size


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (N, 3) through the 4x4 affine ``matrix``, as float32 (a new array)."""
    m = np.asarray(matrix, np.float64)
    out = np.asarray(points, np.float32) @ m[:3, :3].T.astype(np.float32)
    out += m[:3, 3].astype(np.float32)
    return out


def distance_from(points: np.ndarray, centre) -> np.ndarray:
    """Euclidean distance of each point from ``centre`` (float32)."""
    d = np.asarray(points, np.float32) - np.asarray(centre, np.float32)
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def far_from(points: np.ndarray, centre, radius: float) -> np.ndarray:
    """Splats farther than ``radius`` from ``centre``."""
    return above(distance_from(points, centre), radius, "radius")


def robust_centre(points: np.ndarray) -> np.ndarray:
    """The per-axis median of the points: where the scene is, whatever floats far away."""
    if not len(points):
        raise CleanupError("there are no splats to find the centre of")
    return np.median(np.asarray(points, np.float32), axis=0)


def outside_box(points: np.ndarray, to_box: np.ndarray) -> np.ndarray:
    """Splats outside the box whose unit cube [-1, 1]^3 ``to_box`` (4x4) maps the points into, as
    the Splat Controls' Crop Box keeps them."""
    local = transform_points(to_box, points)
    np.abs(local, out=local)
    return np.max(local, axis=1) > 1.0


@dataclass
class View:
    """A camera's view for :func:`unseen`: COLMAP conventions (x_cam = R x + t, +z forward,
    pixel (0, 0) the top-left corner), pinhole intrinsics and the image size in pixels."""

    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int

    def centre(self) -> np.ndarray:
        m = np.asarray(self.world_to_camera, np.float64)
        return -m[:3, :3].T @ m[:3, 3]


UNSEEN_MODES = ("FRUSTUM", "BEHIND")


def unseen(points: np.ndarray, views: Sequence[View], mode: str = "FRUSTUM", margin: float = 0.0) -> np.ndarray:
    """Splats no camera sees: outside every view's frustum (``FRUSTUM``; ``margin`` widens each
    image by that fraction of its size on every side) or behind every camera (``BEHIND``).

    Points a camera sees are dropped before the next camera is tried, and the cameras are tried in
    an order that spreads them out (each the farthest from those before), so the work shrinks fast
    in a real capture; only the splats no camera sees are tested against every camera.
    """
    if mode not in UNSEEN_MODES:
        raise CleanupError(f"camera mode must be one of {', '.join(UNSEEN_MODES)}, got {mode!r}")
    margin = _check_range("margin", margin, 0.0, 10.0)
    if not views:
        raise CleanupError("there are no training cameras to test the splats against")
    points = np.asarray(points, np.float32)
    remaining = np.arange(len(points))
    left = points
    for view in _spread_out(views):
        if not len(remaining):
            break
        m = np.asarray(view.world_to_camera, np.float64)
        cam = left @ m[:3, :3].T.astype(np.float32)
        cam += m[:3, 3].astype(np.float32)
        z = cam[:, 2]
        seen = z > 0
        if mode == "FRUSTUM":
            K = np.asarray(view.K, np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv_z = np.float32(1.0) / z
                u = (cam[:, 0] * np.float32(K[0, 0]) + cam[:, 1] * np.float32(K[0, 1])) * inv_z + np.float32(K[0, 2])
                v = cam[:, 1] * np.float32(K[1, 1]) * inv_z + np.float32(K[1, 2])
            mw, mh = margin * view.width, margin * view.height
            seen &= (u >= -mw) & (u <= view.width + mw) & (v >= -mh) & (v <= view.height + mh)
        keep = ~seen
        remaining = remaining[keep]
        left = left[keep]
    mask = np.zeros(len(points), bool)
    mask[remaining] = True
    return mask


def _spread_out(views: Sequence[View]) -> list[View]:
    """The views in farthest-point order of their camera centres (the first one first)."""
    views = list(views)
    if len(views) <= 2:
        return views
    centres = np.array([v.centre() for v in views])
    order = [0]
    dist = np.linalg.norm(centres - centres[0], axis=1)
    for _ in range(len(views) - 1):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0 and nxt in order:
            nxt = next(i for i in range(len(views)) if i not in order)
        order.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(centres - centres[nxt], axis=1))
        dist[order] = -1.0
    return [views[i] for i in order]


# --- isolated splats: statistical outlier removal without SciPy -------------------------------------------

# Shifts of the space-filling curve along the diagonal, in halves of its grid (Chan's shifted
# quadtrees: a near neighbour that one curve puts far away, another puts close).
_SHIFTS = ((0.0, 0.0, 0.0), (1 / 3, 1 / 3, 1 / 3), (2 / 3, 2 / 3, 2 / 3))
_STATS_SAMPLE = 65536  # splats whose distances are refined for the mean and sd
_CHUNK = 1 << 14
_MIN_WINDOW = 16


def _spread_lut() -> np.ndarray:
    v = np.arange(256, dtype=np.uint64)
    out = np.zeros(256, np.uint64)
    for bit in range(8):
        out |= ((v >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit)
    return out


_SPREAD = _spread_lut()


def _curve_order(points: np.ndarray, low: np.ndarray, high: np.ndarray, shift) -> np.ndarray:
    """The points' order along a Morton (Z-order) curve over [low, high] shifted by ``shift``.

    The point's index is packed under its curve code in one uint64, so a plain sort (several times
    faster than argsort) gives the order; the code gets the bits the index leaves (14 a axis for 3M
    points). Points outside the box clamp to its faces.
    """
    n = len(points)
    index_bits = max(1, (n - 1).bit_length())
    bits = (64 - index_bits) // 3
    half = (1 << bits) // 2
    scale = (half - 1) / np.maximum(high - low, 1e-30)
    key = np.arange(n, dtype=np.uint64)
    for axis in range(3):
        q = (points[:, axis] - np.float32(low[axis])) * np.float32(scale[axis]) + np.float32(shift[axis] * half)
        q = np.clip(q, 0, (1 << bits) - 1).astype(np.uint32)
        for byte in range(0, bits, 8):
            key |= _SPREAD[(q >> byte) & 255] << np.uint64(3 * byte + axis + index_bits)
    key.sort()
    key &= np.uint64((1 << index_bits) - 1)
    return key.astype(np.int32)


def _curves(points: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The points' order along each shifted curve, and each point's rank in it (int32)."""
    n = len(points)
    if n >= 2**31:
        raise CleanupError(f"{n:,} splats are more than the neighbour search handles (2^31)")
    some = points[:: max(1, n // 200_000)]  # the box from a sample: as good, much cheaper
    low = np.percentile(some, 0.5, axis=0)
    high = np.percentile(some, 99.5, axis=0)
    orders, ranks = [], []
    for shift in _SHIFTS:
        order = _curve_order(points, low, high, shift)
        rank = np.empty(n, np.int32)
        rank[order] = np.arange(n, dtype=np.int32)
        orders.append(order)
        ranks.append(rank)
    return orders, ranks


def _window_pass(points: np.ndarray, order: np.ndarray, k: int, w: int, chunk: int = 1 << 16) -> np.ndarray:
    """(N, k) squared distances from each point to its k nearest among the ``w`` points before and
    after it along the curve, sorted ascending (inf where fewer exist), in the points' own order.

    The k best are kept by insertion, a column at a time over a block of points (2k minimum/maximum
    passes a candidate, all in cache), which is several times faster than sorting each point's
    candidates in numpy 1.x and no slower in 2.x."""
    n = len(points)
    best = np.empty((n, k), np.float32)
    sp = points[order]
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        m = b - a
        pa, pb = max(a - w, 0), min(b + w, n)
        block = sp[pa:pb]
        top = [np.full(m, np.inf, np.float32) for _ in range(k)]
        spare = np.empty(m, np.float32)
        cand = np.empty(m, np.float32)
        for s in range(1, w + 1):
            if s >= len(block):
                break
            diff = block[s:] - block[:-s]
            d2 = np.einsum("ij,ij->i", diff, diff)  # pair (pa + t, pa + t + s)
            ahead = min(b, pb - s) - a
            first = max(a, pa + s)
            for lo, hi, src in ((0, ahead, a - pa), (first - a, m, first - s - pa)):
                cand.fill(np.inf)
                cand[lo:hi] = d2[src:src + hi - lo]
                for j in range(k):  # insert: top stays sorted, the largest falls off the end
                    np.minimum(top[j], cand, out=spare)
                    np.maximum(top[j], cand, out=cand)
                    top[j], spare = spare, top[j]
        best[order[a:b]] = np.stack(top, axis=1)
    return best


def _refine(points, rows, best, orders, ranks, o, w) -> None:
    """Merge the candidates ordering ``o`` gives the points ``rows`` into their ``best`` lists;
    pairs an earlier ordering already offered (within ``w`` there) are left out."""
    n, k = len(points), best.shape[1]
    order, rank = orders[o], ranks[o]
    offsets = np.concatenate([np.arange(1, w + 1), -np.arange(1, w + 1)]).astype(np.int64)
    for a in range(0, len(rows), _CHUNK):
        q = rows[a:a + _CHUNK]
        at = rank[q].astype(np.int64)[:, None] + offsets  # (m, 2w) ranks of the candidates
        ok = (at >= 0) & (at < n)
        np.clip(at, 0, n - 1, out=at)
        j = order[at]
        diff = points[j] - points[q][:, None, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        for p in range(o):
            ok &= np.abs(ranks[p][j] - ranks[p][q][:, None]) > w
        d2[~ok] = np.inf
        merged = np.concatenate([best[q], d2], axis=1)
        merged.sort(axis=1)
        best[q] = merged[:, :k]


def _mean_distance(best: np.ndarray) -> np.ndarray:
    out = np.zeros(len(best), np.float64)
    for j in range(best.shape[1]):
        out += np.sqrt(best[:, j], dtype=np.float64)
    return out / best.shape[1]


@dataclass
class OutlierStats:
    """What :func:`isolated` measured: the mean and sd of the mean neighbour distance (over a
    sample of ``sampled`` splats), the threshold it gave and the neighbour count used."""

    mean: float
    sd: float
    threshold: float
    neighbours: int
    sampled: int


def isolated(points: np.ndarray, std_ratio: float, neighbours: int = DEFAULT_NEIGHBOURS,
             window: int | None = None, seed: int = 0) -> tuple[np.ndarray, OutlierStats]:
    """Statistical outlier removal: splats whose mean distance to their ``neighbours`` nearest
    splats is above mean + ``std_ratio`` * sd of that distance over all splats.

    The neighbours are found without SciPy along three Morton (Z-order) curves through the splats,
    shifted along the diagonal: each splat's candidates are the ``window`` splats (default
    the larger of 16 and ``neighbours``) before and after it on each curve, pairs met on an earlier curve not counted
    twice. A true neighbour that no curve brings that close is missed and a farther splat stands
    in, so a distance is never below the true one; on real scenes the median splat's is exact and
    95 % are within a few per cent. For speed the first curve gives every splat its distance; the mean and sd are
    those of a random sample of 65,536 splats (fixed seed) refined with all three curves, and only
    the splats the first curve puts above the threshold are refined before the decision (the
    refinement only lowers a distance, so no other splat can cross it).
    """
    std_ratio = _check_range("outlier sd ratio", std_ratio, 0.0, 100.0)
    k = int(_check_range("neighbour count", neighbours, 1, MAX_NEIGHBOURS))
    points = np.ascontiguousarray(points, np.float32)
    n = len(points)
    if n <= k:
        raise CleanupError(f"finding isolated splats with {k} neighbours needs more than {k} splats, "
                           f"the object has {n}")
    w = window or max(_MIN_WINDOW, k)
    orders, ranks = _curves(points)
    best = _window_pass(points, orders[0], k, w)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, _STATS_SAMPLE), replace=False))
    for o in range(1, len(_SHIFTS)):
        _refine(points, sample, best, orders, ranks, o, w)
    sampled = _mean_distance(best[sample])
    mean, sd = float(sampled.mean()), float(sampled.std())
    threshold = mean + std_ratio * sd
    coarse = _mean_distance(best)
    flagged = np.flatnonzero(coarse > threshold)
    flagged = flagged[~np.isin(flagged, sample, assume_unique=True)]
    for o in range(1, len(_SHIFTS)):
        _refine(points, flagged, best, orders, ranks, o, w)
    if len(flagged):
        coarse[flagged] = _mean_distance(best[flagged])
    return coarse > threshold, OutlierStats(mean, sd, threshold, k, len(sample))


# --- the command line's --cleanup ---------------------------------------------------------------------------

CLEANUP_KEYS = {
    "opacity": "select splats less opaque than this (0-1)",
    "scale": "select the largest splats: a percentage (scale=1%) or a size in scene units (scale=0.5)",
    "distance": "select splats far from the scene's centre (the median of the splats): a percentage "
                "(distance=2%: the farthest 2 %) or a radius in scene units (distance=10)",
    "unseen": "select splats no training camera sees: frustum (outside every view) or behind (behind "
              "every camera)",
    "outliers": "select isolated splats: mean distance to the nearest neighbours above mean + this many sd",
    "neighbours": f"neighbours for outliers (1-{MAX_NEIGHBOURS}, default {DEFAULT_NEIGHBOURS})",
    "action": "what to do with the selected splats: hide (default; the .blend can show them again) or delete",
}


@dataclass
class CleanupSpec:
    """A parsed ``--cleanup`` value: the selections to make (each extends the last), in the order given,
    and the action."""

    steps: list[tuple[str, object]]
    neighbours: int = DEFAULT_NEIGHBOURS
    action: str = "hide"


def _number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CleanupError(f"{key}={text}: expected a number") from None
    if not math.isfinite(value):
        raise CleanupError(f"{key}={text}: expected a finite number")
    return value


def _size_or_percent(key: str, text: str):
    if text.endswith("%"):
        return ("percent", _check_range(f"{key} percentage", _number(key, text[:-1]), 0.0, 100.0, low_open=True))
    return ("value", _check_range(f"{key}", _number(key, text), 0.0, math.inf))


def parse_cleanup_spec(text: str) -> CleanupSpec:
    """``opacity=0.05,outliers=2.5`` (see ``CLEANUP_KEYS``) -> :class:`CleanupSpec`; CleanupError
    names the part that is wrong."""
    spec = CleanupSpec(steps=[])
    seen = set()
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(parts):
        raise CleanupError(f"{text!r}: expected KEY=VALUE pairs separated by commas, e.g. opacity=0.05,outliers=2.5")
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise CleanupError(f"{part!r}: expected KEY=VALUE, e.g. opacity=0.05")
        if key not in CLEANUP_KEYS:
            raise CleanupError(f"{part!r}: unknown key {key!r}; known: {', '.join(CLEANUP_KEYS)}")
        if key in seen:
            raise CleanupError(f"{key} is given twice")
        seen.add(key)
        if key == "opacity":
            spec.steps.append((key, _check_range("opacity", _number(key, value), 0.0, 1.0, low_open=True)))
        elif key in ("scale", "distance"):
            spec.steps.append((key, _size_or_percent(key, value)))
        elif key == "unseen":
            if value.upper() not in UNSEEN_MODES:
                raise CleanupError(f"unseen={value}: expected frustum or behind")
            spec.steps.append((key, value.upper()))
        elif key == "outliers":
            spec.steps.append((key, _check_range("outliers", _number(key, value), 0.0, 100.0)))
        elif key == "neighbours":
            count = _number(key, value)
            if count != int(count) or not 1 <= count <= MAX_NEIGHBOURS:
                raise CleanupError(f"neighbours={value}: expected a whole number from 1 to {MAX_NEIGHBOURS}")
            spec.neighbours = int(count)
        else:
            if value.lower() not in ("hide", "delete"):
                raise CleanupError(f"action={value}: expected hide or delete")
            spec.action = value.lower()
    if not spec.steps:
        raise CleanupError(f"{text!r} selects nothing: give at least one of "
                           f"{', '.join(k for k in CLEANUP_KEYS if k not in ('neighbours', 'action'))}")
    return spec
