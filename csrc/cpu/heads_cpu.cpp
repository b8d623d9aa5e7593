// The per-run parts of a model array's training step, each as one call over all K runs (CPU).
//
//   heads_step_(y, head_w, head_b, w_sq, b_sq, w_acc, b_acc, slots, n_lab, tags, positions, ignore_tag,
//               lr, rho, eps, precision) -> (losses float32 [K], dy [K, B, T, D])
//       Heads, mean token cross-entropy and the drawn head's Adadelta update, ragged by label count.
//         y [K, B, T, D] float32 (the bi-LSTM's output after dropout); head_w, w_sq, w_acc [K, S, L, D];
//         head_b, b_sq, b_acc [K, S, L] (float32, contiguous; updated in place); slots, n_lab int64 [K]: run
//         k uses head slot s_k and its first n_k labels; tags int64 [K, B, T], ignore_tag at padding.
//       For run k on its N_k real tokens: p = softmax(y W[:n]^T + b[:n]); loss = mean(-log p[tag]);
//       dlogits = (p - onehot(tag)) / N; dy = dlogits W (0 at padding); dW = dlogits^T y, db = sum dlogits;
//       then Adadelta (torch.optim order, the kernels of adadelta_cpu.cpp) on W[:n], b[:n] and their state.
//       positions > 0 (the original protocol): the loss is a mean over `positions` positions, of which the
//       P = positions - N beyond the real tokens have y = 0 and target 0: loss = (sum of the N losses -
//       P log softmax(b)[0]) / positions, and those positions add P (softmax(b) - onehot(0)) / positions to db.
//       A run with no real token and positions = 0 has loss 0 and its head does not move. Parallel over runs;
//       the products are ATen matmuls (BLAS) on each run's own [N, D] x [D, n]. precision "bf16" on a CPU with
//       AVX512-BF16 (and the avx512_bf16 build active): the three products (logits, dW, dy) take bf16 operands
//       (y, W and dlogits rounded to nearest even) with fp32 accumulation; softmax, loss, bias gradient and
//       Adadelta stay fp32 on fp32 master weights. Elsewhere "bf16" runs the fp32 products.
//
//   gather_batches(tokens, tags, offsets, idx, max_len, pad_tag) -> (tokens int64 [K, B, T], tags int64
//       [K, B, T], lengths int64 [K, B])
//       Batch assembly for K runs: run k's sentences idx[k] of its split (tokens[k], tags[k]: int32 [n_tok],
//       offsets[k]: int64 [n + 1]), cut to max_len (<= 0: no cut), right-padded with token 0 and pad_tag to
//       the longest sentence of all runs, T.
//
//   dropout_masks(seeds, steps, B, T, D, max_len, threshold, scale) -> float32 [K, B, T, D]
//       Counter-based dropout: element (b, t, j) of run k is `scale` if hash(seeds[k], steps[k], position) >> 8
//       >= threshold, else 0, with position = (b * max_len + t) * D + j (t < max_len). A run's mask depends on
//       its seed, its step and the position only: the same alone, in any array and after a resume. The hash
//       (dropout_key, dropout_bits) is written with 32-bit operations only, so that mtlfast.ops.heads'
//       reference computes it bit for bit with torch int64 tensors.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/adadelta_span.h"
#include "cpu/bf16_gemm.h"
#include "cpu/isa.h"
#include "mtlfast.h"

namespace mtlfast {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// ---------------------------------------------------------------------------------------------------------
// Heads.

// The heads' three products in bf16 (precision="bf16" on AVX512-BF16 CPUs): operands rounded to bfloat16 (round
// to nearest even) as they are packed, products accumulated in fp32 (vdpbf16ps, bf16_gemm.h). All [rows, cols]
// float32 contiguous tensors; the results are float32.
struct Bf16Scratch {
#if MTLFAST_X86
  std::vector<uint32_t> a;
  cpu::PackedB16 b;
#endif
};

#if MTLFAST_X86
// C[M, N] = op(A) @ op(B) (+ C if accumulate): op(A) [M, Kd] of A (ta: A stored [Kd, M]), op(B) [Kd, N] of B (tb:
// B stored [N, Kd]).
MTLFAST_BF16_TARGET void prod_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t Kd, const float* A, const float* B,
                                   bool accumulate, float* C, Bf16Scratch& s) {
  if (M == 0 || N == 0) return;
  cpu::pack_a16(ta, M, Kd, A, ta ? M : Kd, s.a);
  cpu::pack_b16(tb, Kd, N, B, tb ? Kd : N, s.b);
  cpu::bf16_gemm_packed(M, s.a.data(), s.b, accumulate ? 1.0f : 0.0f, C, N);
}

// logits [N, n] = b + yk [N, D] @ w [n, D]^T
at::Tensor logits_bf16(const at::Tensor& yk, const at::Tensor& w, const at::Tensor& b, Bf16Scratch& s) {
  const int64_t N = yk.size(0), n = w.size(0), D = w.size(1);
  at::Tensor out = b.unsqueeze(0).expand({N, n}).contiguous();
  prod_bf16(false, true, N, n, D, yk.data_ptr<float>(), w.data_ptr<float>(), true, out.data_ptr<float>(), s);
  return out;
}

// dW [n, D] = d [N, n]^T @ yk [N, D]
at::Tensor dw_bf16(const at::Tensor& d, const at::Tensor& yk, Bf16Scratch& s) {
  const int64_t N = d.size(0), n = d.size(1), D = yk.size(1);
  at::Tensor out = at::zeros({n, D}, d.options());
  if (N) prod_bf16(true, false, n, D, N, d.data_ptr<float>(), yk.data_ptr<float>(), false, out.data_ptr<float>(), s);
  return out;
}

// dy rows [N, D] = d [N, n] @ w [n, D]
at::Tensor dy_bf16(const at::Tensor& d, const at::Tensor& w, Bf16Scratch& s) {
  const int64_t N = d.size(0), n = d.size(1), D = w.size(1);
  at::Tensor out = at::empty({N, D}, d.options());
  prod_bf16(false, false, N, D, n, d.data_ptr<float>(), w.data_ptr<float>(), false, out.data_ptr<float>(), s);
  return out;
}
#else
// Never called (native_bf16 is false without x86 code).
at::Tensor logits_bf16(const at::Tensor&, const at::Tensor&, const at::Tensor&, Bf16Scratch&) { return {}; }
at::Tensor dw_bf16(const at::Tensor&, const at::Tensor&, Bf16Scratch&) { return {}; }
at::Tensor dy_bf16(const at::Tensor&, const at::Tensor&, Bf16Scratch&) { return {}; }
#endif

std::tuple<at::Tensor, at::Tensor> heads_step_(at::Tensor y, at::Tensor head_w, at::Tensor head_b, at::Tensor w_sq,
                                               at::Tensor b_sq, at::Tensor w_acc, at::Tensor b_acc,
                                               at::Tensor slots, at::Tensor n_lab, at::Tensor tags,
                                               int64_t positions, int64_t ignore_tag, double lr, double rho,
                                               double eps, const std::string& precision) {
  const char* op = "heads_step_";
  TORCH_CHECK(precision == "fp32" || precision == "bf16", op, ": precision must be 'fp32' or 'bf16'; got '",
              precision, "'");
  TORCH_CHECK(y.dim() == 4 && y.scalar_type() == at::kFloat && y.device().is_cpu(), op,
              ": y must be a CPU float32 tensor of shape [K, B, T, D]; got ", y.scalar_type(), " ", shape_of(y));
  const int64_t K = y.size(0), B = y.size(1), T = y.size(2), D = y.size(3);
  TORCH_CHECK(head_w.dim() == 4 && head_w.size(0) == K && head_w.size(3) == D, op,
              ": head_w must have shape [K, S, L, D] with K = ", K, ", D = ", D, " (from y); got ", shape_of(head_w));
  const int64_t S = head_w.size(1), L = head_w.size(2);
  for (auto* t : {&head_w, &w_sq, &w_acc})
    TORCH_CHECK(t->sizes() == head_w.sizes() && t->scalar_type() == at::kFloat && t->device().is_cpu() &&
                    t->is_contiguous(),
                op, ": head_w, w_sq and w_acc must be contiguous CPU float32 tensors of shape ", shape_of(head_w),
                "; got ", t->scalar_type(), " ", shape_of(*t));
  for (auto* t : {&head_b, &b_sq, &b_acc})
    TORCH_CHECK(t->dim() == 3 && t->size(0) == K && t->size(1) == S && t->size(2) == L &&
                    t->scalar_type() == at::kFloat && t->device().is_cpu() && t->is_contiguous(),
                op, ": head_b, b_sq and b_acc must be contiguous CPU float32 tensors of shape [K, S, L] = [", K,
                ", ", S, ", ", L, "]; got ", t->scalar_type(), " ", shape_of(*t));
  for (auto* t : {&slots, &n_lab})
    TORCH_CHECK(t->dim() == 1 && t->size(0) == K && t->scalar_type() == at::kLong && t->device().is_cpu(), op,
                ": slots and n_lab must be CPU int64 tensors of shape [K] = [", K, "]; got ", t->scalar_type(),
                " ", shape_of(*t));
  TORCH_CHECK(tags.dim() == 3 && tags.size(0) == K && tags.size(1) == B && tags.size(2) == T &&
                  tags.scalar_type() == at::kLong && tags.device().is_cpu(),
              op, ": tags must be a CPU int64 tensor of shape [K, B, T] = [", K, ", ", B, ", ", T, "]; got ",
              tags.scalar_type(), " ", shape_of(tags));
  TORCH_CHECK(positions >= 0, op, ": positions must be >= 0 (0: mean over the real tokens); got ", positions);
  const at::Tensor yc = y.contiguous(), tg = tags.contiguous(), sl = slots.contiguous(), nl = n_lab.contiguous();
  const int64_t* tp = tg.data_ptr<int64_t>();
  const int64_t* sp = sl.data_ptr<int64_t>();
  const int64_t* np_ = nl.data_ptr<int64_t>();
  // Real tokens of each run (flat b * T + t), checked here, before anything moves.
  std::vector<std::vector<int64_t>> real(K);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t s = sp[k], n = np_[k];
    TORCH_CHECK(s >= 0 && s < S, op, ": slots must lie in [0, ", S, "); run ", k, " has ", s);
    TORCH_CHECK(n >= 1 && n <= L, op, ": n_lab must lie in [1, ", L, "]; run ", k, " has ", n);
    auto& r = real[k];
    for (int64_t i = 0; i < B * T; ++i) {
      const int64_t c = tp[k * B * T + i];
      if (c == ignore_tag) continue;
      TORCH_CHECK(c >= 0 && c < n, op, ": run ", k, " has tag ", c, " at flat position ", i, " outside its ", n,
                  " labels [0, ", n, ") (padding must be ", ignore_tag, ")");
      r.push_back(i);
    }
    TORCH_CHECK(positions == 0 || static_cast<int64_t>(r.size()) <= positions, op, ": original loss over ",
                positions, " positions, but run ", k, "'s batch holds ", r.size(), " real tokens");
  }
  at::Tensor dy = at::zeros_like(yc);
  at::Tensor losses = at::zeros({K}, yc.options());
  float* lp = losses.data_ptr<float>();
  float* hw = head_w.data_ptr<float>();
  float* hb = head_b.data_ptr<float>();
  float* wsq = w_sq.data_ptr<float>();
  float* bsq = b_sq.data_ptr<float>();
  float* wac = w_acc.data_ptr<float>();
  float* bac = b_acc.data_ptr<float>();
  const adadelta_detail::Hyper h{lr, rho, eps};
  const cpu::Path path = cpu::active_path();
  // bf16 products only where the CPU has native bf16 dot products; elsewhere the fp32 products.
  const bool native_bf16 = MTLFAST_X86 && precision == "bf16" && path == cpu::Path::kAvx512Bf16;
  // Runs costliest first (real tokens x labels), handed out one at a time: runs with large label sets
  // (FrameNet's 716) would otherwise pile up on one thread.
  std::vector<int64_t> order(K);
  for (int64_t k = 0; k < K; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return static_cast<int64_t>(real[a].size() + 1) * np_[a] > static_cast<int64_t>(real[b].size() + 1) * np_[b];
  });
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(K, at::get_num_threads());
  pybind11::gil_scoped_release nogil;
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    at::NoGradGuard no_grad;
    Bf16Scratch scratch;  // this worker's packed bf16 operands, reused across its runs
    for (int64_t i = next++; i < K; i = next++) {
      const int64_t k = order[i];
      const auto& r = real[k];
      const int64_t N = static_cast<int64_t>(r.size());
      if (N == 0 && positions == 0) continue;
      const int64_t s = sp[k], n = np_[k];
      const int64_t wo = (k * S + s) * L * D, bo = (k * S + s) * L;
      const at::Tensor w = head_w[k][s].narrow(0, 0, n);  // [n, D], contiguous
      const at::Tensor b = head_b[k][s].narrow(0, 0, n);
      const at::Tensor idx =
          N ? at::from_blob(const_cast<int64_t*>(r.data()), {N}, at::kLong).clone() : at::empty({0}, at::kLong);
      const at::Tensor yk = yc[k].view({B * T, D}).index_select(0, idx);  // [N, D]
      at::Tensor d = at::log_softmax(native_bf16 ? logits_bf16(yk, w, b, scratch) : at::addmm(b, yk, w.t()),
                                     1);  // log p, then dlogits
      float* dp = d.data_ptr<float>();
      const int64_t* tk = tp + k * B * T;
      double loss = 0.0;
      for (int64_t i = 0; i < N; ++i) loss -= dp[i * n + tk[r[i]]];
      const double denom = positions ? static_cast<double>(positions) : static_cast<double>(N);
      d.exp_();
      for (int64_t i = 0; i < N; ++i) dp[i * n + tk[r[i]]] -= 1.0f;
      d.mul_(static_cast<float>(1.0 / denom));
      at::Tensor db = d.sum(0);
      if (positions) {
        const int64_t P = positions - N;
        at::Tensor lb = at::log_softmax(b, 0);
        loss -= static_cast<double>(P) * lb[0].item<float>();
        at::Tensor pb = lb.exp();
        pb.data_ptr<float>()[0] -= 1.0f;
        db.add_(pb.mul_(static_cast<float>(static_cast<double>(P) / denom)));
      }
      lp[k] = static_cast<float>(loss / denom);
      const at::Tensor gw = native_bf16 ? dw_bf16(d, yk, scratch) : d.t().mm(yk).contiguous();  // [n, D]
      dy[k].view({B * T, D}).index_copy_(0, idx, native_bf16 ? dy_bf16(d, w, scratch) : d.mm(w));
      adadelta_detail::adadelta_span(hw + wo, gw.data_ptr<float>(), wsq + wo, wac + wo, n * D, h, path);
      const at::Tensor dbc = db.contiguous();
      adadelta_detail::adadelta_span(hb + bo, dbc.data_ptr<float>(), bsq + bo, bac + bo, n, h, path);
    }
  });
  return {losses, dy};
}

// ---------------------------------------------------------------------------------------------------------
// Batch assembly.

std::tuple<at::Tensor, at::Tensor, at::Tensor> gather_batches(std::vector<at::Tensor> tokens,
                                                              std::vector<at::Tensor> tags,
                                                              std::vector<at::Tensor> offsets, at::Tensor idx,
                                                              int64_t max_len, int64_t pad_tag) {
  const char* op = "gather_batches";
  TORCH_CHECK(idx.dim() == 2 && idx.scalar_type() == at::kLong && idx.device().is_cpu(), op,
              ": idx must be a CPU int64 tensor of shape [K, B]; got ", idx.scalar_type(), " ", shape_of(idx));
  const int64_t K = idx.size(0), B = idx.size(1);
  TORCH_CHECK(static_cast<int64_t>(tokens.size()) == K && static_cast<int64_t>(tags.size()) == K &&
                  static_cast<int64_t>(offsets.size()) == K,
              op, ": tokens, tags and offsets must hold one tensor per run (K = ", K, " from idx); got ",
              tokens.size(), ", ", tags.size(), ", ", offsets.size());
  const at::Tensor ic = idx.contiguous();
  const int64_t* ip = ic.data_ptr<int64_t>();
  std::vector<const int32_t*> tok(K), tag(K);
  std::vector<const int64_t*> off(K);
  at::Tensor lengths = at::empty({K, B}, ic.options());
  int64_t* lp = lengths.data_ptr<int64_t>();
  int64_t T = 0;
  for (int64_t k = 0; k < K; ++k) {
    const at::Tensor &a = tokens[k], &g = tags[k], &o = offsets[k];
    TORCH_CHECK(a.dim() == 1 && a.scalar_type() == at::kInt && a.is_contiguous() && a.device().is_cpu() &&
                    g.sizes() == a.sizes() && g.scalar_type() == at::kInt && g.is_contiguous() && g.device().is_cpu(),
                op, ": tokens[", k, "] and tags[", k, "] must be contiguous CPU int32 tensors of one shape [n_tok]; got ",
                a.scalar_type(), " ", shape_of(a), " and ", g.scalar_type(), " ", shape_of(g));
    TORCH_CHECK(o.dim() == 1 && o.size(0) >= 1 && o.scalar_type() == at::kLong && o.is_contiguous() &&
                    o.device().is_cpu(),
                op, ": offsets[", k, "] must be a contiguous CPU int64 tensor of shape [n + 1]; got ", o.scalar_type(),
                " ", shape_of(o));
    tok[k] = a.data_ptr<int32_t>();
    tag[k] = g.data_ptr<int32_t>();
    off[k] = o.data_ptr<int64_t>();
    const int64_t n = o.size(0) - 1;
    TORCH_CHECK(off[k][n] <= a.size(0), op, ": offsets[", k, "] ends at ", off[k][n], " beyond its ", a.size(0),
                " tokens");
    for (int64_t b = 0; b < B; ++b) {
      const int64_t i = ip[k * B + b];
      TORCH_CHECK(i >= 0 && i < n, op, ": run ", k, "'s sentence indices must be in [0, ", n, "); got ", i);
      int64_t len = off[k][i + 1] - off[k][i];
      if (max_len > 0 && len > max_len) len = max_len;
      lp[k * B + b] = len;
      T = std::max(T, len);
    }
  }
  at::Tensor out_tok = at::zeros({K, B, T}, ic.options());
  at::Tensor out_tag = at::full({K, B, T}, pad_tag, ic.options());
  int64_t* ot = out_tok.data_ptr<int64_t>();
  int64_t* og = out_tag.data_ptr<int64_t>();
  pybind11::gil_scoped_release nogil;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t start = off[k][ip[k * B + b]], len = lp[k * B + b];
      int64_t* dt = ot + (k * B + b) * T;
      int64_t* dg = og + (k * B + b) * T;
      for (int64_t t = 0; t < len; ++t) {
        dt[t] = tok[k][start + t];
        dg[t] = tag[k][start + t];
      }
    }
  return {out_tok, out_tag, lengths};
}

// ---------------------------------------------------------------------------------------------------------
// Counter-based dropout.

// A 32-bit bijective mixer (Wellons' lowbias32).
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// The two 32-bit keys of one (seed, step).
inline void dropout_key(uint64_t seed, uint64_t step, uint32_t& k1, uint32_t& k2) {
  const uint32_t a = mix32(static_cast<uint32_t>(seed) ^ mix32(static_cast<uint32_t>(seed >> 32) ^ 0x9e3779b9U));
  k1 = mix32(a ^ mix32(static_cast<uint32_t>(step) ^ mix32(static_cast<uint32_t>(step >> 32) ^ 0x85ebca6bU)));
  k2 = mix32(k1 ^ 0xc2b2ae35U);
}

inline uint32_t dropout_bits(uint32_t pos, uint32_t k1, uint32_t k2) { return mix32(mix32(pos + k1) ^ k2); }

// One row of D mask values; inlined into one function per kernel build so that the compiler vectorises the
// hash with that build's 32-bit multiplies (the baseline x86-64 build has none).
MTLFAST_AI void mask_row(float* __restrict dst, uint32_t base, int64_t D, uint32_t k1, uint32_t k2, uint32_t thr,
                         float scale) {
  for (int64_t j = 0; j < D; ++j)
    dst[j] = (dropout_bits(base + static_cast<uint32_t>(j), k1, k2) >> 8) >= thr ? scale : 0.0f;
}

void mask_row_portable(float* dst, uint32_t base, int64_t D, uint32_t k1, uint32_t k2, uint32_t thr, float scale) {
  mask_row(dst, base, D, k1, k2, thr, scale);
}
#if MTLFAST_X86
__attribute__((target("avx2"))) void mask_row_avx2(float* dst, uint32_t base, int64_t D, uint32_t k1, uint32_t k2,
                                                   uint32_t thr, float scale) {
  mask_row(dst, base, D, k1, k2, thr, scale);
}
__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq"))) void mask_row_avx512(float* dst, uint32_t base,
                                                                                  int64_t D, uint32_t k1,
                                                                                  uint32_t k2, uint32_t thr,
                                                                                  float scale) {
  mask_row(dst, base, D, k1, k2, thr, scale);
}
#endif

using MaskRowFn = void (*)(float*, uint32_t, int64_t, uint32_t, uint32_t, uint32_t, float);

MaskRowFn mask_row_for(cpu::Path path) {
  switch (path) {
#if MTLFAST_X86
    case cpu::Path::kAvx512Bf16:
    case cpu::Path::kAvx512: return mask_row_avx512;
    case cpu::Path::kAvx2: return mask_row_avx2;
#endif
    default: return mask_row_portable;
  }
}

at::Tensor dropout_masks(at::Tensor seeds, at::Tensor steps, int64_t B, int64_t T, int64_t D, int64_t max_len,
                         int64_t threshold, double scale) {
  const char* op = "dropout_masks";
  TORCH_CHECK(seeds.dim() == 1 && seeds.scalar_type() == at::kLong && seeds.device().is_cpu(), op,
              ": seeds must be a CPU int64 tensor of shape [K]; got ", seeds.scalar_type(), " ", shape_of(seeds));
  const int64_t K = seeds.size(0);
  TORCH_CHECK(steps.sizes() == seeds.sizes() && steps.scalar_type() == at::kLong && steps.device().is_cpu(), op,
              ": steps must be a CPU int64 tensor of shape [K] = [", K, "]; got ", steps.scalar_type(), " ",
              shape_of(steps));
  TORCH_CHECK(B >= 0 && D >= 0 && T >= 0 && T <= max_len, op, ": need B, D >= 0 and 0 <= T <= max_len; got B = ",
              B, ", T = ", T, ", D = ", D, ", max_len = ", max_len);
  TORCH_CHECK(static_cast<double>(B) * max_len * D < 4294967296.0, op, ": B * max_len * D = ", B * max_len * D,
              " positions do not fit the 32-bit counter");
  TORCH_CHECK(threshold >= 0 && threshold <= (1 << 24), op, ": threshold must lie in [0, 2^24]; got ", threshold);
  const at::Tensor sc = seeds.contiguous(), st = steps.contiguous();
  const int64_t* sp = sc.data_ptr<int64_t>();
  const int64_t* tp = st.data_ptr<int64_t>();
  at::Tensor out = at::empty({K, B, T, D}, at::kFloat);
  float* op_ = out.data_ptr<float>();
  const float fs = static_cast<float>(scale);
  const uint32_t thr = static_cast<uint32_t>(threshold);
  const MaskRowFn row_fn = mask_row_for(cpu::active_path());
  pybind11::gil_scoped_release nogil;
  at::parallel_for(0, K * B, std::max<int64_t>(1, 16384 / std::max<int64_t>(T * D, 1)), [&](int64_t rb, int64_t re) {
    for (int64_t row = rb; row < re; ++row) {
      const int64_t k = row / B, b = row % B;
      uint32_t k1, k2;
      dropout_key(static_cast<uint64_t>(sp[k]), static_cast<uint64_t>(tp[k]), k1, k2);
      for (int64_t t = 0; t < T; ++t)
        row_fn(op_ + (row * T + t) * D, static_cast<uint32_t>((b * max_len + t) * D), D, k1, k2, thr, fs);
    }
  });
  return out;
}

}  // namespace

void register_heads_cpu(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("heads_step_", &heads_step_, py::arg("y"), py::arg("head_w"), py::arg("head_b"), py::arg("w_sq"),
        py::arg("b_sq"), py::arg("w_acc"), py::arg("b_acc"), py::arg("slots"), py::arg("n_lab"), py::arg("tags"),
        py::arg("positions"), py::arg("ignore_tag"), py::arg("lr"), py::arg("rho"), py::arg("eps"),
        py::arg("precision") = "fp32",
        "Heads + cross-entropy + the drawn heads' Adadelta update of K runs (ragged label counts); "
        "returns (losses [K], dy).");
  m.def("gather_batches", &gather_batches, py::arg("tokens"), py::arg("tags"), py::arg("offsets"), py::arg("idx"),
        py::arg("max_len"), py::arg("pad_tag"), "Padded [K, B, T] batches of K runs' sampled sentences.");
  m.def("dropout_masks", &dropout_masks, py::arg("seeds"), py::arg("steps"), py::arg("B"), py::arg("T"),
        py::arg("D"), py::arg("max_len"), py::arg("threshold"), py::arg("scale"),
        "Counter-based dropout scale [K, B, T, D] keyed by (seed, step, position).");
}

}  // namespace mtlfast
