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
//   adadelta_cuda_(params, grads, sq, acc, masks, lr, rho, eps)                       in place
//   adadelta_rows_cuda_(table, grad_rows, row_ids, sq, acc, last_step, step, lr, rho, eps)   in place
//   adadelta_rows_flush_cuda_(sq, acc, last_step, step, rho)                             in place
//     the CUDA twins of the CPU ops adadelta_, adadelta_rows_, adadelta_rows_flush_ (csrc/cpu/adadelta_cpu.cpp):
//     same arguments and semantics, float32/float64; `step` may also be a CUDA int64 tensor [] or [K] so a
//     captured CUDA graph can advance it (a Python int is baked into the graph at capture).
//   bilstm_cuda_plan(K, B, H, precision, forward=True) -> dict (launch layout on the current device)
//
// Environment: MTLFAST_CUDA_WHH=smem | l2 forces where the recurrent kernels keep W_hh (default: shared memory
// when it fits, else read through L2); read on every call, for benchmarks.
#include <torch/extension.h>
#include <pybind11/stl.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <optional>
#include <variant>
#include <string>
#include <tuple>
#include <vector>

#include "bilstm_cuda.h"
#include "mtlfast.h"

namespace mtlfast {
namespace {

using cuda::RecurrentMath;

// Error messages put integers in through std::to_string, never through an std::ostream insertion compiled into
// this module: on a machine whose C++ compiler is newer than the libstdc++ loaded at run time (the H200 machine's
// /opt/gcc, bench/RESULTS.md), the module's own instantiation of ostream::_M_insert<long> crashed the process
// (SIGSEGV in a TORCH_CHECK message) where the check should have raised.
std::string str(int64_t v) { return std::to_string(v); }
std::string str(size_t v) { return std::to_string(v); }

std::string str(at::IntArrayRef a) {
  std::string s = "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  return s + "]";
}

std::string shape_of(const at::Tensor& t) {
  return str(t.sizes()) + " " + c10::toString(t.scalar_type()) + " on " + t.device().str();
}

void check_cuda_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, const at::Device& device) {
  TORCH_CHECK(t.defined(), "mtlfast CUDA op: ", name, " is undefined");
  TORCH_CHECK(t.device() == device, "mtlfast CUDA op: ", name, " must be on ", device, " (the device of the first "
              "argument); got ", shape_of(t));
  TORCH_CHECK(t.scalar_type() == dtype, "mtlfast CUDA op: ", name, " must be ", dtype, "; got ", shape_of(t),
              dtype == at::kFloat ? " (float64 runs only on backend='reference')" : "");
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected, const char* spelled) {
  TORCH_CHECK(t.sizes() == expected, "mtlfast CUDA op: ", name, " must have shape ", spelled, " = ", str(expected),
              "; got ", str(t.sizes()));
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
                str(H), " (expected H up to about 500); use backend='reference' or the CPU kernel");
  }
  TORCH_CHECK(err == cudaSuccess, "mtlfast CUDA ", what, " failed: ", cudaGetErrorString(err));
}

// precision "bf16" rounds the forward operands of every matrix product (x, h, W_ih, W_hh) to bfloat16, as the
// reference does; gradients stay fp32 and products accumulate in fp32 (cuBLAS fp32 GEMM of exactly representable
// values; the recurrent kernel splits gate gradients into hi + lo bf16 parts).
at::Tensor round_operand(const at::Tensor& t, RecurrentMath math) {
  return math == RecurrentMath::kBF16 ? t.to(at::kBFloat16).to(at::kFloat) : t;
}

// W_hh as the recurrent kernels read it: [K, 2, 4Hp, Kp] (+ slack), bf16 or fp32 (see bilstm_cuda.h).
at::Tensor recurrent_weights(const at::Tensor& w_hh, int64_t H, int64_t Hp, RecurrentMath math);

// MTLFAST_CUDA_WHH=smem | l2 forces where W_hh lives (for benchmarks); unset or anything else: automatic.
cuda::WeightsPlacement placement_from_env() {
  const char* v = std::getenv("MTLFAST_CUDA_WHH");
  if (v == nullptr) return cuda::WeightsPlacement::kAuto;
  const std::string s(v);
  if (s == "smem") return cuda::WeightsPlacement::kSharedOnly;
  if (s == "l2") return cuda::WeightsPlacement::kL2Only;
  return cuda::WeightsPlacement::kAuto;
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

at::Tensor recurrent_weights(const at::Tensor& w_hh, int64_t H, int64_t Hp, RecurrentMath math) {
  const int64_t Kp = cuda::recurrent_kp(static_cast<int>(H), math);
  auto w = pad_gates(w_hh, H, Hp, Kp - H).reshape({-1});  // [K, 2, 4Hp, Kp] flat
  if (math == RecurrentMath::kBF16) w = w.to(at::kBFloat16);
  return at::constant_pad_nd(w, {0, cuda::kWeightSlack}, 0).contiguous();
}

struct Dims {
  int64_t K, B, T, E, H, Bp, Hp, G4;
};

// Checks the arguments shared by forward and backward; (K, B, T, E) come from x (forward) or dy, w_ih (backward).
Dims check_bilstm_args(int64_t K, int64_t B, int64_t T, int64_t E, const at::Device& dev, const at::Tensor& lengths,
                       const at::Tensor& w_ih, const at::Tensor& w_hh) {
  TORCH_CHECK(w_hh.dim() == 4, "mtlfast CUDA bilstm: w_hh must have shape [K, 2, 4H, H]; got ", str(w_hh.sizes()));
  Dims d{};
  d.K = K;
  d.B = B;
  d.T = T;
  d.E = E;
  d.H = w_hh.size(3);
  TORCH_CHECK(d.H > 0, "mtlfast CUDA bilstm: hidden size H (w_hh.size(3)) must be positive; got ", str(d.H));
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
  TORCH_CHECK(x_in.dim() == 4, "mtlfast CUDA bilstm: x must have shape [K, B, T, E]; got ", str(x_in.sizes()));
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
  auto xproj = at::baddbmm(bias_p.view({d.K * 2, 1, d.G4}),
                           round_operand(xproc, math).view({d.K * 2, d.T * d.Bp, d.E}),
                           round_operand(w_ih_p, math).view({d.K * 2, d.G4, d.E}).transpose(1, 2));
  xproj = xproj.contiguous();

  auto w_rec = recurrent_weights(w_hh_in, d.H, d.Hp, math);

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
  check_launch(cuda::bilstm_recurrent_forward(args, math, c10::cuda::getCurrentCUDAStream().stream(), nullptr,
                                              placement_from_env()),
               "bilstm forward", d.H);
  return {y, xproc, gates, cells, hproc};
}

std::vector<at::Tensor> bilstm_backward_cuda(const at::Tensor& dy_in, const at::Tensor& lengths_in,
                                             const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& xproc,
                                             const at::Tensor& gates, const at::Tensor& cells,
                                             const at::Tensor& hproc, const std::string& precision) {
  TORCH_CHECK(dy_in.is_cuda(), "mtlfast CUDA bilstm backward: dy must be a CUDA tensor; got ", shape_of(dy_in));
  TORCH_CHECK(dy_in.dim() == 4, "mtlfast CUDA bilstm backward: dy must have shape [K, B, T, 2H]; got ",
              str(dy_in.sizes()));
  const int64_t K = dy_in.size(0), B = dy_in.size(1), T = dy_in.size(2);
  TORCH_CHECK(w_ih.dim() == 4, "mtlfast CUDA bilstm backward: w_ih must have shape [K, 2, 4H, E]; got ",
              str(w_ih.sizes()));
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

  auto w_rec = recurrent_weights(w_hh, d.H, d.Hp, math);
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
  check_launch(cuda::bilstm_recurrent_backward(args, math, c10::cuda::getCurrentCUDAStream().stream(), nullptr,
                                               placement_from_env()),
               "bilstm backward", d.H);

  // Weight gradients and dx: batched GEMMs over all (model, direction) pairs.
  auto dg = dgates.view({K * 2, T * d.Bp, d.G4});  // gradients stay fp32, as in the reference's bf16 mode
  auto dgT = dg.transpose(1, 2);
  auto dw_ih_p = at::bmm(dgT, round_operand(xproc.contiguous(), math).view({K * 2, T * d.Bp, d.E}));  // [2K, G4, E]
  auto h_prev =
      round_operand(hproc.contiguous(), math).view({K * 2, (T + 1) * d.Bp, d.Hp}).narrow(1, 0, T * d.Bp);  // h entering s
  auto dw_hh_p = at::bmm(dgT, h_prev);                                                            // [2K, G4, Hp]
  auto dbias_p = dg.sum(1);                                                                       // [2K, G4]
  auto w_ih_p = round_operand(pad_gates(w_ih, d.H, d.Hp, 0), math);
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

// ---- Adadelta (the CUDA twins of csrc/cpu/adadelta_cpu.cpp, same arguments) -----------------------------------

const char* dtype_ok(at::ScalarType t) { return (t == at::kFloat || t == at::kDouble) ? nullptr : "float32/float64"; }

void check_like(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name) {
  TORCH_CHECK(t.defined() && t.device() == like.device() && t.scalar_type() == like.scalar_type() &&
                  t.sizes() == like.sizes() && t.is_contiguous(),
              op, ": ", name, " must be a contiguous ", like.scalar_type(), " tensor of shape ", str(like.sizes()),
              " on ", like.device(), " (like the parameter); got ", t.defined() ? shape_of(t) : std::string("undefined"));
}

void adadelta_cuda_(std::vector<at::Tensor> params, std::vector<at::Tensor> grads, std::vector<at::Tensor> sq,
                    std::vector<at::Tensor> acc, std::vector<std::optional<at::Tensor>> masks, double lr, double rho,
                    double eps) {
  const char* op = "adadelta_cuda_";
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && sq.size() == n && acc.size() == n && (masks.empty() || masks.size() == n), op,
              ": params, grads, sq, acc (and masks) must be lists of one length; got ", str(n), ", ", str(grads.size()),
              ", ", str(sq.size()), ", ", str(acc.size()), ", ", str(masks.size()));
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.is_cuda() && p.is_contiguous() && dtype_ok(p.scalar_type()) == nullptr, op, ": params[",
                str(i), "] must be a contiguous CUDA float32/float64 tensor; got ", shape_of(p));
    check_like(grads[i], p, op, "grads[i]");
    check_like(sq[i], p, op, "sq[i]");
    check_like(acc[i], p, op, "acc[i]");
    const bool* mask = nullptr;
    int64_t block = 1;
    at::Tensor m;
    if (!masks.empty() && masks[i].has_value() && masks[i]->defined()) {
      m = masks[i]->contiguous();
      TORCH_CHECK(m.scalar_type() == at::kBool && m.device() == p.device() && m.dim() <= p.dim() &&
                      m.sizes() == p.sizes().slice(0, m.dim()),
                  op, ": masks[", str(i), "] must be a bool tensor on ", p.device(), " whose shape is a prefix of ",
                  str(p.sizes()), "; got ", shape_of(m));
      mask = m.data_ptr<bool>();
      block = m.numel() > 0 ? p.numel() / m.numel() : 1;
    }
    const c10::cuda::CUDAGuard guard(p.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    cudaError_t err;
    if (p.scalar_type() == at::kFloat) {
      err = cuda::adadelta_dense<float>(p.data_ptr<float>(), grads[i].data_ptr<float>(), sq[i].data_ptr<float>(),
                                        acc[i].data_ptr<float>(), p.numel(), static_cast<float>(lr),
                                        static_cast<float>(rho), static_cast<float>(eps), mask, block, stream);
    } else {
      err = cuda::adadelta_dense<double>(p.data_ptr<double>(), grads[i].data_ptr<double>(), sq[i].data_ptr<double>(),
                                         acc[i].data_ptr<double>(), p.numel(), lr, rho, eps, mask, block, stream);
    }
    TORCH_CHECK(err == cudaSuccess, op, " failed: ", cudaGetErrorString(err));
  }
}

// step: a Python int, or a CUDA int64 tensor of shape [] (one counter) or [K] (per model) for graph capture.
struct StepArg {
  const int64_t* ptr = nullptr;
  int64_t value = 0;
  int stride = 0;
  at::Tensor keep;
};

StepArg step_arg(const std::variant<int64_t, at::Tensor>& step, const at::Tensor& like, int64_t K, const char* op) {
  StepArg out;
  if (std::holds_alternative<int64_t>(step)) {
    out.value = std::get<int64_t>(step);
    return out;
  }
  const at::Tensor& t = std::get<at::Tensor>(step);
  TORCH_CHECK(t.scalar_type() == at::kLong && t.device() == like.device() && (t.dim() == 0 || t.sizes() == at::IntArrayRef{K}),
              op, ": step must be an int or an int64 tensor of shape [] or [K] = [", str(K), "] on ", like.device(),
              "; got ", shape_of(t));
  out.keep = t.contiguous();
  out.ptr = out.keep.data_ptr<int64_t>();
  out.stride = t.dim() == 0 ? 0 : 1;
  return out;
}

void adadelta_rows_cuda_(at::Tensor table, const at::Tensor& grad_rows, const at::Tensor& row_ids, at::Tensor sq,
                         at::Tensor acc, at::Tensor last_step, const std::variant<int64_t, at::Tensor>& step,
                         double lr, double rho, double eps) {
  const char* op = "adadelta_rows_cuda_";
  TORCH_CHECK(table.is_cuda() && (table.dim() == 2 || table.dim() == 3) && table.is_contiguous() &&
                  dtype_ok(table.scalar_type()) == nullptr,
              op, ": table must be a contiguous CUDA float32/float64 tensor [V, E] or [K, V, E]; got ",
              shape_of(table));
  const bool batched = table.dim() == 3;
  const int64_t K = batched ? table.size(0) : 1, V = table.size(-2), E = table.size(-1);
  check_like(sq, table, op, "sq");
  check_like(acc, table, op, "acc");
  TORCH_CHECK(last_step.scalar_type() == at::kLong && last_step.device() == table.device() &&
                  last_step.is_contiguous() && last_step.sizes() == table.sizes().slice(0, table.dim() - 1),
              op, ": last_step must be a contiguous int64 tensor of shape ", batched ? "[K, V]" : "[V]", " on ",
              table.device(), "; got ", shape_of(last_step));
  TORCH_CHECK(row_ids.scalar_type() == at::kLong && row_ids.device() == table.device() &&
                  row_ids.dim() == (batched ? 2 : 1) && (!batched || row_ids.size(0) == K),
              op, ": row_ids must be an int64 tensor of shape ", batched ? "[K, N]" : "[N]", " on ", table.device(),
              " (unique within each model, -1 = padding); got ", shape_of(row_ids));
  const int64_t N = row_ids.size(-1);
  TORCH_CHECK(grad_rows.scalar_type() == table.scalar_type() && grad_rows.device() == table.device() &&
                  grad_rows.dim() == table.dim() && grad_rows.size(-1) == E && grad_rows.size(-2) == N &&
                  (!batched || grad_rows.size(0) == K),
              op, ": grad_rows must be a ", table.scalar_type(), " tensor of shape ", batched ? "[K, N, E]" : "[N, E]",
              " with N = ", str(N), ", E = ", str(E), "; got ", shape_of(grad_rows));
  const c10::cuda::CUDAGuard guard(table.device());
  const StepArg st = step_arg(step, table, K, op);
  auto ids = row_ids.contiguous();
  auto g = grad_rows.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaError_t err;
  if (table.scalar_type() == at::kFloat) {
    err = cuda::adadelta_rows<float>(table.data_ptr<float>(), g.data_ptr<float>(), ids.data_ptr<int64_t>(),
                                     sq.data_ptr<float>(), acc.data_ptr<float>(), last_step.data_ptr<int64_t>(), st.ptr,
                                     st.value, st.stride, static_cast<int>(K), V, N, E, static_cast<float>(lr),
                                     static_cast<float>(rho), static_cast<float>(eps), stream);
  } else {
    err = cuda::adadelta_rows<double>(table.data_ptr<double>(), g.data_ptr<double>(), ids.data_ptr<int64_t>(),
                                      sq.data_ptr<double>(), acc.data_ptr<double>(), last_step.data_ptr<int64_t>(),
                                      st.ptr, st.value, st.stride, static_cast<int>(K), V, N, E, lr, rho, eps, stream);
  }
  TORCH_CHECK(err == cudaSuccess, op, " failed: ", cudaGetErrorString(err));
}

void adadelta_rows_flush_cuda_(at::Tensor sq, at::Tensor acc, at::Tensor last_step,
                               const std::variant<int64_t, at::Tensor>& step, double rho) {
  const char* op = "adadelta_rows_flush_cuda_";
  TORCH_CHECK(sq.is_cuda() && sq.dim() >= 2 && sq.is_contiguous() && dtype_ok(sq.scalar_type()) == nullptr, op,
              ": sq must be a contiguous CUDA float32/float64 tensor [V, E] or [K, V, E]; got ", shape_of(sq));
  check_like(acc, sq, op, "acc");
  TORCH_CHECK(last_step.scalar_type() == at::kLong && last_step.device() == sq.device() && last_step.is_contiguous() &&
                  last_step.sizes() == sq.sizes().slice(0, sq.dim() - 1),
              op, ": last_step must be a contiguous int64 tensor of shape sq.shape[:-1] on ", sq.device(), "; got ",
              shape_of(last_step));
  const int64_t E = sq.size(-1), rows = last_step.numel();
  const int64_t K = sq.dim() == 3 ? sq.size(0) : 1;
  const c10::cuda::CUDAGuard guard(sq.device());
  const StepArg st = step_arg(step, sq, K, op);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaError_t err;
  if (sq.scalar_type() == at::kFloat) {
    err = cuda::adadelta_rows_flush<float>(sq.data_ptr<float>(), acc.data_ptr<float>(), last_step.data_ptr<int64_t>(),
                                           st.ptr, st.value, st.stride, static_cast<int>(K), rows / K, E,
                                           static_cast<float>(rho), stream);
  } else {
    err = cuda::adadelta_rows_flush<double>(sq.data_ptr<double>(), acc.data_ptr<double>(),
                                            last_step.data_ptr<int64_t>(), st.ptr, st.value, st.stride,
                                            static_cast<int>(K), rows / K, E, rho, stream);
  }
  TORCH_CHECK(err == cudaSuccess, op, " failed: ", cudaGetErrorString(err));
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
                                       static_cast<size_t>(smem) - 1024, sms, &plan, placement_from_env());
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
  m.def("adadelta_cuda_", &adadelta_cuda_, nogil,
        "Fused in-place Adadelta (TF semantics) over lists of CUDA tensors, optional prefix masks", arg("params"),
        arg("grads"), arg("sq"), arg("acc"), arg("masks"), arg("lr"), arg("rho"), arg("eps"));
  m.def("adadelta_rows_cuda_", &adadelta_rows_cuda_, nogil,
        "Lazy row-wise Adadelta of embedding tables [K, V, E] on CUDA, in place", arg("table"), arg("grad_rows"),
        arg("row_ids"), arg("sq"), arg("acc"), arg("last_step"), arg("step"), arg("lr"), arg("rho"), arg("eps"));
  m.def("adadelta_rows_flush_cuda_", &adadelta_rows_flush_cuda_, nogil,
        "Bring every embedding row's Adadelta state to `step` completed steps, in place", arg("sq"), arg("acc"),
        arg("last_step"), arg("step"), arg("rho"));
  m.def("bilstm_cuda_plan", &bilstm_cuda_plan, "Launch layout of the recurrent kernels on the current device",
        arg("K"), arg("B"), arg("H"), arg("precision") = "fp32", arg("forward") = true);
}

}  // namespace mtlfast
