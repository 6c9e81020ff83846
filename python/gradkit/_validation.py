"""The one place that checks and converts user input before it reaches a kernel.

The fast path handles what nearly every caller passes (numeric 1-D labels, float
scores) with single passes in the kernels. Anything unusual (strings, objects,
multilabel indicators, sparse matrices, invalid input) goes through scikit-learn's
own public checks, so gradkit raises the same exceptions with the same messages.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from gradkit import _config

# Label values in [lo, lo + width) are counted by the kernel in a width x width
# table per thread; wider label ranges are encoded to 0..K-1 first.
KERNEL_MAX_WIDTH = 256
# The first guess covers -1..6: binary {0, 1} / {-1, 1} / {1, 2} and small
# multiclass problems count in a single pass.
_GUESS_LO, _GUESS_WIDTH = -1, 8


class InvalidParameterError(ValueError, TypeError):
    """A parameter of the wrong type or value; sklearn raises the same kind of error."""


def check_option(value: Any, options: tuple, name: str, func: str) -> None:
    """Raise InvalidParameterError unless value is one of options."""
    if any(value is o or (isinstance(value, str) and value == o) for o in options):
        return
    strings = (
        "{"
        + ", ".join(repr(o) for o in sorted(o for o in options if o is not None))
        + "}"
    )
    tail = " or None" if None in options else ""
    raise InvalidParameterError(
        f"The '{name}' parameter of {func} must be a str among {strings}{tail}. "
        f"Got {value!r} instead."
    )


def check_bool(value: Any, name: str, func: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(
            f"The '{name}' parameter of {func} must be an instance of 'bool' or an "
            f"instance of 'numpy.bool'. Got {value!r} instead."
        )


def _num_samples(y: Any) -> int:
    return int(y.shape[0]) if hasattr(y, "shape") and len(y.shape) else len(y)


def as_kernel_float(x: np.ndarray) -> np.ndarray:
    """float32 / float64 C-contiguous native-endian view or copy of a float array."""
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(x, dtype=np.dtype(dtype).newbyteorder("="))


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise sklearn's ValueError when a float array holds NaN or inf."""
    if x.size and not _config.kernels("metrics").all_finite(x, _config.n_threads()):
        what = (
            "NaN"
            if np.isnan(x).any()
            else "infinity or a value too large for dtype('float64')"
        )
        raise ValueError(f"Input {name} contains {what}.")


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """float64 C-contiguous weights of length n_samples, or None.

    Integer weights stay exact in float64 up to 2**53; confusion_matrix gives an
    integer matrix back when the weights were integers, as sklearn does.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, sample_weight, dtype=np.float64)
    w = check_array(
        sample_weight,
        accept_sparse=False,
        ensure_2d=False,
        dtype=[np.float64, np.float32],
        order="C",
        input_name="sample_weight",
    )
    if w.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {w.ndim}D array. "
            f"Expected either a scalar value or a 1D array of length {n_samples}."
        )
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected {(n_samples,)}!")
    if not w.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return as_kernel_float(w).astype(np.float64, copy=False)


def _numeric_1d(y: Any) -> np.ndarray | None:
    """y as a 1-D numeric ndarray when it is one (or a column vector), else None."""
    if not isinstance(y, np.ndarray):
        if (
            hasattr(y, "toarray")
            or hasattr(y, "__array_namespace__")
            and not hasattr(y, "__array__")
        ):
            return None  # sparse matrices and foreign arrays: the sklearn path
        try:
            y = np.asarray(y)
        except (ValueError, TypeError):
            return None  # ragged lists and the like: let sklearn explain
    if y.dtype.kind not in "biuf" or y.dtype.itemsize > 8:
        return None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] == 0 or y.dtype.kind == "u" and y.dtype.itemsize == 8:
        return None
    return y


def _kernel_label_pair(
    y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays in one kernel dtype, without copying when they have it."""
    if y_true.dtype == np.bool_ and y_pred.dtype == np.bool_:
        target: type = np.uint8
    elif "f" in (y_true.dtype.kind, y_pred.dtype.kind):
        target = (
            np.float32 if y_true.dtype == y_pred.dtype == np.float32 else np.float64
        )
    elif y_true.dtype == y_pred.dtype == np.int32:
        target = np.int32
    else:
        target = np.int64

    def convert(y: np.ndarray) -> np.ndarray:
        if y.dtype == np.bool_ and target is np.uint8:
            return np.ascontiguousarray(y).view(np.uint8)
        return np.ascontiguousarray(y, dtype=np.dtype(target))  # native order

    return convert(y_true), convert(y_pred)


@dataclass
class LabelCounts:
    """Binary or multiclass targets reduced to their joint label counts.

    labels: the sorted labels present in y_true or y_pred (sklearn's unique_labels).
    counts[i, j]: number of samples with y_true == labels[i] and y_pred == labels[j].
    weighted: the same with sample weights summed (None when unweighted).
    """

    y_type: str
    labels: np.ndarray
    counts: np.ndarray
    weighted: np.ndarray | None
    integer_weights: bool = False

    @property
    def table(self) -> np.ndarray:
        """The weighted table when there are weights, else the counts."""
        return self.counts if self.weighted is None else self.weighted


def _table_from_kernel(
    y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(labels, counts, weighted) via the counting kernel, or None to go slow."""
    kernel = _config.kernels("metrics").label_table
    threads = _config.n_threads()
    t, p = _kernel_label_pair(y_true, y_pred)
    lo, width = _GUESS_LO, _GUESS_WIDTH
    counts, weighted, n_outside, vmin, vmax, status = kernel(
        t, p, w, lo, width, threads
    )
    if status != 0:
        return None
    if n_outside:
        lo, width = int(vmin), int(vmax) - int(vmin) + 1
        if width > KERNEL_MAX_WIDTH:
            return None
        counts, weighted, n_outside, vmin, vmax, status = kernel(
            t, p, w, lo, width, threads
        )
    present = np.flatnonzero(counts.any(axis=0) | counts.any(axis=1))
    label_dtype = np.result_type(y_true.dtype, y_pred.dtype)
    labels = (present + lo).astype(label_dtype)
    counts = counts[np.ix_(present, present)]
    if weighted is not None:
        weighted = weighted[np.ix_(present, present)]
    return labels, counts, weighted


def _slow_check_targets(y_true: Any, y_pred: Any) -> tuple[str, np.ndarray, Any, Any]:
    """sklearn's _check_targets, written with its public helpers and messages."""
    for y in (y_true, y_pred):
        if isinstance(y, np.ndarray) and y.dtype == object:
            np.unique(y)  # mixed types raise TypeError here, as sklearn's do
    check_consistent_length(y_true, y_pred)
    type_true = type_of_target(y_true, input_name="y_true")
    type_pred = type_of_target(y_pred, input_name="y_pred")
    for array in (y_true, y_pred):
        if _num_samples(array) < 1:
            raise ValueError(
                "Found empty input array (e.g., `y_true` or `y_pred`) while a minimum "
                "of 1 sample is required."
            )
    y_types = {type_true, type_pred}
    if y_types == {"binary", "multiclass"}:
        y_types = {"multiclass"}
    if len(y_types) > 1:
        raise ValueError(
            f"Classification metrics can't handle a mix of {type_true} and "
            f"{type_pred} targets"
        )
    y_type = y_types.pop()
    if y_type not in ("binary", "multiclass", "multilabel-indicator"):
        raise ValueError(f"{y_type} is not supported")
    if y_type in ("binary", "multiclass"):
        try:
            y_true = column_or_1d(y_true, input_name="y_true")
            y_pred = column_or_1d(y_pred, input_name="y_pred")
        except TypeError as e:
            if "Sparse data was passed" in str(e):
                raise TypeError(
                    "Sparse input is only supported when targets are of multilabel type"
                ) from e
            raise
    labels = unique_labels(y_true, y_pred)
    if y_type == "binary" and labels.shape[0] > 2:
        y_type = "multiclass"
    if y_type == "multilabel-indicator":
        y_true = _dense_indicator(y_true)
        y_pred = _dense_indicator(y_pred)
    return y_type, labels, y_true, y_pred


def _dense_indicator(y: Any) -> np.ndarray:
    return np.asarray(y.toarray() if hasattr(y, "toarray") else y)


@dataclass
class Multilabel:
    """Multilabel indicator targets as dense (n_samples, n_labels) arrays."""

    labels: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    sample_weight: np.ndarray | None
    y_type: str = "multilabel-indicator"


def check_targets(
    y_true: Any, y_pred: Any, sample_weight: Any = None
) -> LabelCounts | Multilabel:
    """Validate classification targets and count them.

    Same checks, types and errors as sklearn's _check_targets; binary and multiclass
    targets come back as joint label counts, multilabel ones as dense indicators.
    """
    t, p = _numeric_1d(y_true), _numeric_1d(y_pred)
    if t is not None and p is not None and t.shape == p.shape:
        w = check_sample_weight(sample_weight, t.shape[0])
        fast = _table_from_kernel(t, p, w)
        if fast is not None:
            labels, counts, weighted = fast
            y_type = "binary" if len(labels) <= 2 else "multiclass"
            return LabelCounts(
                y_type, labels, counts, weighted, _int_weights(sample_weight)
            )
    y_type, labels, yt, yp = _slow_check_targets(y_true, y_pred)
    w = check_sample_weight(sample_weight, _num_samples(yt))
    if y_type == "multilabel-indicator":
        return Multilabel(labels, yt, yp, w)
    counts, weighted = count_codes(
        np.searchsorted(labels, yt), np.searchsorted(labels, yp), len(labels), w
    )
    return LabelCounts(y_type, labels, counts, weighted, _int_weights(sample_weight))


def _int_weights(sample_weight: Any) -> bool:
    return sample_weight is not None and np.asarray(sample_weight).dtype.kind in "iub"


def count_codes(
    t_codes: np.ndarray, p_codes: np.ndarray, n_labels: int, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """K x K joint counts of label codes in 0..K-1."""
    t_codes = np.ascontiguousarray(t_codes, dtype=np.int64)
    p_codes = np.ascontiguousarray(p_codes, dtype=np.int64)
    if n_labels <= KERNEL_MAX_WIDTH:
        kernel = _config.kernels("metrics").label_table
        counts, weighted, *_ = kernel(
            t_codes, p_codes, w, 0, n_labels, _config.n_threads()
        )
        return counts, weighted
    # Many classes: too many for per-thread tables, so let numpy count pairs.
    flat = t_codes * n_labels + p_codes
    size = n_labels * n_labels
    counts = np.bincount(flat, minlength=size).reshape(n_labels, n_labels)
    weighted = None
    if w is not None:
        weighted = np.bincount(flat, weights=w, minlength=size).reshape(
            n_labels, n_labels
        )
    return counts.astype(np.int64), weighted


def target_labels(y: Any, name: str) -> tuple[str, np.ndarray, Any]:
    """(sklearn's type_of_target, sorted labels, y as an array) of one target.

    Numeric 1-D targets take one counting pass; others go through sklearn.
    """
    numeric = _numeric_1d(y)
    if numeric is not None:
        fast = _table_from_kernel(numeric, numeric, None)
        if fast is not None:
            labels = fast[0]
            return ("binary" if len(labels) <= 2 else "multiclass"), labels, numeric
    y_type = type_of_target(y, input_name=name)
    if y_type == "multilabel-indicator":
        y = _dense_indicator(y)
        return y_type, np.arange(y.shape[1]), y
    if y_type in ("binary", "multiclass"):
        y = column_or_1d(y)
        return y_type, np.unique(y), y
    return y_type, np.empty(0), y


def check_pos_label(pos_label: Any, labels: np.ndarray) -> Any:
    """sklearn's _check_pos_label_consistency, from the labels already found."""
    if pos_label is not None:
        return pos_label
    allowed = ([0, 1], [-1, 1], [0], [-1], [1])
    if (
        labels.dtype.kind in "OUS"
        or labels.shape[0] > 2
        or not any(np.array_equal(labels, a) for a in allowed)
    ):
        classes_repr = ", ".join(repr(c) for c in labels.tolist())
        raise ValueError(
            f"y_true takes value in {{{classes_repr}}} and pos_label is not "
            "specified: either make y_true take value in {0, 1} or "
            "{-1, 1} or pass pos_label explicitly."
        )
    return 1


def weight_array(w: Any, name: str) -> np.ndarray:
    """A model's weight array as a C-contiguous float32 / float64 ndarray.

    Other real dtypes (float16, integers, bool) become float32; NaN, inf, complex,
    object and empty arrays are refused with a ValueError naming the argument.
    torch tensors and anything else with __array__ are accepted.
    """
    try:
        array = np.asarray(w)
    except Exception as exc:  # e.g. a CUDA tensor, or a ragged list
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    if array.dtype.kind not in "fiub":
        raise ValueError(
            f"{name} must hold real numbers, got dtype {array.dtype}; convert it "
            "with np.asarray(..., dtype=np.float32)."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty; there is nothing to compress.")
    dtype = array.dtype if array.dtype in (np.float32, np.float64) else np.float32
    array = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("="))
    if not _config.kernels("metrics").all_finite(
        array.reshape(-1), _config.n_threads()
    ):
        raise ValueError(
            f"{name} contains NaN or infinity; compress only a model whose weights "
            "are finite (check its training)."
        )
    return array


def check_fraction(value: Any, name: str, *, allow_one: bool = False) -> float:
    """A float in [0, 1) (or [0, 1] with allow_one), else a ValueError."""
    upper = "1]" if allow_one else "1)"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, {upper}, got {value!r}.")
    value = float(value)
    if not (0.0 <= value < 1.0 or (allow_one and value == 1.0)):
        raise ValueError(f"{name} must be in [0, {upper}, got {value!r}.")
    return value
