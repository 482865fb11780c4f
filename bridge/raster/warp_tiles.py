"""The compiled rasterizer's compositing kernels for the CPU (NVIDIA Warp's bundled Clang/LLVM).

The rules are ``warp_pixels``' (gsplat's): skip an alpha under 1/255, stop before the splat that would
bring the transmittance to 1e-4 or less, and walk back from each pixel's end in the backward, dividing
out (1 - alpha). Only the layout differs, for a CPU's SIMD units instead of a GPU's threads:

* a launch is one worker thread; it takes 8x8 tiles from a shared counter (an atomic add) until none
  are left, so tiles of unequal depth balance themselves across the threads;
* a tile's 8 rows are 8-wide vectors (Clang's vector extensions: one AVX register on x86-64, two NEON
  registers on arm64), its pixels' state held in them and updated without branches (selects);
* a splat is applied only to the rows its 1/255 ellipse reaches (``reach`` from the binning, with a
  rounding margin: the rows left out are ones where every pixel would skip it anyway), and in the
  forward only to rows with a pixel still open; the backward walks each row only from its pixels'
  last contributing splat (stored by the forward, as gsplat does) to the front;
* exp(-sigma) is a polynomial with an exact power of two (about one unit in the last place from the C
  library's), and a splat's gradient is summed over the rows' lanes in a tree: so the results equal the
  per-pixel kernels' and the PyTorch backend's to float32 rounding.

The kernels are C++ (``wp.func_native``) because the loop over a tile's rows has to stay in vector
registers; Warp compiles them with its own Clang like any other kernel and caches the result.
"""
from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False, "cpu_compiler_flags": "-march=native -ffp-contract=fast"})

CPU_TILE_SIZE = 8  # a row is one 8-wide vector; warp_backend.CPU_TILE must match

_PRELUDE = r"""
typedef float v8 __attribute__((ext_vector_type(8)));
typedef int v8i __attribute__((ext_vector_type(8)));
typedef float v4 __attribute__((ext_vector_type(4)));
typedef float v2 __attribute__((ext_vector_type(2)));
const float ALPHA_MIN = 1.0f / 255.0f;
const float ALPHA_MAX = 0.999f;
const float T_MIN = 1e-4f;
const v8 LANE = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f};
const v8i LANE_I = {0, 1, 2, 3, 4, 5, 6, 7};
// exp(-s) for s >= 0: s = n ln2 + r, |r| <= ln2 / 2, exp(-r) by its Taylor series to the 8th term
// (error under 1e-8), times 2^-n made from its exponent bits (exact).
auto exp_neg = [](v8 s) -> v8 {
    s = s > 0.0f ? s : 0.0f;  // (a NaN becomes 0; callers reject sigma < 0 and NaN themselves)
    s = s < 87.0f ? s : 87.0f;
    v8i n = __builtin_convertvector(s * 1.4426950408889634f + 0.5f, v8i);
    v8 fn = __builtin_convertvector(n, v8);
    v8 x = (fn * 0.693145751953125f - s) + fn * 1.428606765330187e-06f;
    const v8 x2 = x * x;  // Estrin's scheme: a shorter chain of dependent operations than Horner's
    const v8 p = ((1.0f + x) + x2 * (0.5f + x * 0.16666667f))
                 + (x2 * x2) * ((0.041666668f + x * 0.008333334f) + x2 * (0.0013888889f + x * 0.0001984127f));
    return p * (v8)((127 - n) << 23);
};
// A select whose other side is the stored value would become a masked store (slow on x86, and no
// store-to-load forwarding from it): the empty asm makes it a blend and a plain store.
#if defined(__x86_64__) || defined(_M_X64)
#define PLAIN(v) __asm__("" : "+x"(v))
#else
#define PLAIN(v)
#endif
auto hsum = [](v8 v) -> float {
    v4 a = v.lo + v.hi;
    v2 b = a.lo + a.hi;
    return b.x + b.y;
};
auto vload = [](const float* p) -> v8 { v8 v; __builtin_memcpy(&v, p, sizeof(v)); return v; };
auto vabs = [](v8 v) -> v8 { return (v8)((v8i)v & 0x7fffffff); };
auto any = [](v8i m) -> bool { return __builtin_reduce_or(m) != 0; };
auto all = [](v8i m) -> bool { return __builtin_reduce_and(m) != 0; };
const int* offs = (const int*)offsets.data;
const int* idx = (const int*)ids.data;
// One 64-byte record per splat (warp_binning.pack_records): mean x y, conic a b c, opacity, reach, -,
// the four features of this launch, -: the splat's one cache line, fetched ahead (PREFETCH splats on).
const float* S = (const float*)records.data;
const int PREFETCH = 8;
int* counter_ = (int*)counter.data;
#if defined(__x86_64__) || defined(_M_X64)
// Flush subnormals to zero while this kernel runs (restored at its end): exp(-sigma) of a distant pixel
// is tiny, and x86 takes a slow path for each subnormal operand; none of them can reach 1/255.
const unsigned csr_saved = __builtin_ia32_stmxcsr();
__builtin_ia32_ldmxcsr(csr_saved | 0x8040u);
#endif
"""

# Rows of a tile that a splat's ellipse reaches: bits r0..r1 (a NaN reach means all of them).
_ROWS = r"""
        float lo = my - s_[6] - (float)y0 - 0.5f;
        float hi = my + s_[6] - (float)y0 - 0.5f;
        if (hi < 0.0f || lo > 7.0f) continue;
        int r0 = lo > 0.0f ? (int)__builtin_ceilf(lo) : 0;
        int r1 = hi < 7.0f ? (int)__builtin_floorf(hi) : 7;
        rows &= (2u << r1) - (1u << r0);
        if (rows == 0u) continue;
"""

_FORWARD = _PRELUDE + r"""
float* out_c = (float*)colour.data;
float* out_t = (float*)trans.data;
int* out_k = (int*)last.data;
for (;;) {
  const int first = __atomic_fetch_add(counter_, chunk, __ATOMIC_RELAXED);
  if (first >= n_tiles) break;
  const int after = first + chunk < n_tiles ? first + chunk : n_tiles;
  for (int tile = first; tile < after; ++tile) {
    const int x0 = (tile % tiles_x) * 8, y0 = (tile / tiles_x) * 8;
    const int start = offs[tile], end = offs[tile + 1];
    const v8 u = LANE + (float)x0;
    const v8i outside = (LANE_I + x0) >= width;  // lanes past the image's right edge start finished
    // rows 0-7, and row 8: a scratch row, finished from the start, for the odd row out of a pair
    v8 T[9], C0[9], C1[9], C2[9], C3[9];
    v8i done[9], stop[9];
    unsigned open = 0u;  // rows with a pixel that still takes splats
    for (int r = 0; r < 9; ++r) {
      T[r] = 1.0f; C0[r] = 0.0f; C1[r] = 0.0f; C2[r] = 0.0f; C3[r] = 0.0f;
      done[r] = r < 8 ? outside : (v8i)(-1); stop[r] = start;
      if (r < 8 && y0 + r < height) open |= 1u << r;
    }
    for (int k = start; k < end && open != 0u; ++k) {
      if (k + PREFETCH < end) __builtin_prefetch(S + 16 * idx[k + PREFETCH]);
      const float* s_ = S + 16 * idx[k];
      const float my = s_[1];
      unsigned rows = open;
""" + _ROWS + r"""
      const float mx = s_[0], a = s_[2], b = s_[3], c = s_[4], o = s_[5];
      const float f0 = s_[8], f1 = s_[9], f2 = s_[10], f3 = s_[11];
      const v8 dx = mx - u;
      const v8 adx2 = a * dx * dx, bdx = b * dx;
      // Two rows at a time: their exp chains are independent, so the CPU overlaps them.
      auto alpha_of = [&](int r, v8& alpha, v8i& ok) {
        const float dy = my - ((float)(y0 + r) + 0.5f);
        const v8 sigma = 0.5f * (adx2 + c * dy * dy) + bdx * dy;
        alpha = o * exp_neg(sigma);
        alpha = alpha < ALPHA_MAX ? alpha : ALPHA_MAX;
        ok = (sigma >= 0.0f) & (alpha >= ALPHA_MIN);
      };
      auto apply = [&](int r, v8 alpha, v8i ok) {
        const v8 t = T[r];
        const v8 nt = t * (1.0f - alpha);
        ok &= ~done[r];
        const v8i take = ok & (nt > T_MIN);
        const v8i ends = ok & ~(nt > T_MIN);
        const v8 w = take ? alpha * t : 0.0f;
        C0[r] += w * f0; C1[r] += w * f1; C2[r] += w * f2; C3[r] += w * f3;
        v8 t_next = take ? nt : t;
        v8i stop_next = take ? k + 1 : stop[r];
        PLAIN(t_next);
        PLAIN(stop_next);
        T[r] = t_next;
        stop[r] = stop_next;
        if (any(ends)) {
          done[r] |= ends;
          if (r < 8 && all(done[r])) open &= ~(1u << r);
        }
      };
      while (rows != 0u) {
        const int ra = __builtin_ctz(rows);
        rows &= rows - 1u;
        int rb = 8;
        if (rows != 0u) {
          rb = __builtin_ctz(rows);
          rows &= rows - 1u;
        }
        v8 alpha_a, alpha_b;
        v8i ok_a, ok_b;
        alpha_of(ra, alpha_a, ok_a);
        alpha_of(rb, alpha_b, ok_b);
        apply(ra, alpha_a, ok_a);
        apply(rb, alpha_b, ok_b);
      }
    }
    for (int r = 0; r < 8 && y0 + r < height; ++r) {
      for (int l = 0; l < 8 && x0 + l < width; ++l) {
        const long p = (long)(y0 + r) * width + x0 + l;
        out_c[4 * p] = C0[r][l]; out_c[4 * p + 1] = C1[r][l]; out_c[4 * p + 2] = C2[r][l];
        out_c[4 * p + 3] = C3[r][l];
        out_t[p] = T[r][l];
        out_k[p] = stop[r][l];
      }
    }
  }
}
#if defined(__x86_64__) || defined(_M_X64)
__builtin_ia32_ldmxcsr(csr_saved);
#endif
"""

_BACKWARD = _PRELUDE + r"""
const float* in_t = (const float*)trans.data;
const int* in_k = (const int*)last.data;
const float* in_gc = (const float*)g_colour.data;
const float* in_gt = (const float*)g_trans.data;
float* G = (float*)grads.data;  // per splat: mean x y, conic a b c, opacity, absgrad x y, then features
for (;;) {
  const int first = __atomic_fetch_add(counter_, chunk, __ATOMIC_RELAXED);
  if (first >= n_tiles) break;
  const int after = first + chunk < n_tiles ? first + chunk : n_tiles;
  for (int tile = first; tile < after; ++tile) {
    const int x0 = (tile % tiles_x) * 8, y0 = (tile / tiles_x) * 8;
    const int start = offs[tile];
    const v8 u = LANE + (float)x0;
    v8 T[8], GT[8], G0[8], G1[8], G2[8], G3[8], B0[8], B1[8], B2[8], B3[8];
    v8i stop[8];
    int row_end[8];  // one past the last splat any pixel of the row took
    int k_end = start;
    for (int r = 0; r < 8; ++r) {
      T[r] = 0.0f; GT[r] = 0.0f; G0[r] = 0.0f; G1[r] = 0.0f; G2[r] = 0.0f; G3[r] = 0.0f;
      B0[r] = 0.0f; B1[r] = 0.0f; B2[r] = 0.0f; B3[r] = 0.0f;
      stop[r] = start;
      row_end[r] = start;
      if (y0 + r >= height) continue;
      for (int l = 0; l < 8 && x0 + l < width; ++l) {
        const long p = (long)(y0 + r) * width + x0 + l;
        const float t = in_t[p];
        T[r][l] = t;
        // dT_final/dalpha_k = -T_final / (1 - alpha_k): the loss's pull through the final transmittance
        GT[r][l] = with_trans != 0 ? in_gt[p] * t : 0.0f;
        // this launch's channels of the pixel's [channels] gradient row (zero past the last one)
        const float* gc = in_gc + (long)gc_stride * p + gc_first;
        G0[r][l] = gc[0]; G1[r][l] = gc_count > 1 ? gc[1] : 0.0f; G2[r][l] = gc_count > 2 ? gc[2] : 0.0f;
        G3[r][l] = gc_count > 3 ? gc[3] : 0.0f;
        stop[r][l] = in_k[p];
      }
      row_end[r] = __builtin_reduce_max(stop[r]);
      k_end = row_end[r] > k_end ? row_end[r] : k_end;
    }
    for (int k = k_end - 1; k >= start; --k) {
      if (k - PREFETCH >= start) __builtin_prefetch(S + 16 * idx[k - PREFETCH]);
      const int g = idx[k];
      const float* s_ = S + 16 * g;
      const float my = s_[1];
      unsigned rows = 0u;
      for (int r = 0; r < 8; ++r) rows |= (unsigned)(row_end[r] > k) << r;
""" + _ROWS + r"""
      const float mx = s_[0], a = s_[2], b = s_[3], c = s_[4], o = s_[5];
      const float f0 = s_[8], f1 = s_[9], f2 = s_[10], f3 = s_[11];
      const v8 dx = mx - u;
      const v8 adx2 = a * dx * dx, bdx = b * dx, adx = a * dx;
      v8 s_f0 = 0.0f, s_f1 = 0.0f, s_f2 = 0.0f, s_f3 = 0.0f, s_a = 0.0f, s_b = 0.0f, s_c = 0.0f;
      v8 s_x = 0.0f, s_y = 0.0f, s_ax = 0.0f, s_ay = 0.0f, s_o = 0.0f;
      while (rows != 0u) {
        const int r = __builtin_ctz(rows);
        rows &= rows - 1u;
        const float dy = my - ((float)(y0 + r) + 0.5f);
        const v8 sigma = 0.5f * (adx2 + c * dy * dy) + bdx * dy;
        const v8 e = exp_neg(sigma);
        const v8 raw = o * e;
        const v8 alpha = raw < ALPHA_MAX ? raw : ALPHA_MAX;
        const v8i valid = (k < stop[r]) & (sigma >= 0.0f) & (alpha >= ALPHA_MIN);
        const v8 ra = 1.0f / (1.0f - alpha);
        v8 t = valid ? T[r] * ra : T[r];  // the transmittance in front of this splat
        PLAIN(t);
        T[r] = t;
        const v8 w = valid ? alpha * t : 0.0f;
        const v8 gc0 = G0[r], gc1 = G1[r], gc2 = G2[r], gc3 = G3[r];
        s_f0 += w * gc0; s_f1 += w * gc1; s_f2 += w * gc2; s_f3 += w * gc3;
        const v8 g_alpha = ((t * f0 - ra * B0[r]) * gc0 + (t * f1 - ra * B1[r]) * gc1
                            + (t * f2 - ra * B2[r]) * gc2 + (t * f3 - ra * B3[r]) * gc3) - GT[r] * ra;
        B0[r] += w * f0; B1[r] += w * f1; B2[r] += w * f2; B3[r] += w * f3;
        const v8i passes = valid & (raw < ALPHA_MAX);  // a clamped alpha passes no gradient to its splat
        const v8 gs = passes ? -raw * g_alpha : 0.0f;
        s_a += 0.5f * gs * dx * dx;
        s_b += gs * dx * dy;
        s_c += 0.5f * gs * dy * dy;
        const v8 gx = gs * (adx + b * dy);
        const v8 gy = gs * (bdx + c * dy);
        s_x += gx; s_y += gy;
        s_ax += vabs(gx); s_ay += vabs(gy);
        s_o += passes ? e * g_alpha : 0.0f;
      }
      float* gg = G + (long)gstride * g;
      gg[foff] += hsum(s_f0); gg[foff + 1] += hsum(s_f1); gg[foff + 2] += hsum(s_f2); gg[foff + 3] += hsum(s_f3);
      gg[0] += hsum(s_x); gg[1] += hsum(s_y);
      gg[2] += hsum(s_a); gg[3] += hsum(s_b); gg[4] += hsum(s_c);
      gg[5] += hsum(s_o);
      if (with_absgrad != 0) { gg[6] += hsum(s_ax); gg[7] += hsum(s_ay); }
    }
  }
}
#if defined(__x86_64__) || defined(_M_X64)
__builtin_ia32_ldmxcsr(csr_saved);
#endif
"""


@wp.func_native(_FORWARD)
def _forward_tiles(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32), records: wp.array(dtype=float),
                   width: int, height: int, tiles_x: int, n_tiles: int, counter: wp.array(dtype=wp.int32),
                   chunk: int, colour: wp.array(dtype=wp.vec4), trans: wp.array(dtype=float),
                   last: wp.array(dtype=wp.int32)):
    ...


@wp.func_native(_BACKWARD)
def _backward_tiles(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32), records: wp.array(dtype=float),
                    width: int, height: int, tiles_x: int, n_tiles: int, counter: wp.array(dtype=wp.int32),
                    chunk: int, trans: wp.array(dtype=float), last: wp.array(dtype=wp.int32),
                    g_colour: wp.array(dtype=float), gc_stride: int, gc_first: int, gc_count: int,
                    g_trans: wp.array(dtype=float), with_trans: int, grads: wp.array(dtype=float), gstride: int,
                    foff: int, with_absgrad: int):
    ...


@wp.kernel
def composite_forward_cpu(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
                          records: wp.array(dtype=float), width: int, height: int, tiles_x: int, n_tiles: int,
                          counter: wp.array(dtype=wp.int32), chunk: int,
                          colour: wp.array(dtype=wp.vec4), trans: wp.array(dtype=float),
                          last: wp.array(dtype=wp.int32)):
    """One worker: tiles from ``counter`` (``chunk`` at a time) until ``n_tiles`` are taken."""
    _forward_tiles(offsets, ids, records, width, height, tiles_x, n_tiles, counter, chunk, colour, trans, last)


@wp.kernel
def composite_backward_cpu(offsets: wp.array(dtype=wp.int32), ids: wp.array(dtype=wp.int32),
                           records: wp.array(dtype=float), width: int, height: int, tiles_x: int, n_tiles: int,
                           counter: wp.array(dtype=wp.int32), chunk: int,
                           trans: wp.array(dtype=float), last: wp.array(dtype=wp.int32),
                           g_colour: wp.array(dtype=float), gc_stride: int, gc_first: int, gc_count: int,
                           g_trans: wp.array(dtype=float), with_trans: int,
                           grads: wp.array(dtype=float), gstride: int, foff: int, with_absgrad: int):
    """One worker, as the forward; gradients go into this worker's own buffer ``grads`` (``gstride`` floats a
    splat, this launch's features at ``foff``), which the caller sums. ``g_colour`` is the colour's gradient,
    ``gc_stride`` floats a pixel, of which this launch takes ``gc_count`` (at most 4) from ``gc_first``."""
    _backward_tiles(offsets, ids, records, width, height, tiles_x, n_tiles, counter, chunk, trans, last, g_colour,
                    gc_stride, gc_first, gc_count, g_trans, with_trans, grads, gstride, foff, with_absgrad)


# ---- the CPU's binning order: the visible splats in depth order, and their record numbers ----------------
# Task 0 lists the visible splats (both radii > 0) in depth order, ties by index (a stable LSD radix sort of
# the depths' bits, as ``torch.sort(..., stable=True)`` orders them); task 1 numbers them by the tile their
# mean is in (a stable counting sort: ``perm``, record -> splat, and ``labels``, splat -> record). The two
# tasks are independent: the caller runs them on two threads.

_ORDER = r"""
const float* M = (const float*)means2d.data;  // x y per splat
const int* R = (const int*)radii.data;
const float* D = (const float*)depths.data;
int* out = task == 0 ? (int*)order.data : (int*)perm.data;
int* lab = (int*)labels.data;
unsigned* sc = (unsigned*)scratch.data;  // task 0: 3 n words; task 1: n + n_tiles + 1
int m = 0;
if (task == 0) {
  unsigned* key = sc;
  unsigned* key2 = sc + n;
  int* tmp = (int*)(sc + 2 * n);
  unsigned hist[4][256];
  for (int p = 0; p < 4; ++p) for (int b = 0; b < 256; ++b) hist[p][b] = 0u;
  for (int i = 0; i < n; ++i) {
    if (R[2 * i] > 0 && R[2 * i + 1] > 0) {
      float d = D[i] + 0.0f;  // -0 is +0, as in a comparison
      unsigned u;
      __builtin_memcpy(&u, &d, 4);
      u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
      if (d != d) u = 0xffffffffu;  // NaN last, as torch.sort puts it
      key[m] = u;
      out[m] = i;
      for (int p = 0; p < 4; ++p) hist[p][(u >> (8 * p)) & 255u] += 1u;
      ++m;
    }
  }
  int* src = out;
  int* dst = tmp;
  unsigned* ksrc = key;
  unsigned* kdst = key2;
  for (int p = 0; p < 4; ++p) {
    unsigned* h = hist[p];
    bool trivial = false;
    for (int b = 0; b < 256; ++b) if (h[b] == (unsigned)m) trivial = true;
    if (trivial || m == 0) continue;  // every key has this byte: the pass would keep the order
    unsigned sum = 0u;
    for (int b = 0; b < 256; ++b) { const unsigned c = h[b]; h[b] = sum; sum += c; }
    for (int j = 0; j < m; ++j) {
      const unsigned u = ksrc[j];
      const unsigned at = h[(u >> (8 * p)) & 255u]++;
      kdst[at] = u;
      dst[at] = src[j];
    }
    int* t = src; src = dst; dst = t;
    unsigned* kt = ksrc; ksrc = kdst; kdst = kt;
  }
  if (src != out) for (int j = 0; j < m; ++j) out[j] = src[j];
} else {
  int* cell = (int*)sc;
  unsigned* h = sc + n;
  for (int t = 0; t <= n_tiles; ++t) h[t] = 0u;
  for (int i = 0; i < n; ++i) {
    lab[i] = 0;
    if (R[2 * i] > 0 && R[2 * i + 1] > 0) {
      float cx = M[2 * i] / (float)ts, cy = M[2 * i + 1] / (float)ts;
      cx = cx != cx ? 0.0f : cx;
      cy = cy != cy ? 0.0f : cy;
      cx = cx < 0.0f ? 0.0f : cx;
      cy = cy < 0.0f ? 0.0f : cy;
      cx = cx > (float)(tiles_x - 1) ? (float)(tiles_x - 1) : cx;
      cy = cy > (float)(tiles_y - 1) ? (float)(tiles_y - 1) : cy;
      const int c = (int)cy * tiles_x + (int)cx;
      cell[m] = c;
      out[m] = i;
      h[c + 1] += 1u;
      ++m;
    }
  }
  for (int t = 0; t < n_tiles; ++t) h[t + 1] += h[t];
  // out holds the visible splats in index order: their record numbers into labels, then out from labels.
  for (int j = 0; j < m; ++j) lab[out[j]] = (int)(h[cell[j]]++);
  for (int i = 0; i < n; ++i) if (R[2 * i] > 0 && R[2 * i + 1] > 0) out[lab[i]] = i;
}
((int*)count.data)[0] = m;
"""


@wp.func_native(_ORDER)
def _bin_order(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), depths: wp.array(dtype=float),
               n: int, ts: int, tiles_x: int, tiles_y: int, n_tiles: int, task: int, order: wp.array(dtype=wp.int32),
               perm: wp.array(dtype=wp.int32), labels: wp.array(dtype=wp.int32), count: wp.array(dtype=wp.int32),
               scratch: wp.array(dtype=wp.int32)):
    ...


@wp.kernel
def bin_order_cpu(means2d: wp.array(dtype=wp.vec2), radii: wp.array(dtype=wp.vec2i), depths: wp.array(dtype=float),
                  n: int, ts: int, tiles_x: int, tiles_y: int, n_tiles: int, task: int,
                  order: wp.array(dtype=wp.int32), perm: wp.array(dtype=wp.int32), labels: wp.array(dtype=wp.int32),
                  count: wp.array(dtype=wp.int32), scratch: wp.array(dtype=wp.int32)):
    """One task of the binning's order (above); ``count`` receives the number of visible splats."""
    _bin_order(means2d, radii, depths, n, ts, tiles_x, tiles_y, n_tiles, task, order, perm, labels, count, scratch)


@wp.kernel
def scatter_grads(perm: wp.array(dtype=wp.int32), first: wp.array2d(dtype=float), second: wp.array2d(dtype=float),
                  with_second: int, out: wp.array2d(dtype=float)):
    """The backward's per-record gradient rows (``first``, plus ``second`` when ``with_second``) to their splats."""
    p = wp.tid()
    i = perm[p]
    for k in range(out.shape[1]):
        v = first[p, k]
        if with_second != 0:
            v = v + second[p, k]
        out[i, k] = v
