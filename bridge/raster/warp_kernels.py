"""The compiled rasterizer's kernels, written for NVIDIA Warp (imported only once ``warp`` loads).

One source for the CPU (Warp's bundled Clang/LLVM) and NVIDIA GPUs (its bundled NVRTC: the driver
is all it needs). The algorithm is gsplat's (1.5.3, ``rasterize_to_pixels_3dgs_fwd/bwd.cu``), written
here from the 3DGS rules rather than translated:

* binning: each visible splat counts, then writes, the tiles of its opacity-aware box that its 1/255
  ellipse meets (the same test as ``composite.bin_tiles``), the splats taken in depth order, and a
  stable counting sort by tile leaves each tile's list in depth order (ties by splat index);
* forward: one thread per pixel walks its tile's list front to back, skips alphas under 1/255, stops
  before the splat that would bring the transmittance to 1e-4 or less, and stores the final
  transmittance and where its walk ended;
* backward: the same thread walks back from there to the front, recovering each splat's
  transmittance by dividing the stored final one by (1 - alpha), as gsplat does, and adds the
  splat's gradients (mean, conic, opacity, features, and gsplat's absgrad) into per-splat sums.

Pixels are numbered tile by tile (``tile0`` is the first tile of a launch), so a CPU frame can be
split into ranges of tiles, one launch per thread: Warp runs a CPU launch on the calling thread and
releases the GIL meanwhile. Backward sums are plain adds on the CPU (each thread is given its own
buffers) and atomic adds on a GPU.
"""
from __future__ import annotations

import warp as wp

# Hand-written backward passes: Warp's generated adjoints are not needed (and would double the compile).
wp.set_module_options({"enable_backward": False, "cpu_compiler_flags": (
    "-march=native -mllvm=-inline-threshold=9000 -mllvm=-inline-cold-callsite-threshold=3000"
    " -mllvm=-slp-recursion-max-depth=4 -mreassociate -fno-signed-zeros")})

ALPHA_THRESHOLD = wp.constant(1.0 / 255.0)
MAX_ALPHA = wp.constant(0.999)
MIN_TRANSMITTANCE = wp.constant(1e-4)
# Past log(255 opacity) + this, alpha is under 1/255 by far more than float32 rounding: no exp needed.
SIGMA_MARGIN = wp.constant(1e-3)


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
    return least <= wp.log(wp.float64(o) / wp.float64(1.0 / 255.0)) + margin


@wp.kernel
def count_tiles(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), conics: wp.array(dtype=wp.vec3),
                opacities: wp.array(dtype=float), ts: int, tiles_x: int, tiles_y: int, first: int,
                counts: wp.array(dtype=wp.int32)):
    i = first + wp.tid()
    r = radii[i]
    n = int(0)
    if r[0] > 0 and r[1] > 0:
        m = means2d[i]
        x0, x1 = tile_range(m[0], r[0], ts, tiles_x)
        y0, y1 = tile_range(m[1], r[1], ts, tiles_y)
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if ellipse_meets_tile(m, conics[i], opacities[i], tx, ty, ts):
                    n += 1
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


@wp.kernel
def counting_sort(tile_of_pair: wp.array(dtype=wp.int32), splat_of_pair: wp.array(dtype=wp.int32),
                  cursor: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32)):
    """One thread (the CPU's): pairs to their tile's list, keeping their (depth) order: a stable sort."""
    for k in range(tile_of_pair.shape[0]):
        t = tile_of_pair[k]
        ids[cursor[t]] = splat_of_pair[k]
        cursor[t] = cursor[t] + 1


@wp.func
def pixel_of(i: int, ts: int, tiles_x: int, tile0: int):
    ppt = ts * ts
    tile = tile0 + i / ppt
    local = i - (i / ppt) * ppt
    return tile, (tile % tiles_x) * ts + local % ts, (tile / tiles_x) * ts + local / ts


@wp.kernel
def composite_forward(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
                      means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3),
                      opacities: wp.array(dtype=float), cutoffs: wp.array(dtype=float), feats: wp.array(dtype=wp.vec4),
                      width: int, height: int, ts: int, tiles_x: int, tile0: int,
                      colour: wp.array(dtype=wp.vec4), trans: wp.array(dtype=float), last: wp.array(dtype=wp.int32)):
    tile, x, y = pixel_of(wp.tid(), ts, tiles_x, tile0)
    if x >= width or y >= height:
        return
    px = float(x) + 0.5
    py = float(y) + 0.5
    t = float(1.0)
    c = wp.vec4()
    stop = offsets[tile]
    for k in range(offsets[tile], offsets[tile + 1]):
        g = ids[k]
        m = means2d[g]
        q = conics[g]
        dx = m[0] - px
        dy = m[1] - py
        sigma = 0.5 * (q[0] * dx * dx + q[2] * dy * dy) + q[1] * dx * dy
        if sigma < 0.0 or sigma > cutoffs[g]:
            continue
        alpha = wp.min(MAX_ALPHA, opacities[g] * wp.exp(-sigma))
        if alpha < ALPHA_THRESHOLD:
            continue
        next_t = t * (1.0 - alpha)
        if next_t <= MIN_TRANSMITTANCE:
            break
        c = c + (alpha * t) * feats[g]
        t = next_t
        stop = k + 1
    p = y * width + x
    colour[p] = c
    trans[p] = t
    last[p] = stop


@wp.kernel
def composite_backward(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
                       means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3),
                       opacities: wp.array(dtype=float), cutoffs: wp.array(dtype=float),
                       feats: wp.array(dtype=wp.vec4),
                       width: int, height: int, ts: int, tiles_x: int, tile0: int,
                       trans: wp.array(dtype=float), last: wp.array(dtype=wp.int32),
                       g_colour: wp.array(dtype=wp.vec4), g_trans: wp.array(dtype=float), with_trans: int,
                       g_means2d: wp.array(dtype=wp.vec2), g_conics: wp.array(dtype=wp.vec3),
                       g_opacities: wp.array(dtype=float), g_feats: wp.array(dtype=wp.vec4),
                       absgrad: wp.array(dtype=wp.vec2), with_absgrad: int):
    tile, x, y = pixel_of(wp.tid(), ts, tiles_x, tile0)
    if x >= width or y >= height:
        return
    px = float(x) + 0.5
    py = float(y) + 0.5
    p = y * width + x
    t_final = trans[p]
    t = t_final
    gc = g_colour[p]
    # dT_final/dalpha_k = -T_final / (1 - alpha_k): the loss's pull through the final transmittance.
    gt = float(0.0)
    if with_trans != 0:
        gt = g_trans[p] * t_final
    behind = wp.vec4()  # sum over the splats behind this one of weight * features
    first = offsets[tile]
    k = last[p] - 1
    while k >= first:
        g = ids[k]
        k = k - 1
        m = means2d[g]
        q = conics[g]
        dx = m[0] - px
        dy = m[1] - py
        sigma = 0.5 * (q[0] * dx * dx + q[2] * dy * dy) + q[1] * dx * dy
        if sigma < 0.0 or sigma > cutoffs[g]:
            continue
        o = opacities[g]
        raw = o * wp.exp(-sigma)
        alpha = wp.min(MAX_ALPHA, raw)
        if alpha < ALPHA_THRESHOLD:
            continue
        ra = 1.0 / (1.0 - alpha)
        t = t * ra  # the transmittance in front of this splat
        f = feats[g]
        w = alpha * t
        wp.atomic_add(g_feats, g, w * gc)
        g_alpha = wp.dot(t * f - ra * behind, gc) - gt * ra
        behind = behind + w * f
        if raw < MAX_ALPHA:  # a clamped alpha passes no gradient to its splat
            g_sigma = -raw * g_alpha
            wp.atomic_add(g_conics, g, wp.vec3(0.5 * g_sigma * dx * dx, g_sigma * dx * dy, 0.5 * g_sigma * dy * dy))
            g_xy = wp.vec2(g_sigma * (q[0] * dx + q[1] * dy), g_sigma * (q[1] * dx + q[2] * dy))
            wp.atomic_add(g_means2d, g, g_xy)
            wp.atomic_add(g_opacities, g, raw / o * g_alpha)
            if with_absgrad != 0:
                wp.atomic_add(absgrad, g, wp.vec2(wp.abs(g_xy[0]), wp.abs(g_xy[1])))


# ---- the CPU's kernels: one tile a launch index, its 64 pixels side by side ----------------------
# The per-pixel loops above branch at every splat; on a CPU that costs more than the arithmetic. Here a
# tile's pixels are the inner loop, without branches (selects), which the compiler turns into SIMD, and
# a tile stops when all its pixels have. Same rules, same results (the exp below is accurate to about
# one unit in the last place, where the C library's is correctly rounded).

CPU_TILE_SIZE = 8
vec64 = wp.types.vector(length=64, dtype=float)
ivec64 = wp.types.vector(length=64, dtype=wp.int32)


@wp.func
def exp_neg(s: float) -> float:
    """exp(-s) for s >= 0, branch free: s = n ln2 + r with |r| <= ln2 / 2, exp(-r) by its Taylor series
    to the 8th term (error under 1e-8), times 2^-n built from n's bits (exact)."""
    s = wp.clamp(s, 0.0, 87.0)
    n = int(s * 1.4426950408889634 + 0.5)
    fn = float(n)
    x = (fn * 0.693145751953125 - s) + fn * 1.428606765330187e-06  # -r, ln2 split in two for exactness
    p = 0.008333334 + x * (0.0013888889 + x * 0.0001984127)
    p = 1.0 + x * (1.0 + x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * p))))
    p = p * wp.where((n & 1) != 0, 0.5, 1.0) * wp.where((n & 2) != 0, 0.25, 1.0) * wp.where((n & 4) != 0, 0.0625, 1.0)
    p = p * wp.where((n & 8) != 0, 0.00390625, 1.0) * wp.where((n & 16) != 0, 1.52587890625e-05, 1.0)
    p = p * wp.where((n & 32) != 0, 2.3283064365386963e-10, 1.0) * wp.where((n & 64) != 0, 5.421010862427522e-20, 1.0)
    return p


@wp.kernel
def composite_forward_cpu(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
                          means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3),
                          opacities: wp.array(dtype=float), feats: wp.array(dtype=wp.vec4),
                          width: int, height: int, tiles_x: int, tile0: int,
                          colour: wp.array(dtype=wp.vec4), trans: wp.array(dtype=float),
                          last: wp.array(dtype=wp.int32)):
    tile = tile0 + wp.tid()
    x0 = (tile % tiles_x) * CPU_TILE_SIZE
    y0 = (tile / tiles_x) * CPU_TILE_SIZE
    start = offsets[tile]
    end = offsets[tile + 1]
    u = vec64()
    v = vec64()
    for j in range(64):
        u[j] = float(x0 + j % CPU_TILE_SIZE) + 0.5
        v[j] = float(y0 + j / CPU_TILE_SIZE) + 0.5
    t = vec64(1.0)
    done = vec64()
    c0 = vec64()
    c1 = vec64()
    c2 = vec64()
    c3 = vec64()
    stop = ivec64(start)
    k = start
    while k < end:
        g = ids[k]
        m = means2d[g]
        q = conics[g]
        o = opacities[g]
        f = feats[g]
        k1 = k + 1
        for j in range(64):
            dx = m[0] - u[j]
            dy = m[1] - v[j]
            sigma = 0.5 * (q[0] * dx * dx + q[2] * dy * dy) + q[1] * dx * dy
            alpha = wp.min(MAX_ALPHA, o * exp_neg(sigma))
            tj = t[j]
            nt = tj * (1.0 - alpha)
            ok = sigma >= 0.0 and alpha >= ALPHA_THRESHOLD and done[j] == 0.0
            ends = ok and nt <= MIN_TRANSMITTANCE
            take = ok and nt > MIN_TRANSMITTANCE
            w = wp.where(take, alpha * tj, 0.0)
            c0[j] = c0[j] + w * f[0]
            c1[j] = c1[j] + w * f[1]
            c2[j] = c2[j] + w * f[2]
            c3[j] = c3[j] + w * f[3]
            t[j] = wp.where(take, nt, tj)
            done[j] = wp.where(ends, 1.0, done[j])
            stop[j] = wp.where(take, k1, stop[j])
        k = k1
        if (k - start) % 8 == 0:
            finished = float(0.0)
            for j in range(64):
                finished += done[j]
            if finished == 64.0:
                break
    for j in range(64):
        x = x0 + j % CPU_TILE_SIZE
        y = y0 + j / CPU_TILE_SIZE
        if x < width and y < height:
            p = y * width + x
            colour[p] = wp.vec4(c0[j], c1[j], c2[j], c3[j])
            trans[p] = t[j]
            last[p] = stop[j]


@wp.kernel
def composite_backward_cpu(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
                           means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3),
                           opacities: wp.array(dtype=float), feats: wp.array(dtype=wp.vec4),
                           width: int, height: int, tiles_x: int, tile0: int,
                           trans: wp.array(dtype=float), last: wp.array(dtype=wp.int32),
                           g_colour: wp.array(dtype=wp.vec4), g_trans: wp.array(dtype=float), with_trans: int,
                           g_means2d: wp.array(dtype=wp.vec2), g_conics: wp.array(dtype=wp.vec3),
                           g_opacities: wp.array(dtype=float), g_feats: wp.array(dtype=wp.vec4),
                           absgrad: wp.array(dtype=wp.vec2), with_absgrad: int):
    tile = tile0 + wp.tid()
    x0 = (tile % tiles_x) * CPU_TILE_SIZE
    y0 = (tile / tiles_x) * CPU_TILE_SIZE
    start = offsets[tile]
    u = vec64()
    v = vec64()
    t = vec64()
    gt = vec64()
    gc0 = vec64()
    gc1 = vec64()
    gc2 = vec64()
    gc3 = vec64()
    stop = ivec64(start)
    kmax = start
    for j in range(64):
        x = x0 + j % CPU_TILE_SIZE
        y = y0 + j / CPU_TILE_SIZE
        u[j] = float(x) + 0.5
        v[j] = float(y) + 0.5
        if x < width and y < height:
            p = y * width + x
            t[j] = trans[p]
            if with_trans != 0:
                gt[j] = g_trans[p] * trans[p]
            gc = g_colour[p]
            gc0[j] = gc[0]
            gc1[j] = gc[1]
            gc2[j] = gc[2]
            gc3[j] = gc[3]
            stop[j] = last[p]
            kmax = wp.max(kmax, last[p])
    b0 = vec64()
    b1 = vec64()
    b2 = vec64()
    b3 = vec64()
    k = kmax - 1
    while k >= start:
        g = ids[k]
        m = means2d[g]
        q = conics[g]
        o = opacities[g]
        f = feats[g]
        s_f0 = float(0.0)
        s_f1 = float(0.0)
        s_f2 = float(0.0)
        s_f3 = float(0.0)
        s_a = float(0.0)
        s_b = float(0.0)
        s_c = float(0.0)
        s_x = float(0.0)
        s_y = float(0.0)
        s_o = float(0.0)
        s_ax = float(0.0)
        s_ay = float(0.0)
        for j in range(64):
            dx = m[0] - u[j]
            dy = m[1] - v[j]
            sigma = 0.5 * (q[0] * dx * dx + q[2] * dy * dy) + q[1] * dx * dy
            raw = o * exp_neg(sigma)
            alpha = wp.min(MAX_ALPHA, raw)
            valid = k < stop[j] and sigma >= 0.0 and alpha >= ALPHA_THRESHOLD
            ra = 1.0 / (1.0 - alpha)
            tj = wp.where(valid, t[j] * ra, t[j])
            t[j] = tj
            w = wp.where(valid, alpha * tj, 0.0)
            s_f0 += w * gc0[j]
            s_f1 += w * gc1[j]
            s_f2 += w * gc2[j]
            s_f3 += w * gc3[j]
            g_alpha = ((tj * f[0] - ra * b0[j]) * gc0[j] + (tj * f[1] - ra * b1[j]) * gc1[j]
                       + (tj * f[2] - ra * b2[j]) * gc2[j] + (tj * f[3] - ra * b3[j]) * gc3[j]) - gt[j] * ra
            b0[j] = b0[j] + w * f[0]
            b1[j] = b1[j] + w * f[1]
            b2[j] = b2[j] + w * f[2]
            b3[j] = b3[j] + w * f[3]
            passes = valid and raw < MAX_ALPHA
            gs = wp.where(passes, -raw * g_alpha, 0.0)
            s_a += 0.5 * gs * dx * dx
            s_b += gs * dx * dy
            s_c += 0.5 * gs * dy * dy
            gx = gs * (q[0] * dx + q[1] * dy)
            gy = gs * (q[1] * dx + q[2] * dy)
            s_x += gx
            s_y += gy
            s_ax += wp.abs(gx)
            s_ay += wp.abs(gy)
            s_o += wp.where(passes, raw / o * g_alpha, 0.0)
        g_feats[g] = g_feats[g] + wp.vec4(s_f0, s_f1, s_f2, s_f3)
        g_conics[g] = g_conics[g] + wp.vec3(s_a, s_b, s_c)
        g_means2d[g] = g_means2d[g] + wp.vec2(s_x, s_y)
        g_opacities[g] = g_opacities[g] + s_o
        if with_absgrad != 0:
            absgrad[g] = absgrad[g] + wp.vec2(s_ax, s_ay)
        k = k - 1
