// The lanes path of the CPU bi-LSTM (bilstm_paths.h): fp32 on AVX-512 CPUs, batch in the vector lanes.
//
// Per (model, direction) everything is stored
// transposed, one row per gate unit and one column per (t, b) with the batch padded to Bp = 16 * ceil(B / 16):
//   acts  [4H][T*Bp]  gate activations           cells [2H][T*Bp]  cell states c (rows 0..H-1), states h (H..2H-1)
//   dgates [4H][T*Bp] (workspace of the backward)
// so a step is one column block [rows][Bp] and the 4 gates of a hidden unit are 4 full vectors of 16 batch rows:
// no padding of H to the vector width and no transposes inside the time loop. Positions past a sequence's end
// hold zero states and zero gate gradients (masked in the epilogues), which is what lets the weight gradients be
// single large GEMMs over all columns and the recurrent-weight gradient skip t = 0 (h_0 = 0) exactly.
//   forward step : gates = W_ih x_t + W_hh h_prev (register tile of 4 gates x 3 units x 32 batch lanes; W_ih and
//                  W_hh packed once per call into [unit block][k][gate, unit] panels; x^T once per call), epilogue
//                  adds the bias, applies the non-linearities and the cell update and stores acts, c, h: the input
//                  projection is no separate GEMM and the gate block never makes a round trip to memory.
//   backward step: dh = W_hh^T dgates_next (tile of 12 units x 32 lanes, W_hh read in place), epilogue gives this
//                  step's gate gradients and the running cell gradient; then dx_t^T = W_ih^T dgates_t with the
//                  same tile shape while dgates_t is hot in cache.
//   after the loop: dbias (row sums), dw_ih = dgates x^T and dw_hh = dgates h_prev^T as MKL GEMMs (computed as
//                  their transposes, whose long side is the output's rows), dx of both directions summed.
// Register tiles: lanes_tiles.h; transposes and row sums: lanes_layout.h; workspaces: block_pool.h.
#include "cpu/bilstm_paths.h"

#if MTLFAST_X86
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/blas.h"
#include "cpu/block_pool.h"
#include "cpu/lanes_layout.h"
#include "cpu/lanes_tiles.h"

namespace mtlfast {
namespace cpu {

void forward_lanes(const Dims& d, const float* x, const int64_t* len, const int64_t* order, const float* w_ih,
                   const float* w_hh, const float* bias, float* y, float* acts, float* cells) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const std::vector<int64_t> rows = row_map(order, K * B);
  const int64_t Bp = (B + 15) / 16 * 16, ld = T_ * Bp;
  costliest_first(run_direction_costs(len, K, B, T_), [&](int64_t kd) {
    std::vector<int64_t> active(T_);
    const int64_t k = kd / 2, dir = kd % 2;
    float* A = acts + kd * G4 * ld;
    float* C = cells + kd * 2 * H * ld;
    float* Hs = C + H * ld;
    const float* bk = bias + kd * G4;
    const float* whh = w_hh + kd * G4 * H;
    const int64_t L = run_steps(len + k * B);  // this run's longest row: steps t >= L are all padding
    active_counts(len + k * B, B, L, active.data());
    // x^T [E][T Bp] (padding lanes zero) and w_ih in gate panels: the step kernel adds the input projection
    // (fused, it saves a separate GEMM pass over the whole acts block: ~0.1-0.2 ms of 1.3 ms here).
    float* xT = scratch(0, E * ld);
    transpose_x(x, rows.data() + k * B, B, T_, E, L, Bp, xT);
    float* wxp = scratch(2, G4 * E);
    pack_gate_panels(w_ih + kd * G4 * E, H, E, wxp);
    float* wp = scratch(1, G4 * H);
    pack_gate_panels(whh, H, H, wp);
    // Forward in time for dir 0 (t = 0 .. L-1), backward for dir 1 (t = L-1 .. 0: starts where the run's
    // longest row ends; shorter rows start later, from the zero states their padded positions hold).
    for_lane_steps(L, dir, Bp, active.data(), false, [&](const LaneStep& st) {
      const int64_t col = st.col;
      const float* hp = at_column(static_cast<const float*>(Hs), st.prev);
      const float* cp = at_column(static_cast<const float*>(C), st.prev);
      // Vectors without a live row: zero states (read by the next step of dir 1, by y and by the GEMMs of
      // the backward), no arithmetic.
      for_lane_tiles(
          st.active, st.l0, Bp,
          [&](auto V, auto lanes, int64_t o) {
            fwd_units<decltype(V)::value, decltype(lanes)>(H, ld, wp, offset_or_null(hp, o), offset_or_null(cp, o),
                                                           A + col + o, bk, C + col + o, Hs + col + o,
                                                           st.act + o / 16, E, wxp, xT + col + o, st.ahead);
          },
          [&](int64_t v) { zero_lanes(C + col + 16 * v, 2 * H, ld); });
    });
    _mm_sfence();  // the tiles' streaming stores of acts, before another thread reads them
    // y[k, b, t, dir H + j] = h[j][t Bp + b] (zero past each sequence's end).
    write_y(Hs, ld, rows.data() + k * B, B, T_, H, L, Bp, y + dir * H);
  });
}

void backward_lanes(const Dims& d, const float* dy, const float* x, const int64_t* len, const int64_t* order,
                    const float* w_ih, const float* w_hh, const float* acts, const float* cells, float* dx,
                    float* dw_ih, float* dw_hh, float* dbias) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const std::vector<int64_t> rows = row_map(order, K * B);
  const int64_t Bp = (B + 15) / 16 * 16, ld = T_ * Bp;
  float* dxd = scratch(5, 2 * K * E * ld);  // per (model, direction): dx^T [E][T Bp] = w_ih^T dgates
  costliest_first(run_direction_costs(len, K, B, T_), [&](int64_t kd) {
    std::vector<int64_t> active(T_);
    const int64_t k = kd / 2, dir = kd % 2;
    const float* A = acts + kd * G4 * ld;
    const float* C = cells + kd * 2 * H * ld;
    const float* Hs = C + H * ld;
    const float* wih = w_ih + kd * G4 * E;
    const float* whh = w_hh + kd * G4 * H;
    const int64_t L = run_steps(len + k * B);  // columns t >= L (all padding) are neither read nor written
    active_counts(len + k * B, B, L, active.data());
    float* D = scratch(0, G4 * ld);
    float* dyT = scratch(1, H * ld);
    float* dc = scratch(2, H * Bp);
    // dy of this direction, transposed to [H][T Bp] (padding lanes zero; masked anyway).
    transpose_dy(dy + dir * H, rows.data() + k * B, B, T_, H, L, Bp, ld, dyT);
    std::memset(dc, 0, H * Bp * sizeof(float));
    float* dxk = dxd + kd * E * ld;
    for_lane_steps(L, dir, Bp, active.data(), true, [&](const LaneStep& st) {
      const int64_t col = st.col, l0 = st.l0;
      const float* dn = at_column(static_cast<const float*>(D), st.next);  // next step's gate gradients
      const float* cp = at_column(C, st.prev);                             // previous step's cells
      // Vectors without a live row: zero gate gradients (read by the next step of dir 0 and the GEMMs) and
      // zero dx.
      for_lane_tiles(
          st.active, l0, Bp,
          [&](auto V, auto lanes, int64_t o) {
            constexpr int kV = decltype(V)::value;
            using LV = decltype(lanes);
            bwd_units<kV, LV>(H, ld, whh, offset_or_null(dn, o), A + col + o, C + col + o, offset_or_null(cp, o),
                              dyT + col + o, dc + l0 + o, Bp, D + col + o, st.act + o / 16, st.ahead, st.ahead2);
            dx_units<kV, LV>(E, G4, ld, wih, D + col + o, dxk + col + o);
          },
          [&](int64_t v) {
            zero_lanes(D + col + 16 * v, G4, ld);
            zero_lanes(dxk + col + 16 * v, E, ld);
          });
    });
    _mm_sfence();  // dx_units' streaming stores, before gather_dx reads them on any thread
    row_sums(D, G4, L * Bp, ld, dbias + kd * G4);
    // Weight gradients as GEMMs over the live columns only (packed in place, live_columns), each computed
    // transposed (its long side as the output's rows: 50 x 400 x 800 runs ~20% faster in MKL than 400 x 50 x 800
    // here), then transposed back.
    std::vector<int64_t> w(L), off(L + 1);
    live_columns(active.data(), L, Bp, w.data(), off.data());
    float* xT = scratch(3, E * ld);  // x[k] as [E][T Bp], padding lanes zero
    transpose_x(x, rows.data() + k * B, B, T_, E, L, Bp, xT);
    float* hp = nullptr;
    int64_t first = 0, n2 = 0;
    if (L > 1) {  // h_prev in the gate gradients' packed layout, read before D is packed over its own columns
      hp = scratch(6, H * ld);
      n2 = gather_prev_states(Hs, H, ld, Bp, L, dir, w.data(), off.data(), hp, &first);
    }
    pack_live_columns(D, G4, ld, Bp, L, w.data(), off.data());
    pack_live_columns(xT, E, ld, Bp, L, w.data(), off.data());
    float* tr = scratch(4, std::max(E, H) * G4);
    gemm<float>(false, true, E, G4, off[L], 1.0f, xT, ld, D, ld, 0.0f, tr, G4);  // dw_ih^T [E][4H]
    float* dwih = dw_ih + kd * G4 * E;
    transpose(tr, G4, E, G4, dwih, E);
    // dw_hh = sum_t dgates[t] h[t_prev]^T over the steps with a previous state (h_0 = 0).
    float* dwhh = dw_hh + kd * G4 * H;
    if (L > 1) {
      gemm<float>(false, true, H, G4, n2, 1.0f, hp, ld, D + off[first], ld, 0.0f, tr, G4);  // dw_hh^T [H][4H]
      transpose(tr, G4, H, G4, dwhh, H);
    } else {
      std::memset(dwhh, 0, G4 * H * sizeof(float));
    }
  });
  // dx[k, b, t] = sum over both directions, back to batch-major rows (zero for t >= the run's longest row).
  gather_dx(dxd, len, rows.data(), K, B, T_, E, Bp, dx);
}

}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
