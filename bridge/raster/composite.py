"""Front-to-back alpha compositing of projected splats, tile by tile, with gsplat's exact rules.

A pixel takes splats in depth order; a splat whose alpha ``min(0.999, o * exp(-sigma))`` is below
1/255 is skipped, and the pixel stops *before* the splat that would bring its transmittance to 1e-4
or less. Those rules are applied to whole [tiles, pixels, splats] blocks at once: the transmittance
after each splat is a cumulative product, and because it only falls, "not yet finished" is a
prefix of the depth-ordered list, so a mask reproduces the sequential early stop exactly.

Work and memory stay bounded: a tile's list is taken in depth slices of ``slice_splats``, tiles whose
pixels are all finished drop out between slices (the vectorised form of gsplat's early stop), and a
slice is processed in chunks of at most ``budget`` pixel-splat pairs. Each chunk is one autograd node
that keeps only its small per-splat inputs and recomputes its alphas in a closed-form backward
(checkpointing), so training needs little more memory than rendering.
"""
from __future__ import annotations

import bisect
import math

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
DEFAULT_BUDGET = 1 << 22  # pixel-splat pairs per chunk: ~0.3 GB of float32 intermediates


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


def _alphas(terms: Tensor, coeffs: Tensor, opac: Tensor, t_in: Tensor, done: Tensor):
    """The per pixel-splat quantities of one chunk, [T, P, K] each (no autograd graph).

    terms [P,6], coeffs [T,K,6], opac [T,K], t_in [T,P] transmittance so far, done [T,P] pixels
    already finished. Returns (raw = opacity * gaussian, alpha as composited (0 where skipped),
    transmittance before each splat, mask of alphas that carry a gradient, done after the chunk).

    sigma >= 0 for the positive definite conics projection lets through, so gsplat's sigma < 0
    test (a guard against rounding) has nothing to do here.
    """
    sigma = torch.matmul(terms, coeffs.transpose(1, 2))
    gauss = torch.exp(-sigma)
    raw = opac[:, None, :] * gauss
    alpha = torch.clamp(raw, max=MAX_ALPHA)
    alpha = alpha * (alpha >= ALPHA_THRESHOLD)
    after = t_in[..., None] * torch.cumprod(1.0 - alpha, dim=-1)
    # Transmittance only falls, so the splats a pixel still takes form a prefix of its list, and
    # on that prefix these products are exactly gsplat's sequential ones.
    keep = (after > MIN_TRANSMITTANCE) & ~done[..., None]
    done_out = done | (after[..., -1] <= MIN_TRANSMITTANCE)
    before = torch.cat([t_in[..., None], after[..., :-1]], dim=-1)
    return gauss, raw, alpha * keep, before, done_out


class _Chunk(torch.autograd.Function):
    """One chunk of tiles as an autograd node with a hand-written backward.

    Only the small per-splat inputs are kept; the backward recomputes the [T, P, K] alphas
    (checkpointing) and differentiates front-to-back compositing in closed form:
    dC/da_k = T_k f_k - (sum_{j>k} w_j f_j) / (1 - a_k) and dT_out/da_k = -T_out / (1 - a_k).
    It also yields gsplat's absgrad: the sum over pixels of |dL/dmean2d|.
    """

    @staticmethod
    def forward(ctx, terms, offset, conics, opac, feats, t_in, done, absgrad_sink):
        _, _, alpha, before, done_out = _alphas(terms, _sigma_coefficients(offset, conics), opac, t_in, done)
        weights = alpha * before
        colour = torch.bmm(weights, feats)
        t_out = t_in - weights.sum(dim=-1)  # the weights telescope: sum_k a_k T_k = T_in - T_out
        ctx.save_for_backward(terms, offset, conics, opac, feats, t_in, done)
        ctx.absgrad_sink = absgrad_sink  # (tensor [M, 2], ids [T, K] into it) or None
        ctx.mark_non_differentiable(done_out)
        return colour, t_out, done_out

    @staticmethod
    def backward(ctx, g_colour, g_t_out, _g_done):
        terms, offset, conics, opac, feats, t_in, done = ctx.saved_tensors
        with torch.enable_grad():
            offset_v, conics_v = offset.detach().requires_grad_(), conics.detach().requires_grad_()
            coeffs = _sigma_coefficients(offset_v, conics_v)
        gauss, raw, alpha, before, _ = _alphas(terms, coeffs.detach(), opac, t_in, done)
        weights = alpha * before
        t_out = t_in - weights.sum(dim=-1)
        q = torch.bmm(g_colour, feats.transpose(1, 2))  # f_k . dL/dC, [T, P, K]
        wq = weights * q
        behind = wq.sum(dim=-1, keepdim=True) - torch.cumsum(wq, dim=-1)  # sum_{j>k} w_j q_j
        g_alpha = before * q - (behind + (g_t_out * t_out)[..., None]) / (1.0 - alpha)
        # Only alphas that were composited and not clamped at 0.999 pass a gradient to the splat.
        g_raw = torch.where((alpha > 0) & (raw < MAX_ALPHA), g_alpha, torch.zeros_like(g_alpha))
        g_opac = (g_raw * gauss).sum(dim=1)
        g_sigma = -g_raw * raw
        g_feats = torch.bmm(weights.transpose(1, 2), g_colour)
        # Colour and T_out are both proportional to T_in (T_in >= 1e-4 for pixels still going).
        g_t_in = (wq.sum(dim=-1) + g_t_out * t_out) / t_in
        g_coeffs = torch.matmul(g_sigma.transpose(1, 2), terms)
        g_offset, g_conics = torch.autograd.grad(coeffs, (offset_v, conics_v), g_coeffs)
        if ctx.absgrad_sink is not None:
            sink, ids = ctx.absgrad_sink
            a, b, c = (v[:, None, :] for v in conics.unbind(-1))
            dx = offset[:, None, :, 0] - terms[None, :, None, 1]
            dy = offset[:, None, :, 1] - terms[None, :, None, 2]
            per_pixel = torch.stack([(g_sigma * (a * dx + b * dy)).abs().sum(1),
                                     (g_sigma * (b * dx + c * dy)).abs().sum(1)], dim=-1)
            sink.index_add_(0, ids.reshape(-1), per_pixel.reshape(-1, 2).to(sink.dtype))
        return None, g_offset, g_conics, g_opac, g_feats, g_t_in, None, None


def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tiles_x: int, tiles_y: int):
    """Splat-tile intersections of one camera, as gsplat's isect_tiles: (tile_ids, splat_ids), sorted
    by tile, then depth (ties by splat index). Inputs [N, ...]; only splats with radii > 0 take part."""
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
        tile_ids = ty * tiles_x + tx
        depth_rank = torch.empty_like(ids)
        depth_rank[torch.sort(depths[ids].detach(), stable=True).indices] = torch.arange(len(ids), device=ids.device)
        order = torch.argsort(tile_ids * max(len(ids), 1) + depth_rank[owner])
        return tile_ids[order], ids[owner[order]]


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
    slice_splats: int = 128,
) -> tuple[Tensor, Tensor]:
    """Composite one camera's splats ([N, ...] inputs) into (colour [H, W, D], transmittance [H, W])."""
    device, dtype = means2d.device, means2d.dtype
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles, n_pix, n_feat = tiles_x * tiles_y, tile_size * tile_size, feats.shape[-1]
    tile_ids, splat_ids = bin_tiles(means2d, radii, depths, tile_size, tiles_x, tiles_y)

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
    means2d_p = torch.cat([means2d, means2d.new_zeros(1, 2)])
    conics_p = torch.cat([conics, conics.new_zeros(1, 3)])
    opac_p = torch.cat([opacities, opacities.new_zeros(1)])
    feats_p = torch.cat([feats, feats.new_zeros(1, n_feat)])
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
            offset = means2d_p[gids] - tile_centres[tiles][:, None, :]
            sink = None if absgrad_sink is None else (absgrad_sink, gids)
            c, t, d = _Chunk.apply(
                terms, offset, conics_p[gids], opac_p[gids], feats_p[gids], trans[rows], done[rows], sink
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
