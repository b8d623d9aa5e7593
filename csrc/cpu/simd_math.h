// Element-wise maths of the LSTM cell: sigmoid and tanh, scalar (any architecture) and AVX-512 (16 lanes).
//
// float: branch-free Cephes-style approximations (about 1-2 ulp) that the compiler vectorises; double: the C
// library (used for gradcheck, speed irrelevant). AVX-512: exp through vscalefps, reciprocals as rcp14 + one
// Newton step; accuracy measured against double over [-80, 100]: sigmoid <= 3 ulp, tanh <= 5 ulp (relative
// 3e-7). Every function is always-inline: they live in the loops of the step kernels and register tiles.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/isa.h"

#if MTLFAST_X86
#include <immintrin.h>
#endif

namespace mtlfast {
namespace cpu {

MTLFAST_AI float exp_f(float x) {
  // Clamp so that 2^n stays a normal float; the result saturates smoothly (sigmoid/tanh only need that).
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  // n = round(x / ln2) with the 1.5 * 2^23 trick (pure float arithmetic, vectorises without SSE4.1).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;  // ln2 split in two for an exact reduction
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  const int bits = (static_cast<int>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(float));
  return p * scale;
}

MTLFAST_AI float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

MTLFAST_AI float tanh_f(float x) {
  const float ax = x < 0.0f ? -x : x;
  // Small |x|: odd polynomial (keeps full relative precision near 0); large |x|: 1 - 2 / (e^{2|x|} + 1).
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big_abs = 1.0f - 2.0f / (exp_f(2.0f * ax) + 1.0f);
  const float big = x < 0.0f ? -big_abs : big_abs;
  return ax < 0.625f ? small : big;
}

template <typename T>
MTLFAST_AI T sigm(T x);
template <>
MTLFAST_AI float sigm<float>(float x) {
  return sigmoid_f(x);
}
template <>
MTLFAST_AI double sigm<double>(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
template <typename T>
MTLFAST_AI T tanh_(T x);
template <>
MTLFAST_AI float tanh_<float>(float x) {
  return tanh_f(x);
}
template <>
MTLFAST_AI double tanh_<double>(double x) {
  return std::tanh(x);
}

#if MTLFAST_X86
// Target of every AVX-512 kernel (the ISA probe's "avx512" build requires exactly these).
#define MTLFAST_AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))

MTLFAST_AVX512_TARGET MTLFAST_AI __m512 v_exp(__m512 x) {  // callers keep x <= 88 (larger saturates to inf)
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2 split in two: exact reduction
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);  // p * 2^n, no integer tricks, saturates instead of wrapping
}

MTLFAST_AVX512_TARGET MTLFAST_AI __m512 v_rcp(__m512 d) {  // 1 / d for finite d > 0: rcp14, one Newton step
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

MTLFAST_AVX512_TARGET MTLFAST_AI __m512 v_sigmoid(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));  // keeps 1 + e^-x finite
  return v_rcp(_mm512_add_ps(_mm512_set1_ps(1.0f), v_exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// Rational minimax approximation (numerator odd degree 13, denominator even degree 6, as in Eigen), on x
// clamped to +-7.905 where tanh rounds to +-1 within an ulp.
MTLFAST_AVX512_TARGET MTLFAST_AI __m512 v_tanh(__m512 x) {
  const __m512 lim = _mm512_set1_ps(7.90531110763549805f);
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim);
  const __m512 x2 = _mm512_mul_ps(xc, xc);
  __m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(-2.76076847742355e-16f), _mm512_set1_ps(2.00018790482477e-13f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-8.60467152213735e-11f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(5.12229709037114e-08f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(1.48572235717979e-05f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(6.37261928875436e-04f));
  p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(4.89352455891786e-03f));
  p = _mm512_mul_ps(xc, p);
  __m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(1.19825839466702e-06f), _mm512_set1_ps(1.18534705686654e-04f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(2.26843463243900e-03f));
  q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(4.89352518554385e-03f));
  return _mm512_mul_ps(p, v_rcp(q));
}

MTLFAST_AVX512_TARGET MTLFAST_AI __mmask16 tail_mask(int64_t rem) {
  return rem >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rem) - 1u);
}
#endif  // MTLFAST_X86

}  // namespace cpu
}  // namespace mtlfast
