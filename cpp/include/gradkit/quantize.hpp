// Quantization kernels: header-only, float32 in, one (scale, zero_point) per row,
// never touching Python.
//
// The contract of every kernel is the docstring of its namesake in
// python/gradkit/_core.pyi (class _Compress). The parameters follow torch's MinMax
// observers (torch/ao/quantization/observer.py, _calculate_qparams) operation by
// operation in float32, and the values torch's two CPU quantize paths:
// quantize_per_channel multiplies by the inverse scale and adds the zero point with
// two roundings, quantize_per_tensor (fbgemm's AVX kernel) fuses them into one fma.
// The build sets -ffp-contract=off, so the unfused path stays unfused and the fused
// one is written out with std::fma.
//
// Nothing is summed: min, max, products and roundings are exact functions of their
// inputs, so every result is independent of the thread count and of how the work is
// split, which lets rows be cut wherever the threads need.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gradkit/parallel.hpp"

namespace gradkit::compress {

// The integer range and scheme of a quantization; -128 <= qmin < qmax <= 255 (the
// binding checks it).
struct QuantSpec {
  int qmin = -128;
  int qmax = 127;
  bool symmetric = true;
  bool fma_rounding = false; // quantize_per_tensor's rounding, else per channel's
};

// The parameters of one row.
struct RowParams {
  float scale;
  std::int32_t zero_point;
};

namespace detail {

// Independent accumulators per reduction: a multiple of the widest vector (16
// floats), so the compiler keeps them in registers and the loop is not bound by the
// latency of one min after another.
inline constexpr int kLanes = 32;

// 1.5 * 2**23: for |y| <= 2**22, (y + kRoundMagic) - kRoundMagic is y rounded to an
// integer, half to even, by the float adder itself. It vectorizes everywhere, where
// std::nearbyint becomes a library call unless the target has a rounding
// instruction.
inline constexpr float kRoundMagic = 12582912.0f;

struct MinMax {
  float lo, hi;
};

// Min and max of p[0, n), n >= 1. The comparisons are written as selects, which
// the compiler maps to vector min/max; std::min on floats would not vectorize
// without -ffinite-math-only.
inline MinMax segment_minmax(const float *GRADKIT_RESTRICT p, std::int64_t n) {
  float lo[kLanes], hi[kLanes];
  for (int l = 0; l < kLanes; ++l)
    lo[l] = hi[l] = p[0];
  std::int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float v = p[j + l];
      lo[l] = v < lo[l] ? v : lo[l];
      hi[l] = v > hi[l] ? v : hi[l];
    }
  for (int l = 0; j + l < n; ++l) {
    const float v = p[j + l];
    lo[l] = v < lo[l] ? v : lo[l];
    hi[l] = v > hi[l] ? v : hi[l];
  }
  MinMax r{lo[0], hi[0]};
  for (int l = 1; l < kLanes; ++l) {
    r.lo = lo[l] < r.lo ? lo[l] : r.lo;
    r.hi = hi[l] > r.hi ? hi[l] : r.hi;
  }
  return r;
}

inline MinMax combine(MinMax a, MinMax b) {
  return {b.lo < a.lo ? b.lo : a.lo, b.hi > a.hi ? b.hi : a.hi};
}

// q = clamp(rne(x * inv + z), qmin, qmax) for p[0, n), the sum rounded as the spec
// says. Clamping before rounding gives the same integer (the bounds are integers and
// rounding is monotonic) and keeps y in the magic constant's range, whatever x, inv
// and z are; a NaN becomes qmin instead of an undefined conversion.
template <bool kFused, class Q>
inline void quantize_segment(const float *GRADKIT_RESTRICT x, std::int64_t n, float inv,
                             float z, float qmin, float qmax, Q *GRADKIT_RESTRICT out) {
  for (std::int64_t j = 0; j < n; ++j) {
    float y;
    if constexpr (kFused) {
      y = std::fma(x[j], inv, z);
    } else {
      const float scaled = x[j] * inv;
      y = scaled + z;
    }
    y = y > qmin ? y : qmin;
    y = y < qmax ? y : qmax;
    const float rounded = (y + kRoundMagic) - kRoundMagic;
    out[j] = static_cast<Q>(static_cast<std::int32_t>(rounded));
  }
}

template <class Q>
inline void quantize_segment(const float *x, std::int64_t n, const RowParams &p,
                             const QuantSpec &spec, Q *out) {
  const float inv = 1.0f / p.scale;
  const float z = static_cast<float>(p.zero_point);
  const float qmin = static_cast<float>(spec.qmin);
  const float qmax = static_cast<float>(spec.qmax);
  if (spec.fma_rounding)
    quantize_segment<true>(x, n, inv, z, qmin, qmax, out);
  else
    quantize_segment<false>(x, n, inv, z, qmin, qmax, out);
}

// q - zero_point, converted to float once. The difference is formed in 32 bits when
// it cannot overflow there (any |zero_point| <= 2**30, which covers every zero point
// the quantizer makes), so the loop vectorizes at full width; the 64-bit path only
// serves zero points nobody should pass but that must not overflow either.
template <class Q>
inline void dequantize_segment(const Q *GRADKIT_RESTRICT q, std::int64_t n, float scale,
                               std::int32_t zero_point, float *GRADKIT_RESTRICT out) {
  if (zero_point >= -(1 << 30) && zero_point <= (1 << 30)) {
    for (std::int64_t j = 0; j < n; ++j)
      out[j] = static_cast<float>(static_cast<std::int32_t>(q[j]) - zero_point) * scale;
  } else {
    for (std::int64_t j = 0; j < n; ++j)
      out[j] = static_cast<float>(static_cast<std::int64_t>(q[j]) - zero_point) * scale;
  }
}

// Calls f(row, begin, end) for every row that [first, last) of the flattened r x c
// array meets, with [begin, end) the columns of that row inside it.
template <class F>
inline void for_each_row_segment(std::int64_t c, std::int64_t first, std::int64_t last,
                                 F &&f) {
  if (first >= last)
    return;
  for (std::int64_t row = first / c; row * c < last; ++row) {
    const std::int64_t begin = std::max(first - row * c, std::int64_t{0});
    const std::int64_t end = std::min(last - row * c, c);
    f(row, begin, end);
  }
}

} // namespace detail

// torch's _calculate_qparams for one row range [lo, hi], every operation rounded to
// float32 as torch's float32 tensors round it.
inline RowParams row_params(float lo, float hi, const QuantSpec &spec) {
  const float eps = std::numeric_limits<float>::epsilon();
  const float min_neg = lo < 0.0f ? lo : 0.0f;
  const float max_pos = hi > 0.0f ? hi : 0.0f;
  if (spec.symmetric) {
    // (qmax - qmin) / 2 is a Python float in torch; a half-integer, exact in float.
    const float half_range = static_cast<float>(spec.qmax - spec.qmin) / 2.0f;
    const float bound = -min_neg > max_pos ? -min_neg : max_pos;
    const float scale = bound / half_range;
    return {scale > eps ? scale : eps,
            spec.qmin < 0 ? 0 : (spec.qmin + spec.qmax + 1) / 2};
  }
  float scale = (max_pos - min_neg) / static_cast<float>(spec.qmax - spec.qmin);
  scale = scale > eps ? scale : eps;
  // In double, clamped before the conversion: an inconsistent range (lo > hi, or
  // not finite) gives a huge or NaN quotient, which must not reach an int cast.
  const double zero_point =
      spec.qmin - static_cast<double>(std::nearbyint(min_neg / scale));
  const double clamped = zero_point > spec.qmin
                             ? (zero_point < spec.qmax ? zero_point : spec.qmax)
                             : spec.qmin;
  return {scale, static_cast<std::int32_t>(clamped)};
}

// Min and max of each row of the r x c float32 x (r, c >= 1) into lo and hi.
//
// The flattened array is cut into equal element ranges, one per thread, wherever
// the cuts fall: rows are whole inside a range except at its two ends, so one huge
// row (per tensor) is as parallel as many small ones. A row cut by the ranges gets
// one partial result from each, combined after the join.
inline void row_minmax(const float *x, std::int64_t r, std::int64_t c, float *lo,
                       float *hi, int n_threads) {
  const std::int64_t n = r * c;
  const int t = chunk_count(n, n_threads);
  struct Partial {
    std::int64_t row;
    detail::MinMax mm;
  };
  std::vector<std::vector<Partial>> partials(t);
  for_each_chunk(n, t, [&](int i, std::int64_t first, std::int64_t last) {
    detail::for_each_row_segment(
        c, first, last, [&](std::int64_t row, std::int64_t begin, std::int64_t end) {
          const detail::MinMax mm =
              detail::segment_minmax(x + row * c + begin, end - begin);
          if (begin == 0 && end == c) {
            lo[row] = mm.lo;
            hi[row] = mm.hi;
          } else {
            partials[i].push_back({row, mm});
          }
        });
  });
  // The cut rows, in row order: chunk by chunk, each chunk's in increasing rows.
  std::int64_t open_row = -1;
  detail::MinMax open{};
  for (const auto &chunk : partials)
    for (const Partial &p : chunk) {
      if (p.row == open_row) {
        open = detail::combine(open, p.mm);
      } else {
        if (open_row >= 0) {
          lo[open_row] = open.lo;
          hi[open_row] = open.hi;
        }
        open_row = p.row;
        open = p.mm;
      }
    }
  if (open_row >= 0) {
    lo[open_row] = open.lo;
    hi[open_row] = open.hi;
  }
}

// Quantizes each row of the r x c float32 x (r, c >= 1) into out, with the range of
// row i [lo[i], hi[i]], or, when lo and hi are null, the row's own min and max;
// writes each row's parameters to scale and zero_point. Q is int8 or uint8.
template <class Q>
void quantize_rows(const float *x, std::int64_t r, std::int64_t c, const float *lo,
                   const float *hi, const QuantSpec &spec, Q *out, float *scale,
                   std::int32_t *zero_point, int n_threads) {
  const std::int64_t n = r * c;
  const int t = chunk_count(n, n_threads);
  if (!lo && r >= t) {
    // One pass: the min and max of a row, then its values while the row is still
    // in L1/L2. Whole rows per thread; with r >= t the threads differ by at most
    // one row, which costs less than a separate statistics pass over x.
    for_each_chunk(r, t, [&](int, std::int64_t first, std::int64_t last) {
      for (std::int64_t row = first; row < last; ++row) {
        const float *xr = x + row * c;
        const detail::MinMax mm = detail::segment_minmax(xr, c);
        const RowParams p = row_params(mm.lo, mm.hi, spec);
        scale[row] = p.scale;
        zero_point[row] = p.zero_point;
        detail::quantize_segment(xr, c, p, spec, out + row * c);
      }
    });
    return;
  }
  std::vector<float> own_lo, own_hi;
  if (!lo) {
    // Fewer rows than threads (per tensor): a row must be shared, and its range
    // known before any part of it is quantized, so the statistics come first.
    own_lo.resize(r);
    own_hi.resize(r);
    row_minmax(x, r, c, own_lo.data(), own_hi.data(), n_threads);
    lo = own_lo.data();
    hi = own_hi.data();
  }
  for_each_chunk(n, t, [&](int, std::int64_t first, std::int64_t last) {
    detail::for_each_row_segment(
        c, first, last, [&](std::int64_t row, std::int64_t begin, std::int64_t end) {
          // Each thread computes the parameters of the rows it meets (the same
          // numbers, whoever computes them); only the thread holding a row's first
          // element writes them, so no two threads write the same place.
          const RowParams p = row_params(lo[row], hi[row], spec);
          if (begin == 0) {
            scale[row] = p.scale;
            zero_point[row] = p.zero_point;
          }
          const std::int64_t at = row * c + begin;
          detail::quantize_segment(x + at, end - begin, p, spec, out + at);
        });
  });
}

// out[i, j] = float32(q[i, j] - zero_point[i]) * scale[i] for the r x c q. Each
// thread writes its own contiguous part of out, so the first touch of a freshly
// allocated out (its page faults) is spread over the threads too.
template <class Q>
void dequantize_rows(const Q *q, std::int64_t r, std::int64_t c, const float *scale,
                     const std::int32_t *zero_point, float *out, int n_threads) {
  const std::int64_t n = r * c;
  if (n == 0)
    return;
  for_each_chunk(n, chunk_count(n, n_threads),
                 [&](int, std::int64_t first, std::int64_t last) {
                   detail::for_each_row_segment(
                       c, first, last,
                       [&](std::int64_t row, std::int64_t begin, std::int64_t end) {
                         const std::int64_t at = row * c + begin;
                         detail::dequantize_segment(q + at, end - begin, scale[row],
                                                    zero_point[row], out + at);
                       });
                 });
}

} // namespace gradkit::compress
