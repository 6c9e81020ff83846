// Bindings of gradkit._core.linear: check every array with the GIL held, then release
// it around the kernels of gradkit/linear.hpp. The contract is
// python/gradkit/_core.pyi.
//
// Arrays are taken with their exact dtypes (no silent conversions, which would cost a
// copy of X per call or truncate indices); a strided read-only input is copied to C
// order. Arrays updated in place must be C-contiguous, writeable numpy arrays of
// their own: a converted copy would silently lose the update.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gradkit/linear.hpp"
#include "register.hpp"

namespace py = pybind11;
namespace gl = gradkit::linear;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string dtype_name(const py::array &a) {
  return py::str(a.dtype()).cast<std::string>();
}

template <class T> std::string dtype_of() {
  return py::str(py::dtype::of<T>()).cast<std::string>();
}

std::string shape_of(const py::array &a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

py::array as_ndarray(const py::handle &obj, const char *name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array, got " +
                         py::str(py::type::handle_of(obj)).cast<std::string>() + ".");
  return py::reinterpret_borrow<py::array>(obj);
}

// A read-only input of dtype T exactly and ndim dimensions, in C order.
template <class T> carray<T> input(const py::handle &obj, const char *name, int ndim) {
  const py::array a = as_ndarray(obj, name);
  // EquivTypes with the native T: rejects other dtypes and byte-swapped ones.
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_of<T>() +
                         ", got " + dtype_name(a) + "; convert it with .astype().");
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) +
                                "-D, got shape " + shape_of(a) + ".");
  return carray<T>::ensure(a);
}

template <class T>
std::optional<carray<T>> optional_input(const py::object &obj, const char *name,
                                        int ndim) {
  if (obj.is_none())
    return std::nullopt;
  return input<T>(obj, name, ndim);
}

// An array updated in place: dtype T, the given shape, C-contiguous, writeable.
template <class T>
py::array output(const py::handle &obj, const char *name,
                 const std::vector<py::ssize_t> &shape, const char *what) {
  const py::array a = as_ndarray(obj, name);
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_of<T>() +
                         ", got " + dtype_name(a) + ".");
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i)
    same = a.shape(static_cast<py::ssize_t>(i)) == shape[i];
  if (!same)
    throw std::invalid_argument(std::string(name) + " has shape " + shape_of(a) +
                                ", expected " + what + ".");
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) +
                                " must be C-contiguous: it is updated in place.");
  if (!a.writeable())
    throw std::invalid_argument(std::string(name) +
                                " must be writeable: it is updated in place.");
  return a;
}

template <class T> T *mutable_ptr(const py::array &a) {
  return static_cast<T *>(const_cast<void *>(a.data()));
}

using Named = std::pair<const char *, const py::array *>;

// No array written in place may share memory with another array of the call: the
// kernels would read values they wrote, and a written index array could send them
// out of bounds.
void check_disjoint(const std::vector<Named> &written, const std::vector<Named> &read) {
  const auto overlap = [](const py::array &a, const py::array &b) {
    const auto *a0 = static_cast<const char *>(a.data());
    const auto *b0 = static_cast<const char *>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() &&
           b0 < a0 + a.nbytes();
  };
  for (std::size_t i = 0; i < written.size(); ++i) {
    for (std::size_t j = i + 1; j < written.size(); ++j)
      if (overlap(*written[i].second, *written[j].second))
        throw std::invalid_argument(std::string(written[i].first) + " and " +
                                    written[j].first +
                                    " share memory; pass separate "
                                    "arrays.");
    for (const auto &r : read)
      if (overlap(*written[i].second, *r.second))
        throw std::invalid_argument(std::string(written[i].first) + " and " + r.first +
                                    " share memory; pass separate arrays.");
  }
}

void check_threads(int n_threads) {
  if (n_threads < 1)
    throw std::invalid_argument("n_threads must be >= 1, got " +
                                std::to_string(n_threads) + ".");
}

// Calls f(T{}) with T the dtype of X (float32 or float64).
template <class F> auto dispatch_x(const py::handle &X, F &&f) {
  const py::array a = as_ndarray(X, "X");
  if (py::isinstance<py::array_t<float>>(a))
    return f(float{});
  if (py::isinstance<py::array_t<double>>(a))
    return f(double{});
  throw py::type_error("X must have dtype float32 or float64, got " + dtype_name(a) +
                       "; convert it with .astype(np.float64).");
}

// X, dense or CSR, checked against n rows (the length of y); d is known for dense X
// only, so CSR callers pass theirs (-1: take it from X).
template <class T> struct XInput {
  carray<T> data;
  std::optional<carray<std::int32_t>> indices;
  std::optional<carray<std::int64_t>> indptr;
  gl::Matrix<T> matrix;
  std::vector<Named> arrays() const {
    std::vector<Named> out{{"X", &data}};
    if (indices)
      out.emplace_back("X_indices", &*indices);
    if (indptr)
      out.emplace_back("X_indptr", &*indptr);
    return out;
  }
};

template <class T>
XInput<T> x_input(const py::object &X, const py::object &X_indices,
                  const py::object &X_indptr, py::ssize_t n) {
  if (X_indices.is_none() != X_indptr.is_none())
    throw std::invalid_argument("X_indices and X_indptr must both be None (dense X) or "
                                "both arrays (CSR X), got one of each.");
  XInput<T> in;
  if (X_indices.is_none()) {
    in.data = input<T>(X, "X", 2);
    if (in.data.shape(0) != n)
      throw std::invalid_argument("X has " + std::to_string(in.data.shape(0)) +
                                  " rows, expected " + std::to_string(n) +
                                  " (the length of y).");
    in.matrix = {in.data.data(), nullptr, nullptr, n, in.data.shape(1), 0};
    return in;
  }
  in.data = input<T>(X, "X", 1);
  in.indices = input<std::int32_t>(X_indices, "X_indices", 1);
  in.indptr = input<std::int64_t>(X_indptr, "X_indptr", 1);
  if (in.indices->shape(0) != in.data.shape(0))
    throw std::invalid_argument(
        "X_indices has " + std::to_string(in.indices->shape(0)) +
        " entries, expected " + std::to_string(in.data.shape(0)) +
        " (the length of the CSR data X).");
  if (in.indptr->shape(0) != n + 1)
    throw std::invalid_argument("X_indptr has " + std::to_string(in.indptr->shape(0)) +
                                " entries, expected " + std::to_string(n + 1) +
                                " (the length of y, plus 1).");
  in.matrix = {in.data.data(),  in.indices->data(), in.indptr->data(), n, -1,
               in.data.shape(0)};
  return in;
}

// The message of an InputError of a kernel.
[[noreturn]] void throw_input_error(gl::InputError error, const char *rows_name,
                                    std::int64_t n, std::int64_t d, std::int64_t k) {
  switch (error) {
  case gl::kBadRowIndex:
    throw std::invalid_argument(std::string(rows_name) +
                                " holds a row index outside [0, " + std::to_string(n) +
                                "); pass indices of rows of X.");
  case gl::kBadIndptr:
    throw std::invalid_argument(
        "X_indptr must be non-decreasing from >= 0 up to at most "
        "len(X) (the CSR row starts); it is not.");
  case gl::kBadColumnIndex:
    throw std::invalid_argument("X_indices holds a column index outside [0, " +
                                std::to_string(d) + "); pass a valid CSR matrix.");
  case gl::kBadClassLabel:
    throw std::invalid_argument("y must hold class indices, integers in [0, " +
                                std::to_string(k) +
                                "), for the multinomial loss (code 8).");
  default:
    throw std::runtime_error("unknown input error " + std::to_string(int(error)) + ".");
  }
}

double loss_grad(const py::object &X, const py::object &X_indices,
                 const py::object &X_indptr, const py::object &y_obj,
                 const py::object &sample_weight_obj, const py::object &rows_obj,
                 const py::object &coef_obj, const py::object &intercept_obj, int loss,
                 double loss_param, const py::object &grad_coef_obj,
                 const py::object &grad_intercept_obj, int n_threads) {
  check_threads(n_threads);
  if (loss < 0 || loss > 8)
    throw std::invalid_argument("loss must be a loss code in [0, 8], got " +
                                std::to_string(loss) + ".");
  const carray<double> y = input<double>(y_obj, "y", 1);
  const py::ssize_t n = y.shape(0);
  const auto sample_weight =
      optional_input<double>(sample_weight_obj, "sample_weight", 1);
  if (sample_weight && sample_weight->shape(0) != n)
    throw std::invalid_argument(
        "sample_weight has " + std::to_string(sample_weight->shape(0)) +
        " entries, expected " + std::to_string(n) + " (the length of y).");
  const auto rows = optional_input<std::int64_t>(rows_obj, "rows", 1);
  const carray<double> coef = input<double>(coef_obj, "coef", 2);
  const carray<double> intercept = input<double>(intercept_obj, "intercept", 1);
  const py::ssize_t k = coef.shape(0), d = coef.shape(1);
  if (loss != gl::kMultinomial && k != 1)
    throw std::invalid_argument("coef must have one row for the single-output loss " +
                                std::to_string(loss) + ", got shape " + shape_of(coef) +
                                ".");
  if (loss == gl::kMultinomial && k < 2)
    throw std::invalid_argument("coef must have k >= 2 rows (one per class) for the "
                                "multinomial loss, got shape " +
                                shape_of(coef) + ".");
  if (intercept.shape(0) != k)
    throw std::invalid_argument("intercept has shape " + shape_of(intercept) +
                                ", expected (" + std::to_string(k) +
                                ",) (one per row of coef).");
  const std::string grad_shape =
      "(" + std::to_string(k) + ", " + std::to_string(d) + ") (the shape of coef)";
  const py::array grad_coef =
      output<double>(grad_coef_obj, "grad_coef", {k, d}, grad_shape.c_str());
  const std::string gi_shape = "(" + std::to_string(k) + ",) (the shape of intercept)";
  const py::array grad_intercept =
      output<double>(grad_intercept_obj, "grad_intercept", {k}, gi_shape.c_str());
  check_disjoint({{"grad_coef", &grad_coef}, {"grad_intercept", &grad_intercept}}, {});
  const std::int64_t m = rows ? rows->shape(0) : n;
  return dispatch_x(X, [&](auto value_type) {
    using T = decltype(value_type);
    XInput<T> x = x_input<T>(X, X_indices, X_indptr, n);
    if (x.matrix.dense() && x.matrix.d != d)
      throw std::invalid_argument("X has " + std::to_string(x.matrix.d) +
                                  " columns but coef has shape " + shape_of(coef) +
                                  "; they must agree.");
    x.matrix.d = d;
    const gl::LossGradOptions options{loss, loss_param, k};
    double total = 0.0;
    gl::InputError error;
    {
      // Safe: the kernel touches only the buffers of arrays this frame holds, and
      // no Python object; the outputs are written after every input is read.
      py::gil_scoped_release release;
      error = gl::loss_grad<T>(
          x.matrix, y.data(), sample_weight ? sample_weight->data() : nullptr,
          rows ? rows->data() : nullptr, m, coef.data(), intercept.data(), options,
          mutable_ptr<double>(grad_coef), mutable_ptr<double>(grad_intercept),
          n_threads, total);
    }
    if (error != gl::kInputOk)
      throw_input_error(error, "rows", n, d, k);
    return total;
  });
}

py::tuple sgd_epoch(const py::object &X, const py::object &X_indices,
                    const py::object &X_indptr, const py::object &y_obj,
                    const py::object &sample_weight_obj, const py::object &order_obj,
                    const py::object &weights_obj,
                    const py::object &average_weights_obj, const py::object &l1_q_obj,
                    const py::object &state_obj, int loss, double loss_param,
                    int penalty, double alpha, double l1_ratio, int learning_rate,
                    double eta0, double power_t, double optimal_init,
                    bool fit_intercept, double intercept_decay, double weight_pos,
                    double weight_neg, std::int64_t average, bool compute_loss) {
  if (loss < 0 || loss > 7)
    throw std::invalid_argument(
        "loss must be a single-output loss code in [0, 7], got " +
        std::to_string(loss) + ".");
  if (penalty < 0 || penalty > 3)
    throw std::invalid_argument("penalty must be 0 (none), 1 (l2), 2 (l1) or 3 "
                                "(elasticnet), got " +
                                std::to_string(penalty) + ".");
  if (learning_rate < 1 || learning_rate > 4)
    throw std::invalid_argument("learning_rate must be 1 (constant), 2 (optimal), 3 "
                                "(invscaling) or 4 (adaptive), got " +
                                std::to_string(learning_rate) + ".");
  if (average < 0)
    throw std::invalid_argument("average must be >= 0, got " + std::to_string(average) +
                                ".");
  const carray<double> y = input<double>(y_obj, "y", 1);
  const py::ssize_t n = y.shape(0);
  const auto sample_weight =
      optional_input<double>(sample_weight_obj, "sample_weight", 1);
  if (sample_weight && sample_weight->shape(0) != n)
    throw std::invalid_argument(
        "sample_weight has " + std::to_string(sample_weight->shape(0)) +
        " entries, expected " + std::to_string(n) + " (the length of y).");
  const carray<std::int64_t> order = input<std::int64_t>(order_obj, "order", 1);
  const py::array state = output<double>(state_obj, "state", {10}, "(10,)");
  gl::SgdOptions options;
  options.loss = loss;
  options.loss_param = loss_param;
  options.penalty = penalty;
  options.alpha = alpha;
  options.l1_ratio = l1_ratio;
  options.learning_rate = learning_rate;
  options.eta0 = eta0;
  options.power_t = power_t;
  options.optimal_init = optimal_init;
  options.fit_intercept = fit_intercept;
  options.intercept_decay = intercept_decay;
  options.weight_pos = weight_pos;
  options.weight_neg = weight_neg;
  options.average = average;
  options.compute_loss = compute_loss;
  return dispatch_x(X, [&](auto value_type) {
    using T = decltype(value_type);
    const py::array weights_any = as_ndarray(weights_obj, "weights");
    const py::ssize_t d = weights_any.ndim() == 1 ? weights_any.shape(0) : -1;
    const std::string d_shape =
        "(" + std::to_string(d) + ",) (1-D, the dtype of X, the length of weights)";
    const py::array weights = output<T>(weights_obj, "weights", {d},
                                        "1-D (d,) with d the number of features");
    std::optional<py::array> average_weights;
    if (!average_weights_obj.is_none())
      average_weights =
          output<T>(average_weights_obj, "average_weights", {d}, d_shape.c_str());
    else if (average > 0)
      throw std::invalid_argument("average_weights must be an array when average > 0, "
                                  "got None.");
    std::optional<py::array> l1_q;
    const bool truncates = penalty == gl::kL1 || penalty == gl::kElasticNet;
    if (truncates) {
      if (l1_q_obj.is_none())
        throw std::invalid_argument("l1_q must be an array when penalty is 2 (l1) or 3 "
                                    "(elasticnet), got None.");
      l1_q = output<T>(l1_q_obj, "l1_q", {d}, d_shape.c_str());
    }
    XInput<T> x = x_input<T>(X, X_indices, X_indptr, n);
    if (x.matrix.dense() && x.matrix.d != d)
      throw std::invalid_argument("X has " + std::to_string(x.matrix.d) +
                                  " columns but weights has " + std::to_string(d) +
                                  " entries; they must agree.");
    x.matrix.d = d;
    std::vector<Named> written{{"weights", &weights}, {"state", &state}};
    if (average_weights)
      written.emplace_back("average_weights", &*average_weights);
    if (l1_q)
      written.emplace_back("l1_q", &*l1_q);
    std::vector<Named> read = x.arrays();
    read.emplace_back("y", &y);
    read.emplace_back("order", &order);
    if (sample_weight)
      read.emplace_back("sample_weight", &*sample_weight);
    check_disjoint(written, read);
    double *state_data = mutable_ptr<double>(state);
    gl::SgdState s{state_data[0], state_data[1], state_data[2], state_data[3],
                   state_data[4], state_data[5], state_data[6], state_data[7],
                   state_data[8], state_data[9]};
    gl::SgdSums sums;
    gl::InputError error;
    {
      // Safe: the kernel touches only the buffers of arrays this frame holds (none of
      // them shared, checked above), and no Python object.
      py::gil_scoped_release release;
      error = gl::sgd_epoch<T>(
          x.matrix, y.data(), sample_weight ? sample_weight->data() : nullptr,
          order.data(), order.shape(0), mutable_ptr<T>(weights),
          average_weights ? mutable_ptr<T>(*average_weights) : nullptr,
          l1_q ? mutable_ptr<T>(*l1_q) : nullptr, s, options, sums);
    }
    if (error != gl::kInputOk)
      throw_input_error(error, "order", n, d, 1);
    const double out[10] = {
        s.intercept, s.average_intercept, s.t,       s.eta,       s.u,
        s.wscale,    s.sq_norm,           s.l1_norm, s.average_a, s.average_b};
    std::copy(out, out + 10, state_data);
    return py::make_tuple(sums.sumloss, sums.objective_sum);
  });
}

} // namespace

void register_linear(py::module_ &m) {
  using py::arg;
  m.def("loss_grad", &loss_grad, arg("X"), arg("X_indices").none(true),
        arg("X_indptr").none(true), arg("y"), arg("sample_weight").none(true),
        arg("rows").none(true), arg("coef"), arg("intercept"), arg("loss"),
        arg("loss_param"), arg("grad_coef"), arg("grad_intercept"), arg("n_threads"),
        "Loss and gradient of a linear model in one pass over the rows of X (dense or "
        "CSR); returns the weighted loss sum and overwrites grad_coef and "
        "grad_intercept. See gradkit/_core.pyi.");
  m.def("sgd_epoch", &sgd_epoch, arg("X"), arg("X_indices").none(true),
        arg("X_indptr").none(true), arg("y"), arg("sample_weight").none(true),
        arg("order"), arg("weights"), arg("average_weights").none(true),
        arg("l1_q").none(true), arg("state"), arg("loss"), arg("loss_param"),
        arg("penalty"), arg("alpha"), arg("l1_ratio"), arg("learning_rate"),
        arg("eta0"), arg("power_t"), arg("optimal_init"), arg("fit_intercept"),
        arg("intercept_decay"), arg("weight_pos"), arg("weight_neg"), arg("average"),
        arg("compute_loss"),
        "One epoch of sklearn's plain SGD (1.9) over the rows order[0], order[1], ...; "
        "updates weights, average_weights, l1_q and state in place and returns "
        "(sumloss, objective_sum). See gradkit/_core.pyi.");
}
