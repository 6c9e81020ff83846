"""numba twins of the linear-model kernels in cpp/include/gradkit/linear.hpp.

The contract is gradkit/_core.pyi (`linear`): `loss_grad`, a fused loss and
gradient in one parallel pass over the rows, and `sgd_epoch`, one epoch of
scikit-learn's plain SGD (sklearn/linear_model/_sgd_fast.pyx.tp, 1.9) one sample
at a time. Both backends agree bit for bit: every sum is added in the order the
contract gives (sklearn's sequential order, except the sums over the features of
a dense row in sgd_epoch, see below), and every rounding is the C++ twin's.

Both kernels are written once, as bodies whose first argument is a LossPair: the
loss and its derivative, jitted functions f(code, param, y, p) -> float, which
numba sees as a type (the calls are resolved at compile time; the value holds
nothing at run time):
- the built-in kernels pass _BUILTIN_LOSSES, whose functions switch on the loss
  code; their entry points are module-level functions cached on disk (a body
  compiled into a cached caller is cached with it);
- custom_kernels(loss, dloss) compiles a user's pair of plain functions f(y, p)
  into the same bodies, once per pair, uncached (numba keys a closure by a
  pickle of the functions it holds, which differs in every process).

sgd_epoch is sklearn's loop body with its WeightVector (sklearn/utils/
_weight_vector.pyx.tp), operation for operation and type for type: w_data, the
value of dot, the c of add and scale, y, the sample and class weights and
add_average's num_iter are in the weights' dtype T, everything else float64
(y and the weights are T in sklearn's float32 loop too: its dataset holds them
as float32; for float64 X this changes nothing). reset_wscale's BLAS axpy is
replayed as scipy's OpenBLAS computes it on x86-64, fused multiply-adds included.
`_real(w, x)` marks every rounding to T; no Python literal meets a float32 value
(numba would promote the arithmetic to float64).

sgd_epoch's summation order is the contract's. A CSR row sums over its entries in
sklearn's order (_sgd_csr is sklearn's loop as written). A dense row sums over its
features in LANES = 16 lanes, for the dot product w.x and for add()'s two norm
accumulators alike: lane l adds, in float64 from 0.0, the terms of the features
j = l, l + 16, ... in increasing j, and the lanes are added pairwise at the end
(_lanes_sum). The lanes are an LLVM vector (_LanesType, with its operations as
intrinsics): numba runs LLVM without its SLP vectorizer, and the loop vectorizer
will not reorder a float sum, so the vector is written out; with fastmath off,
every operation rounds as written. The dense loop (_sgd_dense), as the C++ twin's:
- while w_data does not change (a zero update, no L1 penalty, no rescale) the
  next rows' dot products are the same numbers whether computed now or later, so
  up to SPECULATIVE_ROWS of them are computed in one pass over w and used while
  w_data stays;
- after an add, one pass over the features adds, sums the norm accumulators and
  computes the next rows' dot products with the new w (_lanes_pass);
- without the loss sums nothing reads the norm accumulators during the epoch:
  they are summed once at the end, over the w_data the last add left (saved),
  and the scale factors met since are replayed on them, as sklearn would have
  left them;
- rows (and their y and sample_weight) are prefetched PREFETCH_ROWS ahead.

loss_grad splits the rows used into t = min(n_threads, max(1, n // 2**16))
contiguous chunks, chunk c = [c * n // t, (c + 1) * n // t), as parallel.hpp
does; each chunk accumulates its own float64 loss and gradient row after row
(dense rows ROW_BLOCK at a time, so that their dot products run as independent
chains), and the partials are added in chunk order.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.core.errors import NumbaError
from numba.core.imputils import lower_constant
from numba.extending import (
    intrinsic,
    models,
    overload,
    register_model,
    typeof_impl,
)

from gradkit._numba._parallel import chunk_bounds, kernel, n_chunks
from gradkit._numba.optim import _fma

__all__ = ["loss_grad", "sgd_epoch", "custom_kernels", "LinearKernels", "LossPair"]

SQUARED_ERROR = 0
HUBER = 1
EPSILON_INSENSITIVE = 2
SQUARED_EPSILON_INSENSITIVE = 3
LOG_LOSS = 4
HINGE = 5
SQUARED_HINGE = 6
MODIFIED_HUBER = 7
MULTINOMIAL = 8

#: sklearn's _plain_sgd clips the derivative of the loss to +-MAX_DLOSS.
MAX_DLOSS = 1e12
#: WeightVector rescales the weights once wscale falls below this (per dtype).
_RESET_WSCALE_64 = 1e-9
_RESET_WSCALE_32 = 1e-6
#: Rows ahead whose memory is requested while a row is used: a random row of a
#: large X comes from DRAM, and one row of work is shorter than that latency.
PREFETCH_ROWS = 12
#: Dot products computed side by side while w_data does not change (sgd_epoch).
SPECULATIVE_ROWS = 4
#: Dense rows whose dot products run as independent chains (loss_grad).
ROW_BLOCK = 4
#: Lanes of the sums over the features of a dense row in sgd_epoch (the contract's).
LANES = 16
#: Bytes of a cache line, the stride of the prefetches.
_LINE = 64
#: reset_wscale's axpy rounds as the OpenBLAS that scipy ships does on x86-64
#: (its Haswell and SkylakeX kernels), as the C++ twin does: a fused multiply-add
#: on the first n & -block entries, unfused after (block per dtype).
_BLAS_BLOCK_64 = 16
_BLAS_BLOCK_32 = 32

# The kernel bodies are written once and compiled into each caller; they are not
# cached themselves, since their signatures hold a LossPair type.
_body = njit(nogil=True, error_model="numpy")
_parallel_body = njit(nogil=True, error_model="numpy", parallel=True)
#: Row helpers without a function argument: cached like any leaf kernel.
_row = kernel
#: The loops over a dense row in the SGD loop, inlined into it (numba IR) so that
#: the loop keeps its scalars in registers across them. They branch on no None.
_inlined_row = njit(cache=True, nogil=True, error_model="numpy", inline="always")


# --------------------------------------------------------------------------------
# Low-level helpers: prefetch, rounding to an array's dtype. The overloads of the
# small ones are inlined where they are called: a call that takes an array takes
# a reference to it, two atomic operations, which in a loop over features costs
# more than the work. For the same reason the per-sample steps of the SGD loop
# take a scalar of type T, not the weights, to know T.


def _prefetch(a, index):  # pragma: no cover - the overload runs under numba
    """Ask for the cache line holding a.flat[index] (nothing in pure Python)."""


@intrinsic
def _prefetch_intrinsic(typingctx, a, index):
    if not (isinstance(a, types.Array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        offset = context.cast(builder, args[1], sig.args[1], types.intp)
        address = builder.bitcast(
            builder.gep(array.data, [offset]), ir.IntType(8).as_pointer()
        )
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [address.type, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        # read, keep in all cache levels, data cache
        builder.call(
            prefetch,
            [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)],
        )
        return context.get_dummy_value()

    return types.void(a, index), codegen


@overload(_prefetch, inline="always")
def _prefetch_overload(a, index):
    return lambda a, index: _prefetch_intrinsic(a, index)


def _real(like, x):  # pragma: no cover - the overload runs under numba
    """x rounded to the dtype of like, an array or a scalar."""
    return like.dtype.type(x)


@overload(_real, inline="always")
def _real_overload(like, x):
    dtype = like.dtype if isinstance(like, types.Array) else like
    if dtype == types.float32:
        return lambda like, x: np.float32(x)
    return lambda like, x: np.float64(x)


def _reset_wscale_below(w):  # pragma: no cover - the overload runs under numba
    """WeightVector's threshold of wscale for weights of w's dtype."""
    return _RESET_WSCALE_32 if w.dtype == np.float32 else _RESET_WSCALE_64


@overload(_reset_wscale_below, inline="always")
def _reset_wscale_below_overload(w):
    if w.dtype == types.float32:
        return lambda w: _RESET_WSCALE_32
    return lambda w: _RESET_WSCALE_64


# numba prunes an `if a is None` branch only where a is None, and types the branch
# otherwise: the dense and CSR forms of a row are therefore chosen by overloads,
# by type, and the helpers that branch on `x_ind is None` keep both branches
# valid for either type.


def _row_of(X, X_indices, X_indptr, i):  # pragma: no cover - overloaded in numba
    """Row i as (values, feature indices): (X[i], None) for dense X, its slices of
    data and indices for CSR."""
    if X_indices is None:
        return X[i], None
    a, b = X_indptr[i], X_indptr[i + 1]
    return X[a:b], X_indices[a:b]


@overload(_row_of, inline="always")
def _row_of_overload(X, X_indices, X_indptr, i):
    if isinstance(X_indices, types.NoneType):
        return lambda X, X_indices, X_indptr, i: (X[i], None)

    def csr_row(X, X_indices, X_indptr, i):
        a = X_indptr[i]
        b = X_indptr[i + 1]
        return X[a:b], X_indices[a:b]

    return csr_row


def _prefetch_row(X, X_indices, X_indptr, i):  # pragma: no cover - overloaded
    """Ask for the cache lines of row i of X (nothing in pure Python)."""


@overload(_prefetch_row, inline="always")
def _prefetch_row_overload(X, X_indices, X_indptr, i):
    if isinstance(X_indices, types.NoneType):

        def dense_row(X, X_indices, X_indptr, i):
            d = X.shape[1]
            start = i * d
            if d > 0:
                for f in range(0, d, _LINE // X.itemsize):
                    _prefetch(X, start + f)
                _prefetch(X, start + d - 1)  # a row need not start on a line

        return dense_row

    def csr_row(X, X_indices, X_indptr, i):
        start = X_indptr[i]
        stop = X_indptr[i + 1]
        if stop > start:
            for q in range(start, stop, _LINE // X.itemsize):
                _prefetch(X, q)
            _prefetch(X, stop - 1)
            for q in range(start, stop, _LINE // X_indices.itemsize):
                _prefetch(X_indices, q)
            _prefetch(X_indices, stop - 1)

    return csr_row


# --------------------------------------------------------------------------------
# 16 lanes: LANES values of one float dtype as an LLVM vector <LANES x T>, with
# the few operations the dense SGD loop needs. Each function below is the plain
# Python reading (numpy arrays of LANES entries, which is what runs uncompiled);
# its overload calls one intrinsic, a function small enough for LLVM to inline
# (inlined by numba instead, each would cost compile time at every call site).
# Arrays are read and written through their data pointers (_lanes_data): an array
# passed to a function inlined in a loop would take a reference to it per block,
# two atomic operations and a call that spills the vectors. Lanes from `count` on
# are 0 wherever a row ends inside a block of LANES features: a lane never holds
# -0.0 (it starts at +0.0, and x + y is -0.0 only when both are), so those +0.0
# terms add nothing, bit for bit.


class _LanesType(types.Type):
    """numba's type of LANES values of dtype (float32 or float64)."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        super().__init__(name=f"Lanes{LANES}({dtype})")


@register_model(_LanesType)
class _LanesModel(models.PrimitiveModel):
    def __init__(self, dmm: Any, fe_type: _LanesType) -> None:
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, LANES))


_I32 = ir.IntType(32)
_FLOATS = (types.float32, types.float64)


def _vector_of(context, dtype):
    return ir.VectorType(context.get_value_type(dtype), LANES)


def _splat(builder, value, vector_type):
    """value in every lane."""
    first = builder.insert_element(
        ir.Constant(vector_type, ir.Undefined), value, ir.Constant(_I32, 0)
    )
    zeros = ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined), zeros)


def _first_lanes(builder, count):
    """The mask of the lanes l < count (a constant mask once count is)."""
    index_type = ir.VectorType(ir.IntType(64), LANES)
    index = ir.Constant(index_type, list(range(LANES)))
    return builder.icmp_signed("<", index, _splat(builder, count, index_type))


def _llvm_name(dtype):
    """LLVM's suffix for <LANES x dtype>, as in llvm.fabs.v16f64."""
    return f"v{LANES}f{dtype.bitwidth}"


def _lanes_data(a):
    """The data of the C-contiguous array a, flat: a pointer when compiled."""
    return a.reshape(-1)


@intrinsic
def _lanes_data_intrinsic(typingctx, a):
    if not (isinstance(a, types.Array) and a.layout == "C" and a.dtype in _FLOATS):
        return None

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return types.CPointer(a.dtype)(a), codegen


@overload(_lanes_data)
def _lanes_data_overload(a):
    return lambda a: _lanes_data_intrinsic(a)


def _is_data(p):
    return isinstance(p, types.CPointer) and p.dtype in _FLOATS


def _masked(builder, name, dtype, returns, arguments):
    """A call of llvm.masked.<name> (load or store) on <LANES x dtype>."""
    function = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(returns, [a.type for a in arguments]),
        f"llvm.masked.{name}.{_llvm_name(dtype)}.p0",
    )
    return builder.call(function, arguments)


def _lanes_load(p, start, count):
    """p[start:start + count] in the first count lanes, 0 in the others."""
    out = np.zeros(LANES, p.dtype)
    out[:count] = p[start : start + count]
    return out


@intrinsic
def _lanes_load_intrinsic(typingctx, p, start, count):
    if not (_is_data(p) and isinstance(start, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        vector = _vector_of(context, p.dtype)
        start = context.cast(builder, args[1], sig.args[1], types.intp)
        count = context.cast(builder, args[2], sig.args[2], types.int64)
        address = builder.gep(args[0], [start])
        alignment = ir.Constant(_I32, p.dtype.bitwidth // 8)
        mask = _first_lanes(builder, count)
        zeros = ir.Constant(vector, None)
        return _masked(
            builder, "load", p.dtype, vector, [address, alignment, mask, zeros]
        )

    return _LanesType(p.dtype)(p, start, count), codegen


@overload(_lanes_load)
def _lanes_load_overload(p, start, count):
    return lambda p, start, count: _lanes_load_intrinsic(p, start, count)


def _lanes_store(p, start, count, v):
    """p[start:start + count] = the first count lanes of v."""
    p[start : start + count] = v[:count]


@intrinsic
def _lanes_store_intrinsic(typingctx, p, start, count, v):
    if not (_is_data(p) and isinstance(v, _LanesType) and v.dtype == p.dtype):
        return None

    def codegen(context, builder, sig, args):
        start = context.cast(builder, args[1], sig.args[1], types.intp)
        count = context.cast(builder, args[2], sig.args[2], types.int64)
        address = builder.gep(args[0], [start])
        alignment = ir.Constant(_I32, p.dtype.bitwidth // 8)
        mask = _first_lanes(builder, count)
        _masked(
            builder,
            "store",
            p.dtype,
            ir.VoidType(),
            [args[3], address, alignment, mask],
        )
        return context.get_dummy_value()

    return types.void(p, start, count, v), codegen


@overload(_lanes_store)
def _lanes_store_overload(p, start, count, v):
    return lambda p, start, count, v: _lanes_store_intrinsic(p, start, count, v)


def _lanes_fill(x):
    """The float64 x in every lane."""
    return np.full(LANES, np.float64(x))


@intrinsic
def _lanes_fill_intrinsic(typingctx, x):
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[0], sig.args[0], types.float64)
        return _splat(builder, value, _vector_of(context, types.float64))

    return _LanesType(types.float64)(x), codegen


@overload(_lanes_fill)
def _lanes_fill_overload(x):
    return lambda x: _lanes_fill_intrinsic(x)


def _lanes_first(v, count):
    """v with the lanes from count on set to 0."""
    out = v.copy()
    out[count:] = 0
    return out


@intrinsic
def _lanes_first_intrinsic(typingctx, v, count):
    if not isinstance(v, _LanesType):
        return None

    def codegen(context, builder, sig, args):
        count = context.cast(builder, args[1], sig.args[1], types.int64)
        zeros = ir.Constant(args[0].type, None)
        return builder.select(_first_lanes(builder, count), args[0], zeros)

    return v(v, count), codegen


@overload(_lanes_first)
def _lanes_first_overload(v, count):
    return lambda v, count: _lanes_first_intrinsic(v, count)


def _lanes_double(v):
    """v widened to float64 (exact)."""
    return v.astype(np.float64)


@intrinsic
def _lanes_double_intrinsic(typingctx, v):
    if not isinstance(v, _LanesType):
        return None

    def codegen(context, builder, sig, args):
        if v.dtype == types.float64:
            return args[0]
        return builder.fpext(args[0], _vector_of(context, types.float64))

    return _LanesType(types.float64)(v), codegen


@overload(_lanes_double)
def _lanes_double_overload(v):
    return lambda v: _lanes_double_intrinsic(v)


def _lanes_real(like, v):
    """v (float64 lanes) rounded to the type of the scalar like, as _real."""
    return v.astype(np.asarray(like).dtype)


@intrinsic
def _lanes_real_intrinsic(typingctx, like, v):
    if not (like in _FLOATS and v == _LanesType(types.float64)):
        return None

    def codegen(context, builder, sig, args):
        if like == types.float64:
            return args[1]
        return builder.fptrunc(args[1], _vector_of(context, like))

    return _LanesType(like)(like, v), codegen


@overload(_lanes_real)
def _lanes_real_overload(like, v):
    return lambda like, v: _lanes_real_intrinsic(like, v)


def _lanes_arithmetic(instruction):
    @intrinsic
    def arithmetic(typingctx, a, b):
        if not (isinstance(a, _LanesType) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, instruction)(args[0], args[1])

        return a(a, b), codegen

    return arithmetic


_lanes_add = _lanes_arithmetic("fadd")
_lanes_mul = _lanes_arithmetic("fmul")


# +, * and abs lane by lane, in the lanes' dtype (numpy's reading, uncompiled).
@overload(operator.add)
def _lanes_add_overload(a, b):
    if isinstance(a, _LanesType) and a == b:
        return lambda a, b: _lanes_add(a, b)
    return None


@overload(operator.mul)
def _lanes_mul_overload(a, b):
    if isinstance(a, _LanesType) and a == b:
        return lambda a, b: _lanes_mul(a, b)
    return None


@intrinsic
def _lanes_abs(typingctx, v):
    if not isinstance(v, _LanesType):
        return None

    def codegen(context, builder, sig, args):
        vector = args[0].type
        fabs = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(vector, [vector]),
            f"llvm.fabs.{_llvm_name(v.dtype)}",
        )
        return builder.call(fabs, [args[0]])

    return v(v), codegen


@overload(abs)
def _lanes_abs_overload(v):
    if isinstance(v, _LanesType):
        return lambda v: _lanes_abs(v)
    return None


def _lanes_sum(v):
    """The contract's sum of the float64 lanes: halves added lane by lane,
    t8[l] = v[l] + v[l + 8], then t4 from t8, t2 from t4, t2[0] + t2[1]."""
    while v.size > 1:
        half = v.size // 2
        v = v[:half] + v[half:]
    return float(v[0])


@intrinsic
def _lanes_sum_intrinsic(typingctx, v):
    if v != _LanesType(types.float64):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        width = LANES
        while width > 1:
            half = width // 2
            low = ir.Constant(ir.VectorType(_I32, half), list(range(half)))
            high = ir.Constant(ir.VectorType(_I32, half), list(range(half, width)))
            v = builder.fadd(
                builder.shuffle_vector(v, v, low), builder.shuffle_vector(v, v, high)
            )
            width = half
        return builder.extract_element(v, ir.Constant(_I32, 0))

    return types.float64(v), codegen


@overload(_lanes_sum)
def _lanes_sum_overload(v):
    return lambda v: _lanes_sum_intrinsic(v)


# --------------------------------------------------------------------------------
# Losses, as sklearn writes them (sklearn/_loss/_loss.pyx.tp for squared error,
# huber and the half binomial loss, _sgd_fast.pyx.tp for the others).


@_row
def _log1pexp(x):
    if x <= -37.0:
        return math.exp(x)
    if x <= -2.0:
        return math.log1p(math.exp(x))
    if x <= 18.0:
        return math.log(1.0 + math.exp(x))
    if x <= 33.3:
        return x + math.exp(-x)
    return x


@_row
def _builtin_loss(code, param, y, p):
    """loss(y, p) of the single-output loss `code` (0-7)."""
    if code == SQUARED_ERROR:
        return 0.5 * (p - y) * (p - y)
    if code == HUBER:
        abserr = abs(y - p)
        if abserr <= param:
            return 0.5 * (abserr * abserr)
        return param * (abserr - 0.5 * param)
    if code == EPSILON_INSENSITIVE:
        ret = abs(y - p) - param
        return ret if ret > 0.0 else 0.0
    if code == SQUARED_EPSILON_INSENSITIVE:
        ret = abs(y - p) - param
        return ret * ret if ret > 0.0 else 0.0
    if code == LOG_LOSS:
        return _log1pexp(p) - y * p
    if code == HINGE:
        z = p * y
        return param - z if z <= param else 0.0
    if code == SQUARED_HINGE:
        z = param - p * y
        return z * z if z > 0.0 else 0.0
    if code == MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return (1.0 - z) * (1.0 - z)
        return -4.0 * z
    return math.nan


@_row
def _builtin_dloss(code, param, y, p):
    """d loss / d p of the single-output loss `code` (0-7)."""
    if code == SQUARED_ERROR:
        return p - y
    if code == HUBER:
        res = p - y
        if abs(res) <= param:
            return res
        return param if res >= 0.0 else -param
    if code == EPSILON_INSENSITIVE:
        if y - p > param:
            return -1.0
        if p - y > param:
            return 1.0
        return 0.0
    if code == SQUARED_EPSILON_INSENSITIVE:
        z = y - p
        if z > param:
            return -2.0 * (z - param)
        if z < -param:
            return 2.0 * (-z - param)
        return 0.0
    if code == LOG_LOSS:
        if p > -37.0:
            e = math.exp(-p)
            return ((1.0 - y) - y * e) / (1.0 + e)
        return math.exp(p) - y
    if code == HINGE:
        return -y if p * y <= param else 0.0
    if code == SQUARED_HINGE:
        z = param - p * y
        return -2.0 * y * z if z > 0.0 else 0.0
    if code == MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return 2.0 * (1.0 - z) * -y
        return -4.0 * y
    return math.nan


# --------------------------------------------------------------------------------
# The loss pair a kernel body calls.


class LossPair:
    """loss(code, param, y, p) and dloss(code, param, y, p), both jitted."""

    def __init__(self, loss: Any, dloss: Any) -> None:
        self.loss = loss
        self.dloss = dloss


class _LossPairType(types.Dummy):
    """numba's type of a LossPair: the functions are part of the type, so a body
    compiled for it calls them directly, and its value is a dummy (a jitted
    function passed as a value would be a pointer, which cannot be cached)."""

    def __init__(self, loss: Any, dloss: Any) -> None:
        self.loss = loss
        self.dloss = dloss
        names = ", ".join(
            f"{getattr(f, '__qualname__', type(f).__name__)}@{id(f):x}"
            for f in (loss, dloss)
        )
        super().__init__(f"LossPair({names})")

    @property
    def key(self) -> Any:
        return self.loss, self.dloss


register_model(_LossPairType)(models.OpaqueModel)


@typeof_impl.register(LossPair)
def _typeof_loss_pair(value, context):
    return _LossPairType(value.loss, value.dloss)


@lower_constant(_LossPairType)
def _lower_loss_pair(context, builder, typ, value):
    return context.get_dummy_value()


def _loss(losses, code, param, y, p):  # pragma: no cover - overloaded in numba
    return losses.loss(code, param, y, p)


@overload(_loss, inline="always")
def _loss_overload(losses, code, param, y, p):
    f = losses.loss
    return lambda losses, code, param, y, p: f(code, param, y, p)


def _dloss(losses, code, param, y, p):  # pragma: no cover - overloaded in numba
    return losses.dloss(code, param, y, p)


@overload(_dloss, inline="always")
def _dloss_overload(losses, code, param, y, p):
    f = losses.dloss
    return lambda losses, code, param, y, p: f(code, param, y, p)


_BUILTIN_LOSSES = LossPair(_builtin_loss, _builtin_dloss)


# --------------------------------------------------------------------------------
# Row operations, each sum sequential in the row's order (except in sgd_epoch's
# dense passes, further down, which sum in lanes). A dense row is x (length d) with
# x_ind None: every feature is "non-zero", as in sklearn's ArrayDataset; a CSR row
# is its slices of data and indices.


def _blas_block(w):  # pragma: no cover - the overload runs under numba
    return _BLAS_BLOCK_32 if w.dtype == np.float32 else _BLAS_BLOCK_64


@overload(_blas_block, inline="always")
def _blas_block_overload(w):
    if w.dtype == types.float32:
        return lambda w: _BLAS_BLOCK_32
    return lambda w: _BLAS_BLOCK_64


@_row
def _row_dot(w, x, x_ind):
    """sum over the row of float64(w[idx] * x): the product in the arrays' type
    (float64 when they differ: coef and a float32 X), the sum in float64."""
    total = 0.0
    if x_ind is None:
        for j in range(x.size):
            total += np.float64(w[j] * x[j])
    else:
        for j in range(x.size):
            total += np.float64(w[x_ind[j]] * x[j])
    return total


@_row
def _row_axpy(out, g, x, x_ind):
    """out[idx] += g * x over the row, in float64."""
    if x_ind is None:
        for j in range(x.size):
            out[j] = out[j] + g * np.float64(x[j])
    else:
        for j in range(x.size):
            out[x_ind[j]] += g * np.float64(x[j])


# Dense rows are read as X[i, j], never as a view X[i]: a view takes a reference
# to X (two atomic operations), which costs as much as a short row's arithmetic.


@_inlined_row
def _dense_dot(w, X, i):
    """The dot product of dense row i with w, as _row_dot."""
    total = 0.0
    for j in range(w.size):
        total += np.float64(w[j] * X[i, j])
    return total


@_row
def _dense_axpy(out, g, X, i):
    """out += g * X[i] in float64."""
    for j in range(out.size):
        out[j] = out[j] + g * np.float64(X[i, j])


@_inlined_row
def _dense_dots4(w, X, i0, i1, i2, i3):
    """The dot products of four dense rows with w, as four chains in one pass
    (loss_grad's; sgd_epoch sums a dense row in lanes, _lanes_pass)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for j in range(w.size):
        wj = w[j]
        s0 += np.float64(wj * X[i0, j])
        s1 += np.float64(wj * X[i1, j])
        s2 += np.float64(wj * X[i2, j])
        s3 += np.float64(wj * X[i3, j])
    return s0, s1, s2, s3


# The dense rows of sgd_epoch: every sum over the features in LANES lanes (see the
# module docstring). A row is its offset in X.flat, i * d. The weights are a copy
# padded with zeros to whole blocks of LANES (_padded): a masked store to the last
# block, read again by the next pass, could not be forwarded to that load, which
# would wait for the store to reach the cache, on the critical path.

#: What a dense pass does with add()'s norm accumulators.
_NORMS_NONE = 0  # nothing: there is no add
_NORMS_NOW = 1  # sum them
_NORMS_SAVE = 2  # copy the new w_data to `saved`, to sum them after the epoch


@_inlined_row
def _padded(v):
    """A copy of v with zeros after it, to a whole number of blocks of LANES,
    starting on a cache line."""
    n = -(-v.size // LANES) * LANES
    room = np.zeros(n + _LINE // v.itemsize, v.dtype)
    skip = (-room.ctypes.data % _LINE) // v.itemsize
    out = room[skip : skip + n]
    for j in range(v.size):  # a loop: a slice assignment compiles for seconds
        out[j] = v[j]
    return out


@_inlined_row
def _lanes_block(
    zero, w, X, x_at, c, add, norms, saved, r0, r1, r2, r3, n_rows, j, count,
    lanes,
):  # fmt: skip
    """Block j (features j, ..., j + count - 1, count <= LANES) of _lanes_pass,
    added to its six sums' lanes (w, X and saved as _lanes_data gives them)."""
    s0, s1, s2, s3, a2, a1 = lanes
    v = _lanes_load(w, j, LANES)
    if add:
        x = _lanes_double(_lanes_load(X, x_at + j, count))
        # w's padding stays 0 (0 + 0 * c would be NaN for an infinite c)
        v = _lanes_first(_lanes_real(zero, _lanes_double(v) + x * c), count)
        _lanes_store(w, j, LANES, v)
        if norms == _NORMS_NOW:
            a2 = a2 + _lanes_double(v * v)
            a1 = a1 + abs(_lanes_double(v))
        elif norms == _NORMS_SAVE:
            _lanes_store(saved, j, LANES, v)
    if n_rows > 0:
        s0 = s0 + _lanes_double(v * _lanes_load(X, r0 + j, count))
    if n_rows > 1:
        s1 = s1 + _lanes_double(v * _lanes_load(X, r1 + j, count))
    if n_rows > 2:
        s2 = s2 + _lanes_double(v * _lanes_load(X, r2 + j, count))
    if n_rows > 3:
        s3 = s3 + _lanes_double(v * _lanes_load(X, r3 + j, count))
    return s0, s1, s2, s3, a2, a1


@_inlined_row
def _lanes_pass(w, d, X, x_at, step, add, norms, saved, r0, r1, r2, r3, n_rows):
    """One pass over the d features of dense rows, with the new w in registers
    (w and saved are _padded): when add, the first half of WeightVector.add,
    w += x * step for the row x at x_at (step is c / wscale in T; the sum in
    float64, rounded to T), then by norms the lane sums of add()'s norm terms
    float64(w * w) (the product in T) and |w|, or the new w copied to saved; then
    the lane sums of the dot products of the (new) w with the n_rows <=
    SPECULATIVE_ROWS rows at r0, r1, ... Returns the four dot products and the
    two norm sums (0.0 where not asked)."""
    zero = _real(w, 0.0)
    wp = _lanes_data(w)
    xp = _lanes_data(X)
    sp = _lanes_data(saved)
    c = _lanes_fill(np.float64(step))
    o = _lanes_fill(0.0)
    lanes = (o, o, o, o, o, o)
    full = d - d % LANES
    for j in range(0, full, LANES):
        lanes = _lanes_block(
            zero, wp, xp, x_at, c, add, norms, sp, r0, r1, r2, r3, n_rows, j, LANES,
            lanes,
        )  # fmt: skip
    if full < d:
        lanes = _lanes_block(
            zero, wp, xp, x_at, c, add, norms, sp, r0, r1, r2, r3, n_rows, full,
            d - full, lanes,
        )  # fmt: skip
    s0, s1, s2, s3, a2, a1 = lanes
    return (
        _lanes_sum(s0),
        _lanes_sum(s1),
        _lanes_sum(s2),
        _lanes_sum(s3),
        _lanes_sum(a2),
        _lanes_sum(a1),
    )


@_inlined_row
def _lanes_norms(v):
    """add()'s norm accumulators over the _padded weights v, as _lanes_pass sums
    them (the padding adds +0.0 terms: nothing)."""
    p = _lanes_data(v)
    a2 = _lanes_fill(0.0)
    a1 = _lanes_fill(0.0)
    for j in range(0, v.size, LANES):
        x = _lanes_load(p, j, LANES)
        a2 = a2 + _lanes_double(x * x)
        a1 = a1 + abs(_lanes_double(x))
    return _lanes_sum(a2), _lanes_sum(a1)


@_row
def _dense_add_average(aw, X, i, average_a, k):
    """WeightVector.add_average's loop on dense row i."""
    for j in range(aw.size):
        aw[j] = _real(aw, np.float64(aw[j]) + average_a * np.float64(X[i, j]) * k)


@_row
def _add_sparse(w, x, x_ind, step):
    """WeightVector.add on a CSR row, in its order (a column may repeat): returns
    its two accumulators (before their scaling by wscale)."""
    c = np.float64(step)
    l2 = 0.0
    l1 = 0.0
    for j in range(x.size):
        idx = x_ind[j]
        v = _real(w, np.float64(w[idx]) + np.float64(x[j]) * c)
        w[idx] = v
        l2 += np.float64(v * v)
        l1 += abs(np.float64(v))
    return l2, l1


@_row
def _add_average_sparse(aw, x, x_ind, average_a, k):
    """The loop of WeightVector.add_average on a CSR row: aw[idx] += average_a *
    x * k, with k = -c / wscale in float64."""
    for j in range(x.size):
        idx = x_ind[j]
        aw[idx] = _real(aw, np.float64(aw[idx]) + average_a * np.float64(x[j]) * k)


@_row
def _l1_truncate(w, q, f, wscale, u):
    """sklearn's l1penalty on feature f: Tsuruoka et al.'s truncated gradient."""
    z = np.float64(w[f])
    if wscale * z > 0.0:
        v = z - (u + np.float64(q[f])) / wscale
        w[f] = _real(w, v if v > 0.0 else 0.0)
    elif wscale * z < 0.0:
        v = z + (u - np.float64(q[f])) / wscale
        w[f] = _real(w, v if v < 0.0 else 0.0)
    q[f] = _real(q, np.float64(q[f]) + wscale * (np.float64(w[f]) - z))


@_row
def _l1penalty(w, q, x_ind, wscale, u):
    """l1penalty on the features of a row: all of them when x_ind is None."""
    if x_ind is None:
        for f in range(w.size):
            _l1_truncate(w, q, f, wscale, u)
    else:
        for j in range(x_ind.size):
            _l1_truncate(w, q, x_ind[j], wscale, u)


@_row
def _reset_wscale(w, aw, averaged, wscale, average_a, average_b):
    """WeightVector.reset_wscale, its BLAS axpy and scal in T as scipy's OpenBLAS
    rounds them; returns the new (wscale, average_a, average_b)."""
    if averaged:
        a = _real(aw, average_a)
        n = w.size
        fused = n - n % _blas_block(w)
        for j in range(fused):
            aw[j] = _fma(a, w[j], aw[j])
        for j in range(fused, n):
            aw[j] = aw[j] + a * w[j]
        inv_b = _real(aw, 1.0 / average_b)
        for j in range(n):
            aw[j] = aw[j] * inv_b
        average_a = 0.0
        average_b = 1.0
    s = _real(w, wscale)
    for j in range(w.size):
        w[j] = w[j] * s
    return 1.0, average_a, average_b


# --------------------------------------------------------------------------------
# loss_grad


@_row
def _row_index(rows, s):
    return s if rows is None else rows[s]


@_row
def _prefetch_sample(X, X_indices, X_indptr, y, sw, i):
    _prefetch_row(X, X_indices, X_indptr, i)
    _prefetch(y, i)
    if sw is not None:
        _prefetch(sw, i)


@_row
def _prefetch_ahead(X, X_indices, X_indptr, y, sw, rows, s, stop):
    """Prefetch the sample PREFETCH_ROWS after s when rows are gathered (in order,
    the hardware prefetcher has them already)."""
    if rows is not None and s + PREFETCH_ROWS < stop:
        _prefetch_sample(X, X_indices, X_indptr, y, sw, rows[s + PREFETCH_ROWS])


def _weight_of(sw, i):  # pragma: no cover - overloaded in numba
    return 1.0 if sw is None else sw[i]


@overload(_weight_of, inline="always")
def _weight_of_overload(sw, i):
    if isinstance(sw, types.NoneType):
        return lambda sw, i: 1.0
    return lambda sw, i: sw[i]


@_body
def _single_finish(losses, code, param, wt, yi, p, total, gi):
    """A row of weight wt, target yi and prediction p: (total, gi, c) with its
    weighted loss and c = wt dloss added; c = 0 and nothing added when wt == 0.
    (Scalars only: an array argument would cost a reference per row.)"""
    if wt == 0.0:
        return total, gi, 0.0
    total += wt * _loss(losses, code, param, yi, p)
    c = wt * _dloss(losses, code, param, yi, p)
    return total, gi + c, c


@_body
def _single_dense(
    losses, X, y, sw, rows, start, stop, coef, intercept, code, param, grad, grad_b
):  # fmt: skip
    """A single-output loss over dense rows, ROW_BLOCK rows at a time: their dot
    products side by side, then the gradient entries in row order, as one row at
    a time would add them."""
    w = coef[0]
    b0 = intercept[0]
    g = grad[0]
    total = 0.0
    gi = 0.0
    s = start
    while s + ROW_BLOCK <= stop:
        for r in range(ROW_BLOCK):
            _prefetch_ahead(X, None, None, y, sw, rows, s + r, stop)
        i0 = _row_index(rows, s)
        i1 = _row_index(rows, s + 1)
        i2 = _row_index(rows, s + 2)
        i3 = _row_index(rows, s + 3)
        a0, a1, a2, a3 = _dense_dots4(w, X, i0, i1, i2, i3)
        total, gi, c0 = _single_finish(
            losses, code, param, _weight_of(sw, i0), y[i0], a0 + b0, total, gi
        )
        total, gi, c1 = _single_finish(
            losses, code, param, _weight_of(sw, i1), y[i1], a1 + b0, total, gi
        )
        total, gi, c2 = _single_finish(
            losses, code, param, _weight_of(sw, i2), y[i2], a2 + b0, total, gi
        )
        total, gi, c3 = _single_finish(
            losses, code, param, _weight_of(sw, i3), y[i3], a3 + b0, total, gi
        )
        for j in range(g.size):
            g[j] = (
                g[j]
                + c0 * np.float64(X[i0, j])
                + c1 * np.float64(X[i1, j])
                + c2 * np.float64(X[i2, j])
                + c3 * np.float64(X[i3, j])
            )
        s += ROW_BLOCK
    for r in range(s, stop):
        i = _row_index(rows, r)
        p = _dense_dot(w, X, i) + b0
        total, gi, c = _single_finish(
            losses, code, param, _weight_of(sw, i), y[i], p, total, gi
        )
        _dense_axpy(g, c, X, i)
    grad_b[0] = gi
    return total


@_body
def _single_csr(
    losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
    code, param, grad, grad_b,
):  # fmt: skip
    """A single-output loss over CSR rows, one row at a time."""
    w = coef[0]
    b0 = intercept[0]
    g = grad[0]
    total = 0.0
    gi = 0.0
    for r in range(start, stop):
        _prefetch_ahead(X, X_indices, X_indptr, y, sw, rows, r, stop)
        i = _row_index(rows, r)
        wt = _weight_of(sw, i)
        if wt == 0.0:
            continue
        x, x_ind = _row_of(X, X_indices, X_indptr, i)
        p = _row_dot(w, x, x_ind) + b0
        total, gi, c = _single_finish(losses, code, param, wt, y[i], p, total, gi)
        _row_axpy(g, c, x, x_ind)
    grad_b[0] = gi
    return total


def _single_rows(
    losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
    code, param, grad, grad_b,
):  # fmt: skip
    if X_indices is None:
        return _single_dense(
            losses, X, y, sw, rows, start, stop, coef, intercept, code, param, grad,
            grad_b,
        )  # fmt: skip
    return _single_csr(
        losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
        code, param, grad, grad_b,
    )  # fmt: skip


@overload(_single_rows)
def _single_rows_overload(
    losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
    code, param, grad, grad_b,
):  # fmt: skip
    if isinstance(X_indices, types.NoneType):

        def dense(
            losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef,
            intercept, code, param, grad, grad_b,
        ):  # fmt: skip
            return _single_dense(
                losses, X, y, sw, rows, start, stop, coef, intercept, code, param,
                grad, grad_b,
            )  # fmt: skip

        return dense

    def csr(
        losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
        code, param, grad, grad_b,
    ):  # fmt: skip
        return _single_csr(
            losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef,
            intercept, code, param, grad, grad_b,
        )  # fmt: skip

    return csr


@_row
def _multinomial_rows(
    X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept, grad, grad_b
):  # fmt: skip
    """sklearn's CyHalfMultinomialLoss row by row: the k dot products, the loss
    (log-sum-exp with the max first), then the k gradient updates."""
    k = coef.shape[0]
    p = np.empty(k)
    total = 0.0
    for r in range(start, stop):
        _prefetch_ahead(X, X_indices, X_indptr, y, sw, rows, r, stop)
        i = _row_index(rows, r)
        wt = 1.0 if sw is None else sw[i]
        if wt == 0.0:
            continue
        x, x_ind = _row_of(X, X_indices, X_indptr, i)
        for j in range(k):
            p[j] = _row_dot(coef[j], x, x_ind) + intercept[j]
        label = int(y[i])
        top = p[0]
        for j in range(1, k):
            if top < p[j]:
                top = p[j]
        raw_label = p[label]
        sum_exps = 0.0
        for j in range(k):
            p[j] = math.exp(p[j] - top)
            sum_exps += p[j]
        total += (math.log(sum_exps) + top - raw_label) * wt
        for j in range(k):
            c = (p[j] / sum_exps - (1.0 if j == label else 0.0)) * wt
            grad_b[j] += c
            _row_axpy(grad[j], c, x, x_ind)
    return total


@_body
def _loss_grad_chunk(
    losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
    code, param, grad, grad_b,
):  # fmt: skip
    """Rows rows[start:stop] (start:stop when rows is None) of loss_grad: the
    weighted loss sum is returned, the gradient written into grad and grad_b
    (overwritten), all in float64."""
    for j in range(coef.shape[0]):
        grad_b[j] = 0.0
        for f in range(coef.shape[1]):
            grad[j, f] = 0.0
    if code == MULTINOMIAL:
        return _multinomial_rows(
            X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept, grad,
            grad_b,
        )  # fmt: skip
    return _single_rows(
        losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept,
        code, param, grad, grad_b,
    )  # fmt: skip


@_parallel_body
def _loss_grad_chunks(
    losses, X, X_indices, X_indptr, y, sw, rows, n_rows, coef, intercept, code,
    param, grads, grads_b, totals,
):  # fmt: skip
    t = totals.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n_rows)
        totals[c] = _loss_grad_chunk(
            losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef,
            intercept, code, param, grads[c], grads_b[c],
        )  # fmt: skip


@kernel
def _loss_grad_builtin(
    X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept, code,
    param, grad, grad_b,
):  # fmt: skip
    return _loss_grad_chunk(
        _BUILTIN_LOSSES, X, X_indices, X_indptr, y, sw, rows, start, stop, coef,
        intercept, code, param, grad, grad_b,
    )  # fmt: skip


@kernel
def _loss_grad_builtin_parallel(
    X, X_indices, X_indptr, y, sw, rows, n_rows, coef, intercept, code, param,
    grads, grads_b, totals,
):  # fmt: skip
    _loss_grad_chunks(
        _BUILTIN_LOSSES, X, X_indices, X_indptr, y, sw, rows, n_rows, coef,
        intercept, code, param, grads, grads_b, totals,
    )  # fmt: skip


# --------------------------------------------------------------------------------
# sgd_epoch: the steps of sklearn's loop body, then the loop over CSR rows (as
# sklearn writes it) and over dense rows (with the dot products scheduled ahead).


@_row
def _eta_at(learning_rate, eta, eta0, alpha, optimal_init, power_t, t):
    if learning_rate == 2:  # optimal
        return 1.0 / (alpha * (optimal_init + t - 1.0))
    if learning_rate == 3:  # invscaling
        return eta0 / math.pow(t, power_t)
    return eta  # constant, adaptive


@_row
def _penalty_term(zero, alpha, l1_ratio, sq_norm, l1_norm):
    """alpha ((1 - l1_ratio) 0.5 norm()**2 + l1_ratio l1norm()): WeightVector's
    norm() and l1norm() return T (the type of zero), and norm() is squared in T."""
    norm = _real(zero, math.sqrt(sq_norm))
    return alpha * (
        (1.0 - l1_ratio) * 0.5 * np.float64(norm * norm)
        + l1_ratio * np.float64(_real(zero, l1_norm))
    )


@_body
def _update_of(losses, code, param, p, y_t, sw_t, eta, weight_pos, weight_neg):
    """-eta * clip(dloss) * class_weight * sample_weight; y_t and sw_t are T, and
    so is the class weight and the weights' product, as in sklearn."""
    class_weight = _real(y_t, weight_pos if y_t > 0.0 else weight_neg)
    dloss = _dloss(losses, code, param, np.float64(y_t), p)
    if dloss < -MAX_DLOSS:
        dloss = -MAX_DLOSS
    elif dloss > MAX_DLOSS:
        dloss = MAX_DLOSS
    update = -eta * dloss
    update *= np.float64(class_weight * sw_t)
    return update


@_row
def _scale(zero, factor, wscale, sq_norm, l1_norm):
    """WeightVector.scale(max(0, factor)) up to its reset, with c in T (the type of
    zero): the new (wscale, sq_norm, l1_norm)."""
    c = _real(zero, factor if factor > 0.0 else 0.0)
    return (
        wscale * np.float64(c),
        sq_norm * np.float64(c * c),
        l1_norm * abs(np.float64(c)),
    )


@_row
def _average_finish(num_iter, average_a, average_b, wscale):
    """The end of WeightVector.add_average (num_iter in T)."""
    mu = 1.0 / np.float64(num_iter)
    if num_iter > 1.0:
        average_b /= 1.0 - mu
    average_a += mu * average_b * wscale
    return average_a, average_b


@_body
def _sgd_csr(
    losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param,
    penalty, alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
    fit_intercept, intercept_decay, weight_pos, weight_neg, average, compute_loss,
):  # fmt: skip
    """sklearn's loop over CSR rows, as written. Returns (sumloss, objective_sum)."""
    intercept = state[0]
    average_intercept = state[1]
    t = state[2]
    eta = state[3]
    u = state[4]
    wscale = state[5]
    sq_norm = state[6]
    l1_norm = state[7]
    average_a = state[8]
    average_b = state[9]
    scales = penalty == 1 or penalty == 3
    # aw and q are empty arrays when absent (see LinearKernels.sgd_epoch)
    truncates = (penalty == 2 or penalty == 3) and q.size == w.size
    averaged = aw.size == w.size
    zero = _real(w, 0.0)  # T, to round to
    reset_below = _reset_wscale_below(w)
    sumloss = 0.0
    objective_sum = 0.0
    m = order.size
    for s in range(m):
        if s + PREFETCH_ROWS < m:
            soon = order[s + PREFETCH_ROWS]
            _prefetch_row(X, X_indices, X_indptr, soon)
            _prefetch(y, soon)
            if sw is not None:
                _prefetch(sw, soon)
        i = order[s]
        x, x_ind = _row_of(X, X_indices, X_indptr, i)
        y_t = _real(zero, y[i])
        sw_t = _real(zero, 1.0 if sw is None else sw[i])
        p = np.float64(_real(zero, _row_dot(w, x, x_ind) * wscale)) + intercept
        eta = _eta_at(learning_rate, eta, eta0, alpha, optimal_init, power_t, t)
        if compute_loss:
            cur_loss = _loss(losses, code, param, np.float64(y_t), p)
            sumloss += cur_loss
            objective_sum += cur_loss
            if penalty > 0:
                objective_sum += _penalty_term(zero, alpha, l1_ratio, sq_norm, l1_norm)
        update = _update_of(
            losses, code, param, p, y_t, sw_t, eta, weight_pos, weight_neg
        )
        if scales:
            wscale, sq_norm, l1_norm = _scale(
                zero, 1.0 - (1.0 - l1_ratio) * eta * alpha, wscale, sq_norm, l1_norm
            )
            if wscale < reset_below:
                wscale, average_a, average_b = _reset_wscale(
                    w, aw, averaged, wscale, average_a, average_b
                )
        update_t = _real(zero, update)  # the c of add and add_average
        if update != 0.0:
            wscale_t = _real(zero, wscale)
            l2, l1 = _add_sparse(w, x, x_ind, update_t / wscale_t)
            sq_norm = l2 * np.float64(wscale_t * wscale_t)
            l1_norm = l1 * np.float64(wscale_t)
        if fit_intercept and update != 0.0:
            intercept += update * intercept_decay
        if averaged and 0 < average and average <= t:
            num_iter = _real(zero, t - average + 1.0)
            _add_average_sparse(aw, x, x_ind, average_a, np.float64(-update_t) / wscale)
            average_a, average_b = _average_finish(
                num_iter, average_a, average_b, wscale
            )
            average_intercept += (intercept - average_intercept) / (t - average + 1.0)
        if truncates:
            u += l1_ratio * eta * alpha
            _l1penalty(w, q, x_ind, wscale, u)
        t += 1.0
    state[0] = intercept
    state[1] = average_intercept
    state[2] = t
    state[3] = eta
    state[4] = u
    state[5] = wscale
    state[6] = sq_norm
    state[7] = l1_norm
    state[8] = average_a
    state[9] = average_b
    return sumloss, objective_sum


@_body
def _sgd_dense(
    losses, X, y, sw, order, w, aw, q, state, code, param, penalty, alpha,
    l1_ratio, learning_rate, eta0, power_t, optimal_init, fit_intercept,
    intercept_decay, weight_pos, weight_neg, average, compute_loss,
):  # fmt: skip
    """sklearn's loop over dense rows, each sum over the features in LANES lanes,
    with the dot products scheduled ahead (see the module docstring)."""
    intercept = state[0]
    average_intercept = state[1]
    t = state[2]
    eta = state[3]
    u = state[4]
    wscale = state[5]
    sq_norm = state[6]
    l1_norm = state[7]
    average_a = state[8]
    average_b = state[9]
    scales = penalty == 1 or penalty == 3
    # aw and q are empty arrays when absent (see LinearKernels.sgd_epoch)
    truncates = (penalty == 2 or penalty == 3) and q.size == w.size
    averaged = aw.size == w.size
    zero = _real(w, 0.0)  # T, to round to
    reset_below = _reset_wscale_below(w)
    sumloss = 0.0
    objective_sum = 0.0
    m = order.size
    d = w.size
    # The lanes work on a padded copy of w_data (wk), the other steps on its
    # first d entries (wd); w gets them back at the end.
    wk = _padded(w)
    wd = wk[:d]
    # Without the loss sums nothing reads sq_norm or l1_norm during the epoch:
    # they are summed at the end over the w_data the last add left (saved), at
    # its wscale (pending_wscale), and the scale factors met since (later_scales,
    # n_later of them) are replayed.
    norms = _NORMS_NOW if compute_loss else _NORMS_SAVE
    saved = _padded(w[: 0 if compute_loss else d])
    later_scales = np.empty(m if not compute_loss and scales else 0, w.dtype)
    n_later = 0
    norms_pending = False
    pending_wscale = zero
    # Dot sums (before the scaling by wscale) of rows order[spec_begin:][:spec_count],
    # valid while w does not change: scalars, so that the first stays in a register
    # (it is on the critical path from one sample to the next).
    spec0 = spec1 = spec2 = spec3 = 0.0
    spec_begin = 0
    spec_count = 0
    # Speculate more after a zero update (the next is likely zero too), less after
    # a nonzero one (every extra row would be thrown away).
    last_was_zero = False
    for s in range(m):
        if s + PREFETCH_ROWS < m:
            soon = order[s + PREFETCH_ROWS]
            _prefetch_row(X, None, None, soon)
            _prefetch(y, soon)
            if sw is not None:
                _prefetch(sw, soon)
        i = order[s]
        if s - spec_begin >= spec_count:
            want = 1 if truncates or not last_was_zero else SPECULATIVE_ROWS
            spec_count = min(want, m - s)
            spec_begin = s
            r = spec_count - 1  # the rows past spec_count are not read
            spec0, spec1, spec2, spec3, _, _ = _lanes_pass(
                wk, d, X, 0, zero, False, _NORMS_NONE, saved, i * d,
                order[s + min(1, r)] * d, order[s + min(2, r)] * d,
                order[s + min(3, r)] * d, spec_count,
            )  # fmt: skip
        k = s - spec_begin
        innerprod = spec0 if k == 0 else spec1 if k == 1 else spec2 if k == 2 else spec3
        y_t = _real(zero, y[i])
        sw_t = _real(zero, 1.0 if sw is None else sw[i])
        p = np.float64(_real(zero, innerprod * wscale)) + intercept
        eta = _eta_at(learning_rate, eta, eta0, alpha, optimal_init, power_t, t)
        if compute_loss:
            cur_loss = _loss(losses, code, param, np.float64(y_t), p)
            sumloss += cur_loss
            objective_sum += cur_loss
            if penalty > 0:
                objective_sum += _penalty_term(zero, alpha, l1_ratio, sq_norm, l1_norm)
        update = _update_of(
            losses, code, param, p, y_t, sw_t, eta, weight_pos, weight_neg
        )
        if scales:
            factor = 1.0 - (1.0 - l1_ratio) * eta * alpha
            if norms_pending:
                later_scales[n_later] = _real(zero, factor if factor > 0.0 else 0.0)
                n_later += 1
            wscale, sq_norm, l1_norm = _scale(zero, factor, wscale, sq_norm, l1_norm)
            if wscale < reset_below:
                wscale, average_a, average_b = _reset_wscale(
                    wd, aw, averaged, wscale, average_a, average_b
                )
                spec_count = 0
        update_t = _real(zero, update)  # the c of add and add_average
        added = update != 0.0
        wscale_t = _real(zero, wscale)
        if fit_intercept and added:
            intercept += update * intercept_decay
        if averaged and 0 < average and average <= t:
            num_iter = _real(zero, t - average + 1.0)
            _dense_add_average(aw, X, i, average_a, np.float64(-update_t) / wscale)
            average_a, average_b = _average_finish(
                num_iter, average_a, average_b, wscale
            )
            average_intercept += (intercept - average_intercept) / (t - average + 1.0)
        if truncates:
            u += l1_ratio * eta * alpha
        t += 1.0
        if added:
            # add(), its norm terms, and the dot products of the next rows with
            # the new w in the same pass (none when l1penalty changes w first).
            ahead = 0 if truncates else 2 if last_was_zero else 1
            ahead = min(ahead, m - s - 1)
            r0 = order[s + 1] * d if ahead > 0 else 0
            r1 = order[s + 2] * d if ahead > 1 else 0
            spec0, spec1, _, _, acc2, acc1 = _lanes_pass(
                wk, d, X, i * d, update_t / wscale_t, True, norms, saved, r0, r1, 0,
                0, ahead,
            )  # fmt: skip
            spec_begin = s + 1
            spec_count = ahead
            if compute_loss:
                sq_norm = acc2 * np.float64(wscale_t * wscale_t)
                l1_norm = acc1 * np.float64(wscale_t)
            else:
                norms_pending = True
                pending_wscale = wscale_t
                n_later = 0
        if truncates:
            _l1penalty(wd, q, None, wscale, u)
            spec_count = 0
        last_was_zero = not added
    if norms_pending:
        acc2, acc1 = _lanes_norms(saved)
        sq_norm = acc2 * np.float64(pending_wscale * pending_wscale)
        l1_norm = acc1 * np.float64(pending_wscale)
        for k in range(n_later):
            c = later_scales[k]
            sq_norm *= np.float64(c * c)
            l1_norm *= abs(np.float64(c))
    for j in range(d):
        w[j] = wd[j]
    state[0] = intercept
    state[1] = average_intercept
    state[2] = t
    state[3] = eta
    state[4] = u
    state[5] = wscale
    state[6] = sq_norm
    state[7] = l1_norm
    state[8] = average_a
    state[9] = average_b
    return sumloss, objective_sum


def _sgd_rows(
    losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param,
    penalty, alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
    fit_intercept, intercept_decay, weight_pos, weight_neg, average, compute_loss,
):  # fmt: skip
    if X_indices is None:
        return _sgd_dense(
            losses, X, y, sw, order, w, aw, q, state, code, param, penalty, alpha,
            l1_ratio, learning_rate, eta0, power_t, optimal_init, fit_intercept,
            intercept_decay, weight_pos, weight_neg, average, compute_loss,
        )  # fmt: skip
    return _sgd_csr(
        losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param,
        penalty, alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
        fit_intercept, intercept_decay, weight_pos, weight_neg, average,
        compute_loss,
    )  # fmt: skip


@overload(_sgd_rows)
def _sgd_rows_overload(
    losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param,
    penalty, alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
    fit_intercept, intercept_decay, weight_pos, weight_neg, average, compute_loss,
):  # fmt: skip
    if isinstance(X_indices, types.NoneType):

        def dense(
            losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code,
            param, penalty, alpha, l1_ratio, learning_rate, eta0, power_t,
            optimal_init, fit_intercept, intercept_decay, weight_pos, weight_neg,
            average, compute_loss,
        ):  # fmt: skip
            return _sgd_dense(
                losses, X, y, sw, order, w, aw, q, state, code, param, penalty,
                alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
                fit_intercept, intercept_decay, weight_pos, weight_neg, average,
                compute_loss,
            )  # fmt: skip

        return dense

    def csr(
        losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param,
        penalty, alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
        fit_intercept, intercept_decay, weight_pos, weight_neg, average,
        compute_loss,
    ):  # fmt: skip
        return _sgd_csr(
            losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code,
            param, penalty, alpha, l1_ratio, learning_rate, eta0, power_t,
            optimal_init, fit_intercept, intercept_decay, weight_pos, weight_neg,
            average, compute_loss,
        )  # fmt: skip

    return csr


@kernel
def _sgd_epoch_builtin(
    X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param, penalty,
    alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init, fit_intercept,
    intercept_decay, weight_pos, weight_neg, average, compute_loss,
):  # fmt: skip
    return _sgd_rows(
        _BUILTIN_LOSSES, X, X_indices, X_indptr, y, sw, order, w, aw, q, state,
        code, param, penalty, alpha, l1_ratio, learning_rate, eta0, power_t,
        optimal_init, fit_intercept, intercept_decay, weight_pos, weight_neg,
        average, compute_loss,
    )  # fmt: skip


# --------------------------------------------------------------------------------
# The entry points, with the contract's signatures.


class LinearKernels:
    """loss_grad and sgd_epoch with the contract's signatures, over three jitted
    kernels: one chunk of loss_grad, its chunks in parallel, one SGD epoch."""

    def __init__(
        self,
        chunk: Callable[..., Any],
        chunks: Callable[..., Any],
        epoch: Callable[..., Any],
        code: int | None = None,
    ) -> None:
        self._chunk = chunk
        self._chunks = chunks
        self._epoch = epoch
        # Custom losses ignore the loss code: any single-output code will do.
        self._code = code

    def loss_grad(
        self, X, X_indices, X_indptr, y, sample_weight, rows, coef, intercept,
        loss, loss_param, grad_coef, grad_intercept, n_threads,
    ):  # fmt: skip
        code = int(loss) if self._code is None else self._code
        n_rows = y.shape[0] if rows is None else rows.shape[0]
        t = n_chunks(n_rows, n_threads)
        args = (X, X_indices, X_indptr, y, sample_weight, rows)
        rest = (coef, intercept, np.int64(code), float(loss_param))
        if t == 1:
            total = self._chunk(*args, 0, n_rows, *rest, grad_coef, grad_intercept)
            return float(total)
        k, d = coef.shape
        grads = np.empty((t, k, d))
        grads_b = np.empty((t, k))
        totals = np.empty(t)
        self._chunks(*args, n_rows, *rest, grads, grads_b, totals)
        # The partials in chunk order.
        total = totals[0]
        grad_coef[...] = grads[0]
        grad_intercept[...] = grads_b[0]
        for c in range(1, t):
            total += totals[c]
            grad_coef += grads[c]
            grad_intercept += grads_b[c]
        return float(total)

    def sgd_epoch(
        self, X, X_indices, X_indptr, y, sample_weight, order, weights,
        average_weights, l1_q, state, loss, loss_param, penalty, alpha, l1_ratio,
        learning_rate, eta0, power_t, optimal_init, fit_intercept,
        intercept_decay, weight_pos, weight_neg, average, compute_loss,
    ):  # fmt: skip
        code = int(loss) if self._code is None else self._code
        penalty = int(penalty)
        # Absent arrays become empty ones: a None would be one more signature
        # to compile, for branches that are taken or not at run time anyway.
        if average_weights is None:
            average_weights = np.empty(0, weights.dtype)
        if l1_q is None:
            l1_q = np.empty(0, weights.dtype)
        # As sklearn: l1_ratio is 0 for the L2 penalty and 1 for L1.
        l1_ratio = 0.0 if penalty == 1 else 1.0 if penalty == 2 else float(l1_ratio)
        sumloss, objective_sum = self._epoch(
            X, X_indices, X_indptr, y, sample_weight, order, weights,
            average_weights, l1_q, state, np.int64(code), float(loss_param),
            np.int64(penalty), float(alpha), l1_ratio,
            np.int64(learning_rate), float(eta0), float(power_t),
            float(optimal_init), bool(fit_intercept), float(intercept_decay),
            float(weight_pos), float(weight_neg), np.int64(average),
            bool(compute_loss),
        )  # fmt: skip
        return float(sumloss), float(objective_sum)


_BUILTIN = LinearKernels(
    _loss_grad_builtin, _loss_grad_builtin_parallel, _sgd_epoch_builtin
)


def loss_grad(
    X, X_indices, X_indptr, y, sample_weight, rows, coef, intercept, loss,
    loss_param, grad_coef, grad_intercept, n_threads,
):  # fmt: skip
    return _BUILTIN.loss_grad(
        X, X_indices, X_indptr, y, sample_weight, rows, coef, intercept, loss,
        loss_param, grad_coef, grad_intercept, n_threads,
    )  # fmt: skip


def sgd_epoch(
    X, X_indices, X_indptr, y, sample_weight, order, weights, average_weights,
    l1_q, state, loss, loss_param, penalty, alpha, l1_ratio, learning_rate, eta0,
    power_t, optimal_init, fit_intercept, intercept_decay, weight_pos, weight_neg,
    average, compute_loss,
):  # fmt: skip
    return _BUILTIN.sgd_epoch(
        X, X_indices, X_indptr, y, sample_weight, order, weights, average_weights,
        l1_q, state, loss, loss_param, penalty, alpha, l1_ratio, learning_rate,
        eta0, power_t, optimal_init, fit_intercept, intercept_decay, weight_pos,
        weight_neg, average, compute_loss,
    )  # fmt: skip


# --------------------------------------------------------------------------------
# Custom losses (numba only: the C++ backend cannot compile user code).

_CUSTOM: dict[tuple[Any, Any], LinearKernels] = {}


def _compile_scalar(func: Any, role: str) -> Any:
    """func jitted and compiled now for (float64, float64) -> a number, or a
    TypeError that says which function failed and why."""
    name = getattr(func, "__name__", repr(func))
    if not callable(func):
        raise TypeError(f"custom_kernels: {role} must be callable, got {func!r}.")
    if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
        return func
    jitted = (
        func
        if isinstance(func, numba.core.dispatcher.Dispatcher)
        else njit(nogil=True, error_model="numpy")(func)
    )
    try:
        jitted.compile((types.float64, types.float64))
    except NumbaError as error:
        why = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # no terminal colours
        raise TypeError(
            f"custom_kernels: the {role} function {name!r} cannot be compiled by "
            "numba in nopython mode as f(y: float64, p: float64) -> float; "
            f"numba says: {why}"
        ) from error
    (signature,) = (
        sig
        for sig in jitted.nopython_signatures
        if sig.args == (types.float64, types.float64)
    )
    result = signature.return_type
    if not isinstance(result, (types.Float, types.Integer, types.Boolean)):
        raise TypeError(
            f"custom_kernels: the {role} function {name!r} must return a float, "
            f"but numba types its result as {result}."
        )
    return jitted


def _compile_custom(loss: Any, dloss: Any) -> LinearKernels:
    user_loss = _compile_scalar(loss, "loss")
    user_dloss = _compile_scalar(dloss, "dloss")

    @_body
    def loss_of(code, param, y, p):
        return np.float64(user_loss(y, p))

    @_body
    def dloss_of(code, param, y, p):
        return np.float64(user_dloss(y, p))

    losses = LossPair(loss_of, dloss_of)

    @_body
    def chunk(
        X, X_indices, X_indptr, y, sw, rows, start, stop, coef, intercept, code,
        param, grad, grad_b,
    ):  # fmt: skip
        return _loss_grad_chunk(
            losses, X, X_indices, X_indptr, y, sw, rows, start, stop, coef,
            intercept, code, param, grad, grad_b,
        )  # fmt: skip

    @_body
    def chunks(
        X, X_indices, X_indptr, y, sw, rows, n_rows, coef, intercept, code, param,
        grads, grads_b, totals,
    ):  # fmt: skip
        _loss_grad_chunks(
            losses, X, X_indices, X_indptr, y, sw, rows, n_rows, coef, intercept,
            code, param, grads, grads_b, totals,
        )  # fmt: skip

    @_body
    def epoch(
        X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code, param,
        penalty, alpha, l1_ratio, learning_rate, eta0, power_t, optimal_init,
        fit_intercept, intercept_decay, weight_pos, weight_neg, average,
        compute_loss,
    ):  # fmt: skip
        return _sgd_rows(
            losses, X, X_indices, X_indptr, y, sw, order, w, aw, q, state, code,
            param, penalty, alpha, l1_ratio, learning_rate, eta0, power_t,
            optimal_init, fit_intercept, intercept_decay, weight_pos, weight_neg,
            average, compute_loss,
        )  # fmt: skip

    return LinearKernels(chunk, chunks, epoch, code=SQUARED_ERROR)


def custom_kernels(loss: Any, dloss: Any) -> LinearKernels:
    """loss_grad and sgd_epoch (the contract's signatures) for a user's loss.

    loss(y, p) and dloss(y, p) (d loss / d p) are functions of two floats that
    numba can compile in nopython mode (plain Python functions or @njit ones);
    they are compiled here, for float64, and a TypeError names the one that
    fails. The returned kernels ignore their `loss` and `loss_param` arguments
    and are single-output; they run compiled like the built-in ones, but are not
    cached on disk. The same pair of functions gets the same kernels.
    """
    key = (loss, dloss)
    found = _CUSTOM.get(key)
    if found is None:
        found = _CUSTOM[key] = _compile_custom(loss, dloss)
    return found
