"""Streaming states: any split into chunks, merged in any order, gives
gradkit.metrics on the whole data (with its warnings and errors), and the state
survives a JSON round trip."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.exceptions import UndefinedMetricWarning

import gradkit.metrics as M
from gradkit.metrics import streaming as S

RTOL = 1e-12
WEIGHTS = [0.0, 0.5, 1.0, 2.0, 3.25, 0.1]


def outcome(f):
    """(value or (exception type, message), warning messages) of f()."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = f()
        except (ValueError, ZeroDivisionError) as exc:
            value = (type(exc).__name__, str(exc))
    return value, sorted({(w.category.__name__, str(w.message)) for w in caught})


def assert_same(streamed, whole, *, atol=0.0):
    (a, wa), (b, wb) = outcome(streamed), outcome(whole)
    assert wa == wb
    if isinstance(b, tuple) and len(b) == 2 and isinstance(b[0], str):
        assert a == b
    elif isinstance(b, tuple):
        for x, y in zip(a, b, strict=True):
            if y is not None:
                np.testing.assert_allclose(x, y, rtol=RTOL, atol=atol)
    else:
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=atol)


@st.composite
def chunked(draw, make, columns, *, min_size=1, max_size=60):
    """(merged state, whole arrays, weights): the data cut into random chunks, one
    state per chunk, merged pairwise in a random tree order."""
    n = draw(st.integers(min_size, max_size))
    arrays = [draw(col(n)) for col in columns]
    weighted = draw(st.booleans())
    w = None
    if weighted:
        w = np.asarray(draw(st.lists(st.sampled_from(WEIGHTS), min_size=n, max_size=n)))
    n_cuts = draw(st.integers(0, min(n - 1, 6)))
    cuts = []
    if n_cuts:
        cuts = sorted(
            draw(st.sets(st.integers(1, n - 1), min_size=n_cuts, max_size=n_cuts))
        )
    pieces = [np.split(a, cuts) for a in arrays]
    w_pieces = np.split(w, cuts) if weighted else [None] * (len(cuts) + 1)
    states = [
        make().update(*(p[i] for p in pieces), sample_weight=w_pieces[i])
        for i in range(len(cuts) + 1)
    ]
    states = draw(st.permutations(states))
    while len(states) > 1:
        i = draw(st.integers(0, len(states) - 2))
        a, b = states[i], states[i + 1]
        if draw(st.booleans()):
            a, b = b, a
        states[i : i + 2] = [a.merge(b)]
    state = states[0]
    if draw(st.booleans()):
        state = S.state_from_dict(json.loads(json.dumps(state.to_dict())))
    return state, arrays, w


def labels(values):
    return lambda n: st.lists(st.sampled_from(values), min_size=n, max_size=n).map(
        np.asarray
    )


def probabilities(n):
    grid = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]) | st.floats(0, 1)
    return st.lists(grid, min_size=n, max_size=n).map(np.asarray)


def reals(n):
    values = st.floats(-1e3, 1e3, allow_nan=False) | st.sampled_from([0.0, 1.0, 2.5])
    return st.lists(values, min_size=n, max_size=n).map(np.asarray)


LABEL_SETS = [[0, 1], [0, 1, 2, 3], ["a", "b", "c"], [-1, 1], [1.0, 2.0]]
CLASSIFICATION_CALLS = [
    ("accuracy_score", {}),
    ("accuracy_score", {"normalize": False}),
    ("balanced_accuracy_score", {}),
    ("balanced_accuracy_score", {"adjusted": True}),
    ("matthews_corrcoef", {}),
    ("confusion_matrix", {}),
    ("precision_score", {"average": "macro"}),
    ("recall_score", {"average": "weighted"}),
    ("f1_score", {"average": "micro"}),
    ("fbeta_score", {"beta": 0.5, "average": "macro", "zero_division": 1}),
    ("precision_recall_fscore_support", {"average": None}),
    ("f1_score", {}),  # average="binary", pos_label=1
    ("precision_score", {"pos_label": "b", "average": "binary"}),
]


@given(data=st.data(), label_set=st.sampled_from(LABEL_SETS))
def test_confusion_state_matches_whole_data(data, label_set):
    state, (y_true, y_pred), w = data.draw(
        chunked(S.ConfusionState, [labels(label_set), labels(label_set)])
    )
    for name, kwargs in CLASSIFICATION_CALLS:
        assert_same(
            lambda: state.compute(name, **kwargs),  # noqa: B023
            lambda: getattr(M, name)(y_true, y_pred, sample_weight=w, **kwargs),  # noqa: B023
        )


@given(data=st.data(), label_set=st.sampled_from([[0, 1], [-1, 1], ["n", "p"], [3, 7]]))
def test_probabilistic_state_matches_whole_data(data, label_set):
    state, (y_true, y_proba), w = data.draw(
        chunked(S.ProbabilisticState, [labels(label_set), probabilities])
    )
    assert_same(state.log_loss, lambda: M.log_loss(y_true, y_proba, sample_weight=w))
    assert_same(
        lambda: state.log_loss(normalize=False, labels=label_set),
        lambda: M.log_loss(
            y_true, y_proba, normalize=False, labels=label_set, sample_weight=w
        ),
    )
    for kwargs in ({}, {"scale_by_half": False}, {"pos_label": label_set[0]}):
        assert_same(
            lambda: state.compute("brier_score_loss", **kwargs),  # noqa: B023
            lambda: M.brier_score_loss(y_true, y_proba, sample_weight=w, **kwargs),  # noqa: B023
        )


MULTICLASS_LABELS = [[0, 1, 2, 3, 4], [-2, 0, 3, 7, 9], ["a", "b", "c", "d", "e"]]


def class_probabilities(k, normalized):
    """n rows of k probabilities: on a grid (exact 0s and 1s), or any; rows scaled
    to sum to one when normalized (all-zero rows stay, and warn)."""

    def rows(n):
        value = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]) | st.floats(0, 1)
        row = st.lists(value, min_size=k, max_size=k)
        p = st.lists(row, min_size=n, max_size=n).map(np.asarray)
        if normalized:
            p = p.map(lambda a: a / np.where(a.sum(1) > 0, a.sum(1), 1)[:, None])
        return p

    return rows


@given(
    data=st.data(),
    k=st.integers(2, 5),
    label_set=st.sampled_from(MULTICLASS_LABELS),
    normalized=st.booleans(),
)
def test_multiclass_probabilistic_state_matches_whole_data(
    data, k, label_set, normalized
):
    classes = label_set[:k]
    # Some classes may be absent from all the data, others from some chunks.
    present = data.draw(st.lists(st.sampled_from(classes), min_size=1, unique=True))
    state, (y_true, y_proba), w = data.draw(
        chunked(
            S.ProbabilisticState,
            [labels(present), class_probabilities(k, normalized)],
        )
    )
    for kwargs in (
        {},
        {"labels": classes},
        {"labels": classes, "normalize": False},
        {"labels": classes[::-1]},  # unsorted: a warning
    ):
        assert_same(
            lambda: state.log_loss(**kwargs),  # noqa: B023
            lambda: M.log_loss(y_true, y_proba, sample_weight=w, **kwargs),  # noqa: B023
        )
    for kwargs in (
        {},
        {"labels": classes},
        {"labels": classes, "scale_by_half": True},
        {"labels": classes, "scale_by_half": False},
    ):
        assert_same(
            lambda: state.compute("brier_score_loss", **kwargs),  # noqa: B023
            lambda: M.brier_score_loss(y_true, y_proba, sample_weight=w, **kwargs),  # noqa: B023
        )


@given(data=st.data())
def test_regression_state_matches_whole_data(data):
    state, (y_true, y_pred), w = data.draw(chunked(S.RegressionState, [reals, reals]))
    for name in ("mean_squared_error", "mean_absolute_error"):
        assert_same(
            lambda: state.compute(name),  # noqa: B023
            lambda: getattr(M, name)(y_true, y_pred, sample_weight=w),  # noqa: B023
        )
    if np.ptp(y_true) == 0 and w is not None:
        # Constant y_true: the whole-data sst is the rounding error of a weighted
        # mean (tiny, not 0); the state's double-double mean gives 0. See below.
        return
    # R^2 = 1 - sse / sst: an absolute error of a few ulp near R^2 = 0 is fine.
    assert_same(
        state.r2_score,
        lambda: M.r2_score(y_true, y_pred, sample_weight=w),
        atol=1e-12,
    )


@given(data=st.data(), label_set=st.sampled_from([[0, 1], [-1, 1], [False, True]]))
def test_ranking_state_matches_whole_data(data, label_set):
    scores = probabilities if data.draw(st.booleans()) else reals
    state, (y_true, y_score), w = data.draw(
        chunked(S.RankingState, [labels(label_set), scores])
    )
    assert_same(
        state.compute, lambda: M.roc_auc_score(y_true, y_score, sample_weight=w)
    )
    assert_same(
        lambda: state.compute("roc_auc_score", max_fpr=0.5),
        lambda: M.roc_auc_score(y_true, y_score, sample_weight=w, max_fpr=0.5),
    )
    assert_same(
        lambda: state.compute("average_precision_score", pos_label=label_set[1]),
        lambda: M.average_precision_score(
            y_true, y_score, sample_weight=w, pos_label=label_set[1]
        ),
    )


@given(data=st.data(), n_bins=st.sampled_from([1, 3, 16, 100]))
def test_binned_auc_within_its_bound(data, n_bins):
    state, (y_true, y_score), w = data.draw(
        chunked(
            lambda: S.BinnedAUCState(n_bins=n_bins),
            [labels([0, 1]), probabilities],
            min_size=2,
        )
    )
    pos_weight = np.sum(y_true == 1 if w is None else w * (y_true == 1))
    neg_weight = np.sum(y_true == 0 if w is None else w * (y_true == 0))
    if pos_weight == 0 or neg_weight == 0:
        with pytest.warns(UndefinedMetricWarning):
            auc, bound = state.compute()
        assert np.isnan(auc) and np.isnan(bound)
        return
    auc, bound = state.compute()
    exact = M.roc_auc_score(y_true, y_score, sample_weight=w)
    assert 0 <= bound <= 0.5
    assert abs(auc - exact) <= bound + 1e-12


def test_binned_auc_distinct_bins_is_exact():
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.05, 0.95, 0.35, 0.55, 0.75, 0.15])
    auc, bound = S.BinnedAUCState(n_bins=10).update(y, s).compute()
    assert bound == 0
    assert auc == pytest.approx(M.roc_auc_score(y, s), rel=1e-15)


def test_regression_large_mean_keeps_precision():
    rng = np.random.default_rng(0)
    n = 10_000
    y_true = 1e6 + rng.normal(0, 1e-3, n)
    y_pred = y_true + rng.normal(0, 1e-4, n)
    w = rng.random(n)
    states = [
        S.RegressionState().update(t, p, sample_weight=ww)
        for t, p, ww in zip(
            np.array_split(y_true, 37),
            np.array_split(y_pred, 37),
            np.array_split(w, 37),
            strict=True,
        )
    ]
    state = states[0]
    for other in states[:0:-1]:
        state = state.merge(other)
    mean = np.average(y_true, weights=w)
    sst = np.dot(w, (y_true - mean) ** 2)
    sse = np.dot(w, (y_true - y_pred) ** 2)
    assert state.m2_ == pytest.approx(sst, rel=1e-12)
    assert state.mean_ == pytest.approx(mean, rel=1e-15)
    assert state.mean_squared_error() == pytest.approx(sse / w.sum(), rel=1e-12)
    assert state.r2_score() == pytest.approx(1 - sse / sst, rel=1e-12)


def test_r2_constant_y_true():
    weights = [1.0, 0.1, 0.1, 0.3]
    state = S.RegressionState().update(
        [2.5, 2.5], [0.0, 2.5], sample_weight=weights[:2]
    )
    state = state.merge(
        S.RegressionState().update([2.5, 2.5], [2.5, 2.5], sample_weight=weights[2:])
    )
    assert state.m2_ == 0
    assert state.r2_score() == 0.0  # sse != 0, as sklearn's force_finite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert state.r2_score(force_finite=False) == -np.inf
    perfect = S.RegressionState().update([2.5, 2.5, 2.5], [2.5, 2.5, 2.5])
    assert perfect.r2_score() == 1.0
    with pytest.warns(UndefinedMetricWarning, match="less than two samples"):
        assert np.isnan(S.RegressionState().update([1.0], [2.0]).r2_score())


def test_round_trip_is_plain_json():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    p = rng.random(50)
    states = [
        S.ConfusionState().update(y, (p > 0.5).astype(int)),
        S.ProbabilisticState().update(y, p),
        S.RegressionState().update(p, y),
        S.RankingState().update(y, p, sample_weight=rng.random(50)),
        S.BinnedAUCState(n_bins=8).update(y, p),
    ]
    for state in states:
        d = state.to_dict()
        text = json.dumps(d, allow_nan=False)
        back = S.state_from_dict(json.loads(text))
        assert type(back) is type(state)
        assert back.to_dict() == d
        np.testing.assert_equal(back.compute(), state.compute())


def test_string_labels_round_trip():
    state = S.ConfusionState().update(["a", "b", "a"], ["a", "a", "b"])
    back = S.ConfusionState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back.compute("accuracy_score") == pytest.approx(1 / 3)


def test_zero_weight_chunk_is_allowed():
    state = S.RankingState().update([0, 1], [0.2, 0.8], sample_weight=[0, 0])
    state = state.merge(S.RankingState().update([1, 0], [0.3, 0.6]))
    assert state.compute() == M.roc_auc_score([0, 1, 1, 0], [0.2, 0.8, 0.3, 0.6],
                                              sample_weight=[0, 0, 1, 1])  # fmt: skip


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: S.ConfusionState().update([0, 1], [0]), "inconsistent"),
        (
            lambda: S.ConfusionState().update([0, 1], [0, 1], sample_weight=[1, -1]),
            "sample_weight",
        ),
        (
            lambda: S.ConfusionState().update([0, 1], [0, 1], sample_weight=[1]),
            "sample_weight",
        ),
        (lambda: S.ConfusionState().update([[0, 1]], [[1, 1]]), "multilabel"),
        (
            lambda: (
                S.ConfusionState()
                .update([0], [0])
                .merge(S.ConfusionState().update(["a"], ["a"]))
            ),
            "Mix of label",
        ),
        (lambda: S.ConfusionState().compute(), "no samples"),
        (lambda: S.ConfusionState().update([0], [1]).compute("nope"), "metric"),
        (lambda: S.ProbabilisticState().update([0, 1], [0.5, 1.5]), "y_proba"),
        (
            lambda: (
                S.ProbabilisticState()
                .update([0, 1], [0.1, 0.2])
                .merge(S.ProbabilisticState().update([0, 1], [[0.5, 0.5]] * 2))
            ),
            "1-D in some chunks",
        ),
        (
            lambda: (
                S.ProbabilisticState()
                .update([0, 1], [[0.5, 0.5]] * 2)
                .merge(S.ProbabilisticState().update([0, 2], [[0.2, 0.3, 0.5]] * 2))
            ),
            "2 columns in some chunks",
        ),
        (
            lambda: S.ProbabilisticState().update([0, 1], [[0.5, 1.5, 0]] * 2),
            "greater than 1",
        ),
        (
            lambda: S.ProbabilisticState().update([[0, 1]] * 2, [[0.5, 0.5]] * 2),
            "1-D y_true",
        ),
        (
            lambda: S.ProbabilisticState().update([0.5, 1.5], [[0.5, 0.5]] * 2),
            "continuous format",
        ),
        (lambda: S.ProbabilisticState().update([0, 1, 2], [0.1] * 3), "binary"),
        (
            lambda: (
                S.ProbabilisticState()
                .update([0, 1], [0.1, 0.2])
                .merge(S.ProbabilisticState().update([2], [0.3]))
            ),
            "more than two",
        ),
        (lambda: S.RegressionState().update([1.0, np.nan], [1.0, 2.0]), "NaN"),
        (lambda: S.RegressionState().mean_squared_error(), "no samples"),
        (lambda: S.RankingState().update([0, 1], [0.1, np.inf]), "y_score"),
        (lambda: S.RankingState().update([0, 1, 2], [0.1] * 3), "binary"),
        (lambda: S.BinnedAUCState(n_bins=0).update([0], [0.1]), "n_bins"),
        (
            lambda: S.BinnedAUCState(score_range=(1, 0)).update([0], [0.1]),
            "score_range",
        ),
        (
            lambda: S.BinnedAUCState(n_bins=4).merge(S.BinnedAUCState(n_bins=5)),
            "different n_bins",
        ),
        (lambda: S.RankingState().merge(S.ConfusionState()), "cannot merge"),
        (lambda: S.state_from_dict({"kind": "pickle"}), "unknown state kind"),
        (lambda: S.RankingState.from_dict({"kind": "ranking"}), "lacks the keys"),
        (
            lambda: S.ConfusionState.from_dict(
                {
                    "kind": "confusion",
                    "labels": [0, 1],
                    "counts": [[1]],
                    "weights": [[1.0]],
                    "weighted": False,
                }  # fmt: skip
            ),
            "counts",
        ),
        (
            lambda: S.RegressionState.from_dict(
                dict(S.RegressionState().to_dict(), m2=-1.0)
            ),
            "m2",
        ),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_probabilistic_per_label_sums_do_not_cancel():
    # Label 0's terms (~1e-10 and ~1e-20) are tiny beside label 1's (~0.7, 0.25):
    # a per-label sum taken as a total minus the other label's would lose them.
    rng = np.random.default_rng(0)
    n = 100_000
    y = rng.integers(0, 2, n)
    p = np.where(y == 0, 1e-10 * rng.random(n), 0.5)
    w = rng.random(n)
    state = S.ProbabilisticState().update(y, p, sample_weight=w)
    eps = np.finfo(np.float64).eps
    terms = [
        np.ones(n),
        -np.log(np.clip(p, eps, 1 - eps)),
        -np.log(np.clip(1 - p, eps, 1 - eps)),
        (1 - p) ** 2,
        p**2,
    ]
    for label in (0, 1):
        rows = y == label
        expected = [math.fsum(w[rows] * term[rows]) for term in terms]
        np.testing.assert_allclose(state.sums_[label], expected, rtol=RTOL)


def test_multiclass_brier_of_near_perfect_predictions_keeps_its_digits():
    # Each row's squared error is ~1e-18: from sum_j p_j^2 - 2 p_own + 1 it would
    # cancel to noise; the state keeps (1 - p_own)^2 and p_j^2 sums instead.
    rng = np.random.default_rng(0)
    n, k = 10_000, 4
    y = rng.integers(0, k, n)
    p = np.full((n, k), 1e-9 / (k - 1))
    p[np.arange(n), y] = 1 - 1e-9
    w = rng.random(n)
    state = S.ProbabilisticState()
    for rows in np.array_split(np.arange(n), 7):
        state = state.merge(
            S.ProbabilisticState().update(y[rows], p[rows], sample_weight=w[rows])
        )
    expected = M.brier_score_loss(y, p, sample_weight=w)
    assert state.brier_score_loss() == pytest.approx(expected, rel=RTOL)
    assert state.log_loss() == pytest.approx(
        M.log_loss(y, p, sample_weight=w), rel=RTOL
    )
