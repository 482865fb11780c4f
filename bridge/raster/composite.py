"""Front-to-back alpha compositing of projected splats, tile by tile, with gsplat's exact rules.

A pixel takes splats in depth order; a splat whose alpha ``min(0.999, o * exp(-sigma))`` is below
1/255 is skipped, and the pixel stops *before* the splat that would bring its transmittance to 1e-4
or less. Those rules are applied to whole [tiles, pixels, splats] blocks at once: the transmittance
after each splat is a cumulative product, and because it only falls, "not yet finished" is a
prefix of the depth-ordered list, so a mask reproduces the sequential early stop exactly.

Memory stays bounded: tiles are processed in chunks of at most ``budget`` pixel-splat pairs, and
tiles holding more splats than fit are split into depth slices that carry transmittance forward.
Each chunk is one autograd node that keeps only its small inputs and recomputes its intermediates
in the backward pass (checkpointing), so a training step costs about one extra forward.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
DEFAULT_BUDGET = 1 << 22  # pixel-splat pairs per chunk: ~0.3 GB of float32 intermediates


def _blend(delta: Tensor, conics: Tensor, opac: Tensor, feats: Tensor, t_in: Tensor, done: Tensor):
    """One chunk. delta [T,P,K,2] (mean - pixel), conics [T,K,3], opac [T,K], feats [T,K,D],
    t_in [T,P] transmittance so far, done [T,P] bool. Returns (colour [T,P,D], t_out, done_out)."""
    dx, dy = delta[..., 0], delta[..., 1]
    ca, cb, cc = (v[:, None, :] for v in conics.unbind(-1))
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    alpha = torch.clamp(opac[:, None, :] * torch.exp(-sigma), max=MAX_ALPHA)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    with torch.no_grad():
        after_all = t_in[..., None] * torch.cumprod(1.0 - alpha, dim=-1)
        keep = (after_all > MIN_TRANSMITTANCE) & ~done[..., None]
        done_out = done | (after_all[..., -1] <= MIN_TRANSMITTANCE)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    after = t_in[..., None] * torch.cumprod(1.0 - alpha, dim=-1)
    before = torch.cat([t_in[..., None], after[..., :-1]], dim=-1)
    colour = torch.bmm(alpha * before, feats)
    return colour, after[..., -1], done_out


class _Chunk(torch.autograd.Function):
    """_blend as a checkpointed node; also yields gsplat's absgrad (sum over pixels of |dL/dmean2d|)."""

    @staticmethod
    def forward(ctx, pix, means2d, conics, opac, feats, t_in, done, absgrad_sink):
        delta = means2d[:, None, :, :] - pix[:, :, None, :]
        colour, t_out, done_out = _blend(delta, conics, opac, feats, t_in, done)
        ctx.save_for_backward(pix, means2d, conics, opac, feats, t_in, done)
        ctx.absgrad_sink = absgrad_sink  # (tensor [M,2], flat ids [T,K]) or None
        ctx.mark_non_differentiable(done_out)
        return colour, t_out, done_out

    @staticmethod
    def backward(ctx, g_colour, g_t_out, _g_done):
        pix, means2d, conics, opac, feats, t_in, done = ctx.saved_tensors
        with torch.enable_grad():
            inputs = [x.detach().requires_grad_() for x in (means2d, conics, opac, feats, t_in)]
            delta = inputs[0][:, None, :, :] - pix[:, :, None, :]
            colour, t_out, _ = _blend(delta, *inputs[1:], done)
            g_delta, g_conics, g_opac, g_feats, g_t_in = torch.autograd.grad(
                (colour, t_out), [delta, *inputs[1:]], (g_colour, g_t_out), allow_unused=True
            )
        if ctx.absgrad_sink is not None:
            sink, flat_ids = ctx.absgrad_sink
            sink.index_add_(0, flat_ids.reshape(-1), g_delta.abs().sum(dim=1).reshape(-1, 2).to(sink.dtype))
        return None, g_delta.sum(dim=1), g_conics, g_opac, g_feats, g_t_in, None, None


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
    tile_size: int = 16,
    budget: int = DEFAULT_BUDGET,
    absgrad_sink: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Composite one camera's splats ([N, ...] inputs) into (colour [H, W, D], transmittance [H, W])."""
    device, dtype = means2d.device, means2d.dtype
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles, n_pix, n_feat = tiles_x * tiles_y, tile_size * tile_size, feats.shape[-1]
    tile_ids, splat_ids = bin_tiles(means2d, radii, depths, tile_size, tiles_x, tiles_y)

    # Busiest tiles first, so each chunk pads its tiles to similar lengths and every depth slice
    # is worked on by a prefix of this order.
    per_tile = torch.bincount(tile_ids, minlength=n_tiles)
    starts = torch.cumsum(per_tile, 0) - per_tile
    order = torch.argsort(per_tile, descending=True, stable=True)
    busy = order[per_tile[order] > 0]
    counts = per_tile[busy].tolist()
    starts_busy = starts[busy]

    # A padding splat (index N) with zero opacity is skipped by the alpha threshold.
    pad = means2d.shape[0]
    means2d_p = torch.cat([means2d, means2d.new_zeros(1, 2)])
    conics_p = torch.cat([conics, conics.new_zeros(1, 3)])
    opac_p = torch.cat([opacities, opacities.new_zeros(1)])
    feats_p = torch.cat([feats, feats.new_zeros(1, n_feat)])
    ids_p = torch.cat([splat_ids, splat_ids.new_full((1,), pad)])

    local = torch.arange(n_pix, device=device)
    offs = torch.stack([local % tile_size, local // tile_size], dim=-1).to(dtype) + 0.5

    n_busy = len(counts)
    colour = means2d.new_zeros(n_busy, n_pix, n_feat)
    trans = means2d.new_ones(n_busy, n_pix)
    done = torch.zeros(n_busy, n_pix, dtype=torch.bool, device=device)
    slice_len = max(1, budget // n_pix)
    depth_start = 0
    while n_busy and counts[0] > depth_start:
        active = sum(1 for c in counts if c > depth_start)
        pieces_c, pieces_t, pieces_d = [], [], []
        row = 0
        while row < active:
            k = min(slice_len, counts[row] - depth_start)
            rows = max(1, min(active - row, budget // (n_pix * k)))
            sel = slice(row, row + rows)
            tiles = busy[sel]
            pos = starts_busy[sel, None] + depth_start + torch.arange(k, device=device)
            valid = pos < (starts_busy[sel] + per_tile[tiles])[:, None]
            gids = ids_p[torch.where(valid, pos, torch.full_like(pos, len(splat_ids)))]
            pix = torch.stack([tiles % tiles_x, tiles // tiles_x], dim=-1).to(dtype)[:, None, :] * tile_size + offs
            sink = None if absgrad_sink is None else (absgrad_sink, gids)
            c, t, d = _Chunk.apply(
                pix, means2d_p[gids], conics_p[gids], opac_p[gids], feats_p[gids], trans[sel], done[sel], sink
            )
            pieces_c.append(c)
            pieces_t.append(t)
            pieces_d.append(d)
            row += rows
        colour = torch.cat([colour[:active] + torch.cat(pieces_c), colour[active:]])
        trans = torch.cat([torch.cat(pieces_t), trans[active:]])
        done = torch.cat([torch.cat(pieces_d), done[active:]])
        depth_start += slice_len

    # Scatter the busy tiles back into the image; empty tiles stay transparent.
    full_c = means2d.new_zeros(n_tiles, n_pix, n_feat).index_copy(0, busy, colour)
    full_t = means2d.new_ones(n_tiles, n_pix).index_copy(0, busy, trans)
    image_c = full_c.reshape(tiles_y, tiles_x, tile_size, tile_size, n_feat).permute(0, 2, 1, 3, 4)
    image_t = full_t.reshape(tiles_y, tiles_x, tile_size, tile_size).permute(0, 2, 1, 3)
    image_c = image_c.reshape(tiles_y * tile_size, tiles_x * tile_size, n_feat)[:height, :width]
    image_t = image_t.reshape(tiles_y * tile_size, tiles_x * tile_size)[:height, :width]
    return image_c, image_t
