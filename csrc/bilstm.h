// Fused bidirectional single-layer LSTM over a model array: shapes and entry points.
//
// Notation: K = models in the array, B = batch, T = padded time, E = input size, H = hidden size.
// Layout is batch-first with the model array leading; gate order i, f, g, o (as torch.nn.LSTM);
// direction 0 = forward in time, 1 = backward in time; one bias per direction (= b_ih + b_hh of nn.LSTM).
//
//   x        [K, B, T, E]      float32 / float64, contiguous
//   lengths  [K, B]            int64, 1 <= lengths <= T; sequences are right-padded
//   w_ih     [K, 2, 4H, E]
//   w_hh     [K, 2, 4H, H]
//   bias     [K, 2, 4H]
//   y        [K, B, T, 2H]     y[..., :H] forward states, y[..., H:] backward states, 0 at padded positions
//
// Saved for backward (opaque to Python, produced by the forward; rows of each model in length order, longest
// first). Two layouts; the backward tells them apart by the rank of acts:
//  * fp32 on AVX-512 CPUs ("lanes" layout, batch in the vector lanes), Bp = 16 * ceil(B / 16):
//   acts     [K, 2, 4H, T*Bp]  gate activations sigma(i), sigma(f), tanh(g), sigma(o), column t*Bp + b
//   cells    [K, 2, 2H, T*Bp]  cell states (rows 0..H-1) and hidden states (rows H..2H-1), 0 where t >= length
//  * everything else (float64, bf16, AVX2 / portable builds):
//   acts     [K, 2, B, T, 4H]  gate activations (valid where t < length)
//   cells    [K, 2, B, T, H]   cell states (0 at padded positions)
//
// Semantics equal torch.nn.LSTM(bidirectional=True) on packed sequences: the backward direction starts from a
// zero state at each sequence's own last token, so nothing depends on the padding length; padded positions give
// zero outputs and receive zero gradient.
//
// precision: "fp32" (products in the input dtype) or "bf16" (operands of every matrix product rounded to
// bfloat16, products accumulated in fp32; state, gates and master weights stay fp32).
#pragma once
#include <torch/extension.h>

#include <string>
#include <vector>

namespace mtlfast {

// Returns {y, acts, cells}.
std::vector<at::Tensor> bilstm_forward_cpu(const at::Tensor& x, const at::Tensor& lengths, const at::Tensor& w_ih,
                                           const at::Tensor& w_hh, const at::Tensor& bias,
                                           const std::string& precision);

// Returns {dx, dw_ih, dw_hh, dbias} (shapes of x, w_ih, w_hh, bias).
std::vector<at::Tensor> bilstm_backward_cpu(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& lengths,
                                            const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& y,
                                            const at::Tensor& acts, const at::Tensor& cells,
                                            const std::string& precision);

}  // namespace mtlfast
