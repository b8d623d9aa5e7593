// Framework-free CUDA kernels of mtlfast: the persistent fused bi-LSTM over a model array and the fused
// Adadelta updates. Included by the kernels (csrc/cuda/*.cu, CUDA headers only) and by the torch glue
// (csrc/cuda/*_glue.cpp), so it uses nothing but the CUDA runtime API and <cstdint>.
//
// Notation
//   K  models in the array          B  batch rows         T  time steps (padded)
//   E  input size                    H  hidden units per direction
//   Bp = round_up(B, 16)             Hp = round_up(H, 16)            G4 = 4 * Hp
//   "processing order": step s of direction d. Direction 0 reads time t = s; direction 1 reads
//   t = len_b - 1 - s, i.e. it starts at each sequence's own last token. Step s is valid for row b iff
//   s < len_b. Padded gate layout: gate g (i, f, g, o) of unit u sits at column g * Hp + u.
//
// Tensors the launchers read and write (all row-major, contiguous, on the device)
//   xproj   [K, 2, T, Bp, G4] fp32   x W_ih^T + bias in processing order (rows b >= B and invalid steps
//                                    are read but never used)
//   lengths [K, B] int64             1 <= len <= T (clamped to [0, T] for memory safety)
//   w       [K, 2, G4, Hp]           W_hh padded with zeros; bf16 for kBF16, fp32 for kTF32x3
//   y       [K, B, T, 2H] fp32       written at valid positions only (caller zero-fills)
//   gates   [K, 2, T, Bp, G4] fp32   saved post-activation i, f, g, o (optional, forward)
//   cells   [K, 2, T, Bp, Hp] fp32   saved cell state c_s (optional, forward)
//   hproc   [K, 2, T+1, Bp, Hp] fp32 slot s holds the state entering step s (slot 0 = zero initial state,
//                                    caller zero-fills); optional, forward
//   dy      [K, B, T, 2H] fp32       upstream gradient (backward)
//   dgates  [K, 2, T, Bp, G4] fp32   gradient w.r.t. the gate pre-activations in processing order,
//                                    written at valid positions only (caller zero-fills); the weight
//                                    gradients are batched GEMMs over it:
//                                      dW_ih = dgates^T xproc, dW_hh = dgates^T hproc[:, :, :T],
//                                      dbias = sum over (T, Bp), dxproc = dgates W_ih
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace mtlfast {
namespace cuda {

// Matrix-unit arithmetic of the recurrent product h W_hh^T (and dgates W_hh in backward).
enum class RecurrentMath : int {
  kBF16 = 0,    // bf16 operands (W_hh, h, dgates rounded to bf16), fp32 accumulation; W_hh 80 KB at H = 100
  kTF32x3 = 1,  // fp32 operands split into tf32 hi + lo, three tensor-core products: ~fp32 accuracy
};

// How one launch is laid out; decided on the host from the shapes and the device's limits.
struct RecurrentPlan {
  int rows_per_block = 0;   // batch rows per block (16 or 32)
  int blocks = 0;           // K * 2 * Bp / rows_per_block
  int threads = 0;          // threads per block
  bool weights_on_chip = false;  // W_hh kept in shared memory for all steps (else read through L2)
  size_t smem_bytes = 0;    // dynamic shared memory per block
};

// Pure function of the shapes and limits (no CUDA calls): used by the launchers and by the resource report.
// Returns false when no layout fits in max_smem_bytes.
bool plan_recurrent(bool forward, int K, int B, int H, RecurrentMath math, size_t max_smem_bytes, int num_sms,
                    RecurrentPlan* plan);

struct RecurrentForwardArgs {
  const float* xproj;
  const int64_t* lengths;
  const void* w;
  float* y;
  float* gates;  // nullptr: inference, nothing saved (then cells and hproc must be nullptr too)
  float* cells;
  float* hproc;
  int K, B, T, H;
};

struct RecurrentBackwardArgs {
  const float* dy;
  const int64_t* lengths;
  const void* w;
  const float* gates;
  const float* cells;
  float* dgates;
  int K, B, T, H;
};

// Enqueue on `stream`; no host synchronisation and no allocation (safe inside CUDA-graph capture).
// Return cudaErrorInvalidValue when no layout fits the device (H too large), else the launch status.
cudaError_t bilstm_recurrent_forward(const RecurrentForwardArgs& args, RecurrentMath math, cudaStream_t stream,
                                     RecurrentPlan* plan_out = nullptr);
cudaError_t bilstm_recurrent_backward(const RecurrentBackwardArgs& args, RecurrentMath math, cudaStream_t stream,
                                      RecurrentPlan* plan_out = nullptr);

// Adadelta with TensorFlow's semantics, one fused pass over flat fp32 buffers of n elements:
//   accum     = rho * accum + (1 - rho) * g^2
//   update    = sqrt(accum_upd + eps) / sqrt(accum + eps) * g
//   accum_upd = rho * accum_upd + (1 - rho) * update^2
//   param    -= lr * update
cudaError_t adadelta_dense(float* param, const float* grad, float* accum, float* accum_upd, int64_t n, float lr,
                           float rho, float eps, cudaStream_t stream);

// Lazy row-wise Adadelta for embedding tables of a model array.
//   weight, accum, accum_upd [K, V, D] fp32; last_step [K, V] int64 = the step each row's accumulators are
//   current at; rows [K, R] int64 = touched rows (unique within each model; -1 = empty slot);
//   grad [K, R, D] fp32 = their gradients; step [K] int64 = the current step number (device memory, so a
//   captured graph can advance it). An untouched row's accumulators decay by rho per step (dense Adadelta with
//   g = 0); they are brought current on the next touch by rho^(step - last_step - 1), then updated.
cudaError_t adadelta_rows(float* weight, float* accum, float* accum_upd, int64_t* last_step, const int64_t* rows,
                          const float* grad, const int64_t* step, int K, int64_t V, int R, int D, float lr, float rho,
                          float eps, cudaStream_t stream);

// Bring every row current at `step` (accumulators *= rho^(step - last_step); last_step = step), e.g. before a
// checkpoint or a comparison with a dense optimiser.
cudaError_t adadelta_rows_flush(float* accum, float* accum_upd, int64_t* last_step, const int64_t* step, int K,
                                int64_t V, int D, float rho, cudaStream_t stream);

}  // namespace cuda
}  // namespace mtlfast
