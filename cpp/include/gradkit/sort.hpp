// Stable radix sort of order-preserving unsigned keys, with payload columns.
//
// order_key maps a float to an unsigned integer of the same width whose unsigned order
// is the float order (for non-NaN values): flip every bit of a negative, flip only the
// sign bit of a non-negative. -0.0 is made 0.0 first, so equal scores get equal keys.
//
// Why not a plain LSD radix sort: it streams every row through memory once per digit
// (six 11-bit or seven 8-bit passes for a float64 key in [0, 1)), and it does not
// split over threads. Here one pass from memory, split over row chunks, cuts the rows
// into ~256 buckets of equal size at prefixes of their top 16 varying bits (so that
// skewed data, such as the exponents of probabilities, still gives cache-sized
// buckets); each bucket is then sorted in cache by most-significant-digit passes
// (11-bit digits, about one row per digit value, every pass whose digit is the same
// for all its keys skipped) that end in one insertion sort over the few rows left per
// value. Buckets are independent, so threads take them in any order and the result
// never depends on the thread count. Measured on the 2-core development machine, 10**7
// float64 keys in [0, 1) with a byte payload, one thread: 119 ms, against 249 ms for
// 11-bit LSD passes and 140 ms for 8-bit ones (np.sort of the bare keys: ~65 ms).

#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "gradkit/parallel.hpp"

namespace gradkit {

inline std::uint64_t order_key(double x) {
  x += 0.0; // -0.0 + 0.0 is 0.0, every other value is unchanged
  std::uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const std::uint64_t negative = bits >> 63;
  return bits ^ ((std::uint64_t{0} - negative) | (std::uint64_t{1} << 63));
}

inline std::uint32_t order_key(float x) {
  x += 0.0f;
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const std::uint32_t negative = bits >> 31;
  return bits ^ ((std::uint32_t{0} - negative) | (std::uint32_t{1} << 31));
}

// The float whose order_key is key.
inline double key_value(std::uint64_t key) {
  const std::uint64_t bits = (key >> 63) ? key ^ (std::uint64_t{1} << 63) : ~key;
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

inline float key_value(std::uint32_t key) {
  const std::uint32_t bits = (key >> 31) ? key ^ (std::uint32_t{1} << 31) : ~key;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// The unsigned key type of a float type.
template <class T>
using order_key_t = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;

// Number of low bits in which some keys differ: the bits above are the same in all
// keys, so a sort may skip them. diff is the OR over keys of key ^ keys[0].
template <class Key> int varying_bits(Key diff) {
  int bits = 0;
  while (diff != 0) {
    ++bits;
    diff >>= 1;
  }
  return bits;
}

// Uninitialised storage for n values of T; large buffers are aligned to and, on Linux,
// backed by 2 MiB pages where the system allows (fewer TLB misses in the scatter, fewer
// page faults at first touch).
template <class T> class RadixBuffer {
public:
  RadixBuffer() = default;
  explicit RadixBuffer(std::size_t n) {
    static_assert(std::is_trivially_copyable_v<T>, "radix buffers hold plain values");
    constexpr std::size_t kHugePage = std::size_t{1} << 21;
    const std::size_t bytes = n * sizeof(T);
    if (bytes < 2 * kHugePage) {
      raw_.reset(new unsigned char[bytes]);
      data_ = reinterpret_cast<T *>(raw_.get());
      return;
    }
    raw_.reset(new unsigned char[bytes + kHugePage]);
    const auto address = reinterpret_cast<std::uintptr_t>(raw_.get());
    data_ = reinterpret_cast<T *>((address + kHugePage - 1) & ~(kHugePage - 1));
#if defined(MADV_HUGEPAGE)
    madvise(static_cast<void *>(data_), bytes & ~(kHugePage - 1), MADV_HUGEPAGE);
#endif
  }
  T *get() const { return data_; }

private:
  std::unique_ptr<unsigned char[]> raw_;
  T *data_ = nullptr;
};

// A key column and the payload columns that travel with it, one row per index.
template <class Key, class... Payload> struct RadixColumns {
  static_assert(std::is_unsigned_v<Key>, "radix keys are unsigned integers");
  Key *keys;
  std::tuple<Payload *...> payloads;

  RadixColumns operator+(std::size_t i) const {
    return {keys + i,
            std::apply([i](auto *...p) { return std::tuple<Payload *...>(p + i...); },
                       payloads)};
  }
  void move_row(std::size_t from, const RadixColumns &to, std::size_t at) const {
    to.keys[at] = keys[from];
    move_payload(from, to, at, std::index_sequence_for<Payload...>{});
  }
  using Row = std::tuple<Key, Payload...>;
  Row row(std::size_t i) const {
    return std::apply([&](auto *...p) { return Row(keys[i], p[i]...); }, payloads);
  }
  void set_row(std::size_t i, const Row &r) const {
    set_row(i, r, std::index_sequence_for<Payload...>{});
  }
  void copy_rows(const RadixColumns &to, std::size_t n) const {
    std::memcpy(to.keys, keys, n * sizeof(Key));
    copy_payload(to, n, std::index_sequence_for<Payload...>{});
  }

private:
  template <std::size_t... I>
  void move_payload([[maybe_unused]] std::size_t from, const RadixColumns &to,
                    [[maybe_unused]] std::size_t at, std::index_sequence<I...>) const {
    ((std::get<I>(to.payloads)[at] = std::get<I>(payloads)[from]), ...);
  }
  template <std::size_t... I>
  void set_row(std::size_t i, const Row &r, std::index_sequence<I...>) const {
    keys[i] = std::get<0>(r);
    ((std::get<I>(payloads)[i] = std::get<I + 1>(r)), ...);
  }
  template <std::size_t... I>
  void copy_payload(const RadixColumns &to, std::size_t n,
                    std::index_sequence<I...>) const {
    (std::memcpy(std::get<I>(to.payloads), std::get<I>(payloads),
                 n * sizeof(*std::get<I>(payloads))),
     ...);
  }
};

namespace radix_detail {

// In-cache digits: 2**11 counters and write heads stay in L1.
inline constexpr int kMaxDigitBits = 11;
inline constexpr std::size_t kInsertionRows = 8;
// Rows that a bucket sort handles in the per-core cache (data and scratch).
inline constexpr std::size_t kCacheRows = std::size_t{1} << 17;
// The top partition: rows counted by their top kPrefixBits varying bits, prefixes
// merged into about kTopBuckets buckets of equal size. Scattering from memory into
// 2**11 streams runs 3x slower than into 2**8 on the development machine.
inline constexpr int kPrefixBits = 16;
inline constexpr std::size_t kTopBuckets = 256;
// Buckets larger than this share of the rows are split again by all threads.
inline constexpr std::size_t kSharedBucketDivisor = 2;

// Digit width for n rows: about one row per bucket, never more bits than are left.
inline int digit_bits(std::size_t n, int bits) {
  int width = 0;
  while (width < kMaxDigitBits && (std::size_t{1} << width) < n)
    ++width;
  return std::min(width, bits);
}

// Moves rows [begin, end) of src to dst, row i to offsets[bucket_of(key)]++. The
// columns come by value: a byte payload store may alias anything the compiler cannot
// see is local, and it would reload every column pointer on every row.
template <class Cols, class BucketOf>
void scatter(const Cols src, const Cols dst, std::size_t begin, std::size_t end,
             std::size_t *offsets, BucketOf &&bucket_of) {
  for (std::size_t i = begin; i < end; ++i) {
    const std::size_t at = offsets[bucket_of(src.keys[i])]++;
    src.move_row(i, dst, at);
  }
}

// Stable insertion sort of the n rows of a by key, written to b first when into_b.
template <class Cols>
void insertion_sort(const Cols a, const Cols b, std::size_t n, bool into_b) {
  if (into_b) {
    if (n < 16) // a row loop beats memcpy's fixed cost here
      for (std::size_t i = 0; i < n; ++i)
        a.move_row(i, b, i);
    else
      a.copy_rows(b, n);
  }
  const Cols rows = into_b ? b : a;
  for (std::size_t i = 1; i < n; ++i) {
    if (!(rows.keys[i] < rows.keys[i - 1]))
      continue;
    const auto row = rows.row(i);
    const auto key = std::get<0>(row);
    std::size_t j = i;
    for (; j > 0 && key < rows.keys[j - 1]; --j)
      rows.move_row(j - 1, rows, j);
    rows.set_row(j, row);
  }
}

// Sorts n rows of data whose keys differ only in bits [0, bits); the result ends in
// scratch when into_scratch, else in data. Meant for buckets that fit in cache.
template <class Cols>
void msd_sort(const Cols data, const Cols scratch, std::size_t n, int bits,
              bool into_scratch) {
  if (n <= kInsertionRows || bits == 0) {
    insertion_sort(data, scratch, n, into_scratch);
    return;
  }
  const int width = digit_bits(n, bits);
  const int shift = bits - width;
  const std::size_t buckets = std::size_t{1} << width, mask = buckets - 1;
  std::array<std::size_t, std::size_t{1} << kMaxDigitBits> offsets;
  std::fill_n(offsets.begin(), buckets, std::size_t{0});
  const auto first = data.keys[0];
  std::remove_const_t<decltype(first)> diff = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ++offsets[(data.keys[i] >> shift) & mask];
    diff |= data.keys[i] ^ first;
  }
  if (offsets[(first >> shift) & mask] == n) { // this digit is one value: skip it
    msd_sort(data, scratch, n, varying_bits(diff), into_scratch);
    return;
  }
  std::size_t sum = 0;
  for (std::size_t v = 0; v < buckets; ++v) {
    const std::size_t count = offsets[v];
    offsets[v] = sum;
    sum += count;
  }
  scatter(data, scratch, 0, n, offsets.data(),
          [&](auto key) { return (key >> shift) & mask; });
  // offsets[v] is now the end of bucket v, in scratch. Most buckets hold a row or
  // two: a run of such buckets is finished by one insertion sort, whose rows never
  // cross a bucket boundary since the digit already orders the buckets.
  std::size_t begin = 0, run = 0;
  for (std::size_t v = 0; v < buckets; ++v) {
    const std::size_t end = offsets[v];
    if (end - begin > kInsertionRows) {
      insertion_sort(scratch + run, data + run, begin - run, !into_scratch);
      msd_sort(scratch + begin, data + begin, end - begin, shift, !into_scratch);
      run = end;
    }
    begin = end;
  }
  insertion_sort(scratch + run, data + run, n - run, !into_scratch);
}

// The rows of existing columns, as a source for partition_rows.
template <class Cols> struct ColumnRows {
  Cols data;
  bool keep(std::size_t) const { return true; }
  auto key(std::size_t i) const { return data.keys[i]; }
  void write(std::size_t i, const Cols &to, std::size_t at) const {
    data.move_row(i, to, at);
  }
};

// The buckets of a top partition, in key order: bucket b is rows [begin[b],
// begin[b + 1]), whose keys differ only in their low bits[b] bits.
struct Buckets {
  std::vector<std::size_t> begin;
  std::vector<int> bits;
};

// Writes the `kept` rows of source (rows [0, n) for which source.keep(i)) to out,
// grouped into about kTopBuckets buckets of equal size, in key order, each row
// after the rows of its bucket that come before it: the sort stays stable. The
// buckets are cut at prefixes of the keys' top kPrefixBits varying bits (the keys
// differ only in their low `bits` bits), so that a skewed distribution (say, float
// exponents) still gives cache-sized buckets. Counting and writing are split over t
// row chunks.
template <class Source, class Cols>
Buckets partition_rows(const Source &source, std::int64_t n, int t, int bits,
                       std::size_t kept, const Cols &out) {
  using Key = std::remove_pointer_t<decltype(out.keys)>;
  const std::size_t target = std::max<std::size_t>(1, kept / kTopBuckets);
  for (;;) {
    const int width = std::min(kPrefixBits, bits);
    const int shift = bits - width;
    const std::size_t prefixes = std::size_t{1} << width, mask = prefixes - 1;
    std::vector<std::size_t> counts(static_cast<std::size_t>(t) * prefixes, 0);
    for_each_chunk(n, t, [&](int c, std::int64_t begin, std::int64_t end) {
      std::size_t *count = counts.data() + c * prefixes;
      for (std::int64_t i = begin; i < end; ++i)
        if (source.keep(i))
          ++count[(source.key(i) >> shift) & mask];
    });
    // bucket_of[prefix]: consecutive prefixes share a bucket until it holds
    // `target` rows; a prefix of `target` rows or more gets a bucket of its own.
    Buckets buckets;
    std::vector<std::uint32_t> bucket_of(prefixes);
    std::vector<std::size_t> bucket_rows;
    std::size_t open_rows = 0, open_first = 0, open_last = 0;
    auto close = [&] {
      bucket_rows.push_back(open_rows);
      buckets.bits.push_back(shift + varying_bits(open_first ^ open_last));
      open_rows = 0;
    };
    for (std::size_t v = 0; v < prefixes; ++v) {
      std::size_t size = 0;
      for (int c = 0; c < t; ++c)
        size += counts[c * prefixes + v];
      if (size == 0) {
        bucket_of[v] = static_cast<std::uint32_t>(bucket_rows.size());
        continue;
      }
      if (open_rows > 0 && (open_rows + size > target || size >= target))
        close();
      if (open_rows == 0)
        open_first = v;
      open_last = v;
      bucket_of[v] = static_cast<std::uint32_t>(bucket_rows.size());
      open_rows += size;
    }
    close();
    const std::size_t n_buckets = bucket_rows.size();
    if (n_buckets == 1 && shift > 0 && buckets.bits[0] <= shift) {
      bits = buckets.bits[0]; // one prefix holds every row: look below it
      continue;
    }
    // offsets[c * n_buckets + b]: where chunk c writes its next row of bucket b
    std::vector<std::size_t> offsets(static_cast<std::size_t>(t) * n_buckets, 0);
    for (int c = 0; c < t; ++c)
      for (std::size_t v = 0; v < prefixes; ++v)
        offsets[c * n_buckets + bucket_of[v]] += counts[c * prefixes + v];
    buckets.begin.resize(n_buckets + 1);
    std::size_t sum = 0;
    for (std::size_t b = 0; b < n_buckets; ++b) {
      buckets.begin[b] = sum;
      for (int c = 0; c < t; ++c) {
        const std::size_t count = offsets[c * n_buckets + b];
        offsets[c * n_buckets + b] = sum;
        sum += count;
      }
    }
    buckets.begin[n_buckets] = sum;
    for_each_chunk(n, t, [&](int c, std::int64_t begin, std::int64_t end) {
      // Local copies: a byte payload store may alias anything not provably local,
      // and the compiler would reload every pointer on every row.
      const Source src = source;
      const Cols to = out;
      const std::uint32_t *const bucket_map = bucket_of.data();
      std::size_t *const heads = offsets.data() + c * n_buckets;
      const int prefix_shift = shift;
      const std::size_t prefix_mask = mask;
      for (std::int64_t i = begin; i < end; ++i) {
        if (!src.keep(i))
          continue;
        const Key key = src.key(i);
        const std::size_t at = heads[bucket_map[(key >> prefix_shift) & prefix_mask]]++;
        // Never false unless another thread changed the source since it was
        // counted; then the result is garbage, but no write leaves out.
        if (at < kept)
          src.write(i, to, at);
      }
    });
    return buckets;
  }
}

// The low bits in which the kept rows' keys differ, over t row chunks.
template <class Key, class Source>
int source_bits(const Source &source, std::int64_t n, int t) {
  std::vector<Key> diffs(t, 0), firsts(t, 0);
  std::vector<char> any(t, 0);
  for_each_chunk(n, t, [&](int c, std::int64_t begin, std::int64_t end) {
    Key diff = 0, first = 0;
    bool seen = false;
    for (std::int64_t i = begin; i < end; ++i) {
      if (!source.keep(i))
        continue;
      const Key key = source.key(i);
      if (!seen)
        first = key, seen = true;
      diff |= key ^ first;
    }
    diffs[c] = diff, firsts[c] = first, any[c] = seen;
  });
  Key diff = 0, first = 0;
  bool seen = false;
  for (int c = 0; c < t; ++c) {
    if (!any[c])
      continue;
    if (!seen)
      first = firsts[c], seen = true;
    diff |= diffs[c] | (firsts[c] ^ first);
  }
  return varying_bits(diff);
}

// Sorts the buckets of a partition of `rows` rows over t threads: a bucket of more
// than a thread's share (and more than the cache holds) with on_big(b, begin, size),
// one after the other, each free to use every thread; the others handed out one at
// a time to t workers, each made by make_worker() (a place for per-thread scratch)
// and called as worker(b, begin, size).
template <class OnBig, class MakeWorker>
void share_buckets(const Buckets &buckets, std::size_t rows, int t, OnBig &&on_big,
                   MakeWorker &&make_worker) {
  const std::size_t shared =
      std::max(kCacheRows, rows / (kSharedBucketDivisor * static_cast<std::size_t>(t)));
  std::vector<std::size_t> small;
  for (std::size_t b = 0; b + 1 < buckets.begin.size(); ++b) {
    const std::size_t begin = buckets.begin[b], size = buckets.begin[b + 1] - begin;
    if (size > shared)
      on_big(b, begin, size);
    else if (size > 0)
      small.push_back(b);
  }
  std::atomic<std::size_t> next{0};
  for_each_chunk(t, t, [&](int, std::int64_t, std::int64_t) {
    auto worker = make_worker();
    for (std::size_t k = next++; k < small.size(); k = next++) {
      const std::size_t b = small[k], begin = buckets.begin[b];
      worker(b, begin, buckets.begin[b + 1] - begin);
    }
  });
}

// Sorts n rows of data (see msd_sort) when they may not fit in cache: a top
// partition (partition_rows) into scratch, then the buckets, shared out to the
// threads; buckets too big for the cache or for one thread's share are partitioned
// again with all threads. bits < 0: not known yet.
template <class Cols>
void partition_sort(const Cols &data, const Cols &scratch, std::size_t n, int bits,
                    bool into_scratch, int n_threads) {
  using Key = std::remove_pointer_t<decltype(data.keys)>;
  const std::int64_t rows = static_cast<std::int64_t>(n);
  const int t = chunk_count(rows, n_threads);
  if (bits < 0)
    bits = source_bits<Key>(ColumnRows<Cols>{data}, rows, t);
  if (n <= kCacheRows || bits == 0) {
    msd_sort(data, scratch, n, bits, into_scratch);
    return;
  }
  const Buckets buckets =
      partition_rows(ColumnRows<Cols>{data}, rows, t, bits, n, scratch);
  share_buckets(
      buckets, n, t,
      [&](std::size_t b, std::size_t begin, std::size_t size) {
        partition_sort(scratch + begin, data + begin, size, buckets.bits[b],
                       !into_scratch, n_threads);
      },
      [&] {
        return [&](std::size_t b, std::size_t begin, std::size_t size) {
          if (size > kCacheRows)
            partition_sort(scratch + begin, data + begin, size, buckets.bits[b],
                           !into_scratch, 1);
          else
            msd_sort(scratch + begin, data + begin, size, buckets.bits[b],
                     !into_scratch);
        };
      });
}

} // namespace radix_detail

// Owned columns: a key column and its payload columns, `rows` rows each.
template <class Key, class... Payload> class RadixTable {
public:
  RadixTable() = default;
  explicit RadixTable(std::size_t rows)
      : keys_(rows), payloads_(RadixBuffer<Payload>(rows)...) {}
  RadixColumns<Key, Payload...> columns() const {
    return {keys_.get(), std::apply(
                             [](const auto &...buffer) {
                               return std::tuple<Payload *...>(buffer.get()...);
                             },
                             payloads_)};
  }

private:
  RadixBuffer<Key> keys_;
  std::tuple<RadixBuffer<Payload>...> payloads_;
};

// Sorts the n rows of data by key, stably, carrying the payload columns along; the
// result is in data. scratch has the same columns, n rows each, and is overwritten.
// bits (when >= 0) says that the keys differ only in their low `bits` bits, as
// varying_bits finds; otherwise the sort finds out itself.
template <class Key, class... Payload>
void radix_sort(const RadixColumns<Key, Payload...> &data,
                const RadixColumns<Key, Payload...> &scratch, std::size_t n,
                int n_threads, int bits = -1) {
  if (n < 2)
    return;
  radix_detail::partition_sort(data, scratch, n, bits, false, n_threads);
}

// The number of low bits in which the keys of the kept rows of source differ (see
// sort_rows for sources), counted over row chunks on up to n_threads threads.
template <class Key, class Source>
int varying_key_bits(const Source &source, std::int64_t n, int n_threads) {
  return radix_detail::source_bits<Key>(source, n, chunk_count(n, n_threads));
}

// Sorts the rows that a source yields, stably by key, into out, and returns how many
// there are. Rows [0, n) of source for which source.keep(i) are sorted; source.key(i)
// is row i's key and source.write(i, columns, at) stores row i at row `at` of the
// columns. Unlike radix_sort, the rows are read straight from the source by the top
// partition, never copied to columns first, and the buckets are then sorted in place
// with a cache-sized scratch per thread: out is the only full-size allocation.
// bits >= 0 says that the keys differ only in their low `bits` bits (saves a pass).
template <class Source, class Key, class... Payload>
std::size_t sort_rows(const Source &source, std::int64_t n, int n_threads,
                      RadixTable<Key, Payload...> &out, int bits = -1) {
  using namespace radix_detail;
  using Cols = RadixColumns<Key, Payload...>;
  const int t = chunk_count(n, n_threads);
  // rows kept before each chunk
  std::vector<std::size_t> start(t + 1, 0);
  for_each_chunk(n, t, [&](int c, std::int64_t begin, std::int64_t end) {
    std::size_t kept = 0;
    for (std::int64_t i = begin; i < end; ++i)
      kept += source.keep(i);
    start[c + 1] = kept;
  });
  for (int c = 0; c < t; ++c)
    start[c + 1] += start[c];
  const std::size_t m = start[t];
  out = RadixTable<Key, Payload...>(m);
  const Cols rows = out.columns();
  if (m <= kCacheRows) {
    for_each_chunk(n, t, [&](int c, std::int64_t begin, std::int64_t end) {
      const Source src = source; // local copies: see partition_rows
      const Cols to = rows;
      // at < start[c + 1]: see partition_rows on a source changed meanwhile
      std::size_t at = start[c];
      for (std::int64_t i = begin; i < end && at < start[c + 1]; ++i)
        if (src.keep(i))
          src.write(i, to, at++);
    });
    const RadixTable<Key, Payload...> scratch(m);
    msd_sort(rows, scratch.columns(), m,
             bits >= 0 ? bits : static_cast<int>(8 * sizeof(Key)), false);
    return m;
  }
  if (bits < 0)
    bits = source_bits<Key>(source, n, t);
  const Buckets buckets = partition_rows(source, n, t, bits, m, rows);
  // A bucket bigger than the cache is one crowded prefix: partition it again.
  auto partition_again = [&](std::size_t b, std::size_t begin, std::size_t size,
                             int threads) {
    const RadixTable<Key, Payload...> scratch(size);
    partition_sort(rows + begin, scratch.columns(), size, buckets.bits[b], false,
                   threads);
  };
  share_buckets(
      buckets, m, t,
      [&](std::size_t b, std::size_t begin, std::size_t size) {
        partition_again(b, begin, size, n_threads);
      },
      [&] {
        return [&, scratch = RadixTable<Key, Payload...>(kCacheRows)](
                   std::size_t b, std::size_t begin, std::size_t size) {
          if (size <= kCacheRows)
            msd_sort(rows + begin, scratch.columns(), size, buckets.bits[b], false);
          else
            partition_again(b, begin, size, 1);
        };
      });
  return m;
}

} // namespace gradkit
