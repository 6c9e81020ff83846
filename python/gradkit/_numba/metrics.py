"""numba twins of the metric kernels in cpp/include/gradkit/metrics.hpp.

The contract (names, arguments, results) is gradkit/_core.pyi; both backends must
agree, and they do bit for bit: the summation orders below are those of the C++
twin. The public functions are thin wrappers that allocate the outputs and pick
the chunk count; the loops are @njit kernels, compiled on first use for the dtypes
met and cached on disk (cache=True), so later processes do not recompile.

Parallel work is split into t = min(n_threads, max(1, n // 2**16)) contiguous
chunks, chunk c = [c * n // t, (c + 1) * n // t), whose partial results are added
in chunk order; one chunk runs serially, without a parallel launch.

Habits of this module, each for speed:
- sample_weight stays None when absent: numba compiles `w is None` branches away.
- Chunk kernels get their chunk's slices and loop from 0; an index that numba
  cannot prove non-negative is made unsigned (_U64), since numba wraps negative
  signed indices around, a select per access that also stops loops vectorising.
- Large buffers are allocated by the wrappers with numpy (which asks for huge
  pages) rather than inside the kernels, where first-touch page faults would cost
  as much as the work.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

from gradkit._numba._parallel import (
    MIN_CHUNK,
    chunk_bounds,
    kernel,
    n_chunks,
    optional_slice,
    parallel_kernel,
)
from gradkit._numba.sort import (
    key_all_bits,
    key_sign_bit,
    key_to_bits,
    order_key,
    radix_sort,
)

__all__ = [
    "label_table",
    "binary_curve",
    "binary_auc",
    "binary_average_precision",
    "range_partition",
    "log_loss_sum",
    "regression_stats",
    "all_finite",
]

#: Float sums are accumulated per block of this many rows, then added to the
#: running total, so rounding error grows with n / BLOCK rather than n.
BLOCK = 256

#: Eight-byte cells between two threads' counters: 128 bytes, two cache lines.
_PAD = 16
#: Small helpers that branch on `w is None` are plain kernels, not inline="always":
#: numba prunes such a branch per signature on an argument, not on an IR-inlined
#: copy of it; LLVM inlines them all the same.
_helper = kernel
_U64 = np.uint64
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


# --------------------------------------------------------------------------------
# label_table

#: label_table's status 1 threshold: integers beyond +-2**62.
_LABEL_LIMIT = 1 << 62
_LABEL_LIMIT_F = float(1 << 62)
_DOUBLE_MAX = np.finfo(np.float64).max
#: Rows per step: converted, checked and min/max-ed in one vectorised loop, then
#: counted from L1, as in the C++ twin.
_LABEL_BLOCK = 1024
#: Tables of at most this many cells (with the outside cell) are kept 4 times per
#: chunk, row r counted in copy r % 4: with few cells consecutive rows mostly hit
#: the same cell, and one copy would chain every increment behind the last store.
_LABEL_SUB_TABLES = 4
_MAX_SUB_TABLED_CELLS = 256


@njit(inline="always")
def _float_label(v, flags):
    """(v as int64, flags | its status bits); 0 stands in for a value that is no
    int64. Status bits: 1 beyond +-2**62, 2 not an integer, 4 NaN or inf."""
    x = np.float64(v)
    magnitude = abs(x)
    in_range = magnitude <= _LABEL_LIMIT_F  # False for NaN
    flags |= np.int64(not in_range)
    flags |= np.int64(x != np.trunc(x)) << 1  # NaN too; inf counts as an integer
    flags |= np.int64(not (magnitude <= _DOUBLE_MAX)) << 2
    return np.int64(x if in_range else 0.0), flags


def _block_labels(tb, pb, t_buf, p_buf, vmin, vmax, flags):  # pragma: no cover
    """One block of labels as integers: (t, p, vmin, vmax, flags) updated.

    Integer labels are counted where they are; float ones are converted into
    t_buf, p_buf with their checks. (This body runs in pure Python only.)
    """
    if np.issubdtype(tb.dtype, np.integer):
        both = np.concatenate((tb, pb)).astype(np.int64)
        return tb, pb, min(vmin, int(both.min())), max(vmax, int(both.max())), flags
    m = tb.size
    for i in range(m):
        t_buf[i], flags = _float_label(tb[i], flags)
        p_buf[i], flags = _float_label(pb[i], flags)
        vmin = min(vmin, min(t_buf[i], p_buf[i]))
        vmax = max(vmax, max(t_buf[i], p_buf[i]))
    return t_buf[:m], p_buf[:m], vmin, vmax, flags


@overload(_block_labels)
def _block_labels_overload(tb, pb, t_buf, p_buf, vmin, vmax, flags):
    if isinstance(tb.dtype, types.Integer):

        def integers(tb, pb, t_buf, p_buf, vmin, vmax, flags):
            # Beyond 2**62 shows in vmin / vmax: nothing to check per value.
            for i in range(tb.size):
                vmin = min(vmin, min(np.int64(tb[i]), np.int64(pb[i])))
                vmax = max(vmax, max(np.int64(tb[i]), np.int64(pb[i])))
            return tb, pb, vmin, vmax, flags

        return integers

    def floats(tb, pb, t_buf, p_buf, vmin, vmax, flags):
        m = tb.size
        for i in range(m):
            a, flags = _float_label(tb[i], flags)
            b, flags = _float_label(pb[i], flags)
            t_buf[i] = a
            p_buf[i] = b
            vmin = min(vmin, min(a, b))
            vmax = max(vmax, max(a, b))
        return t_buf[:m], p_buf[:m], vmin, vmax, flags

    return floats


@_helper
def _count_pair(a, b, w, i, lo, hi, width, at, counts, wsum):
    """Count row i (labels a, b) in the table starting at cell `at`; its last cell
    is for the rows outside [lo, hi]."""
    a = np.int64(a)
    b = np.int64(b)
    # Written so that pure Python (NUMBA_DISABLE_JIT) never overflows.
    inside = lo <= a and a <= hi and lo <= b and b <= hi
    cell = _U64(at + ((a - lo) * width + (b - lo) if inside else width * width))
    counts[cell] += 1
    if w is not None:
        wsum[cell] += w[i]


@kernel
def _label_table_chunk(y_true, y_pred, w, lo, hi, width, n_sub, counts, wsum):
    """Count one chunk (the arrays are its slices) into counts, n_sub tables of
    width * width + 1 cells, and the same with weights into wsum (when w is not
    None). Returns (vmin, vmax, status bits) of the chunk."""
    n = y_true.size
    stride = width * width + 1
    t_buf = np.empty(_LABEL_BLOCK, np.int64)
    p_buf = np.empty(_LABEL_BLOCK, np.int64)
    vmin = _INT64_MAX
    vmax = _INT64_MIN
    flags = np.int64(0)
    for b in range(0, n, _LABEL_BLOCK):
        tb, pb, vmin, vmax, flags = _block_labels(
            y_true[b : b + _LABEL_BLOCK],
            y_pred[b : b + _LABEL_BLOCK],
            t_buf,
            p_buf,
            vmin,
            vmax,
            flags,
        )
        wb = optional_slice(w, b, b + _LABEL_BLOCK)
        m = tb.size
        # Rows in whole groups of 4 go to table i % 4 (of n_sub), the rest to 0.
        grouped = m - m % 4
        for i in range(0, grouped, 4):
            for s in range(4):
                at = (s & (n_sub - 1)) * stride
                _count_pair(
                    tb[i + s], pb[i + s], wb, i + s, lo, hi, width, at, counts, wsum
                )
        for i in range(grouped, m):
            _count_pair(tb[i], pb[i], wb, i, lo, hi, width, 0, counts, wsum)
    if n and (vmin < -_LABEL_LIMIT or vmax > _LABEL_LIMIT):
        flags |= 1
    return vmin, vmax, flags


@parallel_kernel
def _label_table_parallel(y_true, y_pred, w, lo, hi, width, n_sub, counts, wsum, stats):
    t = counts.shape[0]
    n = y_true.size
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        stats[c, 0], stats[c, 1], stats[c, 2] = _label_table_chunk(
            y_true[start:stop],
            y_pred[start:stop],
            optional_slice(w, start, stop),
            lo,
            hi,
            width,
            n_sub,
            counts[c],
            wsum[c] if w is not None else wsum[0],
        )


@kernel
def _fold_tables(tables, n_sub, stride):
    """Add the n_sub tables of stride cells at the start of each row of tables (a
    row per chunk) into one, chunk by chunk, and in a chunk table by table."""
    out = np.zeros(stride, tables.dtype)
    for c in range(tables.shape[0]):
        for s in range(n_sub):
            row = tables[c, s * stride : (s + 1) * stride]
            for j in range(stride):
                out[j] += row[j]
    return out


def label_table(y_true, y_pred, sample_weight, lo, width, n_threads):
    n = y_true.size
    w = sample_weight
    width = int(width)
    cells = width * width
    stride = cells + 1
    n_sub = _LABEL_SUB_TABLES if stride <= _MAX_SUB_TABLED_CELLS else 1
    t = n_chunks(n, n_threads)
    # The per-chunk tables cost t * width**2 cells: with many classes keep them no
    # bigger than the input. Counts are exact whatever t is.
    if t > 1 and cells > MIN_CHUNK:
        t = max(1, min(t, n // cells))
    # A chunk's tables start _PAD cells after the previous chunk's end, so that no
    # two threads count into one cache line (or into an adjacent-line pair).
    row = n_sub * stride + (_PAD if t > 1 else 0)
    counts = np.zeros((t, row), np.int64)
    wsum = np.zeros((t, row) if w is not None else (1, 0))
    hi = np.int64(min(int(lo) + width - 1, _INT64_MAX))
    lo = np.int64(lo)
    if t == 1:
        stats = np.array(
            [
                _label_table_chunk(
                    y_true, y_pred, w, lo, hi, width, n_sub, counts[0], wsum[0]
                )
            ]
        )
    else:
        stats = np.empty((t, 3), np.int64)
        _label_table_parallel(
            y_true, y_pred, w, lo, hi, width, n_sub, counts, wsum, stats
        )
    table = _fold_tables(counts, n_sub, stride)
    weighted = None
    if w is not None:
        weighted = _fold_tables(wsum, n_sub, stride)[:cells].reshape(width, width)
    flags = int(np.bitwise_or.reduce(stats[:, 2]))
    status = 3 if flags & 4 else 2 if flags & 2 else 1 if flags & 1 else 0
    vmin, vmax = (int(stats[:, 0].min()), int(stats[:, 1].max())) if n else (0, -1)
    return (
        table[:cells].reshape(width, width),
        weighted,
        int(table[cells]),
        vmin,
        vmax,
        status,
    )


# --------------------------------------------------------------------------------
# Binary ranking metrics: rank the samples (score keys, with the label and the
# weight as payload) with one stable radix sort, then walk the tie groups from the
# highest score down, as the C++ twin does.

#: Below this many samples the unweighted AUC is summed exactly in int64 (twice
#: the area is at most n**2 / 2), as the C++ twin does.
_EXACT_AUC_ROWS = 1 << 31


@kernel
def _rank_count(w):
    """Samples of nonzero weight in one chunk (its slice of w)."""
    kept = 0
    for i in range(w.size):
        kept += w[i] != 0.0
    return kept


@kernel
def _rank_fill(y_true, bits, w, at, keys, flags, weights):
    """Write one chunk's rows (its slices) of nonzero weight from row `at` on.

    The key is the complement of the score's order key, so that ascending keys are
    descending scores. Returns (OR of key ^ first key, first key) of the chunk.
    """
    all_bits = key_all_bits(keys)
    sign = key_sign_bit(keys)
    first = _U64(0)
    diff = _U64(0)
    if w is None:
        if y_true.size:
            first = order_key(bits[0], sign, all_bits) ^ all_bits
        out_keys = keys[at : at + y_true.size]
        out_flags = flags[at : at + y_true.size]
        for i in range(y_true.size):
            key = order_key(bits[i], sign, all_bits) ^ all_bits
            out_keys[i] = key
            out_flags[i] = y_true[i] != 0
            diff |= key ^ first
    else:
        start = at
        for i in range(y_true.size):
            wi = w[i]
            if wi == 0.0:
                continue
            key = order_key(bits[i], sign, all_bits) ^ all_bits
            if at == start:
                first = key
            row = _U64(at)
            keys[row] = key
            flags[row] = y_true[i] != 0
            weights[row] = wi
            diff |= key ^ first
            at += 1
    return diff, first


@parallel_kernel
def _rank_parallel(y_true, bits, w, t, keys, flags, weights):
    """_rank_fill over t chunks; returns (rows kept, OR of key ^ keys[0])."""
    n = y_true.size
    at = np.zeros(t + 1, np.int64)
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        at[c + 1] = stop - start if w is None else _rank_count(w[start:stop])
    for c in range(t):
        at[c + 1] += at[c]
    diffs = np.zeros(t, keys.dtype)
    firsts = np.zeros(t, keys.dtype)
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        diffs[c], firsts[c] = _rank_fill(
            y_true[start:stop],
            bits[start:stop],
            optional_slice(w, start, stop),
            at[c],
            keys,
            flags,
            weights,
        )
    diff = _U64(0)
    for c in range(t):
        if at[c + 1] > at[c]:
            diff |= _U64(diffs[c]) | (_U64(firsts[c]) ^ _U64(keys[0]))
    return at[t], diff


def _ranked(y_true, y_score, w, n_threads):
    """(keys, flags, weights): the samples of nonzero weight in decreasing score
    order (as complemented order keys), ties in row order; flags[i] is 1 for a
    positive. weights is None when w is."""
    n = y_true.size
    bits = y_score.view(np.uint64 if y_score.dtype.itemsize == 8 else np.uint32)
    keys = np.empty(n, bits.dtype)
    flags = np.empty(n, np.uint8)
    weights = None if w is None else np.empty(n, np.float64)
    t = n_chunks(n, n_threads)
    if t == 1:
        m = n if w is None else _rank_count(w)
        diff, _ = _rank_fill(y_true, bits, w, 0, keys, flags, weights)
    else:
        m, diff = _rank_parallel(y_true, bits, w, t, keys, flags, weights)
    m = int(m)
    keys, flags = keys[:m], flags[:m]
    weights = None if w is None else weights[:m]
    radix_sort(
        keys,
        flags,
        weights,
        np.empty_like(keys),
        np.empty_like(flags),
        None if w is None else np.empty_like(weights),
        int(diff).bit_length(),
        n_threads,
    )
    return keys, flags, weights


# The walks close a tie group when the key changes. The sums are those of the C++
# twin, group by group: pos_g and neg_g are the group's weights (counts), added in
# row order, and a group's terms are added when it closes. No step branches on
# the data: a close is applied by multiplying with `new` (1 when the key changed,
# else 0), which otherwise adds exact zeros. (A branch on new mispredicts half the
# time on scores with short tie runs.)


def _zero(weights):  # pragma: no cover - the overload runs under numba
    return 0 if weights is None else 0.0


@overload(_zero)
def _zero_overload(weights):
    # The walks' accumulators: exact int64 counts when unweighted (as in the C++
    # twin, and cheaper), float64 sums of weights otherwise.
    if isinstance(weights, types.NoneType):
        return lambda weights: np.int64(0)
    return lambda weights: 0.0


@_helper
def _sample(keys, flags, weights, i):
    """(key, its weight as a positive, as a negative): one of them is 0. Weights
    are int64 counts (0 or 1) when weights is None."""
    positive = np.int64(flags[i])
    if weights is None:
        return keys[i], positive, 1 - positive
    return keys[i], weights[i] * positive, weights[i] * (1 - positive)


@kernel
def _auc_walk(keys, flags, weights, exact):
    m = keys.size
    if m == 0:
        return math.nan, 0.0, 0.0
    current = keys[0]
    if exact:
        # Twice the area, exactly in int64 (it is at most n**2 / 2).
        area = 0
        above = 0
        negatives = 0
        pos_g = 0
        neg_g = 0
        for i in range(m):
            k = keys[i]
            positive = np.int64(flags[i])
            new = np.int64(k != current)
            area += new * (neg_g * (2 * above + pos_g))
            above += new * pos_g
            negatives += new * neg_g
            pos_g = pos_g * (1 - new) + positive
            neg_g = neg_g * (1 - new) + (1 - positive)
            current = k
        area += neg_g * (2 * above + pos_g)
        area2 = np.float64(area)
        pos_total = np.float64(above + pos_g)
        neg_total = np.float64(negatives + neg_g)
    else:
        area2 = 0.0
        pos_total = 0.0
        neg_total = 0.0
        pos_g = 0.0
        neg_g = 0.0
        for i in range(m):
            k, wp, wn = _sample(keys, flags, weights, i)
            wp = np.float64(wp)
            wn = np.float64(wn)
            new = np.float64(k != current)
            area2 += new * (neg_g * (2.0 * pos_total + pos_g))
            pos_total += new * pos_g
            neg_total += new * neg_g
            pos_g = pos_g * (1.0 - new) + wp
            neg_g = neg_g * (1.0 - new) + wn
            current = k
        area2 += neg_g * (2.0 * pos_total + pos_g)
        pos_total += pos_g
        neg_total += neg_g
    if pos_total == 0.0 or neg_total == 0.0:
        return math.nan, pos_total, neg_total
    if weights is None:
        return area2 / (2.0 * pos_total * neg_total), pos_total, neg_total
    # Weighted: again from the normalised curve, sum of (neg_g / N) * (2 tpr_above
    # + pos_g / P); with tiny weights neg_g * pos_g above can underflow where
    # sklearn's normalised fpr and tpr do not.
    current = keys[0]
    area2 = 0.0
    tpr_above = 0.0
    pos_g = 0.0
    neg_g = 0.0
    for i in range(m):
        k, wp, wn = _sample(keys, flags, weights, i)
        new = np.float64(k != current)
        tpr_g = pos_g / pos_total
        area2 += new * ((neg_g / neg_total) * (2.0 * tpr_above + tpr_g))
        tpr_above += new * tpr_g
        pos_g = pos_g * (1.0 - new) + np.float64(wp)
        neg_g = neg_g * (1.0 - new) + np.float64(wn)
        current = k
    tpr_g = pos_g / pos_total
    area2 += (neg_g / neg_total) * (2.0 * tpr_above + tpr_g)
    return area2 / 2.0, pos_total, neg_total


@njit(inline="always")
def _precision(tps, fps, tp_offset, fp_offset):
    # The offsets are the weight scoring above these samples. Adding 0.0 changes
    # no value and the counts are exact doubles (below 2**53), so zero offsets give
    # tps / (tps + fps) bit for bit. 0 / 0 (possible only with negative weights)
    # counts as 0.
    tp = tps + tp_offset
    predicted = tp + (fps + fp_offset)
    return tp / predicted if predicted != 0.0 else 0.0


@kernel
def _positive_total(keys, flags, weights):
    """The positive weight (count), summed group by group as the walks do."""
    if weights is None:  # a count: any order gives it exactly
        positives = 0
        for i in range(flags.size):
            positives += np.int64(flags[i])
        return np.float64(positives)
    current = keys[0]
    total = 0.0
    pos_g = 0.0
    for i in range(keys.size):
        k, wp, _ = _sample(keys, flags, weights, i)
        new = k != current
        total += new * pos_g
        pos_g = pos_g * (1 - new) + wp
        current = k
    return total + pos_g


@kernel
def _ap_walk(keys, flags, weights, tp_offset, fp_offset):
    m = keys.size
    if m == 0:
        return math.nan, 0.0
    # Each group's recall step pos_g / pos_total is taken before the product with
    # its precision, as the contract writes it: pos_g * precision can underflow
    # where the AP itself does not (tiny weights). Hence the total first.
    pos_total = _positive_total(keys, flags, weights)
    if pos_total == 0.0:
        return math.nan, pos_total
    current = keys[0]
    ap = 0.0
    tps = _zero(weights)  # cumulative weights (counts) of the closed groups
    fps = _zero(weights)
    pos_g = _zero(weights)
    neg_g = _zero(weights)
    for i in range(m):
        k, wp, wn = _sample(keys, flags, weights, i)
        new = k != current
        # the group's term, were it to close now
        precision = _precision(tps + pos_g, fps + neg_g, tp_offset, fp_offset)
        ap += new * ((pos_g / pos_total) * precision)
        tps += new * pos_g
        fps += new * neg_g
        pos_g = pos_g * (1 - new) + wp
        neg_g = neg_g * (1 - new) + wn
        current = k
    tps += pos_g
    fps += neg_g
    ap += (pos_g / pos_total) * _precision(tps, fps, tp_offset, fp_offset)
    return ap, pos_total


@kernel
def _curve_walk(keys, flags, weights, fps, tps, threshold_bits):
    """Fill fps, tps, threshold_bits (raw float bits) per tie group; returns how
    many groups there are."""
    m = keys.size
    if m == 0:
        return 0
    sign = key_sign_bit(keys)
    all_bits = key_all_bits(keys)
    current = keys[0]
    g = 0
    tp = _zero(weights)  # cumulative weights (counts) of the closed groups
    fp = _zero(weights)
    pos_g = _zero(weights)
    neg_g = _zero(weights)
    for i in range(m):
        k, wp, wn = _sample(keys, flags, weights, i)
        new = k != current
        g += new
        tp += new * pos_g
        fp += new * neg_g
        pos_g = pos_g * (1 - new) + wp
        neg_g = neg_g * (1 - new) + wn
        # Written at every step: a group's last write is its cumulative total.
        at = _U64(g)
        threshold_bits[at] = key_to_bits(k ^ all_bits, sign, all_bits)
        tps[at] = tp + pos_g
        fps[at] = fp + neg_g
        current = k
    return g + 1


def binary_curve(y_true, y_score, sample_weight, n_threads):
    keys, flags, weights = _ranked(y_true, y_score, sample_weight, n_threads)
    m = keys.size
    fps = np.empty(m, np.float64)
    tps = np.empty(m, np.float64)
    threshold_bits = np.empty(m, keys.dtype)
    g = int(_curve_walk(keys, flags, weights, fps, tps, threshold_bits))
    thresholds = threshold_bits[:g].view(y_score.dtype).astype(np.float64, copy=False)
    fps, tps = fps[:g], tps[:g]
    if 2 * g <= m:  # heavy ties: do not keep the mostly unused buffers alive
        fps, tps, thresholds = fps.copy(), tps.copy(), thresholds.copy()
    return fps, tps, thresholds


def binary_auc(y_true, y_score, sample_weight, n_threads):
    keys, flags, weights = _ranked(y_true, y_score, sample_weight, n_threads)
    exact = sample_weight is None and y_true.size < _EXACT_AUC_ROWS
    auc, pos_total, neg_total = _auc_walk(keys, flags, weights, exact)
    return float(auc), float(pos_total), float(neg_total)


def binary_average_precision(
    y_true, y_score, sample_weight, n_threads, tp_offset=0.0, fp_offset=0.0
):
    keys, flags, weights = _ranked(y_true, y_score, sample_weight, n_threads)
    ap, pos_total = _ap_walk(keys, flags, weights, float(tp_offset), float(fp_offset))
    return float(ap), float(pos_total)


# --------------------------------------------------------------------------------
# range_partition: rows grouped by score range, stably, in two serial passes (it
# runs in one dask task per worker thread), as the C++ twin.

#: At most this many bounds, so that a range id (0 to m) fits a uint8.
MAX_RANGE_BOUNDS = 254


@njit(inline="always")
def _range_of(bounds, x):
    """The number of bounds <= x (bounds sorted): a compare against each bound.
    LLVM vectorises this reduction; a binary search, as the C++ twin takes beyond
    64 bounds, runs 2-3x slower than it here, even at 254 bounds."""
    r = 0
    for j in range(bounds.size):
        r += bounds[j] <= x
    return r


@kernel
def _range_ids(y_true, y_score, w, bounds, ids, counts, label_weights):
    """Pass 1: every row's range id, the rows per (range, label) and, weighted, the
    weight per (range, label), summed in row order. A nonzero code is label 1."""
    for i in range(y_true.size):
        r = _range_of(bounds, y_score[i])
        ids[i] = r
        cell = _U64(2 * r + (y_true[i] != 0))
        counts[cell] += 1
        if w is not None:
            label_weights[cell] += w[i]


@kernel
def _range_scatter(y_true, y_score, w, ids, nxt, codes_out, scores_out, weights_out):
    """Pass 2: each row to the next free slot of its range."""
    for i in range(y_true.size):
        r = ids[i]
        at = _U64(nxt[r])
        nxt[r] += 1
        codes_out[at] = y_true[i]
        scores_out[at] = y_score[i]
        if w is not None:
            weights_out[at] = w[i]


def range_partition(y_true, y_score, sample_weight, bounds):
    n = y_true.size
    m = bounds.size
    for name, a in (("y_score", y_score), ("sample_weight", sample_weight)):
        if a is not None and a.size != n:
            raise ValueError(
                f"{name} has {a.size} rows, expected {n} (the length of y_true)."
            )
    if m > MAX_RANGE_BOUNDS:
        raise ValueError(
            f"bounds has {m} entries, at most {MAX_RANGE_BOUNDS} are allowed (range "
            "ids are uint8); use fewer ranges."
        )
    bad = np.flatnonzero(
        np.isnan(bounds) | np.concatenate([[False], bounds[1:] < bounds[:-1]])
    )
    if bad.size:
        raise ValueError(
            f"bounds must be sorted ascending, without NaN; bounds[{bad[0]}] is not; "
            "sort them first."
        )
    ids = np.empty(n, np.uint8)
    counts = np.zeros(2 * (m + 1), np.int64)
    label_weights = np.zeros(2 * (m + 1), np.float64)
    _range_ids(y_true, y_score, sample_weight, bounds, ids, counts, label_weights)
    counts = counts.reshape(m + 1, 2)
    sizes = counts.sum(axis=1)
    if sample_weight is None:
        label_weights = counts.astype(np.float64)
    label_weights = label_weights.reshape(m + 1, 2)
    weights_out = None
    if sizes.max() == n:  # one range holds every row: they stay in order
        codes_out, scores_out = y_true.copy(), y_score.copy()
        if sample_weight is not None:
            weights_out = sample_weight.copy()
        return codes_out, scores_out, weights_out, sizes, label_weights
    codes_out = np.empty(n, np.uint8)
    scores_out = np.empty(n, np.float64)
    if sample_weight is not None:
        weights_out = np.empty(n, np.float64)
    nxt = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    _range_scatter(
        y_true, y_score, sample_weight, ids, nxt, codes_out, scores_out, weights_out
    )
    return codes_out, scores_out, weights_out, sizes, label_weights


# --------------------------------------------------------------------------------
# log_loss_sum


@kernel
def _log_loss_chunk(y_index, probs, k, one_column, w, eps):
    """(sum of w * loss, sum of w) over one chunk (its slices); probs is flat,
    (rows * k,), or (rows,) when one_column."""
    high = 1.0 - eps
    total = 0.0
    total_w = 0.0
    n = y_index.size
    for b in range(0, n, BLOCK):
        e = min(b + BLOCK, n)
        block = 0.0
        block_w = 0.0
        for i in range(b, e):
            j = y_index[i]
            if one_column:
                p1 = np.float64(probs[i])
                q = p1 if j == 1 else 1.0 - p1
            else:
                q = np.float64(probs[_U64(i * k + j)])
            loss = -np.log(min(max(q, eps), high))
            if w is None:
                block += loss
            else:
                block += w[i] * loss
                block_w += w[i]
        total += block
        total_w += np.float64(e - b) if w is None else block_w
    return total, total_w


@parallel_kernel
def _log_loss_parallel(y_index, probs, k, one_column, w, eps, t):
    n = y_index.size
    parts = np.empty((t, 2), np.float64)
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        parts[c, 0], parts[c, 1] = _log_loss_chunk(
            y_index[start:stop],
            probs[start * k : stop * k],
            k,
            one_column,
            optional_slice(w, start, stop),
            eps,
        )
    total = parts[0, 0]
    total_w = parts[0, 1]
    for c in range(1, t):
        total += parts[c, 0]
        total_w += parts[c, 1]
    return total, total_w


def log_loss_sum(y_index, y_prob, sample_weight, eps, n_threads):
    n = y_index.size
    one_column = y_prob.ndim == 1
    k = 1 if one_column else y_prob.shape[1]
    probs = y_prob.reshape(-1)
    t = n_chunks(n, n_threads)
    if t == 1:
        out = _log_loss_chunk(y_index, probs, k, one_column, sample_weight, float(eps))
    else:
        out = _log_loss_parallel(
            y_index, probs, k, one_column, sample_weight, float(eps), t
        )
    return float(out[0]), float(out[1])


# --------------------------------------------------------------------------------
# regression_stats: as in the C++ twin, a block's row r goes to partial sum (lane)
# r % 4 and the lanes are added as (l0 + l1) + (l2 + l3): four independent chains
# of additions instead of one.

_LANES = 4


@_helper
def _first_terms(t, p, w, i):
    """(w*d**2, w*|d|, w*t, w) of row i of one column, d = t - p; w None: 1."""
    ti = t[i]
    d = ti - p[i]
    if w is None:
        return d * d, abs(d), ti, 1.0
    wi = w[i]
    return wi * (d * d), wi * abs(d), wi * ti, wi


@kernel
def _first_one_column(t, p, w):
    """Blocked (sum w, sum w*d**2, sum w*|d|, sum w*t) of one chunk of one column."""
    n = t.size
    total = np.zeros(4)
    for b in range(0, n, BLOCK):
        e = min(b + BLOCK, n)
        # lane l of a term sums rows b + l, b + l + 4, ...
        sq0 = sq1 = sq2 = sq3 = 0.0
        ab0 = ab1 = ab2 = ab3 = 0.0
        tt0 = tt1 = tt2 = tt3 = 0.0
        ww0 = ww1 = ww2 = ww3 = 0.0
        i = b
        while i + _LANES <= e:
            q, r, u, v = _first_terms(t, p, w, i)
            sq0 += q
            ab0 += r
            tt0 += u
            ww0 += v
            q, r, u, v = _first_terms(t, p, w, i + 1)
            sq1 += q
            ab1 += r
            tt1 += u
            ww1 += v
            q, r, u, v = _first_terms(t, p, w, i + 2)
            sq2 += q
            ab2 += r
            tt2 += u
            ww2 += v
            q, r, u, v = _first_terms(t, p, w, i + 3)
            sq3 += q
            ab3 += r
            tt3 += u
            ww3 += v
            i += _LANES
        # the rows after the last whole group go to lanes 0, 1, 2 in turn
        if i < e:
            q, r, u, v = _first_terms(t, p, w, i)
            sq0 += q
            ab0 += r
            tt0 += u
            ww0 += v
        if i + 1 < e:
            q, r, u, v = _first_terms(t, p, w, i + 1)
            sq1 += q
            ab1 += r
            tt1 += u
            ww1 += v
        if i + 2 < e:
            q, r, u, v = _first_terms(t, p, w, i + 2)
            sq2 += q
            ab2 += r
            tt2 += u
            ww2 += v
        total[0] += np.float64(e - b) if w is None else (ww0 + ww1) + (ww2 + ww3)
        total[1] += (sq0 + sq1) + (sq2 + sq3)
        total[2] += (ab0 + ab1) + (ab2 + ab3)
        total[3] += (tt0 + tt1) + (tt2 + tt3)
    return total


@_helper
def _second_term(t, w, mean, i):
    d = t[i] - mean
    return d * d if w is None else w[i] * (d * d)


@kernel
def _second_one_column(t, w, mean):
    """Blocked sum of w * (t - mean)**2 over one chunk of one column, as (1,)."""
    n = t.size
    total = np.zeros(1)
    for b in range(0, n, BLOCK):
        e = min(b + BLOCK, n)
        s0 = s1 = s2 = s3 = 0.0
        i = b
        while i + _LANES <= e:
            s0 += _second_term(t, w, mean, i)
            s1 += _second_term(t, w, mean, i + 1)
            s2 += _second_term(t, w, mean, i + 2)
            s3 += _second_term(t, w, mean, i + 3)
            i += _LANES
        if i < e:
            s0 += _second_term(t, w, mean, i)
        if i + 1 < e:
            s1 += _second_term(t, w, mean, i + 1)
        if i + 2 < e:
            s2 += _second_term(t, w, mean, i + 2)
        total[0] += (s0 + s1) + (s2 + s3)
    return total


@kernel
def _sums_columns(t, p, w, mean, second):
    """The blocked, laned sums of (rows, k) slices: when not second, a (1 + 3k,)
    array [sum w, w*d**2 per column, w*|d| per column, w*t per column], d = t - p;
    when second, (k,) sums of w*(t - mean)**2. Lanes as in the one-column sums."""
    n, k = t.shape
    width = k if second else 3 * k
    total = np.zeros(width if second else 1 + width)
    lanes = np.empty((_LANES, width))
    lane_w = np.empty(_LANES)
    at = 0 if second else 1
    for b in range(0, n, BLOCK):
        e = min(b + BLOCK, n)
        lanes[:] = 0.0
        lane_w[:] = 0.0
        for i in range(b, e):
            lane = lanes[(i - b) & (_LANES - 1)]
            wi = 1.0 if w is None else w[i]
            lane_w[(i - b) & (_LANES - 1)] += wi
            for j in range(k):
                ti = t[i, j]
                if second:
                    d = ti - mean[j]
                    lane[j] += d * d if w is None else wi * (d * d)
                else:
                    d = ti - p[i, j]
                    if w is None:
                        lane[j] += d * d
                        lane[k + j] += abs(d)
                        lane[2 * k + j] += ti
                    else:
                        lane[j] += wi * (d * d)
                        lane[k + j] += wi * abs(d)
                        lane[2 * k + j] += wi * ti
        for c in range(width):
            total[at + c] += (lanes[0, c] + lanes[1, c]) + (lanes[2, c] + lanes[3, c])
        if not second:
            if w is None:
                total[0] += np.float64(e - b)
            else:
                total[0] += (lane_w[0] + lane_w[1]) + (lane_w[2] + lane_w[3])
    return total


@njit(inline="always")
def _column_sums(t, p, w, mean, second):
    if t.shape[1] == 1:  # the rows are contiguous: flat loops, sums in registers
        rows = t.shape[0]
        if second:
            return _second_one_column(t.reshape(rows), w, mean[0])
        return _first_one_column(t.reshape(rows), p.reshape(rows), w)
    return _sums_columns(t, p, w, mean, second)


@parallel_kernel
def _chunked_sums(y_true, y_pred, w, mean, second, t):
    """_column_sums of t chunks, added in chunk order."""
    n, k = y_true.shape
    parts = np.empty((t, k if second else 1 + 3 * k))
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        parts[c] = _column_sums(
            y_true[start:stop],
            y_pred[start:stop],
            optional_slice(w, start, stop),
            mean,
            second,
        )
    total = parts[0].copy()
    for c in range(1, t):
        total += parts[c]
    return total


def regression_stats(y_true, y_pred, sample_weight, n_threads):
    n, k = y_true.shape
    t = n_chunks(n, n_threads)

    def sums(mean, second):
        if t == 1:
            return _column_sums(y_true, y_pred, sample_weight, mean, second)
        return _chunked_sums(y_true, y_pred, sample_weight, mean, second, t)

    first = sums(np.zeros(k), False)
    sum_w = float(first[0])
    sse = first[1 : 1 + k].copy()
    sae = first[1 + k : 1 + 2 * k].copy()
    with np.errstate(divide="ignore", invalid="ignore"):  # sum_w 0: nan, as in C++
        mean_true = first[1 + 2 * k :] / sum_w
    # Around the mean rather than from raw squares: no cancellation.
    ss_tot = sums(mean_true, True)
    return sum_w, sse, sae, mean_true, ss_tot


# --------------------------------------------------------------------------------
# all_finite

#: all_finite checks blocks of this many values, and stops at the first bad one.
_FINITE_BLOCK = 4096


@kernel
def _all_finite_chunk(bits):
    # A float is NaN or inf exactly when its exponent bits are all ones.
    exponent = _U64(0x7FF0000000000000) if bits.itemsize == 8 else _U64(0x7F800000)
    for b in range(0, bits.size, _FINITE_BLOCK):
        block = bits[b : b + _FINITE_BLOCK]
        bad = 0
        for i in range(block.size):
            bad += (_U64(block[i]) & exponent) == exponent
        if bad:
            return False
    return True


@parallel_kernel
def _all_finite_parallel(bits, t):
    n = bits.size
    ok = np.empty(t, np.bool_)
    for c in prange(t):
        start, stop = chunk_bounds(c, t, n)
        ok[c] = _all_finite_chunk(bits[start:stop])
    return ok.all()


def all_finite(x, n_threads):
    bits = x.reshape(-1).view(np.uint64 if x.dtype.itemsize == 8 else np.uint32)
    t = n_chunks(bits.size, n_threads)
    if t == 1:
        return bool(_all_finite_chunk(bits))
    return bool(_all_finite_parallel(bits, t))
