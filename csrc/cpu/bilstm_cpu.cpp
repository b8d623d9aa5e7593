// Fused bi-LSTM over a model array, CPU. Shapes and semantics: csrc/bilstm.h.
//
// Two implementations with one contract. fp32 on AVX-512 CPUs takes the "lanes" path (section "fp32 AVX-512
// path" below): batch in the vector lanes, hand-written register-tile kernels for the recurrent products with the
// gate maths fused into their epilogues, weight gradients as MKL GEMMs. Everything else (float64 for gradcheck,
// bf16, AVX2 and portable builds) takes the general path:
//
// Structure (per model k and direction d, one task each, run in parallel over K x 2):
//   forward : acts[k,d] = x[k] @ w_ih[k,d]^T + bias[k,d]       one GEMM over all B*T rows (input projection hoisted)
//             for each step: acts[:, t] += h_prev @ w_hh^T       one small GEMM, recurrent weights stay in cache
//                            gates, cell and hidden update       one fused, vectorised pass over the active rows
//   backward: for each step (reverse): dh_rec = dgates[:, t_next] @ w_hh, then one fused pass giving dgates[:, t]
//             after the loop: dbias, dw_ih = dgates^T @ x, dw_hh = dgates^T @ h_prev, dx = dgates @ w_ih (GEMMs)
//
// Matrix products go to the BLAS that torch itself links (MKL's sgemm_/dgemm_, looked up at run time so the
// extension never fails to load on a torch without it), else to at::mm. The element-wise passes exist in three
// builds (AVX-512 intrinsics with masked tails; AVX2+FMA and portable from one generic source) picked at run time
// from the CPU, or forced for testing.
#include "bilstm.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "mtlfast.h"

// The SIMD builds need an x86 compiler; elsewhere only the portable kernels and fp32-emulated bf16 exist.
#if defined(__x86_64__) || defined(__i386__)
#define MTLFAST_X86 1
#include <immintrin.h>
#else
#define MTLFAST_X86 0
#endif

#define MTLFAST_AI inline __attribute__((always_inline))

namespace mtlfast {
namespace {

// ------------------------------------------------------------------------------------------------------------
// Matrix products, row-major: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C.
// ------------------------------------------------------------------------------------------------------------
using sgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                          const int*, const float*, const int*, const float*, float*, const int*);
using dgemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                          const double*, const int*, const double*, const int*, const double*, double*, const int*);

// MKL's packed-operand API (LP64): pack a matrix once into the kernel's internal layout, reuse it in many
// products. Used for the recurrent weights, multiplied once per timestep.
using pack_get_size_fn = size_t (*)(int identifier, int m, int n, int k);
using sgemm_pack_fn = void (*)(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                               const float* src, int ld, float* dest);
using sgemm_compute_fn = void (*)(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                                  const float* b, int ldb, float beta, float* c, int ldc);
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112, kCblasPacked = 151,
              kCblasBMatrix = 162;

struct Blas {
  sgemm_fn sgemm = nullptr;
  dgemm_fn dgemm = nullptr;
  pack_get_size_fn pack_get_size = nullptr;
  sgemm_pack_fn sgemm_pack = nullptr;
  sgemm_compute_fn sgemm_compute = nullptr;
  Blas() {
    // torch's libtorch_cpu exports MKL's Fortran BLAS (LP64). Look it up instead of linking it, so a torch built
    // without MKL still loads this extension and falls back to at::mm.
    void* handle = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    void* scopes[2] = {handle, RTLD_DEFAULT};  // handle may be null: then both are the global scope
    for (void* scope : scopes) {
      if (!sgemm) sgemm = reinterpret_cast<sgemm_fn>(dlsym(scope, "sgemm_"));
      if (!dgemm) dgemm = reinterpret_cast<dgemm_fn>(dlsym(scope, "dgemm_"));
      if (!pack_get_size) pack_get_size = reinterpret_cast<pack_get_size_fn>(dlsym(scope, "cblas_sgemm_pack_get_size"));
      if (!sgemm_pack) sgemm_pack = reinterpret_cast<sgemm_pack_fn>(dlsym(scope, "cblas_sgemm_pack"));
      if (!sgemm_compute) sgemm_compute = reinterpret_cast<sgemm_compute_fn>(dlsym(scope, "cblas_sgemm_compute"));
    }
    if (!(pack_get_size && sgemm_pack && sgemm_compute)) pack_get_size = nullptr, sgemm_pack = nullptr,
                                                          sgemm_compute = nullptr;
  }
};

const Blas& blas() {
  static Blas b;
  return b;
}

std::atomic<bool> g_force_aten_gemm{false};

template <typename T>
void gemm_aten(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
               int64_t ldb, T beta, T* C, int64_t ldc) {
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto a = ta ? at::from_blob(const_cast<T*>(A), {K, M}, {lda, 1}, opts).t()
              : at::from_blob(const_cast<T*>(A), {M, K}, {lda, 1}, opts);
  auto b = tb ? at::from_blob(const_cast<T*>(B), {N, K}, {ldb, 1}, opts).t()
              : at::from_blob(const_cast<T*>(B), {K, N}, {ldb, 1}, opts);
  auto c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  if (beta == T(0)) {
    at::mm_out(c, a, b);
    if (alpha != T(1)) c.mul_(alpha);
  } else {
    c.addmm_(a, b, beta, alpha);
  }
}

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  // Column-major BLAS sees the row-major C^T = op(B)^T op(A)^T.
  const char ca = ta ? 'T' : 'N', cb = tb ? 'T' : 'N';
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int ia = static_cast<int>(lda), ib = static_cast<int>(ldb), ic = static_cast<int>(ldc);
  if (!g_force_aten_gemm.load(std::memory_order_relaxed)) {
    if constexpr (std::is_same_v<T, float>) {
      if (blas().sgemm) {
        blas().sgemm(&cb, &ca, &m, &n, &k, &alpha, B, &ib, A, &ia, &beta, C, &ic);
        return;
      }
    } else {
      if (blas().dgemm) {
        blas().dgemm(&cb, &ca, &m, &n, &k, &alpha, B, &ib, A, &ia, &beta, C, &ic);
        return;
      }
    }
  }
  gemm_aten<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

std::atomic<bool> g_no_pack{false};

// Right operand op(B) [K, N] of many products C[M, N] (+)= A[M, K] @ op(B): packed once where MKL allows.
template <typename T>
class Rhs {
 public:
  Rhs(bool tb, int64_t N, int64_t K, const T* B, int64_t ldb, int64_t M, bool allow_pack = true)
      : tb_(tb), N_(N), K_(K), M_(M), B_(B), ldb_(ldb) {
    if constexpr (std::is_same_v<T, float>) {
      const Blas& bl = blas();
      if (allow_pack && bl.sgemm_pack && !g_force_aten_gemm.load(std::memory_order_relaxed) &&
          !g_no_pack.load(std::memory_order_relaxed)) {
        const size_t bytes = bl.pack_get_size(kCblasBMatrix, static_cast<int>(M), static_cast<int>(N),
                                              static_cast<int>(K));
        packed_ = static_cast<float*>(std::aligned_alloc(64, ((bytes + 63) / 64) * 64));
        if (packed_ != nullptr) {
          bl.sgemm_pack(kCblasRowMajor, kCblasBMatrix, tb ? kCblasTrans : kCblasNoTrans, static_cast<int>(M),
                        static_cast<int>(N), static_cast<int>(K), 1.0f, B, static_cast<int>(ldb), packed_);
        }
      }
    }
  }
  ~Rhs() { std::free(packed_); }
  Rhs(const Rhs&) = delete;
  Rhs& operator=(const Rhs&) = delete;

  void mm(int64_t M, const T* A, int64_t lda, T beta, T* C, int64_t ldc) const {
    if constexpr (std::is_same_v<T, float>) {
      if (packed_ != nullptr && M == M_) {  // MKL wants the packing's m in every compute call
        blas().sgemm_compute(kCblasRowMajor, kCblasNoTrans, kCblasPacked, static_cast<int>(M), static_cast<int>(N_),
                             static_cast<int>(K_), A, static_cast<int>(lda), packed_, static_cast<int>(ldb_), beta, C,
                             static_cast<int>(ldc));
        return;
      }
    }
    gemm<T>(false, tb_, M, N_, K_, T(1), A, lda, B_, ldb_, beta, C, ldc);
  }

 private:
  bool tb_;
  int64_t N_, K_, M_;
  const T* B_;
  int64_t ldb_;
  float* packed_ = nullptr;
};

// ------------------------------------------------------------------------------------------------------------
// Element-wise maths. float: branch-free Cephes-style approximations (about 1-2 ulp) that the compiler vectorises;
// double: the C library (used for gradcheck, speed irrelevant).
// ------------------------------------------------------------------------------------------------------------
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

// One forward step over the active rows. G: pre-activations in, activations out ([4H] per row).
// Cp: previous cell (nullptr = zero state). C, Y: this step's cell and hidden state. *s: row strides.
template <typename T>
MTLFAST_AI void fwd_step_body(int64_t H, int64_t n, const int64_t* rows, T* G, int64_t gs, const T* Cp, int64_t cps,
                              T* C, int64_t cs, T* Y, int64_t ys) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t b = rows[r];
    T* __restrict g = G + b * gs;
    T* __restrict c = C + b * cs;
    T* __restrict h = Y + b * ys;
    if (Cp != nullptr) {
      const T* __restrict cp = Cp + b * cps;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T i = sigm<T>(g[j]), f = sigm<T>(g[H + j]), gg = tanh_<T>(g[2 * H + j]), o = sigm<T>(g[3 * H + j]);
        const T cn = f * cp[j] + i * gg;
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        c[j] = cn;
        h[j] = o * tanh_<T>(cn);
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const T i = sigm<T>(g[j]), f = sigm<T>(g[H + j]), gg = tanh_<T>(g[2 * H + j]), o = sigm<T>(g[3 * H + j]);
        const T cn = i * gg;
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        c[j] = cn;
        h[j] = o * tanh_<T>(cn);
      }
    }
  }
}

// One backward step over the active rows. A: activations (i, f, g, o); D: pre-activation gradients out.
// dY: gradient of this step's output; DH: recurrent gradient dgates_next @ w_hh (nullptr = none);
// DC: running cell gradient [B, H] (in: from the next step, out: to the previous step);
// C / Cp: this / previous cell (Cp nullptr = zero initial state).
template <typename T>
MTLFAST_AI void bwd_step_body(int64_t H, int64_t n, const int64_t* rows, const T* A, int64_t as, T* D, int64_t ds,
                              const T* dY, int64_t dys, const T* DH, T* DC, const T* C, int64_t cs, const T* Cp,
                              int64_t cps) {
  for (int64_t r = 0; r < n; ++r) {
    const int64_t b = rows[r];
    const T* __restrict a = A + b * as;
    T* __restrict d = D + b * ds;
    const T* __restrict dy = dY + b * dys;
    const T* __restrict dhr = DH != nullptr ? DH + b * H : nullptr;
    T* __restrict dc = DC + b * H;
    const T* __restrict c = C + b * cs;
    const T* __restrict cp = Cp != nullptr ? Cp + b * cps : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j];
      const T dh = dhr != nullptr ? dy[j] + dhr[j] : dy[j];
      const T tc = tanh_<T>(c[j]);
      const T dct = dc[j] + dh * o * (T(1) - tc * tc);
      const T cpv = cp != nullptr ? cp[j] : T(0);
      d[j] = dct * gg * i * (T(1) - i);
      d[H + j] = dct * cpv * f * (T(1) - f);
      d[2 * H + j] = dct * i * (T(1) - gg * gg);
      d[3 * H + j] = dh * tc * o * (T(1) - o);
      dc[j] = dct * f;
    }
  }
}

using FwdStepF = void (*)(int64_t, int64_t, const int64_t*, float*, int64_t, const float*, int64_t, float*, int64_t,
                          float*, int64_t);
using BwdStepF = void (*)(int64_t, int64_t, const int64_t*, const float*, int64_t, float*, int64_t, const float*,
                          int64_t, const float*, float*, const float*, int64_t, const float*, int64_t);

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

// AVX-512 element-wise kernels written with intrinsics: 16 hidden units per vector, the tail of H (H % 16) as
// one masked vector instead of scalar code, exp through vscalefps, reciprocals as rcp14 + one Newton step.
// Accuracy (measured against double over [-80, 100]): sigmoid <= 3 ulp, tanh <= 5 ulp (relative 3e-7).
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

// kAvx512Bf16 = the AVX-512 element-wise kernels plus native bf16 dot products (vdpbf16ps) for precision='bf16';
// every other path computes bf16 products by rounding the operands and multiplying in fp32 (same numbers).
enum class Path : int { kAuto = 0, kPortable = 1, kAvx2 = 2, kAvx512 = 3, kAvx512Bf16 = 4 };
std::atomic<int> g_forced_path{static_cast<int>(Path::kAuto)};

bool cpu_has(Path p) {
#if !MTLFAST_X86
  return p == Path::kPortable || p == Path::kAuto;
#else
  switch (p) {
    case Path::kAvx512Bf16:
      return cpu_has(Path::kAvx512) && __builtin_cpu_supports("avx512bf16");
    case Path::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    case Path::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
#endif
}

Path best_path() {
  static const Path best = cpu_has(Path::kAvx512Bf16) ? Path::kAvx512Bf16
                           : cpu_has(Path::kAvx512)   ? Path::kAvx512
                           : cpu_has(Path::kAvx2)     ? Path::kAvx2
                                                      : Path::kPortable;
  return best;
}

Path active_path() {
  const Path forced = static_cast<Path>(g_forced_path.load(std::memory_order_relaxed));
  return forced == Path::kAuto ? best_path() : forced;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kAvx512Bf16:
      return "avx512_bf16";
    case Path::kAvx512:
      return "avx512";
    case Path::kAvx2:
      return "avx2";
    case Path::kPortable:
      return "portable";
    default:
      return "auto";
  }
}

struct StepKernels {
  FwdStepF fwd;
  BwdStepF bwd;
};

StepKernels float_kernels() {
  switch (active_path()) {
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

template <typename T>
MTLFAST_AI void fwd_step(const StepKernels& kern, int64_t H, int64_t n, const int64_t* rows, T* G, int64_t gs,
                         const T* Cp, int64_t cps, T* C, int64_t cs, T* Y, int64_t ys) {
  if constexpr (std::is_same_v<T, float>) {
    kern.fwd(H, n, rows, G, gs, Cp, cps, C, cs, Y, ys);
  } else {
    fwd_step_body<T>(H, n, rows, G, gs, Cp, cps, C, cs, Y, ys);
  }
}

template <typename T>
MTLFAST_AI void bwd_step(const StepKernels& kern, int64_t H, int64_t n, const int64_t* rows, const T* A, int64_t as,
                         T* D, int64_t ds, const T* dY, int64_t dys, const T* DH, T* DC, const T* C, int64_t cs,
                         const T* Cp, int64_t cps) {
  if constexpr (std::is_same_v<T, float>) {
    kern.bwd(H, n, rows, A, as, D, ds, dY, dys, DH, DC, C, cs, Cp, cps);
  } else {
    bwd_step_body<T>(H, n, rows, A, as, D, ds, dY, dys, DH, DC, C, cs, Cp, cps);
  }
}

// ------------------------------------------------------------------------------------------------------------
// Argument checks: always say which argument, what was expected and what came.
// ------------------------------------------------------------------------------------------------------------
std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

void check_tensor(const at::Tensor& t, const char* name, std::vector<int64_t> shape, const char* shape_doc,
                  at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "bilstm (CPU kernel): ", name, " must be on the CPU; got device ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "bilstm: ", name, " must have dtype ", dtype, "; got ", t.scalar_type());
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = t.size(static_cast<int64_t>(i)) == shape[i];
  if (!ok) {
    std::string want = "[";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    TORCH_CHECK(false, "bilstm: ", name, " must have shape ", shape_doc, " = ", want, "]; got ", shape_str(t));
  }
}

struct Dims {
  int64_t K, B, T, E, H;
};

Dims check_inputs(const at::Tensor& x, const at::Tensor& lengths, const at::Tensor& w_ih, const at::Tensor& w_hh,
                  const std::string& precision) {
  TORCH_CHECK(precision == "fp32" || precision == "bf16", "bilstm: precision must be 'fp32' or 'bf16'; got '",
              precision, "'");
  TORCH_CHECK(x.dim() == 4, "bilstm: x must have shape [K, B, T, E]; got ", shape_str(x));
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "bilstm: x must be float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(w_hh.dim() == 4, "bilstm: w_hh must have shape [K, 2, 4H, H]; got ", shape_str(w_hh));
  Dims d{x.size(0), x.size(1), x.size(2), x.size(3), w_hh.size(3)};
  TORCH_CHECK(d.K >= 1 && d.B >= 1 && d.T >= 1 && d.H >= 1, "bilstm: K, B, T and H must be >= 1; got x ",
              shape_str(x), ", w_hh ", shape_str(w_hh));
  const auto dt = x.scalar_type();
  check_tensor(lengths, "lengths", {d.K, d.B}, "[K, B]", at::kLong);
  check_tensor(w_ih, "w_ih", {d.K, 2, 4 * d.H, d.E}, "[K, 2, 4H, E]", dt);
  check_tensor(w_hh, "w_hh", {d.K, 2, 4 * d.H, d.H}, "[K, 2, 4H, H]", dt);
  auto lc = lengths.contiguous();
  const int64_t* lp = lc.data_ptr<int64_t>();
  for (int64_t i = 0; i < d.K * d.B; ++i) {
    TORCH_CHECK(lp[i] >= 1 && lp[i] <= d.T, "bilstm: lengths must lie in [1, T] = [1, ", d.T, "]; got lengths[",
                i / d.B, ", ", i % d.B, "] = ", lp[i]);
  }
  return d;
}

// Operands of bf16 products: values rounded to bfloat16 (round to nearest even), held in the compute dtype.
// Products of two bf16 values are exact in fp32, so an fp32 GEMM over rounded operands is a bf16 GEMM with
// fp32 accumulation.
at::Tensor round_bf16(const at::Tensor& t) { return t.to(at::kBFloat16).to(t.scalar_type()); }

void round_bf16_inplace(float* p, int64_t n) {
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

// ------------------------------------------------------------------------------------------------------------
// Native bf16 products (AVX512-BF16 vdpbf16ps): C[M, N] = op(A)[M, K] @ op(B)[K, N] (+ beta C), bf16 operands
// rounded to nearest even from fp32, fp32 accumulation. Operands are packed first: A as [M][K/2] pairs, B as
// 16-column blocks [N/16][K/2][16][2]; a 4 x 64 register tile of C runs over K two at a time.
// ------------------------------------------------------------------------------------------------------------

constexpr int64_t kTileRows = 4, kTileBlocks = 4;  // register tile: 4 rows x 4 blocks of 16 columns

struct PackedB16 {
  std::vector<uint16_t> data;  // [nblk][kp][32]
  int64_t N = 0, kp = 0, nblk = 0;
};

#if MTLFAST_X86
#define MTLFAST_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

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

#endif  // MTLFAST_X86

// How the products of one call are computed.
enum class Prod { kFp, kBf16Emulated, kBf16Native };

Prod prod_mode(bool bf16) {
  if (!bf16) return Prod::kFp;
  return active_path() == Path::kAvx512Bf16 ? Prod::kBf16Native : Prod::kBf16Emulated;
}

// General product in the call's mode (operands of the emulated mode are already rounded by the caller).
template <typename T>
void prod(Prod mode, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
#if MTLFAST_X86
  if constexpr (std::is_same_v<T, float>) {
    if (mode == Prod::kBf16Native) {
      if (M == 0 || N == 0) return;
      std::vector<uint32_t> ap;
      PackedB16 bp;
      pack_a16(ta, M, K, A, lda, ap);
      pack_b16(tb, K, N, B, ldb, bp);
      bf16_gemm_packed(M, ap.data(), bp, beta, C, ldc);
      return;
    }
  }
#endif
  gemm<T>(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
}

// Right operand reused by every timestep, in the call's mode: fp32 -> MKL-packed (Rhs), native bf16 -> packed
// bf16 blocks.
template <typename T>
class StepRhs {
 public:
  StepRhs(Prod mode, bool tb, int64_t N, int64_t K, const T* B, int64_t ldb, int64_t M)
      : native_(mode == Prod::kBf16Native), K_(K), rhs_(tb, N, K, B, ldb, M, !native_) {
#if MTLFAST_X86
    if constexpr (std::is_same_v<T, float>) {
      if (native_) pack_b16(tb, K, N, B, ldb, packed_);
    }
#endif
  }
  // C (+)= A @ op(B); A rows strided by lda.
  void mm(int64_t M, const T* A, int64_t lda, T beta, T* C, int64_t ldc) {
#if MTLFAST_X86
    if constexpr (std::is_same_v<T, float>) {
      if (native_) {
        pack_a16(false, M, K_, A, lda, abuf_);
        bf16_gemm_packed(M, abuf_.data(), packed_, beta, C, ldc);
        return;
      }
    }
#endif
    rhs_.mm(M, A, lda, beta, C, ldc);
  }

 private:
  bool native_;
  int64_t K_;
  Rhs<T> rhs_;
  PackedB16 packed_;
  std::vector<uint32_t> abuf_;
};

// ------------------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------------------
template <typename T>
void forward_impl(const Dims& d, const T* x, const int64_t* len, const T* w_ih, const T* w_hh, const T* bias, T* y,
                  T* acts, T* cells, bool bf16) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const StepKernels kern = float_kernels();
  const Prod mode = prod_mode(bf16);
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> rows(B);
    std::vector<T> hbuf(mode == Prod::kBf16Emulated ? B * H : 0);
    for (int64_t kd = begin; kd < end; ++kd) {
      const int64_t k = kd / 2, dir = kd % 2;
      const T* xk = x + k * B * T_ * E;
      const T* wih = w_ih + kd * G4 * E;
      const T* whh = w_hh + kd * G4 * H;
      const T* bk = bias + kd * G4;
      T* A = acts + kd * B * T_ * G4;  // [B, T, 4H]
      T* C = cells + kd * B * T_ * H;  // [B, T, H]
      T* Y = y + k * B * T_ * 2 * H + dir * H;  // rows of [B, T, 2H]
      const int64_t* lk = len + k * B;
      // Input projection of every timestep at once: A = x @ w_ih^T + bias.
      for (int64_t r = 0; r < B * T_; ++r) std::memcpy(A + r * G4, bk, G4 * sizeof(T));
      prod<T>(mode, false, true, B * T_, G4, E, xk, E, wih, E, T(1), A, G4);
      StepRhs<T> whh_t(mode, true, G4, H, whh, H, B);  // w_hh^T, packed once for all T steps
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = dir == 0 ? s : T_ - 1 - s;
        const int64_t tp = dir == 0 ? t - 1 : t + 1;
        int64_t n = 0;
        for (int64_t b = 0; b < B; ++b)
          if (lk[b] > t) rows[n++] = b;
        if (n == 0) continue;
        // Rows come sorted by length (longest first), so the active rows are 0 .. m-1 and the recurrent product
        // skips the finished (or not yet started) rows.
        const int64_t m = rows[n - 1] + 1;
        if (s > 0) {
          // h_prev is read from y itself: its padded positions are zero, which is exactly the zero initial
          // state the backward direction needs at each sequence's last token.
          const T* hp = Y + tp * 2 * H;
          int64_t ldh = T_ * 2 * H;
          if constexpr (std::is_same_v<T, float>) {
            if (mode == Prod::kBf16Emulated) {
              for (int64_t b = 0; b < m; ++b) std::memcpy(hbuf.data() + b * H, hp + b * ldh, H * sizeof(T));
              round_bf16_inplace(hbuf.data(), m * H);
              hp = hbuf.data();
              ldh = H;
            }
          }
          whh_t.mm(m, hp, ldh, T(1), A + t * G4, T_ * G4);
        }
        fwd_step<T>(kern, H, n, rows.data(), A + t * G4, T_ * G4, s > 0 ? C + tp * H : nullptr, T_ * H, C + t * H,
                    T_ * H, Y + t * 2 * H, T_ * 2 * H);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------------------
template <typename T>
void backward_impl(const Dims& d, const T* dy, const T* x, const int64_t* len, const T* w_ih, const T* w_hh,
                   const T* y, const T* acts, const T* cells, T* dx, T* dw_ih, T* dw_hh, T* dbias, T* dgates,
                   bool bf16) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const StepKernels kern = float_kernels();
  const Prod mode = prod_mode(bf16);
  const bool emulate = mode == Prod::kBf16Emulated;
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> rows(B);
    std::vector<T> DH(B * H), DC(B * H), hprev(B * T_ * H), dbuf(emulate ? B * G4 : 0);
    for (int64_t kd = begin; kd < end; ++kd) {
      const int64_t k = kd / 2, dir = kd % 2;
      const T* xk = x + k * B * T_ * E;
      const T* whh = w_hh + kd * G4 * H;
      const T* A = acts + kd * B * T_ * G4;
      T* D = dgates + kd * B * T_ * G4;
      const T* C = cells + kd * B * T_ * H;
      const T* Y = y + k * B * T_ * 2 * H + dir * H;
      const T* dY = dy + k * B * T_ * 2 * H + dir * H;
      const int64_t* lk = len + k * B;
      std::fill(DC.begin(), DC.end(), T(0));
      StepRhs<T> whh_n(mode, false, H, G4, whh, H, B);  // w_hh, packed once for all T steps
      for (int64_t s = T_ - 1; s >= 0; --s) {
        const int64_t t = dir == 0 ? s : T_ - 1 - s;
        const int64_t tp = dir == 0 ? t - 1 : t + 1;     // previous step in this direction's order
        const int64_t tn = dir == 0 ? t + 1 : t - 1;     // next step
        int64_t n = 0;
        for (int64_t b = 0; b < B; ++b) {
          if (lk[b] > t) {
            rows[n++] = b;
          } else {  // padded position: zero gradient, and nothing flows into the step before it
            std::memset(D + (b * T_ + t) * G4, 0, G4 * sizeof(T));
          }
        }
        const bool has_next = s < T_ - 1;
        if (n == 0) continue;
        const int64_t m = rows[n - 1] + 1;  // active rows are a prefix (rows sorted by length)
        if (has_next) {
          const T* dn = D + tn * G4;
          int64_t ldd = T_ * G4;
          if constexpr (std::is_same_v<T, float>) {
            if (emulate) {
              for (int64_t b = 0; b < m; ++b) std::memcpy(dbuf.data() + b * G4, dn + b * ldd, G4 * sizeof(T));
              round_bf16_inplace(dbuf.data(), m * G4);
              dn = dbuf.data();
              ldd = G4;
            }
          }
          whh_n.mm(m, dn, ldd, T(0), DH.data(), H);
        }
        bwd_step<T>(kern, H, n, rows.data(), A + t * G4, T_ * G4, D + t * G4, T_ * G4, dY + t * 2 * H, T_ * 2 * H,
                    has_next ? DH.data() : nullptr, DC.data(), C + t * H, T_ * H, s > 0 ? C + tp * H : nullptr,
                    T_ * H);
      }
      // Weight gradients as large products over all B*T rows.
      T* db = dbias + kd * G4;
      std::fill(db, db + G4, T(0));
      for (int64_t r = 0; r < B * T_; ++r) {
        const T* dr = D + r * G4;
        for (int64_t j = 0; j < G4; ++j) db[j] += dr[j];
      }
      if constexpr (std::is_same_v<T, float>) {
        if (emulate) round_bf16_inplace(D, B * T_ * G4);  // operand of the weight/input-gradient products
      }
      prod<T>(mode, true, false, G4, E, B * T_, D, G4, xk, E, T(0), dw_ih + kd * G4 * E, E);
      // h_prev of every (b, t): the state the step at t started from (zero at each sequence's first step).
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T_; ++t) {
          const int64_t tp = dir == 0 ? t - 1 : t + 1;
          T* dst = hprev.data() + (b * T_ + t) * H;
          if (tp < 0 || tp >= T_) {
            std::memset(dst, 0, H * sizeof(T));
          } else {
            std::memcpy(dst, Y + (b * T_ + tp) * 2 * H, H * sizeof(T));
          }
        }
      }
      if constexpr (std::is_same_v<T, float>) {
        if (emulate) round_bf16_inplace(hprev.data(), B * T_ * H);
      }
      prod<T>(mode, true, false, G4, H, B * T_, D, G4, hprev.data(), H, T(0), dw_hh + kd * G4 * H, H);
    }
  });
  // dx[k] = sum_d dgates[k, d] @ w_ih[k, d]; rows split in two so K = 1 still uses two threads.
  const int64_t rows_total = B * T_;
  const int64_t half = (rows_total + 1) / 2;
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t kp = begin; kp < end; ++kp) {
      const int64_t k = kp / 2, part = kp % 2;
      const int64_t r0 = part * half, r1 = std::min(rows_total, r0 + half);
      if (r1 <= r0) continue;
      for (int64_t dir = 0; dir < 2; ++dir) {
        const int64_t kd = k * 2 + dir;
        prod<T>(mode, false, false, r1 - r0, E, G4, dgates + (kd * rows_total + r0) * G4, G4, w_ih + kd * G4 * E, E,
                dir == 0 ? T(0) : T(1), dx + (k * rows_total + r0) * E, E);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------------------
// fp32 AVX-512 path, batch in the vector lanes ("lanes" layout). Per (model, direction) everything is stored
// transposed, one row per gate unit and one column per (t, b) with the batch padded to Bp = 16 * ceil(B / 16):
//   acts  [4H][T*Bp]  gate activations           cells [2H][T*Bp]  cell states c (rows 0..H-1), states h (H..2H-1)
//   dgates [4H][T*Bp] (workspace of the backward)
// so a step is one column block [rows][Bp] and the 4 gates of a hidden unit are 4 full vectors of 16 batch rows:
// no padding of H to the vector width and no transposes inside the time loop. Positions past a sequence's end
// hold zero states and zero gate gradients (masked in the epilogues), which is what lets the weight gradients be
// single large GEMMs over all columns and the recurrent-weight gradient skip t = 0 (h_0 = 0) exactly.
//   forward step : gates = W_ih x_t + W_hh h_prev (register tile of 4 gates x 3 units x 32 batch lanes; W_ih and
//                  W_hh packed once per call into [unit block][k][gate, unit] panels; x^T once per call), epilogue
//                  adds the bias, applies the non-linearities and the cell update and stores acts, c, h: the input
//                  projection is no separate GEMM and the gate block never makes a round trip to memory.
//   backward step: dh = W_hh^T dgates_next (tile of 12 units x 32 lanes, W_hh read in place), epilogue gives this
//                  step's gate gradients and the running cell gradient; then dx_t^T = W_ih^T dgates_t with the
//                  same tile shape while dgates_t is hot in cache.
//   after the loop: dbias (row sums), dw_ih = dgates x^T and dw_hh = dgates h_prev^T as MKL GEMMs (computed as
//                  their transposes, whose long side is the output's rows), dx of both directions summed.
// ------------------------------------------------------------------------------------------------------------
#if MTLFAST_X86
constexpr int kFwdUnits = 3;    // forward tile: 4 gates x 3 units = 12 rows, x 2 vectors of 16 lanes
constexpr int kBwdUnits = 12;   // backward tile: 12 units x 2 vectors

// Grow-only 64-byte aligned scratch, one per slot and thread: no allocation (or page faults) after warm-up.
float* scratch(int slot, int64_t n) {
  struct Buf {
    float* p = nullptr;
    int64_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[6];
  Buf& b = bufs[slot];
  if (n > b.n) {
    std::free(b.p);
    b.p = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
    TORCH_CHECK(b.p != nullptr, "bilstm: out of memory for a ", n * sizeof(float), "-byte workspace");
    b.n = n;
  }
  return b.p;
}

// Saved activations (acts, cells: megabytes per call, freed after every backward) come from a small pool of
// recycled blocks instead of the system allocator, whose large blocks are fresh pages (page faults and kernel
// zeroing on first touch) whenever glibc returns them to the OS between calls. At most kPoolBlocks blocks and
// kPoolBytes bytes are kept; anything beyond that is freed as usual.
constexpr size_t kPoolBlocks = 16, kPoolBytes = size_t(256) << 20;
struct BlockPool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // bytes -> block
  size_t bytes = 0;
  void* get(size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = free_blocks.find(n);
      if (it != free_blocks.end()) {
        void* p = it->second;
        free_blocks.erase(it);
        bytes -= n;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, n);
    TORCH_CHECK(p != nullptr, "bilstm: out of memory for ", n, " bytes of saved activations");
    return p;
  }
  void put(void* p, size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (free_blocks.size() < kPoolBlocks && bytes + n <= kPoolBytes) {
        free_blocks.emplace(n, p);
        bytes += n;
        return;
      }
    }
    std::free(p);
  }
};

BlockPool& block_pool() {
  static BlockPool* pool = new BlockPool();  // never destroyed: tensors may outlive static destruction
  return *pool;
}

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t n = ((static_cast<size_t>(numel) * sizeof(float) + 63) / 64) * 64;
  void* p = block_pool().get(n == 0 ? 64 : n);
  const size_t held = n == 0 ? 64 : n;
  return at::from_blob(p, sizes, [held](void* q) { block_pool().put(q, held); }, opts);
}

// Lanes l0 .. l0+15 that are still running when `active` rows (a prefix) are.
inline __mmask16 lane_mask(int64_t active, int64_t l0) {
  const int64_t r = active - l0;
  return r <= 0 ? static_cast<__mmask16>(0) : r >= 16 ? static_cast<__mmask16>(0xffff)
                                                      : static_cast<__mmask16>((1u << r) - 1u);
}

// dst[c][r] = src[r][c] for r < R, c < C, in 16 x 16 register blocks (edges masked).
MTLFAST_AVX512_TARGET void transpose(const float* src, int64_t lds, int64_t R, int64_t C, float* dst, int64_t ldd) {
  for (int64_t r0 = 0; r0 < R; r0 += 16) {
    const int64_t nr = std::min<int64_t>(16, R - r0);
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t nc = std::min<int64_t>(16, C - c0);
      const __mmask16 mc = tail_mask(nc);
      __m512 r[16], t[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < nr ? _mm512_maskz_loadu_ps(mc, src + (r0 + i) * lds + c0) : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
      }
      // r[4 i + c], 128-bit lane L: column 4 L + c of rows 4 i .. 4 i + 3.
      const __mmask16 mr = tail_mask(nr);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        const __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
        const __m512 col[4] = {_mm512_shuffle_f32x4(u0, u2, 0x88), _mm512_shuffle_f32x4(u1, u3, 0x88),
                               _mm512_shuffle_f32x4(u0, u2, 0xdd), _mm512_shuffle_f32x4(u1, u3, 0xdd)};
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          const int64_t j = 4 * q + c;
          if (j < nc) _mm512_mask_storeu_ps(dst + (c0 + j) * ldd + r0, mr, col[q]);
        }
      }
    }
  }
}

// out[r] = sum of row r of M [R][n] (row stride ld).
MTLFAST_AVX512_TARGET void row_sums(const float* M, int64_t R, int64_t n, int64_t ld, float* out) {
  for (int64_t r = 0; r < R; ++r) {
    const float* row = M + r * ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(row + i));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(row + i + 16));
    }
    for (; i < n; i += 16) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(tail_mask(n - i), row + i));
    out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// a[i] += b[i].
MTLFAST_AVX512_TARGET void add_inplace(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(a + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

// acc[r][v] += sum_k panel[k][r] * src[k][16 v .. 16 v + 15] for k < n: a panel [n][4U] (gate-major rows of
// U units) times n rows of lanes (row k at src + k * ld), as rank-1 updates held in registers.
template <int U, int V>
MTLFAST_AVX512_TARGET MTLFAST_AI void fma_panel(__m512 (&acc)[4 * U][V], const float* panel, const float* src,
                                                 int64_t n, int64_t ld) {
  for (int64_t k = 0; k < n; ++k) {
    __m512 b[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) b[v] = _mm512_load_ps(src + k * ld + 16 * v);
    const float* w = panel + k * 4 * U;
#pragma GCC unroll 12
    for (int r = 0; r < 4 * U; ++r) {
      const __m512 wv = _mm512_set1_ps(w[r]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(wv, b[v], acc[r][v]);
    }
  }
}

// One forward step for U units starting at j0 and V vectors of lanes starting at l0. Pointers are at column
// t * Bp + l0 (acts, c, h) or tp * Bp + l0 (hp, cp; nullptr: zero state); ld = T * Bp.
template <int U, int V>
MTLFAST_AVX512_TARGET void fwd_tile(int64_t H, int64_t ld, const float* wp, const float* hp, const float* cp,
                                    float* acts, const float* bias, float* c, float* h, int64_t j0,
                                    const __mmask16* act, int64_t E, const float* wxp, const float* xc) {
  __m512 acc[4 * U][V];
#pragma GCC unroll 12
  for (int r = 0; r < 4 * U; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  fma_panel<U, V>(acc, wxp, xc, E, ld);                 // input projection of this step: w_ih panel x x^T
  if (hp != nullptr) fma_panel<U, V>(acc, wp, hp, H, ld);  // recurrent product: w_hh panel x h_{t-1}^T
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
        pre[g] = _mm512_add_ps(acc[g * U + u][v], _mm512_set1_ps(bias[g * H + j]));
      const __m512 i = v_sigmoid(pre[0]), f = v_sigmoid(pre[1]), gg = v_tanh(pre[2]), o = v_sigmoid(pre[3]);
      const __m512 ig = _mm512_mul_ps(i, gg);
      const __m512 cn = cp != nullptr ? _mm512_fmadd_ps(f, _mm512_load_ps(cp + j * ld + o16), ig) : ig;
      _mm512_store_ps(a[0] + o16, i);
      _mm512_store_ps(a[1] + o16, f);
      _mm512_store_ps(a[2] + o16, gg);
      _mm512_store_ps(a[3] + o16, o);
      // Lanes past their sequence's end (and padding lanes) hold zero states.
      _mm512_store_ps(c + j * ld + o16, _mm512_maskz_mov_ps(act[v], cn));
      _mm512_store_ps(h + j * ld + o16, _mm512_maskz_mov_ps(act[v], _mm512_mul_ps(o, v_tanh(cn))));
    }
  }
}

// One backward step for U units from j0, V lane vectors from l0. dn: next step's gate gradients (column
// tn * Bp + l0; nullptr at the last step); acts, c, dg, dyT at column t * Bp + l0; cp at tp * Bp + l0 (nullptr:
// zero initial state); dc: running cell gradient [H][Bp] at column l0.
template <int U, int V>
MTLFAST_AVX512_TARGET void bwd_tile(int64_t H, int64_t ld, const float* whh, const float* dn, const float* acts,
                                    const float* c, const float* cp, const float* dyT, float* dc, int64_t ldc,
                                    float* dg, int64_t j0, const __mmask16* act) {
  __m512 acc[U][V];
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[u][v] = _mm512_setzero_ps();
  if (dn != nullptr) {
    const int64_t G4 = 4 * H;
    for (int64_t k = 0; k < G4; ++k) {
      __m512 db[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) db[v] = _mm512_load_ps(dn + k * ld + 16 * v);
      const float* w = whh + k * H + j0;
#pragma GCC unroll 12
      for (int u = 0; u < U; ++u) {
        const __m512 wv = _mm512_set1_ps(w[u]);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[u][v] = _mm512_fmadd_ps(wv, db[v], acc[u][v]);
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
      const __m512 dh = _mm512_add_ps(acc[u][v], _mm512_load_ps(dyT + j * ld + o16));
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

template <int V>
MTLFAST_AVX512_TARGET void fwd_units(int64_t H, int64_t ld, const float* wpk, const float* hp, const float* cp,
                                     float* acts, const float* bias, float* c, float* h, const __mmask16* act,
                                     int64_t E, const float* wxk, const float* xc) {
  for (int64_t j0 = 0; j0 < H; j0 += kFwdUnits) {
    const float* wp = wpk + j0 * 4 * H;
    const float* wxp = wxk + j0 * 4 * E;
    switch (std::min<int64_t>(kFwdUnits, H - j0)) {
      case 3: fwd_tile<3, V>(H, ld, wp, hp, cp, acts, bias, c, h, j0, act, E, wxp, xc); break;
      case 2: fwd_tile<2, V>(H, ld, wp, hp, cp, acts, bias, c, h, j0, act, E, wxp, xc); break;
      default: fwd_tile<1, V>(H, ld, wp, hp, cp, acts, bias, c, h, j0, act, E, wxp, xc); break;
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
  case U: bwd_tile<U, V>(H, ld, whh, dn, acts, c, cp, dyT, dc, ldc, dg, j0, act); break;
template <int V>
MTLFAST_AVX512_TARGET void bwd_units(int64_t H, int64_t ld, const float* whh, const float* dn, const float* acts,
                                     const float* c, const float* cp, const float* dyT, float* dc, int64_t ldc,
                                     float* dg, const __mmask16* act) {
  for (int64_t j0 = 0; j0 < H; j0 += kBwdUnits) {
    switch (std::min<int64_t>(kBwdUnits, H - j0)) {
      MTLFAST_BWD_CASE(12) MTLFAST_BWD_CASE(11) MTLFAST_BWD_CASE(10) MTLFAST_BWD_CASE(9) MTLFAST_BWD_CASE(8)
      MTLFAST_BWD_CASE(7) MTLFAST_BWD_CASE(6) MTLFAST_BWD_CASE(5) MTLFAST_BWD_CASE(4) MTLFAST_BWD_CASE(3)
      MTLFAST_BWD_CASE(2) default: bwd_tile<1, V>(H, ld, whh, dn, acts, c, cp, dyT, dc, ldc, dg, j0, act); break;
    }
  }
}
#undef MTLFAST_BWD_CASE

// dst[u][lanes] = sum_k w[k][u] src[k][lanes] for U rows u (w at column e0, row stride ldw; src, dst rows ld):
// one step's slice of dx^T = w_ih^T dgates, computed right after the step's epilogue wrote dgates (hot in cache).
template <int U, int V>
MTLFAST_AVX512_TARGET void wt_tile(int64_t G4, int64_t ld, const float* w, int64_t ldw, const float* src, float* dst) {
  __m512 acc[U][V];
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[u][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < G4; ++k) {
    __m512 db[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) db[v] = _mm512_load_ps(src + k * ld + 16 * v);
    const float* wk = w + k * ldw;
#pragma GCC unroll 12
    for (int u = 0; u < U; ++u) {
      const __m512 wv = _mm512_set1_ps(wk[u]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[u][v] = _mm512_fmadd_ps(wv, db[v], acc[u][v]);
    }
  }
#pragma GCC unroll 12
  for (int u = 0; u < U; ++u)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) _mm512_store_ps(dst + u * ld + 16 * v, acc[u][v]);
}

#define MTLFAST_WT_CASE(U) \
  case U: wt_tile<U, V>(G4, ld, w + e0, E, src, dst + e0 * ld); break;
template <int V>
MTLFAST_AVX512_TARGET void dx_units(int64_t E, int64_t G4, int64_t ld, const float* w, const float* src, float* dst) {
  // Row blocks of at most 12, spread evenly (E = 50: 10,10,10,10,10 rather than 12,12,12,12,2).
  const int64_t nblk = (E + kBwdUnits - 1) / kBwdUnits;
  for (int64_t bi = 0, e0 = 0; bi < nblk; ++bi) {
    const int64_t n = (E - e0) / (nblk - bi);
    switch (n) {
      MTLFAST_WT_CASE(12) MTLFAST_WT_CASE(11) MTLFAST_WT_CASE(10) MTLFAST_WT_CASE(9) MTLFAST_WT_CASE(8)
      MTLFAST_WT_CASE(7) MTLFAST_WT_CASE(6) MTLFAST_WT_CASE(5) MTLFAST_WT_CASE(4) MTLFAST_WT_CASE(3)
      MTLFAST_WT_CASE(2) default: wt_tile<1, V>(G4, ld, w + e0, E, src, dst + e0 * ld); break;
    }
    e0 += n;
  }
}
#undef MTLFAST_WT_CASE

// Number of rows (sorted longest first) still running at each t: active[t] = #{b : len[b] > t}.
void active_counts(const int64_t* lk, int64_t B, int64_t T, int64_t* active) {
  for (int64_t t = 0; t < T; ++t) {
    int64_t n = 0;
    while (n < B && lk[n] > t) ++n;
    active[t] = n;
  }
}

void forward_lanes(const Dims& d, const float* x, const int64_t* len, const float* w_ih, const float* w_hh,
                   const float* bias, float* y, float* acts, float* cells) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const int64_t Bp = (B + 15) / 16 * 16, ld = T_ * Bp;
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> active(T_);
    for (int64_t kd = begin; kd < end; ++kd) {
      const int64_t k = kd / 2, dir = kd % 2;
      float* A = acts + kd * G4 * ld;
      float* C = cells + kd * 2 * H * ld;
      float* Hs = C + H * ld;
      const float* bk = bias + kd * G4;
      const float* whh = w_hh + kd * G4 * H;
      active_counts(len + k * B, B, T_, active.data());
      // x^T [E][T Bp] (padding lanes zero) and w_ih in gate panels: the step kernel adds the input projection
      // (fused, it saves a separate GEMM pass over the whole acts block: ~0.1-0.2 ms of 1.3 ms here).
      float* xT = scratch(0, E * ld);
      const float* xk = x + k * B * T_ * E;
      for (int64_t t = 0; t < T_; ++t) {
        transpose(xk + t * E, T_ * E, B, E, xT + t * Bp, ld);
        for (int64_t e = 0; e < E && Bp > B; ++e) std::memset(xT + e * ld + t * Bp + B, 0, (Bp - B) * sizeof(float));
      }
      float* wxp = scratch(2, G4 * E);
      pack_gate_panels(w_ih + kd * G4 * E, H, E, wxp);
      float* wp = scratch(1, G4 * H);
      pack_gate_panels(whh, H, H, wp);
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = dir == 0 ? s : T_ - 1 - s;
        const int64_t tp = dir == 0 ? t - 1 : t + 1;
        for (int64_t l0 = 0; l0 < Bp; l0 += 32) {
          const int64_t col = t * Bp + l0, pcol = tp * Bp + l0;
          const __mmask16 act[2] = {lane_mask(active[t], l0), lane_mask(active[t], l0 + 16)};
          const float* hp = s > 0 ? Hs + pcol : nullptr;
          const float* cp = s > 0 ? C + pcol : nullptr;
          const float* xc = xT + col;
          if (Bp - l0 >= 32) {
            fwd_units<2>(H, ld, wp, hp, cp, A + col, bk, C + col, Hs + col, act, E, wxp, xc);
          } else {
            fwd_units<1>(H, ld, wp, hp, cp, A + col, bk, C + col, Hs + col, act, E, wxp, xc);
          }
        }
      }
      // y[k, b, t, dir H + j] = h[j][t Bp + b] (zero past each sequence's end).
      float* yk = y + k * B * T_ * 2 * H + dir * H;
      for (int64_t t = 0; t < T_; ++t) transpose(Hs + t * Bp, ld, H, B, yk + t * 2 * H, T_ * 2 * H);
    }
  });
}

void backward_lanes(const Dims& d, const float* dy, const float* x, const int64_t* len, const float* w_ih,
                    const float* w_hh, const float* acts, const float* cells, float* dx, float* dw_ih,
                    float* dw_hh, float* dbias) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const int64_t Bp = (B + 15) / 16 * 16, ld = T_ * Bp;
  float* dxd = scratch(5, 2 * K * E * ld);  // per (model, direction): dx^T [E][T Bp] = w_ih^T dgates
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> active(T_);
    for (int64_t kd = begin; kd < end; ++kd) {
      const int64_t k = kd / 2, dir = kd % 2;
      const float* A = acts + kd * G4 * ld;
      const float* C = cells + kd * 2 * H * ld;
      const float* Hs = C + H * ld;
      const float* wih = w_ih + kd * G4 * E;
      const float* whh = w_hh + kd * G4 * H;
      active_counts(len + k * B, B, T_, active.data());
      float* D = scratch(0, G4 * ld);
      float* dyT = scratch(1, H * ld);
      float* dc = scratch(2, H * Bp);
      // dy of this direction, transposed to [H][T Bp] (padding lanes zero; masked anyway).
      const float* dyk = dy + k * B * T_ * 2 * H + dir * H;
      for (int64_t t = 0; t < T_; ++t) transpose(dyk + t * 2 * H, T_ * 2 * H, B, H, dyT + t * Bp, ld);
      // (padding lanes b >= B of dyT stay unset: the step epilogue masks them out)
      std::memset(dc, 0, H * Bp * sizeof(float));
      for (int64_t s = T_ - 1; s >= 0; --s) {
        const int64_t t = dir == 0 ? s : T_ - 1 - s;
        const int64_t tp = dir == 0 ? t - 1 : t + 1;  // previous step in this direction's order
        const int64_t tn = dir == 0 ? t + 1 : t - 1;  // next step
        for (int64_t l0 = 0; l0 < Bp; l0 += 32) {
          const int64_t col = t * Bp + l0;
          const __mmask16 act[2] = {lane_mask(active[t], l0), lane_mask(active[t], l0 + 16)};
          const float* dn = s < T_ - 1 ? D + tn * Bp + l0 : nullptr;
          const float* cp = s > 0 ? C + tp * Bp + l0 : nullptr;
          float* dxc = dxd + kd * E * ld + col;
          if (Bp - l0 >= 32) {
            bwd_units<2>(H, ld, whh, dn, A + col, C + col, cp, dyT + col, dc + l0, Bp, D + col, act);
            dx_units<2>(E, G4, ld, wih, D + col, dxc);
          } else {
            bwd_units<1>(H, ld, whh, dn, A + col, C + col, cp, dyT + col, dc + l0, Bp, D + col, act);
            dx_units<1>(E, G4, ld, wih, D + col, dxc);
          }
        }
      }
      row_sums(D, G4, ld, ld, dbias + kd * G4);
      // Weight gradients as GEMMs over all T * Bp columns, each computed transposed (its long side as the output's
      // rows: 50 x 400 x 800 runs ~20% faster in MKL than 400 x 50 x 800 here), then transposed back.
      float* xT = scratch(3, E * ld);  // x[k] as [E][T Bp], padding lanes zero
      const float* xk = x + k * B * T_ * E;
      for (int64_t t = 0; t < T_; ++t) {
        transpose(xk + t * E, T_ * E, B, E, xT + t * Bp, ld);
        for (int64_t e = 0; e < E && Bp > B; ++e) std::memset(xT + e * ld + t * Bp + B, 0, (Bp - B) * sizeof(float));
      }
      float* tr = scratch(4, std::max(E, H) * G4);
      gemm<float>(false, true, E, G4, ld, 1.0f, xT, ld, D, ld, 0.0f, tr, G4);  // dw_ih^T [E][4H]
      float* dwih = dw_ih + kd * G4 * E;
      transpose(tr, G4, E, G4, dwih, E);
      // dw_hh = sum_t dgates[t] h[t_prev]^T over the steps with a previous state (h_0 = 0): one GEMM over the
      // column range shifted by one step.
      float* dwhh = dw_hh + kd * G4 * H;
      if (T_ > 1) {
        const float* a = dir == 0 ? Hs : Hs + Bp;
        const float* b = dir == 0 ? D + Bp : D;
        gemm<float>(false, true, H, G4, (T_ - 1) * Bp, 1.0f, a, ld, b, ld, 0.0f, tr, G4);  // dw_hh^T [H][4H]
        transpose(tr, G4, H, G4, dwhh, H);
      } else {
        std::memset(dwhh, 0, G4 * H * sizeof(float));
      }
    }
  });
  // dx[k, b, t] = sum over both directions, back to batch-major rows.
  at::parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float* d0 = dxd + 2 * k * E * ld;
      add_inplace(d0, d0 + E * ld, E * ld);
      for (int64_t t = 0; t < T_; ++t) transpose(d0 + t * Bp, ld, E, B, dx + (k * B * T_ + t) * E, T_ * E);
    }
  });
}
#endif  // MTLFAST_X86

// The lanes path runs fp32 with the AVX-512 kernels.
bool use_lanes(at::ScalarType dt, bool bf16) {
#if MTLFAST_X86
  const Path p = active_path();
  return dt == at::kFloat && !bf16 && (p == Path::kAvx512 || p == Path::kAvx512Bf16);
#else
  (void)dt, (void)bf16;
  return false;
#endif
}

// Per model, the batch rows sorted by length, longest first (stable), as flat indices into the K*B rows; an
// undefined tensor when every model's rows are sorted already. The kernels run on sorted rows so that the rows
// still running at any step are a prefix, and the per-step products skip the others.
at::Tensor sorted_rows(const at::Tensor& len, int64_t K, int64_t B) {
  const int64_t* lp = len.data_ptr<int64_t>();
  bool sorted = true;
  for (int64_t k = 0; k < K && sorted; ++k)
    for (int64_t b = 1; b < B && sorted; ++b) sorted = lp[k * B + b] <= lp[k * B + b - 1];
  if (sorted) return at::Tensor();
  at::Tensor idx = at::empty({K * B}, len.options());
  int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k) {
    int64_t* row = ip + k * B;
    for (int64_t b = 0; b < B; ++b) row[b] = k * B + b;
    std::stable_sort(row, row + B, [&](int64_t a, int64_t c) { return lp[a] > lp[c]; });
  }
  return idx;
}

// t [K, B, ...] -> rows in the order idx (no-op when idx is undefined).
at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& idx) {
  if (!idx.defined()) return t;
  return t.reshape({idx.size(0), -1}).index_select(0, idx).view(t.sizes());
}

// Inverse of gather_rows.
at::Tensor scatter_rows(const at::Tensor& t, const at::Tensor& idx) {
  if (!idx.defined()) return t;
  at::Tensor out = at::empty_like(t);
  out.view({idx.size(0), -1}).index_copy_(0, idx, t.reshape({idx.size(0), -1}));
  return out;
}

}  // namespace

std::vector<at::Tensor> bilstm_forward_cpu(const at::Tensor& x_, const at::Tensor& lengths, const at::Tensor& w_ih_,
                                           const at::Tensor& w_hh_, const at::Tensor& bias_,
                                           const std::string& precision) {
  const Dims d = check_inputs(x_, lengths, w_ih_, w_hh_, precision);
  check_tensor(bias_, "bias", {d.K, 2, 4 * d.H}, "[K, 2, 4H]", x_.scalar_type());
  const bool bf16 = precision == "bf16";
  TORCH_CHECK(!bf16 || x_.scalar_type() == at::kFloat, "bilstm: precision='bf16' needs float32 inputs; got ",
              x_.scalar_type());
  // Emulated bf16 products multiply pre-rounded operands in fp32; the native kernels round while packing.
  const bool pre_round = prod_mode(bf16) == Prod::kBf16Emulated;
  at::Tensor x = pre_round ? round_bf16(x_).contiguous() : x_.contiguous();
  at::Tensor w_ih = pre_round ? round_bf16(w_ih_).contiguous() : w_ih_.contiguous();
  at::Tensor w_hh = pre_round ? round_bf16(w_hh_).contiguous() : w_hh_.contiguous();
  at::Tensor bias = bias_.contiguous();
  at::Tensor len = lengths.contiguous();
  const at::Tensor order = sorted_rows(len, d.K, d.B);
  x = gather_rows(x, order).contiguous();
  len = gather_rows(len, order).contiguous();
  auto opts = x.options();
#if MTLFAST_X86
  if (use_lanes(x.scalar_type(), bf16)) {
    const int64_t ld = d.T * ((d.B + 15) / 16 * 16);
    at::Tensor y = at::empty({d.K, d.B, d.T, 2 * d.H}, opts);
    at::Tensor acts = pooled_empty({d.K, 2, 4 * d.H, ld}, opts);
    at::Tensor cells = pooled_empty({d.K, 2, 2 * d.H, ld}, opts);
    forward_lanes(d, x.data_ptr<float>(), len.data_ptr<int64_t>(), w_ih.data_ptr<float>(), w_hh.data_ptr<float>(),
                  bias.data_ptr<float>(), y.data_ptr<float>(), acts.data_ptr<float>(), cells.data_ptr<float>());
    return {scatter_rows(y, order), acts, cells};
  }
#endif
  at::Tensor y = at::zeros({d.K, d.B, d.T, 2 * d.H}, opts);
  at::Tensor acts = at::empty({d.K, 2, d.B, d.T, 4 * d.H}, opts);
  at::Tensor cells = at::zeros({d.K, 2, d.B, d.T, d.H}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilstm_forward_cpu", [&] {
    forward_impl<scalar_t>(d, x.data_ptr<scalar_t>(), len.data_ptr<int64_t>(), w_ih.data_ptr<scalar_t>(),
                           w_hh.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                           acts.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(), bf16);
  });
  // acts and cells stay in the sorted row order: only backward_cpu reads them, and it sorts the same way.
  return {scatter_rows(y, order), acts, cells};
}

std::vector<at::Tensor> bilstm_backward_cpu(const at::Tensor& dy_, const at::Tensor& x_, const at::Tensor& lengths,
                                            const at::Tensor& w_ih_, const at::Tensor& w_hh_, const at::Tensor& y_,
                                            const at::Tensor& acts_, const at::Tensor& cells_,
                                            const std::string& precision) {
  const Dims d = check_inputs(x_, lengths, w_ih_, w_hh_, precision);
  const auto dt = x_.scalar_type();
  check_tensor(dy_, "dy (gradient of y)", {d.K, d.B, d.T, 2 * d.H}, "[K, B, T, 2H]", dt);
  check_tensor(y_, "y (saved output)", {d.K, d.B, d.T, 2 * d.H}, "[K, B, T, 2H]", dt);
  const bool bf16 = precision == "bf16";
  // The forward's layout is told by the saved tensors: 4-D = the fp32 AVX-512 lanes layout.
  if (acts_.dim() == 4) {
#if MTLFAST_X86
    const int64_t ld = d.T * ((d.B + 15) / 16 * 16);
    check_tensor(acts_, "acts (saved activations)", {d.K, 2, 4 * d.H, ld}, "[K, 2, 4H, T*Bp]", dt);
    check_tensor(cells_, "cells (saved cell states)", {d.K, 2, 2 * d.H, ld}, "[K, 2, 2H, T*Bp]", dt);
    TORCH_CHECK(dt == at::kFloat && !bf16 && cpu_has(Path::kAvx512),
                "bilstm: saved tensors in the fp32 AVX-512 layout need float32, precision 'fp32' and AVX-512");
    at::Tensor acts = acts_.contiguous(), cells = cells_.contiguous();
    at::Tensor x = x_.contiguous(), w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
    at::Tensor len = lengths.contiguous();
    const at::Tensor order = sorted_rows(len, d.K, d.B);
    x = gather_rows(x, order).contiguous();
    len = gather_rows(len, order).contiguous();
    at::Tensor dy = gather_rows(dy_, order).contiguous();
    auto opts = x.options();
    at::Tensor dx = at::empty({d.K, d.B, d.T, d.E}, opts);
    at::Tensor dw_ih = at::empty({d.K, 2, 4 * d.H, d.E}, opts);
    at::Tensor dw_hh = at::empty({d.K, 2, 4 * d.H, d.H}, opts);
    at::Tensor dbias = at::empty({d.K, 2, 4 * d.H}, opts);
    backward_lanes(d, dy.data_ptr<float>(), x.data_ptr<float>(), len.data_ptr<int64_t>(), w_ih.data_ptr<float>(),
                   w_hh.data_ptr<float>(), acts.data_ptr<float>(), cells.data_ptr<float>(), dx.data_ptr<float>(),
                   dw_ih.data_ptr<float>(), dw_hh.data_ptr<float>(), dbias.data_ptr<float>());
    return {scatter_rows(dx, order), dw_ih, dw_hh, dbias};
#else
    TORCH_CHECK(false, "bilstm: saved tensors in the AVX-512 layout on a non-x86 build");
#endif
  }
  check_tensor(acts_, "acts (saved activations)", {d.K, 2, d.B, d.T, 4 * d.H}, "[K, 2, B, T, 4H]", dt);
  check_tensor(cells_, "cells (saved cell states)", {d.K, 2, d.B, d.T, d.H}, "[K, 2, B, T, H]", dt);
  // Emulated bf16 products multiply pre-rounded operands in fp32; the native kernels round while packing.
  const bool pre_round = prod_mode(bf16) == Prod::kBf16Emulated;
  at::Tensor x = pre_round ? round_bf16(x_).contiguous() : x_.contiguous();
  at::Tensor w_ih = pre_round ? round_bf16(w_ih_).contiguous() : w_ih_.contiguous();
  at::Tensor w_hh = pre_round ? round_bf16(w_hh_).contiguous() : w_hh_.contiguous();
  at::Tensor acts = acts_.contiguous(), cells = cells_.contiguous();
  at::Tensor len = lengths.contiguous();
  const at::Tensor order = sorted_rows(len, d.K, d.B);
  x = gather_rows(x, order).contiguous();
  len = gather_rows(len, order).contiguous();
  at::Tensor dy = gather_rows(dy_, order).contiguous(), y = gather_rows(y_, order).contiguous();
  auto opts = x.options();
  at::Tensor dx = at::empty({d.K, d.B, d.T, d.E}, opts);
  at::Tensor dw_ih = at::empty({d.K, 2, 4 * d.H, d.E}, opts);
  at::Tensor dw_hh = at::empty({d.K, 2, 4 * d.H, d.H}, opts);
  at::Tensor dbias = at::empty({d.K, 2, 4 * d.H}, opts);
  at::Tensor dgates = at::empty({d.K, 2, d.B, d.T, 4 * d.H}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilstm_backward_cpu", [&] {
    backward_impl<scalar_t>(d, dy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), len.data_ptr<int64_t>(),
                            w_ih.data_ptr<scalar_t>(), w_hh.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                            acts.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                            dw_ih.data_ptr<scalar_t>(), dw_hh.data_ptr<scalar_t>(), dbias.data_ptr<scalar_t>(),
                            dgates.data_ptr<scalar_t>(), bf16);
  });
  return {scatter_rows(dx, order), dw_ih, dw_hh, dbias};
}

void register_bilstm_cpu(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("bilstm_forward", &bilstm_forward_cpu, py::arg("x"), py::arg("lengths"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("bias"), py::arg("precision") = "fp32", py::call_guard<py::gil_scoped_release>(),
        "Fused bi-LSTM forward over a model array (CPU). Returns [y, acts, cells]; shapes in csrc/bilstm.h.");
  m.def("bilstm_backward", &bilstm_backward_cpu, py::arg("dy"), py::arg("x"), py::arg("lengths"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("y"), py::arg("acts"), py::arg("cells"), py::arg("precision") = "fp32",
        py::call_guard<py::gil_scoped_release>(),
        "Fused bi-LSTM backward (CPU). Returns [dx, dw_ih, dw_hh, dbias].");
  m.def(
      "cpu_kernel_paths",
      []() {
        std::vector<std::string> out{"portable"};
        if (cpu_has(Path::kAvx2)) out.push_back("avx2");
        if (cpu_has(Path::kAvx512)) out.push_back("avx512");
        if (cpu_has(Path::kAvx512Bf16)) out.push_back("avx512_bf16");
        return out;
      },
      "Element-wise kernel builds this CPU can run (the last is the default).");
  m.def(
      "cpu_kernel_path", []() { return std::string(path_name(active_path())); },
      "The element-wise kernel build in use.");
  m.def(
      "set_cpu_kernel_path",
      [](const std::string& name) {
        Path p = name == "auto"       ? Path::kAuto
                 : name == "portable" ? Path::kPortable
                 : name == "avx2"     ? Path::kAvx2
                 : name == "avx512"   ? Path::kAvx512
                 : name == "avx512_bf16" ? Path::kAvx512Bf16
                                      : static_cast<Path>(-1);
        TORCH_CHECK(static_cast<int>(p) >= 0, "set_cpu_kernel_path: name must be one of auto, portable, avx2, ",
                    "avx512, avx512_bf16; got '", name, "'");
        TORCH_CHECK(cpu_has(p), "set_cpu_kernel_path: this CPU cannot run the '", name, "' kernels");
        g_forced_path.store(static_cast<int>(p));
      },
      py::arg("name"), "Force an element-wise kernel build ('auto' restores run-time selection).");
  m.def(
      "gemm_backend",
      []() {
        if (g_force_aten_gemm.load()) return std::string("aten");
        return std::string(blas().sgemm != nullptr ? "mkl" : "aten");
      },
      "Where the bi-LSTM's matrix products go: 'mkl' (torch's own MKL, called directly) or 'aten' (at::mm).");
  m.def(
      "set_gemm_packing",
      [](bool on) { g_no_pack.store(!on); },
      py::arg("on"), "Use MKL's packed recurrent weights when available (default on; off is for testing).");
  m.def(
      "set_gemm_backend",
      [](const std::string& name) {
        TORCH_CHECK(name == "auto" || name == "aten", "set_gemm_backend: name must be 'auto' or 'aten'; got '", name,
                    "'");
        g_force_aten_gemm.store(name == "aten");
      },
      py::arg("name"), "Force the at::mm fallback for matrix products ('auto' restores MKL when present).");
}

}  // namespace mtlfast
