// A small std::thread helper for row-chunked loops.
//
// Work over [0, n) is cut into t contiguous chunks, chunk i = [i*n/t, (i+1)*n/t),
// with t = min(n_threads, max(1, n / kMinRowsPerThread)): below that many rows per
// thread, starting a thread costs more than it saves. Chunk 0 runs on the calling
// thread. Callers keep one partial result per chunk and combine them in chunk order,
// so a result depends only on n and the thread count, never on scheduling.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

// No-alias promise on kernel pointers, for the compilers that take one.
#if defined(__GNUC__) || defined(__clang__)
#define GRADKIT_RESTRICT __restrict__
#else
#define GRADKIT_RESTRICT
#endif

namespace gradkit {

inline constexpr std::int64_t kMinRowsPerThread = 65536;

// Number of chunks that a loop over n rows uses with n_threads threads.
inline int chunk_count(std::int64_t n, int n_threads) {
  const std::int64_t by_size = std::max<std::int64_t>(1, n / kMinRowsPerThread);
  return static_cast<int>(std::min<std::int64_t>(std::max(n_threads, 1), by_size));
}

// First row of chunk i of t over [0, n): floor(i * n / t), without overflowing.
inline std::int64_t chunk_begin(std::int64_t n, int t, int i) {
  return i * (n / t) + (i * (n % t)) / t;
}

// Runs f(chunk, begin, end) for every chunk of [0, n) split into t chunks, chunk 0
// on the calling thread, the others on their own threads. Returns when all are done;
// an exception thrown by a chunk is rethrown here (the lowest chunk's first).
template <class F> void for_each_chunk(std::int64_t n, int t, F &&f) {
  t = std::max(t, 1);
  if (t == 1) {
    f(0, std::int64_t{0}, n);
    return;
  }
  std::vector<std::exception_ptr> errors(t);
  auto run = [&](int i) {
    try {
      f(i, chunk_begin(n, t, i), chunk_begin(n, t, i + 1));
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(t - 1);
  try {
    for (int i = 1; i < t; ++i)
      threads.emplace_back(run, i);
  } catch (...) {
    // Could not start a thread: run the remaining chunks here instead.
    for (int i = static_cast<int>(threads.size()) + 1; i < t; ++i)
      run(i);
  }
  run(0);
  for (auto &thread : threads)
    thread.join();
  for (auto &error : errors)
    if (error)
      std::rethrow_exception(error);
}

// Maps every chunk of [0, n) to a partial result with map(begin, end) and folds the
// partials in chunk order with combine(accumulated, partial).
template <class R, class Map, class Combine>
R reduce_chunks(std::int64_t n, int n_threads, Map &&map, Combine &&combine) {
  const int t = chunk_count(n, n_threads);
  std::vector<R> partials(t);
  for_each_chunk(n, t, [&](int i, std::int64_t begin, std::int64_t end) {
    partials[i] = map(begin, end);
  });
  R total = std::move(partials[0]);
  for (int i = 1; i < t; ++i)
    combine(total, partials[i]);
  return total;
}

} // namespace gradkit
