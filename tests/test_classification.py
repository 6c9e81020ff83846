"""gradkit.metrics classification metrics against sklearn.metrics 1.9.1.

Every test takes the `backend` fixture, so it runs on the C++ and the numba kernels.
`compare` (tests/oracle.py) checks value, type, shape, dtype, warnings and
exception type against sklearn on the same call.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import assert_same_value, call, compare, rtol_for
from sklearn.exceptions import UndefinedMetricWarning
from strategies import (
    ALPHABETS,
    AVERAGES,
    ZERO_DIVISION,
    label_pairs,
    label_subsets,
    multilabel_pairs,
    probability_rows,
    weights,
)

import gradkit.metrics as gm

PRF = [
    "precision_score",
    "recall_score",
    "f1_score",
    "fbeta_score",
    "precision_recall_fscore_support",
]


def _draw_prf_kwargs(data, name, n, values, absent, *, multilabel=False):
    kwargs = {}
    average = data.draw(st.sampled_from([*AVERAGES, "default"]), label="average")
    if average != "default":
        kwargs["average"] = average
    zd = data.draw(st.sampled_from([*ZERO_DIVISION, "default"]), label="zero_division")
    if zd != "default":
        kwargs["zero_division"] = zd
    if multilabel:
        if data.draw(st.booleans()):
            # column indices; `absent` is one past the last column
            kwargs["labels"] = data.draw(
                st.lists(st.sampled_from(values + [absent]), min_size=1, unique=True)
            )
    else:
        labels = data.draw(label_subsets(values, absent), label="labels")
        if labels is not None:
            kwargs["labels"] = labels
        pos_label = data.draw(st.sampled_from(["default", *values]), label="pos_label")
        if pos_label != "default":
            kwargs["pos_label"] = pos_label
    sample_weight = data.draw(weights(n), label="sample_weight")
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    if name == "fbeta_score":
        kwargs["beta"] = data.draw(st.sampled_from([0.5, 1.0, 2.0, 0.0]), label="beta")
    if name == "precision_recall_fscore_support":
        beta = data.draw(st.sampled_from(["default", 0.5, 2.0]), label="beta")
        if beta != "default":
            kwargs["beta"] = beta
        warn_for = data.draw(
            st.sampled_from(["default", ("precision",), ("recall", "f-score"), ()])
        )
        if warn_for != "default":
            kwargs["warn_for"] = warn_for
    return kwargs


# ---------------------------------------------------------------------------
# Property tests against sklearn
# ---------------------------------------------------------------------------


@given(data=st.data())
def test_precision_recall_f_match_sklearn(backend, data):
    y_true, y_pred, values, absent = data.draw(label_pairs(), label="y")
    name = data.draw(st.sampled_from(PRF), label="function")
    kwargs = _draw_prf_kwargs(data, name, len(y_true), values, absent)
    compare(name, y_true, y_pred, **kwargs)


@given(data=st.data())
def test_precision_recall_f_multilabel_match_sklearn(backend, data):
    y_true, y_pred = data.draw(multilabel_pairs(), label="y")
    k = y_true.shape[1]
    name = data.draw(st.sampled_from(PRF), label="function")
    kwargs = _draw_prf_kwargs(
        data, name, len(y_true), list(range(k)), k, multilabel=True
    )
    compare(name, y_true, y_pred, **kwargs)


@given(data=st.data())
def test_accuracy_matches_sklearn(backend, data):
    if data.draw(st.booleans()):
        y_true, y_pred, _, _ = data.draw(label_pairs(), label="y")
    else:
        y_true, y_pred = data.draw(multilabel_pairs(), label="y")  # subset accuracy
    normalize = data.draw(st.booleans(), label="normalize")
    sample_weight = data.draw(weights(len(y_true)), label="sample_weight")
    compare(
        "accuracy_score",
        y_true,
        y_pred,
        normalize=normalize,
        sample_weight=sample_weight,
    )


@given(data=st.data())
def test_balanced_accuracy_matches_sklearn(backend, data):
    y_true, y_pred, _, _ = data.draw(label_pairs(), label="y")
    adjusted = data.draw(st.booleans(), label="adjusted")
    sample_weight = data.draw(weights(len(y_true)), label="sample_weight")
    compare(
        "balanced_accuracy_score",
        y_true,
        y_pred,
        adjusted=adjusted,
        sample_weight=sample_weight,
    )


@given(data=st.data())
def test_confusion_matrix_matches_sklearn(backend, data):
    y_true, y_pred, values, absent = data.draw(label_pairs(), label="y")
    labels = data.draw(label_subsets(values, absent), label="labels")
    sample_weight = data.draw(weights(len(y_true)), label="sample_weight")
    normalize = data.draw(st.sampled_from([None, "true", "pred", "all"]))
    # counts (int64, or int64 for integer weights) are compared exactly
    compare(
        "confusion_matrix",
        y_true,
        y_pred,
        labels=labels,
        sample_weight=sample_weight,
        normalize=normalize,
    )


@given(data=st.data())
def test_matthews_corrcoef_matches_sklearn(backend, data):
    y_true, y_pred, _, _ = data.draw(label_pairs(), label="y")
    sample_weight = data.draw(weights(len(y_true)), label="sample_weight")
    # MCC subtracts products of sums: allow cancellation error near 0
    compare(
        "matthews_corrcoef", y_true, y_pred, sample_weight=sample_weight, atol=1e-13
    )


@given(data=st.data())
def test_log_loss_matches_sklearn(backend, data):
    name = data.draw(st.sampled_from(["int01", "int", "str", "bool", "negative"]))
    values, absent = ALPHABETS[name]
    n = data.draw(st.integers(1, 50), label="n")
    y_true = data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    labels = None
    if data.draw(st.booleans()):
        labels = data.draw(
            st.lists(
                st.sampled_from(values), min_size=len(set(y_true)), unique=True
            ).filter(lambda ls: set(y_true) <= set(ls))
        )
    classes = sorted(set(labels if labels is not None else y_true))
    k = max(len(classes), 2)
    k += data.draw(st.sampled_from([0, 0, 0, 1]), label="wrong k")  # mismatch
    proba = data.draw(probability_rows(n, k), label="y_proba")
    if k == 2 and data.draw(st.booleans()):
        proba = np.ascontiguousarray(proba[:, 1])  # probability of the second class
    kwargs = {}
    if labels is not None:
        kwargs["labels"] = labels
    normalize = data.draw(st.sampled_from([True, False, "default"]))
    if normalize != "default":
        kwargs["normalize"] = normalize
    sample_weight = data.draw(weights(n, allow_zero=False), label="sample_weight")
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    compare("log_loss", np.asarray(y_true), proba, rtol=rtol_for(proba), **kwargs)


@given(data=st.data())
def test_brier_score_loss_binary_matches_sklearn(backend, data):
    name = data.draw(st.sampled_from(["int01", "bool", "str2", "negative"]))
    values, _ = ALPHABETS[name]
    values = values[:2]
    n = data.draw(st.integers(1, 60), label="n")
    y_true = np.asarray(
        data.draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    )
    proba = (
        np.asarray(data.draw(st.lists(st.integers(0, 10), min_size=n, max_size=n)))
        / 10.0
    )
    if data.draw(st.booleans()):
        proba = proba.astype(np.float32)
    kwargs = {}
    pos_label = data.draw(st.sampled_from(["default", *values]), label="pos_label")
    if pos_label != "default":
        kwargs["pos_label"] = pos_label
    if data.draw(st.booleans()):
        kwargs["labels"] = values
    scale = data.draw(st.sampled_from(["default", "auto", True, False]))
    if scale != "default":
        kwargs["scale_by_half"] = scale
    sample_weight = data.draw(weights(n, allow_zero=False), label="sample_weight")
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    compare("brier_score_loss", y_true, proba, rtol=rtol_for(proba), **kwargs)


@given(data=st.data())
def test_brier_score_loss_multiclass_matches_sklearn(backend, data):
    values = ["a", "b", "c", "d"]
    n = data.draw(st.integers(1, 40), label="n")
    y_true = data.draw(st.lists(st.sampled_from(values[:3]), min_size=n, max_size=n))
    labels = None
    if data.draw(st.booleans()):
        labels = values
    classes = sorted(set(labels or y_true))
    proba = data.draw(probability_rows(n, max(len(classes), 2)), label="y_proba")
    scale = data.draw(st.sampled_from(["auto", True, False]))
    sample_weight = data.draw(weights(n, allow_zero=False), label="sample_weight")
    compare(
        "brier_score_loss",
        np.asarray(y_true),
        proba,
        labels=labels,
        scale_by_half=scale,
        sample_weight=sample_weight,
        rtol=rtol_for(proba),
    )


# ---------------------------------------------------------------------------
# Hand-written cases with known answers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zero_division", "expected", "warns"),
    [("warn", 0.0, True), (0, 0.0, False), (1, 1.0, False), (np.nan, np.nan, False)],
)
def test_f1_all_negative_zero_division(backend, zero_division, expected, warns):
    # reference/metrics.md: f1([0,0,0],[0,0,0]) is 0 / 0 / 1 / nan
    out = compare("f1_score", [0, 0, 0], [0, 0, 0], zero_division=zero_division)
    np.testing.assert_equal(out.value, expected)
    assert (UndefinedMetricWarning in out.warnings) == warns


@pytest.mark.parametrize(
    ("zero_division", "expected", "warns"),
    [("warn", 2 / 3, True), (0, 2 / 3, False), (1, 1.0, False), (np.nan, 1.0, False)],
)
def test_f1_macro_absent_label_zero_division(backend, zero_division, expected, warns):
    # label 2 has no true and no predicted samples: its F is zero_division, and a
    # nan is dropped from the macro average (reference/metrics.md)
    out = compare(
        "f1_score",
        [0, 1, 1],
        [0, 1, 1],
        labels=[0, 1, 2],
        average="macro",
        zero_division=zero_division,
    )
    np.testing.assert_allclose(out.value, expected, rtol=1e-15)
    assert (UndefinedMetricWarning in out.warnings) == warns
    got = gm.f1_score(
        [0, 1, 1], [0, 1, 1], labels=[0, 1, 2], average=None, zero_division=1
    )
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.0])


def test_precision_no_predicted_positive_warns(backend):
    out = compare("precision_score", [1, 1, 0], [0, 0, 0])
    assert out.value == 0.0 and out.warnings == [UndefinedMetricWarning]
    out = compare("recall_score", [0, 0, 0], [1, 0, 1])
    assert out.value == 0.0 and out.warnings == [UndefinedMetricWarning]
    out = compare("precision_score", [1, 1, 0], [0, 0, 0], zero_division=1)
    assert out.value == 1.0 and out.warnings == []


def test_precision_recall_fscore_support_known_values(backend):
    got = gm.precision_recall_fscore_support(
        ["cat", "dog", "pig", "cat", "dog", "pig"],
        ["cat", "pig", "dog", "cat", "cat", "dog"],
    )
    p, r, f, s = got
    np.testing.assert_allclose(p, [2 / 3, 0, 0], rtol=1e-15)
    np.testing.assert_allclose(r, [1, 0, 0], rtol=1e-15)
    np.testing.assert_allclose(f, [0.8, 0, 0], rtol=1e-15)
    np.testing.assert_array_equal(s, [2, 2, 2])
    assert s.dtype == np.int64
    p, r, f, s = gm.precision_recall_fscore_support(
        [0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1], average="macro"
    )
    assert s is None
    assert isinstance(p, float)


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted", "samples"])
def test_multilabel_indicator_known(backend, average):
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    for name in ("precision_score", "recall_score", "f1_score"):
        for zd in ("warn", 0, 1):
            compare(name, y_true, y_pred, average=average, zero_division=zd)
    if average == "samples":
        # per sample F1: 2/3, 2/3, 2/3 and the empty row is zero_division
        got = gm.f1_score(y_true, y_pred, average="samples", zero_division=1)
        np.testing.assert_allclose(got, (2 / 3 * 3 + 1) / 4, rtol=1e-14)


def test_multilabel_sparse_like_bool_indicator(backend):
    y_true = np.array([[True, False], [True, True], [False, False]])
    y_pred = np.array([[True, True], [False, True], [False, False]])
    for avg in ("samples", "micro", None):
        compare("f1_score", y_true, y_pred, average=avg, zero_division=0)
    compare("accuracy_score", y_true, y_pred)
    compare("confusion_matrix", y_true, y_pred)  # ValueError: not supported


@pytest.mark.parametrize(
    ("y_true", "y_pred", "pos_label"),
    [
        ([0, 1, 1, 0, 1], [0, 1, 0, 0, 1], 1),
        ([False, True, True, False], [True, True, False, False], True),
        ([0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0], 1.0),
        (["no", "yes", "yes", "no"], ["yes", "yes", "no", "no"], "yes"),
        ([-1, 1, 1, -1], [1, 1, -1, -1], -1),
        (np.array([0, 1, 1, 0], dtype=np.uint8), np.array([0, 1, 1, 1], np.uint8), 1),
        (np.array([0, 1, 1], dtype=np.int32), np.array([1, 1, 0], np.int32), 1),
        (np.array([0, 1, 1], dtype=np.float32), np.array([1, 1, 0], np.float32), 1),
        (
            np.array(["b", "a", "a"], dtype=object),
            np.array(["a", "a", "b"], dtype=object),
            "a",
        ),
        (np.array([2, 7, 7], dtype=object), np.array([7, 7, 2], dtype=object), 7),
    ],
)
def test_binary_label_kinds(backend, y_true, y_pred, pos_label):
    for name in ("precision_score", "recall_score", "f1_score"):
        compare(name, y_true, y_pred, pos_label=pos_label)
    compare("fbeta_score", y_true, y_pred, beta=2, pos_label=pos_label)
    compare("accuracy_score", y_true, y_pred)
    compare("balanced_accuracy_score", y_true, y_pred)
    compare("confusion_matrix", y_true, y_pred)
    compare("matthews_corrcoef", y_true, y_pred)
    compare("precision_recall_fscore_support", y_true, y_pred)


def test_confusion_matrix_counts_and_dtypes(backend):
    y_true = ["a", "b", "a", "c", "a"]
    y_pred = ["a", "a", "a", "c", "b"]
    got = gm.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(got, [[2, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert got.dtype == np.int64
    got = gm.confusion_matrix(y_true, y_pred, labels=["c", "z", "a"])
    np.testing.assert_array_equal(got, [[1, 0, 0], [0, 0, 0], [0, 0, 2]])
    got = gm.confusion_matrix(y_true, y_pred, sample_weight=[0.5, 1, 2, 1, 1])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[2.5, 1, 0], [1, 0, 0], [0, 0, 1]])
    compare("confusion_matrix", y_true, y_pred, sample_weight=[1, 2, 3, 4, 5])
    for normalize in ("true", "pred", "all"):
        compare(
            "confusion_matrix",
            y_true,
            y_pred,
            labels=["c", "z", "a", "b"],
            normalize=normalize,
        )


def test_confusion_matrix_large_label_values(backend):
    # sparse label values far apart must not allocate a table of width max - min
    y = np.array([-(2**40), 0, 2**40, 2**40], dtype=np.int64)
    p = np.array([0, 0, 2**40, -(2**40)], dtype=np.int64)
    compare("confusion_matrix", y, p)
    compare("f1_score", y, p, average="macro")
    compare("confusion_matrix", y.astype(np.uint64), p.astype(np.uint64) + 0)


def test_matthews_and_balanced_accuracy_warnings(backend):
    compare("matthews_corrcoef", [0, 0], [0, 0])  # UserWarning, returns 0.0
    compare("matthews_corrcoef", [0, 1, 2, 1], [0, 2, 2, 1], sample_weight=[1, 0, 2, 3])
    compare("balanced_accuracy_score", [0, 0, 1], [0, 2, 1])  # UserWarning
    compare("balanced_accuracy_score", [0, 0, 1], [0, 1, 1], adjusted=True)


def test_log_loss_known_cases(backend):
    out = compare(
        "log_loss",
        ["spam", "ham", "ham", "spam"],
        [[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]],
    )
    np.testing.assert_allclose(out.value, 0.21616187468057912, rtol=1e-12)
    # 1-D probabilities: those of the second (sorted) label
    compare("log_loss", [0, 1, 1], [0.2, 0.6, 0.9])
    compare(
        "log_loss", ["a", "b", "b"], np.array([0.2, 0.6, 0.9], np.float32), rtol=1e-5
    )
    # only one class in y_true: labels= is required (ValueError without it)
    compare("log_loss", [1, 1, 1], [0.2, 0.6, 0.9])
    compare("log_loss", [1, 1, 1], [0.2, 0.6, 0.9], labels=[0, 1])
    compare("log_loss", [2, 2], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], labels=[0, 1, 2])
    # labels with a label that y_true never has
    compare(
        "log_loss",
        ["x", "y"],
        [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]],
        labels=["x", "y", "z"],
    )
    # y_true has a label that labels= does not list
    compare("log_loss", [0, 3], [[0.5, 0.5], [0.5, 0.5]], labels=[0, 1])
    # clipping: exact 0 and 1 probabilities are finite losses
    compare("log_loss", [0, 1], [[1.0, 0.0], [1.0, 0.0]])
    # float32 input clips at float32's eps
    out = compare("log_loss", [0, 1], np.array([[1, 0], [1, 0]], np.float32), rtol=1e-5)
    np.testing.assert_allclose(
        out.value, -np.log(np.finfo(np.float32).eps) / 2, rtol=1e-5
    )
    out = compare("log_loss", [0, 1], np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(
        out.value, -np.log(np.finfo(np.float64).eps) / 2, rtol=1e-12
    )
    compare("log_loss", [0, 1, 1], [0.0, 1.0, 0.0], normalize=False)
    compare("log_loss", [0, 1, 1], [0.3, 0.6, 0.2], sample_weight=[1, 0, 3])


def test_log_loss_not_summing_to_one_warns(backend):
    # sklearn 1.9.1 warns (UserWarning) and does not renormalize
    out = compare("log_loss", [0, 1], [[0.5, 0.6], [0.5, 0.5]])
    assert out.error is None and out.warnings == [UserWarning]
    out = compare("log_loss", [0, 1, 2], [[0.2, 0.2, 0.2], [0.1, 0.1, 0.1], [0, 0, 1]])
    assert out.warnings == [UserWarning]


def test_log_loss_y_pred_keyword_is_deprecated(backend):
    out = compare("log_loss", [0, 1], y_pred=[0.2, 0.7])
    assert out.warnings == [FutureWarning]
    out = compare("log_loss", [0, 1], [0.2, 0.7], y_pred=[0.2, 0.7])
    assert out.error is ValueError


def test_brier_score_loss_cases(backend):
    compare("brier_score_loss", [0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3])
    compare("brier_score_loss", ["a", "b", "b"], [0.1, 0.9, 0.8], pos_label="a")
    compare("brier_score_loss", ["a", "b", "b"], [0.1, 0.9, 0.8])
    compare("brier_score_loss", [1, 1, 1], [0.1, 0.9, 0.8])  # single class
    compare("brier_score_loss", [0, 0, 0], [0.1, 0.9, 0.8], pos_label=0)
    compare("brier_score_loss", [0, 1, 1], [0.1, 0.9, 0.8], sample_weight=[1, 2, 0])
    compare(
        "brier_score_loss",
        [0, 2, 1],
        [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]],
        scale_by_half=True,
    )
    compare("brier_score_loss", [0, 1, 2], [0.1, 0.9, 0.8])  # multiclass 1-D: error
    compare("brier_score_loss", [0, 1, 1], [-0.1, 0.9, 0.8])  # out of [0, 1]


def test_zero_weights_in_classification(backend):
    y_true = [0, 1, 2, 1, 0]
    y_pred = [0, 2, 2, 1, 1]
    sw = [1.0, 0.0, 2.0, 0.0, 1.0]
    compare("confusion_matrix", y_true, y_pred, sample_weight=sw)
    compare("f1_score", y_true, y_pred, average=None, sample_weight=sw)
    compare("accuracy_score", y_true, y_pred, sample_weight=sw)
    compare("accuracy_score", y_true, y_pred, sample_weight=[0.0] * 5)
    compare("f1_score", y_true, y_pred, average="weighted", sample_weight=[0.0] * 5)


# ---------------------------------------------------------------------------
# Bad input: the same exception type as sklearn
# ---------------------------------------------------------------------------

BAD_INPUTS = [
    # all-zero weights: sklearn 1.9 refuses them everywhere
    (
        "accuracy_score",
        ([0, 1, 1, 0], [0, 1, 0, 0]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "balanced_accuracy_score",
        ([0, 1, 1, 0], [0, 1, 0, 0]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    ("f1_score", ([0, 1, 1, 0], [0, 1, 0, 0]), {"sample_weight": [0.0, 0.0, 0.0, 0.0]}),
    (
        "precision_recall_fscore_support",
        ([0, 1, 1, 0], [0, 1, 0, 0]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "confusion_matrix",
        ([0, 1, 1, 0], [0, 1, 0, 0]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "matthews_corrcoef",
        ([0, 1, 1, 0], [0, 1, 0, 0]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "log_loss",
        ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "brier_score_loss",
        ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    ("accuracy_score", ([0, 1, 1], [0, 1]), {}),
    ("f1_score", ([0, 1, 1], [0, 1]), {}),
    ("confusion_matrix", ([0, 1, 1], [0, 1]), {}),
    ("f1_score", ([0, 1], [0, 1]), {"sample_weight": [1, 2, 3]}),
    ("accuracy_score", ([], []), {}),
    ("f1_score", ([], []), {}),
    ("confusion_matrix", ([], []), {}),
    ("matthews_corrcoef", ([], []), {}),
    ("balanced_accuracy_score", ([], []), {}),
    ("f1_score", ([0, 1], [0, 1]), {"average": "bogus"}),
    ("precision_score", ([0, 1], [0, 1]), {"average": "MACRO"}),
    ("f1_score", ([0, 1, 2], [0, 1, 1]), {}),  # multiclass with average='binary'
    ("f1_score", ([0, 1, 2], [0, 1, 1]), {"average": "samples"}),
    ("f1_score", (["a", "b"], ["a", "b"]), {}),  # pos_label=1 not a label
    ("f1_score", ([0, 1], [0, 1]), {"pos_label": 3}),
    ("f1_score", ([0, 1], ["a", "b"]), {}),  # mix of str and int
    ("f1_score", (np.array([0, "a", 1], dtype=object), [0, 1, 1]), {}),
    ("accuracy_score", ([0, 1], ["a", "b"]), {}),
    ("confusion_matrix", ([0, 1], ["0", "1"]), {}),
    ("f1_score", ([0.5, 1.0], [0.0, 1.0]), {}),  # continuous targets
    ("accuracy_score", ([0.5, 1.0], [0.5, 1.0]), {}),
    ("confusion_matrix", ([0.1, 0.2], [0.1, 0.2]), {}),
    ("matthews_corrcoef", ([0.1, 0.2], [0.1, 0.2]), {}),
    ("f1_score", ([0, 1, np.nan], [0, 1, 1]), {}),
    ("confusion_matrix", ([0, 1, np.inf], [0, 1, 1]), {}),
    ("accuracy_score", ([[0, 1], [1, 0]], [0, 1]), {}),  # 2-D vs 1-D
    ("confusion_matrix", ([[0, 1], [1, 1]], [[0, 1], [1, 0]]), {}),
    ("confusion_matrix", ([0, 1], [0, 1]), {"labels": [3]}),  # no label in y_true
    ("confusion_matrix", ([0, 1], [0, 1]), {"labels": []}),
    ("confusion_matrix", ([0, 1], [0, 1]), {"normalize": "rows"}),
    ("confusion_matrix", ([0, 1], [0, 1]), {"sample_weight": [1.0]}),
    ("f1_score", ([0, 1], [0, 1]), {"zero_division": 2}),
    ("f1_score", ([0, 1], [0, 1]), {"zero_division": "1"}),
    ("fbeta_score", ([0, 1], [0, 1]), {"beta": -1}),
    ("precision_recall_fscore_support", ([0, 1], [0, 1]), {"beta": -0.5}),
    (
        "f1_score",
        ([[0, 1], [1, 0]], [[0, 1], [1, 0]]),
        {"labels": [0, 5], "average": "macro"},
    ),
    ("f1_score", ([[0, 1], [1, 0]], [[0, 1]]), {"average": "micro"}),
    ("log_loss", ([0, 1], [[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]), {}),
    ("log_loss", ([0, 1], [1.2, 0.5]), {}),
    ("log_loss", ([0, 1], [-0.2, 0.5]), {}),
    ("log_loss", ([0, 1], [np.nan, 0.5]), {}),
    ("log_loss", ([0, 1, 2], [0.5, 0.5, 0.3]), {}),  # 3 classes, 1-D proba
    ("log_loss", ([0, 1], [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]), {}),
    ("log_loss", ([0, 1], [0.2, 0.3]), {"labels": [0, 1, 2]}),
    ("log_loss", ([0, 1], [0.2, 0.3]), {"labels": [0]}),
    ("log_loss", ([0.5, 1.0], [0.2, 0.3]), {}),
    ("log_loss", ([], []), {}),
    ("brier_score_loss", ([0, 1], [0.2]), {}),
    ("brier_score_loss", ([0, 1], [np.inf, 0.2]), {}),
    ("balanced_accuracy_score", ([0, 1], [0, 1]), {"sample_weight": [1, 2, 3]}),
    ("matthews_corrcoef", ([0, 1], [0, 1, 1]), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_INPUTS)
def test_bad_input_raises_like_sklearn(backend, name, args, kwargs):
    out = compare(name, *args, **kwargs)
    assert out.error is not None, f"sklearn accepted {name}{args} {kwargs}"


# Odd input that sklearn 1.9.1 accepts: a drop-in accepts it too, same result.
ACCEPTED_ODD_INPUTS = [
    ("brier_score_loss", (["a", "b"], [0.2, 0.3]), {"pos_label": "c"}),
    ("f1_score", ([0, 1], [0, 1]), {"labels": [3]}),  # binary ignores labels
    ("f1_score", ([0, 1], [0, 1]), {"labels": [3], "average": "macro"}),
    ("accuracy_score", ([[0], [1]], [0, 1]), {}),  # column vector is 1-D enough
    ("log_loss", ([0, 1], [[0.5, 0.6], [0.5, 0.5]]), {}),  # warns, no error
    ("confusion_matrix", ([0, 1], [0, 1]), {"labels": [1, 0, 1]}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), ACCEPTED_ODD_INPUTS)
def test_odd_input_accepted_like_sklearn(backend, name, args, kwargs):
    out = compare(name, *args, **kwargs)
    assert out.error is None, out.describe()


def test_unknown_average_is_value_error(backend):
    with pytest.raises(ValueError):
        gm.f1_score([0, 1], [0, 1], average="bogus")
    with pytest.raises(ValueError):
        gm.precision_recall_fscore_support([0, 1], [0, 1], average="bogus")
    with pytest.raises(ValueError):
        gm.confusion_matrix([0, 1], [0, 1], normalize="bogus")


# ---------------------------------------------------------------------------
# Array layouts: accepted with the same result as a contiguous copy
# ---------------------------------------------------------------------------


def _layouts(a):
    """Variants of a 1-D array that must give the same result."""
    a = np.asarray(a)
    out = {"list": a.tolist()}
    doubled = np.repeat(a, 2)
    out["strided"] = doubled[::2]
    assert not out["strided"].flags.c_contiguous or a.size <= 1
    ro = a.copy()
    ro.flags.writeable = False
    out["readonly"] = ro
    if a.dtype.kind in "if":
        out["bigendian"] = a.astype(a.dtype.newbyteorder(">"))
    if a.dtype.kind in "iUb":
        out["object"] = a.astype(object)
    out["reversed_twice"] = a[::-1][::-1]
    return out


@pytest.mark.parametrize(
    "y_true, y_pred",
    [
        (
            np.array([0, 1, 2, 2, 1, 0, 1], dtype=np.int64),
            np.array([0, 2, 2, 1, 1, 0, 0]),
        ),
        (np.array([0, 1, 1, 0, 1], dtype=np.float64), np.array([1.0, 1, 0, 0, 1])),
        (np.array(["x", "y", "y", "x"]), np.array(["y", "y", "x", "x"])),
        (np.array([True, False, True]), np.array([True, True, False])),
    ],
)
def test_layouts_give_same_result(backend, y_true, y_pred):
    sw = np.linspace(0.5, 2.0, len(y_true))
    for name, extra in [
        ("f1_score", {"average": "macro"}),
        ("precision_recall_fscore_support", {}),
        ("confusion_matrix", {}),
        ("accuracy_score", {}),
        ("balanced_accuracy_score", {}),
        ("matthews_corrcoef", {}),
    ]:
        func = getattr(gm, name)
        plain = call(
            func, y_true.copy(), y_pred.copy(), sample_weight=sw.copy(), **extra
        )
        assert plain.error is None, plain.describe()
        for label, variant in _layouts(y_true).items():
            pred_variants = _layouts(y_pred)
            pred = pred_variants.get(label, y_pred)
            w = _layouts(sw).get(label, sw)
            # sklearn is the judge of whether the layout is accepted at all
            compare(name, variant, pred, sample_weight=w, **extra)
            got = call(func, variant, pred, sample_weight=w, **extra)
            if got.error is None:
                assert_same_value(got.value, plain.value, rtol=1e-12)


def test_no_warnings_for_plain_valid_input(backend):
    # nothing under a valid, well-defined call may warn (pytest turns warnings into
    # errors; this makes it explicit, e.g. for numba compilation warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm.f1_score([0, 1, 1, 0], [0, 1, 0, 0])
        gm.confusion_matrix(["a", "b"], ["b", "b"])
        gm.log_loss([0, 1], [0.3, 0.6])
        gm.brier_score_loss([0, 1], [0.3, 0.6])
