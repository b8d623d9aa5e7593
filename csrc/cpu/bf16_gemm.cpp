// Native bf16 products (AVX512-BF16 vdpbf16ps): operand packing (the register-tile kernel is in bf16_gemm.h).
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

// op(B) [K, N] -> 16-column blocks [nblk][kp][16 columns][2 k], the last block zero-padded.
MTLFAST_BF16_TARGET void pack_b16(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB16& out) {
  out.N = N;
  out.kp = (K + 1) / 2;
  const int64_t kp = out.kp;
  out.nblk = (N + 15) / 16;
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

}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
