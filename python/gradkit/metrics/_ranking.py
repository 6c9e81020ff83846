"""Ranking metrics: ROC and precision-recall curves, ROC AUC, average precision.

Every binary ranking metric is one kernel call: the kernel sorts the samples by
decreasing score once (a cache-friendly radix sort on two threads, the class
packed into the sort key when the scores leave a bit free) and walks the tie
groups once, so ties are grouped exactly as sklearn's stable argsort + np.diff
group them. The AUC is the Mann-Whitney statistic with half credit for ties,
which equals sklearn's trapezoid over the ROC curve.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from itertools import combinations
from numbers import Real
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import auc as auc_trapezoid
from sklearn.preprocessing import label_binarize
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from gradkit import _config
from gradkit._validation import (
    InvalidParameterError,
    as_kernel_float,
    check_pos_label,
    check_sample_weight,
    target_labels,
)

_AVERAGES = (None, "micro", "macro", "weighted", "samples")
BinaryMetric = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]


def _kernel() -> Any:
    return _config.kernels("metrics")


def _scores_1d(y_score: Any) -> np.ndarray:
    """A finite 1-D float score array, as sklearn's checks want it."""
    y_score = column_or_1d(y_score)
    return as_kernel_float(check_array(y_score, ensure_2d=False, input_name="y_score"))


def _positive_mask(y: np.ndarray, pos_label: Any) -> np.ndarray:
    """y == pos_label as uint8 (1 positive, 0 negative), no copy beyond the compare."""
    return np.ascontiguousarray(np.asarray(y == pos_label, dtype=np.bool_)).view(
        np.uint8
    )


def _binary_problem(
    y_true: Any, y_score: Any, sample_weight: Any, pos_label: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(positive mask, scores, weights), checked as confusion_matrix_at_thresholds."""
    y_type, labels, y = target_labels(y_true, "y_true")
    if not (y_type == "binary" or (y_type == "multiclass" and pos_label is not None)):
        raise ValueError(f"{y_type} format is not supported")
    pos_label = check_pos_label(pos_label, labels)
    check_consistent_length(y, y_score, sample_weight)
    if _has_strings(y_score):
        # sklearn sorts such scores, then fails to take their differences.
        raise TypeError("y_score must be numeric; got strings.")
    scores = _scores_1d(y_score)
    if sample_weight is not None:
        sample_weight = column_or_1d(sample_weight)
    w = check_sample_weight(sample_weight, scores.shape[0])
    return _positive_mask(y, pos_label), scores, w


def _has_strings(values: Any) -> bool:
    array = np.asarray(values)
    if array.dtype.kind in "US":
        return True
    if array.dtype != object:
        return False
    return any(isinstance(v, (str, bytes)) for v in array.flat)


def _curve(
    pos: np.ndarray, scores: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _kernel().binary_curve(pos, scores, w, _config.n_threads())


def roc_curve(
    y_true: Any,
    y_score: Any,
    *,
    pos_label: Any = None,
    sample_weight: Any = None,
    drop_intermediate: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic (sklearn.metrics.roc_curve)."""
    problem = _binary_problem(y_true, y_score, sample_weight, pos_label)
    return _roc(*problem, drop_intermediate=drop_intermediate)


def _roc(
    pos: np.ndarray,
    scores: np.ndarray,
    w: np.ndarray | None,
    drop_intermediate: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fpr, tpr, thresholds of a binary problem, with sklearn's warnings."""
    fps, tps, thresholds = _curve(pos, scores, w)
    if drop_intermediate and fps.shape[0] > 2:
        optimal = np.flatnonzero(
            np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        )
        fps, tps, thresholds = fps[optimal], tps[optimal], thresholds[optimal]
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    if fps[-1] <= 0:
        warnings.warn(
            "No negative samples in y_true, false positive value should be meaningless",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        fpr = np.full(fps.shape, np.nan)
    else:
        fpr = fps / fps[-1]
    if tps[-1] <= 0:
        warnings.warn(
            "No positive samples in y_true, true positive value should be meaningless",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        tpr = np.full(tps.shape, np.nan)
    else:
        tpr = tps / tps[-1]
    return fpr, tpr, thresholds


def precision_recall_curve(
    y_true: Any,
    y_score: Any,
    *,
    pos_label: Any = None,
    sample_weight: Any = None,
    drop_intermediate: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall pairs for each threshold (sklearn's)."""
    pos, scores, w = _binary_problem(y_true, y_score, sample_weight, pos_label)
    fps, tps, thresholds = _curve(pos, scores, w)
    if drop_intermediate and fps.shape[0] > 2:
        optimal = np.flatnonzero(
            np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True]
        )
        fps, tps, thresholds = fps[optimal], tps[optimal], thresholds[optimal]
    ps = tps + fps
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(ps != 0, tps / ps, 0.0)
    if tps[-1] == 0:
        warnings.warn(
            "No positive class found in y_true, recall is set to one for all "
            "thresholds.",
            stacklevel=2,
        )
        recall = np.full(tps.shape, 1.0)
    else:
        recall = tps / tps[-1]
    original = np.asarray(y_score)
    if original.dtype.kind in "iuf":
        thresholds = thresholds.astype(original.dtype)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def _binary_roc_auc(
    pos: np.ndarray, scores: np.ndarray, w: np.ndarray | None, max_fpr: Any = None
) -> float:
    """sklearn's _binary_roc_auc_score on a 0/1 column."""
    if pos.all() or not pos.any():
        _warn_one_class()
        return np.nan
    if max_fpr is None or max_fpr == 1:
        auc, _, _ = _kernel().binary_auc(pos, scores, w, _config.n_threads())
        if not np.isnan(auc):
            return float(auc)
        # Both classes are present but one has zero total weight: sklearn's curve
        # and auc then warn and fail; take the same road for the same outcome.
        fpr, tpr, _ = _roc(pos, scores, w)
        return float(auc_trapezoid(fpr, tpr))
    fpr, tpr, _ = _roc(pos, scores, w)
    stop = np.searchsorted(fpr, max_fpr, "right")
    x_interp = [fpr[stop - 1], fpr[stop]]
    y_interp = [tpr[stop - 1], tpr[stop]]
    tpr = np.append(tpr[:stop], np.interp(max_fpr, x_interp, y_interp))
    fpr = np.append(fpr[:stop], max_fpr)
    partial_auc = auc_trapezoid(fpr, tpr)
    # McClish correction: 0.5 for a non-discriminant model, 1 for a perfect one.
    min_area = 0.5 * max_fpr**2
    max_area = max_fpr
    return float(0.5 * (1 + (partial_auc - min_area) / (max_area - min_area)))


def _warn_one_class() -> None:
    warnings.warn(
        "Only one class is present in y_true. ROC AUC score is not defined in that "
        "case.",
        UndefinedMetricWarning,
        stacklevel=4,
    )


def _average_binary_score(
    metric: BinaryMetric,
    y_true: np.ndarray,
    y_score: np.ndarray,
    average: Any,
    sample_weight: np.ndarray | None,
) -> Any:
    """sklearn's _average_binary_score over the columns of indicator targets."""
    if average not in _AVERAGES:
        raise ValueError(f"average has to be one of {_AVERAGES}")
    check_consistent_length(y_true, y_score, sample_weight)
    y_true = check_array(y_true)
    y_score = check_array(y_score)
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"y_true and y_score have different shapes {y_true.shape} and "
            f"{y_score.shape}; y_score needs one column per label."
        )
    score_weight = sample_weight
    average_weight = None
    axis = 1
    if average == "micro":
        if score_weight is not None:
            score_weight = np.repeat(score_weight, y_true.shape[1])
        y_true, y_score = y_true.ravel()[:, None], y_score.ravel()[:, None]
    elif average == "weighted":
        if score_weight is not None:
            average_weight = np.sum(y_true * score_weight.reshape(-1, 1), axis=0)
        else:
            average_weight = np.sum(y_true, axis=0)
        if np.isclose(np.sum(average_weight), 0):
            return 0
    elif average == "samples":
        average_weight = score_weight
        score_weight = None
        axis = 0
    n = y_score.shape[axis]
    score = np.zeros(n)
    for c in range(n):
        column_true = y_true[:, c] if axis == 1 else y_true[c]
        column_score = y_score[:, c] if axis == 1 else y_score[c]
        score[c] = metric(
            _positive_mask(column_true, 1), as_kernel_float(column_score), score_weight
        )
    if average is None:
        return score
    if average_weight is not None:
        score[average_weight == 0] = 0
    if average_weight is not None and np.sum(average_weight) == 0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    return float(np.average(score, weights=average_weight))


def roc_auc_score(
    y_true: Any,
    y_score: Any,
    *,
    average: str | None = "macro",
    sample_weight: Any = None,
    max_fpr: float | None = None,
    multi_class: str = "raise",
    labels: Any = None,
) -> Any:
    """Area under the ROC curve (sklearn.metrics.roc_auc_score), every mode."""
    if average not in ("micro", "macro", "samples", "weighted", None):
        raise InvalidParameterError(
            "The 'average' parameter of roc_auc_score must be a str among "
            "{'macro', 'micro', 'samples', 'weighted'} or None. "
            f"Got {average!r} instead."
        )
    if max_fpr is not None and (
        not isinstance(max_fpr, Real)
        or isinstance(max_fpr, bool)
        or not 0 < max_fpr <= 1
    ):
        raise InvalidParameterError(
            "The 'max_fpr' parameter of roc_auc_score must be a float in the range "
            f"(0.0, 1.0] or None. Got {max_fpr!r} instead."
        )
    if multi_class not in ("raise", "ovr", "ovo"):
        raise InvalidParameterError(
            "The 'multi_class' parameter of roc_auc_score must be a str among "
            f"{{'ovo', 'ovr', 'raise'}}. Got {multi_class!r} instead."
        )
    y_type, classes, y = target_labels(y_true, "y_true")
    y_score = check_array(y_score, ensure_2d=False, input_name="y_score")
    if sample_weight is not None:
        sample_weight = column_or_1d(sample_weight)
    if y_type == "multiclass" or (
        y_type == "binary" and y_score.ndim == 2 and y_score.shape[1] > 2
    ):
        if max_fpr is not None and max_fpr != 1.0:
            raise ValueError(
                "Partial AUC computation not available in multiclass setting, "
                "'max_fpr' must be set to `None`, received "
                f"`max_fpr={max_fpr}` instead"
            )
        if multi_class == "raise":
            raise ValueError("multi_class must be in ('ovo', 'ovr')")
        return _multiclass_roc_auc(
            y, y_score, labels, multi_class, average, sample_weight
        )
    w = None
    if y_type == "binary":
        check_consistent_length(y, y_score, sample_weight)
        scores = as_kernel_float(column_or_1d(y_score))
        w = check_sample_weight(sample_weight, scores.shape[0])
        pos = (
            _positive_mask(y, classes[-1])
            if len(classes) == 2
            else np.zeros(len(y), np.uint8)
        )
        return _binary_roc_auc(pos, scores, w, max_fpr)
    if y_type != "multilabel-indicator":
        raise ValueError(f"{y_type} format is not supported")
    if sample_weight is not None:
        w = check_sample_weight(sample_weight, y_score.shape[0])
    return _average_binary_score(
        lambda p, s, sw: _binary_roc_auc(p, s, sw, max_fpr), y, y_score, average, w
    )


def _multiclass_roc_auc(
    y_true: np.ndarray,
    y_score: np.ndarray,
    labels: Any,
    multi_class: str,
    average: Any,
    sample_weight: Any,
) -> Any:
    """sklearn's _multiclass_roc_auc_score: one-vs-rest or Hand & Till one-vs-one."""
    if not y_score.ndim == 2:
        raise ValueError(
            "`y_score` needs to be of shape `(n_samples, n_classes)`, since "
            f"`y_true` contains multiple classes. Got `y_score.shape={y_score.shape}`."
        )
    if not np.allclose(1, y_score.sum(axis=1)):
        raise ValueError(
            "Target scores need to be probabilities for multiclass roc_auc, i.e. they "
            "should sum up to 1.0 over classes"
        )
    average_options: tuple[Any, ...] = ("macro", "weighted", None)
    if multi_class == "ovr":
        average_options = ("micro",) + average_options
    if average not in average_options:
        raise ValueError(
            f"average must be one of {average_options} for multiclass problems"
        )
    if average is None and multi_class == "ovo":
        raise NotImplementedError(
            "average=None is not implemented for multi_class='ovo'."
        )
    if labels is not None:
        labels = column_or_1d(labels)
        classes = np.unique(labels)
        if len(classes) != len(labels):
            raise ValueError("Parameter 'labels' must be unique")
        if not np.array_equal(classes, labels):
            raise ValueError("Parameter 'labels' must be ordered")
        if len(classes) != y_score.shape[1]:
            raise ValueError(
                f"Number of given labels, {len(classes)}, not equal to the number of "
                f"columns in 'y_score', {y_score.shape[1]}"
            )
        if len(np.setdiff1d(y_true, classes)):
            raise ValueError("'y_true' contains labels not in parameter 'labels'")
    else:
        classes = np.unique(y_true)
        if len(classes) != y_score.shape[1]:
            raise ValueError(
                "Number of classes in y_true not equal to the number of columns in "
                "'y_score'"
            )
    check_consistent_length(y_true, y_score, sample_weight)
    if multi_class == "ovo":
        if sample_weight is not None:
            raise ValueError(
                "sample_weight is not supported for multiclass one-vs-one ROC AUC, "
                "'sample_weight' must be None in this case."
            )
        return _ovo_auc(y_true, y_score, classes, average)
    w = check_sample_weight(sample_weight, y_score.shape[0])
    y_true_multilabel = label_binarize(y_true, classes=classes)
    return _average_binary_score(
        lambda p, s, sw: _binary_roc_auc(p, s, sw),
        y_true_multilabel,
        y_score,
        average,
        w,
    )


def _ovo_auc(
    y_true: np.ndarray, y_score: np.ndarray, classes: np.ndarray, average: Any
) -> float:
    """Hand & Till: the mean over class pairs of the two one-vs-one AUCs."""
    codes = np.searchsorted(classes, y_true)
    present = np.unique(codes)
    pair_scores, prevalence = [], []
    for a, b in combinations(present, 2):
        a_mask, b_mask = codes == a, codes == b
        ab_mask = a_mask | b_mask
        prevalence.append(np.average(ab_mask))
        a_auc = _binary_roc_auc(
            _positive_mask(a_mask[ab_mask], True),
            as_kernel_float(y_score[ab_mask, a]),
            None,
        )
        b_auc = _binary_roc_auc(
            _positive_mask(b_mask[ab_mask], True),
            as_kernel_float(y_score[ab_mask, b]),
            None,
        )
        pair_scores.append((a_auc + b_auc) / 2)
    weights = prevalence if average == "weighted" else None
    return float(np.average(pair_scores, weights=weights))


def _binary_average_precision(
    pos: np.ndarray, scores: np.ndarray, w: np.ndarray | None
) -> float:
    ap, pos_weight = _kernel().binary_average_precision(
        pos, scores, w, _config.n_threads()
    )
    if pos_weight == 0:
        warnings.warn(
            "No positive class found in y_true, recall is set to one for all "
            "thresholds.",
            stacklevel=4,
        )
        return 0.0
    return float(max(0.0, ap))


def average_precision_score(
    y_true: Any,
    y_score: Any,
    *,
    average: str | None = "macro",
    pos_label: Any = 1,
    sample_weight: Any = None,
) -> Any:
    """Average precision from scores (sklearn's step sum, no interpolation)."""
    if average not in ("micro", "macro", "samples", "weighted", None):
        raise InvalidParameterError(
            "The 'average' parameter of average_precision_score must be a str among "
            "{'macro', 'micro', 'samples', 'weighted'} or None. "
            f"Got {average!r} instead."
        )
    if sample_weight is not None:
        sample_weight = column_or_1d(sample_weight)
    y_type, present, y = target_labels(y_true, "y_true")
    if y_type == "binary":
        if present.shape[0] == 2 and pos_label not in present:
            raise ValueError(
                f"pos_label={pos_label} is not a valid label. It should be one of "
                f"{present}"
            )
        pos_label = check_pos_label(pos_label, present)
        check_consistent_length(y, y_score, sample_weight)
        scores = _scores_1d(y_score)
        w = check_sample_weight(sample_weight, scores.shape[0])
        return _binary_average_precision(_positive_mask(y, pos_label), scores, w)
    if y_type == "multilabel-indicator" and pos_label != 1:
        raise ValueError(
            "Parameter pos_label is fixed to 1 for multilabel-indicator y_true. "
            "Do not set pos_label or set pos_label to 1."
        )
    if y_type == "multiclass":
        if pos_label != 1:
            raise ValueError(
                "Parameter pos_label is fixed to 1 for multiclass y_true. "
                "Do not set pos_label or set pos_label to 1."
            )
        y = label_binarize(y, classes=present)
        if not np.shape(y_score) == y.shape:
            raise ValueError(
                "`y_score` needs to be of shape `(n_samples, n_classes)`, since "
                "`y_true` contains multiple classes. Got "
                f"`y_score.shape={np.shape(y_score)}`."
            )
    elif y_type != "multilabel-indicator":
        raise ValueError(f"{y_type} format is not supported")
    w = None if sample_weight is None else check_sample_weight(sample_weight, len(y))
    return _average_binary_score(
        _binary_average_precision, y, np.asarray(y_score), average, w
    )
