// Native bf16 products (AVX512-BF16 vdpbf16ps): operand packing (the register-tile kernel is in bf16_gemm.h).
#include "cpu/bf16_gemm.h"

#include <algorithm>
#include <cstring>

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

// op(B) [K, N] -> 16-column blocks [nblk][kp][16 columns][2 k], the last block zero-padded. Every word is
// written here (no zero fill first): the padding columns and an odd K's last half explicitly.
MTLFAST_BF16_TARGET void pack_b16(bool tb, int64_t K, int64_t N, const float* B, int64_t ldb, PackedB16& out,
                                  const int64_t* rows) {
  out.N = N;
  out.kp = (K + 1) / 2;
  const int64_t kp = out.kp;
  out.nblk = (N + 15) / 16;
  out.data.resize(out.nblk * kp * 32);
  uint32_t* o = reinterpret_cast<uint32_t*>(out.data.data());
  const int64_t pad = out.nblk * 16 - N;  // padding columns of the last block
  if (!tb) {  // rows k, k+1 of B are contiguous in n: interleave them, then 16 pairs at a time into the blocks
    const auto row = [&](int64_t k) { return B + (rows != nullptr ? rows[k] : k) * ldb; };
    std::vector<uint32_t> tmp(N);
    for (int64_t p = 0; p < kp; ++p) {
      interleave_rows_bf16(row(2 * p), 2 * p + 1 < K ? row(2 * p + 1) : nullptr, N, tmp.data());
      for (int64_t n0 = 0; n0 < N; n0 += 16)
        std::memcpy(o + ((n0 / 16) * kp + p) * 16, tmp.data() + n0, std::min<int64_t>(16, N - n0) * 4);
      if (pad > 0) std::memset(o + ((out.nblk - 1) * kp + p) * 16 + (16 - pad), 0, pad * 4);
    }
  } else {  // column n of op(B) is row n of B: its k pairs are adjacent already
    TORCH_CHECK(rows == nullptr, "pack_b16: a row list needs tb = false");
    std::vector<uint32_t> tmp(kp, 0u);
    for (int64_t n = 0; n < N; ++n) {
      tmp.back() = 0u;
      cvt_row_bf16(B + n * ldb, K, reinterpret_cast<uint16_t*>(tmp.data()));
      uint32_t* blk = o + (n / 16) * kp * 16 + (n % 16);
      for (int64_t p = 0; p < kp; ++p) blk[p * 16] = tmp[p];
    }
    for (int64_t n = N; n < N + pad; ++n) {
      uint32_t* blk = o + (n / 16) * kp * 16 + (n % 16);
      for (int64_t p = 0; p < kp; ++p) blk[p * 16] = 0u;
    }
  }
}

// op(A) [M, K] -> [M][kp] k pairs (an odd K's last high half zero); every word written here.
MTLFAST_BF16_TARGET void pack_a16(bool ta, int64_t M, int64_t K, const float* A, int64_t lda,
                                  std::vector<uint32_t>& out, const int64_t* rows) {
  const int64_t kp = (K + 1) / 2;
  out.resize(M * kp);
  if (!ta) {
    for (int64_t m = 0; m < M; ++m) {
      uint16_t* dst = reinterpret_cast<uint16_t*>(out.data() + m * kp);
      cvt_row_bf16(A + (rows != nullptr ? rows[m] : m) * lda, K, dst);
      if (K % 2 != 0) dst[K] = 0;
    }
  } else {  // rows k, k+1 of the stored A hold the pair for every m: 16 x 16 blocks of pairs, transposed in L1
    TORCH_CHECK(rows == nullptr, "pack_a16: a row list needs ta = false");
    alignas(64) uint32_t blk[16 * 16];
    const __m512i col = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16));
    for (int64_t p0 = 0; p0 < kp; p0 += 16) {
      const int64_t np = std::min<int64_t>(16, kp - p0);
      const __mmask16 pm = np >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << np) - 1u);
      for (int64_t m0 = 0; m0 < M; m0 += 16) {
        const int64_t nm = std::min<int64_t>(16, M - m0);
        for (int64_t q = 0; q < np; ++q) {  // blk[q][m] = pair (k = 2 (p0 + q), m0 + m)
          const int64_t k0 = 2 * (p0 + q);
          interleave_rows_bf16(A + k0 * lda + m0, k0 + 1 < K ? A + (k0 + 1) * lda + m0 : nullptr, nm, blk + q * 16);
        }
        for (int64_t m = 0; m < nm; ++m)  // column m of blk (its first np rows) -> out row m0 + m, pairs p0..
          _mm512_mask_storeu_epi32(out.data() + (m0 + m) * kp + p0, pm,
                                   _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), pm,
                                                               _mm512_add_epi32(col, _mm512_set1_epi32(m)), blk, 4));
      }
    }
  }
}

}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
