// Fused Adadelta (TensorFlow semantics) over flat buffers, and the lazy row-wise update of embedding tables
// (shapes and formulas: bilstm_cuda.h). No host synchronisation, no allocation: capturable in a CUDA graph.
#include <cuda_runtime.h>

#include "bilstm_cuda.h"

namespace mtlfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// One Adadelta step of a single element; accumulators already brought current.
__device__ __forceinline__ void adadelta_step(float& p, float g, float& acc, float& acc_upd, float lr, float rho,
                                              float eps) {
  acc = rho * acc + (1.0f - rho) * g * g;
  const float upd = sqrtf(acc_upd + eps) / sqrtf(acc + eps) * g;
  acc_upd = rho * acc_upd + (1.0f - rho) * upd * upd;
  p -= lr * upd;
}

__global__ void __launch_bounds__(kThreads)
    adadelta_dense_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ accum,
                          float* __restrict__ accum_upd, int64_t n, float lr, float rho, float eps) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float p = param[i], a = accum[i], au = accum_upd[i];
    adadelta_step(p, grad[i], a, au, lr, rho, eps);
    param[i] = p;
    accum[i] = a;
    accum_upd[i] = au;
  }
}

// rho^k for k >= 0, in double so that a row untouched for thousands of steps decays as the dense update would.
__device__ __forceinline__ float decay_pow(float rho, int64_t k) {
  return k <= 0 ? 1.0f : static_cast<float>(pow(static_cast<double>(rho), static_cast<double>(k)));
}

// One warp per (model, touched slot): the row's last step is read by lane 0 before anyone writes it.
__global__ void __launch_bounds__(kThreads)
    adadelta_rows_kernel(float* __restrict__ weight, float* __restrict__ accum, float* __restrict__ accum_upd,
                         int64_t* __restrict__ last_step, const int64_t* __restrict__ rows,
                         const float* __restrict__ grad, const int64_t* __restrict__ step, int K, int64_t V, int R,
                         int D, float lr, float rho, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (slot >= static_cast<int64_t>(K) * R) return;
  const int k = static_cast<int>(slot / R);
  const int64_t row = rows[slot];
  if (row < 0 || row >= V) return;  // empty slot
  const int64_t now = step[k];
  const size_t key = static_cast<size_t>(k) * V + row;
  int64_t last = 0;
  if (lane == 0) last = last_step[key];
  last = __shfl_sync(0xffffffffu, last, 0);
  const float decay = decay_pow(rho, now - last - 1);  // the steps in between, with g = 0
  float* w = weight + key * D;
  float* a = accum + key * D;
  float* au = accum_upd + key * D;
  const float* g = grad + static_cast<size_t>(slot) * D;
  for (int j = lane; j < D; j += 32) {
    float p = w[j], acc = a[j] * decay, accu = au[j] * decay;
    adadelta_step(p, g[j], acc, accu, lr, rho, eps);
    w[j] = p;
    a[j] = acc;
    au[j] = accu;
  }
  __syncwarp();
  if (lane == 0) last_step[key] = now;
}

// One warp per (model, row).
__global__ void __launch_bounds__(kThreads)
    adadelta_rows_flush_kernel(float* __restrict__ accum, float* __restrict__ accum_upd,
                               int64_t* __restrict__ last_step, const int64_t* __restrict__ step, int K, int64_t V,
                               int D, float rho) {
  const int lane = threadIdx.x & 31;
  const int64_t key = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (key >= static_cast<int64_t>(K) * V) return;
  const int k = static_cast<int>(key / V);
  const int64_t now = step[k];
  int64_t last = 0;
  if (lane == 0) last = last_step[key];
  last = __shfl_sync(0xffffffffu, last, 0);
  if (last >= now) return;  // uniform across the warp
  const float decay = decay_pow(rho, now - last);
  float* a = accum + static_cast<size_t>(key) * D;
  float* au = accum_upd + static_cast<size_t>(key) * D;
  for (int j = lane; j < D; j += 32) {
    a[j] *= decay;
    au[j] *= decay;
  }
  __syncwarp();
  if (lane == 0) last_step[key] = now;
}

int blocks_for(int64_t work_items, int per_block) {
  const int64_t b = (work_items + per_block - 1) / per_block;
  return static_cast<int>(b < 1 ? 1 : (b > 65535LL * 32 ? 65535LL * 32 : b));
}

}  // namespace

cudaError_t adadelta_dense(float* param, const float* grad, float* accum, float* accum_upd, int64_t n, float lr,
                           float rho, float eps, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  adadelta_dense_kernel<<<blocks_for(n, kThreads * 4), kThreads, 0, stream>>>(param, grad, accum, accum_upd, n, lr,
                                                                             rho, eps);
  return cudaGetLastError();
}

cudaError_t adadelta_rows(float* weight, float* accum, float* accum_upd, int64_t* last_step, const int64_t* rows,
                          const float* grad, const int64_t* step, int K, int64_t V, int R, int D, float lr, float rho,
                          float eps, cudaStream_t stream) {
  const int64_t slots = static_cast<int64_t>(K) * R;
  if (slots <= 0 || D <= 0) return cudaSuccess;
  const int64_t warps_per_block = kThreads / 32;
  const int64_t blocks = (slots + warps_per_block - 1) / warps_per_block;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  adadelta_rows_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(weight, accum, accum_upd, last_step,
                                                                               rows, grad, step, K, V, R, D, lr, rho,
                                                                               eps);
  return cudaGetLastError();
}

cudaError_t adadelta_rows_flush(float* accum, float* accum_upd, int64_t* last_step, const int64_t* step, int K,
                                int64_t V, int D, float rho, cudaStream_t stream) {
  const int64_t keys = static_cast<int64_t>(K) * V;
  if (keys <= 0 || D <= 0) return cudaSuccess;
  const int64_t warps_per_block = kThreads / 32;
  const int64_t blocks = (keys + warps_per_block - 1) / warps_per_block;
  if (blocks > 0x7fffffffLL) return cudaErrorInvalidValue;
  adadelta_rows_flush_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(accum, accum_upd, last_step, step,
                                                                                     K, V, D, rho);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace mtlfast
