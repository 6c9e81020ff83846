"""Slow, obvious reference implementations.

sklearn.metrics is the main oracle of the test suite; these are a second, independent
check of the few places where gradkit and sklearn compute a number in different ways
(gradkit's AUC is a rank statistic, sklearn's a trapezoid over the curve).
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
