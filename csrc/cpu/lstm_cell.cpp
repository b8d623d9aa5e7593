// The float builds of the LSTM cell's step kernels (lstm_cell.h): portable, AVX2 + FMA (both compiled from the
// generic bodies) and AVX-512 (intrinsics, 16 hidden units per vector, the tail of H as one masked vector).
#include "cpu/lstm_cell.h"

namespace mtlfast {
namespace cpu {
namespace {

#define MTLFAST_STEP_VARIANT(SUFFIX, ATTR)                                                                          \
  ATTR void fwd_step_##SUFFIX(int64_t H, int64_t n, const int64_t* rows, float* G, int64_t gs, const float* Cp,     \
                              int64_t cps, float* C, int64_t cs, float* Y, int64_t ys) {                            \
    fwd_step_body<float>(H, n, rows, G, gs, Cp, cps, C, cs, Y, ys);                                                 \
  }                                                                                                                 \
  ATTR void bwd_step_##SUFFIX(int64_t H, int64_t n, const int64_t* rows, const float* A, int64_t as, float* D,      \
                              int64_t ds, const float* dY, int64_t dys, const float* DH, float* DC, const float* C, \
                              int64_t cs, const float* Cp, int64_t cps) {                                           \
    bwd_step_body<float>(H, n, rows, A, as, D, ds, dY, dys, DH, DC, C, cs, Cp, cps);                                \
  }

#if MTLFAST_X86
MTLFAST_STEP_VARIANT(avx2, __attribute__((target("avx2,fma"))))

// Gates of 16 hidden units from pre-activations g[0 .. 4H) (H apart), with the cell and hidden update.
MTLFAST_AVX512_TARGET MTLFAST_AI void fwd_units_avx512(__mmask16 m, int64_t H, float* g, const float* cp, float* c,
                                                        float* h) {
  const __m512 i = v_sigmoid(_mm512_maskz_loadu_ps(m, g));
  const __m512 f = v_sigmoid(_mm512_maskz_loadu_ps(m, g + H));
  const __m512 gg = v_tanh(_mm512_maskz_loadu_ps(m, g + 2 * H));
  const __m512 o = v_sigmoid(_mm512_maskz_loadu_ps(m, g + 3 * H));
  const __m512 ig = _mm512_mul_ps(i, gg);
  const __m512 cn = cp != nullptr ? _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cp), ig) : ig;
  _mm512_mask_storeu_ps(g, m, i);
  _mm512_mask_storeu_ps(g + H, m, f);
  _mm512_mask_storeu_ps(g + 2 * H, m, gg);
  _mm512_mask_storeu_ps(g + 3 * H, m, o);
  _mm512_mask_storeu_ps(c, m, cn);
  _mm512_mask_storeu_ps(h, m, _mm512_mul_ps(o, v_tanh(cn)));
}

MTLFAST_AVX512_TARGET void fwd_step_avx512(int64_t H, int64_t n, const int64_t* rows, float* G, int64_t gs,
                                           const float* Cp, int64_t cps, float* C, int64_t cs, float* Y, int64_t ys) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t b = rows[r];
    float* g = G + b * gs;
    const float* cp = Cp != nullptr ? Cp + b * cps : nullptr;
    float* c = C + b * cs;
    float* h = Y + b * ys;
    for (int64_t j = 0; j < H; j += 16) {
      fwd_units_avx512(tail_mask(H - j), H, g + j, cp != nullptr ? cp + j : nullptr, c + j, h + j);
    }
  }
}

MTLFAST_AVX512_TARGET void bwd_step_avx512(int64_t H, int64_t n, const int64_t* rows, const float* A, int64_t as,
                                           float* D, int64_t ds, const float* dY, int64_t dys, const float* DH,
                                           float* DC, const float* C, int64_t cs, const float* Cp, int64_t cps) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t b = rows[r];
    const float* a = A + b * as;
    float* d = D + b * ds;
    const float* dy = dY + b * dys;
    const float* dhr = DH != nullptr ? DH + b * H : nullptr;
    float* dc = DC + b * H;
    const float* c = C + b * cs;
    const float* cp = Cp != nullptr ? Cp + b * cps : nullptr;
    for (int64_t j = 0; j < H; j += 16) {
      const __mmask16 m = tail_mask(H - j);
      const __m512 i = _mm512_maskz_loadu_ps(m, a + j), f = _mm512_maskz_loadu_ps(m, a + H + j);
      const __m512 gg = _mm512_maskz_loadu_ps(m, a + 2 * H + j), o = _mm512_maskz_loadu_ps(m, a + 3 * H + j);
      __m512 dh = _mm512_maskz_loadu_ps(m, dy + j);
      if (dhr != nullptr) dh = _mm512_add_ps(dh, _mm512_maskz_loadu_ps(m, dhr + j));
      const __m512 tc = v_tanh(_mm512_maskz_loadu_ps(m, c + j));
      const __m512 dho = _mm512_mul_ps(dh, o);
      // dct = dc + dh * o * (1 - tc^2)
      const __m512 dct = _mm512_fmadd_ps(dho, _mm512_fnmadd_ps(tc, tc, one), _mm512_maskz_loadu_ps(m, dc + j));
      const __m512 cpv = cp != nullptr ? _mm512_maskz_loadu_ps(m, cp + j) : _mm512_setzero_ps();
      const __m512 di = _mm512_mul_ps(_mm512_mul_ps(dct, gg), _mm512_fnmadd_ps(i, i, i));       // i (1 - i)
      const __m512 df = _mm512_mul_ps(_mm512_mul_ps(dct, cpv), _mm512_fnmadd_ps(f, f, f));      // f (1 - f)
      const __m512 dg = _mm512_mul_ps(_mm512_mul_ps(dct, i), _mm512_fnmadd_ps(gg, gg, one));    // 1 - g^2
      const __m512 dout = _mm512_mul_ps(_mm512_mul_ps(dh, tc), _mm512_fnmadd_ps(o, o, o));      // o (1 - o)
      _mm512_mask_storeu_ps(d + j, m, di);
      _mm512_mask_storeu_ps(d + H + j, m, df);
      _mm512_mask_storeu_ps(d + 2 * H + j, m, dg);
      _mm512_mask_storeu_ps(d + 3 * H + j, m, dout);
      _mm512_mask_storeu_ps(dc + j, m, _mm512_mul_ps(dct, f));
    }
  }
}
#endif
MTLFAST_STEP_VARIANT(portable, )
#undef MTLFAST_STEP_VARIANT

}  // namespace

StepKernels float_kernels(Path p) {
  switch (p) {
#if MTLFAST_X86
    case Path::kAvx512Bf16:
    case Path::kAvx512:
      return {fwd_step_avx512, bwd_step_avx512};
    case Path::kAvx2:
      return {fwd_step_avx2, bwd_step_avx2};
#endif
    default:
      return {fwd_step_portable, bwd_step_portable};
  }
}

}  // namespace cpu
}  // namespace mtlfast
