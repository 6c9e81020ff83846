"""numba twins of the optimizer kernels in cpp/include/gradkit/optim.hpp.

The contract is gradkit/_core.pyi (`optim`): one fused, in-place pass over one
parameter array, reproducing torch.optim's single-tensor path (torch 2.13) in
the array's dtype. Both backends agree bit for bit, so the operation order below
is the contract's, to the letter, and nothing is compiled with fastmath (which
would let LLVM reassociate or fuse into FMAs).

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

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

__all__ = ["sgd_step", "adam_step"]

#: Below this many elements per thread, a parallel launch costs more than it saves.
MIN_CHUNK = 1 << 16

# error_model="numpy": x / 0 is IEEE inf or NaN, as in torch and C++, rather than a
# ZeroDivisionError check on every division, which also stops the loops vectorising.
_kernel = njit(cache=True, nogil=True, error_model="numpy")
_parallel_kernel = njit(cache=True, nogil=True, error_model="numpy", parallel=True)


def _n_chunks(n: int, n_threads: int) -> int:
    return max(1, min(int(n_threads), n // MIN_CHUNK))


@njit(inline="always")
def _chunk_bounds(c, t, n):
    return c * n // t, (c + 1) * n // t


def _part(a, start, stop):  # pragma: no cover - the overload runs under numba
    return None if a is None else a[start:stop]


@overload(_part)
def _part_overload(a, start, stop):
    # Typed per call site, so that None stays None (not an Optional) in a prange.
    if isinstance(a, types.NoneType):
        return lambda a, start, stop: None
    return lambda a, start, stop: a[start:stop]


# --------------------------------------------------------------------------------
# sgd_step


@_kernel
def _sgd_chunk(
    param, grad, buf, neg_lr, momentum, one_minus_dampening, nesterov,
    weight_decay, maximize, first_step, use_weight_decay,
):  # fmt: skip
    for i in range(param.size):
        p = param[i]
        g = -grad[i] if maximize else grad[i]
        if use_weight_decay:
            g = g + weight_decay * p
        if buf is not None:  # momentum != 0
            if first_step:
                b = g
            else:
                b = momentum * buf[i] + one_minus_dampening * g
            buf[i] = b
            g = g + momentum * b if nesterov else b
        param[i] = p + neg_lr * g  # param.add_(g, alpha=-lr)


@_parallel_kernel
def _sgd_parallel(
    param, grad, buf, neg_lr, momentum, one_minus_dampening, nesterov,
    weight_decay, maximize, first_step, use_weight_decay, t,
):  # fmt: skip
    n = param.size
    for c in prange(t):
        start, stop = _chunk_bounds(c, t, n)
        _sgd_chunk(
            param[start:stop], grad[start:stop], _part(buf, start, stop), neg_lr,
            momentum, one_minus_dampening, nesterov, weight_decay, maximize,
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
    t = _n_chunks(n, n_threads)
    if t == 1:
        _sgd_chunk(*args)
    else:
        _sgd_parallel(*args, t)
    return None


# --------------------------------------------------------------------------------
# adam_step


@_kernel
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
                g = g + weight_decay * p
        # torch's lerp(m, g, w): the form that is exact at its nearer end
        m = exp_avg[i]
        d = g - m
        if small_lerp_weight:
            m = m + lerp_weight * d
        else:
            m = g - d * one_minus_lerp_weight
        exp_avg[i] = m
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg_sq[i] = v
        if max_exp_avg_sq is not None:
            vmax = max_exp_avg_sq[i]
            if vmax < v or v != v:  # torch.maximum: NaN from either side
                vmax = v
            max_exp_avg_sq[i] = vmax
            v = vmax
        denom = np.sqrt(v) / bc2_sqrt + eps
        param[i] = p + neg_step_size * (m / denom)


@_parallel_kernel
def _adam_parallel(
    param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, decay_factor, weight_decay,
    decoupled, use_weight_decay, maximize, lerp_weight, one_minus_lerp_weight,
    small_lerp_weight, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size, t,
):  # fmt: skip
    n = param.size
    for c in prange(t):
        start, stop = _chunk_bounds(c, t, n)
        _adam_chunk(
            param[start:stop], grad[start:stop], exp_avg[start:stop],
            exp_avg_sq[start:stop], _part(max_exp_avg_sq, start, stop),
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
    t = _n_chunks(n, n_threads)
    if t == 1:
        _adam_chunk(*args)
    else:
        _adam_parallel(*args, t)
    return None
