// Layout helpers of the lanes path, AVX-512: lane masks, 16 x 16 register-block transposes, row sums, the
// ragged-run helpers (steps per run, the tiles of a lane block, the task order, the live columns of the weight
// gradients), and the y / dy / dx layout passes both lanes drivers share. Private to bilstm_lanes.cpp and
// bilstm_lanes_bf16.cpp (the only files that include it): internal linkage on purpose, so that the compiler sees
// every caller, exactly as when this code and its callers shared one file.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <cstring>
#include <vector>

#include "cpu/isa.h"
#include "cpu/lane_vectors.h"
#include "cpu/simd_math.h"

#if MTLFAST_X86
#include <ATen/Parallel.h>

namespace mtlfast {
namespace cpu {
namespace {

// Lanes l0 .. l0+15 that are still running when `active` rows (a prefix) are.
inline __mmask16 lane_mask(int64_t active, int64_t l0) {
  const int64_t r = active - l0;
  return r <= 0 ? static_cast<__mmask16>(0) : r >= 16 ? static_cast<__mmask16>(0xffff)
                                                      : static_cast<__mmask16>((1u << r) - 1u);
}

// dst[c][r] = src[r][c] for r < R, c < C, in 16 x 16 register blocks (edges masked). Row maps (nullptr: the
// identity): source row r at src + srow[r] * lds, destination row c at dst + drow[c] * ldd; they let the layout
// passes read and write the caller's batch rows in place while the kernels run on rows sorted by length.
MTLFAST_AVX512_TARGET void transpose(const float* src, int64_t lds, int64_t R, int64_t C, float* dst, int64_t ldd,
                                     const int64_t* srow = nullptr, const int64_t* drow = nullptr) {
  for (int64_t r0 = 0; r0 < R; r0 += 16) {
    const int64_t nr = std::min<int64_t>(16, R - r0);
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t nc = std::min<int64_t>(16, C - c0);
      const __mmask16 mc = tail_mask(nc);
      __m512 r[16], t[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < nr ? _mm512_maskz_loadu_ps(mc, src + (srow != nullptr ? srow[r0 + i] : r0 + i) * lds + c0)
                      : _mm512_setzero_ps();
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
      }
      // r[4 i + c], 128-bit lane L: column 4 L + c of rows 4 i .. 4 i + 3.
      const __mmask16 mr = tail_mask(nr);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        const __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
        const __m512 col[4] = {_mm512_shuffle_f32x4(u0, u2, 0x88), _mm512_shuffle_f32x4(u1, u3, 0x88),
                               _mm512_shuffle_f32x4(u0, u2, 0xdd), _mm512_shuffle_f32x4(u1, u3, 0xdd)};
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          const int64_t j = 4 * q + c;
          if (j < nc) _mm512_mask_storeu_ps(dst + (drow != nullptr ? drow[c0 + j] : c0 + j) * ldd + r0, mr, col[q]);
        }
      }
    }
  }
}

// out[r] = sum of row r of M [R][n] (row stride ld).
MTLFAST_AVX512_TARGET void row_sums(const float* M, int64_t R, int64_t n, int64_t ld, float* out) {
  for (int64_t r = 0; r < R; ++r) {
    const float* row = M + r * ld;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(row + i));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(row + i + 16));
    }
    for (; i < n; i += 16) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(tail_mask(n - i), row + i));
    out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
  }
}

// a[i] += b[i].
MTLFAST_AVX512_TARGET void add_inplace(float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(a + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

// Ragged runs (rows sorted longest first within each run): how many steps and which lanes hold live rows.
// Number of rows (sorted longest first) still running at each t < L: active[t] = #{b : len[b] > t}.
inline void active_counts(const int64_t* lk, int64_t B, int64_t L, int64_t* active) {
  for (int64_t t = 0; t < L; ++t) {
    int64_t n = 0;
    while (n < B && lk[n] > t) ++n;
    active[t] = n;
  }
}

// Steps a run needs: its longest row (rows come sorted longest first).
inline int64_t run_steps(const int64_t* lk) { return lk[0]; }

// How the 32-lane block at l0 runs when `active` rows (a prefix) do: `full` 16-lane vectors, then, when the
// last live rows fit in 8 lanes, one 8-lane vector (`half`, lane_vectors.h); the block's other vectors hold no
// live row (zero states and gradients, no arithmetic). 1-8 live rows: one 8-lane tile; 9-16: one 16-lane tile;
// 17-24: a 16-lane and an 8-lane tile; 25-32: two 16-lane vectors.
struct LanePlan {
  int64_t full;
  bool half;
  int64_t vectors() const { return full + (half ? 1 : 0); }
};
inline LanePlan lane_plan(int64_t active, int64_t l0, int64_t Bp) {
  const int64_t live = std::min<int64_t>(std::max<int64_t>(0, active - l0), std::min<int64_t>(32, Bp - l0));
  const int64_t full = live / 16, rest = live - 16 * full;
  if (rest > 8) return {full + 1, false};
  return {full, rest > 0};
}

// Runs the tiles of lane_plan for the 32-lane block at l0: tile(V, lanes, o) with V (std::integral_constant) 16-lane
// vectors or one 8-lane one (lanes: Lanes16 or Lanes8, lane_vectors.h) starting o lanes into the block, then
// zero(v) for each 16-lane vector v of the block that holds no live row. The one place where the plan becomes tile
// shapes, for the four drivers of both precisions.
template <typename Tile, typename Zero>
inline void for_lane_tiles(int64_t active, int64_t l0, int64_t Bp, Tile&& tile, Zero&& zero) {
  const LanePlan lp = lane_plan(active, l0, Bp);
  if (lp.full == 2) {
    tile(std::integral_constant<int, 2>{}, Lanes16{}, int64_t{0});
  } else if (lp.full == 1) {
    tile(std::integral_constant<int, 1>{}, Lanes16{}, int64_t{0});
  }
  if (lp.half) tile(std::integral_constant<int, 1>{}, Lanes8{}, 16 * lp.full);
  for (int64_t v = lp.vectors(); v < std::min<int64_t>(2, (Bp - l0) / 16); ++v) zero(v);
}

// One 32-lane block of one step of a direction's time loop, as the four drivers' tiles take it.
struct LaneStep {
  int64_t active;     // live rows (a prefix) at this step
  int64_t l0, col;    // the block's first lane, and its column t Bp + l0
  int64_t prev, next; // the block's column at the previous / next step in the direction's order; -1: none
  __mmask16 act[2];   // live lanes of its two 16-lane vectors
  int64_t ahead;      // column of the step the walk visits next minus this one's (for prefetching); 0: last
  bool ahead2;        // the walk visits a step after that one too
};

// Visits every 32-lane block of every step of direction dir over a run's L steps (dir 0: t = 0 .. L-1, dir 1:
// t = L-1 .. 0): in the direction's order for the forward pass (reverse = false), against it for the backward
// pass (reverse = true). fn(const LaneStep&).
template <typename F>
inline void for_lane_steps(int64_t L, int64_t dir, int64_t Bp, const int64_t* active, bool reverse, F&& fn) {
  for (int64_t i = 0; i < L; ++i) {
    const int64_t s = reverse ? L - 1 - i : i;  // position in the direction's order
    const int64_t t = dir == 0 ? s : L - 1 - s;
    const int64_t tp = dir == 0 ? t - 1 : t + 1, tn = dir == 0 ? t + 1 : t - 1;
    const int64_t ahead = i + 1 < L ? ((dir == 0) != reverse ? Bp : -Bp) : 0;
    for (int64_t l0 = 0; l0 < Bp; l0 += 32) {
      const LaneStep st{active[t], l0, t * Bp + l0, s > 0 ? tp * Bp + l0 : -1, s < L - 1 ? tn * Bp + l0 : -1,
                        {lane_mask(active[t], l0), lane_mask(active[t], l0 + 16)}, ahead, i + 2 < L};
      fn(st);
    }
  }
}

// base + column, or nullptr for a missing step (column -1).
template <typename T>
inline T* at_column(T* base, int64_t column) {
  return column >= 0 ? base + column : nullptr;
}

// p + o, or nullptr for a missing operand (no previous state / step).
template <typename T>
inline T* offset_or_null(T* p, int64_t o) {
  return p != nullptr ? p + o : nullptr;
}

// Tasks 0 .. n-1 on the ATen threads, costliest first, each handed to the next free thread (fn(i)). The drivers'
// tasks are ragged (a run of 6-token rows costs a fifth of one of 30-token rows), and at::parallel_for's static
// split of the range gave each thread a fixed contiguous half of the array, whatever its cost.
template <typename F>
void costliest_first(const std::vector<int64_t>& cost, F&& fn) {
  const int64_t n = static_cast<int64_t>(cost.size());
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cost[a] > cost[b]; });
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n, at::get_num_threads()));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t q = next++; q < n; q = next++) fn(order[q]);
  });
}

// Cost of each (model, direction) task kd = 2 k + dir of a lanes call: the lanes it computes (lane_plan, in units of
// 8), summed over its steps (both directions of a run cost the same).
inline std::vector<int64_t> run_direction_costs(const int64_t* len, int64_t K, int64_t B, int64_t T_) {
  const int64_t Bp = (B + 15) / 16 * 16;
  std::vector<int64_t> cost(2 * K), active(T_);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t L = run_steps(len + k * B);
    active_counts(len + k * B, B, L, active.data());
    int64_t c = 1;
    for (int64_t t = 0; t < L; ++t)
      for (int64_t l0 = 0; l0 < Bp; l0 += 32) {
        const LanePlan lp = lane_plan(active[t], l0, Bp);
        c += 2 * lp.full + (lp.half ? 1 : 0);
      }
    cost[2 * k] = cost[2 * k + 1] = c;
  }
  return cost;
}

// Live columns for the weight-gradient products. At step t < L only the first w[t] = 8 ceil(active[t] / 8)
// columns of the step's block (t Bp ..) can hold a non-zero gate gradient (lane_plan's vectors; an 8-lane tile
// writes zero gradients to the upper 8 lanes of its vector); the rest are padding lanes whose zero gradients the
// products would multiply for nothing (a third of all columns on the shared tasks). off[t] (t <= L)
// is where step t's live columns start once packed: off[0] = 0, off[t + 1] = off[t] + w[t].
inline void live_columns(const int64_t* active, int64_t L, int64_t Bp, int64_t* w, int64_t* off) {
  off[0] = 0;
  for (int64_t t = 0; t < L; ++t) {
    w[t] = std::min<int64_t>(Bp, (active[t] + 7) / 8 * 8);
    off[t + 1] = off[t] + w[t];
  }
}

// Packs the live columns of each of the R rows of M [R][ld] in place: step t's first w[t] columns move from t Bp to
// off[t] (never to the right, so one pass from t = 1 up is safe).
inline void pack_live_columns(float* M, int64_t R, int64_t ld, int64_t Bp, int64_t L, const int64_t* w,
                              const int64_t* off) {
  if (off[L] == L * Bp) return;  // every column live
  for (int64_t r = 0; r < R; ++r) {
    float* row = M + r * ld;
    for (int64_t t = 1; t < L; ++t)
      if (off[t] != t * Bp) std::memmove(row + off[t], row + t * Bp, w[t] * sizeof(float));
  }
}

// The previous states h_prev of the recurrent-weight gradient in the packed layout of the gate gradients: for each
// step t with a previous step tp in direction dir (dir 0: t = 1 .. L-1, tp = t - 1; dir 1: t = 0 .. L-2, tp = t + 1),
// the first w[t] columns of h's block at tp, at column off[t] - off[first] of out [H][ld]. Returns the number of
// columns and sets *first (dir 0: 1, dir 1: 0), so that dw_hh = D[:, off[first] ..] out^T over those columns.
inline int64_t gather_prev_states(const float* Hs, int64_t H, int64_t ld, int64_t Bp, int64_t L, int64_t dir,
                                  const int64_t* w, const int64_t* off, float* out, int64_t* first) {
  const int64_t t0 = dir == 0 ? 1 : 0, t1 = dir == 0 ? L : L - 1;
  *first = t0;
  for (int64_t r = 0; r < H; ++r)
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t tp = dir == 0 ? t - 1 : t + 1;
      std::memcpy(out + r * ld + off[t] - off[t0], Hs + r * ld + tp * Bp, w[t] * sizeof(float));
    }
  return off[t1] - off[t0];
}

// Batch rows: the kernels run on each run's rows sorted by length (longest first); rows[b] (b < B, the run's
// slice of the driver's map) is the flat row (k B + original row) of x, y, dy and dx that sorted row b reads or
// writes, so that no sorted copy of those tensors is ever made.

// x [K B][T][E] (rows of this run through `rows`) -> x^T [E][T Bp] for t < L, padding lanes b >= B zero.
inline void transpose_x(const float* x, const int64_t* rows, int64_t B, int64_t T_, int64_t E, int64_t L, int64_t Bp,
                        float* xT) {
  const int64_t ld = T_ * Bp;
  for (int64_t t = 0; t < L; ++t) {
    transpose(x + t * E, T_ * E, B, E, xT + t * Bp, ld, rows);
    for (int64_t e = 0; e < E && Bp > B; ++e) std::memset(xT + e * ld + t * Bp + B, 0, (Bp - B) * sizeof(float));
  }
}

// rows x 16 lanes (row stride ld) set to zero.
MTLFAST_AVX512_TARGET inline void zero_lanes(float* p, int64_t rows, int64_t ld) {
  const __m512 z = _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) _mm512_store_ps(p + r * ld, z);
}

// y of one direction of one run: y[rows[b], t, dir H + j] (base yd = y + dir H, row stride T 2H) = h[j][t Bp + b]
// for t < L, zero for t >= L (the run's padding steps).
inline void write_y(const float* Hs, int64_t ld, const int64_t* rows, int64_t B, int64_t T_, int64_t H, int64_t L,
                    int64_t Bp, float* yd) {
  for (int64_t t = 0; t < L; ++t) transpose(Hs + t * Bp, ld, H, B, yd + t * 2 * H, T_ * 2 * H, nullptr, rows);
  for (int64_t b = 0; b < B && L < T_; ++b)
    for (int64_t t = L; t < T_; ++t) std::memset(yd + (rows[b] * T_ + t) * 2 * H, 0, H * sizeof(float));
}

// dy of one direction of one run (base dyd = dy + dir H; rows through `rows`) transposed to dyT [H][T Bp] for
// t < L (padding lanes b >= B stay unset: the step epilogues mask them out).
inline void transpose_dy(const float* dyd, const int64_t* rows, int64_t B, int64_t T_, int64_t H, int64_t L,
                         int64_t Bp, int64_t ld, float* dyT) {
  for (int64_t t = 0; t < L; ++t) transpose(dyd + t * 2 * H, T_ * 2 * H, B, H, dyT + t * Bp, ld, rows);
}

// dx[rows[k B + b], t] = sum over both directions of dxd (per (model, direction) dx^T [E][T Bp]), back to
// batch-major rows (zero for t >= the run's longest row).
inline void gather_dx(float* dxd, const int64_t* len, const int64_t* rows, int64_t K, int64_t B, int64_t T_,
                      int64_t E, int64_t Bp, float* dx) {
  const int64_t ld = T_ * Bp;
  std::vector<int64_t> steps(K);
  for (int64_t k = 0; k < K; ++k) steps[k] = run_steps(len + k * B);
  costliest_first(steps, [&](int64_t k) {
    const int64_t L = steps[k];
    const int64_t* rk = rows + k * B;
    float* d0 = dxd + 2 * k * E * ld;
    for (int64_t e = 0; e < E; ++e) add_inplace(d0 + e * ld, d0 + (E + e) * ld, L * Bp);
    for (int64_t t = 0; t < L; ++t) transpose(d0 + t * Bp, ld, E, B, dx + t * E, T_ * E, nullptr, rk);
    for (int64_t b = 0; b < B && L < T_; ++b) std::memset(dx + (rk[b] * T_ + L) * E, 0, (T_ - L) * E * sizeof(float));
  });
}

// The driver's row map: order (flat rows sorted per run, from sorted_rows) or, when nullptr (rows already
// sorted), the identity.
inline std::vector<int64_t> row_map(const int64_t* order, int64_t n) {
  std::vector<int64_t> rows(n);
  for (int64_t i = 0; i < n; ++i) rows[i] = order != nullptr ? order[i] : i;
  return rows;
}

}  // namespace
}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
