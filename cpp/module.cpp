#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "gradkit's compiled kernels; use the public gradkit modules instead.";
  auto metrics = m.def_submodule("metrics", "metric kernels");
  register_metrics(metrics);
  auto optim = m.def_submodule("optim", "optimizer step kernels");
  register_optim(optim);
  auto linear = m.def_submodule("linear", "linear-model kernels");
  register_linear(linear);
  auto compress = m.def_submodule("compress", "quantization and pruning kernels");
  register_compress(compress);
}
