// Register-tile kernels of the lanes path, AVX-512 (layout in bilstm_lanes.cpp):
//   fwd_tile : 4 gates x U units x V vectors of 16 batch lanes of W_ih x_t + W_hh h_prev, held in registers as
//              rank-1 updates from gate panels, with the gate non-linearities and cell update as its epilogue;
//   bwd_tile : U units x V vectors of W_hh^T dgates_next, epilogue giving the step's gate gradients;
//   wt_tile  : U rows x V vectors of W_ih^T dgates (this step's slice of dx^T);
//   *_units  : the loops over hidden units (or input rows) that call the tiles with their compile-time shapes.
// Private to bilstm_lanes.cpp (the only file that includes it): internal linkage on purpose, so that the
// compiler sees every caller, exactly as when this code and its callers shared one file.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu/isa.h"
#include "cpu/lane_vectors.h"
#include "cpu/simd_math.h"

#if MTLFAST_X86
namespace mtlfast {
namespace cpu {
namespace {

constexpr int kFwdUnits = 3;    // forward tile: 4 gates x 3 units = 12 rows, x 2 vectors of 16 lanes
constexpr int kBwdUnits = 12;   // backward tile: 12 units x 2 vectors

// acc[r][v] += sum_k panel[k][r] * src[k][16 v .. 16 v + 15] for k < n: a panel [n][4U] (gate-major rows of
// U units) times n rows of lanes (row k at src + k * ld), as rank-1 updates held in registers.
template <int U, int V, class LV>
MTLFAST_AVX512_TARGET MTLFAST_AI void fma_panel(typename LV::F (&acc)[4 * U][V], const float* panel, const float* src,
                                                 int64_t n, int64_t ld) {
  for (int64_t k = 0; k < n; ++k) {
    typename LV::F b[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) b[v] = LV::load(src + k * ld + 16 * v);
    const float* w = panel + k * 4 * U;
#pragma GCC unroll 12
    for (int r = 0; r < 4 * U; ++r) {
      const typename LV::F wv = LV::set1(w[r]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = LV::fmadd(wv, b[v], acc[r][v]);
    }
  }
}

// One forward step for U units starting at j0 and V vectors of lanes starting at l0. Pointers are at column
// t * Bp + l0 (acts, c, h) or tp * Bp + l0 (hp, cp; nullptr: zero state); ld = T * Bp. LV: 16- or 8-lane
// products (lane_vectors.h; V = 1 with 8 lanes).
template <int U, int V, class LV = Lanes16>
MTLFAST_AVX512_TARGET void fwd_tile(int64_t H, int64_t ld, const float* wp, const float* hp, const float* cp,
                                    float* acts, const float* bias, float* c, float* h, int64_t j0,
                                    const __mmask16* act, int64_t E, const float* wxp, const float* xc) {
  typename LV::F acc[4 * U][V];
#pragma GCC unroll 12
  for (int r = 0; r < 4 * U; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = LV::zero();
  fma_panel<U, V, LV>(acc, wxp, xc, E, ld);                 // input projection of this step: w_ih panel x x^T
  if (hp != nullptr) fma_panel<U, V, LV>(acc, wp, hp, H, ld);  // recurrent product: w_hh panel x h_{t-1}^T
#pragma GCC unroll 3
  for (int u = 0; u < U; ++u) {
    const int64_t j = j0 + u;
    float* a[4] = {acts + j * ld, acts + (H + j) * ld, acts + (2 * H + j) * ld, acts + (3 * H + j) * ld};
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const int64_t o16 = 16 * v;
      __m512 pre[4];
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g)
        pre[g] = _mm512_add_ps(LV::wide(acc[g * U + u][v]), _mm512_set1_ps(bias[g * H + j]));
      const __m512 i = v_sigmoid(pre[0]), f = v_sigmoid(pre[1]), gg = v_tanh(pre[2]), o = v_sigmoid(pre[3]);
      const __m512 ig = _mm512_mul_ps(i, gg);
      const __m512 cn = cp != nullptr ? _mm512_fmadd_ps(f, _mm512_load_ps(cp + j * ld + o16), ig) : ig;
      // the gate activations are read only by the backward, after the whole array's forward: streaming stores
      _mm512_stream_ps(a[0] + o16, i);
      _mm512_stream_ps(a[1] + o16, f);
      _mm512_stream_ps(a[2] + o16, gg);
      _mm512_stream_ps(a[3] + o16, o);
      // Lanes past their sequence's end (and padding lanes) hold zero states.
      _mm512_store_ps(c + j * ld + o16, _mm512_maskz_mov_ps(act[v], cn));
      _mm512_store_ps(h + j * ld + o16, _mm512_maskz_mov_ps(act[v], _mm512_mul_ps(o, v_tanh(cn))));
    }
  }
}

// One backward step for U units from j0, V lane vectors from l0. dn: next step's gate gradients (column
// tn * Bp + l0; nullptr at the last step); acts, c, dg, dyT at column t * Bp + l0; cp at tp * Bp + l0 (nullptr:
// zero initial state); dc: running cell gradient [H][Bp] at column l0.
template <int U, int V, class LV = Lanes16>
MTLFAST_AVX512_TARGET void bwd_tile(int64_t H, int64_t ld, const float* whh, const float* dn, const float* acts,
                                    const float* c, const float* cp, const float* dyT, float* dc, int64_t ldc,
                                    float* dg, int64_t j0, const __mmask16* act) {
  typename LV::F acc[U][V];
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[u][v] = LV::zero();
  if (dn != nullptr) {
    const int64_t G4 = 4 * H;
    for (int64_t k = 0; k < G4; ++k) {
      typename LV::F db[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) db[v] = LV::load(dn + k * ld + 16 * v);
      const float* w = whh + k * H + j0;
#pragma GCC unroll 12
      for (int u = 0; u < U; ++u) {
        const typename LV::F wv = LV::set1(w[u]);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[u][v] = LV::fmadd(wv, db[v], acc[u][v]);
      }
    }
  }
  const __m512 one = _mm512_set1_ps(1.0f);
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u) {
    const int64_t j = j0 + u;
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      const int64_t o16 = 16 * v;
      const __m512 i = _mm512_load_ps(acts + j * ld + o16), f = _mm512_load_ps(acts + (H + j) * ld + o16);
      const __m512 gg = _mm512_load_ps(acts + (2 * H + j) * ld + o16);
      const __m512 o = _mm512_load_ps(acts + (3 * H + j) * ld + o16);
      const __m512 dh = _mm512_add_ps(LV::wide(acc[u][v]), _mm512_load_ps(dyT + j * ld + o16));
      const __m512 tc = v_tanh(_mm512_load_ps(c + j * ld + o16));
      const __m512 dct = _mm512_fmadd_ps(_mm512_mul_ps(dh, o), _mm512_fnmadd_ps(tc, tc, one),
                                         _mm512_load_ps(dc + j * ldc + o16));
      const __m512 cpv = cp != nullptr ? _mm512_load_ps(cp + j * ld + o16) : _mm512_setzero_ps();
      const __mmask16 m = act[v];
      _mm512_store_ps(dg + j * ld + o16,
                      _mm512_maskz_mul_ps(m, _mm512_mul_ps(dct, gg), _mm512_fnmadd_ps(i, i, i)));
      _mm512_store_ps(dg + (H + j) * ld + o16,
                      _mm512_maskz_mul_ps(m, _mm512_mul_ps(dct, cpv), _mm512_fnmadd_ps(f, f, f)));
      _mm512_store_ps(dg + (2 * H + j) * ld + o16,
                      _mm512_maskz_mul_ps(m, _mm512_mul_ps(dct, i), _mm512_fnmadd_ps(gg, gg, one)));
      _mm512_store_ps(dg + (3 * H + j) * ld + o16,
                      _mm512_maskz_mul_ps(m, _mm512_mul_ps(dh, tc), _mm512_fnmadd_ps(o, o, o)));
      _mm512_store_ps(dc + j * ldc + o16, _mm512_maskz_mul_ps(m, dct, f));
    }
  }
}

template <int V, class LV = Lanes16>
MTLFAST_AVX512_TARGET void fwd_units(int64_t H, int64_t ld, const float* wpk, const float* hp, const float* cp,
                                     float* acts, const float* bias, float* c, float* h, const __mmask16* act,
                                     int64_t E, const float* wxk, const float* xc, int64_t pf) {
  for (int64_t j0 = 0; j0 < H; j0 += kFwdUnits) {
    const float* wp = wpk + j0 * 4 * H;
    const float* wxp = wxk + j0 * 4 * E;
    prefetch_forward_states<V>(c, h, j0, std::min<int64_t>(kFwdUnits, H - j0), ld, pf);
    switch (std::min<int64_t>(kFwdUnits, H - j0)) {
      case 3: fwd_tile<3, V, LV>(H, ld, wp, hp, cp, acts, bias, c, h, j0, act, E, wxp, xc); break;
      case 2: fwd_tile<2, V, LV>(H, ld, wp, hp, cp, acts, bias, c, h, j0, act, E, wxp, xc); break;
      default: fwd_tile<1, V, LV>(H, ld, wp, hp, cp, acts, bias, c, h, j0, act, E, wxp, xc); break;
    }
  }
}

// Panels [unit block j0][k][gate g, unit u] = w[g H + j0 + u][k] of a [4H][n] weight, blocks of kFwdUnits units.
void pack_gate_panels(const float* w, int64_t H, int64_t n, float* out) {
  for (int64_t j0 = 0; j0 < H; j0 += kFwdUnits) {
    const int64_t U = std::min<int64_t>(kFwdUnits, H - j0);
    float* panel = out + j0 * 4 * n;
    for (int64_t g = 0; g < 4; ++g)
      for (int64_t u = 0; u < U; ++u) {
        const float* src = w + (g * H + j0 + u) * n;
        for (int64_t kk = 0; kk < n; ++kk) panel[kk * 4 * U + g * U + u] = src[kk];
      }
  }
}

#define MTLFAST_BWD_CASE(U) \
  case U: bwd_tile<U, V, LV>(H, ld, whh, dn, acts, c, cp, dyT, dc, ldc, dg, j0, act); break;
template <int V, class LV = Lanes16>
MTLFAST_AVX512_TARGET void bwd_units(int64_t H, int64_t ld, const float* whh, const float* dn, const float* acts,
                                     const float* c, const float* cp, const float* dyT, float* dc, int64_t ldc,
                                     float* dg, const __mmask16* act, int64_t pf, bool pf_cp) {
  for (int64_t j0 = 0; j0 < H; j0 += kBwdUnits) {
    prefetch_backward_loads<V>(acts, dyT, cp, H, j0, std::min<int64_t>(kBwdUnits, H - j0), ld, pf, pf_cp);
    switch (std::min<int64_t>(kBwdUnits, H - j0)) {
      MTLFAST_BWD_CASE(12) MTLFAST_BWD_CASE(11) MTLFAST_BWD_CASE(10) MTLFAST_BWD_CASE(9) MTLFAST_BWD_CASE(8)
      MTLFAST_BWD_CASE(7) MTLFAST_BWD_CASE(6) MTLFAST_BWD_CASE(5) MTLFAST_BWD_CASE(4) MTLFAST_BWD_CASE(3)
      MTLFAST_BWD_CASE(2) default: bwd_tile<1, V, LV>(H, ld, whh, dn, acts, c, cp, dyT, dc, ldc, dg, j0, act); break;
    }
  }
}
#undef MTLFAST_BWD_CASE

// dst[u][lanes] = sum_k w[k][u] src[k][lanes] for U rows u (w at column e0, row stride ldw; src, dst rows ld):
// one step's slice of dx^T = w_ih^T dgates, computed right after the step's epilogue wrote dgates (hot in cache).
// With 8 lanes (LV = Lanes8) the 16 lanes of dst are written, the upper 8 zero.
template <int U, int V, class LV = Lanes16>
MTLFAST_AVX512_TARGET void wt_tile(int64_t G4, int64_t ld, const float* w, int64_t ldw, const float* src, float* dst) {
  typename LV::F acc[U][V];
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[u][v] = LV::zero();
  for (int64_t k = 0; k < G4; ++k) {
    typename LV::F db[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) db[v] = LV::load(src + k * ld + 16 * v);
    const float* wk = w + k * ldw;
#pragma GCC unroll 12
    for (int u = 0; u < U; ++u) {
      const typename LV::F wv = LV::set1(wk[u]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[u][v] = LV::fmadd(wv, db[v], acc[u][v]);
    }
  }
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) _mm512_stream_ps(dst + u * ld + 16 * v, LV::wide(acc[u][v]));  // read after the array
}

#define MTLFAST_WT_CASE(U) \
  case U: wt_tile<U, V, LV>(G4, ld, w + e0, E, src, dst + e0 * ld); break;
template <int V, class LV = Lanes16>
MTLFAST_AVX512_TARGET void dx_units(int64_t E, int64_t G4, int64_t ld, const float* w, const float* src, float* dst) {
  // Row blocks of at most 12, spread evenly (E = 50: 10,10,10,10,10 rather than 12,12,12,12,2).
  const int64_t nblk = (E + kBwdUnits - 1) / kBwdUnits;
  for (int64_t bi = 0, e0 = 0; bi < nblk; ++bi) {
    const int64_t n = (E - e0) / (nblk - bi);
    switch (n) {
      MTLFAST_WT_CASE(12) MTLFAST_WT_CASE(11) MTLFAST_WT_CASE(10) MTLFAST_WT_CASE(9) MTLFAST_WT_CASE(8)
      MTLFAST_WT_CASE(7) MTLFAST_WT_CASE(6) MTLFAST_WT_CASE(5) MTLFAST_WT_CASE(4) MTLFAST_WT_CASE(3)
      MTLFAST_WT_CASE(2) default: wt_tile<1, V, LV>(G4, ld, w + e0, E, src, dst + e0 * ld); break;
    }
    e0 += n;
  }
}
#undef MTLFAST_WT_CASE

}  // namespace
}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
