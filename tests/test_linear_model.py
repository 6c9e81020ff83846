"""LogisticRegression, LinearRegression and Ridge with gradkit's solvers, against
scikit-learn's exact or lbfgs solutions; and scikit-learn's check_estimator on
every gradkit estimator."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.linear_model as sk
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from gradkit.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)


def _clf(n=2000, d=10, classes=2, seed=0, shift=0.0):
    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=6, n_redundant=0, n_classes=classes,
        random_state=seed, class_sep=0.8,
    )  # fmt: skip
    return X + shift, y


def _rel(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("C", [0.1, 1.0])
def test_logistic_gd_equals_lbfgs(backend, classes, C):
    # Features with means far from 0 and unequal scales: the intercept and the
    # scales must not slow gradient descent down (it works in standardized space).
    X, y = _clf(classes=classes, shift=3.0)
    X[:, 0] *= 10.0
    ref = sk.LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y)
    ours = LogisticRegression(C=C, tol=1e-6, max_iter=5000).fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape
    assert ours.intercept_.shape == ref.intercept_.shape
    assert _rel(ours.coef_, ref.coef_) < 1e-4
    assert _rel(ours.intercept_, ref.intercept_) < 1e-4
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-5)
    assert ours.n_iter_.dtype == np.int32


def test_logistic_weights_sparse_float32(backend):
    X, y = _clf(classes=3, seed=1)
    X[np.abs(X) < 0.5] = 0
    w = np.random.default_rng(0).uniform(0.1, 3, len(y))
    params = dict(C=0.5, class_weight="balanced", tol=1e-10, max_iter=10_000)
    ref = sk.LogisticRegression(**params).fit(X, y, sample_weight=w)
    for Xin in (sp.csr_matrix(X), X.astype(np.float32)):
        ours = LogisticRegression(**{**params, "tol": 1e-5}).fit(
            Xin, y, sample_weight=w
        )
        assert ours.coef_.dtype == Xin.dtype
        assert _rel(ours.coef_, ref.coef_) < (1e-4 if Xin.dtype == np.float64 else 1e-3)


def test_logistic_adam_and_sgd(backend):
    X, y = _clf(seed=2)
    ref = sk.LogisticRegression(tol=1e-10).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adam = LogisticRegression(solver="adam", max_iter=500).fit(X, y)
    assert _rel(adam.coef_, ref.coef_) < 1e-2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sgd = LogisticRegression(solver="sgd", random_state=0, max_iter=50).fit(X, y)
    assert _rel(sgd.coef_, ref.coef_) < 0.2
    assert abs(sgd.score(X, y) - ref.score(X, y)) < 0.02


def test_logistic_no_penalty_and_sklearn_solvers_still_work(backend):
    X, y = _clf(seed=3, n=500)
    ours = LogisticRegression(penalty=None, tol=1e-6, max_iter=10_000)
    ref = sk.LogisticRegression(penalty=None, tol=1e-10, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # penalty is deprecated
        ours.fit(X, y)
        ref.fit(X, y)
    assert _rel(ours.coef_, ref.coef_) < 1e-3
    lib = LogisticRegression(solver="liblinear").fit(X, y)
    np.testing.assert_allclose(
        lib.coef_, sk.LogisticRegression(solver="liblinear").fit(X, y).coef_
    )


@pytest.mark.parametrize(
    "cls, kwargs", [(LinearRegression, {}), (Ridge, {"alpha": 3.0})]
)
@pytest.mark.parametrize("targets", [1, 2])
def test_regression_gd_equals_exact(backend, cls, kwargs, targets):
    X, y = make_regression(n_samples=1500, n_features=12, n_targets=targets,
                           noise=3.0, random_state=0)  # fmt: skip
    X = X * np.linspace(0.5, 4, X.shape[1]) + 5.0
    w = np.random.default_rng(0).uniform(0.5, 2, len(X))
    ref_cls = sk.LinearRegression if cls is LinearRegression else sk.Ridge
    ref = ref_cls(**kwargs).fit(X, y, sample_weight=w)
    ours = cls(**kwargs, tol=1e-8).fit(X, y, sample_weight=w)
    assert np.shape(ours.coef_) == np.shape(ref.coef_)
    assert np.shape(ours.intercept_) == np.shape(ref.intercept_)
    assert _rel(ours.coef_, ref.coef_) < 1e-4
    assert _rel(ours.intercept_, ref.intercept_) < 1e-4
    with warnings.catch_warnings():  # Adam need not reach tol, only 1e-2 relative
        warnings.simplefilter("ignore", ConvergenceWarning)
        adam = cls(**kwargs, solver="adam", max_iter=2000).fit(X, y, sample_weight=w)
    assert _rel(adam.coef_, ref.coef_) < 1e-2


def test_sparse_ridge(backend):
    X, y = make_regression(n_samples=800, n_features=20, random_state=1)
    X[np.abs(X) < 0.8] = 0
    ref = sk.Ridge(alpha=1.0).fit(X, y)
    ours = Ridge(alpha=1.0, tol=1e-8).fit(sp.csr_matrix(X), y)
    assert _rel(ours.coef_, ref.coef_) < 1e-4


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda X, y: LogisticRegression(solver="gd", l1_ratio=1.0).fit(X, y), "L2"),
        (lambda X, y: LogisticRegression().fit(X, np.zeros_like(y)), "class"),
        (lambda X, y: LogisticRegression(solver="newton").fit(X, y), "solver"),
        (lambda X, y: Ridge(positive=True).fit(X, y), "positive"),
        (lambda X, y: LinearRegression(solver="nope").fit(X, y), "solver"),
    ],
)
def test_bad_input(make, match):
    X, y = _clf(n=60)
    with pytest.raises(ValueError, match=match):
        make(X, y)


def test_nan_rejected():
    X, y = _clf(n=60)
    X[0, 0] = np.inf
    for est in (LogisticRegression(), Ridge(), LinearRegression()):
        with pytest.raises(ValueError, match="infinity|NaN"):
            est.fit(X, y)


def test_not_converged_warns():
    X, y = _clf(n=300)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        LogisticRegression(max_iter=2).fit(X, y)


def _expected_failures(estimator):
    # The same exceptions scikit-learn declares for its own SGD estimators: a
    # shuffled stochastic fit with weights is not the fit on repeated rows.
    if isinstance(estimator, (SGDClassifier, SGDRegressor)):
        reason = "sample_weight is not equivalent to removing/repeating samples."
        return {
            "check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason,
        }
    return {}


@parametrize_with_checks(
    [
        SGDClassifier(random_state=0),
        SGDClassifier(optimizer="adam", random_state=0),
        SGDClassifier(loss="log_loss", multi_class="multinomial", random_state=0),
        SGDRegressor(random_state=0),
        LogisticRegression(),
        LogisticRegression(solver="adam"),
        LinearRegression(),
        Ridge(),
    ],
    expected_failed_checks=_expected_failures,
)
def test_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
