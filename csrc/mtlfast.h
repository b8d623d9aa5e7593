// Shared declarations of mtlfast's compiled core. Shapes are documented in csrc/bilstm.h.
#pragma once
#include <torch/extension.h>

namespace mtlfast {
// Each CPU source file registers its own ops (csrc/cpu/register_cpu.cpp calls them all).
void register_cpu_ops(pybind11::module_& m);
void register_isa_cpu(pybind11::module_& m);       // csrc/cpu/isa.cpp (kernel builds, shared by every CPU op)
void register_bilstm_cpu(pybind11::module_& m);    // csrc/cpu/bilstm_cpu.cpp
void register_adadelta_cpu(pybind11::module_& m);  // csrc/cpu/adadelta_cpu.cpp
void register_heads_cpu(pybind11::module_& m);     // csrc/cpu/heads_cpu.cpp (heads, batches, dropout of K runs)
#ifdef MTLFAST_WITH_CUDA
// Defined in csrc/cuda/*.cpp (torch glue around the framework-free kernels in csrc/cuda/*.cu).
void register_cuda_ops(pybind11::module_& m);
#endif
}  // namespace mtlfast
