"""Exact binary ROC AUC and average precision of dask inputs, by a sample sort.

These two metrics do not merge per-block states in a tree as the others do: the
root of such a tree holds every distinct score of the data and re-merges them at
each level (10**8 scores grew a worker to 7.7 GB). They cost one sort in total:

1. A strided sample of every block's scores places n_ranges - 1 boundaries, so
   the score ranges hold about the same number of rows; equal scores always
   fall in one range.
2. Every block is checked and cut by those boundaries where it lives. A small
   task adds up the weight of each label in each range (the plan), and with it
   the weight of the positives and negatives scoring above each range.
3. Each range gathers its pieces from all blocks and runs gradkit's ranking
   kernel on them, on one thread. Given the weight scoring above it, it returns
   its exact share of the metric: the area under its part of the ROC curve, or
   its terms of the average precision. The client adds the shares and
   normalises once.

All of it is one graph: nothing returns to the client in between.

The unweighted ROC AUC is a sum of exact half-integers, as in the in-memory
kernel, so it equals gradkit.metrics bit for bit (while positives x negatives
stays below 2**53, about 1.9e8 balanced rows; beyond, to ~1e-15). The other
cases agree to ~1e-15 relative; only the order of the sums differs. When the
data is too big for one machine, a range task holds about 1 / n_ranges of it.

Errors, warnings and degenerate results (one class only, a class of zero total
weight, a bad max_fpr or pos_label) come from gradkit.metrics itself, called on
one row per label carrying that label's total weight: those outcomes depend on
nothing else.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np

import gradkit.metrics as _metrics
from gradkit import _config
from gradkit._validation import (
    check_array,
    check_consistent_length,
    column_or_1d,
    target_labels,
)
from gradkit.dask._tasks import one_thread_per_task
from gradkit.metrics.streaming import _chunk_weights

SAMPLES_PER_BLOCK = 256
MAX_RANGES = 255  # range ids are uint8
# Below this pos * neg, a range's unweighted area comes from binary_auc alone.
FAST_AUC_LIMIT = 2.0**48


class _Block:
    """Rows of one piece of a block: the block's labels (at most two, sorted),
    each row's label code (uint8), float64 scores and weights (None when
    unweighted)."""

    def __init__(
        self,
        labels: np.ndarray,
        codes: np.ndarray,
        scores: np.ndarray,
        w: np.ndarray | None,
    ) -> None:
        self.labels, self.codes, self.scores, self.w = labels, codes, scores, w


def _sample(s: np.ndarray) -> np.ndarray:
    """A strided sample of a block's finite scores (its checks come later)."""
    try:
        sample = np.asarray(s[:: max(1, len(s) // SAMPLES_PER_BLOCK)], np.float64)
    except (TypeError, ValueError):  # the block's own check will say what is wrong
        return np.empty(0)
    return sample[np.isfinite(sample)]


def _boundaries(n_ranges: int, *samples: np.ndarray) -> np.ndarray:
    """n_ranges - 1 scores that cut the pooled sample evenly (repeats make empty
    ranges)."""
    pooled = np.sort(np.concatenate(samples))
    if len(pooled) == 0:  # no finite score: every block's own check will fail
        return np.zeros(n_ranges - 1)
    return pooled[(np.arange(1, n_ranges) * len(pooled)) // n_ranges]


@one_thread_per_task
def _cut_block(
    y: np.ndarray, s: np.ndarray, w: Any, bounds: np.ndarray, n_ranges: int,
    metric: str,
) -> tuple[Any, ...]:  # fmt: skip
    """Check one block and cut it by score range: ((its labels, weight per
    (range, label), the row count when unweighted), then one _Block per range,
    lowest scores first)."""
    if len(y) == 0:  # blocks cut by a mask may be empty
        empty = _Block(np.empty(0), np.empty(0, np.uint8), np.empty(0), None)
        return ((np.empty(0), np.zeros((n_ranges, 0))),) + (empty,) * n_ranges
    y_type, labels, y = target_labels(y, "y_true")
    if y_type != "binary":
        raise ValueError(
            f"gradkit.dask.{metric} takes binary y_true, got {y_type}; compute "
            "multiclass scores in memory with gradkit.metrics."
        )
    check_consistent_length(y, s)
    scores = column_or_1d(
        check_array(s, ensure_2d=False, dtype=np.float64, input_name="y_score")
    )
    w = _chunk_weights(w, scores.shape[0])
    codes = (y != labels[0]).view(np.uint8)  # the index of y in labels
    kernel = _config.kernels("metrics")
    codes, scores, w, sizes, weights = kernel.range_partition(codes, scores, w, bounds)
    ends = np.cumsum(sizes)[:-1]
    parts = [np.split(a, ends) for a in (codes, scores)]
    w_parts = [None] * n_ranges if w is None else np.split(w, ends)
    info = (labels, weights[:, : len(labels)])
    return (info,) + tuple(
        _Block(labels, c, sc, wt) for c, sc, wt in zip(*parts, w_parts, strict=True)
    )


class _Plan:
    """What every score range needs, from all the blocks' label weights: the
    labels over all blocks, their weight per range, the positive label, the
    (negative, positive) weight scoring above each range, the total negative
    weight, and max_fpr (None: the whole ROC curve)."""

    def __init__(
        self, metric: str, pos_label: Any, max_fpr: Any,
        infos: Sequence[tuple[np.ndarray, np.ndarray]],
    ) -> None:  # fmt: skip
        # ranking_metric sends no work for empty data: some block has rows.
        labels = functools.reduce(
            np.union1d, [labels for labels, _ in infos if len(labels)]
        )
        if len(labels) > 2:
            raise ValueError(
                f"gradkit.dask.{metric} takes binary y_true, got {len(labels)} "
                f"labels over the blocks (first ones: {labels[:5].tolist()}); "
                "compute multiclass scores in memory with gradkit.metrics."
            )
        weights = np.zeros((infos[0][1].shape[0], len(labels)))
        for block_labels, block_weights in infos:
            if len(block_labels):
                weights[:, np.searchsorted(labels, block_labels)] += block_weights
        if metric == "roc_auc_score":  # the greater label is the positive one
            pos_label = labels[-1]
        by_class = np.zeros((len(weights), 2))  # (negative, positive) per range
        for col, label in enumerate(labels):
            by_class[:, int(label == pos_label)] += weights[:, col]
        self.metric, self.labels, self.weights = metric, labels, weights
        self.pos_label = pos_label
        self.max_fpr = None if max_fpr == 1 else max_fpr
        # Weight scoring above each range: the sum over the ranges after it.
        self.above = np.cumsum(by_class[::-1], axis=0)[::-1] - by_class
        self.neg_total, self.pos_total = (float(t) for t in by_class.sum(axis=0))


@one_thread_per_task
def _range_share(plan: _Plan, r: int, *pieces: _Block) -> float:
    """Score range r's share of the metric, in units of weight (see _Plan)."""
    pieces = tuple(p for p in pieces if len(p.scores))
    if not pieces:
        return 0.0
    pos = np.concatenate(
        [(p.labels == plan.pos_label).astype(np.uint8)[p.codes] for p in pieces]
    )
    scores = np.concatenate([p.scores for p in pieces])
    w = None if pieces[0].w is None else np.concatenate([p.w for p in pieces])
    # One thread, as one_thread_per_task sets for every task.
    kernel, threads = _config.kernels("metrics"), _config.n_threads()
    neg_above, pos_above = (float(a) for a in plan.above[r])
    if plan.metric == "roc_auc_score" and plan.max_fpr is None and w is None:
        auc, pos_n, neg_n = kernel.binary_auc(pos, scores, None, threads)
        if pos_n * neg_n < FAST_AUC_LIMIT:
            # auc is the kernel's exact twice-area (an integer below 2 * pos * neg)
            # over 2 * pos * neg, rounded: multiplying back (three roundings) is
            # off by less than 0.2 there, so round() gives the integer exactly,
            # with no curve arrays.
            area2 = 0.0 if np.isnan(auc) else round(auc * 2 * pos_n * neg_n)
            return area2 / 2 + neg_n * pos_above
    if plan.metric == "average_precision_score":
        # The kernel's sum of pos_g / pos_weight * precision_g, with the weight
        # scoring above the range in every precision.
        ap, pos_weight = kernel.binary_average_precision(
            pos, scores, w, threads, tp_offset=pos_above, fp_offset=neg_above
        )
        return 0.0 if pos_weight == 0 else float(ap * pos_weight)
    fps, tps, _ = kernel.binary_curve(pos, scores, w, threads)
    if len(fps) == 0:  # every weight is 0
        return 0.0
    # Cumulative weights from the top of all the data, and each tie group's own.
    # In place where the arrays allow: each fresh array of this size costs more
    # in page faults than the arithmetic on it.
    fps += neg_above
    tps += pos_above
    pos_g = np.diff(tps, prepend=pos_above)
    neg_g = np.diff(fps, prepend=neg_above)
    if plan.max_fpr is None:
        # Mann-Whitney with half credit for ties, as the binary_auc kernel: with
        # counts every term and partial sum is an exact half-integer.
        return float(neg_g @ (tps - pos_g / 2))
    # The trapezoids of the ROC curve left of fpr = max_fpr, in weight units.
    limit = plan.max_fpr * plan.neg_total
    start_fp, start_tp = fps - neg_g, tps - pos_g
    width = np.clip(limit - start_fp, 0.0, neg_g)
    rise = pos_g * (width / np.where(neg_g > 0, neg_g, 1.0))
    return float(np.sum(width * (start_tp + rise / 2)))


def _count_ranges(n_ranges: Any, n_blocks: int) -> int:
    if n_ranges is None:  # two ranges per worker thread, to balance the load
        try:
            from distributed import get_client

            threads = sum(get_client().nthreads().values())
        except (ImportError, ValueError):  # no distributed client: local threads
            threads = _config.n_threads()
        return max(1, min(n_blocks, 2 * threads, MAX_RANGES))
    if (
        isinstance(n_ranges, bool)
        or not isinstance(n_ranges, (int, np.integer))
        or not 1 <= n_ranges <= MAX_RANGES
    ):
        raise ValueError(
            f"n_ranges must be an integer in [1, {MAX_RANGES}] (the number of score "
            f"ranges the data is sorted into), got {n_ranges!r}."
        )
    return int(n_ranges)


def ranking_metric(
    metric: str,
    y: Any,
    s: Any,
    w: Any,
    n_ranges: Any,
    kwargs: dict[str, Any],
) -> float:
    """metric ("roc_auc_score" or "average_precision_score") of the aligned 1-D
    dask arrays y, s and w (None when unweighted), with gradkit.metrics' kwargs.
    One graph: no round trip to the client between the steps."""
    func = getattr(_metrics, metric)
    ranges = _count_ranges(n_ranges, y.numblocks[0])
    if y.shape[0] == 0:  # the in-memory error for empty input
        return float(func(np.empty(0), np.empty(0), **kwargs))
    if metric == "roc_auc_score":
        # The in-memory checks of max_fpr (which the shares compute with), average
        # and the rest, before any work is sent: on two made-up rows, whose
        # warnings are not the data's. (average_precision_score's pos_label is
        # checked against the labels, which only the data has.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            func(np.array([0, 1]), np.array([0.0, 1.0]), **kwargs)
    columns: list[Sequence[Any]] = [y.to_delayed().ravel(), s.to_delayed().ravel()]
    columns.append([None] * len(columns[0]) if w is None else w.to_delayed().ravel())
    sample = dask.delayed(_sample, pure=True)
    bounds = dask.delayed(_boundaries, pure=True)(
        ranges, *(sample(block) for block in columns[1])
    )
    cut = dask.delayed(_cut_block, pure=True, nout=ranges + 1)
    cuts = [cut(*parts, bounds, ranges, metric) for parts in zip(*columns, strict=True)]
    plan = dask.delayed(_Plan, pure=True)(
        metric, kwargs.get("pos_label"), kwargs.get("max_fpr"), [c[0] for c in cuts]
    )
    share = dask.delayed(_range_share, pure=True)
    shares = [share(plan, r, *(c[r + 1] for c in cuts)) for r in range(ranges)]
    plan, parts = dask.compute(plan, shares)

    # gradkit.metrics on one row per label, of that label's total weight: the
    # same checks of the arguments, and the whole answer when the metric is
    # degenerate (one class, a class of zero total weight, no positive label).
    totals = plan.weights.sum(axis=0)
    stand_in = func(
        plan.labels, np.zeros(len(plan.labels)),
        sample_weight=None if w is None else totals, **kwargs,
    )  # fmt: skip
    if len(plan.labels) < 2 or not totals.all() or plan.pos_total == 0:
        return float(stand_in)
    total = math.fsum(parts)
    if metric == "average_precision_score":
        return float(max(0.0, total / plan.pos_total))
    auc = total / (plan.pos_total * plan.neg_total)
    if plan.max_fpr is None:
        return float(auc)
    # McClish's correction, as sklearn: 0.5 for chance, 1 for a perfect ranking.
    min_area, max_area = 0.5 * plan.max_fpr**2, plan.max_fpr
    return float(0.5 * (1 + (auc - min_area) / (max_area - min_area)))
