// Bindings of gradkit._core.optim: check the arrays with the GIL held, then release
// it around the kernels of gradkit/optim.hpp. The contract is python/gradkit/_core.pyi.
//
// The arrays are taken as they come (no forcecast): the steps update the caller's
// own buffers in place, so a converted copy would silently lose the update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gradkit/optim.hpp"
#include "register.hpp"

namespace py = pybind11;
namespace go = gradkit::optim;

namespace {

std::string dtype_name(const py::array &a) {
  return py::str(a.dtype()).cast<std::string>();
}

void check_threads(int n_threads) {
  if (n_threads < 1)
    throw std::invalid_argument("n_threads must be >= 1, got " +
                                std::to_string(n_threads) + ".");
}

// One array of a step, checked against param: its dtype T and its length n.
template <class T>
void check_operand(const py::array &a, const char *name, bool in_place, py::ssize_t n) {
  // EquivTypes with the native T: rejects other dtypes and byte-swapped floats.
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::type_error(std::string(name) + " must have the dtype of param (" +
                         py::str(py::dtype::of<T>()).cast<std::string>() + "), got " +
                         dtype_name(a) + ".");
  if (a.ndim() != 1)
    throw std::invalid_argument(std::string(name) + " must be 1-D, got " +
                                std::to_string(a.ndim()) +
                                " dimensions; pass the array raveled.");
  if (a.shape(0) != n)
    throw std::invalid_argument(std::string(name) + " has " +
                                std::to_string(a.shape(0)) + " elements, expected " +
                                std::to_string(n) + " (the length of param).");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) +
                                " must be C-contiguous; pass a contiguous array "
                                "(a strided view cannot be updated in one pass).");
  if (in_place && !a.writeable())
    throw std::invalid_argument(std::string(name) +
                                " must be writeable: it is updated in place.");
}

// The float type of param: float32 or float64, native byte order.
template <class F> void dispatch_param(const py::array &param, F &&f) {
  if (py::isinstance<py::array_t<float>>(param))
    return f(float{});
  if (py::isinstance<py::array_t<double>>(param))
    return f(double{});
  throw py::type_error("param must have dtype float32 or float64, got " +
                       dtype_name(param) +
                       "; convert it (and its state) with "
                       ".astype(np.float32) or .astype(np.float64).");
}

// The kernels read and write through restrict pointers, one element at a time:
// arrays that share memory would be read after being written.
void check_disjoint(const std::vector<std::pair<const char *, const py::array *>> &as) {
  for (std::size_t i = 0; i < as.size(); ++i)
    for (std::size_t j = i + 1; j < as.size(); ++j) {
      const auto *a = static_cast<const char *>(as[i].second->data());
      const auto *b = static_cast<const char *>(as[j].second->data());
      const auto a_end = a + as[i].second->nbytes();
      const auto b_end = b + as[j].second->nbytes();
      if (a < b_end && b < a_end)
        throw std::invalid_argument(std::string(as[i].first) + " and " + as[j].first +
                                    " share memory; pass separate arrays.");
    }
}

template <class T> T *mutable_ptr(const py::array &a) {
  return static_cast<T *>(const_cast<void *>(a.data()));
}

void sgd_step(const py::array &param, const py::array &grad,
              const std::optional<py::array> &momentum_buffer, double lr,
              double momentum, double dampening, bool nesterov, double weight_decay,
              bool maximize, bool first_step, int n_threads) {
  check_threads(n_threads);
  dispatch_param(param, [&](auto value_type) {
    using T = decltype(value_type);
    const py::ssize_t n = param.ndim() == 1 ? param.shape(0) : 0;
    check_operand<T>(param, "param", true, n);
    check_operand<T>(grad, "grad", false, n);
    std::vector<std::pair<const char *, const py::array *>> arrays{{"param", &param},
                                                                   {"grad", &grad}};
    T *buf = nullptr;
    if (momentum != 0.0) {
      if (!momentum_buffer)
        throw std::invalid_argument(
            "momentum_buffer must be an array when momentum != 0, got None.");
      check_operand<T>(*momentum_buffer, "momentum_buffer", true, n);
      arrays.emplace_back("momentum_buffer", &*momentum_buffer);
      buf = mutable_ptr<T>(*momentum_buffer);
    }
    check_disjoint(arrays);
    const go::SgdOptions options{lr,       momentum, dampening, weight_decay,
                                 nesterov, maximize, first_step};
    T *p = mutable_ptr<T>(param);
    const T *g = static_cast<const T *>(grad.data());
    // Safe: only the buffers of arrays referenced by the caller's arguments are
    // touched, and no Python object.
    py::gil_scoped_release release;
    go::sgd_step<T>(p, g, buf, n, options, n_threads);
  });
}

void adam_step(const py::array &param, const py::array &grad, const py::array &exp_avg,
               const py::array &exp_avg_sq,
               const std::optional<py::array> &max_exp_avg_sq, std::int64_t step,
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool maximize, int n_threads) {
  check_threads(n_threads);
  if (step < 1)
    throw std::invalid_argument("step must be >= 1 (the count after this step), got " +
                                std::to_string(step) + ".");
  dispatch_param(param, [&](auto value_type) {
    using T = decltype(value_type);
    const py::ssize_t n = param.ndim() == 1 ? param.shape(0) : 0;
    check_operand<T>(param, "param", true, n);
    check_operand<T>(grad, "grad", false, n);
    check_operand<T>(exp_avg, "exp_avg", true, n);
    check_operand<T>(exp_avg_sq, "exp_avg_sq", true, n);
    std::vector<std::pair<const char *, const py::array *>> arrays{
        {"param", &param},
        {"grad", &grad},
        {"exp_avg", &exp_avg},
        {"exp_avg_sq", &exp_avg_sq}};
    T *vmax = nullptr;
    if (max_exp_avg_sq) {
      check_operand<T>(*max_exp_avg_sq, "max_exp_avg_sq", true, n);
      arrays.emplace_back("max_exp_avg_sq", &*max_exp_avg_sq);
      vmax = mutable_ptr<T>(*max_exp_avg_sq);
    }
    check_disjoint(arrays);
    go::AdamOptions options;
    options.step = step;
    options.lr = lr;
    options.beta1 = beta1;
    options.beta2 = beta2;
    options.eps = eps;
    options.weight_decay = weight_decay;
    options.decoupled = decoupled;
    options.maximize = maximize;
    T *p = mutable_ptr<T>(param);
    const T *g = static_cast<const T *>(grad.data());
    T *m = mutable_ptr<T>(exp_avg);
    T *v = mutable_ptr<T>(exp_avg_sq);
    // Safe: only the buffers of arrays referenced by the caller's arguments are
    // touched, and no Python object.
    py::gil_scoped_release release;
    go::adam_step<T>(p, g, m, v, vmax, n, options, n_threads);
  });
}

} // namespace

void register_optim(py::module_ &m) {
  using py::arg;
  m.def("sgd_step", &sgd_step, arg("param"), arg("grad"),
        arg("momentum_buffer").none(true), arg("lr"), arg("momentum"), arg("dampening"),
        arg("nesterov"), arg("weight_decay"), arg("maximize"), arg("first_step"),
        arg("n_threads"),
        "torch.optim.SGD on one 1-D array, in place; see gradkit/_core.pyi.");
  m.def("adam_step", &adam_step, arg("param"), arg("grad"), arg("exp_avg"),
        arg("exp_avg_sq"), arg("max_exp_avg_sq").none(true), arg("step"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("decoupled"),
        arg("maximize"), arg("n_threads"),
        "torch.optim.Adam / AdamW on one 1-D array, in place; see gradkit/_core.pyi.");
}
