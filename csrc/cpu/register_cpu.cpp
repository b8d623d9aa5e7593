// Placeholder registration until the CPU kernels land; replaced by the bi-LSTM work.
#include "mtlfast.h"

namespace mtlfast {
void register_cpu_ops(pybind11::module_& m) {
  m.def("cpu_kernel_paths", []() { return std::vector<std::string>{"portable"}; });
}
}  // namespace mtlfast
