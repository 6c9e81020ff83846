// Optimizer step kernels: header-only, templated on the parameter dtype, never
// touching Python.
//
// The contract of every kernel is the docstring of its namesake in
// python/gradkit/_core.pyi: torch.optim's single-tensor CPU path (torch 2.13),
// element by element. Each element of every array is loaded once, updated in
// registers and stored once, so a step costs one pass over memory. The arithmetic is
// done in T with every float scalar rounded to T first, as torch's CPU kernels do
// (value.to<scalar_t>()); the scalars torch computes as Python floats (bias
// corrections, step size, the AdamW factor, 1 - beta, 1 - dampening) are computed in
// double here and rounded once. Where torch's vectorized kernels fuse a multiply-add
// (add with alpha, lerp, addcmul) so does std::fma here; with that, SGD matches torch
// bit for bit and Adam up to torch's sqrt, which is not correctly rounded on CPU
// (+-1 ulp on about 17% of elements; std::sqrt here is exact). Elements are
// independent, so the result does not depend on the thread count.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "gradkit/parallel.hpp"

// The Adam loop vectorizes only where std::sqrt need not set errno: build with
// -fno-math-errno (no kernel reads errno); with errno it runs one element at a time.

namespace gradkit::optim {

// torch's a.add(b, alpha=alpha): a + alpha * b with one rounding, as its vectorized
// add kernel computes it (vec::fmadd). Written out, so it does not depend
// on -ffp-contract (the build sets it off).
template <class T> inline T add_scaled(T a, T alpha, T b) {
  return std::fma(alpha, b, a);
}

// torch.maximum: NaN if either is NaN.
template <class T> inline T nan_maximum(T a, T b) { return (a > b || a != a) ? a : b; }

struct SgdOptions {
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
  bool first_step = false;
};

struct AdamOptions {
  std::int64_t step = 1;
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;
  bool maximize = false;
};

namespace detail {

// The scalars of one SGD step, rounded to T.
template <class T> struct SgdScalars {
  T neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, maximize, first_step, use_weight_decay;

  explicit SgdScalars(const SgdOptions &o)
      : neg_lr(static_cast<T>(-o.lr)), momentum(static_cast<T>(o.momentum)),
        one_minus_dampening(static_cast<T>(1.0 - o.dampening)),
        weight_decay(static_cast<T>(o.weight_decay)), nesterov(o.nesterov),
        maximize(o.maximize), first_step(o.first_step),
        use_weight_decay(o.weight_decay != 0.0) {}
};

// kMomentum: a momentum buffer is read and written (momentum != 0).
template <class T, bool kMomentum>
void sgd_range(T *GRADKIT_RESTRICT param, const T *GRADKIT_RESTRICT grad,
               T *GRADKIT_RESTRICT buf, std::int64_t begin, std::int64_t end,
               const SgdScalars<T> s) {
  for (std::int64_t i = begin; i < end; ++i) {
    const T p = param[i];
    T g = s.maximize ? -grad[i] : grad[i];
    if (s.use_weight_decay)
      g = add_scaled(g, s.weight_decay, p);
    if constexpr (kMomentum) {
      // buf.mul_(momentum).add_(g, alpha=1 - dampening), or a copy of g at first.
      const T b =
          s.first_step ? g : add_scaled(buf[i] * s.momentum, s.one_minus_dampening, g);
      buf[i] = b;
      g = s.nesterov ? add_scaled(g, s.momentum, b) : b;
    }
    param[i] = add_scaled(p, s.neg_lr, g);
  }
}

// The scalars of one Adam step, rounded to T.
template <class T> struct AdamScalars {
  T decay_factor, weight_decay, lerp_weight, lerp_complement, beta2, one_minus_beta2,
      bc2_sqrt, eps, neg_step_size;
  T grad_sign;
  bool lerp_small;

  explicit AdamScalars(const AdamOptions &o) {
    const auto step = static_cast<double>(o.step);
    // As torch: Python floats, 1 - beta**step, lr / bc1 and bc2**0.5 (the same
    // libm pow call that Python's float ** makes).
    const double bc1 = 1.0 - std::pow(o.beta1, step);
    const double bc2 = 1.0 - std::pow(o.beta2, step);
    decay_factor = static_cast<T>(1.0 - o.lr * o.weight_decay);
    weight_decay = static_cast<T>(o.weight_decay);
    // torch's lerp kernel rounds the weight 1 - beta1 to T, then branches on it.
    lerp_weight = static_cast<T>(1.0 - o.beta1);
    lerp_small = std::abs(lerp_weight) < T(0.5);
    lerp_complement = T(1) - lerp_weight;
    beta2 = static_cast<T>(o.beta2);
    one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
    bc2_sqrt = static_cast<T>(std::pow(bc2, 0.5));
    eps = static_cast<T>(o.eps);
    neg_step_size = static_cast<T>(-(o.lr / bc1));
    grad_sign = o.maximize ? T(-1) : T(1);
  }
};

enum class Decay { kNone, kCoupled, kDecoupled };

// kAmsgrad: max_exp_avg_sq is read and written; kLerpSmall: lerp's first branch.
// The branches are template arguments so that the loop has none and vectorizes.
template <class T, bool kAmsgrad, bool kLerpSmall, Decay kDecay>
void adam_range(T *GRADKIT_RESTRICT param, const T *GRADKIT_RESTRICT grad,
                T *GRADKIT_RESTRICT exp_avg, T *GRADKIT_RESTRICT exp_avg_sq,
                T *GRADKIT_RESTRICT max_exp_avg_sq, std::int64_t begin,
                std::int64_t end, const AdamScalars<T> s) {
  for (std::int64_t i = begin; i < end; ++i) {
    T p = param[i];
    // -grad when maximizing: a product with -1 is exact, like the negation.
    T g = grad[i] * s.grad_sign;
    if constexpr (kDecay == Decay::kDecoupled)
      p = p * s.decay_factor;
    if constexpr (kDecay == Decay::kCoupled)
      g = add_scaled(g, s.weight_decay, p);
    T m = exp_avg[i];
    // torch's lerp(m, g, w), which switches formula at |w| = 0.5; its vectorized
    // kernel fuses the last multiply-add: m + w * (g - m), g - (1 - w) * (g - m).
    if constexpr (kLerpSmall)
      m = std::fma(s.lerp_weight, g - m, m);
    else
      m = std::fma(-s.lerp_complement, g - m, g);
    // exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2): v + (c * g) * g, the
    // last multiply-add fused as torch's build of its addcmul kernel does.
    T v = exp_avg_sq[i] * s.beta2;
    v = std::fma(s.one_minus_beta2 * g, g, v);
    T v_used = v;
    if constexpr (kAmsgrad) {
      v_used = nan_maximum(max_exp_avg_sq[i], v);
      max_exp_avg_sq[i] = v_used;
    }
    const T denom = std::sqrt(v_used) / s.bc2_sqrt + s.eps;
    // param.addcdiv_(m, denom, value=-step_size): torch's kernel is
    // self + value * t1 / t2, i.e. (value * m) / denom, bit for bit.
    p = p + s.neg_step_size * m / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    param[i] = p;
  }
}

} // namespace detail

// torch.optim.SGD on n elements, in place; momentum_buffer may be null only when
// options.momentum == 0. The arrays must not overlap.
template <class T>
void sgd_step(T *param, const T *grad, T *momentum_buffer, std::int64_t n,
              const SgdOptions &options, int n_threads) {
  static_assert(std::is_floating_point_v<T>);
  const detail::SgdScalars<T> s(options);
  const bool use_momentum = options.momentum != 0.0;
  for_each_chunk(
      n, chunk_count(n, n_threads), [&](int, std::int64_t begin, std::int64_t end) {
        if (use_momentum)
          detail::sgd_range<T, true>(param, grad, momentum_buffer, begin, end, s);
        else
          detail::sgd_range<T, false>(param, grad, nullptr, begin, end, s);
      });
}

// torch.optim.Adam / AdamW on n elements, in place; max_exp_avg_sq null unless
// amsgrad. The arrays must not overlap.
template <class T>
void adam_step(T *param, const T *grad, T *exp_avg, T *exp_avg_sq, T *max_exp_avg_sq,
               std::int64_t n, const AdamOptions &options, int n_threads) {
  static_assert(std::is_floating_point_v<T>);
  using detail::Decay;
  const detail::AdamScalars<T> s(options);
  const Decay decay = options.weight_decay == 0.0 ? Decay::kNone
                      : options.decoupled         ? Decay::kDecoupled
                                                  : Decay::kCoupled;
  const auto run = [&](auto amsgrad, auto lerp_small, auto kind) {
    for_each_chunk(
        n, chunk_count(n, n_threads), [&](int, std::int64_t begin, std::int64_t end) {
          detail::adam_range<T, decltype(amsgrad)::value, decltype(lerp_small)::value,
                             decltype(kind)::value>(param, grad, exp_avg, exp_avg_sq,
                                                    max_exp_avg_sq, begin, end, s);
        });
  };
  const auto with_decay = [&](auto amsgrad, auto lerp_small) {
    using C = std::integral_constant<Decay, Decay::kCoupled>;
    using D = std::integral_constant<Decay, Decay::kDecoupled>;
    using N = std::integral_constant<Decay, Decay::kNone>;
    if (decay == Decay::kCoupled)
      run(amsgrad, lerp_small, C{});
    else if (decay == Decay::kDecoupled)
      run(amsgrad, lerp_small, D{});
    else
      run(amsgrad, lerp_small, N{});
  };
  const auto with_lerp = [&](auto amsgrad) {
    if (s.lerp_small)
      with_decay(amsgrad, std::true_type{});
    else
      with_decay(amsgrad, std::false_type{});
  };
  if (max_exp_avg_sq != nullptr)
    with_lerp(std::true_type{});
  else
    with_lerp(std::false_type{});
}

} // namespace gradkit::optim
