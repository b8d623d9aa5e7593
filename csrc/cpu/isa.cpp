// The run-time ISA probe shared by every CPU op, and its Python bindings (see isa.h).
#include "cpu/isa.h"

#include <torch/extension.h>

#include <map>

#include "mtlfast.h"

namespace mtlfast {
namespace cpu {

bool cpu_has(Path p) {
#if !MTLFAST_X86
  return p == Path::kPortable || p == Path::kAuto;
#else
  switch (p) {
    case Path::kAvx512Bf16:
      return cpu_has(Path::kAvx512) && __builtin_cpu_supports("avx512bf16");
    case Path::kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    case Path::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      return true;
  }
#endif
}

Path best_path() {
  static const Path best = cpu_has(Path::kAvx512Bf16) ? Path::kAvx512Bf16
                           : cpu_has(Path::kAvx512)   ? Path::kAvx512
                           : cpu_has(Path::kAvx2)     ? Path::kAvx2
                                                      : Path::kPortable;
  return best;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kAvx512Bf16:
      return "avx512_bf16";
    case Path::kAvx512:
      return "avx512";
    case Path::kAvx2:
      return "avx2";
    case Path::kPortable:
      return "portable";
    default:
      return "auto";
  }
}

Path path_from_name(const std::string& name) {
  for (Path p : {Path::kAuto, Path::kPortable, Path::kAvx2, Path::kAvx512, Path::kAvx512Bf16})
    if (name == path_name(p)) return p;
  TORCH_CHECK(false, "set_cpu_kernel_path: name must be one of auto, portable, avx2, avx512, avx512_bf16; got '",
              name, "'");
  return Path::kAuto;
}

void set_path(const std::string& name) {
  const Path p = path_from_name(name);
  TORCH_CHECK(cpu_has(p), "set_cpu_kernel_path: this CPU cannot run the '", name, "' kernels",
              MTLFAST_X86 ? "" : " (built without x86 kernels)", "; available: ", [] {
                std::string s;
                for (const auto& n : available_paths()) s += (s.empty() ? "" : ", ") + n;
                return s;
              }());
  g_forced_path.store(static_cast<int>(p));
}

std::vector<std::string> available_paths() {
  std::vector<std::string> out;
  for (Path p : {Path::kPortable, Path::kAvx2, Path::kAvx512, Path::kAvx512Bf16})
    if (cpu_has(p)) out.push_back(path_name(p));
  return out;
}

}  // namespace cpu

void register_isa_cpu(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("cpu_kernel_paths", &cpu::available_paths,
        "Kernel builds this CPU can run, best last (the default); shared by the bi-LSTM and Adadelta ops.");
  m.def(
      "cpu_kernel_path", []() { return std::string(cpu::path_name(cpu::active_path())); },
      "The kernel build in use by every CPU op.");
  m.def("set_cpu_kernel_path", &cpu::set_path, py::arg("name"),
        "Force a kernel build for every CPU op ('auto' restores run-time selection).");
  m.def(
      "last_cpu_kernel_paths",
      []() {
        std::map<std::string, std::string> out;
        const char* names[] = {"bilstm", "adadelta"};
        for (int i = 0; i < static_cast<int>(cpu::Op::kCount); ++i)
          out[names[i]] = cpu::path_name(static_cast<cpu::Path>(cpu::g_last_path[i].load()));
        return out;
      },
      "The build each op family ran on its last call ('auto' = not called yet): {'bilstm': ..., 'adadelta': ...}.");
  m.attr("WITH_X86_KERNELS") = static_cast<bool>(MTLFAST_X86);
}

}  // namespace mtlfast
