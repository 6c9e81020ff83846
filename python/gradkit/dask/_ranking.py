"""Exact binary ROC AUC and average precision of dask inputs, by a sample sort.

These two metrics do not merge per-block states in a tree as the others do: the
root of such a tree holds every distinct score of the data and re-merges them at
each level (10**8 scores grew a worker to 7.7 GB). They cost one sort in total:

1. Every block is checked and encoded where it lives. A strided sample of its
   scores places up to n_ranges - 1 boundaries, so the score ranges hold about
   the same number of rows; equal scores always fall in one range.
2. Every block is cut by those boundaries. The weight of each label in each
   (block, range) comes back to the client: a few numbers per block.
3. Each range gathers its pieces from all blocks and runs gradkit's binary curve
   kernel on them. Given the weight of the positives and negatives scoring above
   it (from step 2), it returns its exact share of the metric: the area under
   its part of the ROC curve, or its terms of the average precision. The client
   adds the shares and normalises once.

The unweighted ROC AUC is a sum of exact half-integers, as in the in-memory
kernel, so it equals gradkit.metrics bit for bit. The other cases agree to
~1e-15 relative; only the order of the sums differs.

Errors, warnings and degenerate results (one class only, a class of zero total
weight, a bad max_fpr or pos_label) come from gradkit.metrics itself, called on
one row per label carrying that label's total weight: those outcomes depend on
nothing else.
"""

from __future__ import annotations

import functools
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
from gradkit.metrics.streaming import _chunk_weights

SAMPLES_PER_BLOCK = 256
MAX_RANGES = 255  # range ids are uint8


class _Block:
    """Rows of one block (or one piece of it): the block's labels (at most two,
    sorted), each row's label code (uint8), float64 scores and weights (None when
    unweighted)."""

    def __init__(
        self,
        labels: np.ndarray,
        codes: np.ndarray,
        scores: np.ndarray,
        w: np.ndarray | None,
    ) -> None:
        self.labels, self.codes, self.scores, self.w = labels, codes, scores, w


def _encode_block(
    y: np.ndarray, s: np.ndarray, w: Any, metric: str
) -> tuple[_Block, np.ndarray]:
    """(the checked block, a strided sample of its scores)."""
    if len(y) == 0:  # blocks cut by a mask may be empty
        return _Block(np.empty(0), np.empty(0, np.uint8), np.empty(0), None), y[:0]
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
    weights = _chunk_weights(w, scores.shape[0])
    codes = (y != labels[0]).view(np.uint8)  # the index of y in labels
    step = max(1, len(scores) // SAMPLES_PER_BLOCK)
    return _Block(labels, codes, scores, weights), scores[::step].copy()


def _boundaries(n_ranges: int, *samples: np.ndarray) -> np.ndarray:
    """Up to n_ranges - 1 distinct scores that cut the pooled sample evenly."""
    pooled = np.sort(np.concatenate(samples).astype(np.float64))
    if len(pooled) == 0:
        return pooled
    return np.unique(pooled[(np.arange(1, n_ranges) * len(pooled)) // n_ranges])


def _range_ids(scores: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The range of each score, as uint8: how many boundaries are <= it."""
    if len(bounds) > 16:
        return np.searchsorted(bounds, scores, side="right").astype(np.uint8)
    ids = np.zeros(len(scores), dtype=np.uint8)
    for bound in bounds:  # a few streaming compares beat a binary search per row
        ids += (scores >= bound).view(np.uint8)
    return ids


def _cut_block(
    block: _Block, bounds: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], list[_Block]]:
    """((the block's labels, weight per (range, label)), its pieces by range,
    lowest scores first). The weight is the row count when unweighted."""
    n_ranges, k = len(bounds) + 1, len(block.labels)
    ids = _range_ids(block.scores, bounds)
    cell = ids.astype(np.intp) * 2 + block.codes
    weights = np.bincount(cell, weights=block.w, minlength=2 * n_ranges)
    order = np.argsort(ids, kind="stable")  # a radix sort: the ids are uint8
    ends = np.cumsum(np.bincount(ids, minlength=n_ranges))[:-1]
    parts = [np.split(a[order], ends) for a in (block.codes, block.scores)]
    w_parts = [None] * n_ranges if block.w is None else np.split(block.w[order], ends)
    pieces = [
        _Block(block.labels, c, s, w) for c, s, w in zip(*parts, w_parts, strict=True)
    ]
    return (block.labels, weights.reshape(n_ranges, 2)[:, :k]), pieces


class _Share:
    """What a score range needs to compute its share of the metric: the metric,
    the positive label, the (negative, positive) weight scoring above the range,
    the total negative weight, and max_fpr (None: the whole ROC curve)."""

    def __init__(
        self,
        metric: str,
        pos_label: Any,
        above: tuple[float, float],
        neg_total: float,
        max_fpr: float | None,
    ) -> None:
        self.metric, self.pos_label, self.above = metric, pos_label, above
        self.neg_total, self.max_fpr = neg_total, max_fpr


def _range_share(share: _Share, *pieces: _Block) -> float:
    """The range's share of the metric, in units of weight (see _Share)."""
    pieces = tuple(p for p in pieces if len(p.scores))
    if not pieces:
        return 0.0
    pos = np.concatenate(
        [(p.labels == share.pos_label).astype(np.uint8)[p.codes] for p in pieces]
    )
    scores = np.concatenate([p.scores for p in pieces])
    w = None if pieces[0].w is None else np.concatenate([p.w for p in pieces])
    kernel = _config.kernels("metrics")
    neg_above, pos_above = share.above
    if share.metric == "roc_auc_score" and share.max_fpr is None and w is None:
        auc, pos_n, neg_n = kernel.binary_auc(pos, scores, None, _config.n_threads())
        if pos_n * neg_n < 2.0**50:
            # The kernel's exact twice-area (an integer) divided by 2 * pos * neg:
            # below 2**50 the product takes it back exactly, with no curve arrays.
            area2 = 0.0 if np.isnan(auc) else round(auc * 2 * pos_n * neg_n)
            return area2 / 2 + neg_n * pos_above
    fps, tps, _ = kernel.binary_curve(pos, scores, w, _config.n_threads())
    if len(fps) == 0:  # every weight is 0
        return 0.0
    # Cumulative weights from the top of all the data, and each tie group's own.
    fps, tps = fps + neg_above, tps + pos_above
    pos_g = np.diff(tps, prepend=pos_above)
    neg_g = np.diff(fps, prepend=neg_above)
    if share.metric == "average_precision_score":
        # Recall steps pos_g / P times precision (each group has weight, so
        # tps + fps > 0).
        return float(np.sum(pos_g * (tps / (tps + fps))))
    if share.max_fpr is None:
        # Mann-Whitney with half credit for ties, as the binary_auc kernel: with
        # counts every term and partial sum is an exact half-integer.
        return float(np.sum(neg_g * (tps - pos_g / 2)))
    # The trapezoids of the ROC curve left of fpr = max_fpr, in weight units.
    limit = share.max_fpr * share.neg_total
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


def _label_weights(
    infos: Sequence[tuple[np.ndarray, np.ndarray]], metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(all labels, weight per (range, label)) from the blocks' infos."""
    present = [labels for labels, _ in infos if len(labels)]
    if not present:
        raise ValueError(f"gradkit.dask.{metric}: y_true holds no samples.")
    labels = functools.reduce(np.union1d, present)
    if len(labels) > 2:
        raise ValueError(
            f"gradkit.dask.{metric} takes binary y_true, got {len(labels)} labels "
            f"over the blocks (first ones: {labels[:5].tolist()}); compute "
            "multiclass scores in memory with gradkit.metrics."
        )
    n_ranges = infos[0][1].shape[0]
    weights = np.zeros((n_ranges, len(labels)))
    for block_labels, block_weights in infos:
        if len(block_labels):
            weights[:, np.searchsorted(labels, block_labels)] += block_weights
    return labels, weights


def ranking_metric(
    metric: str,
    y: Any,
    s: Any,
    w: Any,
    n_ranges: Any,
    weighted: bool,
    kwargs: dict[str, Any],
) -> float:
    """metric ("roc_auc_score" or "average_precision_score") of the aligned 1-D
    dask arrays y, s and w (None when unweighted), with gradkit.metrics' kwargs."""
    columns: list[Sequence[Any]] = [y.to_delayed().ravel(), s.to_delayed().ravel()]
    columns.append([None] * len(columns[0]) if w is None else w.to_delayed().ravel())
    ranges = _count_ranges(n_ranges, len(columns[0]))
    encode = dask.delayed(_encode_block, pure=True, nout=2)
    encoded = [encode(*parts, metric) for parts in zip(*columns, strict=True)]
    bounds = dask.delayed(_boundaries, pure=True)(ranges, *(e[1] for e in encoded))
    cut = dask.delayed(_cut_block, pure=True, nout=2)
    cuts = [cut(e[0], bounds) for e in encoded]
    # The pieces stay on the workers while the client adds up the label weights.
    infos, pieces = dask.persist([c[0] for c in cuts], [c[1] for c in cuts])
    (infos,) = dask.compute(infos)
    labels, weights = _label_weights(infos, metric)

    # gradkit.metrics on one row per label, of that label's total weight: the
    # same checks of the arguments, and the whole answer when the metric is
    # degenerate (one class, or a class of zero total weight).
    totals = weights.sum(axis=0)
    stand_in = getattr(_metrics, metric)(
        labels, np.zeros(len(labels)), sample_weight=totals if weighted else None,
        **kwargs,
    )  # fmt: skip
    if len(labels) < 2 or not totals.all():
        return float(stand_in)

    if metric == "roc_auc_score":
        pos_label, max_fpr = labels[1], kwargs.get("max_fpr")
        if max_fpr == 1:
            max_fpr = None
    else:
        pos_label, max_fpr = kwargs["pos_label"], None
        if not np.any(labels == pos_label):  # no positives: degenerate as well
            return float(stand_in)
    pos_col = int(np.searchsorted(labels, pos_label))
    by_class = np.stack([weights[:, 1 - pos_col], weights[:, pos_col]], axis=1)
    # Weight scoring above each range: the sum over the ranges after it.
    above = np.cumsum(by_class[::-1], axis=0)[::-1] - by_class
    neg_total, pos_total = (float(t) for t in by_class.sum(axis=0))
    share = dask.delayed(_range_share, pure=True)
    shares = [
        share(
            _Share(metric, pos_label, (float(a[0]), float(a[1])), neg_total, max_fpr),
            *(p[r] for p in pieces),
        )
        for r, a in enumerate(above)
    ]
    (parts,) = dask.compute(shares)
    total = float(np.sum(parts))
    if metric == "average_precision_score":
        return float(max(0.0, total / pos_total))
    auc = total / (pos_total * neg_total)
    if max_fpr is None:
        return float(auc)
    # McClish's correction, as sklearn: 0.5 for chance, 1 for a perfect ranking.
    min_area, max_area = 0.5 * max_fpr**2, max_fpr
    return float(0.5 * (1 + (auc - min_area) / (max_area - min_area)))
