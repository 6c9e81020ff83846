"""Hypothesis strategies for metric inputs: small alphabets, so that ties, absent
labels and undefined metrics (zero denominators) happen often."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

# Each alphabet: (values, a label that never occurs in y_true / y_pred).
ALPHABETS = {
    "int01": ([0, 1], 5),
    "int": ([0, 1, 2, 3], 9),
    "negative": ([-1, 1, 4], 0),
    "bool": ([False, True], None),
    "float": ([0.0, 1.0, 2.0], 3.0),
    "str": (["a", "b", "c"], "z"),
    "str2": (["neg", "pos"], "zzz"),
}

ZERO_DIVISION = ["warn", 0, 1, np.nan, 0.0, 1.0]
AVERAGES = [None, "binary", "micro", "macro", "weighted", "samples"]

# Weights with zeros, fractions and repeated values.
WEIGHT_VALUES = [0.0, 0.5, 1.0, 2.0, 3.25, 0.1]


def as_container(draw, values, dtype=None):
    """The same labels as a list or as an ndarray (of the natural dtype)."""
    kind = draw(st.sampled_from(["list", "array"]))
    if kind == "list":
        return list(values)
    return np.asarray(values, dtype=dtype)


@st.composite
def weights(draw, n, *, allow_none=True, allow_zero=True, dyadic=False):
    """None or n weights, with zeros when allow_zero, but never all zero: sklearn
    refuses all-zero weights, and the hand-written tests check that separately
    (here it would shadow every other finding of a property test).

    dyadic: only multiples of 1/8, whose sums are exact in any order. Use it where
    sklearn takes a yes/no decision on a float sum (drop_intermediate's collinear
    test, r2's "is y_true constant"), which else flips on the last ulp of a
    summation order that gradkit need not copy."""
    w = draw(_weights(n, allow_none=allow_none, allow_zero=allow_zero, dyadic=dyadic))
    if w is not None and n and not w.any():
        w[0] = 1
    return w


@st.composite
def _weights(draw, n, *, allow_none=True, allow_zero=True, dyadic=False):
    choices = WEIGHT_VALUES if allow_zero else [w for w in WEIGHT_VALUES if w > 0]
    if dyadic:
        choices = [w for w in choices if (w * 8).is_integer()]
        lo = 0 if allow_zero else 1
        if allow_none and draw(st.booleans()):
            return None
        mode = draw(st.sampled_from(["small", "eighths"]))
        if mode == "small":
            w = draw(st.lists(st.sampled_from(choices), min_size=n, max_size=n))
        else:
            w = draw(st.lists(st.integers(lo, 800), min_size=n, max_size=n))
            w = [x / 8 for x in w]
        return np.asarray(w, dtype=np.float64)
    if allow_none and draw(st.booleans()):
        return None
    mode = draw(st.sampled_from(["small", "float", "int"]))
    if mode == "small":
        w = draw(st.lists(st.sampled_from(choices), min_size=n, max_size=n))
        return np.asarray(w, dtype=np.float64)
    if mode == "int":
        lo = 0 if allow_zero else 1
        w = draw(st.lists(st.integers(lo, 4), min_size=n, max_size=n))
        return np.asarray(w, dtype=np.int64)
    w = draw(
        st.lists(
            st.floats(0.001 if not allow_zero else 0.0, 100.0, allow_nan=False),
            min_size=n,
            max_size=n,
        )
    )
    return np.asarray(w, dtype=np.float64)


@st.composite
def label_pairs(draw, *, min_size=1, max_size=60, alphabet=None):
    """(y_true, y_pred, alphabet values, absent label): drawn from a subset of the
    alphabet so that some labels are missing from one or both arrays."""
    name = alphabet or draw(st.sampled_from(sorted(ALPHABETS)))
    values, absent = ALPHABETS[name]
    n = draw(st.integers(min_size, max_size))
    used_true = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
    used_pred = draw(st.lists(st.sampled_from(values), min_size=1, unique=True))
    y_true = draw(st.lists(st.sampled_from(used_true), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.sampled_from(used_pred), min_size=n, max_size=n))
    dtype = {"bool": bool, "float": np.float64}.get(name)
    return (
        as_container(draw, y_true, dtype),
        as_container(draw, y_pred, dtype),
        values,
        absent,
    )


@st.composite
def label_subsets(draw, values, absent):
    """labels=: None, or a (possibly reordered) subset of the alphabet, possibly
    with a label that never occurs."""
    if draw(st.booleans()):
        return None
    pool = list(values) + ([absent] if absent is not None else [])
    labels = draw(st.lists(st.sampled_from(pool), min_size=1, unique=True))
    return labels


@st.composite
def multilabel_pairs(draw, *, max_size=40):
    n = draw(st.integers(1, max_size))
    k = draw(st.integers(1, 4))
    shape = (n, k)
    y_true = draw(st.lists(st.integers(0, 1), min_size=n * k, max_size=n * k))
    y_pred = draw(st.lists(st.integers(0, 1), min_size=n * k, max_size=n * k))
    return (
        np.asarray(y_true, dtype=np.int64).reshape(shape),
        np.asarray(y_pred, dtype=np.int64).reshape(shape),
    )


@st.composite
def scores(draw, n, *, ties=None):
    """Scores with many ties (rounded to 1 decimal) or fewer; float64 or float32."""
    ties = draw(st.booleans()) if ties is None else ties
    if ties:
        values = draw(st.lists(st.integers(-3, 10), min_size=n, max_size=n))
        s = np.asarray(values, dtype=np.float64) / 10.0
    else:
        s = np.asarray(
            draw(
                st.lists(
                    st.floats(-1e3, 1e3, allow_nan=False, width=64),
                    min_size=n,
                    max_size=n,
                )
            ),
            dtype=np.float64,
        )
    if draw(st.booleans()):
        s = s.astype(np.float32)
    return s


@st.composite
def probability_rows(draw, n, k, *, dtype=None):
    """(n, k) rows summing to one, from small integers so that ties are common."""
    counts = np.asarray(
        draw(st.lists(st.integers(0, 3), min_size=n * k, max_size=n * k)), dtype=float
    ).reshape(n, k)
    # every row needs a positive total
    bump = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    counts[np.arange(n), bump] += 1
    p = counts / counts.sum(axis=1, keepdims=True)
    dtype = dtype or draw(st.sampled_from([np.float64, np.float32]))
    return p.astype(dtype)
