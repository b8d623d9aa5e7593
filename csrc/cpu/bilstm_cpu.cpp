// Fused bi-LSTM over a model array, CPU: argument checks, row order, the choice between the two paths, and the
// Python bindings. Shapes and semantics: csrc/bilstm.h; the paths: bilstm_paths.h.
//
// Sources of the CPU bi-LSTM, by concern:
//   isa.h / isa.cpp             run-time ISA probe and kernel-build choice (shared with the Adadelta ops)
//   blas.h                      matrix products through torch's MKL (looked up at run time) or at::mm
//   simd_math.h                 sigmoid / tanh, scalar and AVX-512
//   lstm_cell.h / .cpp          the general path's per-step cell kernels (portable, AVX2, AVX-512 builds)
//   bf16_gemm.h / .cpp          bf16 products: emulated (rounded operands) and native (AVX512-BF16)
//   products.h                  the general path's products in the call's precision
//   bilstm_generic.cpp          the general path (any dtype, precision and build)
//   bilstm_lanes.cpp            the fp32 AVX-512 "lanes" path (+ lanes_tiles.h, lanes_layout.h, block_pool.h)
//   bilstm_lanes_bf16.cpp       the bf16 lanes path, AVX512-BF16 (+ lanes_tiles_bf16.h)
//   bilstm_cpu.cpp              this file
#include "bilstm.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cpu/bf16_gemm.h"
#include "cpu/bilstm_paths.h"
#include "cpu/blas.h"
#include "cpu/block_pool.h"
#include "cpu/isa.h"
#include "cpu/products.h"
#include "mtlfast.h"

namespace mtlfast {
namespace cpu {
namespace {

// ------------------------------------------------------------------------------------------------------------
// Argument checks: always say which argument, what was expected and what came.
// ------------------------------------------------------------------------------------------------------------
std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

void check_tensor(const at::Tensor& t, const char* name, std::vector<int64_t> shape, const char* shape_doc,
                  at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), "bilstm (CPU kernel): ", name, " must be on the CPU; got device ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "bilstm: ", name, " must have dtype ", dtype, "; got ", t.scalar_type());
  bool ok = t.dim() == static_cast<int64_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = t.size(static_cast<int64_t>(i)) == shape[i];
  if (!ok) {
    std::string want = "[";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    TORCH_CHECK(false, "bilstm: ", name, " must have shape ", shape_doc, " = ", want, "]; got ", shape_str(t));
  }
}

Dims check_inputs(const at::Tensor& x, const at::Tensor& lengths, const at::Tensor& w_ih, const at::Tensor& w_hh,
                  const std::string& precision) {
  TORCH_CHECK(precision == "fp32" || precision == "bf16", "bilstm: precision must be 'fp32' or 'bf16'; got '",
              precision, "'");
  TORCH_CHECK(x.dim() == 4, "bilstm: x must have shape [K, B, T, E]; got ", shape_str(x));
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "bilstm: x must be float32 or float64; got ", x.scalar_type());
  TORCH_CHECK(w_hh.dim() == 4, "bilstm: w_hh must have shape [K, 2, 4H, H]; got ", shape_str(w_hh));
  Dims d{x.size(0), x.size(1), x.size(2), x.size(3), w_hh.size(3)};
  TORCH_CHECK(d.K >= 1 && d.B >= 1 && d.T >= 1 && d.H >= 1, "bilstm: K, B, T and H must be >= 1; got x ",
              shape_str(x), ", w_hh ", shape_str(w_hh));
  const auto dt = x.scalar_type();
  check_tensor(lengths, "lengths", {d.K, d.B}, "[K, B]", at::kLong);
  check_tensor(w_ih, "w_ih", {d.K, 2, 4 * d.H, d.E}, "[K, 2, 4H, E]", dt);
  check_tensor(w_hh, "w_hh", {d.K, 2, 4 * d.H, d.H}, "[K, 2, 4H, H]", dt);
  auto lc = lengths.contiguous();
  const int64_t* lp = lc.data_ptr<int64_t>();
  for (int64_t i = 0; i < d.K * d.B; ++i) {
    TORCH_CHECK(lp[i] >= 1 && lp[i] <= d.T, "bilstm: lengths must lie in [1, T] = [1, ", d.T, "]; got lengths[",
                i / d.B, ", ", i % d.B, "] = ", lp[i]);
  }
  return d;
}

// Per model, the batch rows sorted by length, longest first (stable), as flat indices into the K*B rows; an
// undefined tensor when every model's rows are sorted already. The kernels run on sorted rows so that the rows
// still running at any step are a prefix, and the per-step products skip the others.
at::Tensor sorted_rows(const at::Tensor& len, int64_t K, int64_t B) {
  const int64_t* lp = len.data_ptr<int64_t>();
  bool sorted = true;
  for (int64_t k = 0; k < K && sorted; ++k)
    for (int64_t b = 1; b < B && sorted; ++b) sorted = lp[k * B + b] <= lp[k * B + b - 1];
  if (sorted) return at::Tensor();
  at::Tensor idx = at::empty({K * B}, len.options());
  int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k) {
    int64_t* row = ip + k * B;
    for (int64_t b = 0; b < B; ++b) row[b] = k * B + b;
    std::stable_sort(row, row + B, [&](int64_t a, int64_t c) { return lp[a] > lp[c]; });
  }
  return idx;
}

// t [K, B, ...] -> rows in the order idx (no-op when idx is undefined).
at::Tensor gather_rows(const at::Tensor& t, const at::Tensor& idx) {
  if (!idx.defined()) return t;
  return t.reshape({idx.size(0), -1}).index_select(0, idx).view(t.sizes());
}

// Inverse of gather_rows.
at::Tensor scatter_rows(const at::Tensor& t, const at::Tensor& idx) {
  if (!idx.defined()) return t;
  at::Tensor out = at::empty_like(t);
  out.view({idx.size(0), -1}).index_copy_(0, idx, t.reshape({idx.size(0), -1}));
  return out;
}

}  // namespace
}  // namespace cpu

std::vector<at::Tensor> bilstm_forward_cpu(const at::Tensor& x_, const at::Tensor& lengths, const at::Tensor& w_ih_,
                                           const at::Tensor& w_hh_, const at::Tensor& bias_,
                                           const std::string& precision) {
  using namespace cpu;
  const Dims d = check_inputs(x_, lengths, w_ih_, w_hh_, precision);
  check_tensor(bias_, "bias", {d.K, 2, 4 * d.H}, "[K, 2, 4H]", x_.scalar_type());
  const bool bf16 = precision == "bf16";
  TORCH_CHECK(!bf16 || x_.scalar_type() == at::kFloat, "bilstm: precision='bf16' needs float32 inputs; got ",
              x_.scalar_type());
  const Path path = active_path();  // the kernel build of this call (read once)
  note_path(Op::kBilstm, path);
  // Emulated bf16 products multiply pre-rounded operands in fp32; the native kernels round while packing.
  const bool pre_round = prod_mode(bf16, path) == Prod::kBf16Emulated;
  at::Tensor x = pre_round ? round_bf16(x_).contiguous() : x_.contiguous();
  at::Tensor w_ih = pre_round ? round_bf16(w_ih_).contiguous() : w_ih_.contiguous();
  at::Tensor w_hh = pre_round ? round_bf16(w_hh_).contiguous() : w_hh_.contiguous();
  at::Tensor bias = bias_.contiguous();
  at::Tensor len = lengths.contiguous();
  const at::Tensor order = sorted_rows(len, d.K, d.B);
  len = gather_rows(len, order).contiguous();
  auto opts = x.options();
#if MTLFAST_X86
  if (use_lanes(x.scalar_type(), bf16, path)) {
    // The lanes kernels read x and write y in the caller's row order through `order` (no sorted copies); y comes
    // from the block pool like the saved tensors (a fresh 40 MB block per call at K = 55 is page faults).
    const int64_t ld = lanes_ld(d);
    at::Tensor y = pooled_empty({d.K, d.B, d.T, 2 * d.H}, opts);
    at::Tensor acts = pooled_empty({d.K, 2, 4 * d.H, ld}, opts);
    at::Tensor cells = pooled_empty({d.K, 2, 2 * d.H, ld}, opts);
    (bf16 ? forward_lanes_bf16 : forward_lanes)(d, x.data_ptr<float>(), len.data_ptr<int64_t>(),
                                                order.defined() ? order.data_ptr<int64_t>() : nullptr,
                                                w_ih.data_ptr<float>(), w_hh.data_ptr<float>(), bias.data_ptr<float>(),
                                                y.data_ptr<float>(), acts.data_ptr<float>(), cells.data_ptr<float>());
    return {y, acts, cells};
  }
#endif
  x = gather_rows(x, order).contiguous();
  at::Tensor y = at::zeros({d.K, d.B, d.T, 2 * d.H}, opts);
  at::Tensor acts = at::empty({d.K, 2, d.B, d.T, 4 * d.H}, opts);
  at::Tensor cells = at::zeros({d.K, 2, d.B, d.T, d.H}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilstm_forward_cpu", [&] {
    forward_generic<scalar_t>(d, x.data_ptr<scalar_t>(), len.data_ptr<int64_t>(), w_ih.data_ptr<scalar_t>(),
                              w_hh.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                              acts.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(), bf16, path);
  });
  // acts and cells stay in the sorted row order: only backward_cpu reads them, and it sorts the same way.
  return {scatter_rows(y, order), acts, cells};
}

std::vector<at::Tensor> bilstm_backward_cpu(const at::Tensor& dy_, const at::Tensor& x_, const at::Tensor& lengths,
                                            const at::Tensor& w_ih_, const at::Tensor& w_hh_, const at::Tensor& y_,
                                            const at::Tensor& acts_, const at::Tensor& cells_,
                                            const std::string& precision) {
  using namespace cpu;
  const Dims d = check_inputs(x_, lengths, w_ih_, w_hh_, precision);
  const auto dt = x_.scalar_type();
  check_tensor(dy_, "dy (gradient of y)", {d.K, d.B, d.T, 2 * d.H}, "[K, B, T, 2H]", dt);
  check_tensor(y_, "y (saved output)", {d.K, d.B, d.T, 2 * d.H}, "[K, B, T, 2H]", dt);
  const bool bf16 = precision == "bf16";
  const Path path = active_path();  // the kernel build of this call (read once)
  // The forward's layout is told by the saved tensors: 4-D = the AVX-512 lanes layout (fp32, or bf16 products on
  // AVX512-BF16 when precision is "bf16").
  if (acts_.dim() == 4) {
#if MTLFAST_X86
    const int64_t ld = lanes_ld(d);
    check_tensor(acts_, "acts (saved activations)", {d.K, 2, 4 * d.H, ld}, "[K, 2, 4H, T*Bp]", dt);
    check_tensor(cells_, "cells (saved cell states)", {d.K, 2, 2 * d.H, ld}, "[K, 2, 2H, T*Bp]", dt);
    TORCH_CHECK(dt == at::kFloat && cpu_has(bf16 ? Path::kAvx512Bf16 : Path::kAvx512),
                "bilstm: saved tensors in the AVX-512 lanes layout need float32 and AVX-512 (AVX512-BF16 for "
                "precision 'bf16')");
    note_path(Op::kBilstm, bf16 || path == Path::kAvx512Bf16 ? Path::kAvx512Bf16 : Path::kAvx512);  // lanes ran
    at::Tensor acts = acts_.contiguous(), cells = cells_.contiguous();
    at::Tensor x = x_.contiguous(), w_ih = w_ih_.contiguous(), w_hh = w_hh_.contiguous();
    at::Tensor len = lengths.contiguous();
    const at::Tensor order = sorted_rows(len, d.K, d.B);
    len = gather_rows(len, order).contiguous();
    at::Tensor dy = dy_.contiguous();
    auto opts = x.options();
    at::Tensor dx = pooled_empty({d.K, d.B, d.T, d.E}, opts);  // x, dy, dx in the caller's row order (`order`)
    at::Tensor dw_ih = at::empty({d.K, 2, 4 * d.H, d.E}, opts);
    at::Tensor dw_hh = at::empty({d.K, 2, 4 * d.H, d.H}, opts);
    at::Tensor dbias = at::empty({d.K, 2, 4 * d.H}, opts);
    (bf16 ? backward_lanes_bf16 : backward_lanes)(d, dy.data_ptr<float>(), x.data_ptr<float>(),
                                                  len.data_ptr<int64_t>(),
                                                  order.defined() ? order.data_ptr<int64_t>() : nullptr,
                                                  w_ih.data_ptr<float>(),
                                                  w_hh.data_ptr<float>(), acts.data_ptr<float>(),
                                                  cells.data_ptr<float>(), dx.data_ptr<float>(),
                                                  dw_ih.data_ptr<float>(), dw_hh.data_ptr<float>(),
                                                  dbias.data_ptr<float>());
    return {dx, dw_ih, dw_hh, dbias};
#else
    TORCH_CHECK(false, "bilstm: saved tensors in the AVX-512 layout on a non-x86 build");
#endif
  }
  check_tensor(acts_, "acts (saved activations)", {d.K, 2, d.B, d.T, 4 * d.H}, "[K, 2, B, T, 4H]", dt);
  check_tensor(cells_, "cells (saved cell states)", {d.K, 2, d.B, d.T, d.H}, "[K, 2, B, T, H]", dt);
  note_path(Op::kBilstm, path);
  // Emulated bf16 products multiply pre-rounded operands in fp32; the native kernels round while packing.
  const bool pre_round = prod_mode(bf16, path) == Prod::kBf16Emulated;
  at::Tensor x = pre_round ? round_bf16(x_).contiguous() : x_.contiguous();
  at::Tensor w_ih = pre_round ? round_bf16(w_ih_).contiguous() : w_ih_.contiguous();
  at::Tensor w_hh = pre_round ? round_bf16(w_hh_).contiguous() : w_hh_.contiguous();
  at::Tensor acts = acts_.contiguous(), cells = cells_.contiguous();
  at::Tensor len = lengths.contiguous();
  const at::Tensor order = sorted_rows(len, d.K, d.B);
  x = gather_rows(x, order).contiguous();
  len = gather_rows(len, order).contiguous();
  at::Tensor dy = gather_rows(dy_, order).contiguous(), y = gather_rows(y_, order).contiguous();
  auto opts = x.options();
  at::Tensor dx = at::empty({d.K, d.B, d.T, d.E}, opts);
  at::Tensor dw_ih = at::empty({d.K, 2, 4 * d.H, d.E}, opts);
  at::Tensor dw_hh = at::empty({d.K, 2, 4 * d.H, d.H}, opts);
  at::Tensor dbias = at::empty({d.K, 2, 4 * d.H}, opts);
  at::Tensor dgates = at::empty({d.K, 2, d.B, d.T, 4 * d.H}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilstm_backward_cpu", [&] {
    backward_generic<scalar_t>(d, dy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), len.data_ptr<int64_t>(),
                               w_ih.data_ptr<scalar_t>(), w_hh.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                               acts.data_ptr<scalar_t>(), cells.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(),
                               dw_ih.data_ptr<scalar_t>(), dw_hh.data_ptr<scalar_t>(), dbias.data_ptr<scalar_t>(),
                               dgates.data_ptr<scalar_t>(), bf16, path);
  });
  return {scatter_rows(dx, order), dw_ih, dw_hh, dbias};
}

void register_bilstm_cpu(pybind11::module_& m) {
  namespace py = pybind11;
  using cpu::blas;
  using cpu::g_force_aten_gemm;
  using cpu::g_no_pack;
  m.def("bilstm_forward", &bilstm_forward_cpu, py::arg("x"), py::arg("lengths"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("bias"), py::arg("precision") = "fp32", py::call_guard<py::gil_scoped_release>(),
        "Fused bi-LSTM forward over a model array (CPU). Returns [y, acts, cells]; shapes in csrc/bilstm.h.");
  m.def("bilstm_backward", &bilstm_backward_cpu, py::arg("dy"), py::arg("x"), py::arg("lengths"), py::arg("w_ih"),
        py::arg("w_hh"), py::arg("y"), py::arg("acts"), py::arg("cells"), py::arg("precision") = "fp32",
        py::call_guard<py::gil_scoped_release>(),
        "Fused bi-LSTM backward (CPU). Returns [dx, dw_ih, dw_hh, dbias].");
  m.def(
      "gemm_backend",
      []() {
        if (g_force_aten_gemm.load()) return std::string("aten");
        return std::string(blas().sgemm != nullptr ? "mkl" : "aten");
      },
      "Where the bi-LSTM's matrix products go: 'mkl' (torch's own MKL, called directly) or 'aten' (at::mm).");
  m.def(
      "set_gemm_packing",
      [](bool on) { g_no_pack.store(!on); },
      py::arg("on"), "Use MKL's packed recurrent weights when available (default on; off is for testing).");
  m.def(
      "set_lanes",
      [](bool on) { cpu::g_no_lanes.store(!on); },
      py::arg("on"),
      "Use the AVX-512 lanes kernels where they apply (default on; off runs the general path everywhere, for tests "
      "and benchmarks).");
  m.def("lanes_enabled", []() { return !cpu::g_no_lanes.load(); }, "Whether the lanes kernels may run.");
  m.def(
      "set_scratch_poison",
      [](bool on) { cpu::g_poison_scratch.store(on); },
      py::arg("on"),
      "Fill every bi-LSTM workspace and saved-activation block with NaN when handed out (default off; for tests "
      "that catch reads of memory a call did not write).");
  m.def(
      "set_gemm_backend",
      [](const std::string& name) {
        TORCH_CHECK(name == "auto" || name == "aten", "set_gemm_backend: name must be 'auto' or 'aten'; got '", name,
                    "'");
        g_force_aten_gemm.store(name == "aten");
      },
      py::arg("name"), "Force the at::mm fallback for matrix products ('auto' restores MKL when present).");
}

}  // namespace mtlfast
