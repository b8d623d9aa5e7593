// Fused bi-LSTM over a model array, CPU. (Kernel lands with the bi-LSTM work.)
#include "mtlfast.h"

namespace mtlfast {
void register_bilstm_cpu(pybind11::module_& m) {
  m.def("cpu_kernel_paths", []() { return std::vector<std::string>{"portable"}; });
}
}  // namespace mtlfast
