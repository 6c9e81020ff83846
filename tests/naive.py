"""Slow, obvious reference implementations.

sklearn.metrics is the main oracle of the test suite; these are a second, independent
check of the few places where gradkit and sklearn compute a number in different ways
(gradkit's AUC is a rank statistic, sklearn's a trapezoid over the curve; sgd_epoch
sums over the features of a dense row in 16 lanes, sklearn in one chain).
"""

from __future__ import annotations

import numpy as np


def pairwise_auc(y_true, y_score, sample_weight=None) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2, weighted.

    Every (positive, negative) pair is visited: O(n^2), fine for n <= a few hundred.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    num = 0.0
    den = 0.0
    for i in np.flatnonzero(y):
        for j in np.flatnonzero(~y):
            pair = w[i] * w[j]
            den += pair
            if s[i] > s[j]:
                num += pair
            elif s[i] == s[j]:
                num += 0.5 * pair
    return num / den if den > 0 else float("nan")


def curve_counts(y_true, y_score, sample_weight=None):
    """(fps, tps, thresholds): for each distinct score t in decreasing order, the
    weight of the negatives and positives with score >= t (weight-0 samples skipped)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    keep = w != 0
    y, s, w = y[keep], s[keep], w[keep]
    thresholds = np.unique(s)[::-1]
    tps = np.array([w[(s >= t) & y].sum() for t in thresholds])
    fps = np.array([w[(s >= t) & ~y].sum() for t in thresholds])
    return fps, tps, thresholds


def range_partition_reference(y_true, y_score, sample_weight, bounds):
    """The rows sorted stably by range (the number of bounds <= the score), each
    range's row count, and its weight per label summed in row order (bincount)."""
    y = np.asarray(y_true, np.uint8)
    s = np.asarray(y_score, np.float64)
    n_ranges = len(bounds) + 1
    ids = np.searchsorted(np.asarray(bounds, np.float64), s, side="right")
    order = np.argsort(ids, kind="stable")
    w = None if sample_weight is None else np.asarray(sample_weight, np.float64)[order]
    cells = 2 * ids[order] + (y[order] != 0)
    label_weights = np.bincount(cells, weights=w, minlength=2 * n_ranges)
    label_weights = label_weights.astype(np.float64)
    sizes = np.bincount(ids, minlength=n_ranges).astype(np.int64)
    return y[order], s[order], w, sizes, label_weights.reshape(n_ranges, 2)


def offset_average_precision(y_true, y_score, sample_weight, tp_offset, fp_offset):
    """The offset average precision of _core.pyi, from the curve of curve_counts."""
    fps, tps, _ = curve_counts(y_true, y_score, sample_weight)
    if len(tps) == 0 or tps[-1] == 0:
        return float("nan")
    pos_g = np.diff(tps, prepend=0.0)
    tp = tps + tp_offset
    denom = tp + (fps + fp_offset)
    precision = np.divide(tp, denom, out=np.zeros_like(tp), where=denom != 0)
    return float(np.sum(pos_g / tps[-1] * precision))


def linear_losses(code, param, y, p):
    """(loss, d loss / d p) of the single-output loss `code` (0-7 of
    gradkit._core.linear), elementwise over the float64 arrays y and p."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if code == 0:  # squared_error
        return 0.5 * (p - y) ** 2, p - y
    if code == 1:  # huber
        r = p - y
        inside = np.abs(r) <= param
        loss = np.where(inside, 0.5 * r**2, param * (np.abs(r) - param / 2))
        return loss, np.where(inside, r, param * np.sign(r))
    if code in (2, 3):  # (squared_)epsilon_insensitive
        excess = np.maximum(0.0, np.abs(y - p) - param)
        sign = np.where(y - p > param, -1.0, np.where(p - y > param, 1.0, 0.0))
        if code == 2:
            return excess, sign
        return excess**2, 2 * sign * excess
    if code == 4:  # log_loss, y in {0, 1}
        return np.logaddexp(0.0, p) - y * p, 1 / (1 + np.exp(-p)) - y
    z = p * y
    if code == 5:  # hinge, y in {-1, 1}
        return np.where(z <= param, param - z, 0.0), np.where(z <= param, -y, 0.0)
    if code == 6:  # squared_hinge
        m = np.maximum(0.0, param - z)
        return m**2, -2 * y * m
    if code == 7:  # modified_huber
        loss = np.where(z >= 1, 0.0, np.where(z >= -1, (1 - z) ** 2, -4 * z))
        dloss = np.where(z >= 1, 0.0, np.where(z >= -1, -2 * (1 - z) * y, -4 * y))
        return loss, dloss
    raise ValueError(f"no single-output loss code {code}")


def linear_loss_grad(X, y, sample_weight, rows, coef, intercept, code, param):
    """(loss, grad_coef, grad_intercept) of gradkit._core.linear.loss_grad from
    numpy's matrix products: X dense, any float dtype; code 8 is the multinomial
    loss with y the class index. Rows of weight 0 add nothing."""
    X = np.asarray(X, dtype=np.float64)
    index = np.arange(len(y)) if rows is None else np.asarray(rows)
    Xr, yr = X[index], np.asarray(y, dtype=np.float64)[index]
    w = np.ones(len(index)) if sample_weight is None else sample_weight[index]
    keep = w != 0
    Xr, yr, w = Xr[keep], yr[keep], w[keep]
    P = Xr @ coef.T + intercept  # (m, k)
    if code == 8:
        top = P.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(P - top).sum(axis=1)) + top[:, 0]
        labels = yr.astype(np.int64)
        loss = log_sum - P[np.arange(len(yr)), labels]
        G = np.exp(P - log_sum[:, None])
        G[np.arange(len(yr)), labels] -= 1.0
    else:
        loss, dloss = linear_losses(code, param, yr, P[:, 0])
        G = np.zeros_like(P)
        G[:, 0] = dloss
    G = G * w[:, None]
    return float(np.sum(w * loss)), G.T @ Xr, G.sum(axis=0)


def lane_sum(terms, lanes=16):
    """A sum over the features of a dense row as gradkit._core.linear.sgd_epoch adds
    it (its docstring, "Summation order"): lane l adds, in float64 from 0.0, the
    terms of the features j = l, l + 16, ... in increasing j; then the upper half of
    the lanes is added to the lower half, lane by lane, until one lane is left."""
    sums = [0.0] * lanes
    for j, term in enumerate(np.asarray(terms, dtype=np.float64).tolist()):
        sums[j % lanes] += term
    while len(sums) > 1:
        half = len(sums) // 2
        sums = [sums[lane] + sums[lane + half] for lane in range(half)]
    return sums[0]


def lane_dot(w, x):
    """w.x summed as lane_sum, each product rounded to the arrays' dtype first."""
    return lane_sum(np.asarray(w) * np.asarray(x))


# compression


def torch_qparams(lo, hi, qmin, qmax, symmetric):
    """(scale float32, zero_point int32) per row range [lo, hi], as torch's MinMax
    observers compute them (torch/ao/quantization/observer.py, _calculate_qparams):
    every operation on float32 arrays, so each one rounds to float32."""
    f32 = np.float32
    lo = np.asarray(lo, dtype=f32)
    hi = np.asarray(hi, dtype=f32)
    eps = np.finfo(f32).eps
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        min_neg = np.minimum(lo, f32(0))
        max_pos = np.maximum(hi, f32(0))
        if symmetric:
            bound = np.maximum(-min_neg, max_pos)
            scale = np.maximum(bound / f32((qmax - qmin) / 2), eps)
            zero_point = np.full(lo.shape, 0 if qmin < 0 else (qmin + qmax + 1) // 2)
        else:
            scale = np.maximum((max_pos - min_neg) / f32(qmax - qmin), eps)
            shift = np.rint(min_neg / scale).astype(np.float64)
            zero_point = np.clip(qmin - shift, qmin, qmax)
    return scale.astype(f32), zero_point.astype(np.int32)


def quantize_rows_reference(x, lo, hi, qmin, qmax, symmetric, fma_rounding):
    """(q, scale, zero_point) of quantizing each row of the 2-D float32 x: the range
    of a row is [lo, hi] or, when they are None, its own min and max.

    fma_rounding False: q = rint(float32(float32(x * inv) + z)), two roundings;
    True: x * inv + z rounded once to float32. The float64 product of two float32
    is exact and adding an integer |z| <= 255 rounds at most far below float32's
    last bit, so float64 arithmetic rounded to float32 once emulates the fma."""
    f32 = np.float32
    x = np.asarray(x, dtype=f32)
    if lo is None:
        lo, hi = x.min(axis=1), x.max(axis=1)
    scale, zero_point = torch_qparams(lo, hi, qmin, qmax, symmetric)
    inv = (f32(1) / scale)[:, None]
    z = zero_point.astype(f32)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        if fma_rounding:
            y = (x.astype(np.float64) * inv.astype(np.float64) + z).astype(f32)
        else:
            y = (x * inv) + z
        q = np.clip(np.rint(y), qmin, qmax)
    return q.astype(np.int8 if qmin < 0 else np.uint8), scale, zero_point


def dequantize_rows_reference(q, scale, zero_point):
    """float32((q - zero_point) as an exact integer) * scale, row by row."""
    diff = np.asarray(q).astype(np.int64) - np.asarray(zero_point)[:, None]
    return diff.astype(np.float32) * np.asarray(scale, dtype=np.float32)[:, None]


def magnitude_threshold_reference(x, k):
    """(threshold, ties): the k-th smallest |x| from a full sort, and k minus the
    count of magnitudes strictly below it."""
    a = np.abs(np.asarray(x))
    threshold = np.sort(a)[k - 1]
    return float(threshold), k - int(np.count_nonzero(a < threshold))


def prune_reference(x, threshold, ties):
    """(mask, values, ties_left) of pruning |x| < threshold and the first `ties`
    elements with |x| == threshold (index order), compared in float64."""
    x = np.asarray(x)
    a = np.abs(x).astype(np.float64)
    pruned = a < threshold
    equal = np.flatnonzero(a == threshold)
    pruned[equal[:ties]] = True
    kept = ~pruned
    mask = np.packbits(kept, bitorder="little")
    return mask, x[kept], max(0, ties - equal.size)


def unpack_reference(mask, values, n):
    """values placed in index order where the first n bits of mask are set, +0.0
    elsewhere."""
    kept = np.unpackbits(mask, bitorder="little")[:n].astype(bool)
    out = np.zeros(n, dtype=values.dtype)
    out[kept] = values
    return out


def lloyd_1d(w, k):
    """Lloyd's algorithm from the linear init, the obvious way: an empty cluster
    keeps its centroid (sklearn's KMeans moves it instead)."""
    centroids = np.linspace(w.min(), w.max(), k)
    for _ in range(300):
        labels = np.abs(w[:, None] - centroids).argmin(axis=1)
        new = np.array(
            [
                w[labels == j].mean() if np.any(labels == j) else centroids[j]
                for j in range(k)
            ]
        )
        if np.array_equal(new, centroids):
            break
        centroids = new
    return np.sort(centroids)
