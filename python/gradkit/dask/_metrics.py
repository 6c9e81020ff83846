"""gradkit.metrics on dask arrays and dask dataframe columns.

Each block of the inputs is reduced to a mergeable state of
gradkit.metrics.streaming on the workers; the states are merged in a tree of fan-in
``split_every`` and the metric is computed once, on the client, from the final state.
No per-block metric values are ever averaged: averaging per-block means (as
dask_ml.metrics.log_loss does) weighs a block of 1 row like a block of 1000, and is
wrong whenever blocks differ in size or weight. The exact ranking metrics
(roc_auc_score, average_precision_score) are the exception to the tree: a merged
state would hold every distinct score, so they run as a sample sort by score range
(gradkit.dask._ranking).

Inputs may be 1-D dask arrays, dask Series (converted with
``to_dask_array(lengths=True)``), or anything numpy.asarray takes; the y_proba of
log_loss and brier_score_loss may also be 2-D (or a dask DataFrame), one column per
class. Blocks of unknown size (from a boolean mask, say) are measured first with
``compute_chunk_sizes()``; y_pred / y_score / y_proba / sample_weight are then
rechunked to the row blocks of y_true, so rows of the different arguments always
meet in the same block.

Every function is computed eagerly and returns what gradkit.metrics returns on the
whole data (a Python float, or an ndarray where gradkit.metrics returns one, e.g.
average=None), equal to ~1e-15 relative: only the order of the sums differs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from gradkit.dask._ranking import ranking_metric
from gradkit.dask._tasks import one_thread_per_task, with_known_chunks
from gradkit.metrics._probabilistic import renamed_y_proba
from gradkit.metrics.streaming import (
    BinnedAUCState,
    ConfusionState,
    ProbabilisticState,
    RegressionState,
)

__all__ = [
    "accuracy_score",
    "average_precision_score",
    "balanced_accuracy_score",
    "binned_roc_auc",
    "brier_score_loss",
    "f1_score",
    "fbeta_score",
    "log_loss",
    "matthews_corrcoef",
    "mean_absolute_error",
    "mean_squared_error",
    "precision_score",
    "r2_score",
    "recall_score",
    "roc_auc_score",
]

_SPLIT_EVERY = 8


# --------------------------------------------------------------------------------
# Inputs: dask arrays with the row blocks of y_true


def _as_dask(x: Any, name: str, columns: bool = False) -> da.Array:
    """x as a 1-D dask array, or with columns=True 2-D with all columns in one
    chunk (a block state needs whole rows: every class's probability)."""
    if hasattr(x, "to_dask_array"):  # dask Series and dask frames
        x = x.to_dask_array(lengths=True)
    elif not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x), chunks=-1)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if columns and x.ndim == 2:
        x = with_known_chunks(x)  # rows measured first: rechunk needs known sizes
        return x.rechunk({1: -1}) if len(x.chunks[1]) > 1 else x
    if x.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one value per sample), got {x.ndim} dimensions; "
            "gradkit.dask metrics take binary or multiclass labels and one output."
        )
    return with_known_chunks(x)


def _aligned(
    *named: tuple[Any, str], columns: str | None = None
) -> list[da.Array | None]:
    """The arrays as 1-D dask arrays (2-D for the one named by columns), all cut
    into the row blocks of the first."""
    arrays = [
        None if x is None else _as_dask(x, name, columns=name == columns)
        for x, name in named
    ]
    first = arrays[0]
    assert first is not None
    out: list[da.Array | None] = [first]
    for (_, name), x in zip(named[1:], arrays[1:], strict=True):
        if x is not None:
            if x.shape[0] != first.shape[0]:
                raise ValueError(
                    f"{named[0][1]} and {name} must have the same length, got "
                    f"{first.shape[0]} and {x.shape[0]} samples."
                )
            if x.chunks[0] != first.chunks[0]:
                x = x.rechunk({0: first.chunks[0]})
        out.append(x)
    return out


# --------------------------------------------------------------------------------
# The reduction: one state per block, merged in a tree


@one_thread_per_task
def _block_state(
    make_state: Callable[[], Any], y: np.ndarray, s: np.ndarray, w: Any
) -> Any:
    state = make_state()
    if len(y):  # blocks from a mask may be empty; the states reject empty chunks
        state.update(y, s, w)
    return state


def _merge_states(*states: Any) -> Any:
    merged = states[0]
    for other in states[1:]:
        merged = merged.merge(other)
    return merged


def _check_split_every(split_every: Any) -> int:
    if split_every is None:
        return _SPLIT_EVERY
    if (
        isinstance(split_every, bool)
        or not isinstance(split_every, (int, np.integer))
        or split_every < 2
    ):
        raise ValueError(
            f"split_every must be an integer >= 2 (the fan-in of the merge tree), "
            f"got {split_every!r}."
        )
    return int(split_every)


def _reduce_state(
    make_state: Callable[[], Any],
    y_true: Any,
    other: Any,
    sample_weight: Any,
    names: tuple[str, str],
    split_every: Any,
    class_columns: bool = False,
) -> Any:
    """The merged state of all blocks, computed (on the active client, if any).
    class_columns: the second argument may be 2-D, one column per class."""
    fan_in = _check_split_every(split_every)
    y, s, w = _aligned(
        (y_true, names[0]),
        (other, names[1]),
        (sample_weight, "sample_weight"),
        columns=names[1] if class_columns else None,
    )
    assert y is not None and s is not None
    columns: list[Sequence[Any]] = [y.to_delayed().ravel(), s.to_delayed().ravel()]
    columns.append([None] * len(columns[0]) if w is None else w.to_delayed().ravel())
    block = dask.delayed(_block_state, pure=True)
    merge = dask.delayed(_merge_states, pure=True)
    level = [block(make_state, *parts) for parts in zip(*columns, strict=True)]
    while len(level) > 1:
        level = [merge(*level[i : i + fan_in]) for i in range(0, len(level), fan_in)]
    (state,) = dask.compute(level[0])
    return state


# --------------------------------------------------------------------------------
# Label metrics (ConfusionState)


def _confusion(
    y_true: Any, y_pred: Any, sample_weight: Any, split_every: Any
) -> ConfusionState:
    state: ConfusionState = _reduce_state(
        ConfusionState, y_true, y_pred, sample_weight, ("y_true", "y_pred"), split_every
    )
    return state


def accuracy_score(
    y_true: Any,
    y_pred: Any,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    split_every: int | None = None,
) -> float:
    """gradkit.metrics.accuracy_score of dask inputs, computed; see the module doc.

    split_every is the fan-in of the tree that merges the per-block states.
    """
    state = _confusion(y_true, y_pred, sample_weight, split_every)
    return float(state.compute("accuracy_score", normalize=normalize))


def balanced_accuracy_score(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    adjusted: bool = False,
    split_every: int | None = None,
) -> float:
    """gradkit.metrics.balanced_accuracy_score of dask inputs, computed."""
    state = _confusion(y_true, y_pred, sample_weight, split_every)
    return float(state.compute("balanced_accuracy_score", adjusted=adjusted))


def matthews_corrcoef(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    split_every: int | None = None,
) -> float:
    """gradkit.metrics.matthews_corrcoef of dask inputs, computed."""
    state = _confusion(y_true, y_pred, sample_weight, split_every)
    return float(state.compute("matthews_corrcoef"))


def _prf_metric(
    metric: str,
    y_true: Any,
    y_pred: Any,
    sample_weight: Any,
    split_every: Any,
    **kwargs: Any,
) -> Any:
    state = _confusion(y_true, y_pred, sample_weight, split_every)
    value = state.compute(metric, **kwargs)
    return float(value) if np.ndim(value) == 0 else value


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
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.fbeta_score of dask inputs, computed (array if average=None)."""
    return _prf_metric(
        "fbeta_score",
        y_true,
        y_pred,
        sample_weight,
        split_every,
        beta=beta,
        labels=labels,
        pos_label=pos_label,
        average=average,
        zero_division=zero_division,
    )


def f1_score(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = "binary",
    sample_weight: Any = None,
    zero_division: Any = "warn",
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.f1_score of dask inputs, computed (ndarray if average=None)."""
    return _prf_metric(
        "f1_score",
        y_true,
        y_pred,
        sample_weight,
        split_every,
        labels=labels,
        pos_label=pos_label,
        average=average,
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
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.precision_score of dask inputs, computed."""
    return _prf_metric(
        "precision_score",
        y_true,
        y_pred,
        sample_weight,
        split_every,
        labels=labels,
        pos_label=pos_label,
        average=average,
        zero_division=zero_division,
    )


def recall_score(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    pos_label: Any = 1,
    average: str | None = "binary",
    sample_weight: Any = None,
    zero_division: Any = "warn",
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.recall_score of dask inputs, computed."""
    return _prf_metric(
        "recall_score",
        y_true,
        y_pred,
        sample_weight,
        split_every,
        labels=labels,
        pos_label=pos_label,
        average=average,
        zero_division=zero_division,
    )


# --------------------------------------------------------------------------------
# Probabilistic losses (ProbabilisticState), binary or multiclass


def log_loss(
    y_true: Any,
    y_proba: Any = None,
    *,
    normalize: bool = True,
    sample_weight: Any = None,
    labels: Any = None,
    y_pred: Any = "deprecated",
    split_every: int | None = None,
) -> float:
    """gradkit.metrics.log_loss of dask inputs, computed.

    y_proba is the probability of the positive class (the greater label), 1-D, or
    2-D with one column per class (the sorted labels, or labels), chunked by rows
    only or rechunked so. The sum of the per-row losses and the sum of the weights
    are reduced separately and divided once: exact for blocks of any size.
    """
    y_proba = renamed_y_proba(y_proba, y_pred)
    state: ProbabilisticState = _reduce_state(
        ProbabilisticState,
        y_true,
        y_proba,
        sample_weight,
        ("y_true", "y_proba"),
        split_every,
        class_columns=True,
    )
    return float(state.log_loss(normalize=normalize, labels=labels))


def brier_score_loss(
    y_true: Any,
    y_proba: Any,
    *,
    sample_weight: Any = None,
    pos_label: Any = None,
    labels: Any = None,
    scale_by_half: Any = "auto",
    split_every: int | None = None,
) -> float:
    """gradkit.metrics.brier_score_loss of dask inputs, computed.

    y_proba is 1-D (binary: pos_label applies) or 2-D, one column per class
    (labels applies), as in log_loss.
    """
    state: ProbabilisticState = _reduce_state(
        ProbabilisticState,
        y_true,
        y_proba,
        sample_weight,
        ("y_true", "y_proba"),
        split_every,
        class_columns=True,
    )
    return float(
        state.brier_score_loss(
            pos_label=pos_label, labels=labels, scale_by_half=scale_by_half
        )
    )


# --------------------------------------------------------------------------------
# Regression (RegressionState), one output


def _regression(
    y_true: Any, y_pred: Any, sample_weight: Any, split_every: Any
) -> RegressionState:
    state: RegressionState = _reduce_state(
        RegressionState,
        y_true,
        y_pred,
        sample_weight,
        ("y_true", "y_pred"),
        split_every,
    )
    return state


def _one_output(value: float, multioutput: Any) -> Any:
    """sklearn's multioutput for a single output: raw_values gives an array."""
    if isinstance(multioutput, str):
        if multioutput == "raw_values":
            return np.array([value])
        if multioutput in ("uniform_average", "variance_weighted"):
            return float(value)
    raise ValueError(
        "gradkit.dask regression metrics take one output: multioutput must be "
        f"'raw_values', 'uniform_average' or 'variance_weighted', got {multioutput!r}."
    )


def mean_squared_error(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    multioutput: Any = "uniform_average",
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.mean_squared_error of one dask output, computed."""
    state = _regression(y_true, y_pred, sample_weight, split_every)
    return _one_output(state.mean_squared_error(), multioutput)


def mean_absolute_error(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    multioutput: Any = "uniform_average",
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.mean_absolute_error of one dask output, computed."""
    state = _regression(y_true, y_pred, sample_weight, split_every)
    return _one_output(state.mean_absolute_error(), multioutput)


def r2_score(
    y_true: Any,
    y_pred: Any,
    *,
    sample_weight: Any = None,
    multioutput: Any = "uniform_average",
    force_finite: bool = True,
    split_every: int | None = None,
) -> Any:
    """gradkit.metrics.r2_score of one dask output, computed.

    The centred sum of squares of y_true is merged with Chan's parallel update, so
    no second pass over the data is needed for its mean.
    """
    state = _regression(y_true, y_pred, sample_weight, split_every)
    return _one_output(state.r2_score(force_finite=force_finite), multioutput)


# --------------------------------------------------------------------------------
# Ranking (RankingState exact, BinnedAUCState approximate), binary


def _exact_ranking(
    metric: str, y_true: Any, y_score: Any, sample_weight: Any, n_ranges: Any,
    **kwargs: Any,
) -> float:  # fmt: skip
    y, s, w = _aligned(
        (y_true, "y_true"), (y_score, "y_score"), (sample_weight, "sample_weight")
    )
    return ranking_metric(metric, y, s, w, n_ranges, kwargs)


def roc_auc_score(
    y_true: Any,
    y_score: Any,
    *,
    average: str | None = "macro",
    sample_weight: Any = None,
    max_fpr: float | None = None,
    multi_class: str = "raise",
    labels: Any = None,
    n_ranges: int | None = None,
) -> float:
    """Binary gradkit.metrics.roc_auc_score of dask inputs, computed and exact.

    Computed by a sample sort of the scores into n_ranges ranges (default: two per
    worker thread), not a merge tree; see gradkit.dask._ranking. Unweighted and
    without max_fpr it equals the in-memory result bit for bit.
    """
    return _exact_ranking(
        "roc_auc_score", y_true, y_score, sample_weight, n_ranges,
        average=average, max_fpr=max_fpr, multi_class=multi_class, labels=labels,
    )  # fmt: skip


def average_precision_score(
    y_true: Any,
    y_score: Any,
    *,
    average: str | None = "macro",
    pos_label: Any = 1,
    sample_weight: Any = None,
    n_ranges: int | None = None,
) -> float:
    """Binary gradkit.metrics.average_precision_score of dask inputs, computed
    exactly by a sample sort into n_ranges score ranges (see roc_auc_score)."""
    return _exact_ranking(
        "average_precision_score", y_true, y_score, sample_weight, n_ranges,
        average=average, pos_label=pos_label,
    )  # fmt: skip


def binned_roc_auc(
    y_true: Any,
    y_score: Any,
    *,
    n_bins: int = 1024,
    score_range: tuple[float, float] = (0.0, 1.0),
    pos_label: Any = 1,
    sample_weight: Any = None,
    split_every: int | None = None,
) -> tuple[float, float]:
    """(approximate binary ROC AUC, bound on its error), computed, in memory n_bins.

    See gradkit.metrics.streaming.BinnedAUCState: |auc - exact AUC| <= bound.
    """
    make_state = functools.partial(
        BinnedAUCState, n_bins=n_bins, score_range=score_range, pos_label=pos_label
    )
    make_state()._check_params()  # fail on the client, before any work is sent
    state: BinnedAUCState = _reduce_state(
        make_state,
        y_true,
        y_score,
        sample_weight,
        ("y_true", "y_score"),
        split_every,
    )
    auc, bound = state.compute()
    return float(auc), float(bound)
