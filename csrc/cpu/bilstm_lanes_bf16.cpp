// The bf16 lanes path of the CPU bi-LSTM (bilstm_paths.h): precision="bf16" on AVX512-BF16 CPUs (kernel build
// avx512_bf16). The fp32 lanes path (bilstm_lanes.cpp) step for step: same layout, same saved tensors, same
// ragged skipping and narrow tiles, with the per-step products as vdpbf16ps over bf16 pairs (lanes_tiles_bf16.h)
// and the weight gradients as native bf16 GEMMs (bf16_gemm.h). What is rounded to bf16 is what the general bf16
// path rounds (x, w_ih, w_hh, h_prev, and the gate gradients as operand of every backward product), so that both
// give the same numbers up to the order of fp32 accumulation.
//
// Per (model, direction), besides the fp32 tensors of the fp32 path:
//   forward : xb [E/2][T Bp] x^T pairs (once per call), hb [H/2][T Bp] h pairs (written by each step's epilogue,
//             read by the next step), w_ih / w_hh as bf16 gate panels (once per call);
//   backward: db [4 H/2][T Bp] dgates pairs (written by each step's epilogue, read by the next step's dh and this
//             step's dx), w_hh / w_ih as gate-row pairs (once per call).
#include "cpu/bilstm_paths.h"

#if MTLFAST_X86
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/block_pool.h"
#include "cpu/lanes_layout.h"
#include "cpu/lanes_tiles_bf16.h"
#include "cpu/products.h"

namespace mtlfast {
namespace cpu {
namespace {

inline uint32_t* scratch_u32(int slot, int64_t n) { return reinterpret_cast<uint32_t*>(scratch(slot, n)); }

}  // namespace

void forward_lanes_bf16(const Dims& d, const float* x, const int64_t* len, const int64_t* order, const float* w_ih,
                        const float* w_hh, const float* bias, float* y, float* acts, float* cells) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const std::vector<int64_t> rows = row_map(order, K * B);
  const int64_t Bp = (B + 15) / 16 * 16, ld = T_ * Bp, Ep = (E + 1) / 2, Hh = (H + 1) / 2;
  costliest_first(run_direction_costs(len, K, B, T_), [&](int64_t kd) {
    std::vector<int64_t> active(T_);
    const int64_t k = kd / 2, dir = kd % 2;
    float* A = acts + kd * G4 * ld;
    float* C = cells + kd * 2 * H * ld;
    float* Hs = C + H * ld;
    const float* bk = bias + kd * G4;
    const int64_t L = run_steps(len + k * B);
    active_counts(len + k * B, B, L, active.data());
    const int64_t n = L * Bp;  // live columns
    float* xT = scratch(0, E * ld);
    transpose_x(x, rows.data() + k * B, B, T_, E, L, Bp, xT);
    uint32_t* xb = scratch_u32(6, Ep * ld);
    for (int64_t p = 0; p < Ep; ++p) pair_rows(xT + 2 * p * ld, 2 * p + 1 < E ? xT + (2 * p + 1) * ld : nullptr, n,
                                               xb + p * ld);
    uint32_t* wxp = scratch_u32(2, G4 * Ep);
    pack_gate_panels_bf16(w_ih + kd * G4 * E, H, E, wxp);
    uint32_t* wp = scratch_u32(1, G4 * Hh);
    pack_gate_panels_bf16(w_hh + kd * G4 * H, H, H, wp);
    uint32_t* hb = scratch_u32(7, Hh * ld);
    for_lane_steps(L, dir, Bp, active.data(), false, [&](const LaneStep& st) {
      const int64_t col = st.col;
      const uint32_t* hp = at_column(static_cast<const uint32_t*>(hb), st.prev);
      const float* cp = at_column(static_cast<const float*>(C), st.prev);
      for_lane_tiles(
          st.active, st.l0, Bp,
          [&](auto V, auto lanes, int64_t o) {
            fwd_units_bf16<decltype(V)::value, decltype(lanes)>(
                H, ld, wp, offset_or_null(hp, o), offset_or_null(cp, o), A + col + o, bk, C + col + o,
                Hs + col + o, hb + col + o, st.act + o / 16, E, wxp, xb + col + o, st.ahead);
          },
          [&](int64_t v) {
            zero_lanes(C + col + 16 * v, 2 * H, ld);
            zero_lanes(reinterpret_cast<float*>(hb + col + 16 * v), Hh, ld);
          });
    });
    _mm_sfence();  // the tiles' streaming stores of acts, before another thread reads them
    write_y(Hs, ld, rows.data() + k * B, B, T_, H, L, Bp, y + dir * H);
  });
}

void backward_lanes_bf16(const Dims& d, const float* dy, const float* x, const int64_t* len, const int64_t* order,
                         const float* w_ih, const float* w_hh, const float* acts, const float* cells, float* dx,
                         float* dw_ih, float* dw_hh, float* dbias) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const std::vector<int64_t> rows = row_map(order, K * B);
  const int64_t Bp = (B + 15) / 16 * 16, ld = T_ * Bp, Hh = (H + 1) / 2, P = 4 * Hh;
  float* dxd = scratch(5, 2 * K * E * ld);
  costliest_first(run_direction_costs(len, K, B, T_), [&](int64_t kd) {
    std::vector<int64_t> active(T_);
    const int64_t k = kd / 2, dir = kd % 2;
    const float* A = acts + kd * G4 * ld;
    const float* C = cells + kd * 2 * H * ld;
    const float* Hs = C + H * ld;
    const int64_t L = run_steps(len + k * B);
    active_counts(len + k * B, B, L, active.data());
    float* D = scratch(0, G4 * ld);
    uint32_t* db = scratch_u32(6, P * ld);
    float* dyT = scratch(1, H * ld);
    float* dc = scratch(2, H * Bp);
    uint32_t* whhT = scratch_u32(7, P * H);
    pack_gate_row_pairs(w_hh + kd * G4 * H, H, H, whhT);
    uint32_t* wihT = scratch_u32(8, P * E);
    pack_gate_row_pairs(w_ih + kd * G4 * E, H, E, wihT);
    transpose_dy(dy + dir * H, rows.data() + k * B, B, T_, H, L, Bp, ld, dyT);
    std::memset(dc, 0, H * Bp * sizeof(float));
    float* dxk = dxd + kd * E * ld;
    for_lane_steps(L, dir, Bp, active.data(), true, [&](const LaneStep& st) {
      const int64_t col = st.col, l0 = st.l0;
      const uint32_t* dn = at_column(static_cast<const uint32_t*>(db), st.next);  // next step's dgates pairs
      const float* cp = at_column(C, st.prev);                                    // previous step's cells
      for_lane_tiles(
          st.active, l0, Bp,
          [&](auto V, auto lanes, int64_t o) {
            constexpr int kV = decltype(V)::value;
            using LV = decltype(lanes);
            bwd_units_bf16<kV, LV>(H, ld, whhT, offset_or_null(dn, o), A + col + o, C + col + o,
                                   offset_or_null(cp, o), dyT + col + o, dc + l0 + o, Bp, D + col + o,
                                   db + col + o, st.act + o / 16, st.ahead, st.ahead2);
            dx_units_bf16<kV, LV>(E, P, ld, wihT, db + col + o, dxk + col + o);
          },
          [&](int64_t v) {
            zero_lanes(D + col + 16 * v, G4, ld);
            zero_lanes(reinterpret_cast<float*>(db + col + 16 * v), P, ld);
            zero_lanes(dxk + col + 16 * v, E, ld);
          });
    });
    _mm_sfence();  // dx_units_bf16's streaming stores, before gather_dx reads them on any thread
    row_sums(D, G4, L * Bp, ld, dbias + kd * G4);  // unrounded gate gradients, as the general path
    // Weight gradients: bf16 products (D, x, h_prev rounded while packing), fp32 accumulation, over the live
    // columns only (packed in place, live_columns).
    std::vector<int64_t> w(L), off(L + 1);
    live_columns(active.data(), L, Bp, w.data(), off.data());
    float* xT = scratch(3, E * ld);
    transpose_x(x, rows.data() + k * B, B, T_, E, L, Bp, xT);
    float* hp = nullptr;
    int64_t first = 0, n2 = 0;
    if (L > 1) {
      hp = scratch(9, H * ld);
      n2 = gather_prev_states(Hs, H, ld, Bp, L, dir, w.data(), off.data(), hp, &first);
    }
    pack_live_columns(D, G4, ld, Bp, L, w.data(), off.data());
    pack_live_columns(xT, E, ld, Bp, L, w.data(), off.data());
    prod<float>(Prod::kBf16Native, false, true, G4, E, off[L], D, ld, xT, ld, 0.0f, dw_ih + kd * G4 * E, E);
    float* dwhh = dw_hh + kd * G4 * H;
    if (L > 1) {
      prod<float>(Prod::kBf16Native, false, true, G4, H, n2, D + off[first], ld, hp, ld, 0.0f, dwhh, H);
    } else {
      std::memset(dwhh, 0, G4 * H * sizeof(float));
    }
  });
  gather_dx(dxd, len, rows.data(), K, B, T_, E, Bp, dx);
}

}  // namespace cpu
}  // namespace mtlfast
#endif  // MTLFAST_X86
