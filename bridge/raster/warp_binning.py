"""The compiled rasterizer's binning kernels (NVIDIA Warp; imported only once ``warp`` loads).

Each visible splat counts, then writes, the tiles of its opacity-aware box that its 1/255 ellipse
meets (the test of ``composite.bin_tiles``, in float64 with its rounding margin), the splats laid out
in depth order; a stable sort by tile (:func:`counting_sort` on the CPU) then leaves each tile's list
in depth order, ties by splat index. Shared constants live here too.

The kernels of this module, ``warp_tiles`` (the CPU's compositing) and ``warp_pixels`` (the GPU's) are
gsplat 1.5.3's algorithm (``rasterize_to_pixels_3dgs_fwd/bwd.cu``), written from the 3DGS rules, not
translated. Their backward passes are written by hand; Warp's generated adjoints are turned off.
"""
from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})

ALPHA_THRESHOLD = wp.constant(1.0 / 255.0)
MAX_ALPHA = wp.constant(0.999)
MIN_TRANSMITTANCE = wp.constant(1e-4)


@wp.func
def tile_range(m: float, r: int, ts: int, tiles: int):
    """[lo, hi) of the tiles a box [m - r, m + r] touches, as ``composite.bin_tiles`` computes them."""
    centre = m / float(ts)
    reach = float(r) / float(ts)
    lo = wp.clamp(wp.floor(centre - reach), 0.0, float(tiles))
    hi = wp.clamp(wp.ceil(centre + reach), 0.0, float(tiles))
    return int(lo), int(hi)


@wp.func
def ellipse_meets_tile(m: wp.vec2, q: wp.vec3, o: float, tx: int, ty: int, ts: int) -> bool:
    """Can the splat's alpha reach 1/255 at one of the tile's pixel centres? ``composite._ellipse_meets_tile``,
    in float64 with its rounding margin: the least sigma over the tile's rectangle of pixel centres."""
    return ellipse_meets_tile_at(m, q, alpha_level(o), tx, ty, ts)


@wp.func
def alpha_level(o: float) -> wp.float64:
    """The sigma at which the splat's alpha falls to 1/255: log(255 o)."""
    return wp.log(wp.float64(o) / wp.float64(1.0 / 255.0))


@wp.func
def ellipse_meets_tile_at(m: wp.vec2, q: wp.vec3, level: wp.float64, tx: int, ty: int, ts: int) -> bool:
    """:func:`ellipse_meets_tile` with the splat's ``alpha_level`` computed once."""
    half = wp.float64(0.5) * wp.float64(ts - 1)
    ex = wp.float64(m[0]) - (wp.float64(tx) + wp.float64(0.5)) * wp.float64(ts)
    ey = wp.float64(m[1]) - (wp.float64(ty) + wp.float64(0.5)) * wp.float64(ts)
    a = wp.float64(q[0])
    b = wp.float64(q[1])
    c = wp.float64(q[2])
    lx = -half - ex
    hx = half - ex
    ly = -half - ey
    hy = half - ey
    least = wp.float64(0.0)
    if not (lx <= wp.float64(0.0) and hx >= wp.float64(0.0) and ly <= wp.float64(0.0) and hy >= wp.float64(0.0)):
        # the least of the four edges, each a clamped 1-D minimum of the convex quadratic
        o1 = wp.clamp(-b * lx / c, ly, hy)
        e1 = wp.float64(0.5) * (a * lx * lx + c * o1 * o1) + b * lx * o1
        o2 = wp.clamp(-b * hx / c, ly, hy)
        e2 = wp.float64(0.5) * (a * hx * hx + c * o2 * o2) + b * hx * o2
        o3 = wp.clamp(-b * ly / a, lx, hx)
        e3 = wp.float64(0.5) * (c * ly * ly + a * o3 * o3) + b * ly * o3
        o4 = wp.clamp(-b * hy / a, lx, hx)
        e4 = wp.float64(0.5) * (c * hy * hy + a * o4 * o4) + b * hy * o4
        least = wp.min(wp.min(e1, e2), wp.min(e3, e4))
    size = (wp.float64(0.5) * (a * ex * ex + c * ey * ey) + wp.abs(b * ex * ey)
            + half * (wp.abs(a * ex + b * ey) + wp.abs(c * ey + b * ex))
            + half * half * (a + c + wp.float64(2.0) * wp.abs(b)))
    margin = wp.float64(1e-3) + wp.float64(1e-5) * size
    return least <= level + margin


@wp.func
def row_reach(q: wp.vec3, o: float, r: wp.vec2i, ts: int) -> float:
    """How far (pixels) from the mean in y a pixel centre can be and still get alpha >= 1/255: the half
    height of the ellipse sigma = log(255 o), widened by the margin ``ellipse_meets_tile`` allows for the
    rounding of sigma (whose terms, within the splat's box and one tile around it, stay under ``size``).
    The CPU kernels apply a splat only to the rows of a tile within this reach. Infinity when unsure."""
    a = wp.float64(q[0])
    b = wp.float64(q[1])
    c = wp.float64(q[2])
    det = a * c - b * b
    ex = wp.float64(r[0] + ts)
    ey = wp.float64(r[1] + ts)
    size = wp.float64(0.5) * (a * ex * ex + c * ey * ey) + wp.abs(b) * ex * ey
    level = wp.log(wp.float64(o) / wp.float64(1.0 / 255.0)) + wp.float64(1e-3) + wp.float64(1e-5) * size
    reach = wp.float64(1e30)
    if det > wp.float64(0.0) and a > wp.float64(0.0) and level >= wp.float64(0.0) and size < wp.float64(1e30):
        reach = wp.sqrt(wp.float64(2.0) * level * a / det) * wp.float64(1.000001) + wp.float64(1e-3)
    return float(wp.min(reach, wp.float64(1e30)))


@wp.kernel
def count_tiles(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), conics: wp.array(dtype=wp.vec3),
                opacities: wp.array(dtype=float), ts: int, tiles_x: int, tiles_y: int, first: int,
                counts: wp.array(dtype=wp.int32), reach: wp.array(dtype=float)):
    i = first + wp.tid()
    r = radii[i]
    n = int(0)
    reach[i] = 0.0
    if r[0] > 0 and r[1] > 0:
        m = means2d[i]
        x0, x1 = tile_range(m[0], r[0], ts, tiles_x)
        y0, y1 = tile_range(m[1], r[1], ts, tiles_y)
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if ellipse_meets_tile(m, conics[i], opacities[i], tx, ty, ts):
                    n += 1
        reach[i] = row_reach(conics[i], opacities[i], r, ts)
    counts[i] = n


@wp.kernel
def emit_pairs(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), conics: wp.array(dtype=wp.vec3),
               opacities: wp.array(dtype=float), ts: int, tiles_x: int, tiles_y: int, first: int,
               starts: wp.array(dtype=wp.int32), tile_of_pair: wp.array(dtype=wp.int32),
               splat_of_pair: wp.array(dtype=wp.int32)):
    """Each splat's pairs at ``starts[i]`` (splats laid out in depth order), in the order count_tiles met them."""
    i = first + wp.tid()
    r = radii[i]
    if r[0] > 0 and r[1] > 0:
        m = means2d[i]
        x0, x1 = tile_range(m[0], r[0], ts, tiles_x)
        y0, y1 = tile_range(m[1], r[1], ts, tiles_y)
        k = starts[i]
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if ellipse_meets_tile(m, conics[i], opacities[i], tx, ty, ts):
                    tile_of_pair[k] = ty * tiles_x + tx
                    splat_of_pair[k] = i
                    k += 1


# ---- the CPU's binning: straight into each tile's list, one launch per worker --------------------------
# The visible splats in depth order are cut into one run per worker. Each worker counts its run's pairs per
# tile (its own counters, and a bit per tile of the splat's box, when the box has at most 64 tiles, so the
# ellipse test is not made twice), then writes its run's splats into the lists from where the runs before it
# end: every list comes out in depth order (ties by index) without a sort of the pairs.


@wp.kernel
def bin_count_cpu(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), conics: wp.array(dtype=wp.vec3),
                  opacities: wp.array(dtype=float), ts: int, tiles_x: int, tiles_y: int,
                  order: wp.array(dtype=wp.int32), first: int, after: int,
                  tile_counts: wp.array(dtype=wp.int32), masks: wp.array(dtype=wp.uint64),
                  reach: wp.array(dtype=float)):
    for j in range(first, after):
        i = order[j]
        r = radii[i]
        m = means2d[i]
        x0, x1 = tile_range(m[0], r[0], ts, tiles_x)
        y0, y1 = tile_range(m[1], r[1], ts, tiles_y)
        nx = x1 - x0
        small = nx * (y1 - y0) <= 64
        bits = wp.uint64(0)
        q = conics[i]
        level = alpha_level(opacities[i])
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if ellipse_meets_tile_at(m, q, level, tx, ty, ts):
                    t = ty * tiles_x + tx
                    tile_counts[t] = tile_counts[t] + 1
                    if small:
                        bits = bits | (wp.uint64(1) << wp.uint64((ty - y0) * nx + tx - x0))
        masks[i] = bits
        reach[i] = row_reach(conics[i], opacities[i], r, ts)


@wp.kernel
def bin_emit_cpu(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), conics: wp.array(dtype=wp.vec3),
                 opacities: wp.array(dtype=float), ts: int, tiles_x: int, tiles_y: int,
                 order: wp.array(dtype=wp.int32), first: int, after: int, masks: wp.array(dtype=wp.uint64),
                 labels: wp.array(dtype=wp.int32), cursor: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32)):
    for j in range(first, after):
        i = order[j]
        r = radii[i]
        m = means2d[i]
        x0, x1 = tile_range(m[0], r[0], ts, tiles_x)
        y0, y1 = tile_range(m[1], r[1], ts, tiles_y)
        nx = x1 - x0
        small = nx * (y1 - y0) <= 64
        bits = masks[i]
        label = labels[i]
        q = conics[i]
        level = alpha_level(opacities[i])
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                hit = False
                if small:
                    hit = ((bits >> wp.uint64((ty - y0) * nx + tx - x0)) & wp.uint64(1)) != wp.uint64(0)
                else:
                    hit = ellipse_meets_tile_at(m, q, level, tx, ty, ts)
                if hit:
                    t = ty * tiles_x + tx
                    ids[cursor[t]] = label
                    cursor[t] = cursor[t] + 1


@wp.kernel
def pack_records(perm: wp.array(dtype=wp.int32), means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3),
                 opacities: wp.array(dtype=float), reach: wp.array(dtype=float), feats: wp.array(dtype=wp.vec4),
                 records: wp.array2d(dtype=float)):
    """The CPU kernels' 64-byte record of each splat (``warp_tiles``), in the order ``perm``."""
    p = wp.tid()
    i = perm[p]
    m = means2d[i]
    q = conics[i]
    f = feats[i]
    records[p, 0] = m[0]
    records[p, 1] = m[1]
    records[p, 2] = q[0]
    records[p, 3] = q[1]
    records[p, 4] = q[2]
    records[p, 5] = opacities[i]
    records[p, 6] = reach[i]
    records[p, 7] = 0.0
    records[p, 8] = f[0]
    records[p, 9] = f[1]
    records[p, 10] = f[2]
    records[p, 11] = f[3]
