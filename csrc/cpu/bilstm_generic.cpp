// The general path of the CPU bi-LSTM (bilstm_paths.h): every dtype, precision and kernel build.
//
// Per model k and direction d (one task each, in parallel over K x 2):
//   forward : acts[k,d] = x[k] @ w_ih[k,d]^T + bias[k,d]       one GEMM over all B*T rows (input projection hoisted)
//             for each step: acts[:, t] += h_prev @ w_hh^T       one small GEMM, recurrent weights stay in cache
//                            gates, cell and hidden update       one fused, vectorised pass over the active rows
//   backward: for each step (reverse): dh_rec = dgates[:, t_next] @ w_hh, then one fused pass giving dgates[:, t]
//             after the loop: dbias, dw_ih = dgates^T @ x, dw_hh = dgates^T @ h_prev, dx = dgates @ w_ih (GEMMs)
// Matrix products: products.h (MKL or at::mm; bf16 emulated or native). Cell kernels: lstm_cell.h.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/bf16_gemm.h"
#include "cpu/bilstm_paths.h"
#include "cpu/lstm_cell.h"
#include "cpu/products.h"

namespace mtlfast {
namespace cpu {

// ------------------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------------------
template <typename T>
void forward_generic(const Dims& d, const T* x, const int64_t* len, const T* w_ih, const T* w_hh, const T* bias, T* y,
                     T* acts, T* cells, bool bf16, Path path) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const StepKernels kern = float_kernels(path);
  const Prod mode = prod_mode(bf16, path);
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> rows(B);
    std::vector<T> hbuf(mode == Prod::kBf16Emulated ? B * H : 0);
    for (int64_t kd = begin; kd < end; ++kd) {
      const int64_t k = kd / 2, dir = kd % 2;
      const T* xk = x + k * B * T_ * E;
      const T* wih = w_ih + kd * G4 * E;
      const T* whh = w_hh + kd * G4 * H;
      const T* bk = bias + kd * G4;
      T* A = acts + kd * B * T_ * G4;  // [B, T, 4H]
      T* C = cells + kd * B * T_ * H;  // [B, T, H]
      T* Y = y + k * B * T_ * 2 * H + dir * H;  // rows of [B, T, 2H]
      const int64_t* lk = len + k * B;
      // Input projection of every timestep at once: A = x @ w_ih^T + bias.
      for (int64_t r = 0; r < B * T_; ++r) std::memcpy(A + r * G4, bk, G4 * sizeof(T));
      prod<T>(mode, false, true, B * T_, G4, E, xk, E, wih, E, T(1), A, G4);
      StepRhs<T> whh_t(mode, true, G4, H, whh, H, B);  // w_hh^T, packed once for all T steps
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = dir == 0 ? s : T_ - 1 - s;
        const int64_t tp = dir == 0 ? t - 1 : t + 1;
        int64_t n = 0;
        for (int64_t b = 0; b < B; ++b)
          if (lk[b] > t) rows[n++] = b;
        if (n == 0) continue;
        // Rows come sorted by length (longest first), so the active rows are 0 .. m-1 and the recurrent product
        // skips the finished (or not yet started) rows.
        const int64_t m = rows[n - 1] + 1;
        if (s > 0) {
          // h_prev is read from y itself: its padded positions are zero, which is exactly the zero initial
          // state the backward direction needs at each sequence's last token.
          const T* hp = Y + tp * 2 * H;
          int64_t ldh = T_ * 2 * H;
          if constexpr (std::is_same_v<T, float>) {
            if (mode == Prod::kBf16Emulated) {
              for (int64_t b = 0; b < m; ++b) std::memcpy(hbuf.data() + b * H, hp + b * ldh, H * sizeof(T));
              round_bf16_inplace(hbuf.data(), m * H);
              hp = hbuf.data();
              ldh = H;
            }
          }
          whh_t.mm(m, hp, ldh, T(1), A + t * G4, T_ * G4);
        }
        fwd_step<T>(kern, H, n, rows.data(), A + t * G4, T_ * G4, s > 0 ? C + tp * H : nullptr, T_ * H, C + t * H,
                    T_ * H, Y + t * 2 * H, T_ * 2 * H);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------------------------
template <typename T>
void backward_generic(const Dims& d, const T* dy, const T* x, const int64_t* len, const T* w_ih, const T* w_hh,
                      const T* y, const T* acts, const T* cells, T* dx, T* dw_ih, T* dw_hh, T* dbias, T* dgates,
                      bool bf16, Path path) {
  const int64_t K = d.K, B = d.B, T_ = d.T, E = d.E, H = d.H, G4 = 4 * H;
  const StepKernels kern = float_kernels(path);
  const Prod mode = prod_mode(bf16, path);
  const bool emulate = mode == Prod::kBf16Emulated;
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> rows(B);
    std::vector<T> DH(B * H), DC(B * H), hprev(B * T_ * H), dbuf(emulate ? B * G4 : 0);
    for (int64_t kd = begin; kd < end; ++kd) {
      const int64_t k = kd / 2, dir = kd % 2;
      const T* xk = x + k * B * T_ * E;
      const T* whh = w_hh + kd * G4 * H;
      const T* A = acts + kd * B * T_ * G4;
      T* D = dgates + kd * B * T_ * G4;
      const T* C = cells + kd * B * T_ * H;
      const T* Y = y + k * B * T_ * 2 * H + dir * H;
      const T* dY = dy + k * B * T_ * 2 * H + dir * H;
      const int64_t* lk = len + k * B;
      std::fill(DC.begin(), DC.end(), T(0));
      StepRhs<T> whh_n(mode, false, H, G4, whh, H, B);  // w_hh, packed once for all T steps
      for (int64_t s = T_ - 1; s >= 0; --s) {
        const int64_t t = dir == 0 ? s : T_ - 1 - s;
        const int64_t tp = dir == 0 ? t - 1 : t + 1;     // previous step in this direction's order
        const int64_t tn = dir == 0 ? t + 1 : t - 1;     // next step
        int64_t n = 0;
        for (int64_t b = 0; b < B; ++b) {
          if (lk[b] > t) {
            rows[n++] = b;
          } else {  // padded position: zero gradient, and nothing flows into the step before it
            std::memset(D + (b * T_ + t) * G4, 0, G4 * sizeof(T));
          }
        }
        const bool has_next = s < T_ - 1;
        if (n == 0) continue;
        const int64_t m = rows[n - 1] + 1;  // active rows are a prefix (rows sorted by length)
        if (has_next) {
          const T* dn = D + tn * G4;
          int64_t ldd = T_ * G4;
          if constexpr (std::is_same_v<T, float>) {
            if (emulate) {
              for (int64_t b = 0; b < m; ++b) std::memcpy(dbuf.data() + b * G4, dn + b * ldd, G4 * sizeof(T));
              round_bf16_inplace(dbuf.data(), m * G4);
              dn = dbuf.data();
              ldd = G4;
            }
          }
          whh_n.mm(m, dn, ldd, T(0), DH.data(), H);
        }
        bwd_step<T>(kern, H, n, rows.data(), A + t * G4, T_ * G4, D + t * G4, T_ * G4, dY + t * 2 * H, T_ * 2 * H,
                    has_next ? DH.data() : nullptr, DC.data(), C + t * H, T_ * H, s > 0 ? C + tp * H : nullptr,
                    T_ * H);
      }
      // Weight gradients as large products over all B*T rows.
      T* db = dbias + kd * G4;
      std::fill(db, db + G4, T(0));
      for (int64_t r = 0; r < B * T_; ++r) {
        const T* dr = D + r * G4;
        for (int64_t j = 0; j < G4; ++j) db[j] += dr[j];
      }
      if constexpr (std::is_same_v<T, float>) {
        if (emulate) round_bf16_inplace(D, B * T_ * G4);  // operand of the weight/input-gradient products
      }
      prod<T>(mode, true, false, G4, E, B * T_, D, G4, xk, E, T(0), dw_ih + kd * G4 * E, E);
      // h_prev of every (b, t): the state the step at t started from (zero at each sequence's first step).
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t t = 0; t < T_; ++t) {
          const int64_t tp = dir == 0 ? t - 1 : t + 1;
          T* dst = hprev.data() + (b * T_ + t) * H;
          if (tp < 0 || tp >= T_) {
            std::memset(dst, 0, H * sizeof(T));
          } else {
            std::memcpy(dst, Y + (b * T_ + tp) * 2 * H, H * sizeof(T));
          }
        }
      }
      if constexpr (std::is_same_v<T, float>) {
        if (emulate) round_bf16_inplace(hprev.data(), B * T_ * H);
      }
      prod<T>(mode, true, false, G4, H, B * T_, D, G4, hprev.data(), H, T(0), dw_hh + kd * G4 * H, H);
    }
  });
  // dx[k] = sum_d dgates[k, d] @ w_ih[k, d]; rows split in two so K = 1 still uses two threads.
  const int64_t rows_total = B * T_;
  const int64_t half = (rows_total + 1) / 2;
  at::parallel_for(0, K * 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t kp = begin; kp < end; ++kp) {
      const int64_t k = kp / 2, part = kp % 2;
      const int64_t r0 = part * half, r1 = std::min(rows_total, r0 + half);
      if (r1 <= r0) continue;
      for (int64_t dir = 0; dir < 2; ++dir) {
        const int64_t kd = k * 2 + dir;
        prod<T>(mode, false, false, r1 - r0, E, G4, dgates + (kd * rows_total + r0) * G4, G4, w_ih + kd * G4 * E, E,
                dir == 0 ? T(0) : T(1), dx + (k * rows_total + r0) * E, E);
      }
    }
  });
}

template void forward_generic<float>(const Dims&, const float*, const int64_t*, const float*, const float*,
                                     const float*, float*, float*, float*, bool, Path);
template void forward_generic<double>(const Dims&, const double*, const int64_t*, const double*, const double*,
                                      const double*, double*, double*, double*, bool, Path);
template void backward_generic<float>(const Dims&, const float*, const float*, const int64_t*, const float*,
                                      const float*, const float*, const float*, const float*, float*, float*, float*,
                                      float*, float*, bool, Path);
template void backward_generic<double>(const Dims&, const double*, const double*, const int64_t*, const double*,
                                       const double*, const double*, const double*, const double*, double*, double*,
                                       double*, double*, double*, bool, Path);

}  // namespace cpu
}  // namespace mtlfast
