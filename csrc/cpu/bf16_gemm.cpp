// Native bf16 products (AVX512-BF16 vdpbf16ps): operand packing and the register-tile kernel (see bf16_gemm.h).
#include "cpu/bf16_gemm.h"

#include <algorithm>

#if MTLFAST_X86
#include <immintrin.h>

namespace mtlfast {
namespace cpu {
namespace {

// dst[0..n) = bf16(src[0..n)), round to nearest even.
MTLFAST_BF16_TARGET void cvt_row_bf16(const float* src, int64_t n, uint16_t* dst) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t rem = n - i;
    const __mmask16 m = rem >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)v);
  }
}

// dst[i] = bf16(r0[i]) | bf16(r1[i]) << 16 for i < n (r1 == nullptr: zero high halves).
MTLFAST_BF16_TARGET void interleave_rows_bf16(const float* r0, const float* r1, int64_t n, uint32_t* dst) {
  alignas(64) static const uint16_t kIdx[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i idx = _mm512_load_si512(kIdx);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t rem = n - i;
    const __mmask16 m = rem >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
    const __m512 a = _mm512_maskz_loadu_ps(m, r0 + i);
    const __m512 b = r1 != nullptr ? _mm512_maskz_loadu_ps(m, r1 + i) : _mm512_setzero_ps();
    const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // [a0..a15, b0..b15]
    _mm512_mask_storeu_epi32(dst + i, m, _mm512_permutexvar_epi16(idx, both));
  }
}

}  // namespace

// op(B) [K, N] -> 16-column blocks [nblk][kp][16 columns][2 k], zero-padded to whole register tiles.
MTLFAST_BF16_TARGET void pack_b16(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB16& out) {
  out.N = N;
  out.kp = (K + 1) / 2;
  const int64_t kp = out.kp;
  out.nblk = ((N + 16 * kTileBlocks - 1) / (16 * kTileBlocks)) * kTileBlocks;
  out.data.assign(out.nblk * kp * 32, 0);
  uint32_t* o = reinterpret_cast<uint32_t*>(out.data.data());
  if (!tb) {  // rows k, k+1 of B are contiguous in n: interleave them, then 16 pairs at a time into the blocks
    std::vector<uint32_t> tmp(N);
    for (int64_t p = 0; p < kp; ++p) {
      interleave_rows_bf16(B + 2 * p * ldb, 2 * p + 1 < K ? B + (2 * p + 1) * ldb : nullptr, N, tmp.data());
      for (int64_t n0 = 0; n0 < N; n0 += 16)
        std::memcpy(o + ((n0 / 16) * kp + p) * 16, tmp.data() + n0, std::min<int64_t>(16, N - n0) * 4);
    }
  } else {  // column n of op(B) is row n of B: its k pairs are adjacent already
    std::vector<uint32_t> tmp(kp, 0u);
    for (int64_t n = 0; n < N; ++n) {
      tmp.back() = 0u;
      cvt_row_bf16(B + n * ldb, K, reinterpret_cast<uint16_t*>(tmp.data()));
      uint32_t* blk = o + (n / 16) * kp * 16 + (n % 16);
      for (int64_t p = 0; p < kp; ++p) blk[p * 16] = tmp[p];
    }
  }
}

// op(A) [M, K] -> [M][kp] k pairs.
MTLFAST_BF16_TARGET void pack_a16(bool ta, int64_t M, int64_t K, const float* A, int64_t lda,
                                  std::vector<uint32_t>& out) {
  const int64_t kp = (K + 1) / 2;
  out.assign(M * kp, 0u);
  if (!ta) {
    for (int64_t m = 0; m < M; ++m) cvt_row_bf16(A + m * lda, K, reinterpret_cast<uint16_t*>(out.data() + m * kp));
  } else {  // rows k, k+1 of the stored A hold the pair for every m
    std::vector<uint32_t> tmp(M);
    for (int64_t p = 0; p < kp; ++p) {
      interleave_rows_bf16(A + 2 * p * lda, 2 * p + 1 < K ? A + (2 * p + 1) * lda : nullptr, M, tmp.data());
      for (int64_t m = 0; m < M; ++m) out[m * kp + p] = tmp[m];
    }
  }
}
namespace {

template <int R>
MTLFAST_BF16_TARGET void bf16_tile(int64_t kp, const uint32_t* A, const uint16_t* Bt, int64_t bstride, float* C,
                                   int64_t ldc, int64_t nvalid, float beta) {
  __m512 acc[R][kTileBlocks];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < kTileBlocks; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh b[kTileBlocks];
#pragma GCC unroll 4
    for (int j = 0; j < kTileBlocks; ++j) b[j] = (__m512bh)_mm512_loadu_si512(Bt + j * bstride + p * 32);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(A[r * kp + p]));
#pragma GCC unroll 4
      for (int j = 0; j < kTileBlocks; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], a, b[j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < kTileBlocks; ++j) {
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

}  // namespace

MTLFAST_BF16_TARGET void bf16_gemm_packed(int64_t M, const uint32_t* A, const PackedB16& Bp, float beta, float* C,
                                          int64_t ldc) {
  const int64_t bstride = Bp.kp * 32;
  for (int64_t t0 = 0; t0 < Bp.nblk; t0 += kTileBlocks) {
    const int64_t nvalid = std::min<int64_t>(16 * kTileBlocks, Bp.N - t0 * 16);
    if (nvalid <= 0) break;
    const uint16_t* Bt = Bp.data.data() + t0 * bstride;
    for (int64_t m0 = 0; m0 < M; m0 += kTileRows) {
      const uint32_t* Am = A + m0 * Bp.kp;
      float* Cm = C + m0 * ldc + t0 * 16;
      switch (std::min<int64_t>(kTileRows, M - m0)) {
        case 4: bf16_tile<4>(Bp.kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
        case 3: bf16_tile<3>(Bp.kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
        case 2: bf16_tile<2>(Bp.kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
        default: bf16_tile<1>(Bp.kp, Am, Bt, bstride, Cm, ldc, nvalid, beta); break;
      }
    }
  }
}

}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
