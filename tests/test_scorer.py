"""gradkit.metrics.get_scorer: scorers that plug into sklearn's model selection and
give the same scores as sklearn's own scorers of the same name."""

import pickle

import numpy as np
import pytest
import sklearn.metrics
from oracle import assert_same_outcome, call
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    cross_val_score,
)

import gradkit.metrics as gm


@pytest.fixture(scope="module")
def binary_data():
    return make_classification(
        n_samples=160, n_features=6, n_informative=3, random_state=0
    )


@pytest.fixture(scope="module")
def multiclass_data():
    return make_classification(
        n_samples=180, n_features=6, n_informative=4, n_classes=3, random_state=1
    )


@pytest.fixture(scope="module")
def regression_data():
    return make_regression(n_samples=120, n_features=5, noise=3.0, random_state=2)


def _cv_scores(estimator, X, y, scoring, cv):
    return call(
        cross_val_score, estimator, X, y, scoring=scoring, cv=cv, error_score="raise"
    )


BINARY_SCORERS = [
    "roc_auc",
    "f1",
    "accuracy",
    "neg_log_loss",
    "precision",
    "recall",
    "balanced_accuracy",
    "average_precision",
    "neg_brier_score",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "precision_macro",
    "recall_weighted",
    "matthews_corrcoef",
]


@pytest.mark.parametrize("name", BINARY_SCORERS)
def test_binary_scorers_match_sklearn(backend, binary_data, name, kernel_calls):
    X, y = binary_data
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    model = LogisticRegression(max_iter=1000)
    expected = _cv_scores(model, X, y, name, cv)
    got = _cv_scores(model, X, y, gm.get_scorer(name), cv)
    assert_same_outcome(got, expected)
    assert len(expected.value) == 5
    # the scores came from gradkit's kernels, of the configured backend only
    assert kernel_calls, f"{name}: no gradkit kernel ran"
    assert {b for b, _ in kernel_calls} == {backend}


MULTICLASS_SCORERS = [
    "roc_auc_ovr",
    "roc_auc_ovo",
    "roc_auc_ovr_weighted",
    "roc_auc_ovo_weighted",
    "neg_log_loss",
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "balanced_accuracy",
    "precision_micro",
]


@pytest.mark.parametrize("name", MULTICLASS_SCORERS)
def test_multiclass_scorers_match_sklearn(backend, multiclass_data, name):
    X, y = multiclass_data
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    model = LogisticRegression(max_iter=1000)
    expected = _cv_scores(model, X, y, name, cv)
    got = _cv_scores(model, X, y, gm.get_scorer(name), cv)
    assert_same_outcome(got, expected)


REGRESSION_SCORERS = [
    "r2",
    "neg_mean_squared_error",
    "neg_mean_absolute_error",
    "neg_root_mean_squared_error",
]


@pytest.mark.parametrize("name", REGRESSION_SCORERS)
def test_regression_scorers_match_sklearn(backend, regression_data, name):
    X, y = regression_data
    cv = KFold(4, shuffle=True, random_state=0)
    expected = _cv_scores(Ridge(alpha=1.0), X, y, name, cv)
    got = _cv_scores(Ridge(alpha=1.0), X, y, gm.get_scorer(name), cv)
    assert_same_outcome(got, expected)


def test_brief_scorers_use_gradkit_kernels(
    backend, binary_data, regression_data, kernel_calls
):
    X, y = binary_data
    for name in ("roc_auc", "f1", "accuracy", "neg_log_loss"):
        kernel_calls.clear()
        cross_val_score(
            LogisticRegression(max_iter=1000), X, y, scoring=gm.get_scorer(name), cv=3
        )
        assert kernel_calls and {b for b, _ in kernel_calls} == {backend}, name
    X, y = regression_data
    for name in ("r2", "neg_mean_squared_error"):
        kernel_calls.clear()
        cross_val_score(Ridge(), X, y, scoring=gm.get_scorer(name), cv=3)
        assert kernel_calls and {b for b, _ in kernel_calls} == {backend}, name


def test_every_scorer_name_matches_sklearn_on_binary(backend, binary_data):
    # every name gradkit lists behaves like sklearn's scorer of that name on a binary
    # task: the same scores, or the same exception (e.g. f1_samples, clustering names
    # that need other input are fine as long as both agree)
    X, y = binary_data
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    model = LogisticRegression(max_iter=1000)
    for name in gm.get_scorer_names():
        expected = _cv_scores(model, X, y, name, cv)
        got = _cv_scores(model, X, y, gm.get_scorer(name), cv)
        try:
            assert_same_outcome(got, expected)
        except AssertionError as exc:
            raise AssertionError(f"scorer {name!r}: {exc}") from None


def test_scorer_names_are_sklearns(backend):
    assert sorted(gm.get_scorer_names()) == sorted(sklearn.metrics.get_scorer_names())
    # the ones gradkit must provide itself
    for name in (
        "roc_auc",
        "f1",
        "accuracy",
        "neg_log_loss",
        "r2",
        "neg_mean_squared_error",
    ):
        assert name in gm.get_scorer_names()


def test_grid_search_matches_sklearn(backend, binary_data):
    X, y = binary_data
    grid = {"C": [0.01, 0.1, 1.0, 10.0]}
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    for name in ("roc_auc", "neg_log_loss", "f1"):
        ours = GridSearchCV(
            LogisticRegression(max_iter=1000), grid, scoring=gm.get_scorer(name), cv=cv
        ).fit(X, y)
        theirs = GridSearchCV(
            LogisticRegression(max_iter=1000), grid, scoring=name, cv=cv
        ).fit(X, y)
        np.testing.assert_allclose(
            ours.cv_results_["mean_test_score"],
            theirs.cv_results_["mean_test_score"],
            rtol=1e-12,
        )
        assert ours.best_params_ == theirs.best_params_
        np.testing.assert_allclose(ours.best_score_, theirs.best_score_, rtol=1e-12)


def test_grid_search_multimetric(backend, regression_data):
    X, y = regression_data
    grid = {"alpha": [0.1, 1.0, 100.0]}
    ours = GridSearchCV(
        Ridge(),
        grid,
        scoring={
            "r2": gm.get_scorer("r2"),
            "mse": gm.get_scorer("neg_mean_squared_error"),
        },
        refit="mse",
        cv=3,
    ).fit(X, y)
    theirs = GridSearchCV(
        Ridge(),
        grid,
        scoring={"r2": "r2", "mse": "neg_mean_squared_error"},
        refit="mse",
        cv=3,
    ).fit(X, y)
    for key in ("mean_test_r2", "mean_test_mse"):
        np.testing.assert_allclose(
            ours.cv_results_[key], theirs.cv_results_[key], rtol=1e-12
        )
    assert ours.best_params_ == theirs.best_params_


def test_scorer_direct_call_and_pickle(backend, binary_data):
    X, y = binary_data
    model = LogisticRegression(max_iter=1000).fit(X, y)
    for name in ("roc_auc", "neg_log_loss", "accuracy"):
        scorer = gm.get_scorer(name)
        expected = sklearn.metrics.get_scorer(name)(model, X, y)
        np.testing.assert_allclose(scorer(model, X, y), expected, rtol=1e-12)
        # GridSearchCV(n_jobs>1) pickles scorers
        clone = pickle.loads(pickle.dumps(scorer))
        np.testing.assert_allclose(clone(model, X, y), expected, rtol=1e-12)
    # sample_weight passes through to the metric
    w = np.linspace(0.1, 2.0, len(y))
    for name in ("roc_auc", "accuracy"):
        expected = sklearn.metrics.get_scorer(name)(model, X, y, sample_weight=w)
        got = gm.get_scorer(name)(model, X, y, sample_weight=w)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_get_scorer_bad_and_passthrough(backend):
    out_sk = call(sklearn.metrics.get_scorer, "no_such_scorer")
    out_gk = call(gm.get_scorer, "no_such_scorer")
    assert out_sk.error is ValueError
    assert_same_outcome(out_gk, out_sk)

    def my_scorer(estimator, X, y):
        return 0.0

    assert gm.get_scorer(my_scorer) is sklearn.metrics.get_scorer(my_scorer)
