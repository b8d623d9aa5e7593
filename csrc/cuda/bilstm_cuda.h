// Framework-free CUDA kernels of mtlfast: the persistent fused bi-LSTM over a model array and the fused
// Adadelta updates. Included by the kernels (csrc/cuda/*.cu, CUDA headers only) and by the torch glue
// (csrc/cuda/*_glue.cpp), so it uses nothing but the CUDA runtime API and <cstdint>.
//
// Notation
//   K  models in the array          B  batch rows         T  time steps (padded)
//   E  input size                    H  hidden units per direction
//   Bp = round_up(B, 16)             Hp = round_up(H, 16)            G4 = 4 * Hp
//   Kp = round_up(H, 16) for kBF16, round_up(H, 8) for kTF32x3: the reduction width of h W_hh^T
//        (8 keeps the fp32 W_hh of H = 100 in shared memory: 448 x 104 x 4 B = 182 KB instead of 196 KB)
//   "processing order": step s of direction d. Direction 0 reads time t = s; direction 1 reads
//   t = len_b - 1 - s, i.e. it starts at each sequence's own last token. Step s is valid for row b iff
//   s < len_b. Padded gate layout: gate g (i, f, g, o) of unit u sits at column g * Hp + u.
//
// Tensors the launchers read and write (all row-major, contiguous, on the device)
//   xproj   [K, 2, T, Bp, G4] fp32   x W_ih^T + bias in processing order (rows b >= B and invalid steps
//                                    are read but never used)
//   lengths [K, B] int64             1 <= len <= T (clamped to [0, T] for memory safety)
//   w       [K, 2, G4, Kp] + slack   W_hh padded with zeros (row g * Hp + u, column v); bf16 for kBF16, fp32
//                                    for kTF32x3; the buffer extends kWeightSlack elements past the end
//                                    (backward's last 16-column tile reads them; the columns they feed are
//                                    >= Kp and never used)
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

constexpr int kWeightSlack = 16;

// Matrix-unit arithmetic of the recurrent product h W_hh^T (and dgates W_hh in backward).
enum class RecurrentMath : int {
  kBF16 = 0,    // bf16 operands (W_hh and h rounded to bf16; dgates as hi + lo bf16 parts), fp32 accumulation
  kTF32x3 = 1,  // fp32 operands split into tf32 hi + lo, three tensor-core products: ~fp32 accuracy
};

inline int recurrent_kp(int H, RecurrentMath math) {
  const int q = math == RecurrentMath::kBF16 ? 16 : 8;
  return (H + q - 1) / q * q;
}

// Where W_hh lives during the time loop. kAuto: shared memory when it fits, else read through L2.
enum class WeightsPlacement : int { kAuto = 0, kSharedOnly = 1, kL2Only = 2 };

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
                    RecurrentPlan* plan, WeightsPlacement placement = WeightsPlacement::kAuto);

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
                                     RecurrentPlan* plan_out = nullptr,
                                     WeightsPlacement placement = WeightsPlacement::kAuto);
cudaError_t bilstm_recurrent_backward(const RecurrentBackwardArgs& args, RecurrentMath math, cudaStream_t stream,
                                      RecurrentPlan* plan_out = nullptr,
                                      WeightsPlacement placement = WeightsPlacement::kAuto);

// Adadelta with TensorFlow's semantics (= torch.optim.Adadelta without weight decay), the CUDA twins of
// csrc/cpu/adadelta_cpu.cpp; T = float or double. One fused pass over n elements:
//   accum     = rho * accum + (1 - rho) * g^2                        ("sq" in mtlfast.optim)
//   update    = sqrt(accum_upd + eps) / sqrt(accum + eps) * g
//   accum_upd = rho * accum_upd + (1 - rho) * update^2               ("acc" in mtlfast.optim)
//   param    -= lr * update
// mask (optional, device bool [n / mask_block]): element i is skipped entirely (not decayed, not moved) when
// mask[i / mask_block] is false, e.g. the heads [K, S, L, 2H] of task slots not drawn this step.
template <typename T>
cudaError_t adadelta_dense(T* param, const T* grad, T* accum, T* accum_upd, int64_t n, T lr, T rho, T eps,
                           const bool* mask, int64_t mask_block, cudaStream_t stream);

// Lazy row-wise Adadelta for the embedding tables of a model array.
//   table, accum, accum_upd [K, V, D]; grad_rows [K, N, D]; row_ids [K, N] int64 (unique within each model,
//   -1 = padding slot); last_step [K, V] int64 = number of steps already folded into each row's accumulators;
//   the 1-based number of the step being applied is step[k * step_stride] when step is a device pointer
//   (step_stride 0: one counter for all models; a captured CUDA graph can advance it), else step_value.
// An untouched row's accumulators decay by rho per step (dense Adadelta with g = 0); on its next touch both are
// multiplied by rho^(step - 1 - last_step) (computed in double), then updated; last_step = step.
template <typename T>
cudaError_t adadelta_rows(T* table, const T* grad_rows, const int64_t* row_ids, T* accum, T* accum_upd,
                          int64_t* last_step, const int64_t* step, int64_t step_value, int step_stride, int K,
                          int64_t V, int64_t N, int64_t D, T lr, T rho, T eps, cudaStream_t stream);

// Bring every row current (accumulators *= rho^(step - last_step); last_step = step), e.g. before a checkpoint
// or a comparison with a dense optimiser.
template <typename T>
cudaError_t adadelta_rows_flush(T* accum, T* accum_upd, int64_t* last_step, const int64_t* step, int64_t step_value,
                                int step_stride, int K, int64_t V, int64_t D, T rho, cudaStream_t stream);

}  // namespace cuda
}  // namespace mtlfast
