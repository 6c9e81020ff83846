"""Regression metrics: one kernel call gathers every sum they need.

gradkit computes in float64 whatever the input float type (sklearn keeps float32
inputs in float32), so float32 inputs agree with sklearn to float32 precision.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from gradkit import _config
from gradkit._validation import InvalidParameterError, check_sample_weight

_MULTIOUTPUT = ("raw_values", "uniform_average", "variance_weighted")


def _check_multioutput(
    multioutput: Any, n_outputs: int, func: str, allowed: tuple
) -> Any:
    if isinstance(multioutput, str):
        if multioutput not in allowed:
            raise InvalidParameterError(
                f"The 'multioutput' parameter of {func} must be a str among "
                f"{set(allowed)} or an array-like. Got {multioutput!r} instead."
            )
        return multioutput
    if multioutput is None:
        return None
    multioutput = check_array(multioutput, ensure_2d=False)
    if n_outputs == 1:
        raise ValueError("Custom weights are useful only in multi-output cases.")
    if n_outputs != multioutput.shape[0]:
        raise ValueError(
            f"There must be equally many custom weights ({multioutput.shape[0]}) as "
            f"outputs ({n_outputs})."
        )
    return multioutput


def _check_reg_targets(
    y_true: Any,
    y_pred: Any,
    sample_weight: Any,
    multioutput: Any,
    func: str,
    allowed: tuple,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Any]:
    """sklearn's _check_reg_targets: (n, k) float64 arrays, weights, multioutput."""
    check_consistent_length(y_true, y_pred, sample_weight)
    # sklearn converts to its common float dtype (so numeric strings are accepted);
    # gradkit always computes in float64.
    # NaN and inf are looked for after the kernel (see _regression_stats): they
    # make its sums non-finite, so valid input pays no separate pass for them.
    y_true, y_pred = (
        check_array(
            y,
            ensure_2d=False,
            dtype=np.float64,
            ensure_all_finite=False,
            input_name=name,
        )
        for y, name in ((y_true, "y_true"), (y_pred, "y_pred"))
    )
    w = check_sample_weight(sample_weight, y_true.shape[0])
    y_true = y_true.reshape(-1, 1) if y_true.ndim == 1 else y_true
    y_pred = y_pred.reshape(-1, 1) if y_pred.ndim == 1 else y_pred
    if y_true.shape[1] != y_pred.shape[1]:
        raise ValueError(
            "y_true and y_pred have different number of output "
            f"({y_true.shape[1]}!={y_pred.shape[1]})"
        )
    multioutput = _check_multioutput(multioutput, y_true.shape[1], func, allowed)
    return np.ascontiguousarray(y_true), np.ascontiguousarray(y_pred), w, multioutput


def _regression_stats(
    y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray | None
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sum_w, sse, sae, mean_true, ss_tot) per output, from one kernel call."""
    if w is not None and w.sum() == 0:  # only possible with negative weights
        raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    stats = _config.kernels("metrics").regression_stats(
        y_true, y_pred, w, _config.n_threads()
    )
    if not all(np.isfinite(stats[i]).all() for i in (1, 3)):
        # A NaN or inf in the input, or an overflow: sklearn's check tells which.
        for y, name in ((y_true, "y_true"), (y_pred, "y_pred")):
            check_array(y, ensure_2d=False, input_name=name)
    return stats


def _mean_error(
    y_true: Any, y_pred: Any, sample_weight: Any, multioutput: Any, func: str
) -> Any:
    """Weighted mean of the squared or absolute errors, per output then averaged."""
    y_t, y_p, w, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, func, _MULTIOUTPUT[:2]
    )
    sum_w, sse, sae, _, _ = _regression_stats(y_t, y_p, w)
    errors = (sse if func == "mean_squared_error" else sae) / sum_w
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return errors
        multioutput = None
    return float(np.average(errors, weights=multioutput))


def mean_squared_error(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    multioutput: Any = "uniform_average",
) -> Any:
    """Mean squared error regression loss (sklearn.metrics.mean_squared_error)."""
    return _mean_error(y_true, y_pred, sample_weight, multioutput, "mean_squared_error")


def mean_absolute_error(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    multioutput: Any = "uniform_average",
) -> Any:
    """Mean absolute error regression loss (sklearn.metrics.mean_absolute_error)."""
    return _mean_error(
        y_true, y_pred, sample_weight, multioutput, "mean_absolute_error"
    )


def r2_score(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    multioutput: Any = "uniform_average",
    force_finite: bool = True,
) -> Any:
    """R^2, the coefficient of determination (sklearn.metrics.r2_score)."""
    if not isinstance(force_finite, (bool, np.bool_)):
        raise InvalidParameterError(
            "The 'force_finite' parameter of r2_score must be an instance of 'bool' "
            f"or an instance of 'numpy.bool'. Got {force_finite!r} instead."
        )
    if sample_weight is not None:
        sample_weight = column_or_1d(sample_weight)
    y_t, y_p, w, multioutput = _check_reg_targets(
        y_true, y_pred, sample_weight, multioutput, "r2_score", _MULTIOUTPUT + (None,)
    )
    if y_t.shape[0] < 2:
        warnings.warn(
            "R^2 score is not well-defined with less than two samples.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return float("nan")
    _, numerator, _, _, denominator = _regression_stats(y_t, y_p, w)
    nonzero_denominator = denominator != 0
    if not force_finite:
        scores = 1 - (numerator / denominator)  # sklearn warns on 0/0 here too
    else:
        nonzero_numerator = numerator != 0
        scores = np.ones(len(numerator))
        valid = nonzero_denominator & nonzero_numerator
        scores[valid] = 1 - numerator[valid] / denominator[valid]
        scores[nonzero_numerator & ~nonzero_denominator] = 0.0
    weights: Any = multioutput
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return scores
        weights = None
        if multioutput == "variance_weighted" and np.any(nonzero_denominator):
            weights = denominator
    result = np.average(scores, weights=weights)
    return float(result) if np.size(result) == 1 else result
