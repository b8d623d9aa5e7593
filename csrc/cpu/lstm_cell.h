// The LSTM cell of the general bi-LSTM path: one time step's gate non-linearities and cell update (forward), and
// their gradients (backward), over the rows still running, in row-major [row][4H] gate blocks.
//
// The bodies below are templates on the element type (float, or double for gradcheck). For float, each kernel
// build (isa.h) has its own compiled copy in lstm_cell.cpp, reached through one function pointer per step (an
// AVX-512 build written with intrinsics, AVX2 and portable builds from these bodies); double always runs the
// body inline.
#pragma once
#include <cstdint>
#include <type_traits>

#include "cpu/isa.h"
#include "cpu/simd_math.h"

namespace mtlfast {
namespace cpu {

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

struct StepKernels {
  FwdStepF fwd;
  BwdStepF bwd;
};

// The float step kernels of kernel build p (csrc/cpu/lstm_cell.cpp).
StepKernels float_kernels(Path p);

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

}  // namespace cpu
}  // namespace mtlfast
