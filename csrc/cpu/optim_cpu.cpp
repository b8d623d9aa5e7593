// Fused optimisers over flat parameter buffers, CPU. (Kernel lands with the optimiser work.)
#include "mtlfast.h"

namespace mtlfast {
void register_optim_cpu(pybind11::module_& m) {}
}  // namespace mtlfast
