// Collects the CPU ops of every csrc/cpu source file into mtlfast._C.
#include "mtlfast.h"

namespace mtlfast {
void register_cpu_ops(pybind11::module_& m) {
  register_isa_cpu(m);
  register_bilstm_cpu(m);
  register_adadelta_cpu(m);
  register_heads_cpu(m);
}
}  // namespace mtlfast
