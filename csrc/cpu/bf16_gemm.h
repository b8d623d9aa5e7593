// bf16 matrix products with fp32 accumulation, for the bi-LSTM's precision="bf16".
//
// Two ways, same numbers: (1) emulated, on every CPU: operands rounded to bfloat16 (round to nearest even) but
// held in fp32; products of two bf16 values are exact in fp32, so an fp32 GEMM over rounded operands is a bf16
// GEMM with fp32 accumulation. (2) native, on AVX512-BF16 CPUs (kernel build avx512_bf16): vdpbf16ps over packed
// operands, A as [M][K/2] pairs, B as 16-column blocks [N/16][K/2][16][2]; a 4 x 64 register tile of C runs over
// K two at a time (bf16_gemm.cpp).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/isa.h"

namespace mtlfast {
namespace cpu {

// Emulated: values rounded to bfloat16, held in the tensor's dtype.
inline at::Tensor round_bf16(const at::Tensor& t) { return t.to(at::kBFloat16).to(t.scalar_type()); }

inline void round_bf16_inplace(float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &p[i], 4);
    if ((u & 0x7f800000u) != 0x7f800000u) {  // finite: round to nearest even on the upper 16 bits
      u += 0x7fffu + ((u >> 16) & 1u);
    }
    u &= 0xffff0000u;
    std::memcpy(&p[i], &u, 4);
  }
}

constexpr int64_t kTileRows = 4, kTileBlocks = 4;  // register tile: 4 rows x 4 blocks of 16 columns

// op(B) packed for the native kernel.
struct PackedB16 {
  std::vector<uint16_t> data;  // [nblk][kp][32], nblk = ceil(N / 16)
  int64_t N = 0, kp = 0, nblk = 0;
};

#if MTLFAST_X86
#include <immintrin.h>

#define MTLFAST_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

// op(B) [K, N] -> 16-column blocks [nblk][kp][16 columns][2 k], the last block zero-padded. rows (tb = false
// only): row k of the stored B is B + rows[k] * ldb (gathered while packing; nullptr: row k).
MTLFAST_BF16_TARGET void pack_b16(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB16& out,
                                  const int64_t* rows = nullptr);
// op(A) [M, K] -> [M][kp] k pairs. rows (ta = false only): row m of A is A + rows[m] * lda (nullptr: row m).
MTLFAST_BF16_TARGET void pack_a16(bool ta, int64_t M, int64_t K, const float* A, int64_t lda,
                                  std::vector<uint32_t>& out, const int64_t* rows = nullptr);

// C[M, N] = A @ B (+ beta C) from packed operands: register tiles of R rows x NB blocks of 16 columns (NB = 4,
// or 1-3 where the blocks of a row do not split into fours: bf16_gemm_packed) over K two at a time.
// Inline here (not in bf16_gemm.cpp) so that the compiler specialises it for its callers' constant beta.
template <int R, int NB = kTileBlocks>
MTLFAST_BF16_TARGET void bf16_tile(int64_t kp, const uint32_t* A, const uint16_t* Bt, int64_t bstride, float* C,
                                   int64_t ldc, int64_t nvalid, float beta) {
  __m512 acc[R][NB];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh b[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) b[j] = (__m512bh)_mm512_loadu_si512(Bt + j * bstride + p * 32);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(A[r * kp + p]));
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], a, b[j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NB; ++j) {
    const int64_t c0 = j * 16;
    if (c0 >= nvalid) break;
    const __mmask16 mask = nvalid - c0 >= 16 ? static_cast<__mmask16>(0xffff)
                                             : static_cast<__mmask16>((1u << (nvalid - c0)) - 1u);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      float* c = C + r * ldc + c0;
      __m512 v = acc[r][j];
      if (beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), v);
      _mm512_mask_storeu_ps(c, mask, v);
    }
  }
}

// Row tiles of one column tile of NB blocks.
template <int NB>
MTLFAST_BF16_TARGET inline void bf16_rows(int64_t M, const uint32_t* A, int64_t kp, const uint16_t* Bt,
                                          int64_t bstride, float* C, int64_t ldc, int64_t nvalid, float beta) {
  for (int64_t m0 = 0; m0 < M; m0 += kTileRows) {
    const uint32_t* Am = A + m0 * kp;
    float* Cm = C + m0 * ldc;
    switch (std::min<int64_t>(kTileRows, M - m0)) {
      case 4: bf16_tile<4, NB>(kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
      case 3: bf16_tile<3, NB>(kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
      case 2: bf16_tile<2, NB>(kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
      default: bf16_tile<1, NB>(kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
    }
  }
}

MTLFAST_BF16_TARGET inline void bf16_gemm_packed(int64_t M, const uint32_t* A, const PackedB16& Bp, float beta,
                                                 float* C, int64_t ldc) {
  const int64_t bstride = Bp.kp * 32;
  // Column tiles of 4 blocks where they divide evenly, else the blocks spread over ceil(nblk / 4) tiles (13 -> 4,
  // 3, 3, 3 rather than 4, 4, 4, 1): a one-block tile has 4 accumulators, too few to hide vdpbf16ps's latency.
  const int64_t tiles = (Bp.nblk + kTileBlocks - 1) / kTileBlocks;
  for (int64_t ti = 0, t0 = 0; ti < tiles; ++ti) {
    const int64_t nb = (Bp.nblk - t0) / (tiles - ti) + ((Bp.nblk - t0) % (tiles - ti) != 0);
    const int64_t nvalid = std::min<int64_t>(16 * nb, Bp.N - t0 * 16);
    const uint16_t* Bt = Bp.data.data() + t0 * bstride;
    float* Ct = C + t0 * 16;
    t0 += nb;
    switch (nb) {
      case 4: bf16_rows<4>(M, A, Bp.kp, Bt, bstride, Ct, ldc, nvalid, beta); break;
      case 3: bf16_rows<3>(M, A, Bp.kp, Bt, bstride, Ct, ldc, nvalid, beta); break;
      case 2: bf16_rows<2>(M, A, Bp.kp, Bt, bstride, Ct, ldc, nvalid, beta); break;
      default: bf16_rows<1>(M, A, Bp.kp, Bt, bstride, Ct, ldc, nvalid, beta); break;
    }
  }
}
#endif

}  // namespace cpu
}  // namespace mtlfast
