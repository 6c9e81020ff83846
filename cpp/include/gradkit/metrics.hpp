// Metric kernels: header-only, templated on the input dtype, never touching Python.
//
// The contract of every kernel (arguments, results, semantics) is the docstring of
// its namesake in python/gradkit/_core.pyi. gradkit._numba.metrics follows the same
// plan; the orders of the float sums below are what the two backends share, and
// they depend on the thread count only through the chunk boundaries (parallel.hpp):
// - log_loss_sum and regression_stats sum rows in blocks of kSumBlock rows, adding
//   each block's sum to the chunk's running total; chunk totals are added in chunk
//   order. Inside a block, log_loss_sum (whose cost is the log) adds rows in order;
//   regression_stats spreads row r over kSumLanes partial sums (lane r % kSumLanes)
//   added as (l0 + l1) + (l2 + l3), which keeps it faster than one NumPy pass.
// - The binary ranking kernels sort the samples by decreasing score, stably, then
//   walk the tie groups: a group's weights are summed per class in row order, and
//   each group's totals are then added to the running totals (exact int64 counts
//   when unweighted, whatever the score dtype).
// - range_partition (serial) adds each (range, label) cell's weights in row order.
// - label_table adds a chunk's weights per cell, in row order within each of the
//   kLabelSubTables copies of small tables (row i in copy i % 4), copies then chunks
//   added in order; a table over kMaxChunkCells cells is counted on one thread, in
//   row order.
// Outputs are written into caller-owned buffers, so bindings can hand numpy memory.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "gradkit/parallel.hpp"
#include "gradkit/sort.hpp"

namespace gradkit::metrics {

inline constexpr std::int64_t kSumBlock = 256;
inline constexpr int kSumLanes = 4;

// ------------------------------------------------------------------ label_table

// Largest magnitude of a label that label_table reports as status 0.
inline constexpr std::int64_t kLabelLimit = std::int64_t{1} << 62;
// Largest table width, so that width * width cells and their offsets fit in int64.
inline constexpr std::int64_t kMaxTableWidth = std::int64_t{1} << 30;

enum LabelStatus : int {
  kLabelsOk = 0,
  kLabelTooLarge = 1,   // an integer beyond +-2**62
  kLabelNotInteger = 2, // a finite float with a fractional part
  kLabelNotFinite = 3,  // NaN or +-inf
};

struct LabelTableSummary {
  std::int64_t n_outside = 0;
  std::int64_t vmin = 0;
  std::int64_t vmax = -1;
  int status = kLabelsOk;
};

namespace detail {

// Rows scanned per step: the checks and min/max run vectorised over a block, then the
// block, now in L1, is counted.
inline constexpr std::int64_t kLabelBlock = 1024;
// Tables of up to kMaxSubTabledCells cells (outside included) are kept in
// kLabelSubTables copies (see count_cells).
inline constexpr int kLabelSubTables = 4;
inline constexpr std::int64_t kMaxSubTabledCells = 256;
// Cells (outside included) up to which each chunk counts in tables of its own.
inline constexpr std::int64_t kMaxChunkCells = std::int64_t{1} << 16;
// Cells (outside included) up to which an unweighted table is counted cell by cell.
inline constexpr std::size_t kVectorCells = 8;

struct LabelChunk {
  std::vector<std::int64_t> counts; // own tables: sub_tables * stride entries
  std::vector<double> weighted;
  std::int64_t outside = 0; // rows outside the table, when counting directly
  std::int64_t vmin = std::numeric_limits<std::int64_t>::max();
  std::int64_t vmax = std::numeric_limits<std::int64_t>::min();
  unsigned flags = 0; // kFlag* bits met
};

// Cell of each row of one block: (t - lo) * width + (p - lo) when both labels are in
// [lo, lo + width), else the outside cell width * width.
template <class V>
inline void label_cells(const V *t, const V *p, std::int64_t m, std::int64_t lo,
                        std::uint64_t width, std::uint64_t *cells) {
  const std::uint64_t outside = width * width;
  for (std::int64_t i = 0; i < m; ++i) {
    const std::int64_t tv = static_cast<std::int64_t>(t[i]);
    const std::int64_t pv = static_cast<std::int64_t>(p[i]);
    // unsigned differences are exact once tv >= lo, and cannot overflow
    const std::uint64_t dt =
        static_cast<std::uint64_t>(tv) - static_cast<std::uint64_t>(lo);
    const std::uint64_t dp =
        static_cast<std::uint64_t>(pv) - static_cast<std::uint64_t>(lo);
    const bool inside = (tv >= lo) & (pv >= lo) & (dt < width) & (dp < width);
    cells[i] = inside ? dt * width + dp : outside;
  }
}

// Adds the rows of one block to the tables. A tiny unweighted table is counted by
// comparing each row's cell with all kVectorCells cells at once (one SIMD compare);
// otherwise row i goes to copy i % kSub of the table, so that runs of one cell, the
// common binary case, do not chain every increment behind the previous store.
template <int kSub, bool kWeighted>
inline void count_cells(const std::uint64_t *cells, const double *w, std::int64_t m,
                        std::size_t n_cells, std::int64_t *counts, double *weighted,
                        std::size_t stride) {
  if (!kWeighted && n_cells <= kVectorCells) {
    std::int64_t lanes[kVectorCells] = {};
    for (std::int64_t i = 0; i < m; ++i)
      for (std::size_t c = 0; c < kVectorCells; ++c)
        lanes[c] += cells[i] == c;
    for (std::size_t c = 0; c < n_cells; ++c)
      counts[c] += lanes[c];
    return;
  }
  std::int64_t i = 0;
  for (; i + kSub <= m; i += kSub) {
    for (int s = 0; s < kSub; ++s) {
      counts[s * stride + cells[i + s]] += 1;
      if constexpr (kWeighted)
        weighted[s * stride + cells[i + s]] += w[i + s];
    }
  }
  for (; i < m; ++i) {
    counts[cells[i]] += 1;
    if constexpr (kWeighted)
      weighted[cells[i]] += w[i];
  }
}

// Flag bits of the label checks, and how they rank into a status.
inline constexpr unsigned kFlagTooLarge = 1, kFlagNotInteger = 2, kFlagNotFinite = 4;

// A float label as int64 for counting (exact when it is an integer in range, else 0),
// its flags (kFlag*) or-ed into `flags`. Written so that the compiler vectorises it:
// no std::trunc, no branch. Below 2**52, |x| is an integer when adding and removing
// 2**52 (which rounds it to an integer) gives it back; above, every double is one.
inline std::int64_t float_label(double x, unsigned &flags) {
  constexpr double kTwo52 = 4503599627370496.0;
  const double ax = std::fabs(x);
  const bool in_range = ax <= static_cast<double>(kLabelLimit);
  const bool finite = ax <= std::numeric_limits<double>::max();
  const bool integer = (ax >= kTwo52) | (((ax + kTwo52) - kTwo52) == ax);
  flags |= static_cast<unsigned>(!in_range) * kFlagTooLarge |
           static_cast<unsigned>(!integer) * kFlagNotInteger |
           static_cast<unsigned>(!finite) * kFlagNotFinite;
  return static_cast<std::int64_t>(in_range ? x : 0.0);
}

// Where one chunk counts: its own tables (kSub copies of stride = cells + 1 entries,
// the last one the outside cell), or, for a large table, straight into the output
// (stride = cells, outside rows counted in `outside`).
struct LabelTables {
  std::int64_t *counts;
  double *weighted;
  std::size_t stride;
  bool direct;
};

template <int kSub, bool kWeighted, class T>
void label_table_chunk(const T *y_true, const T *y_pred, const double *w,
                       std::int64_t begin, std::int64_t end, std::int64_t lo,
                       std::int64_t width, const LabelTables &tables, LabelChunk &out) {
  const std::uint64_t uwidth = static_cast<std::uint64_t>(width);
  const std::size_t n_cells = static_cast<std::size_t>(width * width);
  std::int64_t vmin = out.vmin, vmax = out.vmax;
  [[maybe_unused]] std::int64_t t_buf[kLabelBlock], p_buf[kLabelBlock];
  std::uint64_t cells[kLabelBlock];
  unsigned flags = 0;
  std::int64_t outside = 0;
  auto count = [&](std::int64_t m, const double *wb) {
    if (!tables.direct) {
      count_cells<kSub, kWeighted>(cells, wb, m, n_cells + 1, tables.counts,
                                   tables.weighted, tables.stride);
      return;
    }
    for (std::int64_t i = 0; i < m; ++i) {
      const std::uint64_t c = cells[i];
      if (c == n_cells) {
        ++outside;
        continue;
      }
      tables.counts[c] += 1;
      if constexpr (kWeighted)
        tables.weighted[c] += wb[i];
    }
  };
  for (std::int64_t b = begin; b < end; b += kLabelBlock) {
    const std::int64_t m = std::min(kLabelBlock, end - b);
    const T *t = y_true + b, *p = y_pred + b;
    const double *wb = kWeighted ? w + b : nullptr;
    if constexpr (std::is_integral_v<T>) {
      T lo_v = t[0], hi_v = t[0];
      for (std::int64_t i = 0; i < m; ++i) { // by value: std::min's refs block SIMD
        const T a = t[i], c = p[i];
        const T low = a < c ? a : c, high = a < c ? c : a;
        lo_v = low < lo_v ? low : lo_v;
        hi_v = high > hi_v ? high : hi_v;
      }
      vmin = std::min(vmin, static_cast<std::int64_t>(lo_v));
      vmax = std::max(vmax, static_cast<std::int64_t>(hi_v));
      label_cells(t, p, m, lo, uwidth, cells);
    } else {
      std::int64_t lo_v = vmin, hi_v = vmax;
      unsigned block_flags = 0;
      for (std::int64_t i = 0; i < m; ++i) {
        const std::int64_t a = float_label(static_cast<double>(t[i]), block_flags);
        const std::int64_t c = float_label(static_cast<double>(p[i]), block_flags);
        t_buf[i] = a;
        p_buf[i] = c;
        const std::int64_t low = a < c ? a : c, high = a < c ? c : a;
        lo_v = low < lo_v ? low : lo_v;
        hi_v = high > hi_v ? high : hi_v;
      }
      flags |= block_flags;
      vmin = lo_v;
      vmax = hi_v;
      label_cells(t_buf, p_buf, m, lo, uwidth, cells);
    }
    count(m, wb);
  }
  out.vmin = vmin;
  out.vmax = vmax;
  out.flags = flags;
  out.outside = outside;
}

} // namespace detail

// Joint counts of two label arrays (see _core.pyi) added into counts and weighted,
// width * width row-major buffers that the caller zeroes (weighted may be null, and
// is left alone when w is). Tables of up to kMaxChunkCells cells are counted per
// chunk, in parallel, then added up; a larger one is counted straight into counts on
// one thread, so that memory is only touched where rows land: np.zeros memory costs
// nothing until then, and a wide table of few rows stays cheap.
template <class T>
LabelTableSummary label_table(const T *y_true, const T *y_pred, const double *w,
                              std::int64_t n, std::int64_t lo, std::int64_t width,
                              int n_threads, std::int64_t *counts, double *weighted) {
  using detail::LabelTables;
  if (width < 0 || width > kMaxTableWidth)
    throw std::invalid_argument("width must be in [0, 2**30], got " +
                                std::to_string(width));
  const std::int64_t cells = width * width;
  const bool direct = cells + 1 > detail::kMaxChunkCells;
  const int sub = cells + 1 <= detail::kMaxSubTabledCells ? detail::kLabelSubTables : 1;
  const int t = direct ? 1 : chunk_count(n, n_threads);
  const std::size_t stride = static_cast<std::size_t>(direct ? cells : cells + 1);
  std::vector<detail::LabelChunk> chunks(t);
  for_each_chunk(n, t, [&](int i, std::int64_t begin, std::int64_t end) {
    auto &out = chunks[i];
    LabelTables tables{counts, w ? weighted : nullptr, stride, true};
    if (!direct) {
      out.counts.assign(sub * stride, 0);
      if (w)
        out.weighted.assign(sub * stride, 0.0);
      tables = {out.counts.data(), out.weighted.data(), stride, false};
    }
    if (sub == detail::kLabelSubTables) {
      if (w)
        detail::label_table_chunk<detail::kLabelSubTables, true>(
            y_true, y_pred, w, begin, end, lo, width, tables, out);
      else
        detail::label_table_chunk<detail::kLabelSubTables, false>(
            y_true, y_pred, w, begin, end, lo, width, tables, out);
    } else if (w && tables.weighted) {
      detail::label_table_chunk<1, true>(y_true, y_pred, w, begin, end, lo, width,
                                         tables, out);
    } else {
      detail::label_table_chunk<1, false>(y_true, y_pred, w, begin, end, lo, width,
                                          tables, out);
    }
  });

  LabelTableSummary summary;
  std::int64_t vmin = std::numeric_limits<std::int64_t>::max();
  std::int64_t vmax = std::numeric_limits<std::int64_t>::min();
  unsigned flags = 0;
  for (const auto &chunk : chunks) {
    summary.n_outside += chunk.outside;
    for (int s = 0; s < sub && !direct; ++s) {
      const std::int64_t *c = chunk.counts.data() + s * stride;
      for (std::int64_t j = 0; j < cells; ++j)
        counts[j] += c[j];
      summary.n_outside += c[cells];
      if (weighted && w) {
        const double *wc = chunk.weighted.data() + s * stride;
        for (std::int64_t j = 0; j < cells; ++j)
          weighted[j] += wc[j];
      }
    }
    vmin = std::min(vmin, chunk.vmin);
    vmax = std::max(vmax, chunk.vmax);
    flags |= chunk.flags;
  }
  if (n == 0)
    return summary; // vmin, vmax = 0, -1
  summary.vmin = vmin;
  summary.vmax = vmax;
  if (flags & detail::kFlagNotFinite)
    summary.status = kLabelNotFinite;
  else if (flags & detail::kFlagNotInteger)
    summary.status = kLabelNotInteger;
  else if ((flags & detail::kFlagTooLarge) || vmin < -kLabelLimit || vmax > kLabelLimit)
    summary.status = kLabelTooLarge;
  return summary;
}

// ------------------------------------------------------- binary ranking metrics

namespace detail {

// The samples of nonzero weight in decreasing score order. Their rank key is the
// complement of order_key(score), so ascending keys are descending scores. When the
// rank keys differ in fewer bits than a key has (scores of one sign, say), the class
// rides in the key's low bit: key = (varying bits of the rank key) << 1 | positive,
// and the sort carries no class column, which takes a quarter off its time. A tie
// group then holds its negatives before its positives, each class in row order, so
// every per-class sum is the one of the unpacked order (ties in row order).
template <class Key> struct RankedSamples {
  RadixTable<Key> packed;
  RadixTable<Key, double> packed_weighted;
  RadixTable<Key, std::uint8_t> unpacked;
  RadixTable<Key, std::uint8_t, double> unpacked_weighted;
  const Key *keys = nullptr;
  const std::uint8_t *positive = nullptr; // 1 for a positive; null when packed
  const double *weights = nullptr;        // null when unweighted
  std::int64_t n = 0;
  bool is_packed = false;
  Key top = 0; // packed: the high bits that all rank keys share
};

// The rows of a binary problem as a sort_rows source (see RankedSamples).
template <class S, bool kWeighted, bool kPacked> struct ScoreRows {
  using Key = order_key_t<S>;
  const std::uint8_t *y_true;
  const S *y_score;
  const double *w;
  Key low_mask = 0; // packed: the bits in which the rank keys differ
  bool keep(std::size_t i) const { return !kWeighted || w[i] != 0.0; }
  Key rank_key(std::size_t i) const { return static_cast<Key>(~order_key(y_score[i])); }
  Key key(std::size_t i) const {
    if constexpr (kPacked)
      return static_cast<Key>(((rank_key(i) & low_mask) << 1) | (y_true[i] != 0));
    else
      return rank_key(i);
  }
  template <class Cols>
  void write(std::size_t i, const Cols &to, std::size_t at) const {
    to.keys[at] = key(i);
    if constexpr (!kPacked)
      std::get<0>(to.payloads)[at] = y_true[i] != 0;
    if constexpr (kWeighted)
      std::get<kPacked ? 0 : 1>(to.payloads)[at] = w[i];
  }
};

template <bool kWeighted, class S>
void rank_samples_as(const std::uint8_t *y_true, const S *y_score, const double *w,
                     std::int64_t n, int n_threads,
                     RankedSamples<order_key_t<S>> &out) {
  using Key = order_key_t<S>;
  constexpr int kKeyBits = 8 * static_cast<int>(sizeof(Key));
  const ScoreRows<S, kWeighted, false> rows{y_true, y_score, w};
  const int bits = varying_key_bits<Key>(rows, n, n_threads);
  out.is_packed = bits < kKeyBits;
  auto sort = [&](const auto &source, auto &table, int key_bits) {
    out.n = static_cast<std::int64_t>(sort_rows(source, n, n_threads, table, key_bits));
    const auto columns = table.columns();
    out.keys = columns.keys;
    return columns;
  };
  if (out.is_packed) {
    const Key low_mask = static_cast<Key>((Key{1} << bits) - 1);
    std::int64_t first = 0;
    while (first < n && !rows.keep(first))
      ++first;
    out.top = first < n ? static_cast<Key>(rows.rank_key(first) & ~low_mask) : Key{0};
    const ScoreRows<S, kWeighted, true> packed{y_true, y_score, w, low_mask};
    if constexpr (kWeighted)
      out.weights = std::get<0>(sort(packed, out.packed_weighted, bits + 1).payloads);
    else
      sort(packed, out.packed, bits + 1);
  } else {
    if constexpr (kWeighted) {
      const auto columns = sort(rows, out.unpacked_weighted, bits);
      out.positive = std::get<0>(columns.payloads);
      out.weights = std::get<1>(columns.payloads);
    } else {
      out.positive = std::get<0>(sort(rows, out.unpacked, bits).payloads);
    }
  }
}

template <class S>
void rank_samples(const std::uint8_t *y_true, const S *y_score, const double *w,
                  std::int64_t n, int n_threads, RankedSamples<order_key_t<S>> &out) {
  if (w)
    rank_samples_as<true>(y_true, y_score, w, n, n_threads, out);
  else
    rank_samples_as<false>(y_true, y_score, w, n, n_threads, out);
}

// Walks the ranked samples, one tie group (distinct score) after the other in
// decreasing score order. Before every row but the first, and once at the end, it
// calls fold(closes, score, pos_g, neg_g): closes is 1 when the tie group so far (of
// that score, with totals pos_g and neg_g: int64 counts or double weight sums, each
// summed in row order) is complete, else 0. A fold takes the group in only when
// closes, by arithmetic on it rather than a branch: ties make closes a coin flip,
// and a mispredicted branch per row costs more than the whole fold. The fold is
// taken and returned by value, so its state lives in registers during the walk.
template <class Acc, bool kPacked, class Key, class Fold>
Fold walk_ranked(const RankedSamples<Key> &ranked, Fold fold) {
  const std::int64_t m = ranked.n;
  if (m == 0)
    return fold;
  const Key *keys = ranked.keys;
  const std::uint8_t *positive = ranked.positive;
  const double *w = ranked.weights;
  const Key top = ranked.top;
  auto group_of = [](Key key) { return kPacked ? static_cast<Key>(key >> 1) : key; };
  auto score = [top](Key group) {
    const Key rank_key = kPacked ? static_cast<Key>(top | group) : group;
    return static_cast<double>(key_value(static_cast<Key>(~rank_key)));
  };
  Acc pos_g = 0, neg_g = 0;
  auto add_row = [&](std::int64_t i) {
    const Acc is_positive = kPacked ? static_cast<Acc>(keys[i] & 1) : positive[i];
    if constexpr (std::is_same_v<Acc, double>) {
      pos_g += is_positive * w[i];
      neg_g += (1.0 - is_positive) * w[i];
    } else {
      pos_g += is_positive;
      neg_g += 1 - is_positive;
    }
  };
  add_row(0);
  Key previous = group_of(keys[0]);
  for (std::int64_t i = 1; i < m; ++i) {
    const Key group = group_of(keys[i]);
    const Acc closes = group != previous;
    fold(closes, score(previous), pos_g, neg_g);
    pos_g *= 1 - closes;
    neg_g *= 1 - closes;
    add_row(i);
    previous = group;
  }
  fold(Acc{1}, score(previous), pos_g, neg_g);
  return fold;
}

template <class Acc, class Key, class Fold>
Fold walk_tie_groups(const RankedSamples<Key> &ranked, Fold fold) {
  return ranked.is_packed ? walk_ranked<Acc, true>(ranked, fold)
                          : walk_ranked<Acc, false>(ranked, fold);
}

// The number of positive samples.
template <class Key> std::int64_t count_positives(const RankedSamples<Key> &ranked) {
  std::int64_t positives = 0;
  if (ranked.is_packed)
    for (std::int64_t i = 0; i < ranked.n; ++i)
      positives += ranked.keys[i] & 1;
  else
    for (std::int64_t i = 0; i < ranked.n; ++i)
      positives += ranked.positive[i];
  return positives;
}

// Twice the area under the ROC curve: the sum over tie groups of
// neg_g * (2 * pos_above + pos_g), and the class totals.
template <class Acc> struct AucFold {
  Acc area2 = 0, pos_total = 0, neg_total = 0;
  void operator()(Acc closes, double, Acc pos_g, Acc neg_g) {
    area2 += closes * (neg_g * (2 * pos_total + pos_g));
    pos_total += closes * pos_g;
    neg_total += closes * neg_g;
  }
};

// Twice the area from the normalised curve, sum of (neg_g / N) * (2 tpr_above +
// pos_g / P), for weighted input: with tiny weights the product neg_g * pos_g of
// AucFold can underflow where sklearn's normalised fpr and tpr do not.
template <class Acc> struct NormalizedAucFold {
  double pos_total, neg_total;
  double area2 = 0.0, tpr_above = 0.0;
  void operator()(Acc closes, double, Acc pos_g, Acc neg_g) {
    const double tpr_g = pos_g / pos_total;
    area2 += closes * ((neg_g / neg_total) * (2.0 * tpr_above + tpr_g));
    tpr_above += closes * tpr_g;
  }
};

// The class-1 total, group by group as the other folds add it.
template <class Acc> struct PositiveFold {
  Acc total = 0;
  void operator()(Acc closes, double, Acc pos_g, Acc) { total += closes * pos_g; }
};

// The average precision: the sum over tie groups of (pos_g / pos_total) *
// precision_g, as the contract writes it (the recall step first: pos_g * precision_g
// can underflow where the average does not, with tiny weights). The offsets are the
// weight scoring above these samples, as (tp + tp_offset) / ((tp + tp_offset) +
// (fp + fp_offset)); adding 0.0 changes no value, and the counts are exact doubles
// (below 2**53), so zero offsets give the plain precision bit for bit.
template <class Acc> struct ApFold {
  double pos_total, tp_offset = 0.0, fp_offset = 0.0;
  Acc tp = 0, fp = 0;
  double ap = 0.0;
  void operator()(Acc closes, double, Acc pos_g, Acc neg_g) {
    tp += closes * pos_g;
    fp += closes * neg_g;
    const double tps = static_cast<double>(tp) + tp_offset;
    const double predicted = tps + (static_cast<double>(fp) + fp_offset);
    const double precision = predicted != 0.0 ? tps / predicted : 0.0;
    ap += static_cast<double>(closes) *
          ((static_cast<double>(pos_g) / pos_total) * precision);
  }
};

// The curve points, written every row and kept (m advances) when a group closes.
template <class Acc> struct CurveFold {
  double *fps, *tps, *thresholds;
  Acc tp = 0, fp = 0;
  std::int64_t m = 0;
  void operator()(Acc closes, double score, Acc pos_g, Acc neg_g) {
    tp += closes * pos_g;
    fp += closes * neg_g;
    fps[m] = static_cast<double>(fp);
    tps[m] = static_cast<double>(tp);
    thresholds[m] = score;
    m += static_cast<std::int64_t>(closes);
  }
};

// Runs f(Acc{}) with the accumulator of the tie walk: exact int64 counts when
// unweighted, double sums when weighted.
template <class F> void with_accumulator(bool weighted, F &&f) {
  if (weighted)
    f(double{});
  else
    f(std::int64_t{});
}

} // namespace detail

struct AucResult {
  double auc, pos_weight, neg_weight;
};

struct ApResult {
  double ap, pos_weight;
};

// (fps, tps, thresholds) written into buffers of at least n entries; returns how many
// distinct scores (curve points) there are.
template <class S>
std::int64_t binary_curve(const std::uint8_t *y_true, const S *y_score, const double *w,
                          std::int64_t n, int n_threads, double *fps, double *tps,
                          double *thresholds) {
  detail::RankedSamples<order_key_t<S>> ranked;
  detail::rank_samples(y_true, y_score, w, n, n_threads, ranked);
  std::int64_t m = 0;
  detail::with_accumulator(w != nullptr, [&](auto zero) {
    using Acc = decltype(zero);
    m = detail::walk_tie_groups<Acc>(ranked,
                                     detail::CurveFold<Acc>{fps, tps, thresholds})
            .m;
  });
  return m;
}

template <class S>
AucResult binary_auc(const std::uint8_t *y_true, const S *y_score, const double *w,
                     std::int64_t n, int n_threads) {
  detail::RankedSamples<order_key_t<S>> ranked;
  detail::rank_samples(y_true, y_score, w, n, n_threads, ranked);
  // Unweighted, the twice-area is exact in int64 while n < 2**31: it is at most
  // 2 * P * N <= n * n / 2.
  double area2, pos_total, neg_total;
  auto take = [&](const auto &fold) {
    area2 = static_cast<double>(fold.area2);
    pos_total = static_cast<double>(fold.pos_total);
    neg_total = static_cast<double>(fold.neg_total);
  };
  if (w == nullptr && n < (std::int64_t{1} << 31))
    take(
        detail::walk_tie_groups<std::int64_t>(ranked, detail::AucFold<std::int64_t>{}));
  else
    take(detail::walk_tie_groups<double>(ranked, detail::AucFold<double>{}));
  if (pos_total == 0.0 || neg_total == 0.0)
    return {std::numeric_limits<double>::quiet_NaN(), pos_total, neg_total};
  if (w == nullptr)
    return {area2 / (2.0 * pos_total * neg_total), pos_total, neg_total};
  const auto normalized = detail::walk_tie_groups<double>(
      ranked, detail::NormalizedAucFold<double>{pos_total, neg_total});
  return {normalized.area2 / 2.0, pos_total, neg_total};
}

template <class S>
ApResult binary_average_precision(const std::uint8_t *y_true, const S *y_score,
                                  const double *w, std::int64_t n, int n_threads,
                                  double tp_offset = 0.0, double fp_offset = 0.0) {
  detail::RankedSamples<order_key_t<S>> ranked;
  detail::rank_samples(y_true, y_score, w, n, n_threads, ranked);
  double ap = std::numeric_limits<double>::quiet_NaN(), pos_total = 0.0;
  detail::with_accumulator(w != nullptr, [&](auto zero) {
    using Acc = decltype(zero);
    // the total first: every group's recall step divides by it
    if constexpr (std::is_same_v<Acc, double>) {
      pos_total =
          detail::walk_tie_groups<Acc>(ranked, detail::PositiveFold<Acc>{}).total;
    } else { // a count: any order gives it exactly
      pos_total = static_cast<double>(detail::count_positives(ranked));
    }
    if (pos_total != 0.0)
      ap = detail::walk_tie_groups<Acc>(
               ranked, detail::ApFold<Acc>{pos_total, tp_offset, fp_offset})
               .ap;
  });
  return {ap, pos_total};
}

// ------------------------------------------------------------ range_partition

// At most this many bounds, so that a range id (0 to m) fits a uint8.
inline constexpr std::int64_t kMaxRangeBounds = 254;

namespace detail {

// Up to this many bounds, a row's range is a few compares against each of them;
// beyond, a binary search.
inline constexpr std::int64_t kCompareRangeBounds = 64;

// The number of bounds <= x: each bound compared, no branch.
struct CompareRanges {
  const double *bounds;
  std::int64_t m;
  std::uint8_t operator()(double x) const {
    unsigned r = 0;
    for (std::int64_t j = 0; j < m; ++j)
      r += bounds[j] <= x;
    return static_cast<std::uint8_t>(r);
  }
};

// The number of bounds <= x (bounds sorted, m >= 1): a branchless binary search,
// whose steps depend on m alone. Invariant: the answer is in
// [base - bounds, base - bounds + len].
struct SearchRanges {
  const double *bounds;
  std::int64_t m;
  std::uint8_t operator()(double x) const {
    const double *base = bounds;
    std::int64_t len = m;
    while (len > 1) {
      const std::int64_t half = len / 2;
      base = base[half] <= x ? base + half : base;
      len -= half;
    }
    return static_cast<std::uint8_t>((base - bounds) + (*base <= x));
  }
};

// Pass 1: every row's range id, the rows per (range, label) and, weighted, the
// weight per (range, label), summed in row order. A nonzero code counts as label 1.
template <bool kWeighted, class RangeOf>
void range_ids(const std::uint8_t *y_true, const double *y_score, const double *w,
               std::int64_t n, RangeOf range_of, std::uint8_t *ids,
               std::int64_t *counts, double *label_weights) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint8_t r = range_of(y_score[i]);
    ids[i] = r;
    const std::int64_t cell = 2 * std::int64_t{r} + (y_true[i] != 0);
    ++counts[cell];
    if constexpr (kWeighted)
      label_weights[cell] += w[i];
  }
}

} // namespace detail

// The rows grouped by score range, lowest range first, stably (see _core.pyi).
// bounds: m <= kMaxRangeBounds sorted scores; outputs: codes_out, scores_out and
// (when w) weights_out of n rows, sizes of m + 1 and label_weights of (m + 1) * 2.
// Serial: it runs in one task per worker thread.
inline void range_partition(const std::uint8_t *y_true, const double *y_score,
                            const double *w, std::int64_t n, const double *bounds,
                            std::int64_t m, std::uint8_t *codes_out, double *scores_out,
                            double *weights_out, std::int64_t *sizes,
                            double *label_weights) {
  const std::int64_t n_ranges = m + 1;
  std::array<std::int64_t, 2 * (kMaxRangeBounds + 1)> counts{};
  std::fill(label_weights, label_weights + 2 * n_ranges, 0.0);
  std::unique_ptr<std::uint8_t[]> ids(new std::uint8_t[static_cast<std::size_t>(n)]);
  auto first_pass = [&](auto range_of) {
    if (w)
      detail::range_ids<true>(y_true, y_score, w, n, range_of, ids.get(), counts.data(),
                              label_weights);
    else
      detail::range_ids<false>(y_true, y_score, w, n, range_of, ids.get(),
                               counts.data(), label_weights);
  };
  if (m <= detail::kCompareRangeBounds)
    first_pass(detail::CompareRanges{bounds, m});
  else
    first_pass(detail::SearchRanges{bounds, m});
  std::array<std::int64_t, kMaxRangeBounds + 1> next{};
  std::int64_t start = 0, fullest = 0;
  for (std::int64_t r = 0; r < n_ranges; ++r) {
    sizes[r] = counts[2 * r] + counts[2 * r + 1];
    if (!w) {
      label_weights[2 * r] = static_cast<double>(counts[2 * r]);
      label_weights[2 * r + 1] = static_cast<double>(counts[2 * r + 1]);
    }
    next[r] = start;
    start += sizes[r];
    fullest = std::max(fullest, sizes[r]);
  }
  if (fullest == n) { // one range holds every row: they stay in order
    std::copy(y_true, y_true + n, codes_out);
    std::copy(y_score, y_score + n, scores_out);
    if (w)
      std::copy(w, w + n, weights_out);
    return;
  }
  // Pass 2: the scatter, each row to the next free slot of its range.
  auto scatter = [&](auto weighted) {
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t at = next[ids[i]]++;
      codes_out[at] = y_true[i];
      scores_out[at] = y_score[i];
      if constexpr (decltype(weighted)::value)
        weights_out[at] = w[i];
    }
  };
  if (w)
    scatter(std::true_type{});
  else
    scatter(std::false_type{});
}

// ------------------------------------------------------------------- log_loss

struct LossSum {
  double loss = 0.0, weight = 0.0;
  bool bad_index = false;
};

namespace detail {

// The loss sum of rows [begin, end); the layout and the weighting are template
// parameters so the per-row loop has no branch but the clip.
template <bool OneColumn, bool Weighted, class P>
LossSum log_loss_rows(const std::int64_t *y_index, const P *y_prob, const double *w,
                      std::int64_t k, double eps, std::int64_t begin,
                      std::int64_t end) {
  const double upper = 1.0 - eps;
  LossSum total;
  for (std::int64_t b = begin; b < end; b += kSumBlock) {
    const std::int64_t e = std::min(end, b + kSumBlock);
    double block_loss = 0.0, block_weight = 0.0;
    for (std::int64_t i = b; i < e; ++i) {
      const std::int64_t j = y_index[i];
      double q;
      bool valid;
      if constexpr (OneColumn) {
        valid = static_cast<std::uint64_t>(j) < 2;
        const double p1 = static_cast<double>(y_prob[i]);
        // Select by index, not by branch: labels are random, a branch mispredicts.
        const double row[2] = {1.0 - p1, p1};
        q = row[j & 1];
      } else {
        valid = static_cast<std::uint64_t>(j) < static_cast<std::uint64_t>(k);
        q = static_cast<double>(y_prob[i * k + (valid ? j : 0)]);
      }
      total.bad_index |= !valid;
      const double loss = -std::log(std::min(std::max(q, eps), upper));
      if constexpr (Weighted) {
        block_loss += w[i] * loss;
        block_weight += w[i];
      } else {
        block_loss += loss;
      }
    }
    total.loss += block_loss;
    total.weight += Weighted ? block_weight : static_cast<double>(e - b);
  }
  return total;
}

}  // namespace detail

// y_prob is (n, k) row-major, or, when one_column, (n,) the probability of class 1
// of two (k is then 2). A y_index out of [0, k) sets bad_index (the caller raises).
template <class P>
LossSum log_loss_sum(const std::int64_t *y_index, const P *y_prob, const double *w,
                     std::int64_t n, std::int64_t k, bool one_column, double eps,
                     int n_threads) {
  auto chunk = [&](std::int64_t begin, std::int64_t end) {
    if (one_column)
      return w ? detail::log_loss_rows<true, true>(y_index, y_prob, w, k, eps, begin, end)
               : detail::log_loss_rows<true, false>(y_index, y_prob, w, k, eps, begin,
                                                    end);
    return w ? detail::log_loss_rows<false, true>(y_index, y_prob, w, k, eps, begin, end)
             : detail::log_loss_rows<false, false>(y_index, y_prob, w, k, eps, begin,
                                                   end);
  };
  return reduce_chunks<LossSum>(n, n_threads, chunk, [](LossSum &a, const LossSum &b) {
    a.loss += b.loss;
    a.weight += b.weight;
    a.bad_index |= b.bad_index;
  });
}

// ------------------------------------------------------------ regression_stats

namespace detail {

// Per-column sums of one chunk; `sums` holds kTerms arrays of k columns.
struct ColumnSums {
  double weight = 0.0;
  std::vector<double> sums;
};

// Sums term(row, w_row, lane, cols) over rows [begin, end) in blocks of kSumBlock
// rows, row r of a block into lane r % kSumLanes; term adds its kTerms values of the
// cols columns into lane[t * cols + j]. With kCols > 0, cols is a compile-time
// constant (std::integral_constant), so the one-column case is a straight loop.
template <int kCols, int kTerms, bool kWeighted, class Term>
ColumnSums column_sums(std::int64_t begin, std::int64_t end, std::int64_t k,
                       const double *w, Term &&term) {
  const auto cols = [&] {
    if constexpr (kCols > 0)
      return std::integral_constant<std::int64_t, kCols>{};
    else
      return k;
  }();
  const std::size_t width = static_cast<std::size_t>(kTerms * cols);
  ColumnSums total;
  total.sums.assign(width, 0.0);
  std::vector<double> lanes(kSumLanes * width);
  std::array<double, kSumLanes> weight_lanes;
  for (std::int64_t b = begin; b < end; b += kSumBlock) {
    const std::int64_t e = std::min(end, b + kSumBlock);
    std::fill(lanes.begin(), lanes.end(), 0.0);
    weight_lanes.fill(0.0);
    std::int64_t i = b;
    for (; i + kSumLanes <= e; i += kSumLanes)
      for (int l = 0; l < kSumLanes; ++l) {
        const double wi = kWeighted ? w[i + l] : 1.0;
        term(i + l, wi, lanes.data() + l * width, cols);
        if constexpr (kWeighted)
          weight_lanes[l] += wi;
      }
    for (int l = 0; i < e; ++i, ++l) {
      const double wi = kWeighted ? w[i] : 1.0;
      term(i, wi, lanes.data() + l * width, cols);
      if constexpr (kWeighted)
        weight_lanes[l] += wi;
    }
    static_assert(kSumLanes == 4, "the lane fold below is written for 4 lanes");
    for (std::size_t c = 0; c < width; ++c)
      total.sums[c] +=
          (lanes[c] + lanes[width + c]) + (lanes[2 * width + c] + lanes[3 * width + c]);
    total.weight += kWeighted ? (weight_lanes[0] + weight_lanes[1]) +
                                    (weight_lanes[2] + weight_lanes[3])
                              : static_cast<double>(e - b);
  }
  return total;
}

template <int kTerms, bool kWeighted, class Term>
ColumnSums parallel_column_sums(std::int64_t n, std::int64_t k, const double *w,
                                int n_threads, Term &&term) {
  auto combine = [](ColumnSums &a, const ColumnSums &b) {
    a.weight += b.weight;
    for (std::size_t c = 0; c < a.sums.size(); ++c)
      a.sums[c] += b.sums[c];
  };
  return reduce_chunks<ColumnSums>(
      n, n_threads,
      [&](std::int64_t begin, std::int64_t end) {
        return k == 1 ? column_sums<1, kTerms, kWeighted>(begin, end, k, w, term)
                      : column_sums<0, kTerms, kWeighted>(begin, end, k, w, term);
      },
      combine);
}

template <bool kWeighted>
double regression_stats_impl(const double *y_true, const double *y_pred,
                             const double *w, std::int64_t n, std::int64_t k,
                             int n_threads, double *sse, double *sae, double *mean_true,
                             double *ss_tot) {
  // first pass: w (t - p)^2, w |t - p|, w t
  const ColumnSums first = parallel_column_sums<3, kWeighted>(
      n, k, w, n_threads, [&](std::int64_t i, double wi, double *acc, auto cols) {
        const std::int64_t m = cols; // k, a constant when k == 1
        const double *t = y_true + i * m, *p = y_pred + i * m;
        for (std::int64_t j = 0; j < m; ++j) {
          const double d = t[j] - p[j];
          if constexpr (kWeighted) {
            acc[j] += wi * (d * d);
            acc[m + j] += wi * std::fabs(d);
            acc[2 * m + j] += wi * t[j];
          } else {
            acc[j] += d * d;
            acc[m + j] += std::fabs(d);
            acc[2 * m + j] += t[j];
          }
        }
      });
  for (std::int64_t j = 0; j < k; ++j) {
    sse[j] = first.sums[j];
    sae[j] = first.sums[k + j];
    mean_true[j] = first.sums[2 * k + j] / first.weight;
  }
  // second pass: w (t - mean)^2, around the mean rather than from raw squares
  const ColumnSums second = parallel_column_sums<1, kWeighted>(
      n, k, w, n_threads, [&](std::int64_t i, double wi, double *acc, auto cols) {
        const std::int64_t m = cols; // k, a constant when k == 1
        const double *t = y_true + i * m;
        for (std::int64_t j = 0; j < m; ++j) {
          const double d = t[j] - mean_true[j];
          if constexpr (kWeighted)
            acc[j] += wi * (d * d);
          else
            acc[j] += d * d;
        }
      });
  for (std::int64_t j = 0; j < k; ++j)
    ss_tot[j] = second.sums[j];
  return first.weight;
}

} // namespace detail

// (n, k) row-major inputs; sse, sae, mean_true, ss_tot hold k entries each.
// Returns sum_w.
inline double regression_stats(const double *y_true, const double *y_pred,
                               const double *w, std::int64_t n, std::int64_t k,
                               int n_threads, double *sse, double *sae,
                               double *mean_true, double *ss_tot) {
  if (w)
    return detail::regression_stats_impl<true>(y_true, y_pred, w, n, k, n_threads, sse,
                                               sae, mean_true, ss_tot);
  return detail::regression_stats_impl<false>(y_true, y_pred, w, n, k, n_threads, sse,
                                              sae, mean_true, ss_tot);
}

// ------------------------------------------------------------------ all_finite

// Reads x in blocks; a chunk stops at the first block holding a NaN or an inf, and
// every chunk stops once one has found one.
template <class T> bool all_finite(const T *x, std::int64_t n, int n_threads) {
  using Bits = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;
  // all exponent bits set: inf or NaN
  constexpr Bits kExponent =
      static_cast<Bits>(sizeof(T) == 8 ? 0x7FF0000000000000ull : 0x7F800000ull);
  constexpr std::int64_t kBlock = 4096;
  std::atomic<bool> found{false};
  auto scan = [&](int, std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end && !found.load(std::memory_order_relaxed);
         b += kBlock) {
      const std::int64_t e = std::min(end, b + kBlock);
      Bits bad = 0;
      for (std::int64_t i = b; i < e; ++i) {
        Bits bits;
        std::memcpy(&bits, x + i, sizeof bits);
        bad |= static_cast<Bits>((bits & kExponent) == kExponent);
      }
      if (bad)
        found.store(true, std::memory_order_relaxed);
    }
  };
  for_each_chunk(n, chunk_count(n, n_threads), scan);
  return !found.load();
}

} // namespace gradkit::metrics
