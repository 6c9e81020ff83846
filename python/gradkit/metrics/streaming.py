"""Mergeable metric states: update on chunks, merge in any order, compute once.

Each state keeps the smallest summary from which its metrics follow exactly:

- ConfusionState: the weighted K x K table of (true, predicted) labels.
- ProbabilisticState: per true label, the weighted sums of the log and Brier losses
  the sample would have if that label turns out to be the positive class (1-D
  y_proba), or if it turns out to own each column (2-D y_proba, multiclass).
- RegressionState: weight, mean (kept as two floats, so a mean of 1e6 keeps the
  digits of a variance of 1e-6), centred sum of squares (Chan's parallel update),
  and the weighted squared and absolute error sums.
- RankingState: the distinct scores, sorted, with the count and weight of each
  label at each score.
- BinnedAUCState: positive and negative weight per fixed score bin: constant memory,
  an approximate AUC and a bound on its error.

The exact states compute through gradkit.metrics itself: the summary is turned back
into a small weighted data set (one row per occupied cell), so every option, edge
case, exception and warning of gradkit.metrics holds as on the whole data. Sums are
added in another order than on the whole data: results agree to ~1e-15 relative.

States serialise to plain JSON types with to_dict() / from_dict(); no pickle.
Sample weights must be finite and non-negative; a chunk may have only zero weights.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from gradkit import _config
from gradkit._validation import (
    LabelCounts,
    check_pos_label,
    check_targets,
    count_codes,
    target_labels,
)
from gradkit.metrics import _classification, _ranking
from gradkit.metrics._probabilistic import (
    check_classes,
    check_columns,
    sorted_labels,
)

__all__ = [
    "BinnedAUCState",
    "ConfusionState",
    "ProbabilisticState",
    "RankingState",
    "RegressionState",
    "state_from_dict",
]

_S = TypeVar("_S", bound="_State")


def _chunk_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    """float64 weights of one chunk; unlike the metrics, all zeros are allowed."""
    if sample_weight is None:
        return None
    if np.ndim(sample_weight) == 0:
        sample_weight = np.full(n, sample_weight, dtype=np.float64)
    w = check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
    )
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(
            f"sample_weight must be a 1-D array of length {n} (one weight per sample),"
            f" got shape {w.shape}."
        )
    if n and w.min() < 0:
        raise ValueError(
            f"sample_weight must be non-negative in a streaming state; got {w.min()}."
        )
    return w


def _json_scalar(value: Any) -> Any:
    """A label as a plain Python bool / int / float / str."""
    value = value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, (bool, int, float, str)):
        raise ValueError(
            f"label {value!r} cannot be serialised: labels must be numbers, bools or "
            "strings."
        )
    return value


def _label_array(labels: list) -> np.ndarray:
    return np.asarray(labels) if labels else np.empty(0)


def _union_labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.size and b.size and (a.dtype.kind in "US") != (b.dtype.kind in "US"):
        raise ValueError(
            "Mix of label input types (string and number): every chunk must use the "
            "same kind of labels."
        )
    if not a.size:
        return b.copy()
    if not b.size:
        return a.copy()
    return np.union1d(a, b)


def _positions(union: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.searchsorted(union, labels).astype(np.int64)


# Up to this many labels, one compare per label finds the rows' codes faster than a
# binary search, which mispredicts on shuffled labels (~16 ms per 10**6 rows for 4).
_COMPARE_CODES_MAX = 16


def _weighted_table(
    labels: np.ndarray, y_true: Any, y_pred: Any, w: np.ndarray
) -> np.ndarray:
    """The K x K table of weights of (true, predicted) labels, y already checked."""
    t, p = (np.asarray(y).reshape(-1) for y in (y_true, y_pred))
    k = len(labels)
    if k > _COMPARE_CODES_MAX:
        weighted = count_codes(
            np.searchsorted(labels, t), np.searchsorted(labels, p), k, w
        )[1]
    else:
        # A row's code is how many of the sorted labels after the first it reaches;
        # uint8 codes go to the kernel as they are, without int64 copies.
        codes = [np.zeros(len(y), dtype=np.uint8) for y in (t, p)]
        for label in labels[1:]:
            codes[0] += t >= label
            codes[1] += p >= label
        kernel = _config.kernels("metrics").label_table
        weighted = kernel(*codes, w, 0, k, _config.n_threads())[1]
    assert weighted is not None  # both count_codes and label_table weigh, given w
    return weighted


def _require(d: Any, kind: str, keys: tuple[str, ...]) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"from_dict expects a dict, got {type(d).__name__}.")
    if d.get("kind") != kind:
        raise ValueError(f"from_dict: expected kind {kind!r}, got {d.get('kind')!r}.")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"from_dict: the {kind} state lacks the keys {missing}.")


def _float_array(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"from_dict: {name} must hold numbers.") from None
    if a.size == 0:
        a = a.reshape(shape)
    if a.shape != shape or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(
            f"from_dict: {name} must be finite non-negative numbers of shape {shape}."
        )
    return a


def _count_array(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = _float_array(values, name, shape)
    if not np.all(a == np.round(a)):
        raise ValueError(f"from_dict: {name} must hold whole counts.")
    return a.astype(np.int64)


class _State:
    kind = ""

    def merge(self: _S, other: _S) -> _S:
        """A new state holding the data of both; neither input changes."""
        if type(other) is not type(self):
            raise ValueError(
                f"cannot merge a {type(self).__name__} with a {type(other).__name__}."
            )
        merged = copy.deepcopy(self)
        merged._absorb(other)
        return merged

    def _absorb(self: _S, other: _S) -> None:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


# --------------------------------------------------------------------------------
# Confusion counts


class ConfusionState(_State):
    """Weighted (true, predicted) label counts of binary or multiclass targets.

    compute(metric, **kwargs) evaluates one of gradkit.metrics' label metrics with
    its own keyword arguments (average, pos_label, zero_division, beta, ...).
    """

    kind = "confusion"
    METRICS: dict[str, Callable[..., Any]] = {
        "accuracy_score": _classification.accuracy_score,
        "balanced_accuracy_score": _classification.balanced_accuracy_score,
        "confusion_matrix": _classification.confusion_matrix,
        "f1_score": _classification.f1_score,
        "fbeta_score": _classification.fbeta_score,
        "matthews_corrcoef": _classification.matthews_corrcoef,
        "precision_recall_fscore_support": (
            _classification.precision_recall_fscore_support
        ),
        "precision_score": _classification.precision_score,
        "recall_score": _classification.recall_score,
    }

    def __init__(self) -> None:
        self.labels_: np.ndarray = np.empty(0)
        self.counts_ = np.zeros((0, 0), dtype=np.int64)
        self.weights_ = np.zeros((0, 0), dtype=np.float64)
        self.weighted_ = False

    def update(
        self, y_true: Any, y_pred: Any, sample_weight: Any = None
    ) -> ConfusionState:
        targets = check_targets(y_true, y_pred, None)
        if not isinstance(targets, LabelCounts):
            raise ValueError(
                "ConfusionState takes binary or multiclass targets, not "
                f"{targets.y_type}."
            )
        labels, counts = targets.labels, targets.counts.astype(np.int64)
        w = _chunk_weights(sample_weight, int(counts.sum()))
        # Weighed here, not by check_targets: it validates weights its own way
        # (refusing all zeros, which a chunk may have).
        weights = (
            counts.astype(np.float64)
            if w is None
            else _weighted_table(labels, y_true, y_pred, w)
        )
        self._add(labels, counts, weights, w is not None)
        return self

    def _add(
        self,
        labels: np.ndarray,
        counts: np.ndarray,
        weights: np.ndarray,
        weighted: bool,
    ) -> None:
        union = _union_labels(self.labels_, labels)
        new_counts = np.zeros((len(union), len(union)), dtype=np.int64)
        new_weights = np.zeros((len(union), len(union)), dtype=np.float64)
        for lab, c, w in ((self.labels_, self.counts_, self.weights_),
                          (labels, counts, weights)):  # fmt: skip
            idx = np.ix_(_positions(union, lab), _positions(union, lab))
            new_counts[idx] += c
            new_weights[idx] += w
        self.labels_, self.counts_, self.weights_ = union, new_counts, new_weights
        self.weighted_ = self.weighted_ or weighted

    def _absorb(self, other: ConfusionState) -> None:
        self._add(other.labels_, other.counts_, other.weights_, other.weighted_)

    def compute(self, metric: str = "accuracy_score", **kwargs: Any) -> Any:
        """gradkit.metrics.<metric> of all the data seen, with kwargs passed on."""
        if metric not in self.METRICS:
            raise ValueError(
                f"metric must be one of {sorted(self.METRICS)}, got {metric!r}."
            )
        if not self.counts_.any():
            raise ValueError("ConfusionState has seen no samples; update it first.")
        # One row per occupied cell, weighted by the cell's total: the same table.
        t, p = np.nonzero(self.counts_)
        w = self.weights_[t, p] if self.weighted_ else self.counts_[t, p]
        return self.METRICS[metric](
            self.labels_[t], self.labels_[p], sample_weight=w, **kwargs
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": [_json_scalar(v) for v in self.labels_],
            "counts": self.counts_.tolist(),
            "weights": self.weights_.tolist(),
            "weighted": bool(self.weighted_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfusionState:
        _require(d, cls.kind, ("labels", "counts", "weights", "weighted"))
        state = cls()
        labels = _label_array(list(d["labels"]))
        k = len(labels)
        if k and not np.all(labels[:-1] < labels[1:]):
            raise ValueError("from_dict: labels must be sorted and distinct.")
        state.labels_ = labels
        state.counts_ = _count_array(d["counts"], "counts", (k, k))
        state.weights_ = _float_array(d["weights"], "weights", (k, k))
        state.weighted_ = bool(d["weighted"])
        return state


# --------------------------------------------------------------------------------
# Probabilistic losses: binary (1-D probabilities) or one column per class


# Columns of ProbabilisticState.sums_ for 1-D y_proba, one row per true label.
_W, _LOG_IF_POS, _LOG_IF_NEG, _SQ_IF_POS, _SQ_IF_NEG = range(5)


def _sums_width(n_columns: int) -> int:
    """Columns of sums_: 5 for 1-D y_proba (or none seen yet), else the weight and
    three blocks of n_columns: -log(clip(p)), p^2 and (1 - p)^2."""
    return 5 if n_columns <= 1 else 1 + 3 * n_columns


class ProbabilisticState(_State):
    """Log loss and Brier score, binary or multiclass.

    With 1-D y_proba (the probability of the positive class), which label is
    positive is only known at the end (the greater of the two, or pos_label), so
    each true label keeps the sums of both readings.

    With 2-D y_proba (n, k), one column per class, each true label keeps, for
    every column j, the weighted sums of -log(clip(p_j)), p_j^2 and (1 - p_j)^2
    over its rows. Which column a label owns is only known at the end: column i
    belongs to the i-th of the sorted union of the labels of all chunks, or of
    ``labels`` when given. The Brier sum is then the (1 - p)^2 sum of the own
    column plus the p^2 sums of the others: non-negative terms only, so a tiny
    score keeps its digits (sum_j p_j^2 - 2 p_own + 1 would cancel).

    Differences from gradkit.metrics on the whole data:

    - The checks of one chunk's values raise at update(): a probability outside
      [0, 1] names that chunk's extreme value, not the whole data's.
    - y_true must be 1-D binary or multiclass labels: multilabel (indicator)
      targets and non-integer float labels are refused, even with ``labels=``.
    - Every chunk must have the same kind of y_proba (1-D, or k columns).
    """

    kind = "probabilistic"

    def __init__(self) -> None:
        self.labels_: np.ndarray = np.empty(0)
        self.counts_ = np.zeros(0, dtype=np.int64)
        self.sums_ = np.zeros((0, 5), dtype=np.float64)
        # 0: nothing seen yet, 1: 1-D y_proba, k >= 2: k columns.
        self.n_columns_ = 0
        # Some row of y_proba does not sum to one: the metrics warn at compute().
        self.rows_off_one_ = False

    def update(
        self, y_true: Any, y_proba: Any, sample_weight: Any = None
    ) -> ProbabilisticState:
        prob = check_array(
            y_proba,
            ensure_2d=False,
            dtype=[np.float64, np.float32],
            input_name="y_proba",
        )
        if prob.ndim == 2 and prob.shape[1] == 1:
            prob = prob[:, 0]
        if prob.ndim == 2:
            return self._update_columns(y_true, prob, sample_weight)
        if prob.size and (prob.max() > 1 or prob.min() < 0):
            raise ValueError("y_proba must lie in [0, 1].")
        y_type, labels, y = target_labels(y_true, "y_true")
        if y_type != "binary":
            raise ValueError(f"ProbabilisticState takes binary y_true, got {y_type}.")
        check_consistent_length(y, prob)
        n, k = prob.shape[0], len(labels)
        w = _chunk_weights(sample_weight, n)
        # A single allocation for every temporary: each separate 8 MB array per
        # 10**6 rows costs a fresh round of page faults, more than the arithmetic.
        scratch = np.empty((k + 1, n))
        # Row j: label j's weight on each row, 0 on the other label's rows. A product
        # with it sums a term over that label's rows alone, at BLAS speed, and no
        # label's sum is a difference of two larger ones.
        label_weights, term = scratch[:k], scratch[k]
        if k == 1:
            label_weights[0] = 1.0
            counts = [n]
        else:
            is_last = y == labels[1]  # a compare: no binary search
            label_weights[1] = is_last
            np.subtract(1.0, label_weights[1], out=label_weights[0])
            n_last = int(np.count_nonzero(is_last))
            counts = [n - n_last, n_last]
        sums = np.empty((k, 5))
        if w is None:
            sums[:, _W] = counts
        else:
            label_weights *= w
            sums[:, _W] = label_weights.sum(axis=1)
        # sklearn clips the two columns [1 - p, p] with its dtype's epsilon.
        eps = float(np.finfo(prob.dtype).eps)
        p = np.asarray(prob, dtype=np.float64)
        np.clip(p, eps, 1 - eps, out=term)
        sums[:, _LOG_IF_POS] = -(label_weights @ np.log(term, out=term))
        np.square(p, out=term)
        sums[:, _SQ_IF_NEG] = label_weights @ term
        np.subtract(1.0, p, out=term)
        np.clip(term, eps, 1 - eps, out=term)
        sums[:, _LOG_IF_NEG] = -(label_weights @ np.log(term, out=term))
        np.subtract(1.0, p, out=term)
        sums[:, _SQ_IF_POS] = label_weights @ np.square(term, out=term)
        self._add(labels, np.array(counts, dtype=np.int64), sums, 1, False)
        return self

    def _update_columns(
        self, y_true: Any, prob: np.ndarray, sample_weight: Any
    ) -> ProbabilisticState:
        """One chunk of 2-D y_proba, one column per class of the whole problem."""
        if prob.size:  # gradkit.metrics' messages, with this chunk's extremes
            high, low = prob.max(), prob.min()
            if high > 1:
                raise ValueError(f"y_prob contains values greater than 1: {high}")
            if low < 0:
                raise ValueError(f"y_prob contains values lower than 0: {low}")
        check_consistent_length(prob, y_true)
        n, k = prob.shape
        w = _chunk_weights(sample_weight, n)
        if np.ndim(y_true) == 2 and np.shape(y_true)[1] > 1:
            raise ValueError(
                "ProbabilisticState takes 1-D y_true (one label per sample); "
                "multilabel log loss needs the whole data: use gradkit.metrics."
            )
        y_type, labels, y = target_labels(y_true, "y_true")
        if y_type not in ("binary", "multiclass"):
            raise ValueError(f"{y_type} format is not supported for probabilities")
        eps = float(np.finfo(prob.dtype).eps)
        # sklearn's row check, in the chunk's dtype; it warns once, at compute().
        # np.isclose(sums, 1, rtol) spelt out (its atol is 1e-8): 3x faster.
        off = np.abs(prob.sum(axis=1) - 1) > 1e-8 + math.sqrt(eps)
        rows_off_one = bool(off.any())
        # Rows grouped by label, so that each label's sums are products over its
        # own rows only: O(n k) work, and no sum is a difference of totals.
        codes = np.searchsorted(labels, y)
        if len(labels) <= 1 << 16:
            codes = codes.astype(np.uint16)  # a stable sort of these is a radix sort
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(len(labels) + 1))
        p = np.asarray(prob, dtype=np.float64)[order]
        # sklearn clips every column to [eps, 1 - eps] of y_proba's dtype.
        terms = np.concatenate(
            [-np.log(np.clip(p, eps, 1 - eps)), np.square(p), np.square(1.0 - p)],
            axis=1,
        )
        weights = np.ones(n) if w is None else w[order]
        counts = np.diff(starts).astype(np.int64)
        sums = np.empty((len(labels), _sums_width(k)))
        for i in range(len(labels)):
            rows = slice(starts[i], starts[i + 1])
            sums[i, 0] = counts[i] if w is None else weights[rows].sum()
            sums[i, 1:] = weights[rows] @ terms[rows]
        self._add(labels, counts, sums, k, rows_off_one)
        return self

    def _add(
        self,
        labels: np.ndarray,
        counts: np.ndarray,
        sums: np.ndarray,
        n_columns: int,
        rows_off_one: bool,
    ) -> None:
        if self.n_columns_ and n_columns and self.n_columns_ != n_columns:

            def shape(c: int) -> str:
                return "1-D" if c == 1 else f"{c} columns"

            raise ValueError(
                f"y_proba is {shape(self.n_columns_)} in some chunks and "
                f"{shape(n_columns)} in others: every chunk must give the same "
                "columns (one per class of the whole problem, or 1-D if binary)."
            )
        n_columns = self.n_columns_ or n_columns
        union = _union_labels(self.labels_, labels)
        if n_columns == 1 and len(union) > 2:
            raise ValueError(
                "ProbabilisticState is binary: y_true holds more than two labels "
                f"overall ({union.tolist()}); pass 2-D y_proba, one column per class."
            )
        new_counts = np.zeros(len(union), dtype=np.int64)
        new_sums = np.zeros((len(union), _sums_width(n_columns)))
        for lab, c, s in ((self.labels_, self.counts_, self.sums_),
                          (labels, counts, sums)):  # fmt: skip
            if len(lab):  # an empty state's sums may have another width
                new_counts[_positions(union, lab)] += c
                new_sums[_positions(union, lab)] += s
        self.labels_, self.counts_, self.sums_ = union, new_counts, new_sums
        self.n_columns_ = n_columns
        self.rows_off_one_ = self.rows_off_one_ or rows_off_one

    def _absorb(self, other: ProbabilisticState) -> None:
        self._add(
            other.labels_, other.counts_, other.sums_, other.n_columns_,
            other.rows_off_one_,
        )  # fmt: skip

    def _total_weight(self) -> float:
        if not self.counts_.any():
            raise ValueError("ProbabilisticState has seen no samples; update it first.")
        total = float(self.sums_[:, _W].sum())
        if total == 0:
            raise ValueError(
                "Sample weights must contain at least one non-zero number."
            )
        return total

    def _classes(self, labels: Any) -> np.ndarray:
        """The class of each column of y_proba, with gradkit.metrics' checks of
        labels and columns, in its order."""
        classes = self.labels_ if labels is None else sorted_labels(labels)
        check_classes(self.labels_, classes, labels)
        n_columns = 2 if self.n_columns_ == 1 else self.n_columns_
        check_columns(self.rows_off_one_, n_columns, classes, labels)
        return classes

    def _own_columns(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of each true label's own cell in a labels x k block."""
        return np.arange(len(self.labels_)), np.searchsorted(classes, self.labels_)

    def log_loss(self, *, normalize: bool = True, labels: Any = None) -> float:
        """gradkit.metrics.log_loss(y_true, y_proba, normalize=, labels=)."""
        weight = self._total_weight()
        classes = self._classes(labels)
        if self.n_columns_ == 1:
            positive = self.labels_ == classes[1]
            loss = float(
                self.sums_[positive, _LOG_IF_POS].sum()
                + self.sums_[~positive, _LOG_IF_NEG].sum()
            )
        else:
            rows, own = self._own_columns(classes)
            loss = float(self.sums_[rows, 1 + own].sum())
        return loss / weight if normalize else loss

    def brier_score_loss(
        self,
        *,
        pos_label: Any = None,
        labels: Any = None,
        scale_by_half: Any = "auto",
    ) -> float:
        """gradkit.metrics.brier_score_loss(y_true, y_proba, pos_label=, labels=,
        scale_by_half=); pos_label serves 1-D y_proba, labels 2-D y_proba."""
        weight = self._total_weight()
        k = 2 if self.n_columns_ == 1 else self.n_columns_
        auto = isinstance(scale_by_half, str) and scale_by_half == "auto"
        half = k < 3 if auto else bool(scale_by_half)
        if self.n_columns_ != 1:
            rows, own = self._own_columns(self._classes(labels))
            squares = self.sums_[:, 1 + k : 1 + 2 * k]
            not_own = np.ones(squares.shape, dtype=bool)
            not_own[rows, own] = False
            sse = float(
                self.sums_[rows, 1 + 2 * k + own].sum() + squares[not_own].sum()
            )
            return sse / weight * (0.5 if half else 1.0)
        try:
            pos_label = check_pos_label(pos_label, self.labels_)
        except ValueError:
            if self.labels_.dtype.kind in "OUS":
                raise
            pos_label = self.labels_[-1]  # as sklearn's Brier: the greater label
        positive = self.labels_ == pos_label
        sse = float(
            self.sums_[positive, _SQ_IF_POS].sum()
            + self.sums_[~positive, _SQ_IF_NEG].sum()
        )
        score = sse / weight * 2.0  # both columns [1 - p, p] contribute
        return score * 0.5 if half else score

    def compute(self, metric: str = "log_loss", **kwargs: Any) -> float:
        if metric == "log_loss":
            return self.log_loss(**kwargs)
        if metric == "brier_score_loss":
            return self.brier_score_loss(**kwargs)
        raise ValueError(
            f"metric must be 'log_loss' or 'brier_score_loss', got {metric!r}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": [_json_scalar(v) for v in self.labels_],
            "counts": self.counts_.tolist(),
            "sums": self.sums_.tolist(),
            "n_columns": int(self.n_columns_),
            "rows_off_one": bool(self.rows_off_one_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbabilisticState:
        _require(d, cls.kind, ("labels", "counts", "sums"))
        state = cls()
        labels = _label_array(list(d["labels"]))
        k = len(labels)
        # States written before 2-D y_proba was supported are binary.
        n_columns = d.get("n_columns", 1 if k else 0)
        if isinstance(n_columns, bool) or not isinstance(n_columns, int):
            raise ValueError(f"from_dict: n_columns must be an int, got {n_columns!r}.")
        if n_columns < 0 or (n_columns == 0 and k):
            raise ValueError(
                "from_dict: n_columns must be 1 (1-D y_proba) or the number of "
                f"columns of y_proba, got {n_columns}."
            )
        if k and not np.all(labels[:-1] < labels[1:]):
            raise ValueError("from_dict: labels must be sorted and distinct.")
        if n_columns == 1 and k > 2:
            raise ValueError("from_dict: a binary state holds at most two labels.")
        state.labels_ = labels
        state.counts_ = _count_array(d["counts"], "counts", (k,))
        state.sums_ = _float_array(d["sums"], "sums", (k, _sums_width(n_columns)))
        state.n_columns_ = n_columns
        state.rows_off_one_ = bool(d.get("rows_off_one", False))
        return state


# --------------------------------------------------------------------------------
# Regression


def _two_sum(a: float, b: float) -> tuple[float, float]:
    """(s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


class RegressionState(_State):
    """MSE, MAE and R^2 of one output, merged with Chan's parallel update.

    The weighted mean of y_true is kept as mean_hi + mean_lo (a double-double), so
    the difference of two chunk means, which scales the between-chunk term of the
    centred sum of squares, keeps its digits even when the mean is 1e6 and the
    spread 1e-6.
    """

    kind = "regression"

    def __init__(self) -> None:
        self.n_ = 0
        self.weight_ = 0.0
        self.mean_hi_ = 0.0
        self.mean_lo_ = 0.0
        self.m2_ = 0.0
        self.sse_ = 0.0
        self.sae_ = 0.0

    def update(
        self, y_true: Any, y_pred: Any, sample_weight: Any = None
    ) -> RegressionState:
        check_consistent_length(y_true, y_pred, sample_weight)
        t, p = (
            column_or_1d(
                check_array(y, ensure_2d=False, dtype=np.float64, input_name=name)
            )
            for y, name in ((y_true, "y_true"), (y_pred, "y_pred"))
        )
        w = _chunk_weights(sample_weight, t.shape[0])
        # One fused pass, no temporaries: the weight and the error sums, and the
        # mean of y_true, which we refine below (the kernel's own centred sum of
        # squares is around the unrefined mean).
        weight, sse, sae, mean, _ = _config.kernels("metrics").regression_stats(
            t.reshape(-1, 1), p.reshape(-1, 1), w, _config.n_threads()
        )
        chunk = RegressionState()
        chunk.n_ = int(t.shape[0])
        chunk.weight_ = float(weight)
        chunk.sse_ = float(sse[0])
        chunk.sae_ = float(sae[0])
        if chunk.weight_ > 0:
            hi = float(mean[0])
            centred = t - hi  # the one array of n floats this update allocates
            residual = centred.sum() if w is None else np.dot(w, centred)
            lo = float(residual / chunk.weight_)  # the rounding of hi
            chunk.mean_hi_, chunk.mean_lo_ = _two_sum(hi, lo)
            np.subtract(t, chunk.mean_hi_, out=centred)
            centred -= chunk.mean_lo_
            if w is None:
                chunk.m2_ = float(np.dot(centred, centred))
            else:
                chunk.m2_ = float(np.dot(w, np.square(centred, out=centred)))
        self._absorb(chunk)
        return self

    def _absorb(self, other: RegressionState) -> None:
        wa, wb = self.weight_, other.weight_
        if wb > 0 and wa == 0:
            self.mean_hi_, self.mean_lo_, self.m2_ = (
                other.mean_hi_,
                other.mean_lo_,
                other.m2_,
            )
        elif wb > 0:
            total = wa + wb
            delta = (other.mean_hi_ - self.mean_hi_) + (other.mean_lo_ - self.mean_lo_)
            self.m2_ += other.m2_ + delta * delta * (wa * wb / total)
            self.mean_hi_, self.mean_lo_ = _two_sum(
                self.mean_hi_, self.mean_lo_ + delta * (wb / total)
            )
        self.n_ += other.n_
        self.weight_ += wb
        self.sse_ += other.sse_
        self.sae_ += other.sae_

    def _check_weight(self) -> None:
        if self.n_ == 0:
            raise ValueError("RegressionState has seen no samples; update it first.")
        if self.weight_ == 0:
            raise ValueError(
                "Sample weights must contain at least one non-zero number."
            )

    @property
    def mean_(self) -> float:
        return self.mean_hi_ + self.mean_lo_

    def mean_squared_error(self) -> float:
        self._check_weight()
        return self.sse_ / self.weight_

    def mean_absolute_error(self) -> float:
        self._check_weight()
        return self.sae_ / self.weight_

    def r2_score(self, *, force_finite: bool = True) -> float:
        """gradkit.metrics.r2_score(y_true, y_pred, force_finite=) of one output."""
        self._check_weight()
        if self.n_ < 2:
            warnings.warn(
                "R^2 score is not well-defined with less than two samples.",
                UndefinedMetricWarning,
                stacklevel=2,
            )
            return float("nan")
        numerator, denominator = self.sse_, self.m2_
        if denominator != 0:
            return 1 - numerator / denominator
        if not force_finite:
            with np.errstate(divide="ignore", invalid="ignore"):
                return float(1 - np.float64(numerator) / np.float64(denominator))
        return 0.0 if numerator != 0 else 1.0

    def compute(self, metric: str = "mean_squared_error", **kwargs: Any) -> float:
        methods = {
            "mean_squared_error": self.mean_squared_error,
            "mean_absolute_error": self.mean_absolute_error,
            "r2_score": self.r2_score,
        }
        if metric not in methods:
            raise ValueError(
                f"metric must be one of {sorted(methods)}, got {metric!r}."
            )
        return methods[metric](**kwargs)

    _FIELDS = ("weight", "mean_hi", "mean_lo", "m2", "sse", "sae")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "n": self.n_}
        d.update({f: float(getattr(self, f + "_")) for f in self._FIELDS})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegressionState:
        _require(d, cls.kind, ("n",) + cls._FIELDS)
        state = cls()
        state.n_ = int(_count_array(d["n"], "n", ()))
        for f in cls._FIELDS:
            value = d[f]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"from_dict: {f} must be a number, got {value!r}.")
            if not math.isfinite(value) or (
                f not in ("mean_hi", "mean_lo") and value < 0
            ):
                raise ValueError(f"from_dict: {f} must be finite and non-negative.")
            setattr(state, f + "_", float(value))
        return state


# --------------------------------------------------------------------------------
# Ranking


def _binary_scores(
    y_true: Any, y_score: Any, sample_weight: Any, owner: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, label code per row, float64 scores, weights) of one binary chunk."""
    y_type, labels, y = target_labels(y_true, "y_true")
    if y_type != "binary":
        raise ValueError(f"{owner} takes binary y_true, got {y_type}.")
    check_consistent_length(y, y_score)
    scores = column_or_1d(
        check_array(y_score, ensure_2d=False, dtype=np.float64, input_name="y_score")
    )
    w = _chunk_weights(sample_weight, scores.shape[0])
    return labels, np.searchsorted(labels, y).astype(np.int64), scores, w


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values of two sorted distinct arrays, where each element of
    a then b lands in them). A stable argsort is a timsort, which finds the two
    sorted runs and merges them in linear time: 15x faster than np.unique's sort
    of the concatenation at 10**7 scores."""
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="stable")
    merged = both[order]
    first = np.ones(len(merged), dtype=bool)
    np.not_equal(merged[1:], merged[:-1], out=first[1:])  # -0.0 equals 0.0
    inverse = np.empty(len(both), dtype=np.intp)
    inverse[order] = np.cumsum(first) - 1
    return merged[first], inverse


class RankingState(_State):
    """Exact binary ROC AUC and average precision: the distinct scores, sorted, with
    the count and weight of each of the (at most two) labels at each score.

    Memory grows with the number of distinct scores; see BinnedAUCState for a
    constant-memory approximation.
    """

    kind = "ranking"
    METRICS: dict[str, Callable[..., Any]] = {
        "roc_auc_score": _ranking.roc_auc_score,
        "average_precision_score": _ranking.average_precision_score,
        "roc_curve": _ranking.roc_curve,
        "precision_recall_curve": _ranking.precision_recall_curve,
    }

    def __init__(self) -> None:
        self.labels_: np.ndarray = np.empty(0)
        self.scores_ = np.zeros(0, dtype=np.float64)
        self.counts_ = np.zeros((0, 0), dtype=np.int64)
        self.weights_ = np.zeros((0, 0), dtype=np.float64)
        self.weighted_ = False

    def update(
        self, y_true: Any, y_score: Any, sample_weight: Any = None
    ) -> RankingState:
        labels, codes, scores, w = _binary_scores(
            y_true, y_score, sample_weight, "RankingState"
        )
        k = len(labels)
        distinct, inverse = np.unique(scores, return_inverse=True)
        cell = inverse.reshape(-1) * k + codes
        size = len(distinct) * k
        counts = np.bincount(cell, minlength=size).reshape(-1, k)
        weights = np.bincount(cell, weights=w, minlength=size).reshape(-1, k)
        self._add(labels, distinct, counts, weights.astype(np.float64), w is not None)
        return self

    def _add(
        self,
        labels: np.ndarray,
        scores: np.ndarray,
        counts: np.ndarray,
        weights: np.ndarray,
        weighted: bool,
    ) -> None:
        union = _union_labels(self.labels_, labels)
        if len(union) > 2:
            raise ValueError(
                "RankingState is binary: y_true holds more than two labels overall "
                f"({union.tolist()})."
            )
        k = len(union)
        distinct, inverse = _merge_sorted(self.scores_, scores)
        rows = np.split(inverse, [len(self.scores_)])
        new_counts = np.zeros((len(distinct), k), dtype=np.int64)
        new_weights = np.zeros((len(distinct), k), dtype=np.float64)
        for row, lab, c, w in ((rows[0], self.labels_, self.counts_, self.weights_),
                               (rows[1], labels, counts, weights)):  # fmt: skip
            # Rows are distinct within one state, so plain fancy adds are exact.
            idx = np.ix_(row, _positions(union, lab))
            new_counts[idx] += c
            new_weights[idx] += w
        self.labels_, self.scores_ = union, distinct
        self.counts_, self.weights_ = new_counts, new_weights
        self.weighted_ = self.weighted_ or weighted

    def _absorb(self, other: RankingState) -> None:
        self._add(
            other.labels_, other.scores_, other.counts_, other.weights_, other.weighted_
        )

    def compute(self, metric: str = "roc_auc_score", **kwargs: Any) -> Any:
        """gradkit.metrics.<metric> of all the data seen, with kwargs passed on."""
        if metric not in self.METRICS:
            raise ValueError(
                f"metric must be one of {sorted(self.METRICS)}, got {metric!r}."
            )
        if not self.counts_.any():
            raise ValueError("RankingState has seen no samples; update it first.")
        if (
            metric == "roc_auc_score"
            and kwargs.get("max_fpr") is None  # average etc. do not matter: binary
            and not self.weighted_
            and self.counts_.shape[1] == 2
            and self.counts_.sum(axis=0).all()
        ):
            return self._mann_whitney_auc()
        # One row per (score, label) that occurs: the same tie groups and weights.
        s, c = np.nonzero(self.counts_)
        w = self.weights_[s, c] if self.weighted_ else self.counts_[s, c]
        return self.METRICS[metric](
            self.labels_[c], self.scores_[s], sample_weight=w, **kwargs
        )

    def _mann_whitney_auc(self) -> float:
        """The unweighted ROC AUC straight from the per-score counts: sum over
        scores g, highest first, of neg_g * (pos_above_g + pos_g / 2), over P * N
        (the formula of gradkit's binary_auc kernel). With integer counts every
        term and partial sum is an exact half-integer below 2**53, so this equals
        the in-memory result bit for bit, whatever the chunking; rebuilding a
        weighted data set instead went through float curve arithmetic (5e-11 off
        at 10**7 scores) and cost a pass over every distinct score."""
        negatives = self.counts_[::-1, 0].astype(np.float64)
        positives = self.counts_[::-1, 1].astype(np.float64)
        above = np.cumsum(positives) - positives
        total = float(np.sum(negatives * (above + positives / 2)))
        return total / (float(positives.sum()) * float(negatives.sum()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": [_json_scalar(v) for v in self.labels_],
            "scores": self.scores_.tolist(),
            "counts": self.counts_.tolist(),
            "weights": self.weights_.tolist(),
            "weighted": bool(self.weighted_),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankingState:
        _require(d, cls.kind, ("labels", "scores", "counts", "weights", "weighted"))
        state = cls()
        labels = _label_array(list(d["labels"]))
        k = len(labels)
        if k > 2 or (k == 2 and not labels[0] < labels[1]):
            raise ValueError("from_dict: labels must be at most two, sorted, distinct.")
        try:
            scores = np.asarray(d["scores"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError("from_dict: scores must hold numbers.") from None
        if not np.all(np.isfinite(scores)) or np.any(np.diff(scores) <= 0):
            raise ValueError("from_dict: scores must be finite, sorted and distinct.")
        state.labels_, state.scores_ = labels, scores
        shape = (len(scores), k)
        state.counts_ = _count_array(d["counts"], "counts", shape)
        state.weights_ = _float_array(d["weights"], "weights", shape)
        state.weighted_ = bool(d["weighted"])
        return state


class BinnedAUCState(_State):
    """Approximate binary ROC AUC in constant memory, with a bound on its error.

    Scores are counted in n_bins equal bins over score_range (scores outside go to
    the first or last bin). Pairs in different bins are ordered exactly; a positive
    and a negative in the same bin get half credit, as a tie would. Each such pair
    is off by at most 1/2, so compute() returns (auc, bound) with
    |auc - exact AUC| <= bound = sum_b pos_b * neg_b / 2 / (P * N).
    """

    kind = "binned_auc"

    def __init__(
        self,
        n_bins: int = 1024,
        score_range: tuple[float, float] = (0.0, 1.0),
        pos_label: Any = 1,
    ) -> None:
        self.n_bins = n_bins
        self.score_range = score_range
        self.pos_label = pos_label

    def _check_params(self) -> tuple[int, float, float]:
        n_bins = self.n_bins
        if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)):
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
        if n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
        try:
            lo, hi = (float(v) for v in self.score_range)
        except (TypeError, ValueError):
            raise ValueError(
                f"score_range must be two numbers (low, high), got "
                f"{self.score_range!r}."
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"score_range must be finite with low < high, got {self.score_range!r}."
            )
        _json_scalar(self.pos_label)
        return int(n_bins), lo, hi

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "pos_"):
            n_bins, _, _ = self._check_params()
            self.pos_ = np.zeros(n_bins)
            self.neg_ = np.zeros(n_bins)
        return self.pos_, self.neg_

    def update(
        self, y_true: Any, y_score: Any, sample_weight: Any = None
    ) -> BinnedAUCState:
        n_bins, lo, hi = self._check_params()
        pos, neg = self._arrays()
        labels, codes, scores, w = _binary_scores(
            y_true, y_score, sample_weight, "BinnedAUCState"
        )
        is_pos = (labels == self.pos_label)[codes]
        ww = np.ones(scores.shape[0]) if w is None else w
        bins = np.floor((scores - lo) / (hi - lo) * n_bins)
        bins = np.clip(bins, 0, n_bins - 1).astype(np.int64)
        pos += np.bincount(bins, weights=ww * is_pos, minlength=n_bins)
        neg += np.bincount(bins, weights=ww * ~is_pos, minlength=n_bins)
        return self

    def _absorb(self, other: BinnedAUCState) -> None:
        if (self._check_params(), _json_scalar(self.pos_label)) != (
            other._check_params(),
            _json_scalar(other.pos_label),
        ):
            raise ValueError(
                "cannot merge BinnedAUCStates with different n_bins, score_range or "
                "pos_label."
            )
        pos, neg = self._arrays()
        other_pos, other_neg = other._arrays()
        self.pos_, self.neg_ = pos + other_pos, neg + other_neg

    def compute(self) -> tuple[float, float]:
        """(approximate AUC, bound on its distance to the exact AUC)."""
        pos, neg = self._arrays()
        total_pos, total_neg = float(pos.sum()), float(neg.sum())
        if total_pos == 0 or total_neg == 0:
            warnings.warn(
                "BinnedAUCState needs positive and negative weight: ROC AUC is not "
                "defined with only one class.",
                UndefinedMetricWarning,
                stacklevel=2,
            )
            return float("nan"), float("nan")
        neg_below = np.cumsum(neg) - neg
        pairs = total_pos * total_neg
        auc = float(np.dot(pos, neg_below) + 0.5 * np.dot(pos, neg)) / pairs
        bound = float(0.5 * np.dot(pos, neg)) / pairs
        return auc, bound

    def to_dict(self) -> dict[str, Any]:
        n_bins, lo, hi = self._check_params()
        pos, neg = self._arrays()
        return {
            "kind": self.kind,
            "n_bins": n_bins,
            "score_range": [lo, hi],
            "pos_label": _json_scalar(self.pos_label),
            "pos": pos.tolist(),
            "neg": neg.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinnedAUCState:
        _require(d, cls.kind, ("n_bins", "score_range", "pos_label", "pos", "neg"))
        state = cls(d["n_bins"], tuple(d["score_range"]), d["pos_label"])
        n_bins, _, _ = state._check_params()
        state.pos_ = _float_array(d["pos"], "pos", (n_bins,))
        state.neg_ = _float_array(d["neg"], "neg", (n_bins,))
        return state


_KINDS: dict[str, Any] = {
    cls.kind: cls
    for cls in (
        ConfusionState,
        ProbabilisticState,
        RegressionState,
        RankingState,
        BinnedAUCState,
    )
}


def state_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild any state from its to_dict(), dispatching on d["kind"]."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in _KINDS:
        raise ValueError(
            f"unknown state kind {kind!r}; expected one of {list(_KINDS)}."
        )
    return _KINDS[kind].from_dict(d)
