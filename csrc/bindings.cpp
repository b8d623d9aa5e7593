// The one pybind11 module of mtlfast: mtlfast._C.
// Each device folder registers its own ops (csrc/cpu/*, csrc/cuda/*); this file only ties them together
// and reports what was built.
#include <torch/extension.h>

#include "mtlfast.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "mtlfast compiled kernels (fused bi-LSTM over model arrays, fused optimisers)";
  std::vector<std::string> backends{"cpu"};
  mtlfast::register_cpu_ops(m);
#ifdef MTLFAST_WITH_CUDA
  mtlfast::register_cuda_ops(m);
  backends.push_back("cuda");
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
  m.attr("BACKENDS") = backends;
}
