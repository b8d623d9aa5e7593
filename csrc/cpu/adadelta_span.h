// The Adadelta element kernels shared by the CPU optimiser ops (adadelta_cpu.cpp) and the heads op
// (heads_cpu.cpp): one stretch of elements, torch.optim.Adadelta's operation order, in the kernel build
// chosen by cpu/isa.h (AVX-512F, AVX2, portable). The two files run the same code, so a head updated by the
// heads op moves exactly as one updated through mtlfast.ops.adadelta_.
#pragma once

#include <cmath>
#include <cstdint>

#include "cpu/isa.h"

#if MTLFAST_X86
#include <immintrin.h>
#endif

namespace mtlfast {
namespace adadelta_detail {

using cpu::Path;

// ---------------------------------------------------------------------------------------------------------
// Element kernels. Three float32 builds (AVX-512F, AVX2, portable); multiplications and additions are kept
// separate (no FMA) to follow torch.optim.Adadelta's rounding as closely as possible.

struct Hyper {
  double lr, rho, eps;
};

template <typename T>
inline void adadelta_span_portable(T* __restrict p, const T* __restrict g, T* __restrict sq, T* __restrict acc,
                                   int64_t n, const Hyper& h) {
  const T lr = static_cast<T>(h.lr), rho = static_cast<T>(h.rho), eps = static_cast<T>(h.eps);
  const T omr = static_cast<T>(1.0 - h.rho);
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T s = sq[i] * rho + omr * gi * gi;
    sq[i] = s;
    const T upd = std::sqrt(acc[i] + eps) / std::sqrt(s + eps) * gi;
    acc[i] = acc[i] * rho + omr * upd * upd;
    p[i] = p[i] - lr * upd;
  }
}

#if MTLFAST_X86
// GCC 12 warns (falsely) that the masked loads read an uninitialised register.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline __attribute__((target("avx512f"))) void adadelta_span_avx512(float* p, const float* g, float* sq, float* acc,
                                                             int64_t n, const Hyper& h) {
  const __m512 lr = _mm512_set1_ps(static_cast<float>(h.lr));
  const __m512 rho = _mm512_set1_ps(static_cast<float>(h.rho));
  const __m512 eps = _mm512_set1_ps(static_cast<float>(h.eps));
  const __m512 omr = _mm512_set1_ps(static_cast<float>(1.0 - h.rho));
  int64_t i = 0;
  for (; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    const __m512 gi = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 s = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, sq + i), rho),
                                   _mm512_mul_ps(_mm512_mul_ps(omr, gi), gi));
    _mm512_mask_storeu_ps(sq + i, m, s);
    const __m512 a = _mm512_maskz_loadu_ps(m, acc + i);
    const __m512 upd = _mm512_mul_ps(
        _mm512_div_ps(_mm512_sqrt_ps(_mm512_add_ps(a, eps)), _mm512_sqrt_ps(_mm512_add_ps(s, eps))), gi);
    _mm512_mask_storeu_ps(acc + i, m,
                          _mm512_add_ps(_mm512_mul_ps(a, rho), _mm512_mul_ps(_mm512_mul_ps(omr, upd), upd)));
    _mm512_mask_storeu_ps(p + i, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p + i), _mm512_mul_ps(lr, upd)));
  }
}
#pragma GCC diagnostic pop

inline __attribute__((target("avx2"))) void adadelta_span_avx2(float* p, const float* g, float* sq, float* acc, int64_t n,
                                                        const Hyper& h) {
  const __m256 lr = _mm256_set1_ps(static_cast<float>(h.lr));
  const __m256 rho = _mm256_set1_ps(static_cast<float>(h.rho));
  const __m256 eps = _mm256_set1_ps(static_cast<float>(h.eps));
  const __m256 omr = _mm256_set1_ps(static_cast<float>(1.0 - h.rho));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 s =
        _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(sq + i), rho), _mm256_mul_ps(_mm256_mul_ps(omr, gi), gi));
    _mm256_storeu_ps(sq + i, s);
    const __m256 a = _mm256_loadu_ps(acc + i);
    const __m256 upd = _mm256_mul_ps(
        _mm256_div_ps(_mm256_sqrt_ps(_mm256_add_ps(a, eps)), _mm256_sqrt_ps(_mm256_add_ps(s, eps))), gi);
    _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_mul_ps(a, rho), _mm256_mul_ps(_mm256_mul_ps(omr, upd), upd)));
    _mm256_storeu_ps(p + i, _mm256_sub_ps(_mm256_loadu_ps(p + i), _mm256_mul_ps(lr, upd)));
  }
  adadelta_span_portable<float>(p + i, g + i, sq + i, acc + i, n - i, h);
}

#endif  // MTLFAST_X86

// One stretch of float32 elements in kernel build `path`.
inline void adadelta_span(float* p, const float* g, float* sq, float* acc, int64_t n, const Hyper& h, Path path) {
  switch (path) {
#if MTLFAST_X86
    case Path::kAvx512Bf16:
    case Path::kAvx512: adadelta_span_avx512(p, g, sq, acc, n, h); break;
    case Path::kAvx2: adadelta_span_avx2(p, g, sq, acc, n, h); break;
#endif
    default: adadelta_span_portable<float>(p, g, sq, acc, n, h);
  }
}
inline void adadelta_span(double* p, const double* g, double* sq, double* acc, int64_t n, const Hyper& h, Path) {
  adadelta_span_portable<double>(p, g, sq, acc, n, h);
}

}  // namespace adadelta_detail
}  // namespace mtlfast
