// Fused Adadelta (TensorFlow semantics) over flat buffers, and the lazy row-wise update of embedding tables
// (shapes and formulas: bilstm_cuda.h; the same ops as csrc/cpu/adadelta_cpu.cpp). No host synchronisation, no allocation: capturable in a CUDA graph.
#include <cuda_runtime.h>

#include "bilstm_cuda.h"

namespace mtlfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float dsqrt(float v) { return sqrtf(v); }
__device__ __forceinline__ double dsqrt(double v) { return sqrt(v); }

// One Adadelta step of a single element (torch.optim.Adadelta's operation order); accumulators current.
template <typename T>
__device__ __forceinline__ void adadelta_step(T& p, T g, T& acc, T& acc_upd, T lr, T rho, T eps) {
  acc = acc * rho + (T(1) - rho) * g * g;
  const T upd = dsqrt(acc_upd + eps) / dsqrt(acc + eps) * g;
  acc_upd = acc_upd * rho + (T(1) - rho) * upd * upd;
  p -= lr * upd;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    adadelta_dense_kernel(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ accum,
                          T* __restrict__ accum_upd, int64_t n, T lr, T rho, T eps, const bool* __restrict__ mask,
                          int64_t mask_block) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if (mask != nullptr && !mask[i / mask_block]) continue;  // block skipped: not decayed, not moved
    T p = param[i], a = accum[i], au = accum_upd[i];
    adadelta_step(p, grad[i], a, au, lr, rho, eps);
    param[i] = p;
    accum[i] = a;
    accum_upd[i] = au;
  }
}

// rho^k for k >= 0, in double so that a row untouched for thousands of steps decays as the dense update would.
__device__ __forceinline__ double decay_pow(double rho, int64_t k) {
  return k <= 0 ? 1.0 : pow(rho, static_cast<double>(k));
}

__device__ __forceinline__ int64_t current_step(const int64_t* step, int64_t step_value, int step_stride, int k) {
  return step != nullptr ? step[static_cast<int64_t>(k) * step_stride] : step_value;
}

// One warp per (model, touched slot): the row's last step is read by lane 0 before anyone writes it.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    adadelta_rows_kernel(T* __restrict__ table, const T* __restrict__ grad_rows, const int64_t* __restrict__ row_ids,
                         T* __restrict__ accum, T* __restrict__ accum_upd, int64_t* __restrict__ last_step,
                         const int64_t* __restrict__ step, int64_t step_value, int step_stride, int K, int64_t V,
                         int64_t N, int64_t D, T lr, T rho, T eps) {
  const int lane = threadIdx.x & 31;
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (slot >= static_cast<int64_t>(K) * N) return;
  const int k = static_cast<int>(slot / N);
  const int64_t row = row_ids[slot];
  if (row < 0 || row >= V) return;  // padding slot
  const int64_t now = current_step(step, step_value, step_stride, k);
  const int64_t key = static_cast<int64_t>(k) * V + row;
  int64_t last = 0;
  if (lane == 0) last = last_step[key];
  last = __shfl_sync(0xffffffffu, last, 0);
  const T decay = static_cast<T>(decay_pow(static_cast<double>(rho), now - 1 - last));  // steps with g = 0
  T* w = table + key * D;
  T* a = accum + key * D;
  T* au = accum_upd + key * D;
  const T* g = grad_rows + slot * D;
  for (int64_t j = lane; j < D; j += 32) {
    T p = w[j], acc = a[j], accu = au[j];
    if (now - 1 - last > 0) {
      acc *= decay;
      accu *= decay;
    }
    adadelta_step(p, g[j], acc, accu, lr, rho, eps);
    w[j] = p;
    a[j] = acc;
    au[j] = accu;
  }
  __syncwarp();
  if (lane == 0) last_step[key] = now;
}

// One warp per (model, row).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    adadelta_rows_flush_kernel(T* __restrict__ accum, T* __restrict__ accum_upd, int64_t* __restrict__ last_step,
                               const int64_t* __restrict__ step, int64_t step_value, int step_stride, int K, int64_t V,
                               int64_t D, T rho) {
  const int lane = threadIdx.x & 31;
  const int64_t key = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (key >= static_cast<int64_t>(K) * V) return;
  const int k = static_cast<int>(key / V);
  const int64_t now = current_step(step, step_value, step_stride, k);
  int64_t last = 0;
  if (lane == 0) last = last_step[key];
  last = __shfl_sync(0xffffffffu, last, 0);
  if (last >= now) return;  // uniform across the warp
  const T decay = static_cast<T>(decay_pow(static_cast<double>(rho), now - last));
  T* a = accum + key * D;
  T* au = accum_upd + key * D;
  for (int64_t j = lane; j < D; j += 32) {
    a[j] *= decay;
    au[j] *= decay;
  }
  __syncwarp();
  if (lane == 0) last_step[key] = now;
}

unsigned blocks_for(int64_t items, int64_t per_block, int64_t cap) {
  const int64_t b = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(b < 1 ? 1 : (b > cap ? cap : b));
}

constexpr int64_t kMaxGrid = 0x7fffffffLL;

}  // namespace

template <typename T>
cudaError_t adadelta_dense(T* param, const T* grad, T* accum, T* accum_upd, int64_t n, T lr, T rho, T eps,
                           const bool* mask, int64_t mask_block, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (mask != nullptr && mask_block <= 0) return cudaErrorInvalidValue;
  adadelta_dense_kernel<T><<<blocks_for(n, kThreads * 4, 65535LL * 32), kThreads, 0, stream>>>(
      param, grad, accum, accum_upd, n, lr, rho, eps, mask, mask_block);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adadelta_rows(T* table, const T* grad_rows, const int64_t* row_ids, T* accum, T* accum_upd,
                          int64_t* last_step, const int64_t* step, int64_t step_value, int step_stride, int K,
                          int64_t V, int64_t N, int64_t D, T lr, T rho, T eps, cudaStream_t stream) {
  const int64_t slots = static_cast<int64_t>(K) * N;
  if (slots <= 0 || D <= 0) return cudaSuccess;
  const int64_t per_block = kThreads / 32;
  if ((slots + per_block - 1) / per_block > kMaxGrid) return cudaErrorInvalidValue;
  adadelta_rows_kernel<T><<<blocks_for(slots, per_block, kMaxGrid), kThreads, 0, stream>>>(
      table, grad_rows, row_ids, accum, accum_upd, last_step, step, step_value, step_stride, K, V, N, D, lr, rho, eps);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adadelta_rows_flush(T* accum, T* accum_upd, int64_t* last_step, const int64_t* step, int64_t step_value,
                                int step_stride, int K, int64_t V, int64_t D, T rho, cudaStream_t stream) {
  const int64_t keys = static_cast<int64_t>(K) * V;
  if (keys <= 0 || D <= 0) return cudaSuccess;
  const int64_t per_block = kThreads / 32;
  if ((keys + per_block - 1) / per_block > kMaxGrid) return cudaErrorInvalidValue;
  adadelta_rows_flush_kernel<T><<<blocks_for(keys, per_block, kMaxGrid), kThreads, 0, stream>>>(
      accum, accum_upd, last_step, step, step_value, step_stride, K, V, D, rho);
  return cudaGetLastError();
}

#define MTLFAST_INSTANTIATE(T)                                                                                      \
  template cudaError_t adadelta_dense<T>(T*, const T*, T*, T*, int64_t, T, T, T, const bool*, int64_t,            \
                                         cudaStream_t);                                                             \
  template cudaError_t adadelta_rows<T>(T*, const T*, const int64_t*, T*, T*, int64_t*, const int64_t*, int64_t,   \
                                        int, int, int64_t, int64_t, int64_t, T, T, T, cudaStream_t);               \
  template cudaError_t adadelta_rows_flush<T>(T*, T*, int64_t*, const int64_t*, int64_t, int, int, int64_t,        \
                                              int64_t, T, cudaStream_t);
MTLFAST_INSTANTIATE(float)
MTLFAST_INSTANTIATE(double)
#undef MTLFAST_INSTANTIATE

}  // namespace cuda
}  // namespace mtlfast
