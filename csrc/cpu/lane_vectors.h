// Vectors of batch lanes for the lanes tiles (lanes_tiles.h, lanes_tiles_bf16.h): 16 fp32 lanes (zmm) or 8 (ymm).
// A 32-lane block whose last live rows fit in 8 lanes runs them as an 8-lane tile: half the products of a 16-lane
// one on CPUs whose 512-bit units are two 256-bit halves (Zen 4), where masked-off lanes cost as much as live ones.
// Only the products run at 8 lanes; the tiles' epilogues stay 16 lanes wide (wide(): the upper 8 lanes zero), so
// they write the same rows of 16 lanes as the 16-lane tiles, with zero states and gradients in the dead lanes.
#pragma once
#include <cstdint>

#include "cpu/isa.h"
#include "cpu/simd_math.h"

#if MTLFAST_X86
#include "cpu/bf16_gemm.h"

namespace mtlfast {
namespace cpu {
namespace {

struct Lanes16 {
  using F = __m512;
  using BH = __m512bh;
  MTLFAST_AVX512_TARGET MTLFAST_AI static F zero() { return _mm512_setzero_ps(); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static F load(const float* p) { return _mm512_load_ps(p); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static F set1(float x) { return _mm512_set1_ps(x); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static __m512 wide(F x) { return x; }
  MTLFAST_BF16_TARGET MTLFAST_AI static BH load_bh(const uint32_t* p) { return (BH)_mm512_load_si512(p); }
  MTLFAST_BF16_TARGET MTLFAST_AI static BH set1_bh(uint32_t w) { return (BH)_mm512_set1_epi32(static_cast<int>(w)); }
  MTLFAST_BF16_TARGET MTLFAST_AI static F dp(F acc, BH a, BH b) { return _mm512_dpbf16_ps(acc, a, b); }
};

struct Lanes8 {
  using F = __m256;
  using BH = __m256bh;
  MTLFAST_AVX512_TARGET MTLFAST_AI static F zero() { return _mm256_setzero_ps(); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static F load(const float* p) { return _mm256_load_ps(p); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static F set1(float x) { return _mm256_set1_ps(x); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  MTLFAST_AVX512_TARGET MTLFAST_AI static __m512 wide(F x) {  // upper 8 lanes zero (older GCCs lack zextps256)
    return _mm512_insertf32x8(_mm512_setzero_ps(), x, 0);
  }
  MTLFAST_BF16_TARGET MTLFAST_AI static BH load_bh(const uint32_t* p) {
    return (BH)_mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  }
  MTLFAST_BF16_TARGET MTLFAST_AI static BH set1_bh(uint32_t w) { return (BH)_mm256_set1_epi32(static_cast<int>(w)); }
  MTLFAST_BF16_TARGET MTLFAST_AI static F dp(F acc, BH a, BH b) { return _mm256_dpbf16_ps(acc, a, b); }
};

// Software prefetch of the lines a tile touches at another column (the next step's, which the drivers pass as a
// column delta): n consecutive rows of row stride ld from p, V 16-lane vectors each; write (lines the tile will
// store): into L1 (prefetcht0 as these targets compile it; prefetchw measured the same), else into L2
// (prefetcht1). The saved activations of a model array
// are far larger than the caches, and each step's columns are a few lines per row at a stride of T Bp: without
// this the epilogues stall on their loads and on the read-for-ownership of their stores.
template <int V, typename T>
MTLFAST_AI void prefetch_rows(const T* p, int64_t ld, int64_t n, bool write) {
  static_assert(sizeof(T) == 4, "rows of 4-byte words");
  for (int64_t r = 0; r < n; ++r)
    for (int v = 0; v < V; ++v) {
      const T* q = p + r * ld + 16 * v;
      if (write) {
        __builtin_prefetch(q, 1, 3);
      } else {
        __builtin_prefetch(q, 0, 2);
      }
    }
}

// The forward's prefetch for units [j0, j0 + n) (both precisions): the lines of c and h the step the walk visits
// next (column delta pf; 0: none) will store.
template <int V>
MTLFAST_AI void prefetch_forward_states(const float* c, const float* h, int64_t j0, int64_t n, int64_t ld, int64_t pf) {
  if (pf == 0) return;
  prefetch_rows<V>(c + j0 * ld + pf, ld, n, true);
  prefetch_rows<V>(h + j0 * ld + pf, ld, n, true);
}

// The backward's prefetch for units [j0, j0 + n) (both precisions): the lines the step the walk visits next (column
// delta pf; 0: none) will load: its four gates' activations, its dy and, where it has one (pf_cp), its previous
// step's cells. Not its stores: prefetching those too cost 4 % of the backward (bench/RESULTS.md, session 7).
template <int V>
MTLFAST_AI void prefetch_backward_loads(const float* acts, const float* dyT, const float* cp, int64_t H, int64_t j0,
                                        int64_t n, int64_t ld, int64_t pf, bool pf_cp) {
  if (pf == 0) return;
  for (int64_t g = 0; g < 4; ++g) prefetch_rows<V>(acts + (g * H + j0) * ld + pf, ld, n, false);
  prefetch_rows<V>(dyT + j0 * ld + pf, ld, n, false);
  if (pf_cp) prefetch_rows<V>(cp + j0 * ld + 2 * pf, ld, n, false);
}

}  // namespace
}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
