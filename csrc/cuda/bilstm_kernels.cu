// Persistent fused bi-LSTM recurrence over a model array (shapes: bilstm_cuda.h).
//
// One block per (model k, direction d, chunk of 16 or 32 batch rows). The block copies its W_hh (padded to
// [4Hp, Kp]) into shared memory once and keeps it there for every time step; per step it
//   1. computes gates = xproj[s] + h W_hh^T on tensor cores (wmma, fp32 accumulators initialised straight from
//      the precomputed input projection), one 16x16 output tile per warp at a time;
//   2. applies the gate non-linearities and the cell update, writes y and what backward needs.
// Backward runs the same way in reverse step order: the element-wise phase turns dh, dc into gate
// pre-activation gradients, the tensor-core phase computes dh_rec = dgates W_hh for the step before.
// Variable lengths are masks: step s is valid for row b iff s < len_b, and direction 1 maps s to
// t = len_b - 1 - s, so it starts at every sequence's own last token. Nothing here allocates or synchronises
// with the host: every launch can be captured in a CUDA graph.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "bilstm_cuda.h"

namespace mtlfast {
namespace cuda {
namespace {

using namespace nvcuda;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 16;
constexpr size_t kAlign = 128;

__host__ __device__ inline int round_up16(int v) { return (v + 15) / 16 * 16; }

// ---- tensor-core arithmetic policies ---------------------------------------------------------------------------

template <RecurrentMath M>
struct Mma;

template <>
struct Mma<RecurrentMath::kBF16> {
  using Elem = __nv_bfloat16;
  static constexpr int kK = 16;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  __device__ static Elem from_float(float v) { return __float2bfloat16_rn(v); }
  // Backward keeps the gate gradients (operand A of dgates W_hh) at ~16 bits as hi + lo bf16 parts, so that, as in
  // the reference's bf16 mode, only the forward operands (h, W_hh) are rounded to bf16.
  static constexpr bool kSplitGradients = true;
  __device__ static void split(float v, Elem& hi, Elem& lo) {
    hi = __float2bfloat16_rn(v);
    lo = __float2bfloat16_rn(v - __bfloat162float(hi));
  }
  // acc += (A_hi + A_lo) * B, B loaded once.
  template <typename Layout>
  __device__ static void mma_split(Acc& acc, const Elem* a_hi, const Elem* a_lo, unsigned lda, const Elem* b,
                                   unsigned ldb) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fh, fl;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, Layout> fb;
    wmma::load_matrix_sync(fb, b, ldb);
    wmma::load_matrix_sync(fl, a_lo, lda);
    wmma::load_matrix_sync(fh, a_hi, lda);
    wmma::mma_sync(acc, fl, fb, acc);
    wmma::mma_sync(acc, fh, fb, acc);
  }
  // acc += A[16 x kK] * B[kK x 16]; A row-major (lda), B in Layout (ldb).
  template <typename Layout>
  __device__ static void mma(Acc& acc, const Elem* a, unsigned lda, const Elem* b, unsigned ldb) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, Layout> fb;
    wmma::load_matrix_sync(fa, a, lda);
    wmma::load_matrix_sync(fb, b, ldb);
    wmma::mma_sync(acc, fa, fb, acc);
  }
};

template <>
struct Mma<RecurrentMath::kTF32x3> {
  using Elem = float;
  static constexpr int kK = 8;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  __device__ static Elem from_float(float v) { return v; }
  static constexpr bool kSplitGradients = false;  // fp32 operands are split inside mma()
  __device__ static void split(float v, Elem& hi, Elem& lo) {
    hi = v;
    lo = 0.0f;
  }
  template <typename Layout>
  __device__ static void mma_split(Acc& acc, const Elem* a_hi, const Elem*, unsigned lda, const Elem* b, unsigned ldb) {
    mma<Layout>(acc, a_hi, lda, b, ldb);
  }
  // 3xTF32: x = hi + lo with hi, lo tf32; a*b ~= hi_a*hi_b + hi_a*lo_b + lo_a*hi_b (small terms first).
  template <typename Layout>
  __device__ static void mma(Acc& acc, const Elem* a, unsigned lda, const Elem* b, unsigned ldb) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a_hi, a_lo;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, Layout> b_hi, b_lo;
    wmma::load_matrix_sync(a_hi, a, lda);
    wmma::load_matrix_sync(b_hi, b, ldb);
#pragma unroll
    for (int i = 0; i < a_hi.num_elements; ++i) {
      const float v = a_hi.x[i];
      const float hi = wmma::__float_to_tf32(v);
      a_lo.x[i] = wmma::__float_to_tf32(v - hi);
      a_hi.x[i] = hi;
    }
#pragma unroll
    for (int i = 0; i < b_hi.num_elements; ++i) {
      const float v = b_hi.x[i];
      const float hi = wmma::__float_to_tf32(v);
      b_lo.x[i] = wmma::__float_to_tf32(v - hi);
      b_hi.x[i] = hi;
    }
    wmma::mma_sync(acc, a_lo, b_hi, acc);
    wmma::mma_sync(acc, a_hi, b_lo, acc);
    wmma::mma_sync(acc, a_hi, b_hi, acc);
  }
};

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }

// tanhf would become tanh.approx.f32 under --use_fast_math (setup.py's nvcc flag), whose ~2^-11 relative error
// is too coarse for the fp32 path; ex2.approx (behind __expf) is accurate to ~2^-22. Odd series near 0, where
// 1 - 2 / (e^2x + 1) cancels (truncation error < 1e-8 for |x| < 0.1).
__device__ __forceinline__ float tanh_acc(float x) {
  if (fabsf(x) < 0.1f) {
    const float x2 = x * x;
    return x * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
  }
  return 1.0f - 2.0f / (__expf(2.0f * x) + 1.0f);
}

// Shared-memory layout, identical on host (planning) and device (carving).
struct SmemLayout {
  size_t w, a, acc, state, lens, total;
};

// forward: a = h [R, Kp] (Elem), acc = gates [R, G4] fp32, state = c [R, Hp] fp32
// backward: a = dgates [R, G4] (Elem; [2, R, G4] hi/lo planes for bf16), acc = dh_rec [R, Hp] fp32, state = dc [R, Hp] fp32
__host__ __device__ inline size_t region(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// split_gradients: backward holds dgates as two Elem planes (hi, lo).
__host__ __device__ inline SmemLayout smem_layout(bool forward, int rows, int Hp, int Kp, size_t elem_bytes,
                                                  bool w_on_chip, bool split_gradients) {
  const size_t G4 = 4 * static_cast<size_t>(Hp), R = static_cast<size_t>(rows);
  SmemLayout L{};
  size_t off = 0;
  L.w = off;
  if (w_on_chip) off += region((G4 * Kp + kWeightSlack) * elem_bytes);
  L.a = off;
  off += region((forward ? R * Kp : R * G4 * (split_gradients ? 2 : 1)) * elem_bytes);
  L.acc = off;
  off += region((forward ? R * G4 : R * Hp) * sizeof(float));
  L.state = off;
  off += region(R * Hp * sizeof(float));
  L.lens = off;
  off += region(R * sizeof(int));
  L.total = off;
  return L;
}

// Copies n bytes (a multiple of 16, 16-byte aligned at both ends) with 128-bit accesses.
__device__ inline void copy16(void* dst, const void* src, size_t n) {
  int4* d = static_cast<int4*>(dst);
  const int4* s = static_cast<const int4*>(src);
  for (size_t i = threadIdx.x; i < n / 16; i += blockDim.x) d[i] = s[i];
}

__device__ inline void zero16(void* dst, size_t n) {
  int4* d = static_cast<int4*>(dst);
  const int4 z = make_int4(0, 0, 0, 0);
  for (size_t i = threadIdx.x; i < n / 16; i += blockDim.x) d[i] = z;
}

// Sets up the block's rows: lengths into shared memory; returns the longest length of the chunk.
__device__ inline int load_lengths(const int64_t* lengths, int k, int B, int T, int b0, int rows, int* lens) {
  __shared__ int max_len;
  if (threadIdx.x == 0) max_len = 0;
  __syncthreads();
  for (int r = threadIdx.x; r < rows; r += blockDim.x) {
    const int b = b0 + r;
    int len = 0;
    if (b < B) {
      const int64_t l = lengths[static_cast<size_t>(k) * B + b];
      len = l < 0 ? 0 : (l > T ? T : static_cast<int>(l));
    }
    lens[r] = len;
    atomicMax(&max_len, len);
  }
  __syncthreads();
  return max_len;
}

// ---- forward ---------------------------------------------------------------------------------------------------

template <RecurrentMath M, bool kWeightsOnChip>
__global__ void __launch_bounds__(kThreads, 1)
    bilstm_forward_kernel(RecurrentForwardArgs args, int rows) {
  using P = Mma<M>;
  using Elem = typename P::Elem;
  extern __shared__ __align__(128) unsigned char smem[];

  const int B = args.B, T = args.T, H = args.H;
  const int Hp = round_up16(H), G4 = 4 * Hp, Bp = round_up16(B);
  const int Kp = (H + P::kK - 1) / P::kK * P::kK;
  const int chunks = Bp / rows;
  const int chunk = blockIdx.x % chunks;
  const int kd = blockIdx.x / chunks;  // k * 2 + d
  const int k = kd >> 1, d = kd & 1;
  const int b0 = chunk * rows;
  const SmemLayout L = smem_layout(true, rows, Hp, Kp, sizeof(Elem), kWeightsOnChip, false);
  const size_t w_elems = static_cast<size_t>(G4) * Kp;

  const Elem* w_global = static_cast<const Elem*>(args.w) + kd * w_elems;
  Elem* w_smem = reinterpret_cast<Elem*>(smem + L.w);
  Elem* h = reinterpret_cast<Elem*>(smem + L.a);
  float* gates_s = reinterpret_cast<float*>(smem + L.acc);
  float* c = reinterpret_cast<float*>(smem + L.state);
  int* lens = reinterpret_cast<int*>(smem + L.lens);

  if (kWeightsOnChip) {
    copy16(w_smem, w_global, w_elems * sizeof(Elem));
    zero16(w_smem + w_elems, kWeightSlack * sizeof(Elem));
  }
  zero16(h, static_cast<size_t>(rows) * Kp * sizeof(Elem));
  zero16(c, static_cast<size_t>(rows) * Hp * sizeof(float));
  const Elem* w = kWeightsOnChip ? w_smem : w_global;
  const int steps = load_lengths(args.lengths, k, B, T, b0, rows, lens);  // ends with __syncthreads

  const int warp = threadIdx.x / 32;
  const int m_tiles = rows / kTile, n_tiles = G4 / kTile;
  const size_t slab = static_cast<size_t>(Bp) * G4;  // one step of xproj / gates
  const bool save = args.gates != nullptr;

  for (int s = 0; s < steps; ++s) {
    // gates[r, :] = xproj[k, d, s, b0 + r, :] + h[r, :] W^T
    const float* xp = args.xproj + (static_cast<size_t>(kd) * T + s) * slab + static_cast<size_t>(b0) * G4;
    for (int tile = warp; tile < m_tiles * n_tiles; tile += kWarps) {
      const int mt = tile % m_tiles, nt = tile / m_tiles;
      typename P::Acc acc;
      wmma::load_matrix_sync(acc, xp + static_cast<size_t>(mt) * kTile * G4 + nt * kTile, G4, wmma::mem_row_major);
      const Elem* a = h + mt * kTile * Kp;
      const Elem* bw = w + static_cast<size_t>(nt) * kTile * Kp;  // W rows = output columns: col-major B
      for (int kk = 0; kk < Kp; kk += P::kK) P::template mma<wmma::col_major>(acc, a + kk, Kp, bw + kk, Kp);
      wmma::store_matrix_sync(gates_s + mt * kTile * G4 + nt * kTile, acc, G4, wmma::mem_row_major);
    }
    __syncthreads();

    for (int e = threadIdx.x; e < rows * H; e += blockDim.x) {
      const int r = e / H, u = e - r * H;
      const int len = lens[r];
      if (s >= len) continue;  // padded row or finished sequence (also rows b >= B: len 0)
      const float* g = gates_s + r * G4;
      const float ig = sigmoidf(g[u]);
      const float fg = sigmoidf(g[Hp + u]);
      const float gg = tanh_acc(g[2 * Hp + u]);
      const float og = sigmoidf(g[3 * Hp + u]);
      const float cn = fg * c[r * Hp + u] + ig * gg;
      const float hn = og * tanh_acc(cn);
      c[r * Hp + u] = cn;
      h[r * Kp + u] = P::from_float(hn);
      const int b = b0 + r;
      const int t = d == 0 ? s : len - 1 - s;
      args.y[((static_cast<size_t>(k) * B + b) * T + t) * (2 * H) + d * H + u] = hn;
      if (save) {
        const size_t row = (static_cast<size_t>(kd) * T + s) * Bp + b;
        float* go = args.gates + row * G4;
        go[u] = ig;
        go[Hp + u] = fg;
        go[2 * Hp + u] = gg;
        go[3 * Hp + u] = og;
        args.cells[row * Hp + u] = cn;
        args.hproc[((static_cast<size_t>(kd) * (T + 1) + s + 1) * Bp + b) * Hp + u] = hn;
      }
    }
    __syncthreads();
  }
}

// ---- backward --------------------------------------------------------------------------------------------------

template <RecurrentMath M, bool kWeightsOnChip>
__global__ void __launch_bounds__(kThreads, 1)
    bilstm_backward_kernel(RecurrentBackwardArgs args, int rows) {
  using P = Mma<M>;
  using Elem = typename P::Elem;
  extern __shared__ __align__(128) unsigned char smem[];

  const int B = args.B, T = args.T, H = args.H;
  const int Hp = round_up16(H), G4 = 4 * Hp, Bp = round_up16(B);
  const int Kp = (H + P::kK - 1) / P::kK * P::kK;
  const int chunks = Bp / rows;
  const int chunk = blockIdx.x % chunks;
  const int kd = blockIdx.x / chunks;
  const int k = kd >> 1, d = kd & 1;
  const int b0 = chunk * rows;
  const SmemLayout L = smem_layout(false, rows, Hp, Kp, sizeof(Elem), kWeightsOnChip, P::kSplitGradients);
  const size_t w_elems = static_cast<size_t>(G4) * Kp;

  const Elem* w_global = static_cast<const Elem*>(args.w) + kd * w_elems;
  Elem* w_smem = reinterpret_cast<Elem*>(smem + L.w);
  Elem* dg = reinterpret_cast<Elem*>(smem + L.a);             // [rows, G4] gate pre-activation grads
  Elem* dg_lo = dg + static_cast<size_t>(rows) * G4;            // their low parts (bf16 only)
  float* dh_rec = reinterpret_cast<float*>(smem + L.acc);      // [rows, Hp] dgates(s + 1) W
  float* dc = reinterpret_cast<float*>(smem + L.state);        // [rows, Hp] dc flowing to step s - 1
  int* lens = reinterpret_cast<int*>(smem + L.lens);

  if (kWeightsOnChip) {
    copy16(w_smem, w_global, w_elems * sizeof(Elem));
    zero16(w_smem + w_elems, kWeightSlack * sizeof(Elem));
  }
  // Rows never valid keep zero gradients, so they contribute nothing to dh_rec.
  zero16(dg, static_cast<size_t>(rows) * G4 * sizeof(Elem) * (P::kSplitGradients ? 2 : 1));
  zero16(dh_rec, static_cast<size_t>(rows) * Hp * sizeof(float));
  zero16(dc, static_cast<size_t>(rows) * Hp * sizeof(float));
  const Elem* w = kWeightsOnChip ? w_smem : w_global;
  const int steps = load_lengths(args.lengths, k, B, T, b0, rows, lens);

  const int warp = threadIdx.x / 32;
  const int m_tiles = rows / kTile, n_tiles = Hp / kTile;

  for (int s = steps - 1; s >= 0; --s) {
    for (int e = threadIdx.x; e < rows * H; e += blockDim.x) {
      const int r = e / H, u = e - r * H;
      const int len = lens[r];
      if (s >= len) continue;  // once valid, a row stays valid down to s = 0
      const int b = b0 + r;
      const int t = d == 0 ? s : len - 1 - s;
      const size_t row = (static_cast<size_t>(kd) * T + s) * Bp + b;
      const float dh = args.dy[((static_cast<size_t>(k) * B + b) * T + t) * (2 * H) + d * H + u] + dh_rec[r * Hp + u];
      const float* ga = args.gates + row * G4;
      const float ig = ga[u], fg = ga[Hp + u], gg = ga[2 * Hp + u], og = ga[3 * Hp + u];
      const float cs = args.cells[row * Hp + u];
      const float cp = s > 0 ? args.cells[(row - Bp) * Hp + u] : 0.0f;
      const float tc = tanh_acc(cs);
      const float dcs = dc[r * Hp + u] + dh * og * (1.0f - tc * tc);
      const float d_i = dcs * gg * ig * (1.0f - ig);
      const float d_f = dcs * cp * fg * (1.0f - fg);
      const float d_g = dcs * ig * (1.0f - gg * gg);
      const float d_o = dh * tc * og * (1.0f - og);
      dc[r * Hp + u] = dcs * fg;
      float* out = args.dgates + row * G4;
      out[u] = d_i;
      out[Hp + u] = d_f;
      out[2 * Hp + u] = d_g;
      out[3 * Hp + u] = d_o;
      Elem* dgr = dg + r * G4;
      if (P::kSplitGradients) {
        Elem* dgl = dg_lo + r * G4;
        P::split(d_i, dgr[u], dgl[u]);
        P::split(d_f, dgr[Hp + u], dgl[Hp + u]);
        P::split(d_g, dgr[2 * Hp + u], dgl[2 * Hp + u]);
        P::split(d_o, dgr[3 * Hp + u], dgl[3 * Hp + u]);
      } else {
        dgr[u] = P::from_float(d_i);
        dgr[Hp + u] = P::from_float(d_f);
        dgr[2 * Hp + u] = P::from_float(d_g);
        dgr[3 * Hp + u] = P::from_float(d_o);
      }
    }
    __syncthreads();
    if (s == 0) break;

    // dh_rec[r, :] = dg[r, :] W  ([rows, G4] x [G4, Kp]; W row-major is a row-major B operand). With Kp < Hp
    // the last 16-column tile reads past the end of each W row (into the next row, and for the last row into
    // the zeroed slack): that only feeds output columns >= Kp >= H, which are never read.
    for (int tile = warp; tile < m_tiles * n_tiles; tile += kWarps) {
      const int mt = tile % m_tiles, nt = tile / m_tiles;
      typename P::Acc acc;
      wmma::fill_fragment(acc, 0.0f);
      const Elem* a = dg + mt * kTile * G4;
      const Elem* a_lo = dg_lo + mt * kTile * G4;
      for (int kk = 0; kk < G4; kk += P::kK) {
        const Elem* bw = w + static_cast<size_t>(kk) * Kp + nt * kTile;
        if (P::kSplitGradients)
          P::template mma_split<wmma::row_major>(acc, a + kk, a_lo + kk, G4, bw, Kp);
        else
          P::template mma<wmma::row_major>(acc, a + kk, G4, bw, Kp);
      }
      wmma::store_matrix_sync(dh_rec + mt * kTile * Hp + nt * kTile, acc, Hp, wmma::mem_row_major);
    }
    __syncthreads();
  }
}

// ---- host side -------------------------------------------------------------------------------------------------

size_t elem_bytes(RecurrentMath math) { return math == RecurrentMath::kBF16 ? 2 : 4; }

struct DeviceLimits {
  size_t max_smem = 0;
  int num_sms = 0;
};

// Queried on every launch (cheap, and not a stream operation, so legal during CUDA-graph capture).
cudaError_t device_limits(DeviceLimits* out) {
  int dev = 0, smem = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (err != cudaSuccess) return err;
  // Leave room for the kernels' few bytes of static shared memory.
  out->max_smem = static_cast<size_t>(smem) > 1024 ? static_cast<size_t>(smem) - 1024 : 0;
  out->num_sms = sms;
  return cudaSuccess;
}

template <typename Kernel>
cudaError_t allow_smem(Kernel kernel, size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <RecurrentMath M>
cudaError_t launch_forward(const RecurrentForwardArgs& a, const RecurrentPlan& p, cudaStream_t stream) {
  auto kernel = p.weights_on_chip ? bilstm_forward_kernel<M, true> : bilstm_forward_kernel<M, false>;
  cudaError_t err = allow_smem(kernel, p.smem_bytes);
  if (err != cudaSuccess) return err;
  kernel<<<p.blocks, p.threads, p.smem_bytes, stream>>>(a, p.rows_per_block);
  return cudaGetLastError();
}

template <RecurrentMath M>
cudaError_t launch_backward(const RecurrentBackwardArgs& a, const RecurrentPlan& p, cudaStream_t stream) {
  auto kernel = p.weights_on_chip ? bilstm_backward_kernel<M, true> : bilstm_backward_kernel<M, false>;
  cudaError_t err = allow_smem(kernel, p.smem_bytes);
  if (err != cudaSuccess) return err;
  kernel<<<p.blocks, p.threads, p.smem_bytes, stream>>>(a, p.rows_per_block);
  return cudaGetLastError();
}

}  // namespace

bool plan_recurrent(bool forward, int K, int B, int H, RecurrentMath math, size_t max_smem_bytes, int num_sms,
                    RecurrentPlan* plan, WeightsPlacement placement) {
  if (K <= 0 || B <= 0 || H <= 0 || plan == nullptr) return false;
  const int Bp = round_up16(B), Hp = round_up16(H), Kp = recurrent_kp(H, math);
  // 32-row chunks halve the number of copies of W_hh; 16-row chunks give small arrays (K = 1) more blocks.
  int order[2] = {32, 16};
  const bool can32 = Bp % 32 == 0;
  if (!can32 || 2 * K * (Bp / 32) < num_sms / 2) {
    order[0] = 16;
    order[1] = 32;
  }
  for (int on_chip = 1; on_chip >= 0; --on_chip) {
    if (on_chip == 1 && placement == WeightsPlacement::kL2Only) continue;
    if (on_chip == 0 && placement == WeightsPlacement::kSharedOnly) continue;
    for (int rows : order) {
      if (rows == 32 && !can32) continue;
      const SmemLayout L = smem_layout(forward, rows, Hp, Kp, elem_bytes(math), on_chip != 0,
                                       !forward && math == RecurrentMath::kBF16);
      if (L.total <= max_smem_bytes) {
        plan->rows_per_block = rows;
        plan->blocks = K * 2 * (Bp / rows);
        plan->threads = kThreads;
        plan->weights_on_chip = on_chip != 0;
        plan->smem_bytes = L.total;
        return true;
      }
    }
  }
  return false;
}

cudaError_t bilstm_recurrent_forward(const RecurrentForwardArgs& args, RecurrentMath math, cudaStream_t stream,
                                     RecurrentPlan* plan_out, WeightsPlacement placement) {
  if (args.K == 0 || args.B == 0 || args.T == 0) return cudaSuccess;
  const bool save = args.gates != nullptr;
  if (save != (args.cells != nullptr) || save != (args.hproc != nullptr)) return cudaErrorInvalidValue;
  DeviceLimits lim;
  cudaError_t err = device_limits(&lim);
  if (err != cudaSuccess) return err;
  RecurrentPlan plan;
  if (!plan_recurrent(true, args.K, args.B, args.H, math, lim.max_smem, lim.num_sms, &plan, placement))
    return cudaErrorInvalidValue;
  if (plan_out) *plan_out = plan;
  return math == RecurrentMath::kBF16 ? launch_forward<RecurrentMath::kBF16>(args, plan, stream)
                                      : launch_forward<RecurrentMath::kTF32x3>(args, plan, stream);
}

cudaError_t bilstm_recurrent_backward(const RecurrentBackwardArgs& args, RecurrentMath math, cudaStream_t stream,
                                      RecurrentPlan* plan_out, WeightsPlacement placement) {
  if (args.K == 0 || args.B == 0 || args.T == 0) return cudaSuccess;
  DeviceLimits lim;
  cudaError_t err = device_limits(&lim);
  if (err != cudaSuccess) return err;
  RecurrentPlan plan;
  if (!plan_recurrent(false, args.K, args.B, args.H, math, lim.max_smem, lim.num_sms, &plan, placement))
    return cudaErrorInvalidValue;
  if (plan_out) *plan_out = plan;
  return math == RecurrentMath::kBF16 ? launch_backward<RecurrentMath::kBF16>(args, plan, stream)
                                      : launch_backward<RecurrentMath::kTF32x3>(args, plan, stream);
}

}  // namespace cuda
}  // namespace mtlfast
