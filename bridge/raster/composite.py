"""Front-to-back alpha compositing of projected splats, tile by tile, with gsplat's exact rules.

A pixel takes splats in depth order; a splat whose alpha ``min(0.999, o * exp(-sigma))`` is below
1/255 is skipped, and the pixel stops *before* the splat that would bring its transmittance to 1e-4
or less. Those rules are applied to whole [tiles, pixels, splats] blocks at once: the transmittance
after each splat is a cumulative product, and because it only falls, "not yet finished" is a
prefix of the depth-ordered list, so a mask reproduces the sequential early stop exactly.

Work and memory stay bounded: a tile's list is taken in depth slices of ``slice_splats``, tiles whose
pixels are all finished drop out between slices (the vectorised form of gsplat's early stop), and a
slice is processed in chunks of at most ``budget`` pixel-splat pairs. Each chunk is one autograd node
with a closed-form backward, which reuses the chunk's alphas and transmittances for the first
``keep_pairs`` pairs of a camera (a training view of a few hundred thousand pixels: all of them) and
recomputes them from the small per-splat inputs beyond (checkpointing), so a large frame needs little
more memory than rendering.
"""
from __future__ import annotations

import bisect
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .projection import ALPHA_THRESHOLD

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
DEFAULT_SLICE = 128  # splats per tile between early-stop checks
DEFAULT_BUDGET = 1 << 22  # pixel-splat pairs per chunk: ~0.3 GB of float32 intermediates
KEEP_PAIRS = 1 << 24  # pixel-splat pairs per camera whose forward values the backward reuses: ~0.2 GB


def _quadratic_terms(tile_size: int, dtype, device) -> Tensor:
    """[P, 6] monomials (1, u, v, u^2, v^2, uv) of each pixel centre relative to its tile centre."""
    local = torch.arange(tile_size * tile_size, device=device)
    u = (local % tile_size).to(dtype) + 0.5 - 0.5 * tile_size
    v = (local // tile_size).to(dtype) + 0.5 - 0.5 * tile_size
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v], dim=-1)


def _sigma_coefficients(offset: Tensor, conics: Tensor) -> Tensor:
    """[T, K, 6] coefficients of the Mahalanobis half-distance as a quadratic in (u, v).

    ``offset`` [T, K, 2] is each splat's mean relative to its tile centre. Writing sigma this way
    turns the per-pixel evaluation into one batched matrix product, the one cheap operation on a
    CPU; terms stay small because a splat only meets tiles within its 3.33-sigma box.
    """
    ex, ey = offset.unbind(-1)
    a, b, c = conics.unbind(-1)
    const = 0.5 * (a * ex * ex + c * ey * ey) + b * ex * ey
    return torch.stack([const, -(a * ex + b * ey), -(c * ey + b * ex), 0.5 * a, 0.5 * c, b], dim=-1)


def _unpack(splats: Tensor, centres: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(offset of each mean from its tile's centre, conics, opacities, features) of a chunk's splats."""
    return splats[..., :2] - centres, splats[..., 2:5], splats[..., 5], splats[..., 6:]


def _sigma_coefficients_backward(offset: Tensor, conics: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """(dL/doffset [T, K, 2], dL/dconics [T, K, 3]) from dL/dcoefficients ``g`` [T, K, 6] of
    :func:`_sigma_coefficients`, in closed form (cheaper than autograd for each chunk)."""
    ex, ey = offset.unbind(-1)
    a, b, c = conics.unbind(-1)
    g0, g1, g2, g3, g4, g5 = g.unbind(-1)
    g_offset = torch.stack([g0 * (a * ex + b * ey) - g1 * a - g2 * b,
                            g0 * (c * ey + b * ex) - g1 * b - g2 * c], dim=-1)
    g_conics = torch.stack([(0.5 * g0 * ex - g1) * ex + 0.5 * g3,
                            (g0 * ey - g2) * ex - g1 * ey + g5,
                            (0.5 * g0 * ey - g2) * ey + 0.5 * g4], dim=-1)
    return g_offset, g_conics


def _just_below(value: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` under ``value``: ``x > _just_below(v)`` is ``x >= v`` there."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.zeros_like(v)))


def _exponent(coeffs: Tensor, opac: Tensor) -> Tensor:
    """[T, K, 6] coefficients of log(opacity) - sigma, whose exp is each raw alpha ``opacity * exp(-sigma)``
    in one pass (the padding splat's opacity 0 gives exp(-inf) = 0)."""
    exponent = -coeffs
    exponent[..., 0] += torch.log(opac)
    return exponent


def _composite(terms: Tensor, exponent: Tensor, t_first: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha as composited [T, P, K], 0 where skipped or past the pixel's end; transmittance [T, P, K + 1]
    before each splat, then after the last), from terms [P, 6], exponent [T, K, 6] and t_first [T, P], the
    transmittance so far (0 for pixels already finished, so they take nothing more).

    The transmittance is gsplat's sequential product (t_first (1 - a_1)) (1 - a_2) ..., one cumprod. It
    only falls, so the splats a pixel still takes form a prefix of its list, and zeroing each alpha whose
    transmittance after it is 1e-4 or less stops the pixel before that splat, as gsplat does. Mostly in
    place: on the CPU the time goes into passes over these [T, P, K] blocks.
    sigma >= 0 for the positive definite conics projection lets through, so gsplat's sigma < 0 test
    (a guard against rounding) has nothing to do here.
    """
    alpha = torch.matmul(terms, exponent.transpose(1, 2)).exp_()
    alpha.clamp_(max=MAX_ALPHA)
    F.threshold(alpha, _just_below(ALPHA_THRESHOLD, alpha.dtype), 0.0, inplace=True)  # keeps alpha >= 1/255
    trans = alpha.new_empty(alpha.shape[:-1] + (alpha.shape[-1] + 1,))
    trans[..., 0] = t_first
    torch.sub(alpha.new_ones(()), alpha, out=trans[..., 1:])
    trans.cumprod_(dim=-1)
    alpha.masked_fill_(trans[..., 1:] <= MIN_TRANSMITTANCE, 0.0)
    return alpha, trans


class _Chunk(torch.autograd.Function):
    """One chunk of tiles as an autograd node with a hand-written backward.

    The backward differentiates front-to-back compositing in closed form:
    dC/da_k = T_k f_k - (sum_{j>k} w_j f_j) / (1 - a_k) and dT_out/da_k = -T_out / (1 - a_k).
    It reuses the forward's [T, P, K] alphas, transmittances and weights while the camera's ``keep``
    allowance lasts; past it, it keeps only the small per-splat inputs and recomputes them
    (checkpointing), so a large frame needs little more memory than rendering.
    It also yields gsplat's absgrad: the sum over pixels of |dL/dmean2d|.
    """

    @staticmethod
    def forward(ctx, terms, centres, splats, t_in, done, absgrad_sink, keep):
        # splats [T, K, 6 + D]: each tile's list of (mean2d, conic, opacity, features), gathered at once
        offset, conics, opac, feats = _unpack(splats, centres)
        t_first = t_in.masked_fill(done, 0.0)
        alpha, trans = _composite(terms, _exponent(_sigma_coefficients(offset, conics), opac), t_first)
        weights = alpha * trans[..., :-1]
        colour = torch.bmm(weights, feats)
        t_out = t_in - weights.sum(dim=-1)  # the weights telescope: sum_k a_k T_k = T_in - T_out
        done_out = trans[..., -1] <= MIN_TRANSMITTANCE
        kept = (alpha, trans, weights) if keep else ()
        ctx.save_for_backward(terms, centres, splats, t_in, t_first, t_out, *kept)
        ctx.absgrad_sink = absgrad_sink  # (tensor [M, 2], ids [T, K] into it) or None
        ctx.mark_non_differentiable(done_out)
        return colour, t_out, done_out

    @staticmethod
    def backward(ctx, g_colour, g_t_out, _g_done):
        terms, centres, splats, t_in, t_first, t_out, *kept = ctx.saved_tensors
        offset, conics, opac, feats = _unpack(splats, centres)
        if kept:
            alpha, trans, weights = kept
        else:
            alpha, trans = _composite(terms, _exponent(_sigma_coefficients(offset, conics), opac), t_first)
            weights = alpha * trans[..., :-1]
        q = torch.bmm(g_colour, feats.transpose(1, 2))  # f_k . dL/dC, [T, P, K]
        wq = weights * q
        total = wq.sum(dim=-1, keepdim=True)
        ahead = total + (g_t_out * t_out)[..., None]  # what a pixel's loss sees through its transmittance
        # g_alpha = T_k q_k - (sum_{j>k} w_j q_j + g_T_out T_out) / (1 - a_k), built in place in one buffer.
        g_alpha = torch.cumsum(wq, dim=-1).sub_(ahead).div_(1.0 - alpha).addcmul_(trans[..., :-1], q)
        # Only alphas that were composited and not clamped at 0.999 pass a gradient to the splat; there
        # alpha = opacity * exp(-sigma), so dL/dsigma = -g_alpha * alpha and dL/dopacity = -dL/dsigma / opacity.
        g_sigma = g_alpha.mul_(F.threshold(-alpha, -MAX_ALPHA, 0.0))
        g_opac = -g_sigma.sum(dim=1) / opac.clamp_min(ALPHA_THRESHOLD)  # composited splats have opacity >= 1/255
        g_feats = torch.bmm(weights.transpose(1, 2), g_colour)
        # Colour and T_out are both proportional to T_in (T_in >= 1e-4 for pixels still going).
        g_t_in = ahead[..., 0] / t_in
        g_offset, g_conics = _sigma_coefficients_backward(offset, conics, torch.matmul(g_sigma.transpose(1, 2), terms))
        if ctx.absgrad_sink is not None:
            sink, ids = ctx.absgrad_sink
            a, b, c = (v[:, None, :] for v in conics.unbind(-1))
            dx = offset[:, None, :, 0] - terms[None, :, None, 1]
            dy = offset[:, None, :, 1] - terms[None, :, None, 2]
            per_pixel = torch.stack([(g_sigma * (a * dx + b * dy)).abs().sum(1),
                                     (g_sigma * (b * dx + c * dy)).abs().sum(1)], dim=-1)
            sink.index_add_(0, ids.reshape(-1), per_pixel.reshape(-1, 2).to(sink.dtype))
        g_splats = torch.cat([g_offset, g_conics, g_opac[..., None], g_feats], dim=-1)
        return None, None, g_splats, g_t_in, None, None, None


def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tiles_x: int, tiles_y: int,
              conics: Tensor | None = None, opacities: Tensor | None = None):
    """Splat-tile intersections of one camera, as gsplat's isect_tiles: (tile_ids, splat_ids), sorted
    by tile, then depth (ties by splat index). Inputs [N, ...]; only splats with radii > 0 take part.

    With ``conics`` and ``opacities``, a tile inside a splat's box that none of the ellipse where its
    alpha reaches 1/255 meets is dropped too: every pixel there would skip the splat, so the image
    and gradients stay the same while a third fewer pairs are composited (elongated splats' boxes are
    mostly empty)."""
    with torch.no_grad():
        ids = torch.nonzero((radii > 0).all(dim=-1)).squeeze(-1)
        centre = means2d[ids].detach() / tile_size
        reach = radii[ids].to(centre.dtype) / tile_size
        lo = torch.floor(centre - reach).clamp_min(0).long()
        hi = torch.ceil(centre + reach).long()
        lo[:, 0].clamp_(max=tiles_x)
        lo[:, 1].clamp_(max=tiles_y)
        hi[:, 0].clamp_(min=0, max=tiles_x)
        hi[:, 1].clamp_(min=0, max=tiles_y)
        span = (hi - lo).clamp_min(0)
        counts = span[:, 0] * span[:, 1]
        total = int(counts.sum())
        owner = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), counts, output_size=total)
        first = torch.cumsum(counts, 0) - counts
        local = torch.arange(total, device=ids.device) - first[owner]
        width = span[owner, 0]
        tx = lo[owner, 0] + local % width.clamp_min(1)
        ty = lo[owner, 1] + local // width.clamp_min(1)
        if conics is not None and opacities is not None:
            meets = _ellipse_meets_tile(means2d.detach()[ids][owner], conics.detach()[ids][owner],
                                        opacities.detach()[ids][owner], tx, ty, tile_size)
            owner, tx, ty = owner[meets], tx[meets], ty[meets]
        tile_ids = ty * tiles_x + tx
        depth_rank = torch.empty_like(ids)
        depth_rank[torch.sort(depths[ids].detach(), stable=True).indices] = torch.arange(len(ids), device=ids.device)
        order = torch.argsort(tile_ids * max(len(ids), 1) + depth_rank[owner])
        return tile_ids[order], ids[owner[order]]


def _ellipse_meets_tile(mean: Tensor, conic: Tensor, opacity: Tensor, tx: Tensor, ty: Tensor,
                        tile_size: int) -> Tensor:
    """[M] bool per (splat, tile) pair: can the splat's alpha reach 1/255 at one of the tile's pixel centres?

    The least sigma over the rectangle of pixel centres (the quadratic is convex: 0 when the mean is
    inside, else the least of its four edges, each a clamped 1-D minimum), against log(255 opacity).
    In float64 and with a margin above the rounding of the composited sigma (a sum of terms as large
    as the bound below), so no pair that could draw a pixel is ever dropped.
    """
    dtype = torch.float64
    half = 0.5 * (tile_size - 1)
    ex = mean[:, 0].to(dtype) - (tx.to(dtype) + 0.5) * tile_size  # the mean relative to the tile centre
    ey = mean[:, 1].to(dtype) - (ty.to(dtype) + 0.5) * tile_size
    a, b, c = conic.to(dtype).unbind(-1)
    lx, hx, ly, hy = -half - ex, half - ex, -half - ey, half - ey  # pixel minus mean, over the tile

    def edge(fixed, a_f, c_o, lo, hi):  # least sigma along an edge where one offset is fixed
        other = torch.clamp(-b * fixed / c_o, lo, hi)
        return 0.5 * (a_f * fixed * fixed + c_o * other * other) + b * fixed * other

    least = torch.minimum(torch.minimum(edge(lx, a, c, ly, hy), edge(hx, a, c, ly, hy)),
                          torch.minimum(edge(ly, c, a, lx, hx), edge(hy, c, a, lx, hx)))
    inside = (lx <= 0) & (hx >= 0) & (ly <= 0) & (hy >= 0)
    least = torch.where(inside, torch.zeros_like(least), least)
    size = (0.5 * (a * ex * ex + c * ey * ey) + (b * ex * ey).abs()
            + half * ((a * ex + b * ey).abs() + (c * ey + b * ex).abs()) + half * half * (a + c + 2 * b.abs()))
    margin = 1e-3 + 1e-5 * size
    return least <= torch.log(opacity.to(dtype) / ALPHA_THRESHOLD) + margin


def composite_camera(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    feats: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    tile_size: int = 8,
    budget: int = DEFAULT_BUDGET,
    absgrad_sink: Tensor | None = None,
    slice_splats: int = DEFAULT_SLICE,
    keep_pairs: int = KEEP_PAIRS,
) -> tuple[Tensor, Tensor]:
    """Composite one camera's splats ([N, ...] inputs) into (colour [H, W, D], transmittance [H, W])."""
    device, dtype = means2d.device, means2d.dtype
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles, n_pix, n_feat = tiles_x * tiles_y, tile_size * tile_size, feats.shape[-1]
    tile_ids, splat_ids = bin_tiles(means2d, radii, depths, tile_size, tiles_x, tiles_y, conics, opacities)

    # Busiest tiles first: neighbours in this order have similar list lengths, so chunks pad little.
    per_tile = torch.bincount(tile_ids, minlength=n_tiles)
    starts = torch.cumsum(per_tile, 0) - per_tile
    order = torch.argsort(per_tile, descending=True, stable=True)
    busy = order[per_tile[order] > 0]
    counts = per_tile[busy].tolist()
    neg_counts = [-c for c in counts]  # ascending, for bisect
    starts_busy = starts[busy]

    # A padding splat (index N) with zero opacity is skipped by the alpha threshold.
    pad = means2d.shape[0]
    splats_p = torch.cat([means2d, conics, opacities[:, None], feats], dim=-1)
    splats_p = torch.cat([splats_p, splats_p.new_zeros(1, splats_p.shape[1])])
    ids_p = torch.cat([splat_ids, splat_ids.new_full((1,), pad)])

    terms = _quadratic_terms(tile_size, dtype, device)
    tile_centres = torch.stack([torch.arange(n_tiles, device=device) % tiles_x,
                                torch.arange(n_tiles, device=device) // tiles_x], dim=-1).to(dtype)
    tile_centres = (tile_centres + 0.5) * tile_size

    n_busy = len(counts)
    colour = means2d.new_zeros(n_busy, n_pix, n_feat)
    trans = means2d.new_ones(n_busy, n_pix)
    done = torch.zeros(n_busy, n_pix, dtype=torch.bool, device=device)
    # Depth slices: between slices, tiles whose every pixel is finished drop out, which is where
    # gsplat's early stop saves its work; in dense scenes most splats lie behind finished pixels.
    slice_len = max(1, min(slice_splats, budget // n_pix))
    depth_start = 0
    while n_busy and counts[0] > depth_start:
        active = bisect.bisect_left(neg_counts, -depth_start)  # rows with splats left
        live = torch.nonzero(~done[:active].all(dim=1)).squeeze(1).tolist()
        if not live:
            break
        pieces_c, pieces_t, pieces_d, pieces_rows = [], [], [], []
        i = 0
        while i < len(live):
            k = min(slice_len, counts[live[i]] - depth_start)
            # Padding every tile to the chunk's longest list wastes work; ending the chunk at tiles
            # with half as many splats bounds the waste at 50 %, for a few more (cheap) chunks.
            j = i + 1
            limit = min(len(live), i + max(1, budget // (n_pix * k)))
            while j < limit and counts[live[j]] - depth_start > k // 2:
                j += 1
            rows = torch.tensor(live[i:j], device=device)
            tiles = busy[rows]
            pos = starts_busy[rows, None] + depth_start + torch.arange(k, device=device)
            valid = pos < (starts_busy[rows] + per_tile[tiles])[:, None]
            gids = ids_p[torch.where(valid, pos, torch.full_like(pos, len(splat_ids)))]
            sink = None if absgrad_sink is None else (absgrad_sink, gids)
            keep = keep_pairs >= n_pix * k * len(rows)
            keep_pairs -= n_pix * k * len(rows)
            c, t, d = _Chunk.apply(
                terms, tile_centres[tiles][:, None, :], splats_p[gids], trans[rows], done[rows], sink, keep
            )
            pieces_c.append(c)
            pieces_t.append(t)
            pieces_d.append(d)
            pieces_rows.append(rows)
            i = j
        rows = torch.cat(pieces_rows)
        colour = colour.index_add(0, rows, torch.cat(pieces_c))
        trans = trans.index_copy(0, rows, torch.cat(pieces_t))
        done = done.index_copy(0, rows, torch.cat(pieces_d))
        depth_start += slice_len

    # Scatter the busy tiles back into the image; empty tiles stay transparent.
    full_c = means2d.new_zeros(n_tiles, n_pix, n_feat).index_copy(0, busy, colour)
    full_t = means2d.new_ones(n_tiles, n_pix).index_copy(0, busy, trans)
    image_c = full_c.reshape(tiles_y, tiles_x, tile_size, tile_size, n_feat).permute(0, 2, 1, 3, 4)
    image_t = full_t.reshape(tiles_y, tiles_x, tile_size, tile_size).permute(0, 2, 1, 3)
    image_c = image_c.reshape(tiles_y * tile_size, tiles_x * tile_size, n_feat)[:height, :width]
    image_t = image_t.reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]
    return image_c, image_t
