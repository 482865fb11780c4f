"""The compiled rasterizer's compositing kernels for the CPU (NVIDIA Warp's bundled Clang/LLVM).

One launch index per 8x8 tile, its 64 pixels the inner loop: the per-pixel walk of ``warp_pixels``
branches at every splat, which on a CPU costs more than the arithmetic; here the pixels' state lives in
64-wide vectors updated without branches (selects), which the compiler turns into SIMD, and a tile
stops once all its pixels have. The rules are the same (skip under 1/255, stop before the splat that
would bring the transmittance to 1e-4 or less; the backward walks back from each pixel's end,
dividing out (1 - alpha)), and so are the results, to float32 rounding: the exp here is accurate to
about one unit in the last place where the C library's is correctly rounded, and the backward sums a
splat's gradient over the tile's pixels in a different order (``-mreassociate`` lets those sums use
SIMD too). A frame is split into ranges of tiles, one launch per thread, each thread with its own
gradient buffers (Warp runs a CPU launch on the calling thread, without the GIL).
"""
from __future__ import annotations

import warp as wp

from .warp_binning import ALPHA_THRESHOLD, MAX_ALPHA, MIN_TRANSMITTANCE

wp.set_module_options({"enable_backward": False, "cpu_compiler_flags": (
    "-march=native -mllvm=-inline-threshold=9000 -mllvm=-inline-cold-callsite-threshold=3000"
    " -mllvm=-slp-recursion-max-depth=4 -mreassociate -fno-signed-zeros")})

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
