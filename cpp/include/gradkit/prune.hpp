// Magnitude pruning kernels: header-only, float32 or float64, never touching Python.
//
// The contract of every kernel is the docstring of its namesake in
// python/gradkit/_core.pyi (class _Compress). Everything here is counting and
// comparing, so every result is exact and independent of the thread count.
//
// The threshold is found by a radix select on the bit patterns of |x| (for finite
// non-negative floats, unsigned order of the bits is numeric order): a histogram of
// the top 16 bits finds the bucket that holds the k-th smallest magnitude, and only
// that bucket's elements are gathered and selected among. Two reads of x (more only
// when one bucket holds a large part of x), where a sort would cost n log n and
// np.partition a copy of x plus several passes.
//
// The mask is written 64 elements (8 bytes) at a time, and the threads split x at
// byte boundaries, so no two threads write the same byte. Which of the elements at
// the threshold are pruned depends on how many come before them, so pruning is two
// passes: counts per thread range, then a prefix over the ranges places each
// range's ties and its kept values.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "gradkit/parallel.hpp"

namespace gradkit::compress {

// The result of magnitude_threshold: the k-th smallest |x|, and how many of the
// elements equal to it are among the k smallest.
struct MagnitudeThreshold {
  double threshold;
  std::int64_t ties;
};

// The result of prune_mask's first pass: where each thread range's kept values
// go and how many of its ties it prunes.
struct PrunePlan {
  int t = 1;                             // thread ranges
  std::vector<std::int64_t> byte_begin;  // t + 1 bounds, in mask bytes
  std::vector<std::int64_t> kept_begin;  // t + 1 bounds, in values
  std::vector<std::int64_t> ties_pruned; // per range: its first ties to prune
  std::int64_t ties_left = 0;
  std::int64_t kept() const { return kept_begin.back(); }
};

namespace detail {

template <class T> struct MagnitudeBits;
template <> struct MagnitudeBits<float> {
  using Bits = std::uint32_t;
  static constexpr Bits kAbs = 0x7fffffffu;
};
template <> struct MagnitudeBits<double> {
  using Bits = std::uint64_t;
  static constexpr Bits kAbs = 0x7fffffffffffffffu;
};

// Digits of the radix select: 16 bits, 65536 buckets (the last digit of a float32
// has 15 bits, of a float64 15 too: 31 = 16 + 15, 63 = 3 * 16 + 15).
inline constexpr int kRadixBits = 16;
inline constexpr std::int64_t kBuckets = std::int64_t{1} << kRadixBits;
inline constexpr int kSubHistograms = 4; // per thread; see digit_histogram

template <class T> using bits_t = typename MagnitudeBits<T>::Bits;

// The bits of |v|: clearing the sign also maps -0.0 onto 0.0.
template <class T> inline bits_t<T> magnitude_bits(T v) {
  bits_t<T> b;
  std::memcpy(&b, &v, sizeof b);
  return b & MagnitudeBits<T>::kAbs;
}

template <class T> inline T from_bits(bits_t<T> b) {
  T v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// Bits of the magnitude below the sign: 31 for float32, 63 for float64.
template <class T> inline constexpr int kValueBits = 8 * sizeof(T) - 1;

inline int popcount64(std::uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_popcountll(v);
#else
  int count = 0;
  for (; v; v &= v - 1)
    ++count;
  return count;
#endif
}

// |x| < threshold and |x| == threshold for a float64 threshold, as comparisons in
// T: below is the smallest T >= threshold, and equality is possible only when the
// threshold is a T. Then |x| < threshold <=> |x| < below exactly, and the loops
// compare at T's full vector width instead of converting every float32 to float64.
template <class T> struct Cut {
  T below;
  bool has_equal;

  explicit Cut(double threshold) {
    if constexpr (std::is_same_v<T, double>) {
      below = threshold;
      has_equal = true;
    } else {
      const double largest = std::numeric_limits<float>::max();
      const float inf = std::numeric_limits<float>::infinity();
      if (threshold > largest) {
        below = inf; // every finite float is below it, none equal
      } else if (threshold < -largest) {
        below = -inf; // no magnitude is below it, none equal
      } else {
        below = static_cast<float>(threshold); // NaN stays NaN: nothing below or equal
        if (static_cast<double>(below) < threshold)
          below = std::nextafter(below, inf);
      }
      has_equal = static_cast<double>(below) == threshold;
    }
  }
};

// (count(|x| < cut), count(|x| == cut)) over x[0, n).
template <class T>
inline void count_against(const T *GRADKIT_RESTRICT x, std::int64_t n, T cut,
                          std::int64_t &below, std::int64_t &equal) {
  std::int64_t lt = 0, eq = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    const T a = std::abs(x[j]);
    lt += a < cut;
    eq += a == cut;
  }
  below = lt;
  equal = eq;
}

inline int count_trailing_zeros64(std::uint64_t v) { // v != 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctzll(v);
#else
  int count = 0;
  for (; !(v & 1u); v >>= 1)
    ++count;
  return count;
#endif
}

// Eight bytes of 0 or 1 (byte j, least significant first, in flags[8 * b + j]) to
// the 8 bits of one mask byte, bit j from byte j, by one multiplication: each flag
// is moved to bit 56 + j, and the other products land on distinct bits outside
// 56..63, so nothing carries into the result.
inline std::uint64_t pack_flags(const std::uint8_t *flags) {
  std::uint64_t bits = 0;
  for (int b = 0; b < 8; ++b) {
    std::uint64_t eight = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    std::memcpy(&eight, flags + 8 * b, 8); // one load: byte j is bits 8j..8j+7
#else
    for (int j = 0; j < 8; ++j)
      eight |= static_cast<std::uint64_t>(flags[8 * b + j]) << (8 * j);
#endif
    bits |= ((eight * 0x0102040810204080u) >> 56) << (8 * b);
  }
  return bits;
}

// Counts the next digit (the `width` bits above bit `shift`) of the magnitudes in
// x[first, last) into counts (2**width of them), of all magnitudes when kFiltered
// is false, else only of those whose bits above the digit equal `prefix`. Four
// sub-histograms: a run of equal magnitudes (the zeros of an already pruned array)
// would otherwise make each increment wait for the previous one's store. The
// filter adds 0 or 1 instead of branching: in the cases that need it, where many
// magnitudes share the prefix, a branch would mispredict often.
template <bool kFiltered, class T>
void digit_histogram(const T *GRADKIT_RESTRICT x, std::int64_t first, std::int64_t last,
                     int shift, int width, bits_t<T> prefix, std::int64_t *counts) {
  constexpr int kSub = kSubHistograms;
  const bits_t<T> digit_mask = (bits_t<T>{1} << width) - 1;
  const int prefix_shift = shift + width;
  std::vector<std::uint32_t> sub(static_cast<std::size_t>(kSub) * kBuckets);
  auto add = [&](int s, T v) {
    const bits_t<T> b = magnitude_bits(v);
    if constexpr (kFiltered) {
      const auto bucket = static_cast<std::size_t>((b >> shift) & digit_mask);
      sub[s * kBuckets + bucket] += (b >> prefix_shift) == prefix;
    } else {
      // The top digit: a constant shift, and no mask (there is no sign bit).
      ++sub[s * kBuckets + (b >> (kValueBits<T> - kRadixBits))];
    }
  };
  // uint32 counters halve the cache the histograms take; a block of at most 2**31
  // elements per sub-histogram cannot overflow them.
  constexpr std::int64_t kBlock = std::int64_t{kSub} << 31;
  for (std::int64_t begin = first; begin < last; begin += kBlock) {
    const std::int64_t end = std::min(last, begin + kBlock);
    std::int64_t j = begin;
    for (; j + kSub <= end; j += kSub)
      for (int s = 0; s < kSub; ++s)
        add(s, x[j + s]);
    for (; j < end; ++j)
      add(0, x[j]);
    for (int s = 0; s < kSub; ++s)
      for (std::int64_t b = 0; b < kBuckets; ++b)
        counts[b] += sub[s * kBuckets + b];
    if (end < last)
      std::fill(sub.begin(), sub.end(), 0u);
  }
}

// Writes the magnitude bits of the elements of x[first, last) whose bits above bit
// `shift` equal `prefix` to out, in index order.
template <class T>
inline void gather_prefix(const T *GRADKIT_RESTRICT x, std::int64_t first,
                          std::int64_t last, int shift, const bits_t<T> prefix,
                          bits_t<T> *GRADKIT_RESTRICT out) {
  auto gather = [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t j = begin; j < end; ++j) {
      const bits_t<T> b = magnitude_bits(x[j]);
      if ((b >> shift) == prefix)
        *out++ = b;
    }
  };
  // Few elements match (the caller gathers only a small bucket): a vectorized count
  // skips the blocks without any, and only the others take the branchy gather.
  constexpr int kBlock = 64;
  std::int64_t j = first;
  for (; j + kBlock <= last; j += kBlock) {
    int hits = 0;
    for (int l = 0; l < kBlock; ++l)
      hits += (magnitude_bits(x[j + l]) >> shift) == prefix;
    if (hits)
      gather(j, j + kBlock);
  }
  gather(j, last);
}

// Bit j of the result, for j < n <= 64: |x[j]| == cut when kEqual, else
// |x[j]| >= cut (a NaN is kept too: it is not below). A full block compares into
// bytes first, which vectorizes; shifting each comparison into a word would not.
template <bool kEqual, class T>
inline std::uint64_t compare_bits(const T *GRADKIT_RESTRICT x, int n, T cut) {
  auto test = [cut](T v) {
    const T a = std::abs(v);
    return kEqual ? a == cut : !(a < cut);
  };
  if (n == 64) {
    std::uint8_t flags[64];
    for (int j = 0; j < 64; ++j)
      flags[j] = test(x[j]);
    return pack_flags(flags);
  }
  std::uint64_t bits = 0;
  for (int j = 0; j < n; ++j)
    bits |= static_cast<std::uint64_t>(test(x[j])) << j;
  return bits;
}

// Writes x[j] for the set bits j of bits (j < n <= 64) to out, in order; returns how
// many. Few set bits (a sparse result) are visited one by one; many are stored
// without a branch, each x[j] at out[count so far] whether kept or not, so out then
// needs room for n values even when fewer are kept (`room`, else a staging copy).
template <class T>
inline int compress_block(const T *GRADKIT_RESTRICT x, int n, std::uint64_t bits,
                          bool room, T *GRADKIT_RESTRICT out) {
  const int count = popcount64(bits);
  if (count <= 16) {
    for (int c = 0; c < count; ++c, bits &= bits - 1)
      out[c] = x[count_trailing_zeros64(bits)];
    return count;
  }
  T staging[64];
  T *to = room ? out : staging;
  int at = 0;
  for (int j = 0; j < n; ++j) {
    to[at] = x[j];
    at += static_cast<int>((bits >> j) & 1u);
  }
  if (!room)
    std::copy(staging, staging + count, out);
  return count;
}

// The inverse of compress_block: out[j] = the next of values where bit j of bits is
// set, else +0.0, for j < n <= 64; values holds popcount(bits) of them. Few set
// bits: zeros, then a store per set bit; many: a select per element, reading
// values[count so far] each time (`room`: n values can be read, else a copy).
template <class T>
inline int expand_block(const T *GRADKIT_RESTRICT values, int n, std::uint64_t bits,
                        bool room, T *GRADKIT_RESTRICT out) {
  const int count = popcount64(bits);
  if (count <= 16) {
    std::fill(out, out + n, T(0));
    for (int c = 0; c < count; ++c, bits &= bits - 1)
      out[count_trailing_zeros64(bits)] = values[c];
    return count;
  }
  T staging[64];
  const T *from = values;
  if (!room) {
    std::fill(staging, staging + 64, T(0)); // read past the last value, unused
    std::copy(values, values + count, staging);
    from = staging;
  }
  int at = 0;
  for (int j = 0; j < n; ++j) {
    const bool set = (bits >> j) & 1u;
    const T v = from[at];
    out[j] = set ? v : T(0);
    at += set;
  }
  return count;
}

// Stores the low 8 * n_bytes bits of bits, least significant byte first.
inline void store_mask_bytes(std::uint8_t *out, std::uint64_t bits, int n_bytes) {
  for (int b = 0; b < n_bytes; ++b)
    out[b] = static_cast<std::uint8_t>(bits >> (8 * b));
}

inline std::uint64_t load_mask_bytes(const std::uint8_t *in, int n_bytes) {
  std::uint64_t bits = 0;
  for (int b = 0; b < n_bytes; ++b)
    bits |= static_cast<std::uint64_t>(in[b]) << (8 * b);
  return bits;
}

// The thread ranges of the mask kernels: t ranges of whole bytes of the (n + 7) / 8
// byte mask, t by the element count as everywhere else.
inline std::vector<std::int64_t> byte_ranges(std::int64_t n, int t) {
  const std::int64_t n_bytes = (n + 7) / 8;
  std::vector<std::int64_t> bounds(t + 1);
  for (int i = 0; i <= t; ++i)
    bounds[i] = chunk_begin(n_bytes, t, i);
  return bounds;
}

} // namespace detail

// The k-th smallest |x| of x[0, n), 1 <= k <= n, and its ties (see the contract).
//
// Digit by digit from the top: a histogram of the next 16 bits of the magnitudes
// that share the digits found so far gives the bucket of the k-th smallest and how
// many are below it. Usually one digit leaves few candidates (about n / 1000 for
// normal weights), which are gathered and selected among directly. When many
// remain (zeros of a pruned array, an array of few distinct values) gathering them
// would copy most of x, so further digits are counted first, each a read of x,
// until few candidates remain or every bit is known.
template <class T>
MagnitudeThreshold magnitude_threshold(const T *x, std::int64_t n, std::int64_t k,
                                       int n_threads) {
  using Bits = detail::bits_t<T>;
  using detail::kBuckets;
  constexpr int kValueBits = detail::kValueBits<T>;
  const int t = chunk_count(n, n_threads);
  const std::int64_t gather_limit = std::max<std::int64_t>(65536, n / 64);

  // The k-th smallest magnitude has the top `known` bits `prefix`; `below`
  // magnitudes are smaller than any with that prefix, `in_prefix[i]` of chunk i
  // have it.
  int known = 0;
  Bits prefix = 0;
  std::int64_t below = 0;
  std::vector<std::int64_t> in_prefix(t);
  std::vector<std::int64_t> counts(static_cast<std::size_t>(t) * kBuckets);
  do {
    const int width = std::min(detail::kRadixBits, kValueBits - known);
    const int shift = kValueBits - known - width;
    std::fill(counts.begin(), counts.end(), 0);
    for_each_chunk(n, t, [&](int i, std::int64_t first, std::int64_t last) {
      std::int64_t *chunk_counts =
          counts.data() + static_cast<std::size_t>(i) * kBuckets;
      if (known == 0)
        detail::digit_histogram<false>(x, first, last, shift, width, prefix,
                                       chunk_counts);
      else
        detail::digit_histogram<true>(x, first, last, shift, width, prefix,
                                      chunk_counts);
    });
    std::int64_t bucket = 0, in_bucket = 0;
    for (;; ++bucket) {
      in_bucket = 0;
      for (int i = 0; i < t; ++i)
        in_bucket += counts[static_cast<std::size_t>(i) * kBuckets + bucket];
      if (below + in_bucket >= k)
        break;
      below += in_bucket;
    }
    for (int i = 0; i < t; ++i)
      in_prefix[i] = counts[static_cast<std::size_t>(i) * kBuckets + bucket];
    prefix = (prefix << width) | static_cast<Bits>(bucket);
    known += width;
    if (in_bucket <= gather_limit)
      break;
  } while (known < kValueBits);
  if (known == kValueBits) // every bit known: all candidates equal the threshold
    return {static_cast<double>(detail::from_bits<T>(prefix)), k - below};

  // The candidates, each chunk's at its place, in index order (any order would do:
  // only the selection below reads them).
  std::vector<std::int64_t> offset(t + 1, 0);
  for (int i = 0; i < t; ++i)
    offset[i + 1] = offset[i] + in_prefix[i];
  std::vector<Bits> candidates(offset[t]);
  const int shift = kValueBits - known;
  for_each_chunk(n, t, [&](int i, std::int64_t first, std::int64_t last) {
    detail::gather_prefix(x, first, last, shift, prefix, candidates.data() + offset[i]);
  });
  const std::int64_t rank = k - 1 - below; // among the candidates
  std::nth_element(candidates.begin(), candidates.begin() + rank, candidates.end());
  const Bits threshold = candidates[rank];
  // Before the rank: all <= threshold; the strictly smaller are the ones below it.
  std::int64_t less = below;
  for (std::int64_t j = 0; j < rank; ++j)
    less += candidates[j] < threshold;
  return {static_cast<double>(detail::from_bits<T>(threshold)), k - less};
}

// Pass 1 of prune_mask: counts |x| < threshold and == threshold in each thread
// range, and from them where each range's kept values start and how many of its
// ties it prunes (ties >= 0: the first `ties` equal elements in index order).
template <class T>
PrunePlan prune_plan(const T *x, std::int64_t n, double threshold, std::int64_t ties,
                     int n_threads) {
  const detail::Cut<T> cut(threshold);
  PrunePlan plan;
  plan.t = chunk_count(n, n_threads);
  const int t = plan.t;
  plan.byte_begin = detail::byte_ranges(n, t);
  std::vector<std::int64_t> below(t), equal(t);
  for_each_chunk(std::int64_t{t}, t, [&](int i, std::int64_t, std::int64_t) {
    const std::int64_t first = 8 * plan.byte_begin[i];
    const std::int64_t last = std::min(8 * plan.byte_begin[i + 1], n);
    detail::count_against(x + first, last - first, cut.below, below[i], equal[i]);
    if (!cut.has_equal)
      equal[i] = 0;
  });
  plan.kept_begin.assign(t + 1, 0);
  plan.ties_pruned.assign(t, 0);
  std::int64_t ties_left = ties;
  for (int i = 0; i < t; ++i) {
    const std::int64_t first = 8 * plan.byte_begin[i];
    const std::int64_t last = std::min(8 * plan.byte_begin[i + 1], n);
    plan.ties_pruned[i] = std::min(ties_left, equal[i]);
    ties_left -= plan.ties_pruned[i];
    plan.kept_begin[i + 1] =
        plan.kept_begin[i] + (last - first) - below[i] - plan.ties_pruned[i];
  }
  plan.ties_left = ties_left;
  return plan;
}

// Pass 2 of prune_mask: the bitmask ((n + 7) / 8 bytes) and the kept values
// (plan.kept() of them) of x[0, n), as planned by prune_plan with the same
// arguments.
template <class T>
void prune_write(const PrunePlan &plan, const T *x, std::int64_t n, double threshold,
                 std::uint8_t *mask, T *values) {
  const detail::Cut<T> cut(threshold);
  for_each_chunk(std::int64_t{plan.t}, plan.t, [&](int i, std::int64_t, std::int64_t) {
    const std::int64_t last = std::min(8 * plan.byte_begin[i + 1], n);
    std::int64_t ties_to_prune = plan.ties_pruned[i];
    std::int64_t at = plan.kept_begin[i];
    const std::int64_t end = plan.kept_begin[i + 1];
    for (std::int64_t first = 8 * plan.byte_begin[i]; first < last; first += 64) {
      const int len = static_cast<int>(std::min<std::int64_t>(64, last - first));
      std::uint64_t keep = detail::compare_bits<false>(x + first, len, cut.below);
      if (ties_to_prune > 0 && cut.has_equal) {
        // The range's first ties, lowest index first, are pruned.
        std::uint64_t equal = detail::compare_bits<true>(x + first, len, cut.below);
        for (; ties_to_prune > 0 && equal; --ties_to_prune) {
          const std::uint64_t lowest = equal & (~equal + 1);
          keep &= ~lowest;
          equal &= ~lowest;
        }
      }
      detail::store_mask_bytes(mask + first / 8, keep, (len + 7) / 8);
      at += detail::compress_block(x + first, len, keep, end - at >= len, values + at);
    }
  });
}

// The inverse of prune_mask: out[0, n) gets values in index order where the mask
// bits are set and +0.0 elsewhere. Returns false, writing nothing, unless the mask
// has exactly n_values bits set among its first n.
template <class T>
bool unpack_mask(const std::uint8_t *mask, std::int64_t n, const T *values,
                 std::int64_t n_values, T *out, int n_threads) {
  const int t = chunk_count(n, n_threads);
  const std::vector<std::int64_t> bytes = detail::byte_ranges(n, t);
  std::vector<std::int64_t> set_before(t + 1, 0);
  for_each_chunk(std::int64_t{t}, t, [&](int i, std::int64_t, std::int64_t) {
    const std::int64_t last = std::min(8 * bytes[i + 1], n);
    std::int64_t count = 0;
    for (std::int64_t first = 8 * bytes[i]; first < last; first += 64) {
      const int len = static_cast<int>(std::min<std::int64_t>(64, last - first));
      std::uint64_t bits = detail::load_mask_bytes(mask + first / 8, (len + 7) / 8);
      if (len < 64)
        bits &= (std::uint64_t{1} << len) - 1; // padding bits of the last byte
      count += detail::popcount64(bits);
    }
    set_before[i + 1] = count;
  });
  for (int i = 0; i < t; ++i)
    set_before[i + 1] += set_before[i];
  if (set_before[t] != n_values)
    return false;
  for_each_chunk(std::int64_t{t}, t, [&](int i, std::int64_t, std::int64_t) {
    const std::int64_t last = std::min(8 * bytes[i + 1], n);
    std::int64_t at = set_before[i];
    for (std::int64_t first = 8 * bytes[i]; first < last; first += 64) {
      const int len = static_cast<int>(std::min<std::int64_t>(64, last - first));
      std::uint64_t bits = detail::load_mask_bytes(mask + first / 8, (len + 7) / 8);
      if (len < 64)
        bits &= (std::uint64_t{1} << len) - 1;
      at += detail::expand_block(values + at, len, bits, n_values - at >= len,
                                 out + first);
    }
  });
  return true;
}

} // namespace gradkit::compress
