"""The compiled rasterizer's per-pixel compositing kernels, for NVIDIA GPUs (NVIDIA Warp).

One thread per pixel, numbered tile by tile (a tile is one block of threads; ``tile0`` is the first
tile of a launch), as gsplat's kernels:

* forward: walk the tile's depth-ordered list front to back, skip alphas under 1/255, stop before the
  splat that would bring the transmittance to 1e-4 or less; store the final transmittance and where
  the walk ended;
* backward: walk back from there to the front, recovering each splat's transmittance by dividing the
  stored final one by (1 - alpha), and add the splat's gradients (mean, conic, opacity, features,
  gsplat's absgrad) into per-splat sums with atomic adds.

The CPU runs ``warp_tiles`` instead (the same rules, SIMD over a tile's pixels); these kernels also run
on the CPU under a test hook, so the tests check them against the PyTorch backend there too.
"""
from __future__ import annotations

import warp as wp

from .warp_binning import ALPHA_THRESHOLD, MAX_ALPHA, MIN_TRANSMITTANCE

wp.set_module_options({"enable_backward": False})


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
