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
//       A run with no real token and positions = 0 has loss 0 and its head does not move. Parallel over runs
//       (costliest first); per run, no ATen op: its real rows gathered (fp32: into scratch for the BLAS, cpu/
//       blas.h; bf16: by the operand packing), the products without the bias, then bias, softmax, loss, dlogits
//       and the bias gradient in one fused pass per row (its own AVX-512 / AVX2 / portable build), dy written in
//       place (zero at padding). precision "bf16" on a CPU with
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
#include <cmath>
#include <cstring>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/adadelta_span.h"
#include "cpu/bf16_gemm.h"
#include "cpu/blas.h"
#include "cpu/isa.h"
#include "cpu/simd_math.h"
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

// Scratch of one worker, reused across its runs (grown, never shrunk, within one call).
struct RunScratch {
  std::vector<float> y, logits, gw, db, dy;
  std::vector<int64_t> tag;
#if MTLFAST_X86
  std::vector<uint32_t> a;
  cpu::PackedB16 b;
#endif
};

// C[M, N] = op(A) @ op(B) (+ C if accumulate): op(A) [M, Kd] of A (ta: A stored [Kd, M]), op(B) [Kd, N] of B
// (tb: B stored [N, Kd]); row-major, dense. bf16: operands rounded to bfloat16 (nearest even) as they are packed,
// fp32 accumulation (vdpbf16ps, bf16_gemm.h); fp32: the BLAS (cpu/blas.h). arows / brows (bf16 only; nullptr:
// dense): A's rows (ta = false) or B's rows (tb = false) gathered while packing, row i at A + arows[i] * Kd
// (B + brows[i] * N).
#if MTLFAST_X86
MTLFAST_BF16_TARGET void prod_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t Kd, const float* A,
                                   const float* B, bool accumulate, float* C, RunScratch& s, const int64_t* arows,
                                   const int64_t* brows) {
  cpu::pack_a16(ta, M, Kd, A, ta ? M : Kd, s.a, arows);
  cpu::pack_b16(tb, Kd, N, B, tb ? Kd : N, s.b, brows);
  cpu::bf16_gemm_packed(M, s.a.data(), s.b, accumulate ? 1.0f : 0.0f, C, N);
}
#endif

void prod(bool bf16, bool ta, bool tb, int64_t M, int64_t N, int64_t Kd, const float* A, const float* B,
          bool accumulate, float* C, RunScratch& s, const int64_t* arows = nullptr,
          const int64_t* brows = nullptr) {
  if (M == 0 || N == 0) return;
  if (Kd == 0) {
    if (!accumulate) std::fill(C, C + M * N, 0.0f);
    return;
  }
#if MTLFAST_X86
  if (bf16) return prod_bf16(ta, tb, M, N, Kd, A, B, accumulate, C, s, arows, brows);
#endif
  TORCH_CHECK(arows == nullptr && brows == nullptr, "heads_step_: row lists need the bf16 products");
  (void)bf16;
  cpu::gemm<float>(ta, tb, M, N, Kd, 1.0f, A, ta ? M : Kd, B, tb ? Kd : N, accumulate ? 1.0f : 0.0f, C, N);
}

// Cross-entropy of N rows of n products y W^T (in place: they become dlogits) with bias b and targets tag[i]:
//   x = row + b; p = softmax(x); loss += log-sum-exp(x) - x[tag]; d = (p - onehot(tag)) * inv_denom;
//   db += column sums of d.
// Two passes over a row (bias and max; exp, sum) and one over the stored exponentials (scale, target, bias
// gradient), the row staying in L1. Returns the summed loss (double). One build per ISA (the caller picks by
// cpu::Path).
MTLFAST_AI double softmax_xent_rows(float* __restrict L, int64_t N, int64_t n, const float* __restrict b,
                                   const int64_t* __restrict tag, float inv_denom, float* __restrict db) {
  double loss = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    float* x = L + i * n;
    for (int64_t j = 0; j < n; ++j) x[j] += b[j];
    float m = x[0];
    for (int64_t j = 1; j < n; ++j) m = x[j] > m ? x[j] : m;
    const float xt = x[tag[i]];
    float sum = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      const float e = cpu::exp_f(x[j] - m);
      x[j] = e;
      sum += e;
    }
    loss += static_cast<double>(m + std::log(sum) - xt);
    const float scale = inv_denom / sum;
    for (int64_t j = 0; j < n; ++j) x[j] *= scale;
    x[tag[i]] -= inv_denom;
    for (int64_t j = 0; j < n; ++j) db[j] += x[j];
  }
  return loss;
}

double softmax_xent_portable(float* L, int64_t N, int64_t n, const float* b, const int64_t* tag, float inv_denom,
                             float* db) {
  return softmax_xent_rows(L, N, n, b, tag, inv_denom, db);
}
#if MTLFAST_X86
__attribute__((target("avx2,fma"))) double softmax_xent_avx2(float* L, int64_t N, int64_t n, const float* b,
                                                             const int64_t* tag, float inv_denom, float* db) {
  return softmax_xent_rows(L, N, n, b, tag, inv_denom, db);
}

MTLFAST_AVX512_TARGET double softmax_xent_avx512(float* L, int64_t N, int64_t n, const float* b, const int64_t* tag,
                                                 float inv_denom, float* db) {
  double loss = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    float* x = L + i * n;
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 k = cpu::tail_mask(n - j);
      const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + j), _mm512_maskz_loadu_ps(k, b + j));
      _mm512_mask_storeu_ps(x + j, k, v);
      vm = _mm512_mask_max_ps(vm, k, vm, v);
    }
    const float m = _mm512_reduce_max_ps(vm);
    const float xt = x[tag[i]];
    const __m512 mv = _mm512_set1_ps(m);
    __m512 vs = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 k = cpu::tail_mask(n - j);
      const __m512 e = cpu::v_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mv));
      _mm512_mask_storeu_ps(x + j, k, e);
      vs = _mm512_add_ps(vs, _mm512_maskz_mov_ps(k, e));
    }
    const float sum = _mm512_reduce_add_ps(vs);
    loss += static_cast<double>(m + std::log(sum) - xt);
    const __m512 sc = _mm512_set1_ps(inv_denom / sum);
    x[tag[i]] = x[tag[i]] * (inv_denom / sum) - inv_denom;  // the target's entry, scaled here once
    const int64_t t = tag[i];
    for (int64_t j = 0; j < n; j += 16) {
      const __mmask16 k = cpu::tail_mask(n - j);
      __m512 d = _mm512_maskz_loadu_ps(k, x + j);
      // scale every entry but the target's (done above)
      const __mmask16 not_t = (t >= j && t < j + 16) ? static_cast<__mmask16>(k & ~(1u << (t - j))) : k;
      d = _mm512_mask_mul_ps(d, not_t, d, sc);
      _mm512_mask_storeu_ps(x + j, k, d);
      _mm512_mask_storeu_ps(db + j, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, db + j), d));
    }
  }
  return loss;
}
#endif

using SoftmaxFn = double (*)(float*, int64_t, int64_t, const float*, const int64_t*, float, float*);

SoftmaxFn softmax_for(cpu::Path path) {
  switch (path) {
#if MTLFAST_X86
    case cpu::Path::kAvx512Bf16:
    case cpu::Path::kAvx512: return softmax_xent_avx512;
    case cpu::Path::kAvx2: return softmax_xent_avx2;
#endif
    default: return softmax_xent_portable;
  }
}

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
  at::Tensor dy = at::empty_like(yc);
  at::Tensor losses = at::zeros({K}, yc.options());
  float* lp = losses.data_ptr<float>();
  const float* yp = yc.data_ptr<float>();
  float* dyp = dy.data_ptr<float>();
  float* hw = head_w.data_ptr<float>();
  float* hb = head_b.data_ptr<float>();
  float* wsq = w_sq.data_ptr<float>();
  float* bsq = b_sq.data_ptr<float>();
  float* wac = w_acc.data_ptr<float>();
  float* bac = b_acc.data_ptr<float>();
  const adadelta_detail::Hyper h{lr, rho, eps};
  const cpu::Path path = cpu::active_path();
  // bf16 products only where the CPU has native bf16 dot products; elsewhere the fp32 products.
  const bool bf16 = MTLFAST_X86 && precision == "bf16" && path == cpu::Path::kAvx512Bf16;
  const SoftmaxFn softmax = softmax_for(path);
  // Runs costliest first (real tokens x labels), handed out one at a time: runs with large label sets
  // (FrameNet's 716) would otherwise pile up on one thread.
  std::vector<int64_t> order(K);
  for (int64_t k = 0; k < K; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return static_cast<int64_t>(real[a].size() + 1) * np_[a] > static_cast<int64_t>(real[b].size() + 1) * np_[b];
  });
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(K, at::get_num_threads());
  const int64_t BT = B * T;
  pybind11::gil_scoped_release nogil;
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    RunScratch sc;
    for (int64_t qi = next++; qi < K; qi = next++) {
      const int64_t k = order[qi];
      const auto& r = real[k];
      const int64_t N = static_cast<int64_t>(r.size());
      float* dyk = dyp + k * BT * D;
      if (N == 0 && positions == 0) {  // no loss, no gradient, the head does not move
        std::fill(dyk, dyk + BT * D, 0.0f);
        continue;
      }
      const int64_t s = sp[k], n = np_[k];
      const int64_t wo = (k * S + s) * L * D, bo = (k * S + s) * L;
      const float* w = hw + wo;  // [n, D]
      const float* b = hb + bo;  // [n]
      const int64_t* tk = tp + k * BT;
      const float* yk = yp + k * BT * D;  // run k's y: real row i is yk + r[i] * D
      sc.logits.resize(N * n);
      sc.tag.resize(N);
      sc.gw.resize(n * D);
      sc.dy.resize(N * D);
      sc.db.assign(n, 0.0f);
      for (int64_t i = 0; i < N; ++i) sc.tag[i] = tk[r[i]];
      // y's real rows: dense for the BLAS (gathered here), through r for the bf16 packs (gathered as they convert)
      const float* ya = yk;
      const int64_t* yr = r.data();
      if (!bf16) {
        sc.y.resize(N * D);
        for (int64_t i = 0; i < N; ++i) std::memcpy(sc.y.data() + i * D, yk + r[i] * D, D * sizeof(float));
        ya = sc.y.data();
        yr = nullptr;
      }
      // y W^T; then the bias, dlogits in place, the loss and the bias gradient in one pass per row
      prod(bf16, false, true, N, n, D, ya, w, false, sc.logits.data(), sc, yr);
      const double denom = positions ? static_cast<double>(positions) : static_cast<double>(N);
      const float inv_denom = static_cast<float>(1.0 / denom);
      double loss = softmax(sc.logits.data(), N, n, b, sc.tag.data(), inv_denom, sc.db.data());
      if (positions) {  // P positions with y = 0 and target 0: logits = b
        const int64_t P = positions - N;
        float m = b[0];
        for (int64_t j = 1; j < n; ++j) m = std::max(m, b[j]);
        double z = 0.0;
        for (int64_t j = 0; j < n; ++j) z += std::exp(static_cast<double>(b[j]) - m);
        const double lse = m + std::log(z);
        loss += static_cast<double>(P) * (lse - b[0]);
        const double f = static_cast<double>(P) / denom;
        for (int64_t j = 0; j < n; ++j)
          sc.db[j] += static_cast<float>((std::exp(static_cast<double>(b[j]) - lse) - (j == 0 ? 1.0 : 0.0)) * f);
      }
      lp[k] = static_cast<float>(loss / denom);
      // dW = d^T y, dy = d W
      prod(bf16, true, false, n, D, N, sc.logits.data(), ya, false, sc.gw.data(), sc, nullptr, yr);
      prod(bf16, false, false, N, D, n, sc.logits.data(), w, false, sc.dy.data(), sc);
      int64_t pos = 0;
      for (int64_t i = 0; i < N; ++i) {  // real rows in place, zero between them
        std::fill(dyk + pos * D, dyk + r[i] * D, 0.0f);
        std::memcpy(dyk + r[i] * D, sc.dy.data() + i * D, D * sizeof(float));
        pos = r[i] + 1;
      }
      std::fill(dyk + pos * D, dyk + BT * D, 0.0f);
      adadelta_detail::adadelta_span(hw + wo, sc.gw.data(), wsq + wo, wac + wo, n * D, h, path);
      adadelta_detail::adadelta_span(hb + bo, sc.db.data(), bsq + bo, bac + bo, n, h, path);
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
