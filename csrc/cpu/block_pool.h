// Memory of the lanes path (bilstm_lanes.cpp): per-thread grow-only workspaces, and a small pool of recycled
// blocks for the saved activations.
#pragma once
#include <ATen/ATen.h>

#include <atomic>
#include <cstdint>

namespace mtlfast {
namespace cpu {

constexpr int kScratchSlots = 10;

// Grow-only 64-byte aligned scratch, one per slot (0 .. kScratchSlots - 1) and thread: no allocation (or page faults) after
// warm-up. The pointer stays valid until the same thread asks the same slot for more.
float* scratch(int slot, int64_t n);

// A float tensor whose memory comes from the block pool (freed back into it).
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts);

// Test switch (_C.set_scratch_poison): when on, every scratch() and pooled_empty() hands out memory filled with
// NaN, so that a kernel reading a workspace element it did not write in the same call (a value left by an earlier
// call) shows as NaN in its results instead of passing by chance. Off by default (costs a fill per request).
extern std::atomic<bool> g_poison_scratch;

}  // namespace cpu
}  // namespace mtlfast
