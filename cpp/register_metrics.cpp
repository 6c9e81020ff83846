// Bindings of gradkit._core.metrics: check shapes with the GIL held, then release it
// around the kernels of gradkit/metrics.hpp. The contract is python/gradkit/_core.pyi.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gradkit/metrics.hpp"
#include "register.hpp"

namespace py = pybind11;
namespace gm = gradkit::metrics;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;
using weights_t = std::optional<carray<double>>;

std::string dtype_name(const py::array &a) {
  return py::str(a.dtype()).cast<std::string>();
}

// Which of the label dtypes a is; bool counts as uint8 (the same bytes).
enum class LabelType { kInt32, kInt64, kUInt8, kFloat32, kFloat64, kOther };

LabelType label_type(const py::array &a) {
  const char kind = a.dtype().kind();
  const auto size = a.dtype().itemsize();
  if (kind == 'i' && size == 4)
    return LabelType::kInt32;
  if (kind == 'i' && size == 8)
    return LabelType::kInt64;
  if ((kind == 'u' || kind == 'b') && size == 1)
    return LabelType::kUInt8;
  if (kind == 'f' && size == 4)
    return LabelType::kFloat32;
  if (kind == 'f' && size == 8)
    return LabelType::kFloat64;
  return LabelType::kOther;
}

// Calls f(T{}) with T the float type of a (float32 or float64).
template <class F> auto dispatch_float(const py::array &a, const char *name, F &&f) {
  switch (label_type(a)) {
  case LabelType::kFloat32:
    return f(float{});
  case LabelType::kFloat64:
    return f(double{});
  default:
    throw py::type_error(std::string(name) +
                         " must have dtype float32 or float64, got " + dtype_name(a) +
                         "; convert it with .astype(np.float64).");
  }
}

void check_threads(int n_threads) {
  if (n_threads < 1)
    throw std::invalid_argument("n_threads must be >= 1, got " +
                                std::to_string(n_threads) + ".");
}

void check_ndim(const py::array &a, const char *name, py::ssize_t ndim) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) +
                                "-D, got " + std::to_string(a.ndim()) + " dimensions.");
}

// a has n rows, as many as the array named `of`.
void check_rows(const py::array &a, const char *name, py::ssize_t n,
                const char *of = "y_true") {
  if (a.shape(0) != n)
    throw std::invalid_argument(std::string(name) + " has " +
                                std::to_string(a.shape(0)) + " rows, expected " +
                                std::to_string(n) + " (the length of " + of + ").");
}

// The data of an optional 1-D weight array of n rows, or nullptr.
const double *weight_data(const weights_t &w, py::ssize_t n,
                          const char *of = "y_true") {
  if (!w)
    return nullptr;
  check_ndim(*w, "sample_weight", 1);
  check_rows(*w, "sample_weight", n, of);
  return w->data();
}

template <class T>
py::tuple label_table_typed(const py::array &y_true_any, const py::array &y_pred_any,
                            const weights_t &sample_weight, std::int64_t lo,
                            std::int64_t width, int n_threads) {
  const carray<T> y_true = carray<T>::ensure(y_true_any);
  const carray<T> y_pred = carray<T>::ensure(y_pred_any);
  if (!y_true || !y_pred)
    throw py::type_error("y_true and y_pred could not be read as arrays.");
  check_ndim(y_true, "y_true", 1);
  check_ndim(y_pred, "y_pred", 1);
  const py::ssize_t n = y_true.shape(0);
  check_rows(y_pred, "y_pred", n);
  const double *w = weight_data(sample_weight, n);
  if (width < 0 || width > gm::kMaxTableWidth)
    throw std::invalid_argument("width must be in [0, 2**30], got " +
                                std::to_string(width) + ".");
  // np.zeros: the kernel adds into the tables, and a large one costs memory only
  // where rows land (calloc'd pages), so a wide table of few rows stays cheap.
  const py::object zeros = py::module_::import("numpy").attr("zeros");
  const py::tuple shape = py::make_tuple(width, width);
  py::array_t<std::int64_t> counts = zeros(shape, "int64");
  py::object weighted_out = py::none();
  double *weighted = nullptr;
  if (w) {
    py::array_t<double> weighted_array = zeros(shape, "float64");
    weighted = weighted_array.mutable_data();
    weighted_out = std::move(weighted_array);
  }
  std::int64_t *counts_data = counts.mutable_data();
  gm::LabelTableSummary summary;
  {
    // Safe: the kernel reads and writes only the buffers of arrays this frame keeps
    // alive, and touches no Python object.
    py::gil_scoped_release release;
    summary = gm::label_table(y_true.data(), y_pred.data(), w, n, lo, width, n_threads,
                              counts_data, weighted);
  }
  return py::make_tuple(counts, weighted_out, summary.n_outside, summary.vmin,
                        summary.vmax, summary.status);
}

py::tuple label_table(const py::array &y_true, const py::array &y_pred,
                      const weights_t &sample_weight, std::int64_t lo,
                      std::int64_t width, int n_threads) {
  check_threads(n_threads);
  const LabelType type = label_type(y_true);
  if (type == LabelType::kOther)
    throw py::type_error("y_true must have dtype int32, int64, uint8, float32 or "
                         "float64, got " +
                         dtype_name(y_true) + ".");
  if (label_type(y_pred) != type)
    throw py::type_error("y_pred must have the same dtype as y_true (" +
                         dtype_name(y_true) + "), got " + dtype_name(y_pred) + ".");
  switch (type) {
  case LabelType::kInt32:
    return label_table_typed<std::int32_t>(y_true, y_pred, sample_weight, lo, width,
                                           n_threads);
  case LabelType::kInt64:
    return label_table_typed<std::int64_t>(y_true, y_pred, sample_weight, lo, width,
                                           n_threads);
  case LabelType::kUInt8:
    return label_table_typed<std::uint8_t>(y_true, y_pred, sample_weight, lo, width,
                                           n_threads);
  case LabelType::kFloat32:
    return label_table_typed<float>(y_true, y_pred, sample_weight, lo, width,
                                    n_threads);
  default:
    return label_table_typed<double>(y_true, y_pred, sample_weight, lo, width,
                                     n_threads);
  }
}

// The checked inputs of a binary ranking kernel: y_true as uint8, y_score as S.
template <class S> struct BinaryInputs {
  carray<std::uint8_t> y_true;
  carray<S> y_score;
  const double *w;
  py::ssize_t n;
};

template <class S>
BinaryInputs<S> binary_inputs(const carray<std::uint8_t> &y_true,
                              const py::array &y_score_any,
                              const weights_t &sample_weight, int n_threads) {
  check_threads(n_threads);
  carray<S> y_score = carray<S>::ensure(y_score_any);
  if (!y_score)
    throw py::type_error("y_score could not be read as an array.");
  check_ndim(y_true, "y_true", 1);
  check_ndim(y_score, "y_score", 1);
  const py::ssize_t n = y_true.shape(0);
  check_rows(y_score, "y_score", n);
  return {y_true, std::move(y_score), weight_data(sample_weight, n), n};
}

py::tuple binary_curve(const carray<std::uint8_t> &y_true, const py::array &y_score,
                       const weights_t &sample_weight, int n_threads) {
  return dispatch_float(y_score, "y_score", [&](auto score_type) {
    using S = decltype(score_type);
    const auto in = binary_inputs<S>(y_true, y_score, sample_weight, n_threads);
    py::array_t<double> fps(in.n), tps(in.n), thresholds(in.n);
    double *f = fps.mutable_data(), *t = tps.mutable_data(),
           *th = thresholds.mutable_data();
    std::int64_t m;
    {
      // Safe: only buffers of arrays held by this frame are touched, no Python object.
      py::gil_scoped_release release;
      m = gm::binary_curve(in.y_true.data(), in.y_score.data(), in.w, in.n, n_threads,
                           f, t, th);
    }
    if (m != in.n) {
      // Shrink in place (a realloc): these arrays are new and referenced only here.
      for (py::array_t<double> *a : {&fps, &tps, &thresholds})
        a->attr("resize")(m, py::arg("refcheck") = false);
    }
    return py::make_tuple(fps, tps, thresholds);
  });
}

py::tuple binary_auc(const carray<std::uint8_t> &y_true, const py::array &y_score,
                     const weights_t &sample_weight, int n_threads) {
  return dispatch_float(y_score, "y_score", [&](auto score_type) {
    using S = decltype(score_type);
    const auto in = binary_inputs<S>(y_true, y_score, sample_weight, n_threads);
    gm::AucResult r;
    {
      // Safe: only buffers of arrays held by this frame are touched, no Python object.
      py::gil_scoped_release release;
      r = gm::binary_auc(in.y_true.data(), in.y_score.data(), in.w, in.n, n_threads);
    }
    return py::make_tuple(r.auc, r.pos_weight, r.neg_weight);
  });
}

py::tuple binary_average_precision(const carray<std::uint8_t> &y_true,
                                   const py::array &y_score,
                                   const weights_t &sample_weight, int n_threads,
                                   double tp_offset, double fp_offset) {
  return dispatch_float(y_score, "y_score", [&](auto score_type) {
    using S = decltype(score_type);
    const auto in = binary_inputs<S>(y_true, y_score, sample_weight, n_threads);
    gm::ApResult r;
    {
      // Safe: only buffers of arrays held by this frame are touched, no Python object.
      py::gil_scoped_release release;
      r = gm::binary_average_precision(in.y_true.data(), in.y_score.data(), in.w, in.n,
                                       n_threads, tp_offset, fp_offset);
    }
    return py::make_tuple(r.ap, r.pos_weight);
  });
}

py::tuple range_partition(const carray<std::uint8_t> &y_true,
                          const carray<double> &y_score, const weights_t &sample_weight,
                          const carray<double> &bounds) {
  check_ndim(y_true, "y_true", 1);
  check_ndim(y_score, "y_score", 1);
  check_ndim(bounds, "bounds", 1);
  const py::ssize_t n = y_true.shape(0);
  check_rows(y_score, "y_score", n);
  const double *w = weight_data(sample_weight, n);
  const py::ssize_t m = bounds.shape(0);
  if (m > gm::kMaxRangeBounds)
    throw std::invalid_argument(
        "bounds has " + std::to_string(m) + " entries, at most " +
        std::to_string(gm::kMaxRangeBounds) +
        " are allowed (range ids are uint8); use fewer ranges.");
  const double *b = bounds.data();
  for (py::ssize_t j = 0; j < m; ++j)
    if (std::isnan(b[j]) || (j > 0 && b[j - 1] > b[j]))
      throw std::invalid_argument("bounds must be sorted ascending, without NaN; "
                                  "bounds[" +
                                  std::to_string(j) + "] is not; sort them first.");
  py::array_t<std::uint8_t> codes_out(n);
  py::array_t<double> scores_out(n);
  py::object weights_obj = py::none();
  double *weights_out = nullptr;
  if (w) {
    py::array_t<double> weights_array(n);
    weights_out = weights_array.mutable_data();
    weights_obj = std::move(weights_array);
  }
  py::array_t<std::int64_t> sizes(m + 1);
  py::array_t<double> label_weights({m + 1, py::ssize_t{2}});
  std::uint8_t *c = codes_out.mutable_data();
  double *s = scores_out.mutable_data(), *lw = label_weights.mutable_data();
  std::int64_t *z = sizes.mutable_data();
  {
    // Safe: only buffers of arrays held by this frame are touched, no Python object.
    py::gil_scoped_release release;
    gm::range_partition(y_true.data(), y_score.data(), w, n, b, m, c, s, weights_out, z,
                        lw);
  }
  return py::make_tuple(codes_out, scores_out, weights_obj, sizes, label_weights);
}

py::tuple log_loss_sum(const carray<std::int64_t> &y_index, const py::array &y_prob,
                       const weights_t &sample_weight, double eps, int n_threads) {
  check_threads(n_threads);
  return dispatch_float(y_prob, "y_prob", [&](auto prob_type) {
    using P = decltype(prob_type);
    const carray<P> prob = carray<P>::ensure(y_prob);
    if (!prob)
      throw py::type_error("y_prob could not be read as an array.");
    check_ndim(y_index, "y_index", 1);
    if (prob.ndim() != 1 && prob.ndim() != 2)
      throw std::invalid_argument("y_prob must be 1-D or 2-D, got " +
                                  std::to_string(prob.ndim()) + " dimensions.");
    const py::ssize_t n = y_index.shape(0);
    check_rows(prob, "y_prob", n, "y_index");
    const double *w = weight_data(sample_weight, n, "y_index");
    const bool one_column = prob.ndim() == 1;
    const std::int64_t k = one_column ? 2 : prob.shape(1);
    gm::LossSum r;
    {
      // Safe: only buffers of arrays held by this frame are touched, no Python object.
      py::gil_scoped_release release;
      r = gm::log_loss_sum(y_index.data(), prob.data(), w, n, k, one_column, eps,
                           n_threads);
    }
    if (r.bad_index)
      throw std::invalid_argument("y_index must hold class indices in [0, " +
                                  std::to_string(k) + "), the columns of y_prob.");
    return py::make_tuple(r.loss, r.weight);
  });
}

py::tuple regression_stats(const carray<double> &y_true, const carray<double> &y_pred,
                           const weights_t &sample_weight, int n_threads) {
  check_threads(n_threads);
  check_ndim(y_true, "y_true", 2);
  check_ndim(y_pred, "y_pred", 2);
  const py::ssize_t n = y_true.shape(0), k = y_true.shape(1);
  if (y_pred.shape(0) != n || y_pred.shape(1) != k)
    throw std::invalid_argument("y_pred must have the shape of y_true (" +
                                std::to_string(n) + ", " + std::to_string(k) +
                                "), got (" + std::to_string(y_pred.shape(0)) + ", " +
                                std::to_string(y_pred.shape(1)) + ").");
  const double *w = weight_data(sample_weight, n);
  py::array_t<double> sse(k), sae(k), mean_true(k), ss_tot(k);
  double *sse_d = sse.mutable_data(), *sae_d = sae.mutable_data(),
         *mean_d = mean_true.mutable_data(), *ss_d = ss_tot.mutable_data();
  double sum_w;
  {
    // Safe: only buffers of arrays held by this frame are touched, no Python object.
    py::gil_scoped_release release;
    sum_w = gm::regression_stats(y_true.data(), y_pred.data(), w, n, k, n_threads,
                                 sse_d, sae_d, mean_d, ss_d);
  }
  return py::make_tuple(sum_w, sse, sae, mean_true, ss_tot);
}

bool all_finite(const py::array &x_any, int n_threads) {
  check_threads(n_threads);
  return dispatch_float(x_any, "x", [&](auto value_type) {
    using T = decltype(value_type);
    const carray<T> x = carray<T>::ensure(x_any);
    if (!x)
      throw py::type_error("x could not be read as an array.");
    const T *data = x.data();
    const std::int64_t n = x.size();
    // Safe: only the buffer of x, held by this frame, is read; no Python object.
    py::gil_scoped_release release;
    return gm::all_finite(data, n, n_threads);
  });
}

} // namespace

void register_metrics(py::module_ &m) {
  using py::arg;
  m.def("label_table", &label_table, arg("y_true"), arg("y_pred"),
        arg("sample_weight").none(true), arg("lo"), arg("width"), arg("n_threads"),
        "Joint counts of two 1-D integer-valued label arrays; see gradkit/_core.pyi.");
  m.def("binary_curve", &binary_curve, arg("y_true"), arg("y_score"),
        arg("sample_weight").none(true), arg("n_threads"),
        "(fps, tps, thresholds) of a binary problem; see gradkit/_core.pyi.");
  m.def("binary_auc", &binary_auc, arg("y_true"), arg("y_score"),
        arg("sample_weight").none(true), arg("n_threads"),
        "(auc, pos_weight, neg_weight) of a binary problem; see gradkit/_core.pyi.");
  m.def("binary_average_precision", &binary_average_precision, arg("y_true"),
        arg("y_score"), arg("sample_weight").none(true), arg("n_threads"),
        arg("tp_offset") = 0.0, arg("fp_offset") = 0.0,
        "(ap, pos_weight) of a binary problem; see gradkit/_core.pyi.");
  m.def("range_partition", &range_partition, arg("y_true"), arg("y_score"),
        arg("sample_weight").none(true), arg("bounds"),
        "The rows grouped by score range, stably; see gradkit/_core.pyi.");
  m.def("log_loss_sum", &log_loss_sum, arg("y_index"), arg("y_prob"),
        arg("sample_weight").none(true), arg("eps"), arg("n_threads"),
        "(sum of w * clipped log loss, sum of w); see gradkit/_core.pyi.");
  m.def("regression_stats", &regression_stats, arg("y_true"), arg("y_pred"),
        arg("sample_weight").none(true), arg("n_threads"),
        "(sum_w, sse, sae, mean_true, ss_tot) of 2-D arrays; see gradkit/_core.pyi.");
  m.def("all_finite", &all_finite, arg("x"), arg("n_threads"),
        "True when no element of x is NaN or inf; see gradkit/_core.pyi.");
}
