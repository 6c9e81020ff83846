// One register_<area> function per submodule of gradkit._core.
#pragma once
#include <pybind11/pybind11.h>

void register_metrics(pybind11::module_ &m);
void register_optim(pybind11::module_ &m);
void register_linear(pybind11::module_ &m);
void register_compress(pybind11::module_ &m);
