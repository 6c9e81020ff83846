"""Metrics of predicted probabilities: log loss and the Brier score."""

from __future__ import annotations

import warnings
from math import sqrt
from typing import Any

import numpy as np
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from gradkit import _config
from gradkit._validation import (
    InvalidParameterError,
    as_kernel_float,
    check_finite,
    check_pos_label,
    check_sample_weight,
    target_labels,
)


def _check_probability_range(y_prob: np.ndarray, lower_word: str) -> None:
    if y_prob.size == 0:
        return
    high, low = y_prob.max(), y_prob.min()
    if high > 1:
        raise ValueError(f"y_prob contains values greater than 1: {high}")
    if low < 0:
        raise ValueError(f"y_prob contains values {lower_word} than 0: {low}")


def sorted_labels(labels: Any) -> np.ndarray:
    """The classes of y_prob's columns when labels= is given: the labels sorted,
    with sklearn's warning when they were not."""
    classes = np.unique(np.asarray(labels))
    if not np.all(classes == np.asarray(labels)):
        warnings.warn(
            f"Labels passed were {labels}. But this function assumes labels are "
            "ordered lexicographically. Pass the ordered "
            f"labels={classes.tolist()} and ensure that the columns of y_prob "
            "correspond to this ordering.",
            UserWarning,
            stacklevel=4,
        )
    return classes


def check_classes(present: np.ndarray, classes: np.ndarray, labels: Any) -> None:
    """sklearn's checks of the classes of y_prob's columns against the labels
    present in y_true: all of them covered (when labels= is given), two at least."""
    if labels is not None:
        missing = np.setdiff1d(present, classes)
        if len(missing):
            raise ValueError(
                f"y_true contains values {set(missing.tolist())} not belonging to the "
                f"passed labels {labels}."
            )
    if classes.shape[0] == 1:
        if labels is None:
            raise ValueError(
                f"y_true contains only one label ({classes[0]}). Please provide the "
                "list of all expected class labels explicitly through the labels "
                "argument."
            )
        raise ValueError(
            f"The labels array needs to contain at least two labels, got {classes}."
        )


def check_columns(
    rows_off_one: bool, n_columns: int, classes: np.ndarray, labels: Any
) -> None:
    """sklearn's checks of y_prob's columns: rows summing to 1 (a warning when some
    row does not) and one column per class (an error). A 1-D y_prob counts as the
    two columns [1 - p, p]."""
    if rows_off_one:
        warnings.warn(
            "The y_prob values do not sum to one. Make sure to pass probabilities.",
            UserWarning,
            stacklevel=4,
        )
    if classes.shape[0] != n_columns:
        if labels is None:
            raise ValueError(
                "y_true and y_prob contain different number of classes: "
                f"{classes.shape[0]} vs {n_columns}. Please provide the true labels "
                "explicitly through the labels argument. Classes found in y_true: "
                f"{classes}"
            )
        raise ValueError(
            "The number of classes in labels is different from that in y_prob. "
            f"Classes found in labels: {classes}"
        )


def _classes_and_index(y_true: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """LabelBinarizer classes for log_loss / brier, and each row's class index."""
    if labels is not None:
        classes = sorted_labels(labels)
        _, present, y = target_labels(y_true, "y_true")
    else:
        y_type, present, y = target_labels(y_true, "y_true")
        if y_type not in ("binary", "multiclass"):
            raise ValueError(f"{y_type} format is not supported for probabilities")
        classes = present
    check_classes(present, classes, labels)
    if y.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes))):
        index = np.ascontiguousarray(y, dtype=np.int64)  # already 0..K-1
    else:
        index = np.searchsorted(classes, y).astype(np.int64)
    return classes, index


def _check_prob_columns(y_prob: np.ndarray, classes: np.ndarray, labels: Any) -> None:
    """check_columns of a y_prob array."""
    rows_off_one = False
    if y_prob.ndim == 2:
        eps = np.finfo(y_prob.dtype).eps
        rows_off_one = not np.all(np.isclose(y_prob.sum(axis=1), 1, rtol=sqrt(eps)))
    n_columns = 2 if y_prob.ndim == 1 else y_prob.shape[1]
    check_columns(rows_off_one, n_columns, classes, labels)


def renamed_y_proba(y_proba: Any, y_pred: Any) -> Any:
    """log_loss's probabilities: y_proba, or the deprecated y_pred with sklearn's
    FutureWarning (pointing at the caller of log_loss), never both."""
    if isinstance(y_pred, str) and y_pred == "deprecated":
        return y_proba
    if y_proba is not None:
        raise ValueError(
            "Cannot use both `y_pred` and `y_proba`. `y_pred` is deprecated, use "
            "`y_proba` instead."
        )
    warnings.warn(
        "`y_pred` was renamed to `y_proba` in version 1.9 and will be removed in "
        "1.11. Use `y_proba` instead.",
        FutureWarning,
        stacklevel=3,
    )
    return y_pred


def log_loss(
    y_true: Any,
    y_proba: Any = None,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
    y_pred: Any = "deprecated",
) -> float:
    """Log loss, aka logistic or cross-entropy loss (sklearn.metrics.log_loss).

    Probabilities are clipped to [eps, 1 - eps] with eps the machine epsilon of
    their dtype, without renormalisation, as sklearn does.
    """
    y_proba = renamed_y_proba(y_proba, y_pred)
    if not isinstance(normalize, (bool, np.bool_)):
        raise InvalidParameterError(
            "The 'normalize' parameter of log_loss must be an instance of 'bool' or an "
            f"instance of 'numpy.bool'. Got {normalize!r} instead."
        )
    y_proba = check_array(
        y_proba, ensure_2d=False, dtype=[np.float64, np.float32], input_name="y_proba"
    )
    _check_probability_range(y_proba, "lower")
    check_consistent_length(y_proba, y_true, sample_weight)
    w = check_sample_weight(sample_weight, y_proba.shape[0])
    if np.ndim(y_true) == 2 and np.shape(y_true)[1] > 1:
        return _multilabel_log_loss(np.asarray(y_true), y_proba, w, normalize)
    classes, index = _classes_and_index(y_true, labels)
    prob = as_kernel_float(y_proba)
    if prob.ndim == 2 and prob.shape[1] == 1:
        prob = prob[:, 0]
    _check_prob_columns(prob, classes, labels)
    eps = float(np.finfo(prob.dtype).eps)
    loss_sum, weight_sum = _config.kernels("metrics").log_loss_sum(
        index, prob, w, eps, _config.n_threads()
    )
    if not normalize:
        return float(loss_sum)
    if weight_sum == 0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    return float(loss_sum / weight_sum)


def _multilabel_log_loss(
    y_true: np.ndarray, y_proba: np.ndarray, w: np.ndarray | None, normalize: bool
) -> float:
    """Indicator targets (several 1s a row): sklearn's formula on the dense arrays."""
    if y_true.shape != y_proba.shape:
        raise ValueError(
            f"y_true and y_prob contain different number of classes: "
            f"{y_true.shape[1]} vs {np.shape(y_proba)[1]}."
        )
    eps = np.finfo(y_proba.dtype).eps
    prob = np.clip(y_proba, eps, 1 - eps)
    loss = -np.sum(np.where(y_true != 0, y_true * np.log(prob), 0.0), axis=1)
    if normalize:
        return float(np.average(loss, weights=w))
    return float(loss.sum() if w is None else np.dot(loss, w))


def brier_score_loss(
    y_true: Any,
    y_proba: Any,
    *,
    sample_weight: Any = None,
    pos_label: Any = None,
    labels: Any = None,
    scale_by_half: Any = "auto",
) -> float:
    """Brier score: mean squared distance of probabilities to the one-hot truth."""
    if not (isinstance(scale_by_half, (bool, np.bool_)) or scale_by_half == "auto"):
        raise InvalidParameterError(
            "The 'scale_by_half' parameter of brier_score_loss must be an instance of "
            f"'bool' or a str among {{'auto'}}. Got {scale_by_half!r} instead."
        )
    y_proba = check_array(
        y_proba, ensure_2d=False, dtype=[np.float64, np.float32], input_name="y_proba"
    )
    binary = y_proba.ndim == 1 or y_proba.shape[1] == 1
    if binary:
        truth, prob, w = _binary_brier_inputs(y_true, y_proba, sample_weight, pos_label)
        n_columns = 2
    else:
        _check_probability_range(y_proba, "lower")
        check_consistent_length(y_proba, y_true, sample_weight)
        w = check_sample_weight(sample_weight, y_proba.shape[0])
        classes, index = _classes_and_index(y_true, labels)
        _check_prob_columns(y_proba, classes, labels)
        n_columns = y_proba.shape[1]
        truth = np.zeros(y_proba.shape, dtype=np.float64)
        truth[np.arange(len(index)), index] = 1.0
        prob = np.ascontiguousarray(y_proba, dtype=np.float64)
    if w is not None and w.sum() == 0:
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    sum_w, sse, *_ = _config.kernels("metrics").regression_stats(
        truth, prob, w, _config.n_threads()
    )
    # Two columns [1 - p, p] for a binary problem: both contribute (y - p)^2.
    score = float(np.sum(sse) / sum_w) * (2.0 if binary else 1.0)
    if scale_by_half == "auto":
        scale_by_half = n_columns < 3
    return score * 0.5 if scale_by_half else score


def _binary_brier_inputs(
    y_true: Any, y_proba: np.ndarray, sample_weight: Any, pos_label: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """sklearn's _validate_binary_probabilistic_prediction: (truth, prob, w)."""
    y_true = column_or_1d(y_true)
    y_prob = column_or_1d(y_proba)
    if y_true.dtype.kind == "f":
        check_finite(as_kernel_float(y_true), "y_true")
    check_consistent_length(y_prob, y_true, sample_weight)
    w = check_sample_weight(sample_weight, y_prob.shape[0])
    y_type, classes, y = target_labels(y_true, "y_true")
    if y_type != "binary":
        raise ValueError(
            f"The type of the target inferred from y_true is {y_type} but should be "
            "binary according to the shape of y_prob."
        )
    _check_probability_range(y_prob, "less")
    try:
        pos_label = check_pos_label(pos_label, classes)
    except ValueError:
        if classes.dtype.kind in "OUS":
            raise
        pos_label = classes[-1]  # sklearn's Brier takes the greater label then
    truth = np.asarray(y == pos_label, dtype=np.float64).reshape(-1, 1)
    prob = np.ascontiguousarray(y_prob, dtype=np.float64).reshape(-1, 1)
    return truth, prob, w
