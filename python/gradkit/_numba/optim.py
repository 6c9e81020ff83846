"""numba twins of the optimizer kernels in cpp/include/gradkit/optim.hpp.

The contract is gradkit/_core.pyi (`optim`): one fused, in-place pass over one
parameter array, reproducing torch.optim's single-tensor path (torch 2.13) in
the array's dtype. Both backends agree bit for bit, so the operation order is the
C++ twin's, to the letter: where torch's vectorized CPU kernels fuse a multiply-add
(add with alpha, lerp, addcmul) so do these, with an explicit llvm.fma (_fma);
nothing is compiled with fastmath, which would let LLVM reassociate or fuse more.

Every float scalar is rounded to the array dtype by the wrappers, as torch rounds
a Python scalar to a float32 tensor's dtype; the float64 scalars of the formulas
(1 - lr * weight_decay, 1 - beta**step, lr / bc1, bc2**0.5) are Python floats
first. bc2**0.5 is libm's pow, as in torch, and not math.sqrt: the two differ in
the last bit for about one value in a thousand. Inside the kernels no literal
meets an array value: numba would promote float32 arithmetic with a Python float
or int literal to float64.

Elements are independent, so results do not depend on the thread count. Large
arrays are split into t = min(n_threads, max(1, n // 2**16)) contiguous chunks,
chunk c = [c * n // t, (c + 1) * n // t); one chunk runs serially, without a
parallel launch. Absent state arrays stay None: numba compiles their branches
away per signature.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from gradkit._numba._parallel import (
    chunk_bounds,
    kernel,
    n_chunks,
    optional_slice,
    parallel_kernel,
)

__all__ = ["sgd_step", "adam_step"]


def _fma(a, b, c):  # pragma: no cover - the overload runs under numba
    """a * b + c rounded once, in the dtype of a (NUMBA_DISABLE_JIT only: exact
    rational arithmetic, then one correct rounding)."""
    real = type(a)
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)) or a == 0 or b == 0:
        with np.errstate(all="ignore"):  # NaN, inf and signed zeros as IEEE has them
            return real(a * b + c)
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if exact == 0:
        return real(0.0)  # an exact cancellation is +0 when rounding to nearest
    near = float(exact)  # correctly rounded to double
    rounded = real(near)
    if real is np.float64 or float(rounded) == near or not np.isfinite(rounded):
        return rounded
    if Fraction(near) == exact:
        return rounded
    # near may sit on a float32 tie that exact does not: round from exact instead
    other = np.nextafter(
        rounded, real(np.inf if exact > Fraction(float(rounded)) else -np.inf)
    )
    err = abs(Fraction(float(rounded)) - exact)
    return rounded if err <= abs(Fraction(float(other)) - exact) else other


@intrinsic
def _fma_intrinsic(typingctx, a, b, c):
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(args[0].type, [args[0].type] * 3),
            f"llvm.fma.f{32 if a.bitwidth == 32 else 64}",
        )
        return builder.call(fn, args)

    return a(a, a, a), codegen


@overload(_fma)
def _fma_overload(a, b, c):
    return lambda a, b, c: _fma_intrinsic(a, b, c)


# --------------------------------------------------------------------------------
# sgd_step


@kernel
def _sgd_chunk(
    param, grad, buf, neg_lr, momentum, one_minus_dampening, nesterov,
    weight_decay, maximize, first_step, use_weight_decay,
):  # fmt: skip
    for i in range(param.size):
        p = param[i]
        g = -grad[i] if maximize else grad[i]
        if use_weight_decay:
            g = _fma(weight_decay, p, g)
        if buf is not None:  # momentum != 0
            if first_step:
                b = g
            else:
                b = _fma(one_minus_dampening, g, buf[i] * momentum)
            buf[i] = b
            g = _fma(momentum, b, g) if nesterov else b
        param[i] = _fma(neg_lr, g, p)  # param.add_(g, alpha=-lr)


@parallel_kernel
def _sgd_parallel(
    param, grad, buf, neg_lr, momentum, one_minus_dampening, nesterov,
    weight_decay, maximize, first_step, use_weight_decay, t,
):  # fmt: skip
    n = param.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        _sgd_chunk(
            param[start:stop], grad[start:stop], optional_slice(buf, start, stop),
            neg_lr, momentum, one_minus_dampening, nesterov, weight_decay, maximize,
            first_step, use_weight_decay,
        )  # fmt: skip


def sgd_step(
    param, grad, momentum_buffer, lr, momentum, dampening, nesterov,
    weight_decay, maximize, first_step, n_threads,
):  # fmt: skip
    n = param.size
    if n == 0:
        return None
    real = param.dtype.type
    args = (
        param,
        grad,
        momentum_buffer,
        real(-float(lr)),
        real(momentum),
        real(1.0 - float(dampening)),
        bool(nesterov),
        real(weight_decay),
        bool(maximize),
        bool(first_step),
        float(weight_decay) != 0.0,  # torch skips the add, so 0 * inf never meets g
    )
    t = n_chunks(n, n_threads)
    if t == 1:
        _sgd_chunk(*args)
    else:
        _sgd_parallel(*args, t)
    return None


# --------------------------------------------------------------------------------
# adam_step


@kernel
def _adam_chunk(
    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, decay_factor, weight_decay,
    decoupled, use_weight_decay, maximize, lerp_weight, one_minus_lerp_weight,
    small_lerp_weight, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size,
):  # fmt: skip
    for i in range(param.size):
        p = param[i]
        g = -grad[i] if maximize else grad[i]
        if use_weight_decay:
            if decoupled:
                p = p * decay_factor
            else:
                g = _fma(weight_decay, p, g)
        # torch's lerp(m, g, w), which switches form at w = 0.5
        m = exp_avg[i]
        d = g - m
        if small_lerp_weight:
            m = _fma(lerp_weight, d, m)
        else:
            m = _fma(-one_minus_lerp_weight, d, g)
        exp_avg[i] = m
        # mul_(beta2).addcmul_(g, g, value=1 - beta2): v + (c * g) * g, fused
        v = _fma(one_minus_beta2 * g, g, exp_avg_sq[i] * beta2)
        exp_avg_sq[i] = v
        if max_exp_avg_sq is not None:
            vmax = max_exp_avg_sq[i]
            if vmax < v or v != v:  # torch.maximum: NaN from either side
                vmax = v
            max_exp_avg_sq[i] = vmax
            v = vmax
        denom = np.sqrt(v) / bc2_sqrt + eps
        # addcdiv_(m, denom, value=-step_size): torch's kernel is p + value * m / t2
        param[i] = p + neg_step_size * m / denom


@parallel_kernel
def _adam_parallel(
    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, decay_factor, weight_decay,
    decoupled, use_weight_decay, maximize, lerp_weight, one_minus_lerp_weight,
    small_lerp_weight, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size, t,
):  # fmt: skip
    n = param.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        _adam_chunk(
            param[start:stop], grad[start:stop], exp_avg[start:stop],
            exp_avg_sq[start:stop], optional_slice(max_exp_avg_sq, start, stop),
            decay_factor, weight_decay, decoupled, use_weight_decay, maximize,
            lerp_weight, one_minus_lerp_weight, small_lerp_weight, beta2,
            one_minus_beta2, bc2_sqrt, eps, neg_step_size,
        )  # fmt: skip


def adam_step(
    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2,
    eps, weight_decay, decoupled, maximize, n_threads,
):  # fmt: skip
    n = param.size
    if n == 0:
        return None
    real = param.dtype.type
    lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
    weight_decay = float(weight_decay)
    # The float64 scalars, as torch computes them in Python, then rounded.
    bc1 = 1.0 - beta1 ** int(step)
    bc2 = 1.0 - beta2 ** int(step)
    lerp_weight = real(1.0 - beta1)
    args = (
        param,
        grad,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq,
        real(1.0 - lr * weight_decay),
        real(weight_decay),
        bool(decoupled),
        weight_decay != 0.0,  # as torch: no p * 1, no g + 0 * p (0 * inf is NaN)
        bool(maximize),
        lerp_weight,
        real(1) - lerp_weight,  # in the dtype, as torch's lerp computes it
        bool(abs(lerp_weight) < 0.5),
        real(beta2),
        real(1.0 - beta2),
        real(bc2**0.5),  # torch's bias_correction2**0.5
        real(eps),
        -real(lr / bc1),
    )
    t = n_chunks(n, n_threads)
    if t == 1:
        _adam_chunk(*args)
    else:
        _adam_parallel(*args, t)
    return None
