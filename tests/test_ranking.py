"""gradkit.metrics ranking metrics (roc_curve, precision_recall_curve, roc_auc_score,
average_precision_score) against sklearn.metrics 1.9.1, on both backends."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from naive import curve_counts, pairwise_auc
from oracle import assert_same_value, call, compare
from sklearn.exceptions import UndefinedMetricWarning
from strategies import probability_rows, scores, weights

import gradkit.metrics as gm

# Binary y_true alphabets: (values, positive label, whether sklearn can infer it)
BINARY = {
    "01": ([0, 1], 1),
    "-1+1": ([-1, 1], 1),
    "bool": ([False, True], True),
    "str": (["neg", "pos"], "pos"),
    "12": ([1, 2], 2),
    "float": ([0.0, 1.0], 1.0),
}


@st.composite
def binary_problem(draw, *, max_size=80, zero_weights=True, dyadic=False):
    name = draw(st.sampled_from(sorted(BINARY)))
    values, positive = BINARY[name]
    n = draw(st.integers(1, max_size))
    y = draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))
    dtype = {"bool": bool, "float": np.float64}.get(name)
    y_true = np.asarray(y, dtype=dtype) if draw(st.booleans()) else y
    y_score = draw(scores(n))
    sample_weight = draw(weights(n, allow_zero=zero_weights, dyadic=dyadic))
    kwargs = {}
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    how = draw(st.sampled_from(["default", "positive", "negative"]))
    if how != "default":
        kwargs["pos_label"] = positive if how == "positive" else values[0]
    return y_true, y_score, kwargs


# ---------------------------------------------------------------------------
# Property tests against sklearn
# ---------------------------------------------------------------------------


# drop_intermediate drops a point when a second difference of the cumulative
# weights is exactly 0: dyadic weights keep that decision free of rounding.
@given(
    problem=binary_problem(dyadic=True),
    drop=st.sampled_from([True, False, "default"]),
)
def test_roc_curve_matches_sklearn(backend, problem, drop):
    y_true, y_score, kwargs = problem
    if drop != "default":
        kwargs["drop_intermediate"] = drop
    compare("roc_curve", y_true, y_score, **kwargs)


@given(
    problem=binary_problem(dyadic=True),
    drop=st.sampled_from([True, False, "default"]),
)
def test_precision_recall_curve_matches_sklearn(backend, problem, drop):
    y_true, y_score, kwargs = problem
    if drop != "default":
        kwargs["drop_intermediate"] = drop
    compare("precision_recall_curve", y_true, y_score, **kwargs)


@given(problem=binary_problem(), max_fpr=st.sampled_from([None, 0.1, 0.5, 0.75, 1.0]))
def test_roc_auc_binary_matches_sklearn(backend, problem, max_fpr):
    y_true, y_score, kwargs = problem
    kwargs.pop(
        "pos_label", None
    )  # roc_auc_score has none: the greater label is positive
    if max_fpr is not None:
        kwargs["max_fpr"] = max_fpr
    # McClish's correction subtracts nearly equal numbers: absolute slack near 0
    compare("roc_auc_score", y_true, y_score, atol=1e-13, **kwargs)


@given(problem=binary_problem())
def test_average_precision_binary_matches_sklearn(backend, problem):
    y_true, y_score, kwargs = problem
    compare("average_precision_score", y_true, y_score, **kwargs)


@given(problem=binary_problem(max_size=40, zero_weights=True))
def test_roc_auc_equals_pairwise_count(backend, problem):
    # a second oracle: the Mann-Whitney count over all pairs, ties counting 1/2
    y_true, y_score, kwargs = problem
    y = np.asarray(y_true)
    positive = np.max(y) if y.dtype.kind != "U" else "pos"
    sw = kwargs.get("sample_weight")
    out = call(gm.roc_auc_score, y_true, y_score, sample_weight=sw)
    expected = pairwise_auc(y == positive, y_score, sw)
    if np.isnan(expected):
        assert out.error is not None or np.isnan(out.value)
    else:
        assert out.error is None, out.describe()
        np.testing.assert_allclose(out.value, expected, rtol=1e-12, atol=1e-15)


@given(problem=binary_problem(max_size=40))
def test_roc_curve_counts_equal_naive(backend, problem):
    # fpr * fps[-1] are the weights of the negatives above each threshold
    y_true, y_score, kwargs = problem
    y = np.asarray(y_true)
    positive = kwargs.get("pos_label", 1)  # roc_curve's default for {0,1}, {-1,1}
    sw = kwargs.get("sample_weight")
    out = call(
        gm.roc_curve,
        y_true,
        y_score,
        sample_weight=sw,
        pos_label=kwargs.get("pos_label"),
        drop_intermediate=False,
    )
    if out.error is not None:
        return  # e.g. labels without a pos_label: the sklearn comparison covers it
    fpr, tpr, thr = out.value
    fps, tps, naive_thr = curve_counts(y == positive, y_score, sw)
    np.testing.assert_array_equal(thr[1:], naive_thr.astype(thr.dtype))
    assert thr[0] == np.inf
    if fps[-1] > 0:
        np.testing.assert_allclose(fpr[1:], fps / fps[-1], rtol=1e-12)
    if tps[-1] > 0:
        np.testing.assert_allclose(tpr[1:], tps / tps[-1], rtol=1e-12)


@st.composite
def multiclass_problem(draw, max_size=60):
    k = draw(st.integers(3, 4))
    kind = draw(st.sampled_from(["int", "str"]))
    classes = list(range(k)) if kind == "int" else ["ant", "bee", "cat", "dog"][:k]
    n = draw(st.integers(k, max_size))
    # every class present (as sklearn requires without labels=), then random
    rest = draw(st.lists(st.sampled_from(classes), min_size=n - k, max_size=n - k))
    y = classes + rest
    perm = draw(st.permutations(range(n)))
    y = [y[i] for i in perm]
    if draw(st.integers(0, 4)) == 0:
        y = [c if c != classes[-1] else classes[0] for c in y]  # one class absent
    proba = draw(probability_rows(n, k))
    labels = None
    if draw(st.booleans()):
        labels = classes
    return np.asarray(y), proba, labels


@given(
    problem=multiclass_problem(),
    multi_class=st.sampled_from(["ovr", "ovo"]),
    average=st.sampled_from(["macro", "weighted", "micro", None]),
    data=st.data(),
)
def test_roc_auc_multiclass_matches_sklearn(
    backend, problem, multi_class, average, data
):
    y_true, proba, labels = problem
    kwargs = {"multi_class": multi_class, "average": average}
    if labels is not None:
        kwargs["labels"] = labels
    if multi_class == "ovr":
        # dyadic: with weights 1e141 apart, sklearn's own sums round the small ones
        # away and its AUC flips between 0 and 1e-141 (a CI draw found it).
        sw = data.draw(weights(len(y_true), dyadic=True), label="sample_weight")
        if sw is not None:
            kwargs["sample_weight"] = sw
    compare("roc_auc_score", y_true, proba, **kwargs)


@given(
    data=st.data(),
    average=st.sampled_from([None, "micro", "macro", "weighted", "samples"]),
)
def test_multilabel_ranking_matches_sklearn(backend, data, average):
    n = data.draw(st.integers(1, 50), label="n")
    k = data.draw(st.integers(1, 4), label="k")
    y_true = np.asarray(
        data.draw(st.lists(st.integers(0, 1), min_size=n * k, max_size=n * k))
    ).reshape(n, k)
    y_score = data.draw(scores(n * k), label="y_score").reshape(n, k)
    # dyadic, as for multiclass above: with weights 1e142 apart sklearn's sums round
    # the small one away and its AUC is 0 where the exact (and gradkit's) is 3e-142
    # (a CI draw found it).
    sw = data.draw(weights(n, dyadic=True), label="sample_weight")
    compare("roc_auc_score", y_true, y_score, average=average, sample_weight=sw)
    compare(
        "average_precision_score", y_true, y_score, average=average, sample_weight=sw
    )


@given(
    problem=multiclass_problem(),
    average=st.sampled_from([None, "micro", "macro", "weighted"]),
)
def test_average_precision_multiclass_matches_sklearn(backend, problem, average):
    y_true, proba, _ = problem
    compare("average_precision_score", y_true, proba, average=average)


# ---------------------------------------------------------------------------
# Hand-written cases
# ---------------------------------------------------------------------------


def test_roc_auc_one_class_is_nan_and_warns(backend):
    for y in ([1, 1, 1], [0, 0, 0], ["a", "a", "a"]):
        out = compare("roc_auc_score", y, [0.1, 0.2, 0.3])
        if out.error is None:
            assert np.isnan(out.value)
            assert out.warnings == [UndefinedMetricWarning]
    # the same with weights that leave only one class
    out = compare("roc_auc_score", [0, 1, 1], [0.1, 0.2, 0.3], sample_weight=[0, 1, 1])
    assert np.isnan(out.value) and out.warnings == [UndefinedMetricWarning]
    out = compare("roc_curve", [1, 1, 1], [0.1, 0.2, 0.3])
    assert out.warnings == [UndefinedMetricWarning]
    out = compare("roc_curve", [0, 0, 0], [0.1, 0.2, 0.3])
    assert out.warnings == [UndefinedMetricWarning]
    out = compare("precision_recall_curve", [0, 0], [0.1, 0.2])
    assert out.warnings == [UserWarning]
    out = compare("average_precision_score", [0, 0], [0.1, 0.2])
    assert out.value == 0.0 and out.warnings == [UserWarning]


def test_max_fpr_known_values(backend):
    out = compare("roc_auc_score", [0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], max_fpr=0.5)
    np.testing.assert_allclose(out.value, 1 / 3, rtol=1e-12)
    out = compare("roc_auc_score", [0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], max_fpr=1.0)
    np.testing.assert_allclose(out.value, 0.5, rtol=1e-15)
    y = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0]
    s = [0.1, 0.4, 0.35, 0.8, 0.5, 0.5, 0.2, 0.9, 0.3, 0.3]
    for m in (0.01, 0.05, 0.2, 0.3, 0.5, 0.99):
        compare("roc_auc_score", y, s, max_fpr=m, atol=1e-13)
        compare("roc_auc_score", y, s, max_fpr=m, sample_weight=np.arange(10) % 3)
    # weights leave a single point on the curve: sklearn raises (no partial AUC)
    out = compare(
        "roc_auc_score",
        [0, 1, 1],
        [0.1, 0.2, 0.3],
        sample_weight=[0, 1, 1],
        max_fpr=0.5,
    )
    assert out.error is ValueError
    for bad in (0, 0.0, -0.1, 1.5, "0.5"):
        out = compare("roc_auc_score", y, s, max_fpr=bad)
        assert out.error is not None
    # partial AUC is binary only
    proba = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1]])
    out = compare("roc_auc_score", [2, 0, 1], proba, multi_class="ovr", max_fpr=0.5)
    assert out.error is ValueError


def test_multiclass_labels_order_columns(backend):
    proba = np.array(
        [
            [0.1, 0.2, 0.7],
            [0.3, 0.3, 0.4],
            [0.5, 0.25, 0.25],
            [0.2, 0.6, 0.2],
            [0.6, 0.2, 0.2],
        ]
    )
    y = np.array(["b", "c", "a", "b", "a"])
    for mc in ("ovr", "ovo"):
        for avg in ("macro", "weighted"):
            compare("roc_auc_score", y, proba, multi_class=mc, average=avg)
            compare("roc_auc_score", y, proba, multi_class=mc, labels=["a", "b", "c"])
        # labels must be sorted, unique, cover y_true and match the column count
        for labels in (["c", "b", "a"], ["a", "b"], ["a", "b", "b"], ["a", "b", "d"]):
            out = compare("roc_auc_score", y, proba, multi_class=mc, labels=labels)
            assert out.error is ValueError
    # a label listed but absent from y_true
    y2 = np.array([0, 1, 1, 0, 1])
    compare("roc_auc_score", y2, proba, multi_class="ovr", labels=[0, 1, 2])
    compare("roc_auc_score", y2, proba, multi_class="ovo", labels=[0, 1, 2])
    compare(
        "roc_auc_score", y2, proba, multi_class="ovr", labels=[0, 1, 2], average=None
    )
    out = compare("roc_auc_score", y, proba, multi_class="ovo", average=None)
    assert out.error is NotImplementedError
    out = compare(
        "roc_auc_score", y, proba, multi_class="ovo", sample_weight=np.ones(5)
    )
    assert out.error is ValueError
    out = compare("roc_auc_score", y, proba)  # multi_class='raise'
    assert out.error is ValueError
    bad = proba.copy()
    bad[0, 0] += 0.1  # rows must sum to 1
    out = compare("roc_auc_score", y, bad, multi_class="ovr")
    assert out.error is ValueError


def test_multilabel_roc_auc_known(backend):
    y_true = np.array([[0, 1], [1, 0], [1, 1]])
    y_score = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.5]])
    out = compare("roc_auc_score", y_true, y_score)
    np.testing.assert_allclose(out.value, 0.75, rtol=1e-15)
    for avg in (None, "micro", "macro", "weighted", "samples"):
        compare("roc_auc_score", y_true, y_score, average=avg)
        compare("average_precision_score", y_true, y_score, average=avg)
    # a label column with one class: nan entry plus a warning
    y_true = np.array([[0, 1], [0, 0], [0, 1]])
    out = compare("roc_auc_score", y_true, y_score, average=None)
    assert np.isnan(out.value[0]) and out.warnings == [UndefinedMetricWarning]
    compare("average_precision_score", y_true, y_score, average=None)


def test_ties_and_drop_intermediate(backend):
    y = [0, 1, 1, 0, 1, 0, 1, 1, 0, 0]
    s = np.array([0.3, 0.3, 0.3, 0.3, 0.7, 0.7, 0.1, 0.9, 0.9, 0.1])
    for drop in (True, False):
        out = compare("roc_curve", y, s, drop_intermediate=drop)
        compare("precision_recall_curve", y, s, drop_intermediate=drop)
        compare("roc_curve", y, s.astype(np.float32), drop_intermediate=drop)
    fpr, tpr, thr = gm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.7, 0.3, 0.1])
    np.testing.assert_allclose(fpr, [0, 0.2, 0.4, 0.8, 1.0], rtol=1e-15)
    np.testing.assert_allclose(tpr, [0, 0.2, 0.4, 0.8, 1.0], rtol=1e-15)
    # all scores tied: one diagonal segment, AUC 1/2
    out = compare("roc_auc_score", y, np.full(10, 0.5))
    assert out.value == 0.5
    # collinear points dropped
    fpr, tpr, thr = gm.roc_curve([0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6])
    compare("roc_curve", [0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6])
    assert len(thr) < 7


def test_negative_zero_is_zero_score(backend):
    y = [0, 1, 0, 1]
    s = np.array([0.0, -0.0, 1.0, -0.0])
    compare("roc_curve", y, s, drop_intermediate=False)
    compare("roc_auc_score", y, s)
    compare("precision_recall_curve", y, s)
    compare("average_precision_score", y, s)
    fpr, tpr, thr = gm.roc_curve(y, s, drop_intermediate=False)
    assert len(thr) == 3  # inf, 1, 0


def test_score_dtypes(backend):
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    base = np.array([0.5, 0.25, 0.75, 0.5, 1.0, 0.0, 0.125, 0.25])
    for dtype in (
        np.float64,
        np.float32,
        np.float16,
        np.int64,
        np.int32,
        np.uint8,
        bool,
    ):
        s = (base * 8).astype(dtype) if dtype not in (bool,) else base > 0.3
        for name in (
            "roc_curve",
            "precision_recall_curve",
            "roc_auc_score",
            "average_precision_score",
        ):
            # sklearn's precision_recall_curve hands back int / bool thresholds for
            # int / bool scores; float thresholds of the same values are fine
            compare(name, y, s, loose_dtype=True)
    # float32 scores that differ only below float32 resolution stay distinct in
    # float64 and tie in float32
    s64 = np.array([1.0, 1.0 + 1e-12, 0.5, 0.5 + 1e-12])
    compare("roc_curve", [0, 1, 1, 0], s64, drop_intermediate=False)
    compare("roc_curve", [0, 1, 1, 0], s64.astype(np.float32), drop_intermediate=False)
    compare("roc_auc_score", [0, 1, 1, 0], s64.astype(np.float32))
    # extreme magnitudes and subnormals
    tiny = np.array([5e-324, 1e-310, -5e-324, 1e308, -1e308, 0.0])
    compare("roc_curve", [0, 1, 0, 1, 0, 1], tiny, drop_intermediate=False)
    compare("roc_auc_score", [0, 1, 0, 1, 0, 1], tiny)


def test_average_precision_tiny_weights(backend):
    # one tie group: AP = precision = w / (1 + w), about w; a product of two tiny
    # weights must not underflow on the way (1e-300 ** 2 is 0 in float64)
    for w2 in (3.1856633e-159, 1e-300):
        out = compare(
            "average_precision_score", [0, 1], [0.0, 0.0], sample_weight=[1.0, w2]
        )
        np.testing.assert_allclose(out.value, w2, rtol=1e-12)
    compare(
        "roc_curve", [0, 1, 1], [0.0, 0.0, 1.0], sample_weight=[1.0, 1e-300, 1e-300]
    )
    compare("roc_auc_score", [0, 1, 1], [0.0, 0.0, 1.0], sample_weight=[1e-300, 1, 1])


def test_roc_curve_drop_intermediate_float_weights(backend):
    # with non-dyadic weights the collinearity test is decided by rounding;
    # drop_intermediate=False must still match to 1e-12
    y = [-1] * 6
    s = [0.0, -2.0, -1.0, 1.0, 0.0, 0.5]
    w = [0.1, 0.5, 0.5, 1.0, 0.1, 0.0]
    compare("roc_curve", y, s, sample_weight=w, drop_intermediate=False)
    with pytest.warns(UndefinedMetricWarning):  # no positives: tpr is nan
        fpr, tpr, thr = gm.roc_curve(y, s, sample_weight=w, drop_intermediate=True)
    assert fpr[0] == 0 and fpr[-1] == 1 and thr[0] == np.inf


def test_weights_zero_and_negative(backend):
    y = [0, 1, 1, 0, 1, 0]
    s = [0.2, 0.4, 0.4, 0.6, 0.8, 0.1]
    compare("roc_curve", y, s, sample_weight=[1, 0, 2, 0, 1, 1])
    compare(
        "roc_curve", y, s, sample_weight=[1, 0, 2, 0, 1, 1], drop_intermediate=False
    )
    compare("precision_recall_curve", y, s, sample_weight=[1, 0, 2, 0, 1, 1])
    compare("roc_auc_score", y, s, sample_weight=[1, 0, 2, 0, 1, 1])
    compare("average_precision_score", y, s, sample_weight=[1, 0, 2, 0, 1, 1])
    out = compare("roc_curve", y, s, sample_weight=[0] * 6)
    assert out.error is ValueError
    compare("roc_auc_score", y, s, sample_weight=[0] * 6)
    compare("average_precision_score", y, s, sample_weight=[0] * 6)


def test_pos_label_and_label_kinds(backend):
    s = [0.1, 0.9, 0.4, 0.6]
    for y, pos in [
        (["a", "b", "b", "a"], "b"),
        (["a", "b", "b", "a"], "a"),
        ([1, 2, 2, 1], 2),
        ([-1, 1, 1, -1], 1),
        ([-1, 1, 1, -1], -1),
        ([False, True, True, False], True),
        (np.array([0.0, 1.0, 1.0, 0.0]), 1.0),
    ]:
        for name in ("roc_curve", "precision_recall_curve", "average_precision_score"):
            compare(name, y, s, pos_label=pos)
            compare(name, y, s)  # inferring: ValueError unless {0,1} or {-1,1}
        compare("roc_auc_score", y, s)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

BAD_INPUTS = [
    # all-zero weights: sklearn 1.9 refuses them everywhere
    (
        "roc_curve",
        ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "precision_recall_curve",
        ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "roc_auc_score",
        ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "average_precision_score",
        ([0, 1, 1, 0], [0.1, 0.8, 0.3, 0.3]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    (
        "roc_auc_score",
        ([0, 1, 2, 1], np.array([[0.2, 0.3, 0.5]] * 4)),
        {"multi_class": "ovr", "sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    ("roc_curve", ([0, 1, 1], [0.1, 0.2]), {}),
    ("roc_auc_score", ([0, 1, 1], [0.1, 0.2]), {}),
    ("average_precision_score", ([0, 1, 1], [0.1, 0.2]), {}),
    ("precision_recall_curve", ([0, 1], [0.1, 0.2]), {"sample_weight": [1, 1, 1]}),
    ("roc_curve", ([], []), {}),
    ("roc_auc_score", ([], []), {}),
    ("average_precision_score", ([], []), {}),
    ("precision_recall_curve", ([], []), {}),
    ("roc_curve", ([0, 1], [np.nan, 0.2]), {}),
    ("roc_auc_score", ([0, 1], [np.nan, 0.2]), {}),
    ("roc_auc_score", ([0, 1], [np.inf, 0.2]), {}),
    ("roc_auc_score", ([0, 1], [-np.inf, 0.2]), {}),
    ("average_precision_score", ([0, 1], [0.1, np.nan]), {}),
    ("precision_recall_curve", ([0, 1], [0.1, np.inf]), {}),
    ("roc_curve", ([0, 1], np.array([0.1, np.nan], dtype=np.float32)), {}),
    ("roc_curve", ([0, 1], [[0.1, 0.2], [0.3, 0.4]]), {}),  # 2-D score
    ("roc_curve", ([[0, 1], [1, 0]], [0.1, 0.2]), {}),  # 2-D y_true
    ("roc_curve", ([0, 1, 2], [0.1, 0.2, 0.3]), {}),  # multiclass
    ("precision_recall_curve", ([0, 1, 2], [0.1, 0.2, 0.3]), {}),
    ("roc_curve", (["a", "b"], [0.1, 0.2]), {}),  # pos_label needed
    ("average_precision_score", (["a", "b"], [0.1, 0.2]), {}),
    ("average_precision_score", ([0, 1], [0.1, 0.2]), {"pos_label": 3}),
    ("roc_curve", ([0.5, 1.5], [0.1, 0.2]), {}),  # continuous y_true
    ("roc_auc_score", ([0.5, 1.5, 0.7], [0.1, 0.2, 0.3]), {}),
    ("roc_auc_score", ([0, 1, 2], [0.1, 0.2, 0.3]), {}),  # multiclass, 1-D score
    ("roc_auc_score", ([0, 1], [0.1, 0.2]), {"average": "bogus"}),
    ("roc_auc_score", ([0, 1], [0.1, 0.2]), {"multi_class": "bogus"}),
    ("roc_auc_score", ([0, 1], [0.1, 0.2]), {"max_fpr": 0}),
    ("roc_auc_score", ([0, 1], [0.1, 0.2]), {"max_fpr": 2}),
    ("roc_auc_score", ([0, 1], ["a", "b"]), {}),
    ("roc_curve", ([0, 1], np.array(["0.1", "0.2"], dtype=object)), {}),
    ("roc_curve", ([0, 1], [0.1, 0.2]), {"sample_weight": [[1, 1]]}),
    ("roc_auc_score", ([0, 1, 1], [[0.2, 0.8], [0.4, 0.6], [0.3, 0.7]]), {}),
    ("average_precision_score", ([[0, 1], [1, 0]], [[0.1, 0.2]]), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_INPUTS)
def test_bad_input_raises_like_sklearn(backend, name, args, kwargs):
    out = compare(name, *args, **kwargs)
    assert out.error is not None, f"sklearn accepted {name}{args} {kwargs}"


ACCEPTED_ODD_INPUTS = [
    ("roc_auc_score", ([0, 1], [[0.1], [0.2]]), {}),  # column vector score
    ("roc_auc_score", (["a", "b"], [0.1, 0.2]), {}),  # greater label is positive
    ("roc_auc_score", ([0, 1], [0.1, 0.2]), {"labels": [0, 1]}),
    ("roc_curve", ([0, 1], [True, False]), {}),
    ("roc_curve", ([0, 1], [0.1, 0.2]), {"sample_weight": [-1, 1]}),  # nan fpr
    ("roc_auc_score", ([0, 1, 1], [0.1, 0.2, 0.2]), {"sample_weight": [1, -1, 1]}),
    ("roc_curve", ([1, 1], [0.1, 0.2]), {"pos_label": 0}),
    ("roc_curve", (["a", "b"], [0.1, 0.2]), {"pos_label": "c"}),  # nan tpr, warns
    ("roc_auc_score", ([[0, 1], [1, 0]], [[0.1, 0.2], [0.3, 0.4]]), {"max_fpr": 0.5}),
    ("roc_curve", (np.array([0, 1], dtype=object), [0.1, 0.2]), {}),
    ("roc_auc_score", (np.array([0, 1, 0], dtype=object), [0.1, 0.2, 0.5]), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), ACCEPTED_ODD_INPUTS)
def test_odd_input_like_sklearn(backend, name, args, kwargs):
    compare(name, *args, **kwargs)


# ---------------------------------------------------------------------------
# Layouts: non-contiguous, read-only, big-endian, lists, Fortran 2-D
# ---------------------------------------------------------------------------


def test_layouts_give_same_result(backend):
    rng = np.random.default_rng(0)
    y = (rng.random(41) < 0.4).astype(np.int64)
    s = np.round(rng.random(41), 1)
    w = rng.integers(0, 3, 41).astype(np.float64)
    variants = {
        "strided": (np.repeat(y, 2)[::2], np.repeat(s, 2)[::2], np.repeat(w, 2)[::2]),
        "reversed": (y[::-1].copy()[::-1], s[::-1].copy()[::-1], w[::-1].copy()[::-1]),
        "bigendian": (y.astype(">i8"), s.astype(">f8"), w.astype(">f8")),
        "list": (y.tolist(), s.tolist(), w.tolist()),
        "object_y": (y.astype(object), s, w),
        "bool_y": (y.astype(bool), s, w),
        "int32": (y.astype(np.int32), s.astype(np.float32), w.astype(np.float32)),
    }
    ro = [a.copy() for a in (y, s, w)]
    for a in ro:
        a.flags.writeable = False
    variants["readonly"] = tuple(ro)
    for name, extra in [
        ("roc_curve", {}),
        ("roc_curve", {"drop_intermediate": False}),
        ("precision_recall_curve", {}),
        ("roc_auc_score", {}),
        ("roc_auc_score", {"max_fpr": 0.3}),
        ("average_precision_score", {}),
    ]:
        plain = call(getattr(gm, name), y, s, sample_weight=w, **extra)
        assert plain.error is None, plain.describe()
        for label, (yv, sv, wv) in variants.items():
            out = compare(name, yv, sv, sample_weight=wv, **extra)
            if out.error is None and label not in ("int32",):
                got = getattr(gm, name)(yv, sv, sample_weight=wv, **extra)
                assert_same_value(got, plain.value)


def test_fortran_and_strided_2d_scores(backend):
    rng = np.random.default_rng(1)
    n, k = 30, 3
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    p = rng.integers(1, 4, (n, k)).astype(float)
    p /= p.sum(axis=1, keepdims=True)
    y_ml = (rng.random((n, k)) < 0.5).astype(int)
    for variant in (
        np.asfortranarray(p),
        np.repeat(p, 2, axis=0)[::2],
        p[:, ::-1][:, ::-1],
    ):
        for mc in ("ovr", "ovo"):
            out = compare("roc_auc_score", y, variant, multi_class=mc)
            assert out.error is None
        compare("roc_auc_score", np.asfortranarray(y_ml), variant, average=None)
        compare(
            "average_precision_score",
            np.asfortranarray(y_ml),
            variant,
            average="samples",
        )
        compare("log_loss", y, variant)


# ---------------------------------------------------------------------------
# Exact counts beyond float32's 2**24
# ---------------------------------------------------------------------------


def test_counts_exact_beyond_2_pow_24(backend):
    # LARGE TEST (the only one): 2**24 + 40_001 rows, so the negatives' count
    # 16_800_399 is odd and above 2**24, where a float32 accumulator cannot hold it.
    # Constant-ish input (two score values) keeps it to a few seconds per backend.
    n = 2**24 + 40_001
    idx = np.arange(n, dtype=np.int64)
    y = idx % 1000 == 0
    s = (idx % 7 < 3).astype(np.float32)
    del idx
    pos = int(y.sum())
    neg = n - pos
    high = s == 1
    p1 = int(np.count_nonzero(y & high))
    n1 = int(np.count_nonzero(high)) - p1
    p0, n0 = pos - p1, neg - n1
    assert neg > 2**24 and neg % 2 == 1

    fpr, tpr, thr = gm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(thr, [np.inf, 1.0, 0.0])
    np.testing.assert_array_equal(fpr, [0.0, n1 / neg, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, p1 / pos, 1.0])

    auc = Fraction(2 * p1 * n0 + p1 * n1 + p0 * n0, 2 * pos * neg)
    np.testing.assert_allclose(gm.roc_auc_score(y, s), float(auc), rtol=1e-12)

    cm = gm.confusion_matrix(y, high)
    np.testing.assert_array_equal(cm, [[n0, n1], [p0, p1]])
    assert cm.dtype == np.int64
