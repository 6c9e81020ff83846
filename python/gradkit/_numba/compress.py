"""numba twins of the compression kernels of the C++ core (`compress`).

The contract is gradkit/_core.pyi (`_Compress`). Every result is exact: min and
max, a few float32 operations per element each rounded once, counts and bit
positions; nothing is summed in floating point. So the two backends agree bit for
bit with no common summation order to keep, and no result depends on the thread
count or on how the work is cut.

Work over n elements runs on t = min(n_threads, max(1, n // 2**16)) threads, n
counted in elements, not rows (on two threads a 4096 x 4096 matrix splits its
rows in two), cut as in _parallel.py; one chunk runs serially, without a
parallel launch.

Quantization is float32 throughout, as torch computes it, and no literal meets an
array value (numba would promote float32 arithmetic with a Python literal to
float64): the constants are np.float32 scalars made by the wrappers. The per
channel rounding, rne(float32(float32(x * inv) + z)), must not be fused, and
nothing here is compiled with fastmath, which would let LLVM contract it; the per
tensor one is a real fma (optim._fma, llvm.fma). The only fast-math flags are
nnan and nsz on the min / max calls of the range scan (llvm.minnum / maxnum, see
_minmax_intrinsic): x is finite and which zero comes out is unspecified, and with
them LLVM vectorises the reduction. A dequantized value is float32(q - zero_point)
with the difference in int64, exact for any int32 zero point, times the scale.

When quantize_rows takes the ranges from the data, each row is scanned for its
min and max and quantized right after, while it is still in cache; parallel over
whole rows. With fewer rows than chunks (per tensor: one row) the ranges come from
row_minmax first, which then cuts the rows themselves, and the quantization is
parallel over elements.

magnitude_threshold is a radix select on the bit patterns of |x| (sign bit
cleared: for finite non-negative floats the unsigned order of the patterns is the
float order, and equal values have equal patterns, -0.0 included). A parallel pass
counts the top 16 bits per chunk; the merged counts name the digit holding the
k-th smallest; its candidates are either gathered, when few, and finished serially
(16 bits at a time, only over the bits where they differ), or counted by another
parallel pass on their next 16 bits. No sort, no comparison-based selection, and
ties cost nothing more than a count.

prune_mask and unpack_mask cut x into chunks of whole mask bytes (multiples of 8
elements), so that no two threads write one byte. prune_mask counts, per chunk,
the elements above the threshold and those equal to it (a first parallel pass);
prefix sums give each chunk its offset in `values` and how many of the first
`ties` ties fall in it; a second pass writes the bytes and the kept values.
unpack_mask counts the set bits per chunk, then writes. Both compare and move bit
patterns (see the section's comment). Outputs are allocated by the wrappers with
numpy, which asks for huge pages, rather than inside the kernels.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from gradkit._numba._parallel import chunk_bounds, kernel, n_chunks, parallel_kernel
from gradkit._numba.optim import _fma

__all__ = [
    "row_minmax",
    "quantize_rows",
    "dequantize_rows",
    "magnitude_threshold",
    "prune_mask",
    "unpack_mask",
]

_U64 = np.uint64
_F32 = np.float32
#: torch's MinMax observers' eps: torch.finfo(torch.float32).eps, 2**-23.
_EPS = np.float32(np.finfo(np.float32).eps)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)

#: Bits decided per pass of the radix select: a chunk's 2**16 counters (four
#: uint32 histograms and their int64 sum, 1.5 MiB) stay in a core's L2 cache.
_DIGIT_BITS = 16
_BUCKETS = 1 << _DIGIT_BITS
_DIGIT_BITS_U = _U64(_DIGIT_BITS)
_U0 = _U64(0)
_U1 = _U64(1)
_U8_1 = np.uint8(1)
#: The magnitude bits of float32 / float64 patterns (the sign bit cleared).
_MAGNITUDE32 = _U64(0x7FFFFFFF)
_MAGNITUDE64 = _U64(0x7FFFFFFFFFFFFFFF)

#: Set bits of every byte value.
_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], np.int64)


def _fmin(a, b):  # pragma: no cover - the overload runs under numba
    """The smaller of a and b, which are not NaN; either one when they are equal
    (NUMBA_DISABLE_JIT only: numba calls llvm.minnum)."""
    return b if b < a else a


def _fmax(a, b):  # pragma: no cover - the overload runs under numba
    """The larger of a and b, as _fmin."""
    return b if b > a else a


def _minmax_intrinsic(name):
    """llvm.minnum / llvm.maxnum with the nnan and nsz flags on the call, which
    LLVM turns into vector min / max reductions; a compare-and-select loop does not
    vectorise unless fast-math flags also reach the select, which numba does not
    set."""

    @intrinsic
    def call(typingctx, a, b):
        if not (isinstance(a, types.Float) and a == b):
            return None

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(args[0].type, [args[0].type] * 2),
                f"llvm.{name}.f{a.bitwidth}",
            )
            return builder.call(fn, args, fastmath=("nnan", "nsz"))

        return a(a, a), codegen

    return call


_fmin_intrinsic = _minmax_intrinsic("minnum")
_fmax_intrinsic = _minmax_intrinsic("maxnum")


@overload(_fmin)
def _fmin_overload(a, b):
    return lambda a, b: _fmin_intrinsic(a, b)


@overload(_fmax)
def _fmax_overload(a, b):
    return lambda a, b: _fmax_intrinsic(a, b)


# --------------------------------------------------------------------------------
# row_minmax


@kernel
def _minmax(v):
    """(min, max) of a non-empty 1-D float32 v."""
    lo = v[0]
    hi = v[0]
    for j in range(1, v.size):
        lo = _fmin(lo, v[j])
        hi = _fmax(hi, v[j])
    return lo, hi


@kernel
def _minmax_rows(x, cols, lo, hi):
    """Rows [0, lo.size) of x (flat, rows of `cols` elements, from the chunk's
    first row on) into lo and hi."""
    for i in range(lo.size):
        lo[i], hi[i] = _minmax(x[i * cols : (i + 1) * cols])


@parallel_kernel
def _minmax_rows_parallel(x, cols, lo, hi, t):
    r = lo.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, r)
        _minmax_rows(
            x[start * cols : stop * cols], cols, lo[start:stop], hi[start:stop]
        )


@parallel_kernel
def _minmax_pieces_parallel(x, cols, lo, hi, t):
    """Fewer rows than chunks: every row is cut into t pieces, min / max-ed in
    parallel, then the pieces' results are folded."""
    r = lo.size
    piece_lo = np.empty(r * t, x.dtype)
    piece_hi = np.empty(r * t, x.dtype)
    for p in prange(r * t):
        i = p // t
        start, stop = chunk_bounds(p - i * t, t, cols)
        piece_lo[p], piece_hi[p] = _minmax(x[i * cols + start : i * cols + stop])
    for i in range(r):
        lo[i] = _minmax(piece_lo[i * t : (i + 1) * t])[0]
        hi[i] = _minmax(piece_hi[i * t : (i + 1) * t])[1]


def row_minmax(x, n_threads):
    r, cols = x.shape
    lo = np.empty(r, np.float32)
    hi = np.empty(r, np.float32)
    flat = x.reshape(-1)
    t = n_chunks(r * cols, n_threads)
    if t == 1:
        _minmax_rows(flat, cols, lo, hi)
    elif r >= t:
        _minmax_rows_parallel(flat, cols, lo, hi, t)
    else:
        _minmax_pieces_parallel(flat, cols, lo, hi, t)
    return lo, hi


# --------------------------------------------------------------------------------
# quantize_rows


@njit(inline="always")
def _qparams(lo, hi, qmin, qmax, span, symmetric, symmetric_zero_point):
    """(scale, zero_point as float32, float32(1 / scale)) of a row of range
    [lo, hi], as torch's _calculate_qparams, every operation in float32."""
    min_neg = lo if lo < _ZERO else _ZERO
    max_pos = hi if hi > _ZERO else _ZERO
    if symmetric:
        bound = -min_neg if -min_neg > max_pos else max_pos
        scale = bound / span
        scale = scale if scale > _EPS else _EPS
        zero_point = symmetric_zero_point
    else:
        scale = (max_pos - min_neg) / span
        scale = scale if scale > _EPS else _EPS
        zero_point = qmin - np.rint(min_neg / scale)
        zero_point = qmin if zero_point < qmin else zero_point
        zero_point = qmax if zero_point > qmax else zero_point
    return scale, zero_point, _ONE / scale


@kernel
def _quantize_span(x, inv, z, qmin, qmax, fused, out):
    """out = clamp(rne(x * inv + z), qmin, qmax), fused or rounded twice."""
    if fused:
        for j in range(x.size):
            q = np.rint(_fma(x[j], inv, z))
            q = qmin if q < qmin else q
            out[j] = qmax if q > qmax else q
    else:
        for j in range(x.size):
            q = np.rint(x[j] * inv + z)
            q = qmin if q < qmin else q
            out[j] = qmax if q > qmax else q


@kernel
def _quantize_rows_with_stats(
    x, cols, qmin, qmax, span, symmetric, symmetric_zero_point, fused,
    scale, zero_point, out,
):  # fmt: skip
    """Rows [0, scale.size) of x (flat, from the chunk's first row on): the min
    and max of each row, its parameters, then the row quantized while in cache."""
    for i in range(scale.size):
        row = x[i * cols : (i + 1) * cols]
        lo, hi = _minmax(row)
        s, z, inv = _qparams(lo, hi, qmin, qmax, span, symmetric, symmetric_zero_point)
        scale[i] = s
        zero_point[i] = np.int32(z)
        _quantize_span(row, inv, z, qmin, qmax, fused, out[i * cols : (i + 1) * cols])


@parallel_kernel
def _quantize_rows_with_stats_parallel(
    x, cols, qmin, qmax, span, symmetric, symmetric_zero_point, fused,
    scale, zero_point, out, t,
):  # fmt: skip
    r = scale.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, r)
        _quantize_rows_with_stats(
            x[start * cols : stop * cols], cols, qmin, qmax, span, symmetric,
            symmetric_zero_point, fused, scale[start:stop], zero_point[start:stop],
            out[start * cols : stop * cols],
        )  # fmt: skip


@kernel
def _qparams_rows(
    lo, hi, qmin, qmax, span, symmetric, symmetric_zero_point, scale, zero_point,
    inv, z,
):  # fmt: skip
    for i in range(lo.size):
        s, zf, inv_i = _qparams(
            lo[i], hi[i], qmin, qmax, span, symmetric, symmetric_zero_point
        )
        scale[i] = s
        zero_point[i] = np.int32(zf)
        inv[i] = inv_i
        z[i] = zf


@kernel
def _quantize_elements(x, cols, inv, z, qmin, qmax, fused, out, start, stop):
    """Elements [start, stop) of x (flat), each row's run with its parameters."""
    at = start
    while at < stop:
        i = at // cols
        end = min(stop, (i + 1) * cols)
        _quantize_span(x[at:end], inv[i], z[i], qmin, qmax, fused, out[at:end])
        at = end


@parallel_kernel
def _quantize_elements_parallel(x, cols, inv, z, qmin, qmax, fused, out, t):
    n = x.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        _quantize_elements(x, cols, inv, z, qmin, qmax, fused, out, start, stop)


def quantize_rows(x, lo, hi, qmin, qmax, symmetric, fma_rounding, out, n_threads):
    r, cols = x.shape
    n = r * cols
    t = n_chunks(n, n_threads)
    qmin, qmax = int(qmin), int(qmax)
    symmetric, fused = bool(symmetric), bool(fma_rounding)
    consts = (
        _F32(qmin),
        _F32(qmax),
        _F32((qmax - qmin) / 2) if symmetric else _F32(qmax - qmin),
        symmetric,
        _F32(0 if qmin < 0 else (qmin + qmax + 1) // 2),
    )
    scale = np.empty(r, np.float32)
    zero_point = np.empty(r, np.int32)
    flat, flat_out = x.reshape(-1), out.reshape(-1)
    if lo is None and r >= t:
        args = (flat, cols, *consts, fused, scale, zero_point, flat_out)
        if t == 1:
            _quantize_rows_with_stats(*args)
        else:
            _quantize_rows_with_stats_parallel(*args, t)
        return scale, zero_point
    if lo is None:
        lo, hi = row_minmax(x, n_threads)
    inv = np.empty(r, np.float32)
    z = np.empty(r, np.float32)
    _qparams_rows(lo, hi, *consts, scale, zero_point, inv, z)
    qmin_f, qmax_f = consts[0], consts[1]
    if t == 1:
        _quantize_elements(flat, cols, inv, z, qmin_f, qmax_f, fused, flat_out, 0, n)
    else:
        _quantize_elements_parallel(
            flat, cols, inv, z, qmin_f, qmax_f, fused, flat_out, t
        )
    return scale, zero_point


# --------------------------------------------------------------------------------
# dequantize_rows


@kernel
def _dequantize_elements(q, cols, scale, zero_point, out, start, stop):
    """Elements [start, stop) of q and out (flat)."""
    at = start
    while at < stop:
        i = at // cols
        end = min(stop, (i + 1) * cols)
        s = scale[i]
        zp = np.int64(zero_point[i])
        src = q[at:end]
        dst = out[at:end]
        for j in range(src.size):
            # an exact int64 difference, one rounding to float32, one product
            dst[j] = _F32(np.int64(src[j]) - zp) * s
        at = end


@parallel_kernel
def _dequantize_elements_parallel(q, cols, scale, zero_point, out, t):
    n = q.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        _dequantize_elements(q, cols, scale, zero_point, out, start, stop)


def dequantize_rows(q, scale, zero_point, out, n_threads):
    r, cols = q.shape
    n = r * cols
    if n == 0:
        return None
    args = (q.reshape(-1), cols, scale, zero_point, out.reshape(-1))
    t = n_chunks(n, n_threads)
    if t == 1:
        _dequantize_elements(*args, 0, n)
    else:
        _dequantize_elements_parallel(*args, t)
    return None


# --------------------------------------------------------------------------------
# magnitude_threshold
#
# The candidates are the magnitudes whose bits from `shift` up are `prefix`; at
# first all of them (shift = the pattern's width less the sign bit, prefix 0).
# Each pass over x counts the next 16-bit digit of the candidates (in parallel,
# per chunk), and the digit holding the k-th smallest extends the prefix. Once
# the candidates are few (at most n / 64, or 4096: one top digit of continuous
# data holds far fewer), they are gathered and finished serially instead, without
# another pass over x. A float32 is decided by two passes at most, a float64 by
# four (many ties: a pruned model's zeros).

#: The digits of a chunk are counted into this many histograms of uint32, element
#: i into histogram i % 4: when many magnitudes share a digit (a pruned model's
#: zeros), one histogram would chain each increment of the shared counter behind
#: the last through memory (2**24 float32, half of them zeros: 13.9 ms with one
#: histogram, 7.2 ms with two, 5.1 ms with four; 4.0 ms on continuous data).
_SUB_HISTOGRAMS = 4
#: Elements counted between two folds of the uint32 histograms into int64 counts,
#: so that no uint32 counter can wrap (each sees at most a quarter of them).
_FOLD_EVERY = 1 << 32
#: Candidates are gathered once at most max(n >> _GATHER_SHIFT, _GATHER_MIN) are
#: left: then a pass over them costs little next to one over x.
_GATHER_SHIFT = 6
_GATHER_MIN = 1 << 12


@njit(inline="always")
def _magnitude_mask(bits):
    """The magnitude bits of float32 / float64 patterns; bits.itemsize is a
    compile-time constant of the array type."""
    return _MAGNITUDE64 if bits.itemsize == 8 else _MAGNITUDE32


@kernel
def _digit_counts(bits, prefix, shift, low, sub, counts):
    """Add the digit (bits low .. shift - 1) of each candidate of one chunk (its
    slice of bits) to counts, through the zeroed histograms sub
    (_SUB_HISTOGRAMS, _BUCKETS), left zeroed. Others add 0, without a branch."""
    mask = _magnitude_mask(bits)
    digit_mask = (_U1 << (shift - low)) - _U1
    for start in range(0, bits.size, _FOLD_EVERY):
        block = bits[start : start + _FOLD_EVERY]
        n = block.size
        grouped = n - n % _SUB_HISTOGRAMS
        if (mask >> shift) == _U0:  # the first pass: every magnitude is one
            for i in range(0, grouped, _SUB_HISTOGRAMS):
                for s in range(_SUB_HISTOGRAMS):
                    sub[s, (_U64(block[i + s]) & mask) >> low] += 1
        else:
            for i in range(0, grouped, _SUB_HISTOGRAMS):
                for s in range(_SUB_HISTOGRAMS):
                    m = _U64(block[i + s]) & mask
                    sub[s, (m >> low) & digit_mask] += (m >> shift) == prefix
        for i in range(grouped, n):
            m = _U64(block[i]) & mask
            sub[0, (m >> low) & digit_mask] += (m >> shift) == prefix
        for s in range(_SUB_HISTOGRAMS):
            for d in range(_BUCKETS):
                counts[d] += np.int64(sub[s, d])
                sub[s, d] = 0


@parallel_kernel
def _digit_counts_parallel(bits, prefix, shift, low, sub, counts, t):
    n = bits.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        _digit_counts(bits[start:stop], prefix, shift, low, sub[c], counts[c])


@kernel
def _gather(bits, prefix, shift, into):
    """Write the candidates' magnitudes of one chunk into `into` (exactly as many
    slots). A branch per element: they are few, so it is mostly not taken."""
    mask = _magnitude_mask(bits)
    at = 0
    for i in range(bits.size):
        m = _U64(bits[i]) & mask
        if (m >> shift) == prefix:
            into[at] = m
            at += 1


@parallel_kernel
def _gather_parallel(bits, prefix, shift, offsets, into, t):
    n = bits.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        _gather(bits[start:stop], prefix, shift, into[offsets[c] : offsets[c + 1]])


@kernel
def _digit_of_rank(counts, k):
    """(d, below): the digit d holding the k-th smallest (1-based) of the counted
    values, and how many were counted in digits below d."""
    below = 0
    d = 0
    last = counts.size - 1  # only reached when k is out of range: no read past it
    while d < last and below + counts[d] < k:
        below += counts[d]
        d += 1
    return d, below


@kernel
def _select(values, k):
    """(v, below): v the k-th smallest (1-based) of the magnitude bits in values,
    `below` how many are smaller than v. Only the bits where values differ are
    decided, digit by digit from the highest, keeping the candidates in place at
    the front of values; when they are all equal (ties), nothing is counted."""
    m = values.size
    if m == 0:  # only when k is out of range: nothing to read
        return _U0, 0
    first = _U64(values[0])
    diff = _U0
    for i in range(m):
        diff |= _U64(values[i]) ^ first
    shift = _U0
    while diff >> shift:
        shift += _U1
    counts = np.empty(_BUCKETS if shift > _U0 else 0, np.int64)
    below = 0
    while shift > _U0:
        low = shift - _DIGIT_BITS_U if shift > _DIGIT_BITS_U else _U0
        digit_mask = (_U1 << (shift - low)) - _U1
        counts[:] = 0
        for i in range(m):
            counts[(_U64(values[i]) >> low) & digit_mask] += 1
        d, smaller = _digit_of_rank(counts, k)
        k -= smaller
        below += smaller
        if counts[d] < m:  # keep the candidates only
            kept = 0
            for i in range(m):
                v = values[i]
                if (_U64(v) >> low) & digit_mask == _U64(d):
                    values[kept] = v
                    kept += 1
            m = kept
        shift = low
    return values[0], below


def _count_digits(bits, prefix, shift, low, sub, t):
    """Per chunk (t, _BUCKETS) counts of the candidates' digits low .. shift - 1."""
    counts = np.zeros((t, _BUCKETS), np.int64)
    prefix, shift, low = _U64(prefix), _U64(shift), _U64(low)
    if t == 1:
        _digit_counts(bits, prefix, shift, low, sub[0], counts[0])
    else:
        _digit_counts_parallel(bits, prefix, shift, low, sub, counts, t)
    return counts


def magnitude_threshold(x, k, n_threads):
    n = x.size
    k = int(k)
    bits = x.view(np.uint64 if x.dtype.itemsize == 8 else np.uint32)
    t = n_chunks(n, n_threads)
    sub = np.zeros((t, _SUB_HISTOGRAMS, _BUCKETS), np.uint32)
    few = max(n >> _GATHER_SHIFT, _GATHER_MIN)
    prefix, shift = 0, 8 * x.dtype.itemsize - 1  # every magnitude: no bit decided
    below = 0  # how many magnitudes are known to be smaller than the threshold
    while shift > 0:
        low = max(0, shift - _DIGIT_BITS)
        counts = _count_digits(bits, prefix, shift, low, sub, t)
        digit, smaller = _digit_of_rank(counts.sum(axis=0), k - below)
        below += int(smaller)
        prefix, shift = (prefix << (shift - low)) | int(digit), low
        per_chunk = counts[:, digit]
        if shift > 0 and int(per_chunk.sum()) <= few:
            offsets = np.concatenate(([0], np.cumsum(per_chunk)))
            candidates = np.empty(int(offsets[t]), bits.dtype)
            if t == 1:
                _gather(bits, _U64(prefix), _U64(shift), candidates)
            else:
                _gather_parallel(
                    bits, _U64(prefix), _U64(shift), offsets, candidates, t
                )
            prefix, smaller = _select(candidates, k - below)
            below += int(smaller)
            break
    threshold = np.array([prefix], bits.dtype).view(x.dtype)[0]
    return float(threshold), k - below


# --------------------------------------------------------------------------------
# prune_mask and unpack_mask
#
# Both work on the bit patterns of x (uint32 / uint64 views): |x| against the
# threshold becomes an unsigned compare of the magnitude bits with two bounds made
# from the threshold by the wrapper (_threshold_bounds), which vectorises where the
# float64 compare of a float32 x does not, and moving a value is moving its bits.
# The byte loops are branch-free where it pays: a mask byte is built from 8
# compares, and a value is stored (or loaded) for every element whether its bit is
# set or not, the offset advanced by the bit; a branch per element mispredicts on
# a random mask. That store may land one slot past the chunk's last kept value, so
# it runs only while 8 slots are left in the chunk's run of values; the last bytes
# take the branchy path.


def _byte_chunks(n, t):
    """Element bounds (t + 1,) of t chunks of whole mask bytes over n elements."""
    n_bytes = (n + 7) // 8
    bounds = np.array([8 * (c * n_bytes // t) for c in range(t + 1)], np.int64)
    bounds[t] = n
    return bounds


def _threshold_bounds(threshold, dtype):
    """(magnitude mask, above, equal) as unsigned scalars of x's width, such that
    for the magnitude bits m of an element (its pattern & mask), compared in
    float64, |x| > threshold iff m >= above and |x| == threshold iff m == equal.
    A NaN threshold prunes nothing (no |x| < NaN): every m is above it.

    Non-negative floats order as their patterns. A threshold that x's dtype holds
    exactly is its own bound; a float32 x is otherwise above it from the next
    float32 up, and never equal. `equal` is then all ones, which no magnitude is.
    """
    uint = np.uint64 if dtype.itemsize == 8 else np.uint32
    real = dtype.type
    never = uint(np.iinfo(uint).max)
    if not threshold >= 0.0:  # negative, or NaN: no |x| is below it, all are kept
        return _magnitude_bits(uint), uint(0), never
    with np.errstate(over="ignore"):  # beyond float32: inf
        near = real(threshold)
    if float(near) == threshold:  # -0.0 included, as 0.0
        bits = int(np.array(abs(near), dtype).view(uint))
        return _magnitude_bits(uint), uint(bits + 1), uint(bits)
    if float(near) < threshold:
        near = np.nextafter(near, real(np.inf))
    return _magnitude_bits(uint), uint(np.array(near, dtype).view(uint)), never


def _magnitude_bits(uint):
    return uint(_MAGNITUDE64 if uint is np.uint64 else _MAGNITUDE32)


@kernel
def _prune_counts(bits, magnitude, above_from, equal_to):
    """(above, equal): elements of one chunk with |x| > / == threshold."""
    above = 0
    equal = 0
    for i in range(bits.size):
        m = bits[i] & magnitude
        above += m >= above_from
        equal += m == equal_to
    return above, equal


@kernel
def _mask_bytes(bits, magnitude, above_from, equal_to, mask, flags):
    """Whole mask bytes: bit j of mask[b] set when |x[8 b + j]| >= threshold.
    Returns the OR of the bytes' ties (nonzero when there is a tie).

    LLVM vectorises the byte loop over uint32 patterns, not over uint64 ones
    (2**24 float64: 18.5 ms): those are first compared into one flag byte per
    element (bit 0 above, bit 1 equal) in flags, then packed (5.6 ms)."""
    any_equal = 0
    if bits.itemsize == 8:
        for i in range(bits.size):
            m = bits[i] & magnitude
            flags[i] = np.uint8(m >= above_from) | (np.uint8(m == equal_to) << _U8_1)
        for b in range(mask.size):
            above = 0
            equal = 0
            for j in range(8):
                f = flags[8 * b + j]
                above |= np.int32(f & _U8_1) << j
                equal |= np.int32(f >> _U8_1) << j
            mask[b] = above | equal
            any_equal |= equal
        return any_equal
    for b in range(mask.size):
        above = 0
        equal = 0
        for j in range(8):
            m = bits[8 * b + j] & magnitude
            above |= np.int32(m >= above_from) << j
            equal |= np.int32(m == equal_to) << j
        mask[b] = above | equal
        any_equal |= equal
    return any_equal


@kernel
def _last_byte(bits, magnitude, above_from, equal_to):
    """(byte, ties) of the last, partial byte (bits: its 1 to 7 elements)."""
    above = 0
    equal = 0
    for j in range(bits.size):
        m = bits[j] & magnitude
        above |= np.int64(m >= above_from) << j
        equal |= np.int64(m == equal_to) << j
    return above | equal, equal


@kernel
def _prune_first_ties(bits, magnitude, equal_to, prune_ties, mask):
    """Clear the bits of the first `prune_ties` ties in these bytes (bits from a
    byte boundary); returns how many are left to prune."""
    for b in range(mask.size):
        if prune_ties == 0:
            break
        equal = 0
        for j in range(min(8, bits.size - 8 * b)):
            equal |= np.int64((bits[8 * b + j] & magnitude) == equal_to) << j
        ties = _POPCOUNT[equal]
        if ties <= prune_ties:  # all of them
            mask[b] = mask[b] ^ equal
            prune_ties -= ties
            continue
        while prune_ties > 0:  # the first ones
            first = equal & -equal
            mask[b] = mask[b] ^ first
            equal ^= first
            prune_ties -= 1
    return prune_ties


@kernel
def _move_kept(bits, mask, values, kept):
    """Move the elements whose mask bits are set (bits from a byte boundary) to
    values[kept], values[kept + 1], ...; returns kept updated."""
    n = _U64(bits.size)
    room = _U64(values.size)
    kept = _U64(kept)
    for b in range(mask.size):
        byte = _U64(mask[b])
        base = _U64(8) * _U64(b)
        if base + _U64(8) <= n and kept + _U64(8) <= room:
            for j in range(8):
                values[kept] = bits[base + _U64(j)]
                kept += (byte >> _U64(j)) & _U1
        else:
            for j in range(min(_U64(8), n - base)):
                if (byte >> _U64(j)) & _U1:
                    values[kept] = bits[base + _U64(j)]
                    kept += _U1
    return kept


#: Mask bytes per block of _prune_write: the block's 65536 elements (256 / 512
#: KiB) are still in L2 when its kept values are moved (measured on 2**24 float32:
#: 8192 bytes 6.0 ms, 512 7.8 ms, 256 7.3 ms).
_BLOCK_BYTES = 8192


@kernel
def _prune_write(bits, magnitude, above_from, equal_to, prune_ties, mask, values):
    """One chunk (its slices: bits from a byte boundary, mask, and values from the
    chunk's offset on, as many as it keeps), which prunes the first `prune_ties`
    elements equal to the threshold. Block by block: the mask bytes (vectorised),
    the ties to prune if the block has any, then the kept values."""
    n = bits.size
    full = n // 8
    kept = 0
    flags = np.empty(8 * _BLOCK_BYTES if bits.itemsize == 8 else 0, np.uint8)
    for start in range(0, mask.size, _BLOCK_BYTES):
        stop = min(mask.size, start + _BLOCK_BYTES)
        whole = min(stop, full)
        any_equal = _mask_bytes(
            bits[8 * start : 8 * whole], magnitude, above_from, equal_to,
            mask[start:whole], flags,
        )  # fmt: skip
        if whole < stop:
            mask[whole], equal = _last_byte(
                bits[8 * whole : n], magnitude, above_from, equal_to
            )
            any_equal |= equal
        block = bits[8 * start : min(n, 8 * stop)]
        if any_equal != 0 and prune_ties > 0:
            prune_ties = _prune_first_ties(
                block, magnitude, equal_to, prune_ties, mask[start:stop]
            )
        kept = _move_kept(block, mask[start:stop], values, kept)


@parallel_kernel
def _prune_counts_parallel(bits, magnitude, above_from, equal_to, bounds, counts, t):
    for c in prange(t):
        counts[c, 0], counts[c, 1] = _prune_counts(
            bits[bounds[c] : bounds[c + 1]], magnitude, above_from, equal_to
        )


@parallel_kernel
def _prune_write_parallel(
    bits, magnitude, above_from, equal_to, bounds, offsets, prune_ties, mask,
    values, t,
):  # fmt: skip
    for c in prange(t):
        start, stop = bounds[c], bounds[c + 1]
        _prune_write(
            bits[start:stop], magnitude, above_from, equal_to, prune_ties[c],
            mask[start // 8 : (stop + 7) // 8], values[offsets[c] : offsets[c + 1]],
        )  # fmt: skip


def prune_mask(x, threshold, ties, n_threads):
    n = x.size
    ties = int(ties)
    bits = x.view(np.uint64 if x.dtype.itemsize == 8 else np.uint32)
    bounds = _threshold_bounds(float(threshold), x.dtype)
    mask = np.empty((n + 7) // 8, np.uint8)
    t = n_chunks(n, n_threads)
    if t == 1:
        above, equal = _prune_counts(bits, *bounds)
        values = np.empty(above + equal - min(ties, equal), x.dtype)
        _prune_write(bits, *bounds, ties, mask, values.view(bits.dtype))
        return mask, values, max(0, ties - int(equal))
    chunks = _byte_chunks(n, t)
    counts = np.empty((t, 2), np.int64)
    _prune_counts_parallel(bits, *bounds, chunks, counts, t)
    above, equal = counts[:, 0], counts[:, 1]
    # The first `ties` elements equal to the threshold, in index order, are pruned:
    # chunk c prunes those of them that fall in it.
    before = np.concatenate(([0], np.cumsum(equal)))
    prune_ties = np.clip(ties - before[:t], 0, equal)
    offsets = np.concatenate(([0], np.cumsum(above + equal - prune_ties)))
    values = np.empty(int(offsets[t]), x.dtype)
    _prune_write_parallel(
        bits, *bounds, chunks, offsets, prune_ties, mask, values.view(bits.dtype), t
    )
    return mask, values, max(0, ties - int(before[t]))


@kernel
def _set_bits(mask, n):
    """Set bits among the first n of one chunk's mask bytes."""
    total = 0
    full = n // 8
    for b in range(full):
        total += _POPCOUNT[mask[b]]
    if full < mask.size:
        total += _POPCOUNT[mask[full] & ((1 << (n - 8 * full)) - 1)]
    return total


@kernel
def _unpack_write(mask, values, at, out):
    """One chunk (its slices of mask and out, from a byte boundary; bit patterns),
    its values from values[at] on (all of them: reading past the chunk's run is
    harmless). A pruned element gets the pattern 0, +0.0."""
    n = _U64(out.size)
    room = _U64(values.size)
    at = _U64(at)
    for b in range(mask.size):
        byte = _U64(mask[b])
        base = _U64(8) * _U64(b)
        if base + _U64(8) <= n and at + _U64(8) <= room:
            for j in range(8):
                bit = (byte >> _U64(j)) & _U1
                out[base + _U64(j)] = values[at] * bit
                at += bit
        else:
            for j in range(min(_U64(8), n - base)):
                if (byte >> _U64(j)) & _U1:
                    out[base + _U64(j)] = values[at]
                    at += _U1
                else:
                    out[base + _U64(j)] = 0


@parallel_kernel
def _unpack_mask_parallel(mask, values, out, bounds, t):
    offsets = np.zeros(t + 1, np.int64)
    for c in prange(t):
        start, stop = bounds[c], bounds[c + 1]
        offsets[c + 1] = _set_bits(mask[start // 8 : (stop + 7) // 8], stop - start)
    for c in range(t):
        offsets[c + 1] += offsets[c]
    for c in prange(t):
        start, stop = bounds[c], bounds[c + 1]
        _unpack_write(
            mask[start // 8 : (stop + 7) // 8], values, offsets[c], out[start:stop]
        )


def unpack_mask(mask, values, out, n_threads):
    n = out.size
    uint = np.uint64 if out.dtype.itemsize == 8 else np.uint32
    values, out = values.view(uint), out.view(uint)
    t = n_chunks(n, n_threads)
    if t == 1:
        _unpack_write(mask, values, 0, out)
    else:
        _unpack_mask_parallel(mask, values, out, _byte_chunks(n, t), t)
    return None
