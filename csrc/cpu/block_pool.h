// Memory of the lanes path (bilstm_lanes.cpp): per-thread grow-only workspaces, and a small pool of recycled
// blocks for the saved activations.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace mtlfast {
namespace cpu {

constexpr int kScratchSlots = 10;

// Grow-only 64-byte aligned scratch, one per slot (0 .. kScratchSlots - 1) and thread: no allocation (or page faults) after
// warm-up. The pointer stays valid until the same thread asks the same slot for more.
float* scratch(int slot, int64_t n);

// A float tensor whose memory comes from the block pool (freed back into it).
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts);

}  // namespace cpu
}  // namespace mtlfast
