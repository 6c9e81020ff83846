// Bindings of gradkit._core.compress: check the arrays with the GIL held, then
// release it around the kernels of gradkit/quantize.hpp and gradkit/prune.hpp. The
// contract is python/gradkit/_core.pyi (class _Compress).
//
// Inputs of one fixed dtype come in through forcecast (a list or a strided view is
// converted, as elsewhere); inputs that choose the kernel (x of the pruning
// kernels, q) must already have one of its dtypes, and the outputs, written in
// place, must have exactly their dtype, shape and layout: a converted copy would
// silently drop what is written.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gradkit/prune.hpp"
#include "gradkit/quantize.hpp"
#include "register.hpp"

namespace py = pybind11;
namespace gc = gradkit::compress;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::string dtype_name(const py::array &a) {
  return py::str(a.dtype()).cast<std::string>();
}

template <class T> std::string dtype_name() {
  return py::str(py::dtype::of<T>()).cast<std::string>();
}

// "(4, 3)", "(5,)": a shape as numpy prints it.
std::string shape_string(const py::array &a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

void check_threads(int n_threads) {
  if (n_threads < 1)
    throw std::invalid_argument("n_threads must be >= 1, got " +
                                std::to_string(n_threads) + ".");
}

// An input of dtype T read as a C-contiguous array (converted if it must be).
template <class T> carray<T> as_input(const py::handle &a, const char *name) {
  carray<T> array = carray<T>::ensure(a);
  if (!array)
    throw py::type_error(std::string(name) + " could not be read as an array of " +
                         dtype_name<T>() + ".");
  return array;
}

void check_ndim(const py::array &a, const char *name, py::ssize_t ndim) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) +
                                "-D, got " + std::to_string(a.ndim()) + " dimensions.");
}

// A 1-D array of one value per row of the array named `of`.
void check_per_row(const py::array &a, const char *name, py::ssize_t rows,
                   const char *of) {
  check_ndim(a, name, 1);
  if (a.shape(0) != rows)
    throw std::invalid_argument(std::string(name) + " has " +
                                std::to_string(a.shape(0)) + " elements, expected " +
                                std::to_string(rows) + " (one per row of " + of + ").");
}

// An output, written in place: dtype T exactly (native byte order), C-contiguous
// and writeable.
template <class T> T *output_data(const py::array &out, const char *name) {
  if (!py::isinstance<py::array_t<T>>(out))
    throw py::type_error(std::string(name) + " must have dtype " + dtype_name<T>() +
                         ", got " + dtype_name(out) + ".");
  if (!(out.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) +
                                " must be C-contiguous; pass a new array from "
                                "np.empty (a strided view cannot be filled in place).");
  if (!out.writeable())
    throw std::invalid_argument(std::string(name) +
                                " must be writeable: the result is written into it.");
  return static_cast<T *>(const_cast<void *>(out.data()));
}

// As above, and with the shape of the input named `like`.
template <class T>
T *output_data(const py::array &out, const char *name, const py::array &like,
               const char *like_name) {
  bool same_shape = out.ndim() == like.ndim();
  for (py::ssize_t d = 0; same_shape && d < out.ndim(); ++d)
    same_shape = out.shape(d) == like.shape(d);
  if (!same_shape)
    throw std::invalid_argument(std::string(name) + " must have the shape of " +
                                like_name + " " + shape_string(like) + ", got " +
                                shape_string(out) + ".");
  return output_data<T>(out, name);
}

// The kernels read one buffer while writing the other: shared memory would make
// them read what they wrote.
void check_disjoint(const py::array &a, const char *a_name, const py::array &b,
                    const char *b_name) {
  const auto *a0 = static_cast<const char *>(a.data());
  const auto *b0 = static_cast<const char *>(b.data());
  if (a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes())
    throw std::invalid_argument(std::string(a_name) + " and " + b_name +
                                " share memory; pass separate arrays.");
}

// Calls f(T{}) with T the float type of a (float32 or float64, native order).
template <class F> auto dispatch_float(const py::array &a, const char *name, F &&f) {
  if (py::isinstance<py::array_t<float>>(a))
    return f(float{});
  if (py::isinstance<py::array_t<double>>(a))
    return f(double{});
  throw py::type_error(std::string(name) + " must have dtype float32 or float64, got " +
                       dtype_name(a) + "; convert it with .astype(np.float32).");
}

// Calls f(Q{}) with Q the integer type of q (int8 or uint8).
template <class F>
auto dispatch_quantized(const py::array &q, const char *name, F &&f) {
  if (py::isinstance<py::array_t<std::int8_t>>(q))
    return f(std::int8_t{});
  if (py::isinstance<py::array_t<std::uint8_t>>(q))
    return f(std::uint8_t{});
  throw py::type_error(std::string(name) + " must have dtype int8 or uint8, got " +
                       dtype_name(q) + ".");
}

// x of the quantization kernels: a 2-D float32 array with r >= 1 rows of c >= 1.
carray<float> rows_input(const py::object &x_any) {
  carray<float> x = as_input<float>(x_any, "x");
  check_ndim(x, "x", 2);
  if (x.shape(0) < 1 || x.shape(1) < 1)
    throw std::invalid_argument("x must have at least one row and one column, got "
                                "shape " +
                                shape_string(x) + ".");
  return x;
}

py::tuple row_minmax(const py::object &x_any, int n_threads) {
  check_threads(n_threads);
  const carray<float> x = rows_input(x_any);
  const py::ssize_t r = x.shape(0), c = x.shape(1);
  py::array_t<float> lo(r), hi(r);
  float *lo_d = lo.mutable_data(), *hi_d = hi.mutable_data();
  const float *x_d = x.data();
  {
    // Safe: only buffers of arrays held by this frame are touched, no Python object.
    py::gil_scoped_release release;
    gc::row_minmax(x_d, r, c, lo_d, hi_d, n_threads);
  }
  return py::make_tuple(lo, hi);
}

py::tuple quantize_rows(const py::object &x_any, const py::object &lo_any,
                        const py::object &hi_any, int qmin, int qmax, bool symmetric,
                        bool fma_rounding, const py::array &out, int n_threads) {
  check_threads(n_threads);
  const carray<float> x = rows_input(x_any);
  const py::ssize_t r = x.shape(0), c = x.shape(1);
  if (lo_any.is_none() != hi_any.is_none())
    throw std::invalid_argument("lo and hi must both be arrays or both be None, got " +
                                std::string(lo_any.is_none() ? "lo=None" : "hi=None") +
                                " and the other an array.");
  std::optional<carray<float>> lo, hi;
  if (!lo_any.is_none()) {
    lo = as_input<float>(lo_any, "lo");
    hi = as_input<float>(hi_any, "hi");
    check_per_row(*lo, "lo", r, "x");
    check_per_row(*hi, "hi", r, "x");
  }
  if (!(qmin < qmax))
    throw std::invalid_argument(
        "qmin must be < qmax, got qmin=" + std::to_string(qmin) +
        ", qmax=" + std::to_string(qmax) + ".");
  if (qmin < -128 || qmax > 255 || (qmin < 0 && qmax > 127))
    throw std::invalid_argument(
        "qmin and qmax must fit int8 ([-128, 127], when qmin < 0) or uint8 ([0, 255]), "
        "got qmin=" +
        std::to_string(qmin) + ", qmax=" + std::to_string(qmax) + ".");
  const gc::QuantSpec spec{qmin, qmax, symmetric, fma_rounding};
  py::array_t<float> scale(r);
  py::array_t<std::int32_t> zero_point(r);
  float *scale_d = scale.mutable_data();
  std::int32_t *zp_d = zero_point.mutable_data();
  const float *x_d = x.data();
  const float *lo_d = lo ? lo->data() : nullptr;
  const float *hi_d = hi ? hi->data() : nullptr;
  auto run = [&](auto *out_d) {
    check_disjoint(out, "out", x, "x");
    if (lo) {
      check_disjoint(out, "out", *lo, "lo");
      check_disjoint(out, "out", *hi, "hi");
    }
    // Safe: only buffers of arrays held by this frame or the caller are touched, no
    // Python object.
    py::gil_scoped_release release;
    gc::quantize_rows(x_d, r, c, lo_d, hi_d, spec, out_d, scale_d, zp_d, n_threads);
  };
  if (qmin < 0)
    run(output_data<std::int8_t>(out, "out (int8, as qmin < 0)", x, "x"));
  else
    run(output_data<std::uint8_t>(out, "out (uint8, as qmin >= 0)", x, "x"));
  return py::make_tuple(scale, zero_point);
}

void dequantize_rows(const py::array &q, const py::object &scale_any,
                     const py::object &zero_point_any, const py::array &out,
                     int n_threads) {
  check_threads(n_threads);
  dispatch_quantized(q, "q", [&](auto q_type) {
    using Q = decltype(q_type);
    const carray<Q> qc = as_input<Q>(q, "q");
    check_ndim(qc, "q", 2);
    const py::ssize_t r = qc.shape(0), c = qc.shape(1);
    const carray<float> scale = as_input<float>(scale_any, "scale");
    const carray<std::int32_t> zero_point =
        as_input<std::int32_t>(zero_point_any, "zero_point");
    check_per_row(scale, "scale", r, "q");
    check_per_row(zero_point, "zero_point", r, "q");
    float *out_d = output_data<float>(out, "out", qc, "q");
    check_disjoint(out, "out", qc, "q");
    check_disjoint(out, "out", scale, "scale");
    check_disjoint(out, "out", zero_point, "zero_point");
    const Q *q_d = qc.data();
    const float *scale_d = scale.data();
    const std::int32_t *zp_d = zero_point.data();
    // Safe: only buffers of arrays held by this frame or the caller are touched, no
    // Python object.
    py::gil_scoped_release release;
    gc::dequantize_rows(q_d, r, c, scale_d, zp_d, out_d, n_threads);
  });
}

// x of the pruning kernels: 1-D float32 or float64, taken as it is (no conversion
// to a dtype the caller did not choose), C-contiguous.
void check_prune_input(const py::array &x) {
  check_ndim(x, "x", 1);
  if (!(x.flags() & py::array::c_style))
    throw std::invalid_argument(
        "x must be C-contiguous; pass np.ascontiguousarray(x).");
}

py::tuple magnitude_threshold(const py::array &x, std::int64_t k, int n_threads) {
  check_threads(n_threads);
  return dispatch_float(x, "x", [&](auto value_type) {
    using T = decltype(value_type);
    check_prune_input(x);
    const std::int64_t n = x.shape(0);
    if (k < 1 || k > n)
      throw std::invalid_argument("k must be in [1, len(x)] = [1, " +
                                  std::to_string(n) + "], got " + std::to_string(k) +
                                  ".");
    const T *x_d = static_cast<const T *>(x.data());
    gc::MagnitudeThreshold r;
    {
      // Safe: only the buffer of x, held by the caller, is read; no Python object.
      py::gil_scoped_release release;
      r = gc::magnitude_threshold(x_d, n, k, n_threads);
    }
    return py::tuple(py::make_tuple(r.threshold, r.ties));
  });
}

py::tuple prune_mask(const py::array &x, double threshold, std::int64_t ties,
                     int n_threads) {
  check_threads(n_threads);
  if (ties < 0)
    throw std::invalid_argument("ties must be >= 0, got " + std::to_string(ties) + ".");
  return dispatch_float(x, "x", [&](auto value_type) {
    using T = decltype(value_type);
    check_prune_input(x);
    const std::int64_t n = x.shape(0);
    const T *x_d = static_cast<const T *>(x.data());
    gc::PrunePlan plan;
    {
      // Safe: only the buffer of x, held by the caller, is read; no Python object.
      py::gil_scoped_release release;
      plan = gc::prune_plan(x_d, n, threshold, ties, n_threads);
    }
    // Allocating needs the GIL, and the size of values is known only now.
    py::array_t<std::uint8_t> mask((n + 7) / 8);
    py::array_t<T> values(plan.kept());
    std::uint8_t *mask_d = mask.mutable_data();
    T *values_d = values.mutable_data();
    {
      // Safe: x is read, the two new arrays written; no Python object.
      py::gil_scoped_release release;
      gc::prune_write(plan, x_d, n, threshold, mask_d, values_d);
    }
    return py::tuple(py::make_tuple(mask, values, plan.ties_left));
  });
}

void unpack_mask(const py::object &mask_any, const py::array &values,
                 const py::array &out, int n_threads) {
  check_threads(n_threads);
  dispatch_float(values, "values", [&](auto value_type) {
    using T = decltype(value_type);
    if (!py::isinstance<py::array_t<std::uint8_t>>(mask_any))
      throw py::type_error(
          "mask must be a uint8 array (as prune_mask returns it), got " +
          std::string(py::str(py::type::handle_of(mask_any).attr("__name__"))) +
          (py::isinstance<py::array>(mask_any)
               ? " of dtype " + std::string(py::str(mask_any.attr("dtype")))
               : std::string()) +
          ".");
    const carray<std::uint8_t> mask = as_input<std::uint8_t>(mask_any, "mask");
    check_ndim(mask, "mask", 1);
    check_ndim(values, "values", 1);
    if (!(values.flags() & py::array::c_style))
      throw std::invalid_argument("values must be C-contiguous.");
    check_ndim(out, "out", 1);
    T *out_d = output_data<T>(out, "out (the dtype of values)");
    const std::int64_t n = out.shape(0);
    if (mask.shape(0) != (n + 7) / 8)
      throw std::invalid_argument(
          "mask has " + std::to_string(mask.shape(0)) + " bytes, expected " +
          std::to_string((n + 7) / 8) +
          " = (len(out) + 7) // 8 for len(out) = " + std::to_string(n) + ".");
    check_disjoint(out, "out", values, "values");
    check_disjoint(out, "out", mask, "mask");
    const std::uint8_t *mask_d = mask.data();
    const T *values_d = static_cast<const T *>(values.data());
    const std::int64_t n_values = values.shape(0);
    bool counts_match;
    {
      // Safe: only buffers of arrays held by this frame or the caller are touched,
      // no Python object.
      py::gil_scoped_release release;
      counts_match = gc::unpack_mask(mask_d, n, values_d, n_values, out_d, n_threads);
    }
    if (!counts_match)
      throw std::invalid_argument(
          "values has " + std::to_string(n_values) +
          " elements, but mask does not have that many bits set among its first " +
          std::to_string(n) + "; pass the mask and values of one prune_mask call.");
  });
}

} // namespace

void register_compress(py::module_ &m) {
  using py::arg;
  m.def("row_minmax", &row_minmax, arg("x"), arg("n_threads"),
        "(lo, hi): min and max of each row of a 2-D float32 x; see gradkit/_core.pyi.");
  m.def("quantize_rows", &quantize_rows, arg("x"), arg("lo").none(true),
        arg("hi").none(true), arg("qmin"), arg("qmax"), arg("symmetric"),
        arg("fma_rounding"), arg("out"), arg("n_threads"),
        "(scale, zero_point): quantize each row of x into out; see "
        "gradkit/_core.pyi.");
  m.def("dequantize_rows", &dequantize_rows, arg("q"), arg("scale"), arg("zero_point"),
        arg("out"), arg("n_threads"),
        "out = (q - zero_point) * scale, row by row; see gradkit/_core.pyi.");
  m.def("magnitude_threshold", &magnitude_threshold, arg("x"), arg("k"),
        arg("n_threads"),
        "(threshold, ties) of pruning the k smallest |x|; see gradkit/_core.pyi.");
  m.def("prune_mask", &prune_mask, arg("x"), arg("threshold"), arg("ties"),
        arg("n_threads"),
        "(mask, values, ties_left) of magnitude pruning; see gradkit/_core.pyi.");
  m.def("unpack_mask", &unpack_mask, arg("mask"), arg("values"), arg("out"),
        arg("n_threads"),
        "The inverse of prune_mask, into out; see gradkit/_core.pyi.");
}
