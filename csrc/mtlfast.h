// Shared declarations of mtlfast's compiled core. Shapes are documented in csrc/bilstm.h.
#pragma once
#include <torch/extension.h>

namespace mtlfast {
// Defined in csrc/cpu/*.cpp: adds the CPU ops to the module.
void register_cpu_ops(pybind11::module_& m);
#ifdef MTLFAST_WITH_CUDA
// Defined in csrc/cuda/*.cpp (torch glue around the framework-free kernels in csrc/cuda/*.cu).
void register_cuda_ops(pybind11::module_& m);
#endif
}  // namespace mtlfast
