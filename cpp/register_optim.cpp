#include "register.hpp"

void register_optim(pybind11::module_ &m) { (void)m; }
