// The two implementations behind the CPU bi-LSTM's one contract (csrc/bilstm.h), as bilstm_cpu.cpp calls them
// after checking the arguments and sorting each model's rows by length (longest first, so that the rows still
// running at any step are a prefix). One task per (model, direction) in both: over at::parallel_for in the general
// path, handed out costliest first to the next free thread in the lanes paths (costliest_first, lanes_layout.h).
//
// * general path (bilstm_generic.cpp): any dtype, precision and kernel build. Saved tensors acts [K, 2, B, T, 4H],
//   cells [K, 2, B, T, H]. Input projection and weight gradients as GEMMs; per step one recurrent product and the
//   cell kernels of lstm_cell.h.
// * lanes path (bilstm_lanes.cpp): fp32 on the avx512 / avx512_bf16 builds. Batch in the vector lanes; saved
//   tensors acts [K, 2, 4H, T*Bp], cells [K, 2, 2H, T*Bp] with Bp = 16 * ceil(B / 16). Ragged: each run's steps
//   stop at its longest row (columns t >= that are neither computed nor read), and a 32-lane block with at most
//   16 live rows runs as a 16-lane tile (none with no live row).
// * bf16 lanes path (bilstm_lanes_bf16.cpp): precision "bf16" on the avx512_bf16 build, the lanes path with
//   vdpbf16ps products (same layout and saved tensors; same rounding as the general path's bf16).
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>

#include "cpu/isa.h"

namespace mtlfast {
namespace cpu {

struct Dims {
  int64_t K, B, T, E, H;
};

// General path. Pointers to contiguous tensors in sorted row order; y and cells zeroed by the caller; bf16
// operands pre-rounded by the caller when prod_mode(bf16, path) is Prod::kBf16Emulated.
template <typename T>
void forward_generic(const Dims& d, const T* x, const int64_t* len, const T* w_ih, const T* w_hh, const T* bias, T* y,
                     T* acts, T* cells, bool bf16, Path path);
template <typename T>
void backward_generic(const Dims& d, const T* dy, const T* x, const int64_t* len, const T* w_ih, const T* w_hh,
                      const T* y, const T* acts, const T* cells, T* dx, T* dw_ih, T* dw_hh, T* dbias, T* dgates,
                      bool bf16, Path path);

// Off: the general path runs everywhere (tests and benchmarks compare the two; default on).
inline std::atomic<bool> g_no_lanes{false};

// Lanes path: true when it runs a float32 call of this precision on kernel build `path` (fp32: avx512 and
// avx512_bf16 builds; bf16: avx512_bf16 only).
inline bool use_lanes(at::ScalarType dt, bool bf16, Path path) {
  if (!MTLFAST_X86 || dt != at::kFloat || g_no_lanes.load(std::memory_order_relaxed)) return false;
  return bf16 ? path == Path::kAvx512Bf16 : (path == Path::kAvx512 || path == Path::kAvx512Bf16);
}

// Columns per (model, direction) of the lanes layout: T * Bp.
inline int64_t lanes_ld(const Dims& d) { return d.T * ((d.B + 15) / 16 * 16); }

#if MTLFAST_X86
// len: lengths with each run's rows sorted longest first; order: for sorted row b of run k, the flat row
// order[k B + b] of x, y, dy and dx it reads or writes (nullptr: the rows are in that order already).
void forward_lanes(const Dims& d, const float* x, const int64_t* len, const int64_t* order, const float* w_ih,
                   const float* w_hh, const float* bias, float* y, float* acts, float* cells);
void backward_lanes(const Dims& d, const float* dy, const float* x, const int64_t* len, const int64_t* order,
                    const float* w_ih, const float* w_hh, const float* acts, const float* cells, float* dx,
                    float* dw_ih, float* dw_hh, float* dbias);
void forward_lanes_bf16(const Dims& d, const float* x, const int64_t* len, const int64_t* order, const float* w_ih,
                        const float* w_hh, const float* bias, float* y, float* acts, float* cells);
void backward_lanes_bf16(const Dims& d, const float* dy, const float* x, const int64_t* len, const int64_t* order,
                         const float* w_ih, const float* w_hh, const float* acts, const float* cells, float* dx,
                         float* dw_ih, float* dw_hh, float* dbias);
#endif

}  // namespace cpu
}  // namespace mtlfast
