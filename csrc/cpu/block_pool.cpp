// Workspaces and the block pool of the lanes path (block_pool.h).
#include "cpu/block_pool.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>

#include <unistd.h>

namespace mtlfast {
namespace cpu {

std::atomic<bool> g_poison_scratch{false};

namespace {

void poison(void* p, size_t bytes) {
  float* f = static_cast<float*>(p);
  std::fill(f, f + bytes / sizeof(float), std::numeric_limits<float>::quiet_NaN());
}

}  // namespace

float* scratch(int slot, int64_t n) {
  struct Buf {
    float* p = nullptr;
    int64_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[kScratchSlots];
  TORCH_CHECK(slot >= 0 && slot < kScratchSlots, "bilstm: scratch slot ", slot, " out of range");
  Buf& b = bufs[slot];
  if (n > b.n) {
    std::free(b.p);
    b.p = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
    TORCH_CHECK(b.p != nullptr, "bilstm: out of memory for a ", n * sizeof(float), "-byte workspace");
    b.n = n;
  }
  if (g_poison_scratch.load(std::memory_order_relaxed)) poison(b.p, n * sizeof(float));
  return b.p;
}

namespace {

// Saved activations (acts, cells: megabytes per call, freed after every backward) come from a small pool of
// recycled blocks instead of the system allocator, whose large blocks are fresh pages (page faults and kernel
// zeroing on first touch) whenever glibc returns them to the OS between calls. At most kPoolBlocks blocks and
// pool_bytes() bytes are kept (an eighth of the physical memory, at least 256 MB: the blocks of one call, which
// the next call needs again, e.g. 310 MB for acts, cells, y and dx at K = 55); anything beyond that is freed as usual.
constexpr size_t kPoolBlocks = 16;
size_t pool_bytes() {
  static const size_t cap = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const size_t phys = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
    return std::max<size_t>(size_t(256) << 20, phys / 8);
  }();
  return cap;
}
struct BlockPool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // bytes -> block
  size_t bytes = 0;
  void* get(size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = free_blocks.find(n);
      if (it != free_blocks.end()) {
        void* p = it->second;
        free_blocks.erase(it);
        bytes -= n;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, n);
    TORCH_CHECK(p != nullptr, "bilstm: out of memory for ", n, " bytes of saved activations");
    return p;
  }
  void put(void* p, size_t n) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (free_blocks.size() < kPoolBlocks && bytes + n <= pool_bytes()) {
        free_blocks.emplace(n, p);
        bytes += n;
        return;
      }
    }
    std::free(p);
  }
};

BlockPool& block_pool() {
  static BlockPool* pool = new BlockPool();  // never destroyed: tensors may outlive static destruction
  return *pool;
}


}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t n = ((static_cast<size_t>(numel) * sizeof(float) + 63) / 64) * 64;
  void* p = block_pool().get(n == 0 ? 64 : n);
  const size_t held = n == 0 ? 64 : n;
  if (g_poison_scratch.load(std::memory_order_relaxed)) poison(p, held);
  return at::from_blob(p, sizes, [held](void* q) { block_pool().put(q, held); }, opts);
}

}  // namespace cpu
}  // namespace mtlfast
