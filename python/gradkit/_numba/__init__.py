"""numba twins of the C++ kernels in cpp/include/gradkit/, one module per area."""
