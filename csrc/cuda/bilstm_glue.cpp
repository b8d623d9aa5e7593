// Torch glue of the CUDA kernels (csrc/cuda/*.cu, declared in bilstm_cuda.h): argument checks, layout
// changes and the batched GEMMs (cuBLAS through ATen) around the persistent recurrent kernels. Everything
// here is asynchronous on the current stream and allocates only through the caching allocator, so a training
// step built from these ops can be captured in a CUDA graph.
//
// Ops registered in mtlfast._C (shapes as in docs/ARCHITECTURE.md, all tensors on one CUDA device):
//
//   bilstm_forward_cuda(x, lengths, w_ih, w_hh, bias, precision="fp32", training=True)
//       -> (y, xproc, gates, cells, hproc)
//     x [K, B, T, E] fp32, lengths [K, B] int64 (1 <= len <= T; not checked on the host, which would need a
//     device sync: values outside [0, T] are clamped), w_ih [K, 2, 4H, E], w_hh [K, 2, 4H, H], bias [K, 2, 4H].
//     y [K, B, T, 2H] (zero at padded positions). xproc, gates, cells, hproc are the saved state for
//     backward (shapes in bilstm_cuda.h); with training=False they are empty tensors.
//     precision: "fp32" (3xTF32 tensor-core recurrence, ~fp32 accuracy) or "bf16" (bf16 operands, fp32
//     accumulation and state). The input projection and all weight-gradient GEMMs run in fp32.
//
//   bilstm_backward_cuda(dy, lengths, w_ih, w_hh, xproc, gates, cells, hproc, precision="fp32")
//       -> (dx, dw_ih, dw_hh, dbias)     shapes of x, w_ih, w_hh, bias
//
//   adadelta_cuda(param, grad, accum, accum_upd, lr, rho, eps)            in place, flat fp32 buffers
//   adadelta_rows_cuda(weight, accum, accum_upd, last_step, rows, grad, step, lr, rho, eps)   in place
//   adadelta_rows_flush_cuda(accum, accum_upd, last_step, step, rho)                         in place
//   bilstm_cuda_plan(K, B, H, precision, forward=True) -> dict (launch layout on the current device)
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "bilstm_cuda.h"
#include "mtlfast.h"

namespace mtlfast {
namespace {

using cuda::RecurrentMath;

std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes() << " " << t.scalar_type() << " on " << t.device();
  return os.str();
}

void check_cuda_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Device& device) {
  TORCH_CHECK(t.defined(), "mtlfast CUDA op: ", name, " is undefined");
  TORCH_CHECK(t.device() == device, "mtlfast CUDA op: ", name, " must be on ", device, " (the device of the first "
              "argument); got ", shape_of(t));
  TORCH_CHECK(t.scalar_type() == dtype, "mtlfast CUDA op: ", name, " must be ", dtype, "; got ", shape_of(t),
              dtype == at::kFloat ? " (float64 runs only on backend='reference')" : "");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected, const char* spelled) {
  TORCH_CHECK(t.sizes() == expected, "mtlfast CUDA op: ", name, " must have shape ", spelled, " = ", expected,
              "; got ", t.sizes());
}

RecurrentMath parse_precision(const std::string& precision) {
  if (precision == "fp32") return RecurrentMath::kTF32x3;
  if (precision == "bf16") return RecurrentMath::kBF16;
  TORCH_CHECK(false, "mtlfast CUDA bilstm: precision must be 'fp32' or 'bf16'; got '", precision, "'");
  return RecurrentMath::kTF32x3;
}

void check_launch(cudaError_t err, const char* what, int64_t H) {
  if (err == cudaErrorInvalidValue) {
    TORCH_CHECK(false, "mtlfast CUDA ", what, ": no launch layout fits this device's shared memory for hidden size H = ",
                H, " (expected H up to about 500); use backend='reference' or the CPU kernel");
  }
  TORCH_CHECK(err == cudaSuccess, "mtlfast CUDA ", what, " failed: ", cudaGetErrorString(err));
}

inline int64_t round_up16(int64_t v) { return (v + 15) / 16 * 16; }

// Source time of step s for direction 1 (t = len - 1 - s; s itself where s >= len) and the validity mask.
// The map is its own inverse on valid positions, so the same gather reverses and un-reverses.
std::pair<at::Tensor, at::Tensor> reverse_index(const at::Tensor& lengths, int64_t T) {
  auto s = at::arange(T, lengths.options()).view({1, 1, T});
  auto len = lengths.clamp(0, T).unsqueeze(-1);
  auto valid = s < len;
  auto src = at::where(valid, len - 1 - s, s);
  return {src, valid};
}

// [K, 2, 4H, ...] -> [K, 2, 4Hp, ...]: each gate block padded with zero rows (and the last dim to pad_last).
at::Tensor pad_gates(const at::Tensor& w, int64_t H, int64_t Hp, int64_t pad_last) {
  const int64_t K = w.size(0);
  std::vector<int64_t> view{K, 2, 4, H};
  for (int64_t i = 3; i < w.dim(); ++i) view.push_back(w.size(i));
  auto v = w.reshape(view);
  std::vector<int64_t> pad;  // constant_pad_nd pads from the last dim backwards
  if (w.dim() == 4) pad = {0, pad_last, 0, Hp - H};
  else pad = {0, Hp - H};
  auto padded = at::constant_pad_nd(v, pad, 0);
  std::vector<int64_t> out{K, 2, 4 * Hp};
  if (w.dim() == 4) out.push_back(w.size(3) + pad_last);
  return padded.reshape(out).contiguous();
}

// [K, 2, 4Hp, ...] -> [K, 2, 4H, ...] (drop the padding of pad_gates).
at::Tensor unpad_gates(const at::Tensor& w, int64_t H, int64_t Hp, int64_t last) {
  const int64_t K = w.size(0);
  if (w.dim() == 4) {
    auto v = w.view({K, 2, 4, Hp, w.size(3)}).narrow(3, 0, H).narrow(4, 0, last);
    return v.reshape({K, 2, 4 * H, last}).contiguous();
  }
  return w.view({K, 2, 4, Hp}).narrow(3, 0, H).reshape({K, 2, 4 * H}).contiguous();
}

struct Dims {
  int64_t K, B, T, E, H, Bp, Hp, G4;
};

// Checks the arguments shared by forward and backward; (K, B, T, E) come from x (forward) or dy, w_ih (backward).
Dims check_bilstm_args(int64_t K, int64_t B, int64_t T, int64_t E, const at::Device& dev, const at::Tensor& lengths,
                       const at::Tensor& w_ih, const at::Tensor& w_hh) {
  TORCH_CHECK(w_hh.dim() == 4, "mtlfast CUDA bilstm: w_hh must have shape [K, 2, 4H, H]; got ", w_hh.sizes());
  Dims d{};
  d.K = K;
  d.B = B;
  d.T = T;
  d.E = E;
  d.H = w_hh.size(3);
  TORCH_CHECK(d.H > 0, "mtlfast CUDA bilstm: hidden size H (w_hh.size(3)) must be positive; got ", d.H);
  d.Bp = round_up16(d.B);
  d.Hp = round_up16(d.H);
  d.G4 = 4 * d.Hp;
  check_cuda_tensor(lengths, "lengths", at::kLong, dev);
  check_cuda_tensor(w_ih, "w_ih", at::kFloat, dev);
  check_cuda_tensor(w_hh, "w_hh", at::kFloat, dev);
  check_shape(lengths, "lengths", {d.K, d.B}, "[K, B]");
  check_shape(w_ih, "w_ih", {d.K, 2, 4 * d.H, d.E}, "[K, 2, 4H, E]");
  check_shape(w_hh, "w_hh", {d.K, 2, 4 * d.H, d.H}, "[K, 2, 4H, H]");
  TORCH_CHECK(d.K * 2 * (d.Bp / 16) < (int64_t{1} << 31), "mtlfast CUDA bilstm: K * B too large for one launch");
  return d;
}

std::vector<at::Tensor> bilstm_forward_cuda(const at::Tensor& x_in, const at::Tensor& lengths_in,
                                            const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
                                            const at::Tensor& bias_in, const std::string& precision, bool training) {
  TORCH_CHECK(x_in.is_cuda(), "mtlfast CUDA bilstm: x must be a CUDA tensor; got ", shape_of(x_in));
  TORCH_CHECK(x_in.dim() == 4, "mtlfast CUDA bilstm: x must have shape [K, B, T, E]; got ", x_in.sizes());
  check_cuda_tensor(x_in, "x", at::kFloat, x_in.device());
  const Dims d = check_bilstm_args(x_in.size(0), x_in.size(1), x_in.size(2), x_in.size(3), x_in.device(), lengths_in,
                                   w_ih_in, w_hh_in);
  check_cuda_tensor(bias_in, "bias", at::kFloat, x_in.device());
  check_shape(bias_in, "bias", {d.K, 2, 4 * d.H}, "[K, 2, 4H]");
  const RecurrentMath math = parse_precision(precision);
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto x = x_in.contiguous();
  auto lengths = lengths_in.contiguous();
  const auto f32 = x.options();

  // Inputs in processing order [K, 2, T, Bp, E]: direction 1 reads each sequence from its last token.
  auto [src, valid] = reverse_index(lengths, d.T);  // [K, B, T]
  auto mask = valid.unsqueeze(-1).to(at::kFloat);
  auto x_fwd = x * mask;
  auto x_bwd = x.gather(2, src.unsqueeze(-1).expand({d.K, d.B, d.T, d.E})) * mask;
  auto xproc = at::stack({x_fwd, x_bwd}, 1).permute({0, 1, 3, 2, 4});  // [K, 2, T, B, E]
  xproc = at::constant_pad_nd(xproc, {0, 0, 0, d.Bp - d.B}, 0).contiguous();

  // Input projection for every step at once: xproj = xproc W_ih^T + bias, gate blocks padded to Hp.
  auto w_ih_p = pad_gates(w_ih_in, d.H, d.Hp, 0);  // [K, 2, G4, E]
  auto bias_p = pad_gates(bias_in, d.H, d.Hp, 0);  // [K, 2, G4]
  auto xproj = at::baddbmm(bias_p.view({d.K * 2, 1, d.G4}), xproc.view({d.K * 2, d.T * d.Bp, d.E}),
                           w_ih_p.view({d.K * 2, d.G4, d.E}).transpose(1, 2));
  xproj = xproj.contiguous();

  auto w_rec = pad_gates(w_hh_in, d.H, d.Hp, d.Hp - d.H);  // [K, 2, G4, Hp]
  if (math == RecurrentMath::kBF16) w_rec = w_rec.to(at::kBFloat16).contiguous();

  auto y = at::zeros({d.K, d.B, d.T, 2 * d.H}, f32);
  at::Tensor gates, cells, hproc;
  if (training) {
    gates = at::empty({d.K, 2, d.T, d.Bp, d.G4}, f32);
    cells = at::empty({d.K, 2, d.T, d.Bp, d.Hp}, f32);
    hproc = at::zeros({d.K, 2, d.T + 1, d.Bp, d.Hp}, f32);
  } else {
    gates = at::empty({0}, f32);
    cells = at::empty({0}, f32);
    hproc = at::empty({0}, f32);
    xproc = at::empty({0}, f32);
  }
  cuda::RecurrentForwardArgs args{};
  args.xproj = xproj.data_ptr<float>();
  args.lengths = lengths.data_ptr<int64_t>();
  args.w = w_rec.data_ptr();
  args.y = y.data_ptr<float>();
  args.gates = training ? gates.data_ptr<float>() : nullptr;
  args.cells = training ? cells.data_ptr<float>() : nullptr;
  args.hproc = training ? hproc.data_ptr<float>() : nullptr;
  args.K = static_cast<int>(d.K);
  args.B = static_cast<int>(d.B);
  args.T = static_cast<int>(d.T);
  args.H = static_cast<int>(d.H);
  check_launch(cuda::bilstm_recurrent_forward(args, math, c10::cuda::getCurrentCUDAStream().stream()),
               "bilstm forward", d.H);
  return {y, xproc, gates, cells, hproc};
}

std::vector<at::Tensor> bilstm_backward_cuda(const at::Tensor& dy_in, const at::Tensor& lengths_in,
                                             const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& xproc,
                                             const at::Tensor& gates, const at::Tensor& cells,
                                             const at::Tensor& hproc, const std::string& precision) {
  TORCH_CHECK(dy_in.is_cuda(), "mtlfast CUDA bilstm backward: dy must be a CUDA tensor; got ", shape_of(dy_in));
  TORCH_CHECK(dy_in.dim() == 4, "mtlfast CUDA bilstm backward: dy must have shape [K, B, T, 2H]; got ",
              dy_in.sizes());
  const int64_t K = dy_in.size(0), B = dy_in.size(1), T = dy_in.size(2);
  TORCH_CHECK(w_ih.dim() == 4, "mtlfast CUDA bilstm backward: w_ih must have shape [K, 2, 4H, E]; got ",
              w_ih.sizes());
  const auto dev = dy_in.device();
  const Dims d = check_bilstm_args(K, B, T, w_ih.size(3), dev, lengths_in, w_ih, w_hh);
  check_cuda_tensor(dy_in, "dy", at::kFloat, dev);
  check_shape(dy_in, "dy", {K, B, T, 2 * d.H}, "[K, B, T, 2H]");
  for (auto [t, name] : {std::pair<const at::Tensor*, const char*>{&xproc, "xproc"}, {&gates, "gates"},
                         {&cells, "cells"}, {&hproc, "hproc"}})
    check_cuda_tensor(*t, name, at::kFloat, dev);
  TORCH_CHECK(gates.numel() > 0, "mtlfast CUDA bilstm backward: the forward ran with training=False, nothing saved");
  check_shape(xproc, "xproc", {K, 2, T, d.Bp, d.E}, "[K, 2, T, Bp, E]");
  check_shape(gates, "gates", {K, 2, T, d.Bp, d.G4}, "[K, 2, T, Bp, 4Hp]");
  check_shape(cells, "cells", {K, 2, T, d.Bp, d.Hp}, "[K, 2, T, Bp, Hp]");
  check_shape(hproc, "hproc", {K, 2, T + 1, d.Bp, d.Hp}, "[K, 2, T+1, Bp, Hp]");
  const RecurrentMath math = parse_precision(precision);
  const c10::cuda::CUDAGuard guard(dev);
  auto dy = dy_in.contiguous();
  auto lengths = lengths_in.contiguous();

  auto w_rec = pad_gates(w_hh, d.H, d.Hp, d.Hp - d.H);
  if (math == RecurrentMath::kBF16) w_rec = w_rec.to(at::kBFloat16).contiguous();
  auto dgates = at::zeros({K, 2, T, d.Bp, d.G4}, dy.options());

  cuda::RecurrentBackwardArgs args{};
  args.dy = dy.data_ptr<float>();
  args.lengths = lengths.data_ptr<int64_t>();
  args.w = w_rec.data_ptr();
  args.gates = gates.contiguous().data_ptr<float>();
  args.cells = cells.contiguous().data_ptr<float>();
  args.dgates = dgates.data_ptr<float>();
  args.K = static_cast<int>(K);
  args.B = static_cast<int>(B);
  args.T = static_cast<int>(T);
  args.H = static_cast<int>(d.H);
  check_launch(cuda::bilstm_recurrent_backward(args, math, c10::cuda::getCurrentCUDAStream().stream()),
               "bilstm backward", d.H);

  // Weight gradients and dx: batched GEMMs over all (model, direction) pairs.
  auto dg = dgates.view({K * 2, T * d.Bp, d.G4});
  auto dgT = dg.transpose(1, 2);
  auto dw_ih_p = at::bmm(dgT, xproc.contiguous().view({K * 2, T * d.Bp, d.E}));                   // [2K, G4, E]
  auto h_prev = hproc.contiguous().view({K * 2, (T + 1) * d.Bp, d.Hp}).narrow(1, 0, T * d.Bp);  // state entering s
  auto dw_hh_p = at::bmm(dgT, h_prev);                                                            // [2K, G4, Hp]
  auto dbias_p = dg.sum(1);                                                                       // [2K, G4]
  auto w_ih_p = pad_gates(w_ih, d.H, d.Hp, 0);
  auto dxproc = at::bmm(dg, w_ih_p.view({K * 2, d.G4, d.E}));                                      // [2K, T*Bp, E]
  dxproc = dxproc.view({K, 2, T, d.Bp, d.E}).narrow(3, 0, B).permute({0, 1, 3, 2, 4});            // [K, 2, B, T, E]
  auto [src, valid] = reverse_index(lengths, T);
  (void)valid;  // dgates are zero at invalid steps, so dxproc is too
  auto dx = dxproc.select(1, 0) + dxproc.select(1, 1).gather(2, src.unsqueeze(-1).expand({K, B, T, d.E}));

  auto dw_ih = unpad_gates(dw_ih_p.view({K, 2, d.G4, d.E}), d.H, d.Hp, d.E);
  auto dw_hh = unpad_gates(dw_hh_p.view({K, 2, d.G4, d.Hp}), d.H, d.Hp, d.H);
  auto dbias = unpad_gates(dbias_p.view({K, 2, d.G4}), d.H, d.Hp, 0);
  return {dx.contiguous(), dw_ih, dw_hh, dbias};
}

// ---- Adadelta ----------------------------------------------------------------------------------------------------

void check_flat(const at::Tensor& t, const char* name, const at::Tensor& like) {
  check_cuda_tensor(t, name, at::kFloat, like.device());
  TORCH_CHECK(t.is_contiguous(), "mtlfast CUDA adadelta: ", name, " must be contiguous (updated in place); got ",
              "strides ", t.strides());
  TORCH_CHECK(t.numel() == like.numel(), "mtlfast CUDA adadelta: ", name, " must have ", like.numel(),
              " elements like param; got ", t.numel());
}

void adadelta_cuda(at::Tensor param, const at::Tensor& grad, at::Tensor accum, at::Tensor accum_upd, double lr,
                   double rho, double eps) {
  TORCH_CHECK(param.is_cuda(), "mtlfast CUDA adadelta: param must be a CUDA tensor; got ", shape_of(param));
  check_flat(param, "param", param);
  check_flat(grad, "grad", param);
  check_flat(accum, "accum", param);
  check_flat(accum_upd, "accum_upd", param);
  const c10::cuda::CUDAGuard guard(param.device());
  auto err = cuda::adadelta_dense(param.data_ptr<float>(), grad.data_ptr<float>(), accum.data_ptr<float>(),
                                  accum_upd.data_ptr<float>(), param.numel(), static_cast<float>(lr),
                                  static_cast<float>(rho), static_cast<float>(eps),
                                  c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "mtlfast CUDA adadelta failed: ", cudaGetErrorString(err));
}

void check_rows_state(const at::Tensor& weight, const at::Tensor& accum, const at::Tensor& accum_upd,
                      const at::Tensor& last_step, const at::Tensor& step) {
  TORCH_CHECK(weight.is_cuda() && weight.dim() == 3,
              "mtlfast CUDA adadelta_rows: weight must be a CUDA tensor [K, V, D]; got ", shape_of(weight));
  const auto dev = weight.device();
  const int64_t K = weight.size(0), V = weight.size(1);
  for (auto [t, name] : {std::pair<const at::Tensor*, const char*>{&weight, "weight"}, {&accum, "accum"},
                         {&accum_upd, "accum_upd"}}) {
    check_cuda_tensor(*t, name, at::kFloat, dev);
    check_shape(*t, name, weight.sizes(), "[K, V, D] (like weight)");
    TORCH_CHECK(t->is_contiguous(), "mtlfast CUDA adadelta_rows: ", name, " must be contiguous (updated in place)");
  }
  check_cuda_tensor(last_step, "last_step", at::kLong, dev);
  check_shape(last_step, "last_step", {K, V}, "[K, V]");
  TORCH_CHECK(last_step.is_contiguous(), "mtlfast CUDA adadelta_rows: last_step must be contiguous");
  check_cuda_tensor(step, "step", at::kLong, dev);
  check_shape(step, "step", {K}, "[K]");
}

void adadelta_rows_cuda(at::Tensor weight, at::Tensor accum, at::Tensor accum_upd, at::Tensor last_step,
                        const at::Tensor& rows, const at::Tensor& grad, const at::Tensor& step, double lr, double rho,
                        double eps) {
  check_rows_state(weight, accum, accum_upd, last_step, step);
  const int64_t K = weight.size(0), V = weight.size(1), D = weight.size(2);
  check_cuda_tensor(rows, "rows", at::kLong, weight.device());
  TORCH_CHECK(rows.dim() == 2 && rows.size(0) == K,
              "mtlfast CUDA adadelta_rows: rows must have shape [K, R] (unique row ids, -1 = empty); got ",
              rows.sizes());
  const int64_t R = rows.size(1);
  check_cuda_tensor(grad, "grad", at::kFloat, weight.device());
  check_shape(grad, "grad", {K, R, D}, "[K, R, D]");
  const c10::cuda::CUDAGuard guard(weight.device());
  auto rows_c = rows.contiguous();
  auto grad_c = grad.contiguous();
  auto step_c = step.contiguous();
  auto err = cuda::adadelta_rows(weight.data_ptr<float>(), accum.data_ptr<float>(), accum_upd.data_ptr<float>(),
                                 last_step.data_ptr<int64_t>(), rows_c.data_ptr<int64_t>(), grad_c.data_ptr<float>(),
                                 step_c.data_ptr<int64_t>(), static_cast<int>(K), V, static_cast<int>(R),
                                 static_cast<int>(D), static_cast<float>(lr), static_cast<float>(rho),
                                 static_cast<float>(eps), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "mtlfast CUDA adadelta_rows failed: ", cudaGetErrorString(err));
}

void adadelta_rows_flush_cuda(at::Tensor accum, at::Tensor accum_upd, at::Tensor last_step, const at::Tensor& step,
                              double rho) {
  check_rows_state(accum, accum, accum_upd, last_step, step);
  const c10::cuda::CUDAGuard guard(accum.device());
  auto step_c = step.contiguous();
  auto err = cuda::adadelta_rows_flush(accum.data_ptr<float>(), accum_upd.data_ptr<float>(),
                                       last_step.data_ptr<int64_t>(), step_c.data_ptr<int64_t>(),
                                       static_cast<int>(accum.size(0)), accum.size(1),
                                       static_cast<int>(accum.size(2)), static_cast<float>(rho),
                                       c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "mtlfast CUDA adadelta_rows_flush failed: ", cudaGetErrorString(err));
}

pybind11::dict bilstm_cuda_plan(int64_t K, int64_t B, int64_t H, const std::string& precision, bool forward) {
  const RecurrentMath math = parse_precision(precision);
  int dev = 0, smem = 0, sms = 0;
  TORCH_CHECK(cudaGetDevice(&dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
                  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess,
              "mtlfast CUDA bilstm_cuda_plan: cannot query the current CUDA device");
  cuda::RecurrentPlan plan;
  const bool ok = cuda::plan_recurrent(forward, static_cast<int>(K), static_cast<int>(B), static_cast<int>(H), math,
                                       static_cast<size_t>(smem) - 1024, sms, &plan);
  pybind11::dict out;
  out["fits"] = ok;
  out["rows_per_block"] = plan.rows_per_block;
  out["blocks"] = plan.blocks;
  out["threads"] = plan.threads;
  out["weights_on_chip"] = plan.weights_on_chip;
  out["smem_bytes"] = plan.smem_bytes;
  out["device_smem_optin"] = smem;
  out["device_sms"] = sms;
  return out;
}

}  // namespace

void register_cuda_ops(pybind11::module_& m) {
  namespace py = pybind11;
  using py::arg;
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("bilstm_forward_cuda", &bilstm_forward_cuda, nogil,
        "Fused bi-LSTM forward over a model array on CUDA -> (y, xproc, gates, cells, hproc)", arg("x"),
        arg("lengths"), arg("w_ih"), arg("w_hh"), arg("bias"), arg("precision") = "fp32", arg("training") = true);
  m.def("bilstm_backward_cuda", &bilstm_backward_cuda, nogil,
        "Fused bi-LSTM backward on CUDA -> (dx, dw_ih, dw_hh, dbias)", arg("dy"), arg("lengths"), arg("w_ih"),
        arg("w_hh"), arg("xproc"), arg("gates"), arg("cells"), arg("hproc"), arg("precision") = "fp32");
  m.def("adadelta_cuda", &adadelta_cuda, nogil, "Fused Adadelta (TF semantics) over flat fp32 buffers, in place",
        arg("param"), arg("grad"), arg("accum"), arg("accum_upd"), arg("lr"), arg("rho"), arg("eps"));
  m.def("adadelta_rows_cuda", &adadelta_rows_cuda, nogil,
        "Lazy row-wise Adadelta of embedding tables [K, V, D], in place", arg("weight"), arg("accum"),
        arg("accum_upd"), arg("last_step"), arg("rows"), arg("grad"), arg("step"), arg("lr"), arg("rho"), arg("eps"));
  m.def("adadelta_rows_flush_cuda", &adadelta_rows_flush_cuda, nogil,
        "Bring every embedding row's Adadelta accumulators current at `step`, in place", arg("accum"),
        arg("accum_upd"), arg("last_step"), arg("step"), arg("rho"));
  m.def("bilstm_cuda_plan", &bilstm_cuda_plan, "Launch layout of the recurrent kernels on the current device",
        arg("K"), arg("B"), arg("H"), arg("precision") = "fp32", arg("forward") = true);
}

}  // namespace mtlfast
