// The general bi-LSTM path's matrix products in the call's precision: fp32 / float64 through blas.h, bf16
// emulated (operands pre-rounded, fp32 GEMM) or native (bf16_gemm.h). Header only, inlined into the path.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/bf16_gemm.h"
#include "cpu/blas.h"
#include "cpu/isa.h"

namespace mtlfast {
namespace cpu {

// How the products of one call are computed.
enum class Prod { kFp, kBf16Emulated, kBf16Native };

inline Prod prod_mode(bool bf16, Path path) {
  if (!bf16) return Prod::kFp;
  return path == Path::kAvx512Bf16 ? Prod::kBf16Native : Prod::kBf16Emulated;
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

}  // namespace cpu
}  // namespace mtlfast
