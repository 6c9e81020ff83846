"""Stable radix sort of order-preserving float keys, the numba twin of
cpp/include/gradkit/sort.hpp.

Floats are sorted through unsigned keys of the same width (float64 -> uint64,
float32 -> uint32) whose unsigned order is the float order: for a negative float
all bits are flipped, for a non-negative one only the sign bit. -0.0 is mapped to
the key of 0.0 first, so the two compare equal. NaN is not supported (the public
layer rejects it).

radix_sort is a most-significant-digit-first pass (11-bit digits, over row chunks
in parallel at the top) that splits the rows into buckets, again and again, until a
bucket fits in a core's cache (LEAF_ROWS); a leaf bucket is then finished by an LSD
radix sort on its remaining low bits, with all its digit histograms counted in one
pass and every pass whose digit is the same for all its keys skipped. A plain LSD
sort streams the whole array through memory once per digit (six to eight times
for a float64 key); this streams it about three times, and the leaves, which hold
most of the passes, run in cache. Buckets are independent, so the result never
depends on the thread count. Unlike the C++ twin, an MSD split takes only as many
bits as its bucket needs (_split_width); the order is the same, the sort faster.

Rows travel as three columns: the key, a uint8 flag, and a float64 weight or None.
The functions take the columns of the data (ak, af, aw) and of a scratch space of
the same size (bk, bf, bw); radix_sort leaves its result in the data columns.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Bits of an MSD digit: 2**11 buckets per split.
MSD_BITS = 11
#: Bits of a leaf LSD digit.
LEAF_BITS = 11
#: Buckets of at most this many rows are sorted by the leaf LSD sort, in cache.
#: These three were tuned on 1e7 uniform float64 scores, one thread (ms):
#: (LEAF_ROWS, LEAF_TARGET, LEAF_BITS) = (2**15, 2**14, 11) 113, (2**16, 2**15, 11)
#: 127, (2**14, 2**13, 11) 131, (2**15, 2**14, 10) 124, (2**15, 2**13, 8) 158;
#: a plain LSD sort with 8-bit digits 160.
LEAF_ROWS = 1 << 15
#: An MSD split aims at buckets of about this many rows: on n rows it uses
#: about log2(n / LEAF_TARGET) bits (at most MSD_BITS). A fixed 11-bit split of a
#: bucket just above LEAF_ROWS leaves ~30-row buckets, each paying a leaf sort's
#: fixed costs: on 1e7 uniform float64 scores that made the sort 2.5x slower.
LEAF_TARGET = LEAF_ROWS // 2
#: Leaves of at most this many rows are insertion-sorted.
INSERTION_ROWS = 32
#: Rows per thread below which a parallel split costs more than it saves.
MIN_CHUNK = 1 << 16

_U64 = np.uint64
#: Eight-byte cells between two threads' counters: 128 bytes, two cache lines.
_PAD = 16
_helper = njit(cache=True, nogil=True)  # see the note above _move
_SIGN64 = np.uint64(1 << 63)
_SIGN32 = np.uint64(1 << 31)
_LOW32 = np.uint64(0xFFFFFFFF)
_LEAF_BUCKETS = 1 << LEAF_BITS
_LEAF_MASK = np.uint64(_LEAF_BUCKETS - 1)
_MSD_BUCKETS = 1 << MSD_BITS
#: Room for the pending buckets of the serial MSD sort: at most one split's
#: buckets per level, and a 64-bit key has ceil(64 / 11) levels.
_STACK_SIZE = ((64 + MSD_BITS - 1) // MSD_BITS + 1) * _MSD_BUCKETS


@njit(inline="always")
def key_sign_bit(keys):
    # keys.itemsize is a compile-time constant of the array type.
    return _SIGN64 if keys.itemsize == 8 else _SIGN32


@njit(inline="always")
def key_all_bits(keys):
    return ~_U64(0) if keys.itemsize == 8 else _LOW32


@njit(inline="always")
def order_key(bits, sign, all_bits):
    """The order-preserving key of the float whose raw bits are `bits`.

    sign is the sign-bit mask and all_bits the all-ones mask of the float's width.
    """
    b = _U64(bits)
    if b == sign:  # -0.0 sorts as 0.0
        b = _U64(0)
    if b & sign:
        return b ^ all_bits
    return b | sign


@njit(inline="always")
def key_to_bits(key, sign, all_bits):
    """Inverse of order_key: the raw float bits of a key."""
    k = _U64(key)
    if k & sign:
        return k ^ sign
    return k ^ all_bits


@njit(inline="always")
def bit_length(diff):
    """How many low bits it takes to hold diff (0 for 0)."""
    bits = 0
    d = _U64(diff)
    while d != 0:
        bits += 1
        d >>= _U64(1)
    return bits


@njit(inline="always")
def _digit(key, shift, mask):
    return (_U64(key) >> _U64(shift)) & mask


# The weight column is None when there is none: numba compiles the `is None`
# branches away, per signature, in these helpers (not IR-inlined, so that their
# arguments stay arguments; LLVM inlines them).


@_helper
def _move(sk, sf, sw, dk, df, dw, i, at):
    dk[at] = sk[i]
    df[at] = sf[i]
    if sw is not None:
        dw[at] = sw[i]


@_helper
def _copy_rows(sk, sf, sw, dk, df, dw, lo, hi):
    # A loop compiles much faster than numba's slice assignment.
    for i in range(lo, hi):
        _move(sk, sf, sw, dk, df, dw, i, i)


# The sorting steps below are plain kernels rather than inline="always": each is
# called with the two sides of the data in either order, and as a kernel it is
# compiled once for both instead of once per call site.


@_helper
def _scatter(sk, sf, sw, dk, df, dw, lo, hi, shift, mask, offsets):
    """Move rows [lo, hi) of s to d, each to offsets[its digit]++ (absolute rows)."""
    for i in range(lo, hi):
        d = _digit(sk[_U64(i)], shift, mask)
        at = _U64(offsets[d])
        offsets[d] += 1
        _move(sk, sf, sw, dk, df, dw, _U64(i), at)


@_helper
def _insertion_sort(k, f, w, lo, hi):
    for i in range(lo + 1, hi):
        key = k[i]
        flag = f[i]
        weight = 0.0 if w is None else w[i]
        j = i
        while j > lo and k[j - 1] > key:
            k[j] = k[j - 1]
            f[j] = f[j - 1]
            if w is not None:
                w[j] = w[j - 1]
            j -= 1
        k[j] = key
        f[j] = flag
        if w is not None:
            w[j] = weight


@_helper
def _leaf_sort(ak, af, aw, bk, bf, bw, lo, hi, bits, into_b, hist):
    """LSD sort of rows [lo, hi) of a on their low `bits` bits (the higher ones are
    equal); the result ends in b when into_b, else in a. hist: scratch counters."""
    n = hi - lo
    if n <= INSERTION_ROWS:
        _insertion_sort(ak, af, aw, lo, hi)
        if into_b:
            _copy_rows(ak, af, aw, bk, bf, bw, lo, hi)
        return
    digits = (bits + LEAF_BITS - 1) // LEAF_BITS
    hist[: digits * _LEAF_BUCKETS] = 0
    for i in range(lo, hi):
        key = _U64(ak[_U64(i)])
        for d in range(digits):
            hist[d * _LEAF_BUCKETS + _digit(key, d * LEAF_BITS, _LEAF_MASK)] += 1
    in_b = False
    for d in range(digits):
        offsets = hist[d * _LEAF_BUCKETS : (d + 1) * _LEAF_BUCKETS]
        shift = d * LEAF_BITS
        if offsets[_digit(ak[lo], shift, _LEAF_MASK)] == n:
            continue  # one digit value: the pass would move nothing
        start = lo
        for v in range(_LEAF_BUCKETS):
            c = offsets[v]
            offsets[v] = start
            start += c
        if in_b:
            _scatter(bk, bf, bw, ak, af, aw, lo, hi, shift, _LEAF_MASK, offsets)
        else:
            _scatter(ak, af, aw, bk, bf, bw, lo, hi, shift, _LEAF_MASK, offsets)
        in_b = not in_b
    if in_b and not into_b:
        _copy_rows(bk, bf, bw, ak, af, aw, lo, hi)
    elif into_b and not in_b:
        _copy_rows(ak, af, aw, bk, bf, bw, lo, hi)


@_helper
def _msd_split(sk, sf, sw, dk, df, dw, lo, hi, shift, width, offsets):
    """Count the digit [shift, shift + width) of rows [lo, hi) of s; unless it is
    the same for all, scatter them to d. Returns False when it was the same.
    offsets ends as the end row of each bucket."""
    buckets = 1 << width
    mask = _U64(buckets - 1)
    offsets[:buckets] = 0
    for i in range(lo, hi):
        offsets[_digit(sk[_U64(i)], shift, mask)] += 1
    if offsets[_digit(sk[lo], shift, mask)] == hi - lo:
        return False
    start = lo
    for v in range(buckets):
        c = offsets[v]
        offsets[v] = start
        start += c
    _scatter(sk, sf, sw, dk, df, dw, lo, hi, shift, mask, offsets)
    return True


@njit(cache=True, nogil=True)
def _msd_sort(ak, af, aw, bk, bf, bw, lo, hi, bits, in_b, into_b):
    """Sort rows [lo, hi), now in b when in_b (else in a), on their low `bits` bits;
    the result ends in b when into_b, else in a."""
    if hi - lo < 2:
        if in_b != into_b and hi > lo:
            if in_b:
                _copy_rows(bk, bf, bw, ak, af, aw, lo, hi)
            else:
                _copy_rows(ak, af, aw, bk, bf, bw, lo, hi)
        return
    hist = np.empty(((64 + LEAF_BITS - 1) // LEAF_BITS) * _LEAF_BUCKETS, np.int64)
    offsets = np.empty(_MSD_BUCKETS, np.int64)
    # Pending buckets: rows [lo, hi) on `bits` low bits, now in b when in_b.
    stack = np.empty((_STACK_SIZE, 4), np.int64)
    top = _push(stack, 0, lo, hi, bits, in_b)
    while top > 0:
        top -= 1
        lo = stack[top, 0]
        hi = stack[top, 1]
        bits = stack[top, 2]
        src_is_b = stack[top, 3] != 0
        if hi - lo <= LEAF_ROWS or bits <= LEAF_BITS:
            if src_is_b:
                _leaf_sort(bk, bf, bw, ak, af, aw, lo, hi, bits, not into_b, hist)
            else:
                _leaf_sort(ak, af, aw, bk, bf, bw, lo, hi, bits, into_b, hist)
            continue
        width = _split_width(hi - lo, bits)
        shift = bits - width
        if src_is_b:
            split = _msd_split(bk, bf, bw, ak, af, aw, lo, hi, shift, width, offsets)
        else:
            split = _msd_split(ak, af, aw, bk, bf, bw, lo, hi, shift, width, offsets)
        if not split:  # one digit value: go on to the next digit, in place
            top = _push(stack, top, lo, hi, shift, src_is_b)
            continue
        begin = lo
        for v in range(1 << width):
            end = offsets[v]
            if end > begin:
                top = _push(stack, top, begin, end, shift, not src_is_b)
            begin = end


@njit(inline="always")
def _split_width(n, bits):
    """Bits of the MSD digit that splits n rows whose low `bits` bits vary."""
    return max(1, min(MSD_BITS, bits, bit_length((n - 1) // LEAF_TARGET)))


@njit(inline="always")
def _push(stack, top, lo, hi, bits, in_b):
    stack[top, 0] = lo
    stack[top, 1] = hi
    stack[top, 2] = bits
    stack[top, 3] = in_b
    return top + 1


@njit(cache=True, nogil=True, parallel=True)
def _chunk_histograms(keys, lo, hi, shift, width, t):
    """counts[c, v]: rows of chunk c of [lo, hi) whose digit is v."""
    n = hi - lo
    # Padded rows: no two threads count into one cache line.
    counts = np.zeros((t, (1 << width) + _PAD), np.int64)
    mask = _U64((1 << width) - 1)
    for c in prange(t):
        start = lo + c * n // t
        stop = lo + (c + 1) * n // t
        row = counts[c]
        for i in range(start, stop):
            row[_digit(keys[_U64(i)], shift, mask)] += 1
    return counts


@njit(cache=True, nogil=True, parallel=True)
def _scatter_chunks(sk, sf, sw, dk, df, dw, lo, hi, shift, width, offsets):
    """Scatter each chunk of [lo, hi) from s to d with its own offsets row."""
    t = offsets.shape[0]
    n = hi - lo
    mask = _U64((1 << width) - 1)
    for c in prange(t):
        start = lo + c * n // t
        stop = lo + (c + 1) * n // t
        _scatter(sk, sf, sw, dk, df, dw, start, stop, shift, mask, offsets[c])


@njit(cache=True, nogil=True, parallel=True)
def _sort_bucket_groups(ak, af, aw, bk, bf, bw, starts, ends, group_at, bits, into_b):
    """Sort buckets [starts[k], ends[k]) (now in b) on `bits` bits, one thread per
    group of consecutive buckets group_at[g]:group_at[g + 1]."""
    for g in prange(group_at.size - 1):
        for k in range(group_at[g], group_at[g + 1]):
            _msd_sort(ak, af, aw, bk, bf, bw, starts[k], ends[k], bits, True, into_b)


def _sort(a, b, lo, hi, bits, into_b, n_threads):
    """Sort rows [lo, hi) of a (tuples of columns) on their low `bits` bits, into b
    when into_b, else into a; the top splits run on n_threads threads."""
    n = hi - lo
    t = max(1, min(n_threads, n // MIN_CHUNK))
    # Find the first digit that splits the rows, on t threads; without one worth
    # the threads (small, or few bits left), sort on this thread.
    while t > 1 and n > LEAF_ROWS and bits > LEAF_BITS:
        width = _split_width(n, bits)
        shift = bits - width
        counts = _chunk_histograms(a[0], lo, hi, shift, width, t)[:, : 1 << width]
        totals = counts.sum(axis=0)
        if totals.max() < n:
            break
        bits = shift  # one digit value: skip it
    else:
        _msd_sort(*a, *b, lo, hi, bits, False, into_b)
        return
    # offsets[c, v]: where chunk c puts its first row of bucket v, so that a bucket
    # holds its rows in chunk order, then row order: the sort stays stable.
    ends = lo + np.cumsum(totals)
    offsets = np.zeros((t, (1 << width) + _PAD), np.int64)  # padded as counts
    offsets[:, : 1 << width] = (ends - totals)[None, :] + np.cumsum(counts, 0) - counts
    _scatter_chunks(*a, *b, lo, hi, shift, width, offsets)
    starts = ends - totals
    nonempty = totals > 0
    # Large buckets get all threads again; the others are shared out in groups of
    # consecutive buckets with about equal rows.
    large = nonempty & (totals > n // (2 * t))
    for v in np.flatnonzero(large):
        _sort(b, a, int(starts[v]), int(ends[v]), shift, not into_b, n_threads)
    small = np.flatnonzero(nonempty & ~large)
    if small.size:
        rows = np.cumsum(totals[small])
        group_at = np.searchsorted(rows, rows[-1] * np.arange(1, t) / t, side="right")
        group_at = np.unique(np.concatenate(([0], group_at, [small.size])))
        _sort_bucket_groups(*a, *b, starts[small], ends[small], group_at, shift, into_b)


def radix_sort(
    keys, flags, weights, key_scratch, flag_scratch, weight_scratch, bits, n_threads
):
    """Sort the rows (keys[i], flags[i], weights[i]) by key, stably, in place.

    weights may be None (then so is weight_scratch): no weight column. The scratch
    columns have the keys' size and are overwritten. bits: the keys differ only in
    their low `bits` bits (see bit_length); the higher ones are not looked at.
    """
    n = keys.size
    if n < 2 or bits == 0:
        return
    a = (keys, flags, weights)
    b = (key_scratch, flag_scratch, weight_scratch)
    _sort(a, b, 0, n, bits, False, n_threads)
