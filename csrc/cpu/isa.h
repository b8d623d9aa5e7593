// One run-time ISA probe and one choice of kernel build for every CPU op (bi-LSTM and Adadelta).
//
// Builds, slowest first: portable (plain C++, any architecture), avx2 (AVX2 + FMA), avx512 (AVX-512
// F + VL + BW + DQ), avx512_bf16 (avx512 plus native bf16 dot products, used by the bi-LSTM's bf16 products).
// The best build this CPU runs is picked once; set_path() forces another (tests, benchmarks; Python:
// mtlfast.ops.dispatch.set_cpu_kernel_path, or the environment variable MTLFAST_CPU_PATH). An op reads the
// choice once per call (active_path()) and records which build it ran (note_path), so a test can see that the
// override reached it.
//
// x86 code (intrinsics, <immintrin.h>, target attributes) is compiled only where MTLFAST_X86 is 1: on x86
// compilers, unless MTLFAST_NO_X86 is defined (setup.py: MTLFAST_NO_X86=1; tests/ops compile the portable
// build that way). Elsewhere only the portable build exists.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(MTLFAST_NO_X86)
#define MTLFAST_X86 1
#else
#define MTLFAST_X86 0
#endif

// Helpers of the hot loops are forced inline so that splitting the sources into files changes no machine code.
#define MTLFAST_AI inline __attribute__((always_inline))

namespace mtlfast {
namespace cpu {

enum class Path : int { kAuto = 0, kPortable = 1, kAvx2 = 2, kAvx512 = 3, kAvx512Bf16 = 4 };

// Ops that record the build they ran (for tests of the override).
enum class Op : int { kBilstm = 0, kAdadelta = 1, kCount = 2 };

bool cpu_has(Path p);               // can this CPU (and this build of the sources) run p?
Path best_path();                   // the best build, probed once
const char* path_name(Path p);      // "portable", "avx2", "avx512", "avx512_bf16" ("auto" for kAuto)
Path path_from_name(const std::string& name);  // throws (c10::Error) naming the valid names
void set_path(const std::string& name);        // "auto" restores run-time selection; throws if unavailable
std::vector<std::string> available_paths();    // builds this CPU runs, best last

inline std::atomic<int> g_forced_path{static_cast<int>(Path::kAuto)};
inline std::atomic<int> g_last_path[static_cast<int>(Op::kCount)] = {};

// The build in use. Read once per op call, never inside a loop.
inline Path active_path() {
  const Path forced = static_cast<Path>(g_forced_path.load(std::memory_order_relaxed));
  return forced == Path::kAuto ? best_path() : forced;
}

inline void note_path(Op op, Path p) {
  g_last_path[static_cast<int>(op)].store(static_cast<int>(p), std::memory_order_relaxed);
}

}  // namespace cpu
}  // namespace mtlfast
