"""Label metrics: everything here is computed from one joint count of the labels.

check_targets reduces (y_true, y_pred) to a K x K table of counts in one kernel
pass; every metric below is then a few operations on that small table. This is
where the speed comes from: sklearn re-derives the labels (np.unique) several times
per call.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning

from gradkit._validation import (
    InvalidParameterError,
    LabelCounts,
    Multilabel,
    check_bool,
    check_option,
    check_targets,
)

_AVERAGES = (None, "micro", "macro", "weighted", "samples")


def _check_zero_division(zero_division: Any, func: str) -> float:
    """The value a 0/0 takes; raises like sklearn's parameter validation."""
    if isinstance(zero_division, str) and zero_division == "warn":
        return 0.0
    if isinstance(zero_division, (int, float, np.number)) and not isinstance(
        zero_division, bool
    ):
        if zero_division in (0, 1):
            return float(zero_division)
        if np.isnan(zero_division):
            return np.nan
    raise InvalidParameterError(
        f"The 'zero_division' parameter of {func} must be a float among "
        f"{{0.0, 1.0, nan}} or a str among {{'warn'}}. Got {zero_division!r} instead."
    )


def _weighted_total(counts: LabelCounts) -> float:
    return float(counts.table.sum())


def accuracy_score(
    y_true: Any, y_pred: Any, *, normalize: bool = True, sample_weight: Any = None
) -> float:
    """Accuracy classification score (sklearn.metrics.accuracy_score)."""
    check_bool(normalize, "normalize", "accuracy_score")
    targets = check_targets(y_true, y_pred, sample_weight)
    if isinstance(targets, Multilabel):
        score = np.all(targets.y_true == targets.y_pred, axis=1).astype(np.float64)
        w = targets.sample_weight
        if normalize:
            return float(np.average(score, weights=w))
        return float(score.sum() if w is None else np.dot(score, w))
    correct = float(np.trace(targets.table))
    if not normalize:
        return correct
    total = _weighted_total(targets)
    if total == 0.0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    return correct / total


def _label_indices(targets: LabelCounts, labels: Any) -> np.ndarray:
    """Position of each requested label among the present ones (-1 when absent)."""
    labels = np.asarray(labels)
    present = targets.labels
    pos = np.searchsorted(present, labels)
    pos = np.clip(pos, 0, max(len(present) - 1, 0))
    found = present[pos] == labels if len(present) else np.zeros(len(labels), bool)
    return np.where(found, pos, -1)


def _last_occurrence_only(labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A label listed twice counts at its last position only (sklearn's label dict)."""
    _, last_in_reversed = np.unique(labels[::-1], return_index=True)
    keep = np.zeros(len(labels), bool)
    keep[len(labels) - 1 - last_in_reversed] = True
    return np.where(keep, idx, -1)


def _restrict(table: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """table[idx][:, idx] with zero rows and columns where idx == -1."""
    k = len(idx)
    out = np.zeros((k, k), dtype=table.dtype)
    ok = np.flatnonzero(idx >= 0)
    out[np.ix_(ok, ok)] = table[np.ix_(idx[ok], idx[ok])]
    return out


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    sample_weight: Any = None,
    normalize: str | None = None,
) -> np.ndarray:
    """Confusion matrix, rows true labels and columns predicted (sklearn's)."""
    check_option(
        normalize, ("true", "pred", "all", None), "normalize", "confusion_matrix"
    )
    targets = check_targets(y_true, y_pred, sample_weight)
    if not isinstance(targets, LabelCounts):
        raise ValueError(f"{targets.y_type} is not supported")
    if targets.weighted is None:
        table = targets.counts
    elif targets.integer_weights:
        table = targets.weighted.astype(np.int64)
    else:
        table = targets.weighted
    if labels is None:
        cm = table.copy()
    else:
        labels = np.asarray(labels)
        if labels.size == 0:
            raise ValueError("'labels' should contain at least one label.")
        idx = _label_indices(targets, labels)
        true_present = np.asarray(targets.counts.any(axis=1))
        if not np.any(true_present[idx[idx >= 0]]):
            raise ValueError("At least one label specified must be in y_true")
        cm = _restrict(table, _last_occurrence_only(labels, idx))
    with np.errstate(all="ignore"):
        if normalize == "true":
            cm = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cm = cm / cm.sum(axis=0, keepdims=True)
        elif normalize == "all":
            cm = cm / cm.sum()
        cm = np.nan_to_num(cm)
    _warn_if_single_label(cm)
    return cm


def _warn_if_single_label(cm: np.ndarray) -> None:
    if cm.shape == (1, 1):
        warnings.warn(
            "A single label was found in 'y_true' and 'y_pred'. For the confusion "
            "matrix to have the correct shape, use the 'labels' parameter to pass "
            "all known labels.",
            UserWarning,
            stacklevel=3,
        )


def matthews_corrcoef(y_true: Any, y_pred: Any, *, sample_weight: Any = None) -> float:
    """Matthews correlation coefficient (sklearn.metrics.matthews_corrcoef)."""
    targets = check_targets(y_true, y_pred, sample_weight)
    if not isinstance(targets, LabelCounts):
        raise ValueError(f"{targets.y_type} is not supported")
    cm = targets.table
    _warn_if_single_label(cm)
    t_sum = cm.sum(axis=1, dtype=np.float64)
    p_sum = cm.sum(axis=0, dtype=np.float64)
    n_correct = np.trace(cm, dtype=np.float64)
    n_samples = p_sum.sum()
    cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
    cov_ypyp = n_samples**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n_samples**2 - np.dot(t_sum, t_sum)
    cov_ypyp_ytyt = cov_ypyp * cov_ytyt
    if cov_ypyp_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ypyp_ytyt))


def balanced_accuracy_score(
    y_true: Any, y_pred: Any, *, sample_weight: Any = None, adjusted: bool = False
) -> float:
    """Balanced accuracy: the mean recall over classes (sklearn's)."""
    check_bool(adjusted, "adjusted", "balanced_accuracy_score")
    targets = check_targets(y_true, y_pred, sample_weight)
    if not isinstance(targets, LabelCounts):
        raise ValueError(f"{targets.y_type} is not supported")
    cm = targets.table
    _warn_if_single_label(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.diag(cm) / cm.sum(axis=1)
    if np.any(np.isnan(per_class)):
        warnings.warn("y_pred contains classes not in y_true", stacklevel=2)
        per_class = per_class[~np.isnan(per_class)]
    score = np.mean(per_class)
    if adjusted:
        n_classes = len(per_class)
        chance = 1 / n_classes
        score -= chance
        score /= 1 - chance
    return float(score)


def _warn_prf(average: Any, modifier: str, msg_start: str, result_size: int) -> None:
    axis0, axis1 = "sample", "label"
    if average == "samples":
        axis0, axis1 = axis1, axis0
    msg = (
        f"{msg_start} ill-defined and being set to 0.0 {{0}} no {modifier} {axis0}s."
        " Use `zero_division` parameter to control this behavior."
    )
    if result_size == 1:
        msg = msg.format("due to")
    else:
        msg = msg.format(f"in {axis1}s with")
    warnings.warn(msg, UndefinedMetricWarning, stacklevel=4)


def _prf_divide(
    numerator: np.ndarray,
    denominator: np.ndarray,
    metric: str,
    modifier: str,
    average: Any,
    warn_for: Any,
    zero_division: Any,
    zero_value: float,
) -> np.ndarray:
    mask = denominator == 0
    denominator = np.asarray(denominator, dtype=np.float64).copy()
    denominator[mask] = 1
    result = np.asarray(numerator, dtype=np.float64) / denominator
    if not np.any(mask):
        return result
    result[mask] = zero_value
    if zero_division == "warn" and metric in warn_for:
        _warn_prf(average, modifier, f"{metric.capitalize()} is", result.shape[0])
    return result


def _nanaverage(a: np.ndarray, weights: np.ndarray | None = None) -> float:
    """sklearn's _nanaverage: the (weighted) mean of the non-nan entries."""
    if a.shape[0] == 0:
        return np.nan
    mask = np.isnan(a)
    if mask.all():
        return np.nan
    if weights is None:
        return float(np.mean(a[~mask]))
    a, weights = a[~mask], np.asarray(weights)[~mask]
    if np.sum(weights) == 0:  # sklearn falls back to the plain mean
        return float(np.mean(a))
    return float(np.average(a, weights=weights))


def _multilabel_sums(
    targets: Multilabel, labels: Any, samplewise: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, pred and true sums per label (or per sample) of indicator targets."""
    present = targets.labels
    y_true, y_pred = targets.y_true, targets.y_pred
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != present.shape or np.any(labels != present):
            if np.max(labels) > np.max(present):
                raise ValueError(
                    "All labels must be in [0, n labels) for multilabel targets. "
                    f"Got {np.max(labels)} > {np.max(present)}"
                )
            if np.min(labels) < 0:
                raise ValueError(
                    "All labels must be in [0, n labels) for multilabel targets. "
                    f"Got {np.min(labels)} < 0"
                )
        y_true = y_true[:, labels]
        y_pred = y_pred[:, labels]
    axis = 1 if samplewise else 0
    w = targets.sample_weight

    def count(a: np.ndarray) -> np.ndarray:
        nonzero = (a != 0).astype(np.float64 if w is not None else np.int64)
        if w is None:
            return nonzero.sum(axis=axis)
        return nonzero.T @ w if axis == 0 else nonzero.sum(axis=1) * w

    return count(y_true * y_pred), count(y_pred), count(y_true)


def _label_sums(
    targets: LabelCounts, labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, pred and true sums per requested label from the joint table."""
    table = targets.table
    tp, pred, true = np.diag(table), table.sum(axis=0), table.sum(axis=1)
    if not tp.any() and targets.weighted is None:
        # sklearn's counts come out float64 when no sample has y_true == y_pred.
        tp, pred, true = (a.astype(np.float64) for a in (tp, pred, true))
    if labels is None:
        return tp, pred, true
    idx = _label_indices(targets, labels)
    if np.any(idx < 0):
        tp, pred, true = (np.append(a, 0) for a in (tp, pred, true))  # index -1 -> 0
    return tp[idx], pred[idx], true[idx]


def precision_recall_fscore_support(
    y_true: Any,
    y_pred: Any,
    *,
    beta: float = 1.0,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = None,
    warn_for: Any = ("precision", "recall", "f-score"),
    sample_weight: Any = None,
    zero_division: Any = "warn",
) -> tuple[Any, Any, Any, Any]:
    """Precision, recall, F-beta and support (sklearn's, same averages and warnings)."""
    func = "precision_recall_fscore_support"
    zero_value = _check_zero_division(zero_division, func)
    if (
        not isinstance(beta, (int, float, np.number))
        or isinstance(beta, bool)
        or beta < 0
    ):
        raise InvalidParameterError(
            f"The 'beta' parameter of {func} must be a float in the range "
            f"[0.0, inf]. Got {beta!r} instead."
        )
    check_option(average, _AVERAGES + ("binary",), "average", func)
    targets = check_targets(y_true, y_pred, sample_weight)
    if average == "binary":
        if targets.y_type == "binary":
            if pos_label not in targets.labels and len(targets.labels) >= 2:
                raise ValueError(
                    f"pos_label={pos_label} is not a valid label. It "
                    f"should be one of {targets.labels}"
                )
            labels = [pos_label]
        else:
            options = list(_AVERAGES)
            if targets.y_type == "multiclass":
                options.remove("samples")
            raise ValueError(
                f"Target is {targets.y_type} but average='binary'. Please "
                f"choose another average setting, one of {options!r}."
            )
    elif pos_label not in (None, 1):
        warnings.warn(
            f"Note that pos_label (set to {pos_label!r}) is ignored when "
            f"average != 'binary' (got {average!r}). You may use "
            "labels=[pos_label] to specify a single positive class.",
            UserWarning,
            stacklevel=2,
        )
    samplewise = average == "samples"
    if isinstance(targets, Multilabel):
        tp_sum, pred_sum, true_sum = _multilabel_sums(targets, labels, samplewise)
    else:
        if samplewise:
            raise ValueError(
                "Samplewise metrics are not available outside of multilabel "
                "classification."
            )
        tp_sum, pred_sum, true_sum = _label_sums(targets, labels)
    if average == "micro":
        tp_sum, pred_sum, true_sum = (
            np.array([a.sum()]) for a in (tp_sum, pred_sum, true_sum)
        )

    divide = (average, warn_for, zero_division, zero_value)
    precision = _prf_divide(tp_sum, pred_sum, "precision", "predicted", *divide)
    recall = _prf_divide(tp_sum, true_sum, "recall", "true", *divide)
    if np.isposinf(beta):
        f_score = recall
    elif beta == 0:
        f_score = precision
    else:
        beta2 = beta**2
        denom = beta2 * true_sum.astype(np.float64) + pred_sum.astype(np.float64)
        f_score = _prf_divide(
            (1 + beta2) * tp_sum.astype(np.float64),
            denom,
            "f-score",
            "true nor predicted",
            *divide,
        )
    if average is None:
        return precision, recall, f_score, true_sum
    if average == "weighted":
        weights: np.ndarray | None = true_sum
    elif average == "samples":
        weights = targets.sample_weight if isinstance(targets, Multilabel) else None
    else:
        weights = None
    return (
        _nanaverage(precision, weights),
        _nanaverage(recall, weights),
        _nanaverage(f_score, weights),
        None,
    )


def fbeta_score(
    y_true: Any,
    y_pred: Any,
    *,
    beta: float,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = "binary",
    sample_weight: Any = None,
    zero_division: Any = "warn",
) -> Any:
    """F-beta score (sklearn.metrics.fbeta_score)."""
    check_option(average, _AVERAGES + ("binary",), "average", "fbeta_score")
    _, _, f, _ = precision_recall_fscore_support(
        y_true,
        y_pred,
        beta=beta,
        labels=labels,
        pos_label=pos_label,
        average=average,
        warn_for=("f-score",),
        sample_weight=sample_weight,
        zero_division=zero_division,
    )
    return f


def f1_score(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = "binary",
    sample_weight: Any = None,
    zero_division: Any = "warn",
) -> Any:
    """F1 score (sklearn.metrics.f1_score)."""
    check_option(average, _AVERAGES + ("binary",), "average", "f1_score")
    return fbeta_score(
        y_true,
        y_pred,
        beta=1,
        labels=labels,
        pos_label=pos_label,
        average=average,
        sample_weight=sample_weight,
        zero_division=zero_division,
    )


def precision_score(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = "binary",
    sample_weight: Any = None,
    zero_division: Any = "warn",
) -> Any:
    """Precision tp / (tp + fp) (sklearn.metrics.precision_score)."""
    check_option(average, _AVERAGES + ("binary",), "average", "precision_score")
    p, _, _, _ = precision_recall_fscore_support(
        y_true,
        y_pred,
        labels=labels,
        pos_label=pos_label,
        average=average,
        warn_for=("precision",),
        sample_weight=sample_weight,
        zero_division=zero_division,
    )
    return p


def recall_score(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = "binary",
    sample_weight: Any = None,
    zero_division: Any = "warn",
) -> Any:
    """Recall tp / (tp + fn) (sklearn.metrics.recall_score)."""
    check_option(average, _AVERAGES + ("binary",), "average", "recall_score")
    _, r, _, _ = precision_recall_fscore_support(
        y_true,
        y_pred,
        labels=labels,
        pos_label=pos_label,
        average=average,
        warn_for=("recall",),
        sample_weight=sample_weight,
        zero_division=zero_division,
    )
    return r
