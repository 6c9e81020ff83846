"""Call sklearn.metrics (the oracle) and gradkit.metrics the same way and compare
everything a caller can observe: the returned value (its type, shape, dtype and
numbers), the warnings (as a multiset of categories) and the exception type.

sklearn 1.9.1 is the reference for every public function of gradkit.metrics, so a
test only has to say which function and which arguments.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn.metrics
from sklearn.utils._param_validation import InvalidParameterError

import gradkit.metrics


@dataclass
class Outcome:
    value: Any = None
    error: type[BaseException] | None = None
    message: str = ""
    warnings: list[type[Warning]] = field(default_factory=list)

    def describe(self) -> str:
        cats = sorted(w.__name__ for w in self.warnings)
        if self.error is not None:
            return f"raised {self.error.__name__}({self.message!r}), warnings {cats}"
        return f"returned {self.value!r}, warnings {cats}"


# sklearn computes regression metrics, log_loss and brier_score_loss of float32
# input in float32; gradkit sums in float64, which is closer to the exact value.
# Against sklearn on float32 input the agreement is then float32's, not 1e-12.
FLOAT32_RTOL = 1e-5


def rtol_for(*arrays) -> float:
    """1e-12, or FLOAT32_RTOL when any input is a float32 array."""
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype == np.float32:
            return FLOAT32_RTOL
    return 1e-12


def call(func, *args, **kwargs) -> Outcome:
    """Run func, recording every warning and the exception (if any)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            value = func(*args, **kwargs)
        except Exception as exc:  # any exception type is part of the comparison
            return Outcome(
                error=type(exc),
                message=str(exc),
                warnings=[w.category for w in record],
            )
    return Outcome(value=value, warnings=[w.category for w in record])


def _snapshot(obj):
    return copy.deepcopy(obj)


def _inputs_equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_inputs_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_inputs_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a is b or a == b


def assert_same_value(
    got, expected, *, rtol=1e-12, atol=0.0, where="result", loose_dtype=False
):
    """Same type, same shape and dtype, numbers equal to rtol (exact for ints).

    loose_dtype: a float array is accepted where sklearn returns ints or bools
    (thresholds of integer or bool scores), the values still compared exactly."""
    if expected is None:
        assert got is None, f"{where}: expected None, got {got!r}"
        return
    if isinstance(expected, tuple):
        assert isinstance(got, tuple), f"{where}: expected a tuple, got {type(got)}"
        assert len(got) == len(expected), f"{where}: tuple length {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same_value(
                g,
                e,
                rtol=rtol,
                atol=atol,
                where=f"{where}[{i}]",
                loose_dtype=loose_dtype,
            )
        return
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), (
            f"{where}: expected ndarray, got {type(got).__name__} {got!r}"
        )
        assert got.shape == expected.shape, (
            f"{where}: shape {got.shape} != {expected.shape}\n"
            f"got {got!r}\nexpected {expected!r}"
        )
        # Byte order aside (sklearn hands big-endian input back as is), the same
        # dtype; except that a float64 result where sklearn computed in float32
        # (float32 input) is fine: gradkit accumulates in float64 on purpose.
        if loose_dtype and expected.dtype.kind in "biu" and got.dtype.kind == "f":
            np.testing.assert_array_equal(
                got, expected.astype(got.dtype), err_msg=where
            )
            return
        assert got.dtype.kind == expected.dtype.kind, (
            f"{where}: dtype {got.dtype} != {expected.dtype}"
        )
        if expected.dtype.kind == "f":
            assert got.dtype.itemsize >= expected.dtype.itemsize, (
                f"{where}: dtype {got.dtype} != {expected.dtype}"
            )
        else:
            assert got.dtype.itemsize == expected.dtype.itemsize, (
                f"{where}: dtype {got.dtype} != {expected.dtype}"
            )
        if expected.dtype.kind in "fc":
            np.testing.assert_allclose(
                got, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=where
            )
        else:
            np.testing.assert_array_equal(got, expected, err_msg=where)
        return
    # A scalar. sklearn 1.9 returns Python floats (np.float64 in a few places,
    # e.g. roc_auc_score ovo); either is a float to the caller, an array is not.
    assert not isinstance(got, np.ndarray), (
        f"{where}: expected a scalar {expected!r}, got an ndarray {got!r}"
    )
    if isinstance(expected, float):
        assert isinstance(got, float), (
            f"{where}: expected a float {expected!r}, got {type(got).__name__} {got!r}"
        )
    elif isinstance(expected, (int, np.integer)):
        assert isinstance(got, (int, np.integer)) and not isinstance(got, bool), (
            f"{where}: expected an int {expected!r}, got {type(got).__name__} {got!r}"
        )
    else:
        assert type(got) is type(expected), (
            f"{where}: type {type(got).__name__} != {type(expected).__name__}"
        )
    if isinstance(expected, (float, np.floating)):
        np.testing.assert_allclose(
            got, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=where
        )
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


def assert_same_warnings(got: Outcome, expected: Outcome, context: str = ""):
    """The same multiset of warning categories. One exception: sklearn's numpy
    RuntimeWarnings (0/0 inside e.g. r2_score(force_finite=False)) are incidental,
    so gradkit may leave them out, but it may not add a RuntimeWarning where
    sklearn has none."""
    g = Counter(w.__name__ for w in got.warnings)
    e = Counter(w.__name__ for w in expected.warnings)
    if e["RuntimeWarning"] and g["RuntimeWarning"] <= e["RuntimeWarning"]:
        g.pop("RuntimeWarning", None)
        e.pop("RuntimeWarning", None)
    assert g == e, (
        f"warnings differ{context}: gradkit {dict(g)} vs sklearn {dict(e)}\n"
        f"gradkit {got.describe()}\nsklearn {expected.describe()}"
    )


# sklearn's parameter validation raises its private InvalidParameterError, which
# derives from both ValueError and TypeError; a drop-in may raise either. Where
# sklearn fails by accident (an IndexError on an empty array, an AttributeError on a
# list), a deliberate ValueError is as good.
_ALLOWED_ERRORS = {
    InvalidParameterError: (ValueError, TypeError),
    IndexError: (IndexError, ValueError),
    AttributeError: (AttributeError, ValueError, TypeError),
}


def assert_same_outcome(
    got: Outcome, expected: Outcome, *, rtol=1e-12, atol=0.0, loose_dtype=False
):
    if expected.error is not None:
        allowed = _ALLOWED_ERRORS.get(expected.error, expected.error)
        assert got.error is not None and issubclass(got.error, allowed), (
            f"sklearn raised {expected.error.__name__}({expected.message!r}); "
            f"gradkit {got.describe()}"
        )
        return
    assert got.error is None, (
        f"gradkit raised {got.error.__name__}({got.message!r}); "
        f"sklearn {expected.describe()}"
    )
    assert_same_value(
        got.value, expected.value, rtol=rtol, atol=atol, loose_dtype=loose_dtype
    )
    assert_same_warnings(got, expected)


def compare(
    name: str, *args, rtol=1e-12, atol=0.0, loose_dtype=False, **kwargs
) -> Outcome:
    """Call sklearn.metrics.<name> and gradkit.metrics.<name> with the same
    arguments and assert the outcomes match. Each side gets its own deep copy of
    the inputs, and gradkit must leave its inputs unchanged. Returns sklearn's
    outcome so that a test can also assert what it expected to happen."""
    before = _snapshot((args, kwargs))
    expected = call(
        getattr(sklearn.metrics, name), *_snapshot(args), **_snapshot(kwargs)
    )
    got = call(getattr(gradkit.metrics, name), *args, **kwargs)
    assert _inputs_equal((args, kwargs), before), (
        f"gradkit.metrics.{name} mutated its input"
    )
    try:
        assert_same_outcome(
            got, expected, rtol=rtol, atol=atol, loose_dtype=loose_dtype
        )
    except AssertionError as exc:
        raise AssertionError(f"{name}(*{args!r}, **{kwargs!r})\n{exc}") from None
    return expected
