// Matrix products for the bi-LSTM, row-major: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C.
//
// They go to the BLAS that torch itself links (MKL's sgemm_/dgemm_ and its packed-operand API, looked up at run
// time so that the extension still loads on a torch without MKL), else to at::mm. Header only: gemm and Rhs are
// inlined into their callers as when they lived in one file.
#pragma once
#include <ATen/ATen.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <type_traits>

namespace mtlfast {
namespace cpu {

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

inline const Blas& blas() {
  static Blas b;
  return b;
}

// Test switches: force at::mm (set_gemm_backend('aten')); skip MKL's packed operands (set_gemm_packing(False)).
inline std::atomic<bool> g_force_aten_gemm{false};

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

inline std::atomic<bool> g_no_pack{false};

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

}  // namespace cpu
}  // namespace mtlfast
