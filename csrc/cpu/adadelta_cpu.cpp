// Fused Adadelta over flat parameter buffers, CPU.
//
// Formula (TensorFlow's Adadelta = torch.optim.Adadelta without weight decay; the original work used
// lr 0.1, rho 0.95, eps 1e-8), element-wise, in the same operation order as torch.optim.Adadelta:
//   sq  = sq * rho + (1 - rho) * g * g
//   upd = sqrt(acc + eps) / sqrt(sq + eps) * g
//   acc = acc * rho + (1 - rho) * upd * upd
//   p   = p - lr * upd
//
// Ops (all in place, all release the GIL, all parallel over elements or rows with at::parallel_for):
//   adadelta_(params, grads, sq, acc, masks, lr, rho, eps)
//       lists of same-shaped contiguous float32/float64 tensors (any shapes; one pass over all of them).
//       masks[i] (optional) is a bool tensor whose shape is a prefix of params[i].shape, e.g. [K] or [K, S]
//       for heads stacked [K, S, L, 2H]; blocks whose mask is false are skipped entirely (torch.optim
//       semantics for a parameter whose .grad is None: not decayed, not moved).
//   adadelta_rows_(table, grad_rows, row_ids, sq, acc, last_step, step, lr, rho, eps)
//       lazy per-row update of an embedding table.
//         table, sq, acc [K, V, E] (or [V, E]);  grad_rows [K, N, E] (or [N, E]);
//         row_ids int64 [K, N] (or [N]), unique within each k, -1 = padding (skipped);
//         last_step int64 [K, V] (or [V]): number of optimiser steps already applied to each row's sq/acc;
//         step: the 1-based number of the step being applied now.
//       A row untouched for m steps would have had sq and acc multiplied by rho m times (zero gradient, zero
//       update), so before touching it we multiply both by rho^(step - 1 - last_step): exact up to rounding.
//   adadelta_rows_flush_(sq, acc, last_step, step, rho)
//       bring every row to `step` completed steps (sq, acc *= rho^(step - last_step); last_step = step).
//   embedding_grad_rows(ids, grad_out, num_rows, ignore_id) -> (row_ids [K, U], grad_rows [K, U, E])
//       the sparse embedding backward: sums grad_out rows of equal token id. ids int64 [K, N] (or [N]),
//       grad_out [K, N, E] (or [N, E]). Rows in order of first appearance, padded with -1 / zeros to U = the
//       largest number of distinct ids over k. Tokens equal to ignore_id are skipped (-1: none).
//   adadelta_slots_(params, grads, sq, acc, slots, lr, rho, eps)
//       dense Adadelta of params [K, ...] whose state has one slot per task, sq/acc [K, S, ...]: run k's
//       block moves with state slot slots[k] in place (the original protocol's one optimiser per task),
//       without gathering the drawn slots' state. Float32; parallel over (tensor, run) blocks.
//   sparse_adadelta_occurrences_(table, sq, acc, slots, rows, grads, lr, rho, eps)
//       TensorFlow's SparseApplyAdadelta for every run of a model array (the original protocol's embedding
//       update): table [K, V, E]; sq, acc [K, S, V, E] (one state per task slot; run k uses slots[k]);
//       rows int64 [K, N] (-1 skipped); grads [K, N, E] (or [K, B, T, E] with N = T B, entry i = t B + b
//       reading grads[k, b, t]). Entry i of run k updates row rows[k, i] with its gradient, one entry after the other (a row that occurs twice is updated twice, the second time from
//       the state the first left). Float32 only; parallel over runs.
//
// The float32 element kernel has three builds (AVX-512F, AVX2, portable), chosen by the kernel build shared
// with the bi-LSTM (isa.h: avx512 and avx512_bf16 run the AVX-512 one), read once per call.
#include <ATen/Parallel.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <sstream>
#include <vector>

#include "cpu/adadelta_span.h"
#include "cpu/isa.h"
#include "mtlfast.h"

namespace mtlfast {
namespace {

using cpu::Path;
using adadelta_detail::adadelta_span;
using adadelta_detail::Hyper;

template <typename T>
inline void scale_span(T* __restrict x, T* __restrict y, int64_t n, T f) {
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= f;
    y[i] *= f;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Argument checks: say which argument and what was expected.

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void check_same(const char* op, const char* name, size_t i, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, "[", i, "] must be a CPU tensor; got ", t.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, "[", i, "] must have dtype ",
              ref.scalar_type(), " like params[", i, "]; got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == ref.sizes(), op, ": ", name, "[", i, "] must have shape ", shape_str(ref),
              " like params[", i, "]; got ", shape_str(t));
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, "[", i, "] must be contiguous");
}

// One contiguous stretch of elements to update: tensor index + element offset + length.
struct Segment {
  size_t tensor;
  int64_t offset;
  int64_t length;
};

template <typename T>
void run_segments(std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, std::vector<at::Tensor>& sq,
                  std::vector<at::Tensor>& acc, const std::vector<Segment>& segs, const Hyper& h, Path path) {
  std::vector<int64_t> start(segs.size() + 1, 0);
  for (size_t s = 0; s < segs.size(); ++s) start[s + 1] = start[s] + segs[s].length;
  const int64_t total = start.back();
  if (total == 0) return;
  std::vector<T*> pp(params.size()), ps(params.size()), pa(params.size());
  std::vector<const T*> pg(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    pp[i] = params[i].data_ptr<T>();
    pg[i] = grads[i].data_ptr<T>();
    ps[i] = sq[i].data_ptr<T>();
    pa[i] = acc[i].data_ptr<T>();
  }
  // 128k elements (~3.5 MB of traffic, ~0.1 ms) per task: a single run's bi-LSTM weights stay on one thread;
  // waking the second OpenMP thread costs little on an idle machine but stalls badly on a shared, loaded one.
  at::parallel_for(0, total, 131072, [&](int64_t b, int64_t e) {
    size_t s = std::upper_bound(start.begin(), start.end(), b) - start.begin() - 1;
    int64_t pos = b;
    while (pos < e) {
      const Segment& seg = segs[s];
      const int64_t in_seg = pos - start[s];
      const int64_t n = std::min(e, start[s + 1]) - pos;
      const int64_t o = seg.offset + in_seg;
      const size_t t = seg.tensor;
      adadelta_span(pp[t] + o, pg[t] + o, ps[t] + o, pa[t] + o, n, h, path);
      pos += n;
      ++s;
    }
  });
}

void adadelta_(std::vector<at::Tensor> params, std::vector<at::Tensor> grads, std::vector<at::Tensor> sq,
               std::vector<at::Tensor> acc, std::vector<std::optional<at::Tensor>> masks, double lr, double rho,
               double eps) {
  const char* op = "adadelta_";
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && sq.size() == n && acc.size() == n, op,
              ": params, grads, sq and acc must be lists of equal length; got ", n, ", ", grads.size(), ", ",
              sq.size(), ", ", acc.size());
  TORCH_CHECK(masks.empty() || masks.size() == n, op, ": masks must be empty or have one entry per param; got ",
              masks.size(), " for ", n, " params");
  if (n == 0) return;
  const auto dtype = params[0].scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op, ": params must be float32 or float64; got ", dtype);
  std::vector<Segment> segs;
  for (size_t i = 0; i < n; ++i) {
    TORCH_CHECK(params[i].scalar_type() == dtype, op, ": all params must share one dtype (", dtype,
                "); params[", i, "] is ", params[i].scalar_type());
    check_same(op, "params", i, params[i], params[i]);
    check_same(op, "grads", i, grads[i], params[i]);
    check_same(op, "sq", i, sq[i], params[i]);
    check_same(op, "acc", i, acc[i], params[i]);
    const int64_t numel = params[i].numel();
    if (masks.empty() || !masks[i].has_value()) {
      if (numel) segs.push_back({i, 0, numel});
      continue;
    }
    const at::Tensor& m = *masks[i];
    TORCH_CHECK(m.scalar_type() == at::kBool && m.device().is_cpu(), op, ": masks[", i,
                "] must be a CPU bool tensor; got ", m.scalar_type(), " on ", m.device());
    TORCH_CHECK(m.dim() <= params[i].dim() && m.sizes() == params[i].sizes().slice(0, m.dim()), op, ": masks[", i,
                "] must have a shape that is a prefix of params[", i, "].shape ", shape_str(params[i]), "; got ",
                shape_str(m));
    const at::Tensor mc = m.contiguous();
    const bool* mp = mc.data_ptr<bool>();
    const int64_t blocks = mc.numel();
    const int64_t inner = blocks ? numel / blocks : 0;
    // Merge runs of consecutive active blocks into one segment.
    for (int64_t b = 0; b < blocks;) {
      if (!mp[b]) {
        ++b;
        continue;
      }
      int64_t e = b;
      while (e < blocks && mp[e]) ++e;
      if (inner) segs.push_back({i, b * inner, (e - b) * inner});
      b = e;
    }
  }
  const Hyper h{lr, rho, eps};
  const Path path = cpu::active_path();
  cpu::note_path(cpu::Op::kAdadelta, path);
  pybind11::gil_scoped_release nogil;
  if (dtype == at::kFloat)
    run_segments<float>(params, grads, sq, acc, segs, h, path);
  else
    run_segments<double>(params, grads, sq, acc, segs, h, path);
}

// ---------------------------------------------------------------------------------------------------------
// Lazy embedding rows.

// Views a [V, E] / [N, E] / [N] / [V] argument as having a leading K = 1.
at::Tensor with_k(const at::Tensor& t, int64_t want_dim) { return t.dim() == want_dim - 1 ? t.unsqueeze(0) : t; }

template <typename T>
void rows_kernel(at::Tensor& table, const at::Tensor& grad_rows, const at::Tensor& row_ids, at::Tensor& sq,
                 at::Tensor& acc, at::Tensor& last_step, int64_t step, const Hyper& h, Path path) {
  const int64_t K = table.size(0), V = table.size(1), E = table.size(2), N = row_ids.size(1);
  T* tp = table.data_ptr<T>();
  T* sp = sq.data_ptr<T>();
  T* ap = acc.data_ptr<T>();
  const T* gp = grad_rows.data_ptr<T>();
  const int64_t* ip = row_ids.data_ptr<int64_t>();
  int64_t* lp = last_step.data_ptr<int64_t>();
  const double rho = h.rho;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(E, 1));  // rows per task, as above
  at::parallel_for(0, K * N, grain, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const int64_t r = ip[j];
      if (r < 0) continue;
      const int64_t k = j / N;
      const int64_t row = k * V + r;
      const int64_t missed = step - 1 - lp[row];
      const int64_t o = row * E;
      if (missed > 0) scale_span<T>(sp + o, ap + o, E, static_cast<T>(std::pow(rho, static_cast<double>(missed))));
      adadelta_span(tp + o, gp + j * E, sp + o, ap + o, E, h, path);
      lp[row] = step;
    }
  });
}

void adadelta_rows_(at::Tensor table, at::Tensor grad_rows, at::Tensor row_ids, at::Tensor sq, at::Tensor acc,
                    at::Tensor last_step, int64_t step, double lr, double rho, double eps) {
  const char* op = "adadelta_rows_";
  TORCH_CHECK(table.dim() == 2 || table.dim() == 3, op, ": table must have shape [V, E] or [K, V, E]; got ",
              shape_str(table));
  TORCH_CHECK(table.device().is_cpu() && table.is_contiguous(), op, ": table must be a contiguous CPU tensor");
  const auto dtype = table.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op, ": table must be float32 or float64; got ", dtype);
  const bool batched = table.dim() == 3;
  at::Tensor t3 = with_k(table, 3);
  const int64_t K = t3.size(0), V = t3.size(1), E = t3.size(2);
  auto check_like_table = [&](const at::Tensor& x, const char* name) {
    TORCH_CHECK(x.sizes() == table.sizes() && x.scalar_type() == dtype && x.is_contiguous() && x.device().is_cpu(),
                op, ": ", name, " must be a contiguous CPU ", dtype, " tensor of shape ", shape_str(table),
                " like table; got ", x.scalar_type(), " ", shape_str(x));
  };
  check_like_table(sq, "sq");
  check_like_table(acc, "acc");
  const int64_t idim = batched ? 2 : 1;
  TORCH_CHECK(row_ids.dim() == idim && row_ids.scalar_type() == at::kLong && row_ids.device().is_cpu() &&
                  (!batched || row_ids.size(0) == K),
              op, ": row_ids must be a CPU int64 tensor of shape ", batched ? "[K, N] with K = " : "[N]",
              batched ? std::to_string(K) : std::string(), "; got ", row_ids.scalar_type(), " ",
              shape_str(row_ids));
  const at::Tensor ids = with_k(row_ids, 2).contiguous();
  const int64_t N = ids.size(1);
  TORCH_CHECK(grad_rows.dim() == idim + 1 && grad_rows.scalar_type() == dtype && grad_rows.device().is_cpu() &&
                  grad_rows.size(-1) == E && grad_rows.size(-2) == N && (!batched || grad_rows.size(0) == K),
              op, ": grad_rows must be a CPU ", dtype, " tensor of shape ", batched ? "[K, N, E]" : "[N, E]",
              " = ", batched ? "[" + std::to_string(K) + ", " : "[", N, ", ", E, "]; got ", grad_rows.scalar_type(),
              " ", shape_str(grad_rows));
  const at::Tensor g3 = with_k(grad_rows, 3).contiguous();
  TORCH_CHECK(last_step.scalar_type() == at::kLong && last_step.is_contiguous() && last_step.device().is_cpu() &&
                  last_step.sizes() == table.sizes().slice(0, table.dim() - 1),
              op, ": last_step must be a contiguous CPU int64 tensor of shape ", batched ? "[K, V]" : "[V]", " = ",
              shape_str(table).substr(0, shape_str(table).rfind(',')), "]; got ", last_step.scalar_type(), " ",
              shape_str(last_step));
  const int64_t* ip = ids.data_ptr<int64_t>();
  for (int64_t j = 0; j < K * N; ++j)
    TORCH_CHECK(ip[j] >= -1 && ip[j] < V, op, ": row_ids must lie in [0, ", V, ") or be -1 (padding); found ",
                ip[j], " at flat position ", j);
  at::Tensor s3 = with_k(sq, 3), a3 = with_k(acc, 3), l2 = with_k(last_step, 2);
  const Hyper h{lr, rho, eps};
  const Path path = cpu::active_path();
  cpu::note_path(cpu::Op::kAdadelta, path);
  pybind11::gil_scoped_release nogil;
  if (dtype == at::kFloat)
    rows_kernel<float>(t3, g3, ids, s3, a3, l2, step, h, path);
  else
    rows_kernel<double>(t3, g3, ids, s3, a3, l2, step, h, path);
}

void adadelta_rows_flush_(at::Tensor sq, at::Tensor acc, at::Tensor last_step, int64_t step, double rho) {
  const char* op = "adadelta_rows_flush_";
  TORCH_CHECK(sq.dim() >= 2 && sq.is_contiguous() && sq.device().is_cpu() &&
                  (sq.scalar_type() == at::kFloat || sq.scalar_type() == at::kDouble),
              op, ": sq must be a contiguous CPU float tensor of shape [V, E] or [K, V, E]; got ", shape_str(sq));
  TORCH_CHECK(acc.sizes() == sq.sizes() && acc.scalar_type() == sq.scalar_type() && acc.is_contiguous(), op,
              ": acc must be contiguous, of sq's dtype and shape ", shape_str(sq), "; got ", shape_str(acc));
  TORCH_CHECK(last_step.scalar_type() == at::kLong && last_step.is_contiguous() &&
                  last_step.sizes() == sq.sizes().slice(0, sq.dim() - 1),
              op, ": last_step must be a contiguous int64 tensor of shape sq.shape[:-1]; got ", shape_str(last_step));
  const int64_t rows = last_step.numel(), E = sq.size(-1);
  int64_t* lp = last_step.data_ptr<int64_t>();
  pybind11::gil_scoped_release nogil;
  AT_DISPATCH_FLOATING_TYPES(sq.scalar_type(), "adadelta_rows_flush_", [&] {
    scalar_t* sp = sq.data_ptr<scalar_t>();
    scalar_t* ap = acc.data_ptr<scalar_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(E, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t missed = step - lp[r];
        if (missed > 0)
          scale_span<scalar_t>(sp + r * E, ap + r * E, E,
                               static_cast<scalar_t>(std::pow(rho, static_cast<double>(missed))));
        if (missed >= 0) lp[r] = step;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Sparse embedding backward.

std::tuple<at::Tensor, at::Tensor> embedding_grad_rows(at::Tensor ids, at::Tensor grad_out, int64_t num_rows,
                                                       int64_t ignore_id) {
  const char* op = "embedding_grad_rows";
  TORCH_CHECK(ids.scalar_type() == at::kLong && ids.device().is_cpu() && (ids.dim() == 1 || ids.dim() == 2), op,
              ": ids must be a CPU int64 tensor of shape [N] or [K, N]; got ", ids.scalar_type(), " ",
              shape_str(ids));
  const bool batched = ids.dim() == 2;
  const at::Tensor i2 = with_k(ids, 2).contiguous();
  const int64_t K = i2.size(0), N = i2.size(1);
  TORCH_CHECK(grad_out.dim() == ids.dim() + 1 && grad_out.sizes().slice(0, ids.dim()) == ids.sizes() &&
                  grad_out.device().is_cpu() &&
                  (grad_out.scalar_type() == at::kFloat || grad_out.scalar_type() == at::kDouble),
              op, ": grad_out must be a CPU float tensor of shape ids.shape + [E] = ", shape_str(ids),
              " + [E]; got ", grad_out.scalar_type(), " ", shape_str(grad_out));
  const at::Tensor g3 = with_k(grad_out, 3).contiguous();
  const int64_t E = g3.size(2);
  const int64_t* ip = i2.data_ptr<int64_t>();
  for (int64_t j = 0; j < K * N; ++j)
    TORCH_CHECK((ip[j] >= 0 && ip[j] < num_rows) || ip[j] == ignore_id, op, ": ids must lie in [0, ", num_rows,
                "); found ", ip[j], " at flat position ", j);
  // Pass 1 (per k): slot of every token, distinct ids in order of first appearance.
  std::vector<int32_t> slot(K * N, -1);
  std::vector<std::vector<int64_t>> uniq(K);
  {
    pybind11::gil_scoped_release nogil;
    at::parallel_for(0, K, 1, [&](int64_t b, int64_t e) {
      std::vector<int32_t> where(num_rows, -1);
      for (int64_t k = b; k < e; ++k) {
        auto& u = uniq[k];
        for (int64_t n = 0; n < N; ++n) {
          const int64_t r = ip[k * N + n];
          if (r == ignore_id) continue;
          int32_t& w = where[r];
          if (w < 0) {
            w = static_cast<int32_t>(u.size());
            u.push_back(r);
          }
          slot[k * N + n] = w;
        }
        for (int64_t r : u) where[r] = -1;
      }
    });
  }
  int64_t U = 0;
  for (auto& u : uniq) U = std::max<int64_t>(U, u.size());
  at::Tensor row_ids = at::full({K, U}, -1, i2.options());
  at::Tensor grad_rows = at::zeros({K, U, E}, g3.options());
  int64_t* rp = row_ids.data_ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k) std::copy(uniq[k].begin(), uniq[k].end(), rp + k * U);
  {
    pybind11::gil_scoped_release nogil;
    AT_DISPATCH_FLOATING_TYPES(g3.scalar_type(), "embedding_grad_rows", [&] {
      const scalar_t* gp = g3.data_ptr<scalar_t>();
      scalar_t* op_ = grad_rows.data_ptr<scalar_t>();
      at::parallel_for(0, K, 1, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k)
          for (int64_t n = 0; n < N; ++n) {
            const int32_t s = slot[k * N + n];
            if (s < 0) continue;
            scalar_t* dst = op_ + (k * U + s) * E;
            const scalar_t* src = gp + (k * N + n) * E;
            for (int64_t x = 0; x < E; ++x) dst[x] += src[x];
          }
      });
    });
  }
  if (!batched) return {row_ids.squeeze(0), grad_rows.squeeze(0)};
  return {row_ids, grad_rows};
}

// ---------------------------------------------------------------------------------------------------------
// Dense Adadelta with per-slot state (the original protocol's one optimiser per task).

void adadelta_slots_(std::vector<at::Tensor> params, std::vector<at::Tensor> grads, std::vector<at::Tensor> sq,
                     std::vector<at::Tensor> acc, at::Tensor slots, double lr, double rho, double eps) {
  const char* op = "adadelta_slots_";
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && sq.size() == n && acc.size() == n, op,
              ": params, grads, sq and acc must be lists of equal length; got ", n, ", ", grads.size(), ", ",
              sq.size(), ", ", acc.size());
  TORCH_CHECK(slots.dim() == 1 && slots.scalar_type() == at::kLong && slots.device().is_cpu(), op,
              ": slots must be a CPU int64 tensor of shape [K]; got ", slots.scalar_type(), " ", shape_str(slots));
  const int64_t K = slots.size(0);
  const at::Tensor sl = slots.contiguous();
  const int64_t* sp = sl.data_ptr<int64_t>();
  struct Block {
    float *p, *sq, *acc;
    const float* g;
    int64_t len;
  };
  std::vector<Block> blocks;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.scalar_type() == at::kFloat && p.device().is_cpu() && p.is_contiguous() && p.dim() >= 1 &&
                    p.size(0) == K,
                op, ": params[", i, "] must be a contiguous CPU float32 tensor [K, ...] with K = ", K, "; got ",
                p.scalar_type(), " ", shape_str(p));
    check_same(op, "grads", i, grads[i], p);
    TORCH_CHECK(sq[i].dim() == p.dim() + 1 && sq[i].size(0) == K, op, ": sq[", i,
                "] must have shape [K, S] + params[", i, "].shape[1:]; got ", shape_str(sq[i]));
    const int64_t S = sq[i].size(1);
    for (const at::Tensor* t : {&sq[i], &acc[i]})
      TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu() && t->is_contiguous() &&
                      t->sizes() == sq[i].sizes() && t->sizes().slice(2) == p.sizes().slice(1),
                  op, ": sq[", i, "] and acc[", i, "] must be contiguous CPU float32 tensors of shape [K, S] + ",
                  "params[", i, "].shape[1:]; got ", shape_str(*t));
    const int64_t inner = K ? p.numel() / K : 0;
    for (int64_t k = 0; k < K; ++k) {
      TORCH_CHECK(sp[k] >= 0 && sp[k] < S, op, ": slots must lie in [0, ", S, "); run ", k, " has ", sp[k]);
      const int64_t so = (k * S + sp[k]) * inner;
      blocks.push_back({p.data_ptr<float>() + k * inner, sq[i].data_ptr<float>() + so, acc[i].data_ptr<float>() + so,
                        grads[i].data_ptr<float>() + k * inner, inner});
    }
  }
  const Hyper h{lr, rho, eps};
  const Path path = cpu::active_path();
  cpu::note_path(cpu::Op::kAdadelta, path);
  pybind11::gil_scoped_release nogil;
  at::parallel_for(0, static_cast<int64_t>(blocks.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const Block& x = blocks[j];
      adadelta_span(x.p, x.g, x.sq, x.acc, x.len, h, path);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// TensorFlow's sparse Adadelta, one occurrence after the other.

// One row, TensorFlow's SparseApplyAdadelta arithmetic and operation order (without errno-setting sqrt, so
// that the loop over the row vectorises).
__attribute__((optimize("no-math-errno"))) void tf_adadelta_row(float* __restrict v, float* __restrict a,
                                                                float* __restrict u, const float* __restrict g,
                                                                int64_t E, float lr, float rho, float eps) {
  const float om = 1.0f - rho;
  for (int64_t e = 0; e < E; ++e) {
    const float gg = g[e];
    const float aa = a[e] * rho + gg * gg * om;
    a[e] = aa;
    const float up = std::sqrt(u[e] + eps) / std::sqrt(aa + eps) * gg;
    u[e] = u[e] * rho + up * up * om;
    v[e] -= up * lr;
  }
}

#if MTLFAST_X86
// The same row in AVX-512 (16 elements a vector, masked tail; multiplications and additions kept separate, in the
// portable row's order).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void tf_adadelta_row_avx512(float* __restrict v, float* __restrict a,
                                                               float* __restrict u, const float* __restrict g,
                                                               int64_t E, float lr, float rho, float eps) {
  const __m512 vrho = _mm512_set1_ps(rho), vom = _mm512_set1_ps(1.0f - rho), veps = _mm512_set1_ps(eps);
  const __m512 vlr = _mm512_set1_ps(lr);
  for (int64_t e = 0; e < E; e += 16) {
    const int64_t left = E - e;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    const __m512 gg = _mm512_maskz_loadu_ps(m, g + e);
    const __m512 aa = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + e), vrho),
                                    _mm512_mul_ps(_mm512_mul_ps(gg, gg), vom));
    _mm512_mask_storeu_ps(a + e, m, aa);
    const __m512 uu = _mm512_maskz_loadu_ps(m, u + e);
    const __m512 up = _mm512_mul_ps(
        _mm512_div_ps(_mm512_sqrt_ps(_mm512_add_ps(uu, veps)), _mm512_sqrt_ps(_mm512_add_ps(aa, veps))), gg);
    _mm512_mask_storeu_ps(u + e, m, _mm512_add_ps(_mm512_mul_ps(uu, vrho), _mm512_mul_ps(_mm512_mul_ps(up, up), vom)));
    _mm512_mask_storeu_ps(v + e, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + e), _mm512_mul_ps(up, vlr)));
  }
}
#pragma GCC diagnostic pop
#endif

void sparse_adadelta_occurrences_(at::Tensor table, at::Tensor sq, at::Tensor acc, at::Tensor slots,
                                  at::Tensor rows, at::Tensor grads, double lr, double rho, double eps) {
  const char* op = "sparse_adadelta_occurrences_";
  TORCH_CHECK(table.dim() == 3 && table.scalar_type() == at::kFloat && table.device().is_cpu() &&
                  table.is_contiguous(),
              op, ": table must be a contiguous CPU float32 tensor of shape [K, V, E]; got ", table.scalar_type(),
              " ", shape_str(table));
  const int64_t K = table.size(0), V = table.size(1), E = table.size(2);
  TORCH_CHECK(sq.dim() == 4 && sq.size(0) == K && sq.size(2) == V && sq.size(3) == E, op,
              ": sq must have shape [K, S, V, E] with [K, V, E] = ", shape_str(table), "; got ", shape_str(sq));
  const int64_t S = sq.size(1);
  for (const auto* t : {&sq, &acc})
    TORCH_CHECK(t->sizes() == sq.sizes() && t->scalar_type() == at::kFloat && t->device().is_cpu() &&
                    t->is_contiguous(),
                op, ": sq and acc must be contiguous CPU float32 tensors of shape ", shape_str(sq), "; got ",
                t->scalar_type(), " ", shape_str(*t));
  TORCH_CHECK(slots.dim() == 1 && slots.size(0) == K && slots.scalar_type() == at::kLong && slots.device().is_cpu(),
              op, ": slots must be a CPU int64 tensor of shape [K] = [", K, "]; got ", slots.scalar_type(), " ",
              shape_str(slots));
  TORCH_CHECK(rows.dim() == 2 && rows.size(0) == K && rows.scalar_type() == at::kLong && rows.device().is_cpu(),
              op, ": rows must be a CPU int64 tensor of shape [K, N] with K = ", K, "; got ", rows.scalar_type(),
              " ", shape_str(rows));
  const int64_t N = rows.size(1);
  // grads [K, N, E]: entry i's gradient is grads[k, i]; or batch-major [K, B, T, E] with N = T * B: entry
  // i = t * B + b (time-major, the original's order) reads grads[k, b, t] (the bi-LSTM's dx as it is, no
  // transposed copy).
  const bool batch_major = grads.dim() == 4;
  TORCH_CHECK(((grads.dim() == 3 && grads.size(1) == N) ||
               (batch_major && grads.size(1) * grads.size(2) == N)) &&
                  grads.size(0) == K && grads.size(-1) == E && grads.scalar_type() == at::kFloat &&
                  grads.device().is_cpu(),
              op, ": grads must be a CPU float32 tensor of shape [K, N, E] = [", K, ", ", N, ", ", E,
              "] or [K, B, T, E] with B T = N; got ", grads.scalar_type(), " ", shape_str(grads));
  const int64_t Bg = batch_major ? grads.size(1) : 1, Tg = batch_major ? grads.size(2) : N;
  const at::Tensor sl = slots.contiguous(), r2 = rows.contiguous(), g3 = grads.contiguous();
  const int64_t* sp = sl.data_ptr<int64_t>();
  const int64_t* rp = r2.data_ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k)
    TORCH_CHECK(sp[k] >= 0 && sp[k] < S, op, ": slots must lie in [0, ", S, "); run ", k, " has ", sp[k]);
  for (int64_t j = 0; j < K * N; ++j)
    TORCH_CHECK(rp[j] >= -1 && rp[j] < V, op, ": rows must lie in [0, ", V, ") or be -1 (skip); found ", rp[j],
                " at flat position ", j);
  float* tp = table.data_ptr<float>();
  float* qp = sq.data_ptr<float>();
  float* ap = acc.data_ptr<float>();
  const float* gp = g3.data_ptr<float>();
  const float flr = static_cast<float>(lr), frho = static_cast<float>(rho), feps = static_cast<float>(eps);
  [[maybe_unused]] const Path path = cpu::active_path();  // unused in the portable build
  auto* row_update = tf_adadelta_row;
#if MTLFAST_X86
  if (path == Path::kAvx512 || path == Path::kAvx512Bf16) row_update = tf_adadelta_row_avx512;
#endif
  pybind11::gil_scoped_release nogil;
  // The rows are scattered over tables of hundreds of MB: each entry's three rows are cache (and TLB) misses,
  // which the short arithmetic per row cannot hide, so the rows of the entry kPrefetch ahead are requested early.
  constexpr int64_t kPrefetch = 8;
  const int64_t row_bytes = E * static_cast<int64_t>(sizeof(float));
  at::parallel_for(0, K, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t state = (k * S + sp[k]) * V * E;
      for (int64_t i = 0; i < N; ++i) {
        if (i + kPrefetch < N) {
          const int64_t rn = rp[k * N + i + kPrefetch];
          if (rn >= 0) {
            const char* pt = reinterpret_cast<const char*>(tp + (k * V + rn) * E);
            const char* pq = reinterpret_cast<const char*>(qp + state + rn * E);
            const char* pa = reinterpret_cast<const char*>(ap + state + rn * E);
            for (int64_t o = 0; o < row_bytes; o += 64) {
              __builtin_prefetch(pt + o, 1);
              __builtin_prefetch(pq + o, 1);
              __builtin_prefetch(pa + o, 1);
            }
          }
        }
        const int64_t r = rp[k * N + i];
        if (r < 0) continue;
        // entry i of run k: grads[k, i] ([K, N, E]) or grads[k, i % B, i / B] ([K, B, T, E])
        const int64_t g_row = batch_major ? (k * Bg + i % Bg) * Tg + i / Bg : k * N + i;
        row_update(tp + (k * V + r) * E, qp + state + r * E, ap + state + r * E, gp + g_row * E, E, flr, frho, feps);
      }
    }
  });
}

}  // namespace

void register_adadelta_cpu(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("adadelta_", &adadelta_, py::arg("params"), py::arg("grads"), py::arg("sq"), py::arg("acc"),
        py::arg("masks"), py::arg("lr"), py::arg("rho"), py::arg("eps"),
        "Fused in-place Adadelta over lists of same-shaped tensors; masks[i] (bool, prefix shape) skips blocks.");
  m.def("adadelta_rows_", &adadelta_rows_, py::arg("table"), py::arg("grad_rows"), py::arg("row_ids"),
        py::arg("sq"), py::arg("acc"), py::arg("last_step"), py::arg("step"), py::arg("lr"), py::arg("rho"),
        py::arg("eps"), "Lazy exact Adadelta on touched embedding rows (rho^missed applied on touch).");
  m.def("adadelta_rows_flush_", &adadelta_rows_flush_, py::arg("sq"), py::arg("acc"), py::arg("last_step"),
        py::arg("step"), py::arg("rho"), "Bring every row's Adadelta state to `step` completed steps.");
  m.def("embedding_grad_rows", &embedding_grad_rows, py::arg("ids"), py::arg("grad_out"), py::arg("num_rows"),
        py::arg("ignore_id") = -1, "Sum embedding output gradients into distinct rows (sparse embedding backward).");
  m.def("adadelta_slots_", &adadelta_slots_, py::arg("params"), py::arg("grads"), py::arg("sq"), py::arg("acc"),
        py::arg("slots"), py::arg("lr"), py::arg("rho"), py::arg("eps"),
        "Adadelta on params [K, ...] with per-slot state [K, S, ...]: run k moves state slot slots[k].");
  m.def("sparse_adadelta_occurrences_", &sparse_adadelta_occurrences_, py::arg("table"), py::arg("sq"),
        py::arg("acc"), py::arg("slots"), py::arg("rows"), py::arg("grads"), py::arg("lr"), py::arg("rho"),
        py::arg("eps"), "TensorFlow's SparseApplyAdadelta per run of a model array, one occurrence after the other.");
}

}  // namespace mtlfast
