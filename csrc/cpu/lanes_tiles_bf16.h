// Register-tile kernels of the bf16 lanes path (bilstm_lanes_bf16.cpp), AVX512-BF16: the fp32 lanes tiles
// (lanes_tiles.h) with their products as vdpbf16ps over k pairs, fp32 accumulation.
//
// Operands of the products are bf16 pairs, one 32-bit word per (k pair, lane): lane b of word row p holds
// (bf16(v[2p][b]), bf16(v[2p + 1][b])), so that one vdpbf16ps adds w[2p] v[2p] + w[2p+1] v[2p+1] to 16 fp32 lane
// accumulators. Rounding (round to nearest even) is what the general bf16 path rounds, no more:
//   forward : x, w_ih, w_hh and h_prev rounded; bias, the gates and the cell update in fp32;
//   backward: the gate gradients as operand of dh = W_hh^T dgates and dx = W_ih^T dgates rounded (and w_hh,
//             w_ih); the cell-gradient recurrence in fp32; dbias sums the unrounded gate gradients.
// The tiles write every fp32 result the fp32 path writes (acts, c, h, dgates) plus the bf16 pair rows the next
// step reads (h pairs in the forward, dgates pairs in the backward), in their epilogues.
// Private to bilstm_lanes_bf16.cpp (the only file that includes it).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/bf16_gemm.h"
#include "cpu/isa.h"
#include "cpu/lane_vectors.h"
#include "cpu/simd_math.h"

#if MTLFAST_X86
namespace mtlfast {
namespace cpu {
namespace {

constexpr int kFwdUnitsB = 2;   // forward tile: 4 gates x 2 units (one h pair row) x V vectors of 16 lanes
constexpr int kBwdUnitsB = 12;  // backward tile: 12 units (6 pairs) x V vectors

// Two fp32 vectors -> one word per lane: bf16(lo) | bf16(hi) << 16.
MTLFAST_BF16_TARGET MTLFAST_AI __m512i pair_bf16(__m512 lo, __m512 hi) {
  const __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
  const __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
  return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

// dst[i] = pair(r0[i], r1[i]) for i < n (r1 == nullptr: zero high halves); the last n % 16 through masks.
MTLFAST_BF16_TARGET inline void pair_rows(const float* r0, const float* r1, int64_t n, uint32_t* dst) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m512 a = _mm512_maskz_loadu_ps(m, r0 + i);
    const __m512 b = r1 != nullptr ? _mm512_maskz_loadu_ps(m, r1 + i) : _mm512_setzero_ps();
    _mm512_mask_storeu_epi32(dst + i, m, pair_bf16(a, b));
  }
}

// dst[p] = pair(src[2p], src[2p + 1]) for p < ceil(n / 2) (a missing src[n] is zero): the row rounded to bf16 in
// place order, read as 32-bit words.
MTLFAST_BF16_TARGET inline void row_words(const float* src, int64_t n, uint32_t* dst) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = std::min<int64_t>(16, n - i), words = (left + 1) / 2;
    const __mmask16 m = static_cast<__mmask16>((1u << left) - 1u);
    const __m256i w = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi32(dst + i / 2, static_cast<__mmask8>((1u << words) - 1u), w);
  }
}

// Gate-row pairs of a [4H][n] weight, transposed for the backward products: out[(g Hh + q) n + c] =
// pair(w[g H + 2q][c], w[g H + 2q + 1][c]) with Hh = ceil(H / 2) (a missing odd row is zero).
MTLFAST_BF16_TARGET inline void pack_gate_row_pairs(const float* w, int64_t H, int64_t n, uint32_t* out) {
  const int64_t Hh = (H + 1) / 2;
  for (int64_t g = 0; g < 4; ++g)
    for (int64_t q = 0; q < Hh; ++q) {
      const float* r0 = w + (g * H + 2 * q) * n;
      pair_rows(r0, 2 * q + 1 < H ? r0 + n : nullptr, n, out + (g * Hh + q) * n);
    }
}

// Forward panels: [unit block j0][k pair p][gate g, unit u] = pair(w[g H + j0 + u][2p], w[..][2p + 1]) of a
// [4H][n] weight, blocks of kFwdUnitsB units; a block starts at word j0 * 4 * ceil(n / 2).
MTLFAST_BF16_TARGET inline void pack_gate_panels_bf16(const float* w, int64_t H, int64_t n, uint32_t* out) {
  const int64_t np = (n + 1) / 2;
  std::vector<uint32_t> words(np);
  for (int64_t j0 = 0; j0 < H; j0 += kFwdUnitsB) {
    const int64_t U = std::min<int64_t>(kFwdUnitsB, H - j0);
    uint32_t* panel = out + j0 * 4 * np;
    for (int64_t g = 0; g < 4; ++g)
      for (int64_t u = 0; u < U; ++u) {
        row_words(w + (g * H + j0 + u) * n, n, words.data());
        for (int64_t p = 0; p < np; ++p) panel[p * 4 * U + g * U + u] = words[p];
      }
  }
}

// acc[r][v] += sum_p panel[p][r] . src[p][16 v ..] over np k pairs (vdpbf16ps).
template <int U, int V, class LV>
MTLFAST_BF16_TARGET MTLFAST_AI void dp_panel(typename LV::F (&acc)[4 * U][V], const uint32_t* panel,
                                             const uint32_t* src, int64_t np, int64_t ld) {
  for (int64_t p = 0; p < np; ++p) {
    typename LV::BH b[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) b[v] = LV::load_bh(src + p * ld + 16 * v);
    const uint32_t* w = panel + p * 4 * U;
#pragma GCC unroll 8
    for (int r = 0; r < 4 * U; ++r) {
      const typename LV::BH wv = LV::set1_bh(w[r]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = LV::dp(acc[r][v], wv, b[v]);
    }
  }
}

// One forward step, U units from j0 (even), V lane vectors: as fwd_tile (lanes_tiles.h) with the products over
// bf16 pairs: xb (x^T pairs, column t Bp + l0), hb (h_prev pairs, column tp Bp + l0; nullptr: zero state). Also
// writes this step's h pairs to hbo (column t Bp + l0). LV: 16- or 8-lane products (lane_vectors.h).
template <int U, int V, class LV = Lanes16>
MTLFAST_BF16_TARGET void fwd_tile_bf16(int64_t H, int64_t ld, const uint32_t* wp, const uint32_t* hb,
                                       const float* cp, float* acts, const float* bias, float* c, float* h,
                                       uint32_t* hbo, int64_t j0, const __mmask16* act, int64_t Ep,
                                       const uint32_t* wxp, const uint32_t* xb) {
  typename LV::F acc[4 * U][V];
#pragma GCC unroll 8
  for (int r = 0; r < 4 * U; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = LV::zero();
  dp_panel<U, V, LV>(acc, wxp, xb, Ep, ld);
  if (hb != nullptr) dp_panel<U, V, LV>(acc, wp, hb, (H + 1) / 2, ld);
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const int64_t o16 = 16 * v;
    __m512 hv[U];
#pragma GCC unroll 2
    for (int u = 0; u < U; ++u) {
      const int64_t j = j0 + u;
      __m512 pre[4];
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) pre[g] = _mm512_add_ps(LV::wide(acc[g * U + u][v]), _mm512_set1_ps(bias[g * H + j]));
      const __m512 i = v_sigmoid(pre[0]), f = v_sigmoid(pre[1]), gg = v_tanh(pre[2]), o = v_sigmoid(pre[3]);
      const __m512 ig = _mm512_mul_ps(i, gg);
      const __m512 cn = cp != nullptr ? _mm512_fmadd_ps(f, _mm512_load_ps(cp + j * ld + o16), ig) : ig;
      _mm512_stream_ps(acts + j * ld + o16, i);
      _mm512_stream_ps(acts + (H + j) * ld + o16, f);
      _mm512_stream_ps(acts + (2 * H + j) * ld + o16, gg);
      _mm512_stream_ps(acts + (3 * H + j) * ld + o16, o);
      _mm512_store_ps(c + j * ld + o16, _mm512_maskz_mov_ps(act[v], cn));
      hv[u] = _mm512_maskz_mov_ps(act[v], _mm512_mul_ps(o, v_tanh(cn)));
      _mm512_store_ps(h + j * ld + o16, hv[u]);
    }
#pragma GCC unroll 1
    for (int u = 0; u < U; u += 2)
      _mm512_store_si512(hbo + ((j0 + u) / 2) * ld + o16, pair_bf16(hv[u], u + 1 < U ? hv[u + 1] : _mm512_setzero_ps()));
  }
}

template <int V, class LV = Lanes16>
MTLFAST_BF16_TARGET void fwd_units_bf16(int64_t H, int64_t ld, const uint32_t* wpk, const uint32_t* hb,
                                        const float* cp, float* acts, const float* bias, float* c, float* h,
                                        uint32_t* hbo, const __mmask16* act, int64_t E, const uint32_t* wxk,
                                        const uint32_t* xb, int64_t pf) {
  const int64_t Hh = (H + 1) / 2, Ep = (E + 1) / 2;
  for (int64_t j0 = 0; j0 < H; j0 += kFwdUnitsB) {
    const uint32_t* wp = wpk + j0 * 4 * Hh;
    const uint32_t* wxp = wxk + j0 * 4 * Ep;
    prefetch_forward_states<V>(c, h, j0, std::min<int64_t>(kFwdUnitsB, H - j0), ld, pf);
    if (pf != 0) prefetch_rows<V>(hbo + (j0 / 2) * ld + pf, ld, 1, true);  // and the h-pair row
    if (H - j0 >= 2) {
      fwd_tile_bf16<2, V, LV>(H, ld, wp, hb, cp, acts, bias, c, h, hbo, j0, act, Ep, wxp, xb);
    } else {
      fwd_tile_bf16<1, V, LV>(H, ld, wp, hb, cp, acts, bias, c, h, hbo, j0, act, Ep, wxp, xb);
    }
  }
}

// One backward step, U units from j0 (even), V vectors: as bwd_tile (lanes_tiles.h) with dh = W_hh^T dgates_next
// over gate-row pairs (wT: pack_gate_row_pairs of w_hh, [4 Hh][H]; dnb: next step's dgates pairs at column
// tn Bp + l0, nullptr at the last step). Writes dg (fp32) and its pairs dgb (rows g Hh + j / 2).
template <int U, int V, class LV = Lanes16>
MTLFAST_BF16_TARGET void bwd_tile_bf16(int64_t H, int64_t ld, const uint32_t* wT, const uint32_t* dnb,
                                       const float* acts, const float* c, const float* cp, const float* dyT,
                                       float* dc, int64_t ldc, float* dg, uint32_t* dgb, int64_t j0,
                                       const __mmask16* act) {
  const int64_t Hh = (H + 1) / 2;
  typename LV::F acc[U][V];
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[u][v] = LV::zero();
  if (dnb != nullptr) {
    for (int64_t p = 0; p < 4 * Hh; ++p) {
      typename LV::BH db[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) db[v] = LV::load_bh(dnb + p * ld + 16 * v);
      const uint32_t* w = wT + p * H + j0;
#pragma GCC unroll 12
      for (int u = 0; u < U; ++u) {
        const typename LV::BH wv = LV::set1_bh(w[u]);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[u][v] = LV::dp(acc[u][v], wv, db[v]);
      }
    }
  }
  const __m512 one = _mm512_set1_ps(1.0f);
#pragma GCC unroll 1
  for (int u0 = 0; u0 < U; u0 += 2) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const int64_t o16 = 16 * v;
      __m512 gv[2][4];
#pragma GCC unroll 2
      for (int s = 0; s < 2; ++s) {
        const int u = u0 + s;
        if (u >= U) {
#pragma GCC unroll 4
          for (int g = 0; g < 4; ++g) gv[s][g] = _mm512_setzero_ps();
          continue;
        }
        const int64_t j = j0 + u;
        const __m512 i = _mm512_load_ps(acts + j * ld + o16), f = _mm512_load_ps(acts + (H + j) * ld + o16);
        const __m512 gg = _mm512_load_ps(acts + (2 * H + j) * ld + o16);
        const __m512 o = _mm512_load_ps(acts + (3 * H + j) * ld + o16);
        const __m512 dh = _mm512_add_ps(LV::wide(acc[u][v]), _mm512_load_ps(dyT + j * ld + o16));
        const __m512 tc = v_tanh(_mm512_load_ps(c + j * ld + o16));
        const __m512 dct = _mm512_fmadd_ps(_mm512_mul_ps(dh, o), _mm512_fnmadd_ps(tc, tc, one),
                                           _mm512_load_ps(dc + j * ldc + o16));
        const __m512 cpv = cp != nullptr ? _mm512_load_ps(cp + j * ld + o16) : _mm512_setzero_ps();
        const __mmask16 m = act[v];
        gv[s][0] = _mm512_maskz_mul_ps(m, _mm512_mul_ps(dct, gg), _mm512_fnmadd_ps(i, i, i));
        gv[s][1] = _mm512_maskz_mul_ps(m, _mm512_mul_ps(dct, cpv), _mm512_fnmadd_ps(f, f, f));
        gv[s][2] = _mm512_maskz_mul_ps(m, _mm512_mul_ps(dct, i), _mm512_fnmadd_ps(gg, gg, one));
        gv[s][3] = _mm512_maskz_mul_ps(m, _mm512_mul_ps(dh, tc), _mm512_fnmadd_ps(o, o, o));
#pragma GCC unroll 4
        for (int g = 0; g < 4; ++g) _mm512_store_ps(dg + (g * H + j) * ld + o16, gv[s][g]);
        _mm512_store_ps(dc + j * ldc + o16, _mm512_maskz_mul_ps(m, dct, f));
      }
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g)
        _mm512_store_si512(dgb + (g * Hh + (j0 + u0) / 2) * ld + o16, pair_bf16(gv[0][g], gv[1][g]));
    }
  }
}

#define MTLFAST_BWD_CASE_B(U) \
  case U: bwd_tile_bf16<U, V, LV>(H, ld, wT, dnb, acts, c, cp, dyT, dc, ldc, dg, dgb, j0, act); break;
template <int V, class LV = Lanes16>
MTLFAST_BF16_TARGET void bwd_units_bf16(int64_t H, int64_t ld, const uint32_t* wT, const uint32_t* dnb,
                                        const float* acts, const float* c, const float* cp, const float* dyT,
                                        float* dc, int64_t ldc, float* dg, uint32_t* dgb, const __mmask16* act,
                                        int64_t pf, bool pf_cp) {
  for (int64_t j0 = 0; j0 < H; j0 += kBwdUnitsB) {
    prefetch_backward_loads<V>(acts, dyT, cp, H, j0, std::min<int64_t>(kBwdUnitsB, H - j0), ld, pf, pf_cp);
    switch (std::min<int64_t>(kBwdUnitsB, H - j0)) {
      MTLFAST_BWD_CASE_B(12) MTLFAST_BWD_CASE_B(11) MTLFAST_BWD_CASE_B(10) MTLFAST_BWD_CASE_B(9)
      MTLFAST_BWD_CASE_B(8) MTLFAST_BWD_CASE_B(7) MTLFAST_BWD_CASE_B(6) MTLFAST_BWD_CASE_B(5)
      MTLFAST_BWD_CASE_B(4) MTLFAST_BWD_CASE_B(3) MTLFAST_BWD_CASE_B(2)
      default: bwd_tile_bf16<1, V, LV>(H, ld, wT, dnb, acts, c, cp, dyT, dc, ldc, dg, dgb, j0, act); break;
    }
  }
}
#undef MTLFAST_BWD_CASE_B

// dst[u][lanes] = sum_p w[p][u] . src[p][lanes] over P gate-row pairs (w at column e0, row stride ldw): one
// step's slice of dx^T = W_ih^T dgates from the dgates pairs (8 lanes: the upper 8 of dst's 16 written zero).
template <int U, int V, class LV = Lanes16>
MTLFAST_BF16_TARGET void wt_tile_bf16(int64_t P, int64_t ld, const uint32_t* w, int64_t ldw, const uint32_t* src,
                                      float* dst) {
  typename LV::F acc[U][V];
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[u][v] = LV::zero();
  for (int64_t p = 0; p < P; ++p) {
    typename LV::BH db[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) db[v] = LV::load_bh(src + p * ld + 16 * v);
    const uint32_t* wk = w + p * ldw;
#pragma GCC unroll 12
    for (int u = 0; u < U; ++u) {
      const typename LV::BH wv = LV::set1_bh(wk[u]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[u][v] = LV::dp(acc[u][v], wv, db[v]);
    }
  }
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) _mm512_stream_ps(dst + u * ld + 16 * v, LV::wide(acc[u][v]));  // read after the array
}

#define MTLFAST_WT_CASE_B(U) \
  case U: wt_tile_bf16<U, V, LV>(P, ld, w + e0, E, src, dst + e0 * ld); break;
template <int V, class LV = Lanes16>
MTLFAST_BF16_TARGET void dx_units_bf16(int64_t E, int64_t P, int64_t ld, const uint32_t* w, const uint32_t* src,
                                       float* dst) {
  const int64_t nblk = (E + kBwdUnitsB - 1) / kBwdUnitsB;  // row blocks of at most 12, spread evenly
  for (int64_t bi = 0, e0 = 0; bi < nblk; ++bi) {
    const int64_t n = (E - e0) / (nblk - bi);
    switch (n) {
      MTLFAST_WT_CASE_B(12) MTLFAST_WT_CASE_B(11) MTLFAST_WT_CASE_B(10) MTLFAST_WT_CASE_B(9) MTLFAST_WT_CASE_B(8)
      MTLFAST_WT_CASE_B(7) MTLFAST_WT_CASE_B(6) MTLFAST_WT_CASE_B(5) MTLFAST_WT_CASE_B(4) MTLFAST_WT_CASE_B(3)
      MTLFAST_WT_CASE_B(2) default: wt_tile_bf16<1, V, LV>(P, ld, w + e0, E, src, dst + e0 * ld); break;
    }
    e0 += n;
  }
}
#undef MTLFAST_WT_CASE_B

}  // namespace
}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
