// Linear-model kernels: header-only, templated on the dtype of X, never touching
// Python.
//
// The contract of both kernels is the docstring of its namesake in
// python/gradkit/_core.pyi; scikit-learn 1.9 is the reference of every formula.
//
// sgd_epoch is sklearn's _plain_sgd loop body (sklearn/linear_model/_sgd_fast.pyx.tp)
// with its WeightVector (sklearn/utils/_weight_vector.pyx.tp), operation for operation
// and type for type: w_data, the value of dot, the c of add and scale, y, the sample
// and class weights and add_average's num_iter are T, everything else double; the
// build sets -ffp-contract=off, so no product is fused unless written with std::fma.
// CSR rows take sklearn's loop as written (sgd_sparse): every sum sequential in
// sklearn's order, the results sklearn's bit for bit. Dense rows (sgd_dense) differ in
// one thing, the order of the sums over the features (the dot product and add()'s
// two norm accumulators): 16 lanes, lane l adding the terms of j = l, l + 16, ... in
// order, then the lanes added up pairwise (kLanes, sum_lanes; _core.pyi, "Summation
// order"). sklearn's sequential order makes a dot product a chain of d dependent
// additions, the floor of its speed; the lanes make it d / 16, and the vector code
// adds 8 lanes at once, with the same bits for any vector width (and for the scalar
// code under GRADKIT_NO_VECTOR_EXTENSIONS). Otherwise the dense loop is sklearn's:
// - after a sample one pass over the features does what sklearn does in several
//   loops (add, the L1 penalty, the norm accumulators of add, the next row's dot
//   product), with the new weights still in registers;
// - when w_data does not change between samples (a zero update, no L1 penalty, no
//   rescale) the next samples' dot products are the same numbers whether computed
//   now or later, so up to kSpeculativeRows of them are computed in one pass, and
//   used while w_data stays;
// - without the loss sums nothing reads add()'s norm accumulators during the epoch:
//   they are summed once at the end from the last add (and the later scale factors
//   replayed), as sklearn would have left them;
// - rows (and their y and sample_weight) are prefetched kPrefetchRows ahead, and
//   never read past their end (a masked load would touch the next, unfetched line).
//
// loss_grad reads each row once: the dot products (each sequential over j, in
// double), the loss and its derivative, then the gradient update of the row while it
// is in cache. Dense rows go kRowBlock at a time; their dot products are computed
// side by side on transposed tiles (dot_rows8), and every sum keeps its sequential
// order: per row over j, per gradient entry over the rows of a chunk in order, then
// over chunks in order. So the result depends on n_threads only through the chunks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "gradkit/parallel.hpp"

#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h> // masked loads and stores of the last features (dense_pass)
#endif

namespace gradkit::linear {

enum LossCode : int {
  kSquaredError = 0,
  kHuber = 1,
  kEpsilonInsensitive = 2,
  kSquaredEpsilonInsensitive = 3,
  kLogLoss = 4,
  kHinge = 5,
  kSquaredHinge = 6,
  kModifiedHuber = 7,
  kMultinomial = 8,
};

enum Penalty : int { kNoPenalty = 0, kL2 = 1, kL1 = 2, kElasticNet = 3 };

enum LearningRate : int { kConstant = 1, kOptimal = 2, kInvScaling = 3, kAdaptive = 4 };

// What a kernel found wrong with its indices; nothing was read out of bounds.
enum InputError : int {
  kInputOk = 0,
  kBadRowIndex = 1,    // a row of rows / order outside [0, n)
  kBadIndptr = 2,      // X_indptr not non-decreasing within [0, len(X))
  kBadColumnIndex = 3, // an entry of X_indices outside [0, d)
  kBadClassLabel = 4,  // multinomial y not an integer in [0, k)
};

// A row of X: dense rows have idx == nullptr (feature j is x[j], j < nnz == d).
template <class T> struct Row {
  const T *x;
  const std::int32_t *idx;
  std::int64_t nnz;
};

// X as the kernels see it: dense (indices == nullptr) or CSR.
template <class T> struct Matrix {
  const T *data = nullptr;
  const std::int32_t *indices = nullptr; // CSR only
  const std::int64_t *indptr = nullptr;  // CSR only, n + 1 entries
  std::int64_t n = 0;                    // rows
  std::int64_t d = 0;                    // features
  std::int64_t nnz = 0;                  // CSR: len(data)

  bool dense() const { return indices == nullptr; }
  Row<T> row(std::int64_t i) const {
    if (dense())
      return {data + i * d, nullptr, d};
    const std::int64_t begin = indptr[i];
    return {data + begin, indices + begin, indptr[i + 1] - begin};
  }
};

// Rows in an arbitrary order are fetched this many rows ahead of use (all their cache
// lines, with their y and sample_weight).
inline constexpr std::int64_t kPrefetchRows = 12;
// Dot products computed in one pass while w_data does not change (sgd_epoch). With
// the lanes a dot product is short; more rows per pass were slower on random rows.
inline constexpr int kSpeculativeRows = 2;
// How far ahead loss_grad prefetches when it reads the rows in order.
inline constexpr std::int64_t kSequentialPrefetchBytes = 24 * 1024;
// Dense rows whose dot products loss_grad computes together (dot_rows8).
inline constexpr int kRowBlock = 8;

// A software prefetch into all cache levels. On x86-64 it is a volatile asm: GCC 12's
// IPA mod-ref pass summarizes a helper made only of __builtin_prefetch calls as free
// of side effects, and DCE then drops the call (-fno-ipa-modref keeps it), which left
// every row of the SGD loop a cache miss.
inline void prefetch(const void *address) {
#if (defined(__GNUC__) || defined(__clang__)) &&                                       \
    (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char *>(address)));
#elif defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address, 0, 3);
#else
  (void)address;
#endif
}
#define GRADKIT_PREFETCH(address) prefetch(address)

inline void prefetch_bytes(const void *address, std::size_t bytes) {
  const char *p = static_cast<const char *>(address);
  const char *end = p + bytes;
  for (; p < end; p += 64)
    GRADKIT_PREFETCH(p);
  if (bytes != 0)
    GRADKIT_PREFETCH(end - 1);
}

// A prefetch of data read once, soon (prefetchnta): a row of X in an SGD epoch.
// sgd_epoch on 1M x 100 random rows ran about 10% faster with it than with
// prefetcht0 (AMD Zen 5), which also fills L2 (and may train the L2 streamer on
// lines past the row).
inline void prefetch_once(const void *address) {
#if (defined(__GNUC__) || defined(__clang__)) &&                                       \
    (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetchnta %0" : : "m"(*static_cast<const char *>(address)));
#elif defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(address, 0, 0);
#else
  (void)address;
#endif
}

// prefetch_bytes with prefetch_once.
inline void prefetch_bytes_once(const void *address, std::size_t bytes) {
  const char *p = static_cast<const char *>(address);
  const char *end = p + bytes;
  for (; p < end; p += 64)
    prefetch_once(p);
  if (bytes != 0)
    prefetch_once(end - 1);
}

template <class T> inline void prefetch_row(const Matrix<T> &X, std::int64_t i) {
  if (X.dense()) {
    prefetch_bytes(X.data + i * X.d, static_cast<std::size_t>(X.d) * sizeof(T));
  } else {
    const std::int64_t begin = X.indptr[i];
    const std::int64_t nnz = X.indptr[i + 1] - begin;
    prefetch_bytes(X.data + begin, static_cast<std::size_t>(nnz) * sizeof(T));
    prefetch_bytes(X.indices + begin, static_cast<std::size_t>(nnz) * 4);
  }
}

// ------------------------------------------------------------------------- losses

// sklearn's log1pexp (sklearn/_loss/_loss.pyx.tp): log(1 + exp(x)) with its cut-offs.
inline double log1pexp(double x) {
  if (x <= -37)
    return std::exp(x);
  if (x <= -2)
    return std::log1p(std::exp(x));
  if (x <= 18)
    return std::log(1. + std::exp(x));
  if (x <= 33.3)
    return x + std::exp(-x);
  return x;
}

// c ? a : b without a branch: the losses' conditions depend on the data, so a branch
// would be mispredicted about half the time (GCC keeps one for a ternary whose
// operand needs computing, under -ftrapping-math). Both values are computed; the
// one picked is returned bit for bit.
inline double select(bool c, double a, double b) {
  std::uint64_t ua, ub;
  std::memcpy(&ua, &a, sizeof ua);
  std::memcpy(&ub, &b, sizeof ub);
  const std::uint64_t mask = std::uint64_t{0} - static_cast<std::uint64_t>(c);
  const std::uint64_t bits = (ua & mask) | (ub & ~mask);
  double out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// Loss of one single-output sample (codes 0-7), as sklearn's cy_loss(y, p).
template <int kLoss> inline double loss_value(double y, double p, double param) {
  if constexpr (kLoss == kSquaredError) {
    return 0.5 * (p - y) * (p - y);
  } else if constexpr (kLoss == kHuber) {
    const double abserr = std::fabs(y - p);
    return select(abserr <= param, 0.5 * (abserr * abserr),
                  param * (abserr - 0.5 * param));
  } else if constexpr (kLoss == kEpsilonInsensitive) {
    const double ret = std::fabs(y - p) - param;
    return select(ret > 0, ret, 0.0);
  } else if constexpr (kLoss == kSquaredEpsilonInsensitive) {
    const double ret = std::fabs(y - p) - param;
    return select(ret > 0, ret * ret, 0.0);
  } else if constexpr (kLoss == kLogLoss) {
    return log1pexp(p) - y * p;
  } else if constexpr (kLoss == kHinge) {
    const double z = p * y;
    return select(z <= param, param - z, 0.0);
  } else if constexpr (kLoss == kSquaredHinge) {
    const double z = param - p * y;
    return select(z > 0, z * z, 0.0);
  } else {
    static_assert(kLoss == kModifiedHuber);
    const double z = p * y;
    return select(z >= 1.0, 0.0, select(z >= -1.0, (1.0 - z) * (1.0 - z), -4.0 * z));
  }
}

// d loss / d p of one single-output sample, as sklearn's cy_gradient(y, p).
template <int kLoss> inline double loss_derivative(double y, double p, double param) {
  if constexpr (kLoss == kSquaredError) {
    return p - y;
  } else if constexpr (kLoss == kHuber) {
    const double res = p - y;
    return select(std::fabs(res) <= param, res, select(res >= 0, param, -param));
  } else if constexpr (kLoss == kEpsilonInsensitive) {
    return select(y - p > param, -1.0, select(p - y > param, 1.0, 0.0));
  } else if constexpr (kLoss == kSquaredEpsilonInsensitive) {
    const double z = y - p;
    return select(z > param, -2 * (z - param),
                  select(z < -param, 2 * (-z - param), 0.0));
  } else if constexpr (kLoss == kLogLoss) {
    // sklearn's cgradient_half_binomial: the branch at -37 keeps exp from overflowing.
    if (p > -37) {
      const double e = std::exp(-p);
      return ((1 - y) - y * e) / (1 + e);
    }
    return std::exp(p) - y;
  } else if constexpr (kLoss == kHinge) {
    return select(p * y <= param, -y, 0.0);
  } else if constexpr (kLoss == kSquaredHinge) {
    const double z = param - p * y;
    return select(z > 0, -2 * y * z, 0.0);
  } else {
    static_assert(kLoss == kModifiedHuber);
    const double z = p * y;
    return select(z >= 1.0, 0.0, select(z >= -1.0, 2.0 * (1.0 - z) * -y, -4.0 * y));
  }
}

// Calls f(std::integral_constant<int, code>{}) for a single-output loss code 0-7.
template <class F> inline void dispatch_single_loss(int loss, F &&f) {
  switch (loss) {
  case kSquaredError:
    return f(std::integral_constant<int, kSquaredError>{});
  case kHuber:
    return f(std::integral_constant<int, kHuber>{});
  case kEpsilonInsensitive:
    return f(std::integral_constant<int, kEpsilonInsensitive>{});
  case kSquaredEpsilonInsensitive:
    return f(std::integral_constant<int, kSquaredEpsilonInsensitive>{});
  case kLogLoss:
    return f(std::integral_constant<int, kLogLoss>{});
  case kHinge:
    return f(std::integral_constant<int, kHinge>{});
  case kSquaredHinge:
    return f(std::integral_constant<int, kSquaredHinge>{});
  default:
    return f(std::integral_constant<int, kModifiedHuber>{});
  }
}

// ------------------------------------------------------------------ input checks

// O(n + nnz) checks that make every index the SGD loop follows safe to use.
template <class T>
InputError check_rows(const Matrix<T> &X, const std::int64_t *order, std::int64_t m) {
  bool bad = false;
  for (std::int64_t s = 0; s < m; ++s)
    bad |= static_cast<std::uint64_t>(order[s]) >= static_cast<std::uint64_t>(X.n);
  if (bad)
    return kBadRowIndex;
  if (X.dense())
    return kInputOk;
  if (X.indptr[0] < 0 || X.indptr[X.n] > X.nnz)
    return kBadIndptr;
  for (std::int64_t i = 0; i < X.n; ++i)
    bad |= X.indptr[i + 1] < X.indptr[i];
  if (bad)
    return kBadIndptr;
  const auto d = static_cast<std::uint32_t>(std::min<std::int64_t>(X.d, 0xffffffff));
  for (std::int64_t j = X.indptr[0]; j < X.indptr[X.n]; ++j)
    bad |= static_cast<std::uint32_t>(X.indices[j]) >= d;
  return bad ? kBadColumnIndex : kInputOk;
}

// ------------------------------------------------------------------------ sgd_epoch

struct SgdOptions {
  int loss = kHinge;
  double loss_param = 1.0;
  int penalty = kL2;
  double alpha = 1e-4;
  double l1_ratio = 0.15;
  int learning_rate = kOptimal;
  double eta0 = 0.0;
  double power_t = 0.5;
  double optimal_init = 0.0;
  bool fit_intercept = true;
  double intercept_decay = 1.0;
  double weight_pos = 1.0;
  double weight_neg = 1.0;
  std::int64_t average = 0;
  bool compute_loss = false;
};

// The 10 float64 entries of `state`, in that order.
struct SgdState {
  double intercept, average_intercept, t, eta, u, wscale, sq_norm, l1_norm, average_a,
      average_b;
};

struct SgdSums {
  double sumloss = 0.0;
  double objective_sum = 0.0;
};

namespace detail {

// sklearn's WeightVector{32,64}: w_data (w), the average weights (aw, or null) and
// the double fields; the methods are its methods, the types its types.
template <class T> struct WeightVector {
  static constexpr double kResetThreshold = std::is_same_v<T, float> ? 1e-6 : 1e-9;

  T *GRADKIT_RESTRICT w;
  T *GRADKIT_RESTRICT aw;
  std::int64_t n_features;
  double wscale, average_a, average_b, sq_norm, l1_norm;

  // innerprod of a CSR row before `innerprod *= wscale`: sum_j w[idx_j] * x_j in
  // sklearn's order, the products in T. (Dense rows: dense_pass.)
  double dot_sparse(const Row<T> &r) const {
    double innerprod = 0.0;
    for (std::int64_t j = 0; j < r.nnz; ++j)
      innerprod += static_cast<double>(w[r.idx[j]] * r.x[j]);
    return innerprod;
  }

  // The rest of dot: scale by wscale, return as T.
  T dot_finish(double innerprod) const { return static_cast<T>(innerprod * wscale); }

  // add() of a CSR row, in sklearn's order (a column may repeat).
  void add_sparse(const Row<T> &r, T c) {
    double l2 = 0.0, l1 = 0.0;
    const T ws = static_cast<T>(wscale);
    const T step = c / ws;
    for (std::int64_t j = 0; j < r.nnz; ++j) {
      const std::int32_t i = r.idx[j];
      const double val = r.x[j];
      w[i] = static_cast<T>(w[i] + val * step);
      l2 += static_cast<double>(w[i] * w[i]);
      l1 += std::fabs(static_cast<double>(w[i]));
    }
    sq_norm = l2 * static_cast<double>(ws * ws);
    l1_norm = l1 * static_cast<double>(ws);
  }

  // add_average() without its final update of average_a and average_b.
  void add_average_rows(const Row<T> &r, T c) {
    const double a = average_a;
    const double k = static_cast<double>(-c) / wscale;
    if (r.idx == nullptr) {
      T *GRADKIT_RESTRICT out = aw;
      const T *GRADKIT_RESTRICT x = r.x;
      for (std::int64_t j = 0; j < r.nnz; ++j)
        out[j] = static_cast<T>(out[j] + a * static_cast<double>(x[j]) * k);
    } else {
      for (std::int64_t j = 0; j < r.nnz; ++j) {
        const std::int32_t i = r.idx[j];
        aw[i] = static_cast<T>(aw[i] + a * static_cast<double>(r.x[j]) * k);
      }
    }
  }

  // The end of add_average(): mu = 1 / num_iter.
  void add_average_finish(T num_iter) {
    const double mu = 1.0 / num_iter;
    if (num_iter > 1)
      average_b /= (1.0 - mu);
    average_a += mu * average_b * wscale;
  }

  // scale(); returns true when it reset wscale (which rewrites w_data).
  // (norms false: the caller replays sq_norm's and l1_norm's part later.)
  bool scale(T c, bool norms = true) {
    wscale *= c;
    if (norms) {
      sq_norm *= static_cast<double>(c * c);
      l1_norm *= std::fabs(static_cast<double>(c));
    }
    if (wscale < kResetThreshold) {
      reset_wscale();
      return true;
    }
    return false;
  }

  // reset_wscale(): BLAS axpy and scal. The axpy rounds as the OpenBLAS that
  // scipy ships does on x86-64 (Haswell and SkylakeX kernels): fused multiply-adds
  // over the first n & -16 (double) or n & -32 (float) entries, unfused after.
  void reset_wscale() {
    if (aw != nullptr) {
      const T a = static_cast<T>(average_a);
      constexpr std::int64_t kBlasBlock = std::is_same_v<T, float> ? 32 : 16;
      const std::int64_t fused = n_features & -kBlasBlock;
      for (std::int64_t j = 0; j < fused; ++j)
        aw[j] = std::fma(a, w[j], aw[j]);
      for (std::int64_t j = fused; j < n_features; ++j)
        aw[j] = aw[j] + a * w[j];
      const T b = static_cast<T>(1.0 / average_b);
      for (std::int64_t j = 0; j < n_features; ++j)
        aw[j] *= b;
      average_a = 0.0;
      average_b = 1.0;
    }
    const T s = static_cast<T>(wscale);
    for (std::int64_t j = 0; j < n_features; ++j)
      w[j] *= s;
    wscale = 1.0;
  }

  T norm() const { return static_cast<T>(std::sqrt(sq_norm)); }
  T l1norm() const { return static_cast<T>(l1_norm); }
};

// l1penalty{32,64} of sklearn: the truncated gradient on the features of the row.
template <class T>
inline void l1penalty_sparse(WeightVector<T> &wv, T *GRADKIT_RESTRICT q,
                             const Row<T> &r, double u) {
  const double wscale = wv.wscale;
  T *GRADKIT_RESTRICT w = wv.w;
  for (std::int64_t j = 0; j < r.nnz; ++j) {
    const std::int32_t i = r.idx[j];
    const double z = w[i];
    if (wscale * z > 0.0) {
      const double v = w[i] - ((u + q[i]) / wscale);
      w[i] = static_cast<T>(v > 0.0 ? v : 0.0);
    } else if (wscale * z < 0.0) {
      const double v = w[i] + ((u - q[i]) / wscale);
      w[i] = static_cast<T>(v < 0.0 ? v : 0.0);
    }
    q[i] = static_cast<T>(q[i] + wscale * (w[i] - z));
  }
}

// The per-sample state kept in registers by the loops below.
template <class T> struct SgdLoop {
  SgdOptions o; // a copy: nothing the loop writes can alias it
  WeightVector<T> wv;
  T *GRADKIT_RESTRICT q;
  double intercept, average_intercept, t, eta, u;
  double l1_ratio;
  SgdSums sums;

  SgdLoop(const SgdOptions &options, T *weights, T *average_weights, T *l1_q,
          std::int64_t d, const SgdState &s)
      : o(options), q(l1_q) {
    wv.w = weights;
    wv.aw = average_weights;
    wv.n_features = d;
    wv.wscale = s.wscale;
    wv.average_a = s.average_a;
    wv.average_b = s.average_b;
    wv.sq_norm = s.sq_norm;
    wv.l1_norm = s.l1_norm;
    intercept = s.intercept;
    average_intercept = s.average_intercept;
    t = s.t;
    eta = s.eta;
    u = s.u;
    l1_ratio = options.penalty == kL2   ? 0.0
               : options.penalty == kL1 ? 1.0
                                        : options.l1_ratio;
  }

  SgdState state() const {
    return {intercept, average_intercept, t,          eta,          u,
            wv.wscale, wv.sq_norm,        wv.l1_norm, wv.average_a, wv.average_b};
  }

  bool scales() const { return o.penalty == kL2 || o.penalty == kElasticNet; }
  bool truncates() const { return o.penalty == kL1 || o.penalty == kElasticNet; }

  // eta by schedule, as sklearn's loop sets it at the start of a sample.
  void eta_step() {
    if (o.learning_rate == kOptimal)
      eta = 1.0 / (o.alpha * (o.optimal_init + t - 1));
    else if (o.learning_rate == kInvScaling)
      eta = o.eta0 / std::pow(t, o.power_t);
  }

  // From p (already x.w + intercept) and the sample's eta to the update, as
  // sklearn's loop: dloss clipped, times class and sample weight (both in T).
  template <int kLoss> double update_of(double p, T y, T sample_weight) {
    const T class_weight = static_cast<T>(y > 0.0 ? o.weight_pos : o.weight_neg);
    double dloss = loss_derivative<kLoss>(y, p, o.loss_param);
    constexpr double kMaxDloss = 1e12;
    if (dloss < -kMaxDloss)
      dloss = -kMaxDloss;
    else if (dloss > kMaxDloss)
      dloss = kMaxDloss;
    double update = -eta * dloss;
    update *= class_weight * sample_weight;
    return update;
  }

  // The loss sums of one sample, as sklearn adds them; norm and l1norm are w.norm()
  // and w.l1norm() as they were before the sample's scale. Nothing else reads the
  // sums, so the loops call this off their critical path.
  template <int kLoss> void add_loss(double p, T y, T norm, T l1norm) {
    const double cur = loss_value<kLoss>(y, p, o.loss_param);
    sums.sumloss += cur;
    sums.objective_sum += cur;
    if (o.penalty > 0)
      sums.objective_sum +=
          o.alpha * ((1 - l1_ratio) * 0.5 * (norm * norm) + l1_ratio * l1norm);
  }

  // The c of sklearn's w.scale(max(0, 1 - (1 - l1_ratio) eta alpha)).
  T scale_factor() const {
    const double f = 1.0 - ((1.0 - l1_ratio) * eta * o.alpha);
    return static_cast<T>(f > 0 ? f : 0);
  }

  // That scale; true when w_data was rewritten by a reset.
  bool scale_step() { return wv.scale(scale_factor()); }

  void intercept_step(double update) {
    if (o.fit_intercept && update != 0)
      intercept += update * o.intercept_decay;
  }

  bool averages() const { return 0 < o.average && o.average <= t; }

  // average_intercept's update (after add_average of the weights).
  void average_intercept_step() {
    average_intercept += (intercept - average_intercept) / (t - o.average + 1);
  }
};

template <class T>
inline void prefetch_sample(const Matrix<T> &X, const double *y,
                            const double *sample_weight, std::int64_t i) {
  prefetch_row(X, i);
  GRADKIT_PREFETCH(y + i);
  if (sample_weight != nullptr)
    GRADKIT_PREFETCH(sample_weight + i);
}

// sklearn's loop as written, for CSR rows.
template <class T, int kLoss>
void sgd_sparse(SgdLoop<T> &L, const Matrix<T> &X, const double *y,
                const double *sample_weight, const std::int64_t *order,
                std::int64_t m) {
  auto &wv = L.wv;
  for (std::int64_t s = 0; s < m; ++s) {
    if (s + kPrefetchRows < m)
      prefetch_sample(X, y, sample_weight, order[s + kPrefetchRows]);
    const std::int64_t i = order[s];
    const Row<T> r = X.row(i);
    const T yi = static_cast<T>(y[i]);
    const T sw = static_cast<T>(sample_weight != nullptr ? sample_weight[i] : 1.0);
    const double p = wv.dot_finish(wv.dot_sparse(r)) + L.intercept;
    L.eta_step();
    const double update = L.template update_of<kLoss>(p, yi, sw);
    if (L.o.compute_loss)
      L.template add_loss<kLoss>(p, yi, wv.norm(), wv.l1norm());
    if (L.scales())
      L.scale_step();
    if (update != 0.0)
      wv.add_sparse(r, static_cast<T>(update));
    L.intercept_step(update);
    if (L.averages()) {
      const T num_iter = static_cast<T>(L.t - L.o.average + 1);
      wv.add_average_rows(r, static_cast<T>(update));
      wv.add_average_finish(num_iter);
      L.average_intercept_step();
    }
    if (L.truncates()) {
      L.u += (L.l1_ratio * L.eta * L.o.alpha);
      l1penalty_sparse(wv, L.q, r, L.u);
    }
    L.t += 1;
  }
}

// The lanes of a dense sum over the features (_core.pyi, "Summation order"): lane l
// adds the terms of j = l, l + kLanes, l + 2 kLanes, ... in increasing j, from 0.0.
inline constexpr int kLanes = 16;

// The lanes s[0..16) added up in the contract's tree: halves, quarters, eighths.
inline double sum_lanes(const double *s) {
  double t8[8];
  for (int l = 0; l < 8; ++l)
    t8[l] = s[l] + s[l + 8];
  const double t4[4] = {t8[0] + t8[4], t8[1] + t8[5], t8[2] + t8[6], t8[3] + t8[7]};
  return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

// GRADKIT_NO_VECTOR_EXTENSIONS builds the portable scalar code instead (the same
// numbers: every vector operation below works lane by lane).
#if (defined(__GNUC__) || defined(__clang__)) && !defined(GRADKIT_NO_VECTOR_EXTENSIONS)
#define GRADKIT_VECTOR_EXTENSIONS 1
typedef double Vec8 __attribute__((vector_size(64)));
typedef float Vec8f __attribute__((vector_size(32)));
typedef long long Mask8 __attribute__((vector_size(64)));
#if defined(__clang__)
#define GRADKIT_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define GRADKIT_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, Mask8{__VA_ARGS__})
#endif

// Eight consecutive entries of a row, as doubles.
template <class T> inline Vec8 load8(const T *p) {
  if constexpr (std::is_same_v<T, double>) {
    Vec8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
  } else {
    Vec8f v;
    std::memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, Vec8);
  }
}

// Eight entries of T, for arithmetic in T.
template <class T>
using Vec8Of = std::conditional_t<std::is_same_v<T, float>, Vec8f, Vec8>;

template <class T> inline Vec8Of<T> load_vec(const T *p) {
  Vec8Of<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T> inline void store_vec(T *p, Vec8Of<T> v) {
  std::memcpy(p, &v, sizeof v);
}

// The first n (< 8) entries at p, then zeros. Masked moves (a copy of n entries
// would compile to rep movs, through the stack); they may touch the cache line after
// p + n: dense_pass uses them only on rows of fewer than 8 features.
template <class T> inline Vec8Of<T> load_part(const T *p, int n) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const auto mask = static_cast<__mmask8>((1u << n) - 1);
  if constexpr (std::is_same_v<T, double>)
    return _mm512_maskz_loadu_pd(mask, p);
  else
    return _mm256_maskz_loadu_ps(mask, p);
#else
  Vec8Of<T> v;
  for (int k = 0; k < 8; ++k)
    v[k] = k < n ? p[k] : T(0);
  return v;
#endif
}

template <class T> inline void store_part(T *p, Vec8Of<T> v, int n) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const auto mask = static_cast<__mmask8>((1u << n) - 1);
  if constexpr (std::is_same_v<T, double>)
    _mm512_mask_storeu_pd(p, mask, v);
  else
    _mm256_mask_storeu_ps(p, mask, v);
#else
  for (int k = 0; k < 8; ++k)
    if (k < n)
      p[k] = v[k];
#endif
}

// load_part for the last n (< 8) entries of a row of X of 8 or more features: only
// the 8 entries that end at p + n are read. A masked load there would touch the
// cache line after the row, the start of another row, not prefetched: a miss to
// memory on the critical path of every other sample. (w and the other arrays of d
// entries stay in cache, line after them included.)
template <class T> inline Vec8Of<T> load_row_end(const T *p, int n) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const auto mask = static_cast<__mmask8>((1u << n) - 1);
  if constexpr (std::is_same_v<T, double>) {
    const __m512i from = _mm512_add_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm512_set1_epi64(8 - n));
    return _mm512_maskz_permutexvar_pd(mask, from, _mm512_loadu_pd(p + n - 8));
  } else {
    const __m256i from = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(8 - n));
    return _mm256_maskz_permutexvar_ps(mask, from, _mm256_loadu_ps(p + n - 8));
  }
#else
  return load_part(p, n);
#endif
}

template <class V> inline Vec8 to_double(V v) {
  return __builtin_convertvector(v, Vec8);
}

// std::fabs of each lane: the sign bit cleared (-0.0 and NaNs included).
inline Vec8 fabs8(Vec8 v) {
  return (Vec8)((Mask8)v & std::numeric_limits<long long>::max());
}

// sum_lanes of lanes 0-7 (lo) and 8-15 (hi).
inline double sum_lanes(Vec8 lo, Vec8 hi) {
  const Vec8 t8 = lo + hi;
#if defined(__clang__) || __GNUC__ >= 12
  typedef double Vec4 __attribute__((vector_size(32)));
  typedef double Vec2 __attribute__((vector_size(16)));
  const Vec4 t4 = __builtin_shufflevector(t8, t8, 0, 1, 2, 3) +
                  __builtin_shufflevector(t8, t8, 4, 5, 6, 7);
  const Vec2 t2 =
      __builtin_shufflevector(t4, t4, 0, 1) + __builtin_shufflevector(t4, t4, 2, 3);
  return t2[0] + t2[1];
#else
  return ((t8[0] + t8[4]) + (t8[2] + t8[6])) + ((t8[1] + t8[5]) + (t8[3] + t8[7]));
#endif
}

// Lanes 0-7 or 8-15 of the sums of a dense pass.
struct PassLanes {
  Vec8 s0, s1, squares, magnitudes;
};
#endif

// What a dense pass does with the norm accumulators of add().
enum class Norms { kNone, kNow, kSave };

// One pass over the features of a dense row, in sklearn's order for each feature:
// add (w += x * step, in T, when kAdd), the terms of add()'s norm accumulators
// (summed now, or w saved for later), the L1 penalty, then the terms of the next
// rows' dot products, which use the new w while it is still in registers. Every sum
// goes into kLanes lanes; the vector code updates 8 lanes per operation, so a sum
// costs d / 8 additions, d / 16 of them dependent. Returns the first row's sum, the
// others go to sums[1..kRows). (kNorms == kNow without kAdd: the norm sums of w.)
template <class T, bool kAdd, bool kPenalty, Norms kNorms, int kRows>
inline double dense_pass(T *GRADKIT_RESTRICT w, const T *GRADKIT_RESTRICT x, T step,
                         T *GRADKIT_RESTRICT q, double wscale, double u,
                         T *GRADKIT_RESTRICT saved, const T *const *rows,
                         std::int64_t d, double *sums, double &acc2, double &acc1) {
  static_assert(kRows >= 0 && kRows <= kSpeculativeRows && kSpeculativeRows == 2);
  static_assert(kAdd || kNorms != Norms::kSave);
  static_assert(kLanes == 16);
  const T *GRADKIT_RESTRICT x0 = kRows > 0 ? rows[0] : nullptr;
  const T *GRADKIT_RESTRICT x1 = kRows > 1 ? rows[1] : nullptr;
  const double c = step;
#ifdef GRADKIT_VECTOR_EXTENSIONS
  using V = Vec8Of<T>;
  PassLanes lo = {}, hi = {};
  // Features j..j+7 into `lanes`, or when kPart the last n of them (j + n == d):
  // then no entry past them is read or written, and the lanes past n add 0.0
  // (which leaves any lane as it was: a sum from 0.0 never holds -0.0).
  const bool row_end_loads = d >= 8;
  const auto eight = [&](auto part, std::int64_t j, int n, PassLanes &lanes) {
    constexpr bool kPart = decltype(part)::value;
    const auto load = [n](const T *p) {
      if constexpr (kPart)
        return load_part(p, n);
      else
        return load_vec(p);
    };
    const auto load_row = [n, row_end_loads](const T *p) {
      if constexpr (kPart)
        return row_end_loads ? load_row_end(p, n) : load_part(p, n);
      else
        return load_vec(p);
    };
    const auto store = [n](T *p, V v) {
      if constexpr (kPart)
        store_part(p, v, n);
      else
        store_vec(p, v);
    };
    const Mask8 used = Mask8{0, 1, 2, 3, 4, 5, 6, 7} < static_cast<long long>(n);
    const auto term = [used](Vec8 t) {
      if constexpr (kPart)
        return used ? t : Vec8{};
      else
        return t;
    };
    V wv = load(w + j);
    if constexpr (kAdd) {
      wv = __builtin_convertvector(to_double(wv) + to_double(load_row(x + j)) * c, V);
      if constexpr (kNorms == Norms::kSave)
        store(saved + j, wv);
    }
    if constexpr (kNorms == Norms::kNow) {
      lanes.squares += term(to_double(wv * wv));
      lanes.magnitudes += term(fabs8(to_double(wv)));
    }
    if constexpr (kPenalty) {
      // As the scalar code below, lane by lane.
      const Vec8 z = to_double(wv);
      const Vec8 qj = to_double(load(q + j));
      const Vec8 zero = {};
      const Mask8 positive = wscale * z > 0.0;
      const Mask8 negative = wscale * z < 0.0;
      const Vec8 shift = (positive ? u + qj : u - qj) / wscale;
      const Vec8 down = z - shift;
      const Vec8 up = z + shift;
      const Vec8 moved = positive ? (down > 0.0 ? down : zero) : (up < 0.0 ? up : zero);
      const Vec8 picked =
          (positive | negative) ? to_double(__builtin_convertvector(moved, V)) : z;
      wv = __builtin_convertvector(picked, V);
      store(q + j, __builtin_convertvector(qj + wscale * (picked - z), V));
    }
    if constexpr (kAdd || kPenalty)
      store(w + j, wv);
    if constexpr (kRows > 0)
      lanes.s0 += term(to_double(wv * load_row(x0 + j)));
    if constexpr (kRows > 1)
      lanes.s1 += term(to_double(wv * load_row(x1 + j)));
  };
  constexpr std::integral_constant<bool, false> whole;
  constexpr std::integral_constant<bool, true> part;
  std::int64_t j = 0;
  for (; j + kLanes <= d; j += kLanes) {
    eight(whole, j, 8, lo);
    eight(whole, j + 8, 8, hi);
  }
  const int rest = static_cast<int>(d - j);
  if (rest > 8) {
    eight(whole, j, 8, lo);
    eight(part, j + 8, rest - 8, hi);
  } else if (rest > 0) {
    eight(part, j, rest, lo);
  }
  if constexpr (kRows > 1)
    sums[1] = sum_lanes(lo.s1, hi.s1);
  if constexpr (kNorms == Norms::kNow) {
    acc2 = sum_lanes(lo.squares, hi.squares);
    acc1 = sum_lanes(lo.magnitudes, hi.magnitudes);
  }
  if constexpr (kRows > 0)
    return sum_lanes(lo.s0, hi.s0); // in a register: it is on the critical path
  return 0.0;
#else
  double s0[kLanes] = {}, s1[kLanes] = {};
  double squares[kLanes] = {}, magnitudes[kLanes] = {};
  for (std::int64_t j = 0; j < d; ++j) {
    const int l = static_cast<int>(j % kLanes);
    T wj = w[j];
    if constexpr (kAdd) {
      wj = static_cast<T>(wj + static_cast<double>(x[j]) * c);
      if constexpr (kNorms == Norms::kSave)
        saved[j] = wj;
    }
    if constexpr (kNorms == Norms::kNow) {
      squares[l] += static_cast<double>(wj * wj);
      magnitudes[l] += std::fabs(static_cast<double>(wj));
    }
    if constexpr (kPenalty) {
      // l1penalty: one division per feature (the numerator sklearn divides picked
      // first), so that the loop has no branch.
      const double z = wj;
      const double qj = q[j];
      const bool positive = wscale * z > 0.0;
      const bool negative = wscale * z < 0.0;
      const double shift = (positive ? u + qj : u - qj) / wscale;
      const double down = z - shift;
      const double up = z + shift;
      const double moved = positive ? (down > 0.0 ? down : 0.0) : (up < 0.0 ? up : 0.0);
      wj = (positive || negative) ? static_cast<T>(moved) : wj;
      q[j] = static_cast<T>(qj + wscale * (static_cast<double>(wj) - z));
    }
    if constexpr (kAdd || kPenalty)
      w[j] = wj;
    if constexpr (kRows > 0)
      s0[l] += static_cast<double>(wj * x0[j]);
    if constexpr (kRows > 1)
      s1[l] += static_cast<double>(wj * x1[j]);
  }
  if constexpr (kRows > 1)
    sums[1] = sum_lanes(s1);
  if constexpr (kNorms == Norms::kNow) {
    acc2 = sum_lanes(squares);
    acc1 = sum_lanes(magnitudes);
  }
  return sum_lanes(s0);
#endif
}

// A dense_pass, for the dispatch of sgd_dense: the flags that hold for a whole epoch
// are template parameters of sgd_dense, the row count is an index.
template <class T>
using DensePassFn = double (*)(T *, const T *, T, T *, double, double, T *,
                               const T *const *, std::int64_t, double *, double &,
                               double &);

template <class T, bool kAdd, bool kPenalty, Norms kNorms> struct DensePasses {
  static_assert(kSpeculativeRows == 2);
  static constexpr DensePassFn<T> by_rows[kSpeculativeRows + 1] = {
      &dense_pass<T, kAdd, kPenalty, kNorms, 0>,
      &dense_pass<T, kAdd, kPenalty, kNorms, 1>,
      &dense_pass<T, kAdd, kPenalty, kNorms, 2>};
};

// sklearn's loop on dense rows, fused into one pass over the features per sample
// (dense_pass), with the dot products of the next rows computed ahead while w_data
// stays the same (see the top of this file). The same numbers as sgd_sparse would
// give on the same rows but for the order of the sums over the features (16 lanes).
// kTruncates: the L1 penalty (l1, elasticnet); kLossSums: compute_loss.
template <class T, int kLoss, bool kTruncates, bool kLossSums>
void sgd_dense(SgdLoop<T> &loop, const Matrix<T> &X, const double *y,
               const double *sample_weight, const std::int64_t *order, std::int64_t m) {
  SgdLoop<T> L = loop; // a local, whose fields can stay in registers
  auto &wv = L.wv;
  const std::int64_t d = X.d;
  // Without the loss sums nothing reads sq_norm or l1_norm during the epoch: the
  // accumulators of add() are summed once at the end, over the w_data the last add
  // left (saved), and the scale factors met since are replayed on them.
  constexpr Norms norms = kLossSums ? Norms::kNow : Norms::kSave;
  std::vector<T> saved(norms == Norms::kSave ? static_cast<std::size_t>(d) : 0);
  // The scale factors met since the last add, one per sample at most: a buffer and
  // a count in a register (a std::vector's push_back keeps its end in memory, a
  // store and a load per sample).
  const std::unique_ptr<T[]> later_scales(norms == Norms::kSave && L.scales()
                                              ? new T[static_cast<std::size_t>(m)]
                                              : nullptr);
  std::int64_t n_later = 0;
  bool norms_pending = false;
  T pending_wscale = 1;
  T *const w_data = wv.w;
  T *const q_data = L.q;
  T *const saved_data = saved.data();
  // The passes: the dot products of the next rows alone, or after the sample's add or
  // L1 penalty (or both).
  const DensePassFn<T> *const dot_passes =
      DensePasses<T, false, false, Norms::kNone>::by_rows;
  const DensePassFn<T> *const add_passes =
      DensePasses<T, true, kTruncates, norms>::by_rows;
  const DensePassFn<T> *const penalty_passes =
      DensePasses<T, false, true, Norms::kNone>::by_rows;
  // Dot sums (before `*= wscale`) of the rows order[spec_begin], ... (spec_count of
  // them), valid while w_data does not change.
  double spec[kSpeculativeRows] = {};
  double spec_first = 0.0; // spec[0], kept out of memory
  std::int64_t spec_begin = 0;
  int spec_count = 0;
  const T *next[kSpeculativeRows];
  const auto point_rows = [&](std::int64_t first, int n_rows) {
    for (int r = 0; r < n_rows; ++r)
      next[r] = X.data + order[first + r] * d;
    spec_begin = first;
    spec_count = n_rows;
  };
  // Speculate more after a zero update (the next is likely zero too), less after
  // a nonzero one (every extra row would be thrown away).
  bool last_was_zero = false;
  for (std::int64_t s = 0; s < m; ++s) {
    if (s + kPrefetchRows < m) {
      const std::int64_t ahead = order[s + kPrefetchRows];
      prefetch_bytes_once(X.data + ahead * d, static_cast<std::size_t>(d) * sizeof(T));
      GRADKIT_PREFETCH(y + ahead);
      if (sample_weight != nullptr)
        GRADKIT_PREFETCH(sample_weight + ahead);
    }
    const std::int64_t i = order[s];
    const T *x = X.data + i * d;
    if (s - spec_begin >= spec_count) {
      const int want = (kTruncates || !last_was_zero) ? 1 : kSpeculativeRows;
      point_rows(s, static_cast<int>(std::min<std::int64_t>(want, m - s)));
      double unused2 = 0.0, unused1 = 0.0;
      spec_first = dot_passes[spec_count](w_data, x, T(0), q_data, 0.0, 0.0, saved_data,
                                          next, d, spec, unused2, unused1);
    }
    const double innerprod = s == spec_begin ? spec_first : spec[s - spec_begin];
    const T yi = static_cast<T>(y[i]);
    const T sw = static_cast<T>(sample_weight != nullptr ? sample_weight[i] : 1.0);
    const double p = wv.dot_finish(innerprod) + L.intercept;
    // The scale before the update (they do not depend on each other), so that the
    // update goes straight on to the step of the add.
    L.eta_step();
    // The norms before this sample's scale, for its loss sums (added at the end).
    const T norm = kLossSums ? wv.norm() : T(0);
    const T l1norm = kLossSums ? wv.l1norm() : T(0);
    if (L.scales()) {
      const T c = L.scale_factor();
      if (norms_pending)
        later_scales[n_later++] = c;
      if (wv.scale(c, !norms_pending))
        spec_count = 0; // reset: w_data rewritten
    }
    const double update = L.template update_of<kLoss>(p, yi, sw);
    const bool added = update != 0.0;
    L.intercept_step(update);
    if (L.averages()) {
      const T num_iter = static_cast<T>(L.t - L.o.average + 1);
      wv.add_average_rows(Row<T>{x, nullptr, d}, static_cast<T>(update));
      wv.add_average_finish(num_iter);
      L.average_intercept_step();
    }
    if (kTruncates)
      L.u += (L.l1_ratio * L.eta * L.o.alpha);
    L.t += 1;
    if (added || kTruncates) {
      // w_data changes: the pass also computes the next rows' dot products.
      const T add_wscale = static_cast<T>(wv.wscale);
      const T step = static_cast<T>(update) / add_wscale;
      const int want = (kTruncates || !last_was_zero) ? 1 : kSpeculativeRows;
      point_rows(s + 1, static_cast<int>(std::min<std::int64_t>(want, m - s - 1)));
      double acc2 = 0.0, acc1 = 0.0;
      spec_first = (added ? add_passes : penalty_passes)[spec_count](
          w_data, x, step, q_data, wv.wscale, L.u, saved_data, next, d, spec, acc2,
          acc1);
      if (added) {
        if constexpr (norms == Norms::kNow) {
          wv.sq_norm = acc2 * static_cast<double>(add_wscale * add_wscale);
          wv.l1_norm = acc1 * static_cast<double>(add_wscale);
        } else {
          norms_pending = true;
          pending_wscale = add_wscale;
          n_later = 0;
        }
      }
    }
    if (kLossSums)
      L.template add_loss<kLoss>(p, yi, norm, l1norm);
    last_was_zero = !added;
  }
  if (norms_pending) {
    double acc2 = 0.0, acc1 = 0.0;
    double unused = 0.0;
    dense_pass<T, false, false, Norms::kNow, 0>(saved_data, nullptr, T(0), nullptr, 0.0,
                                                0.0, nullptr, nullptr, d, &unused, acc2,
                                                acc1);
    wv.sq_norm = acc2 * static_cast<double>(pending_wscale * pending_wscale);
    wv.l1_norm = acc1 * static_cast<double>(pending_wscale);
    for (std::int64_t k = 0; k < n_later; ++k) {
      const T c = later_scales[k];
      wv.sq_norm *= static_cast<double>(c * c);
      wv.l1_norm *= std::fabs(static_cast<double>(c));
    }
  }
  loop = L;
}

} // namespace detail

// One epoch of sklearn's plain SGD over the rows order[0..m); weights, average_weights
// (or null) and l1_q (or null) are updated in place, state read and written back.
// Returns kInputOk, or what is wrong with order / X's indices (then nothing changed).
template <class T>
InputError sgd_epoch(const Matrix<T> &X, const double *y, const double *sample_weight,
                     const std::int64_t *order, std::int64_t m, T *weights,
                     T *average_weights, T *l1_q, SgdState &state,
                     const SgdOptions &options, SgdSums &sums) {
  static_assert(std::is_floating_point_v<T>);
  const InputError error = check_rows(X, order, m);
  if (error != kInputOk)
    return error;
  detail::SgdLoop<T> loop(options, weights, average_weights, l1_q, X.d, state);
  // sgd_dense for the penalty and loss sums of this epoch.
  const auto dense_epoch = [&](auto code) {
    constexpr int kLoss = decltype(code)::value;
    const bool truncates = loop.truncates();
    if (truncates && options.compute_loss)
      detail::sgd_dense<T, kLoss, true, true>(loop, X, y, sample_weight, order, m);
    else if (truncates)
      detail::sgd_dense<T, kLoss, true, false>(loop, X, y, sample_weight, order, m);
    else if (options.compute_loss)
      detail::sgd_dense<T, kLoss, false, true>(loop, X, y, sample_weight, order, m);
    else
      detail::sgd_dense<T, kLoss, false, false>(loop, X, y, sample_weight, order, m);
  };
  dispatch_single_loss(options.loss, [&](auto code) {
    constexpr int kLoss = decltype(code)::value;
    if (X.dense())
      dense_epoch(std::integral_constant<int, kLoss>{});
    else
      detail::sgd_sparse<T, kLoss>(loop, X, y, sample_weight, order, m);
  });
  state = loop.state();
  sums = options.compute_loss ? loop.sums : SgdSums{};
  return kInputOk;
}

// ------------------------------------------------------------------------ loss_grad

struct LossGradOptions {
  int loss = kSquaredError;
  double loss_param = 0.0;
  std::int64_t k = 1; // outputs: rows of coef
};

namespace detail {

// One chunk's share: its loss sum and gradient (k * d coefficients, then k
// intercepts), and the first problem met with the indices.
struct LossGradPartial {
  double loss = 0.0;
  std::vector<double> grad;
  InputError error = kInputOk;
};

// The inputs of loss_grad as its chunks see them.
template <class T> struct LossGradInputs {
  Matrix<T> X;
  const double *y;
  const double *sample_weight;
  const std::int64_t *rows; // null: all rows
  const double *coef;       // (k, d)
  const double *intercept;  // (k,)
  LossGradOptions options;
  std::int64_t sequential_ahead; // rows prefetched ahead when rows is null
};

template <class T>
inline bool row_index(const LossGradInputs<T> &in, std::int64_t s, std::int64_t &i) {
  i = in.rows != nullptr ? in.rows[s] : s;
  return static_cast<std::uint64_t>(i) < static_cast<std::uint64_t>(in.X.n);
}

// Whether a CSR row's bounds and column indices are usable.
template <class T> inline InputError check_csr_row(const Matrix<T> &X, std::int64_t i) {
  const std::int64_t begin = X.indptr[i], end = X.indptr[i + 1];
  if (begin < 0 || end < begin || end > X.nnz)
    return kBadIndptr;
  const auto d = static_cast<std::uint32_t>(std::min<std::int64_t>(X.d, 0xffffffff));
  bool bad = false;
  for (std::int64_t j = begin; j < end; ++j)
    bad |= static_cast<std::uint32_t>(X.indices[j]) >= d;
  return bad ? kBadColumnIndex : kInputOk;
}

template <class T>
inline void prefetch_ahead(const LossGradInputs<T> &in, std::int64_t s,
                           std::int64_t end) {
  if (in.rows == nullptr) {
    // In order the hardware fetches rows too, but not early enough by itself.
    const std::int64_t ahead = in.sequential_ahead;
    if (in.X.dense() && s + ahead < end)
      prefetch_bytes(in.X.data + (s + ahead) * in.X.d,
                     static_cast<std::size_t>(in.X.d) * sizeof(T));
    return;
  }
  if (s + kPrefetchRows >= end)
    return;
  const std::int64_t i = in.rows[s + kPrefetchRows];
  if (static_cast<std::uint64_t>(i) >= static_cast<std::uint64_t>(in.X.n))
    return;
  if (!in.X.dense()) {
    const std::int64_t begin = in.X.indptr[i], stop = in.X.indptr[i + 1];
    if (begin < 0 || stop < begin || stop > in.X.nnz)
      return;
  }
  prefetch_sample(in.X, in.y, in.sample_weight, i);
}

// The dot products of 8 rows with coef: out[r] = sum_j coef[j] * x_r[j], each a
// sequential sum over j = 0..d-1 in double, i.e. the numbers a loop over one row
// gives. With vector extensions, 8x8 tiles of the rows are transposed so that lane
// r of one accumulator is row r's sum: one vector add per column instead of eight
// dependent scalar adds, and no reordering inside any row's sum.
template <class T>
inline void dot_rows8(const double *GRADKIT_RESTRICT coef, const T *const *x,
                      std::int64_t d, double *out) {
  static_assert(kRowBlock == 8);
  std::int64_t j = 0;
#ifdef GRADKIT_VECTOR_EXTENSIONS
  Vec8 acc = {};
  for (; j + 8 <= d; j += 8) {
    const Vec8 r0 = load8(x[0] + j), r1 = load8(x[1] + j), r2 = load8(x[2] + j),
               r3 = load8(x[3] + j), r4 = load8(x[4] + j), r5 = load8(x[5] + j),
               r6 = load8(x[6] + j), r7 = load8(x[7] + j);
    // Pairs, quads, then octets: ck holds entry j + k of the 8 rows.
    const Vec8 a0 = GRADKIT_SHUFFLE(r0, r1, 0, 8, 2, 10, 4, 12, 6, 14);
    const Vec8 a1 = GRADKIT_SHUFFLE(r0, r1, 1, 9, 3, 11, 5, 13, 7, 15);
    const Vec8 a2 = GRADKIT_SHUFFLE(r2, r3, 0, 8, 2, 10, 4, 12, 6, 14);
    const Vec8 a3 = GRADKIT_SHUFFLE(r2, r3, 1, 9, 3, 11, 5, 13, 7, 15);
    const Vec8 a4 = GRADKIT_SHUFFLE(r4, r5, 0, 8, 2, 10, 4, 12, 6, 14);
    const Vec8 a5 = GRADKIT_SHUFFLE(r4, r5, 1, 9, 3, 11, 5, 13, 7, 15);
    const Vec8 a6 = GRADKIT_SHUFFLE(r6, r7, 0, 8, 2, 10, 4, 12, 6, 14);
    const Vec8 a7 = GRADKIT_SHUFFLE(r6, r7, 1, 9, 3, 11, 5, 13, 7, 15);
    const Vec8 b0 = GRADKIT_SHUFFLE(a0, a2, 0, 1, 8, 9, 4, 5, 12, 13);
    const Vec8 b2 = GRADKIT_SHUFFLE(a0, a2, 2, 3, 10, 11, 6, 7, 14, 15);
    const Vec8 b1 = GRADKIT_SHUFFLE(a1, a3, 0, 1, 8, 9, 4, 5, 12, 13);
    const Vec8 b3 = GRADKIT_SHUFFLE(a1, a3, 2, 3, 10, 11, 6, 7, 14, 15);
    const Vec8 b4 = GRADKIT_SHUFFLE(a4, a6, 0, 1, 8, 9, 4, 5, 12, 13);
    const Vec8 b6 = GRADKIT_SHUFFLE(a4, a6, 2, 3, 10, 11, 6, 7, 14, 15);
    const Vec8 b5 = GRADKIT_SHUFFLE(a5, a7, 0, 1, 8, 9, 4, 5, 12, 13);
    const Vec8 b7 = GRADKIT_SHUFFLE(a5, a7, 2, 3, 10, 11, 6, 7, 14, 15);
    const Vec8 c0 = GRADKIT_SHUFFLE(b0, b4, 0, 1, 2, 3, 8, 9, 10, 11);
    const Vec8 c4 = GRADKIT_SHUFFLE(b0, b4, 4, 5, 6, 7, 12, 13, 14, 15);
    const Vec8 c1 = GRADKIT_SHUFFLE(b1, b5, 0, 1, 2, 3, 8, 9, 10, 11);
    const Vec8 c5 = GRADKIT_SHUFFLE(b1, b5, 4, 5, 6, 7, 12, 13, 14, 15);
    const Vec8 c2 = GRADKIT_SHUFFLE(b2, b6, 0, 1, 2, 3, 8, 9, 10, 11);
    const Vec8 c6 = GRADKIT_SHUFFLE(b2, b6, 4, 5, 6, 7, 12, 13, 14, 15);
    const Vec8 c3 = GRADKIT_SHUFFLE(b3, b7, 0, 1, 2, 3, 8, 9, 10, 11);
    const Vec8 c7 = GRADKIT_SHUFFLE(b3, b7, 4, 5, 6, 7, 12, 13, 14, 15);
    acc = acc + coef[j] * c0;
    acc = acc + coef[j + 1] * c1;
    acc = acc + coef[j + 2] * c2;
    acc = acc + coef[j + 3] * c3;
    acc = acc + coef[j + 4] * c4;
    acc = acc + coef[j + 5] * c5;
    acc = acc + coef[j + 6] * c6;
    acc = acc + coef[j + 7] * c7;
  }
  for (int r = 0; r < 8; ++r)
    out[r] = acc[r];
#else
  for (int r = 0; r < 8; ++r)
    out[r] = 0.0;
#endif
  for (; j < d; ++j) {
    const double cj = coef[j];
    for (int r = 0; r < 8; ++r)
      out[r] += cj * static_cast<double>(x[r][j]);
  }
}

// g += c[0] x_0 + ... + c[7] x_7, each entry adding the rows in order, as one row at
// a time would.
template <class T>
inline void axpy_rows8(double *GRADKIT_RESTRICT g, const double *c, const T *const *x,
                       std::int64_t d) {
  const T *GRADKIT_RESTRICT x0 = x[0], *GRADKIT_RESTRICT x1 = x[1],
                            *GRADKIT_RESTRICT x2 = x[2], *GRADKIT_RESTRICT x3 = x[3],
                            *GRADKIT_RESTRICT x4 = x[4], *GRADKIT_RESTRICT x5 = x[5],
                            *GRADKIT_RESTRICT x6 = x[6], *GRADKIT_RESTRICT x7 = x[7];
  const double c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3], c4 = c[4], c5 = c[5],
               c6 = c[6], c7 = c[7];
  for (std::int64_t j = 0; j < d; ++j)
    g[j] = g[j] + c0 * static_cast<double>(x0[j]) + c1 * static_cast<double>(x1[j]) +
           c2 * static_cast<double>(x2[j]) + c3 * static_cast<double>(x3[j]) +
           c4 * static_cast<double>(x4[j]) + c5 * static_cast<double>(x5[j]) +
           c6 * static_cast<double>(x6[j]) + c7 * static_cast<double>(x7[j]);
}

// The first kRowBlock row indices of the rows used from position s; false when
// one is outside [0, n). (The callers prefetch the rows ahead one at a time, between
// the rows' loss computations: a burst of them would stall on full miss buffers.)
template <class T>
inline bool block_rows(const LossGradInputs<T> &in, std::int64_t s, std::int64_t *id,
                       const T **x) {
  bool ok = true;
  for (int r = 0; r < kRowBlock; ++r)
    ok &= row_index(in, s + r, id[r]);
  if (!ok)
    return false;
  for (int r = 0; r < kRowBlock; ++r)
    x[r] = in.X.data + id[r] * in.X.d;
  return true;
}

// Single-output losses (codes 0-7), dense rows, kRowBlock rows at a time.
template <class T, int kLoss>
void loss_grad_dense_single(const LossGradInputs<T> &in, std::int64_t begin,
                            std::int64_t end, LossGradPartial &out) {
  constexpr int B = kRowBlock;
  const std::int64_t d = in.X.d;
  const double param = in.options.loss_param;
  const double *GRADKIT_RESTRICT coef = in.coef;
  const double b0 = in.intercept[0];
  double *GRADKIT_RESTRICT g = out.grad.data();
  double gi = 0.0, total = 0.0;
  // The loss and derivative of row i with dot product a: returns c = w_i dloss_i.
  const auto finish = [&](std::int64_t i, double a) {
    const double wt = in.sample_weight != nullptr ? in.sample_weight[i] : 1.0;
    if (wt == 0.0)
      return 0.0;
    const double p = a + b0;
    const double yi = in.y[i];
    total += wt * loss_value<kLoss>(yi, p, param);
    const double c = wt * loss_derivative<kLoss>(yi, p, param);
    gi += c;
    return c;
  };
  std::int64_t s = begin;
  for (; s + B <= end; s += B) {
    std::int64_t id[B];
    const T *x[B];
    if (!block_rows(in, s, id, x)) {
      out.error = kBadRowIndex;
      return;
    }
    double a[B], c[B];
    dot_rows8(coef, x, d, a);
    for (int r = 0; r < B; ++r) {
      prefetch_ahead(in, s + r, end);
      c[r] = finish(id[r], a[r]);
    }
    axpy_rows8(g, c, x, d);
  }
  for (; s < end; ++s) {
    std::int64_t i;
    if (!row_index(in, s, i)) {
      out.error = kBadRowIndex;
      return;
    }
    const T *GRADKIT_RESTRICT x = in.X.data + i * d;
    double a = 0.0;
    for (std::int64_t j = 0; j < d; ++j)
      a += coef[j] * static_cast<double>(x[j]);
    const double c = finish(i, a);
    for (std::int64_t j = 0; j < d; ++j)
      g[j] = g[j] + c * static_cast<double>(x[j]);
  }
  g[d] = gi;
  out.loss = total;
}

// Single-output losses, CSR rows (a column may repeat: added as it comes).
template <class T, int kLoss>
void loss_grad_sparse_single(const LossGradInputs<T> &in, std::int64_t begin,
                             std::int64_t end, LossGradPartial &out) {
  const Matrix<T> &X = in.X;
  const double param = in.options.loss_param;
  const double *GRADKIT_RESTRICT coef = in.coef;
  const double b0 = in.intercept[0];
  double *GRADKIT_RESTRICT g = out.grad.data();
  double gi = 0.0, total = 0.0;
  for (std::int64_t s = begin; s < end; ++s) {
    prefetch_ahead(in, s, end);
    std::int64_t i;
    if (!row_index(in, s, i)) {
      out.error = kBadRowIndex;
      return;
    }
    if (const InputError e = check_csr_row(X, i); e != kInputOk) {
      out.error = e;
      return;
    }
    const std::int64_t rb = X.indptr[i], re = X.indptr[i + 1];
    const double wt = in.sample_weight != nullptr ? in.sample_weight[i] : 1.0;
    if (wt == 0.0)
      continue;
    double a = 0.0;
    for (std::int64_t j = rb; j < re; ++j)
      a += coef[X.indices[j]] * static_cast<double>(X.data[j]);
    const double p = a + b0;
    const double yi = in.y[i];
    total += wt * loss_value<kLoss>(yi, p, param);
    const double c = wt * loss_derivative<kLoss>(yi, p, param);
    gi += c;
    for (std::int64_t j = rb; j < re; ++j)
      g[X.indices[j]] += c * static_cast<double>(X.data[j]);
  }
  g[X.d] = gi;
  out.loss = total;
}

// Multinomial (code 8): sklearn's CyHalfMultinomialLoss per row. raw holds the k
// predictions; on return it holds c_j = w_i (softmax_j - [j == y_i]), and the
// weighted loss is returned. The class of the row is checked first.
inline bool multinomial_row(double *raw, std::int64_t k, double yi, double wt,
                            double &loss) {
  if (!(yi >= 0.0 && yi < static_cast<double>(k)) || yi != std::floor(yi))
    return false;
  const auto label = static_cast<std::int64_t>(yi);
  double max_value = raw[0];
  for (std::int64_t j = 1; j < k; ++j)
    if (max_value < raw[j])
      max_value = raw[j];
  const double raw_label = raw[label];
  double sum_exps = 0.0;
  for (std::int64_t j = 0; j < k; ++j) {
    raw[j] = std::exp(raw[j] - max_value);
    sum_exps += raw[j];
  }
  loss = (std::log(sum_exps) + max_value - raw_label) * wt;
  for (std::int64_t j = 0; j < k; ++j)
    raw[j] = (raw[j] / sum_exps - (j == label ? 1.0 : 0.0)) * wt;
  return true;
}

template <class T>
void loss_grad_multinomial(const LossGradInputs<T> &in, std::int64_t begin,
                           std::int64_t end, LossGradPartial &out) {
  constexpr int B = kRowBlock;
  const Matrix<T> &X = in.X;
  const std::int64_t k = in.options.k, d = X.d;
  double *GRADKIT_RESTRICT g = out.grad.data();
  double *GRADKIT_RESTRICT gi = g + k * d;
  // raw[r * k + c]: prediction c of row r of a block, then its c_j.
  std::vector<double> raw_buffer(static_cast<std::size_t>(B * k));
  double *raw = raw_buffer.data();
  double total = 0.0;
  // Row i's loss and coefficients from the predictions in p (k of them); false when
  // its label is not a class. Rows of weight 0 get coefficients 0.
  const auto finish = [&](std::int64_t i, double *p) {
    const double wt = in.sample_weight != nullptr ? in.sample_weight[i] : 1.0;
    double loss = 0.0;
    if (!multinomial_row(p, k, in.y[i], wt, loss))
      return false;
    if (wt == 0.0) {
      std::fill(p, p + k, 0.0);
      return true;
    }
    total += loss;
    for (std::int64_t c = 0; c < k; ++c)
      gi[c] += p[c];
    return true;
  };
  std::int64_t s = begin;
  if (X.dense()) {
    for (; s + B <= end; s += B) {
      std::int64_t id[B];
      const T *x[B];
      if (!block_rows(in, s, id, x)) {
        out.error = kBadRowIndex;
        return;
      }
      double a[B], cr[B];
      for (std::int64_t c = 0; c < k; ++c) {
        dot_rows8(in.coef + c * d, x, d, a);
        for (int r = 0; r < B; ++r)
          raw[r * k + c] = a[r] + in.intercept[c];
      }
      for (int r = 0; r < B; ++r) {
        prefetch_ahead(in, s + r, end);
        if (!finish(id[r], raw + r * k)) {
          out.error = kBadClassLabel;
          return;
        }
      }
      for (std::int64_t c = 0; c < k; ++c) {
        for (int r = 0; r < B; ++r)
          cr[r] = raw[r * k + c];
        axpy_rows8(g + c * d, cr, x, d);
      }
    }
  }
  for (; s < end; ++s) {
    prefetch_ahead(in, s, end);
    std::int64_t i;
    if (!row_index(in, s, i)) {
      out.error = kBadRowIndex;
      return;
    }
    if (const InputError e = X.dense() ? kInputOk : check_csr_row(X, i);
        e != kInputOk) {
      out.error = e;
      return;
    }
    const Row<T> r = X.row(i);
    for (std::int64_t c = 0; c < k; ++c) {
      const double *GRADKIT_RESTRICT coef = in.coef + c * d;
      double a = 0.0;
      if (r.idx == nullptr)
        for (std::int64_t j = 0; j < d; ++j)
          a += coef[j] * static_cast<double>(r.x[j]);
      else
        for (std::int64_t j = 0; j < r.nnz; ++j)
          a += coef[r.idx[j]] * static_cast<double>(r.x[j]);
      raw[c] = a + in.intercept[c];
    }
    if (!finish(i, raw)) {
      out.error = kBadClassLabel;
      return;
    }
    for (std::int64_t c = 0; c < k; ++c) {
      const double cc = raw[c];
      double *GRADKIT_RESTRICT gc = g + c * d;
      if (r.idx == nullptr)
        for (std::int64_t j = 0; j < d; ++j)
          gc[j] = gc[j] + cc * static_cast<double>(r.x[j]);
      else
        for (std::int64_t j = 0; j < r.nnz; ++j)
          gc[r.idx[j]] += cc * static_cast<double>(r.x[j]);
    }
  }
  out.loss = total;
}

} // namespace detail

// Loss and gradient over the rows of X listed in rows[0..m) (all n rows, in order,
// when rows is null); see _core.pyi. grad_coef (k * d) and grad_intercept (k) are
// overwritten. On a bad index the outputs are unspecified and the error returned.
template <class T>
InputError loss_grad(const Matrix<T> &X, const double *y, const double *sample_weight,
                     const std::int64_t *rows, std::int64_t m, const double *coef,
                     const double *intercept, const LossGradOptions &options,
                     double *grad_coef, double *grad_intercept, int n_threads,
                     double &loss) {
  static_assert(std::is_floating_point_v<T>);
  const std::int64_t row_bytes = std::max<std::int64_t>(1, X.d * sizeof(T));
  const detail::LossGradInputs<T> in{
      X,
      y,
      sample_weight,
      rows,
      coef,
      intercept,
      options,
      std::clamp<std::int64_t>(kSequentialPrefetchBytes / row_bytes, 1, 64)};
  const std::int64_t k = options.k, d = X.d;
  const int t = chunk_count(m, n_threads);
  std::vector<detail::LossGradPartial> partials(static_cast<std::size_t>(t));
  for_each_chunk(m, t, [&](int c, std::int64_t begin, std::int64_t end) {
    auto &out = partials[static_cast<std::size_t>(c)];
    out.grad.assign(static_cast<std::size_t>(k * d + k), 0.0);
    if (options.loss == kMultinomial) {
      detail::loss_grad_multinomial(in, begin, end, out);
      return;
    }
    dispatch_single_loss(options.loss, [&](auto code) {
      constexpr int kLoss = decltype(code)::value;
      if (X.dense())
        detail::loss_grad_dense_single<T, kLoss>(in, begin, end, out);
      else
        detail::loss_grad_sparse_single<T, kLoss>(in, begin, end, out);
    });
  });
  for (const auto &p : partials)
    if (p.error != kInputOk)
      return p.error;
  std::vector<double> &total = partials[0].grad;
  loss = partials[0].loss;
  for (std::size_t c = 1; c < partials.size(); ++c) {
    loss += partials[c].loss;
    const double *GRADKIT_RESTRICT g = partials[c].grad.data();
    for (std::size_t j = 0; j < total.size(); ++j)
      total[j] += g[j];
  }
  std::copy(total.begin(), total.begin() + k * d, grad_coef);
  std::copy(total.begin() + k * d, total.end(), grad_intercept);
  return kInputOk;
}

} // namespace gradkit::linear
