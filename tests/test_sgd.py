"""gradkit.linear_model.SGDClassifier / SGDRegressor against scikit-learn's.

With shuffle=False both run the same per-sample algorithm in the same order, so
scikit-learn is an exact oracle (to rounding) for every loss, penalty, schedule,
averaging, class and sample weight, on dense and sparse input and both backends.
Shuffled fits use different random streams, so there they are compared on test
accuracy / R2. The additions (Adam, mini-batches, multinomial, custom losses) are
checked against the objective they minimize.
"""

import contextlib
import math
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn.linear_model as sk
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import gradkit
from gradkit.linear_model import CustomLoss, SGDClassifier, SGDRegressor

CLF_LOSSES = ["hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron",
              "squared_error", "huber", "epsilon_insensitive",
              "squared_epsilon_insensitive"]  # fmt: skip
REG_LOSSES = ["squared_error", "huber", "epsilon_insensitive",
              "squared_epsilon_insensitive"]  # fmt: skip


def _clf_data(n=300, d=8, classes=2, seed=0, dtype=np.float64):
    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=5, n_classes=classes,
        random_state=seed,
    )  # fmt: skip
    return StandardScaler().fit_transform(X).astype(dtype), y


def _reg_data(n=300, d=8, seed=0, dtype=np.float64):
    X, y = make_regression(n_samples=n, n_features=d, noise=5.0, random_state=seed)
    return StandardScaler().fit_transform(X).astype(dtype), y / 50.0


@contextlib.contextmanager
def _no_warning_check():
    """Both fits may or may not converge; they must agree, which the caller checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _assert_same_fit(ours, theirs, rtol=1e-7):
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=rtol, atol=1e-9)
    assert ours.coef_.shape == theirs.coef_.shape
    assert ours.coef_.dtype == theirs.coef_.dtype
    assert np.shape(ours.intercept_) == np.shape(theirs.intercept_)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_


def _both(cls_ours, cls_theirs, **params):
    return cls_ours(**params), cls_theirs(**params)


# On CSR input both kernels sum in scikit-learn's order, so scikit-learn is an exact
# oracle even where SGD is chaotic (the "optimal" schedule starts with huge steps:
# scikit-learn's own fit moves by percents when X moves by one ulp). Dense rows sum
# in 16 lanes (see _core.pyi), equal to rounding; they are compared on fits that
# are not chaotic.
@pytest.mark.parametrize("loss", CLF_LOSSES)
@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet", None])
def test_classifier_matches_sklearn_unshuffled(backend, loss, penalty):
    X, y = _clf_data()
    X = sp.csr_matrix(X)
    params = dict(loss=loss, penalty=penalty, shuffle=False, max_iter=30, tol=1e-4,
                  alpha=1e-3)  # fmt: skip
    ours, theirs = _both(SGDClassifier, sk.SGDClassifier, **params)
    with _no_warning_check():
        ours.fit(X, y)
        theirs.fit(X, y)
    _assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("loss", CLF_LOSSES)
def test_dense_classifier_matches_sklearn_to_rounding(backend, loss):
    X, y = _clf_data(classes=3)
    params = dict(loss=loss, penalty="elasticnet", shuffle=False, max_iter=20,
                  tol=None, learning_rate="invscaling", eta0=0.01)  # fmt: skip
    ours, theirs = _both(SGDClassifier, sk.SGDClassifier, **params)
    ours.fit(X, y)
    theirs.fit(X, y)
    _assert_same_fit(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize(
    "learning_rate", ["constant", "optimal", "invscaling", "adaptive"]
)
@pytest.mark.parametrize("average", [False, True, 50])
def test_schedules_and_averaging_match_sklearn(backend, learning_rate, average):
    X, y = _clf_data(classes=3)
    X = sp.csr_matrix(X)
    params = dict(loss="log_loss", learning_rate=learning_rate, eta0=0.05,
                  average=average, shuffle=False, max_iter=15, tol=1e-3)  # fmt: skip
    ours, theirs = _both(SGDClassifier, sk.SGDClassifier, **params)
    with _no_warning_check():
        ours.fit(X, y)
        theirs.fit(X, y)
    _assert_same_fit(ours, theirs)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weights_sparse_and_float32_match_sklearn(backend, sparse, dtype):
    X, y = _clf_data(classes=3, dtype=dtype)
    X[np.abs(X) < 0.7] = 0.0
    if sparse:
        X = sp.csr_matrix(X)
    w = np.random.default_rng(1).uniform(0, 2, size=len(y))
    params = dict(loss="hinge", penalty="elasticnet", class_weight="balanced",
                  shuffle=False, max_iter=10, tol=None)  # fmt: skip
    ours, theirs = _both(SGDClassifier, sk.SGDClassifier, **params)
    ours.fit(X, y, sample_weight=w)
    theirs.fit(X, y, sample_weight=w)
    _assert_same_fit(ours, theirs, rtol=1e-4 if dtype == np.float32 else 1e-7)


@pytest.mark.parametrize("loss", REG_LOSSES)
@pytest.mark.parametrize("average", [False, True])
def test_regressor_matches_sklearn_unshuffled(backend, loss, average):
    X, y = _reg_data()
    params = dict(loss=loss, shuffle=False, max_iter=20, tol=1e-4, average=average,
                  penalty="elasticnet")  # fmt: skip
    ours, theirs = _both(SGDRegressor, sk.SGDRegressor, **params)
    with _no_warning_check():
        ours.fit(X, y)
        theirs.fit(X, y)
    _assert_same_fit(ours, theirs)


def test_partial_fit_and_warm_start_match_sklearn(backend):
    X, y = _clf_data(classes=3)
    ours, theirs = _both(SGDClassifier, sk.SGDClassifier, shuffle=False, random_state=0)
    for part in np.array_split(np.arange(len(y)), 4):
        ours.partial_fit(X[part], y[part], classes=np.unique(y))
        theirs.partial_fit(X[part], y[part], classes=np.unique(y))
    _assert_same_fit(ours, theirs)
    params = dict(shuffle=False, warm_start=True, max_iter=3, tol=None)
    ours, theirs = _both(SGDRegressor, sk.SGDRegressor, **params)
    X, y = _reg_data()
    for _ in range(2):
        ours.fit(X, y, coef_init=np.ones(X.shape[1]))
        theirs.fit(X, y, coef_init=np.ones(X.shape[1]))
    _assert_same_fit(ours, theirs)


@pytest.mark.parametrize("loss", ["hinge", "log_loss", "modified_huber"])
def test_shuffled_accuracy_matches_sklearn(backend, loss):
    # Different shuffles give different SGD models: compare the mean test accuracy
    # over a few seeds, which is what the shuffling does not change.
    X, y = _clf_data(n=3000, classes=3, seed=3)
    Xt, yt, Xv, yv = X[:2000], y[:2000], X[2000:], y[2000:]
    ours, theirs = [], []
    for seed in range(5):
        ours.append(SGDClassifier(loss=loss, random_state=seed).fit(Xt, yt))
        theirs.append(sk.SGDClassifier(loss=loss, random_state=seed).fit(Xt, yt))
    gap = np.mean([e.score(Xv, yv) for e in ours]) - np.mean(
        [e.score(Xv, yv) for e in theirs]
    )
    assert abs(gap) < 0.03
    if loss != "hinge":
        proba = ours[0].predict_proba(Xv)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert proba.shape == (len(yv), 3)


def test_same_random_state_is_bitwise_reproducible(backend):
    X, y = _clf_data(n=500, classes=3)
    a = SGDClassifier(random_state=7, average=True).fit(X, y)
    b = SGDClassifier(random_state=7, average=True).fit(X, y)
    assert a.coef_.tobytes() == b.coef_.tobytes()
    assert a.intercept_.tobytes() == b.intercept_.tobytes()


def test_early_stopping_uses_sklearn_split(backend):
    X, y = _clf_data(n=1000)
    ours = SGDClassifier(early_stopping=True, random_state=0, n_iter_no_change=3)
    ours.fit(X, y)
    assert 1 <= ours.n_iter_ < ours.max_iter
    assert ours.score(X, y) > 0.75
    reg = SGDRegressor(early_stopping=True, random_state=0).fit(*_reg_data(n=1000))
    assert reg.n_iter_ < reg.max_iter


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [None, 16])
def test_minibatch_and_adam_reach_sklearn_accuracy(backend, optimizer, batch_size):
    X, y = _clf_data(n=2000, seed=5)
    base = sk.LogisticRegression().fit(X, y).score(X, y)
    est = SGDClassifier(loss="log_loss", optimizer=optimizer, batch_size=batch_size,
                        learning_rate="adaptive" if optimizer == "sgd" else "optimal",
                        eta0=0.01, random_state=0, max_iter=50)  # fmt: skip
    with _no_warning_check():
        est.fit(X, y)
    assert est.score(X, y) > base - 0.02
    Xr, yr = _reg_data(n=2000)
    reg = SGDRegressor(optimizer=optimizer, batch_size=batch_size, random_state=0,
                       eta0=0.01, learning_rate="adaptive")  # fmt: skip
    with _no_warning_check():
        reg.fit(Xr, yr)
    assert reg.score(Xr, yr) > sk.LinearRegression().fit(Xr, yr).score(Xr, yr) - 0.02


def test_multinomial_is_softmax_regression(backend):
    X, y = _clf_data(n=1500, classes=4, seed=2)
    est = SGDClassifier(loss="log_loss", multi_class="multinomial", optimizer="adam",
                        alpha=1e-4, eta0=0.01, random_state=0, max_iter=60)  # fmt: skip
    with _no_warning_check():
        est.fit(X, y)
    ref = sk.LogisticRegression(C=1 / (1e-4 * len(y))).fit(X, y)
    assert est.coef_.shape == (4, X.shape[1])
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert abs(est.score(X, y) - ref.score(X, y)) < 0.03
    scores = est.decision_function(X)
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(proba, expected / expected.sum(axis=1, keepdims=True))
    with pytest.raises(ValueError, match="multinomial"):
        SGDClassifier(loss="hinge", multi_class="multinomial").fit(X, y)


def _logcosh(y, p):
    return math.log(math.cosh(p - y))


def _dlogcosh(y, p):
    return math.tanh(p - y)


def _half_squared(y, p):
    return 0.5 * (p - y) * (p - y)


def _half_squared_grad(y, p):
    return p - y


def test_custom_loss_equals_builtin_and_trains(backend):
    X, y = _reg_data()
    params = dict(shuffle=False, max_iter=10, tol=None)
    custom = SGDRegressor(loss=CustomLoss(_half_squared, _half_squared_grad), **params)
    builtin = SGDRegressor(loss="squared_error", **params)
    custom.fit(X, y)
    builtin.fit(X, y)
    np.testing.assert_allclose(custom.coef_, builtin.coef_, rtol=1e-12)
    robust = SGDRegressor(
        loss=CustomLoss(_logcosh, _dlogcosh, "logcosh"), random_state=0
    )
    robust.fit(X, y)
    assert robust.score(X, y) > 0.9


def test_custom_loss_clones_and_pickles(backend):
    X, y = _reg_data()
    est = SGDRegressor(loss=CustomLoss(_logcosh, _dlogcosh, "logcosh"), random_state=0)
    assert cross_val_score(est, X, y, cv=3).min() > 0.8  # clones the estimator
    fitted = est.fit(X, y)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    assert again.loss == fitted.loss


def test_custom_loss_that_numba_cannot_compile():
    def bad(y, p):
        return {"y": y}  # a dict is not a float

    with pytest.raises(TypeError, match="bad|compile|numba"):
        CustomLoss(bad, _half_squared_grad)
    with pytest.raises(TypeError, match="functions"):
        CustomLoss(1.0, _half_squared_grad)


def test_pipeline_cross_val_and_grid_search(backend):
    X, y = _clf_data(n=600)
    pipe = make_pipeline(StandardScaler(), SGDClassifier(random_state=0))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.7
    grid = GridSearchCV(SGDClassifier(random_state=0), {"alpha": [1e-4, 1e-2]},
                        scoring="roc_auc", cv=3).fit(X, y)  # fmt: skip
    assert grid.best_score_ > 0.7


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda X, y: SGDClassifier(loss="nope").fit(X, y), ValueError, "loss"),
        (lambda X, y: SGDClassifier(eta0=0.0).fit(X, y), ValueError, "eta0"),
        (lambda X, y: SGDClassifier().fit(X, np.zeros(len(y))), ValueError, "class"),
        (lambda X, y: SGDClassifier().fit(X[:, :0], y), ValueError, "feature"),
        (lambda X, y: SGDClassifier().fit(X[:10], y), ValueError, "samples"),
        (
            lambda X, y: SGDClassifier(optimizer="rmsprop").fit(X, y),
            ValueError,
            "optimizer",
        ),
        (lambda X, y: SGDClassifier(batch_size=0).fit(X, y), ValueError, "batch_size"),
    ],
)
def test_bad_input(make, error, match):
    X, y = _clf_data(n=50)
    with pytest.raises(error, match=match):
        make(X, y)


def test_nan_and_divergence():
    X, y = _clf_data(n=50)
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SGDClassifier().fit(X, y)
    X, y = _reg_data(n=200)
    with pytest.raises(ValueError, match="overflow|diverged"):
        SGDRegressor(learning_rate="constant", eta0=1e300, max_iter=5, tol=None).fit(
            X * 1e10, y
        )
    with pytest.raises(ValueError, match="diverged"):
        SGDRegressor(batch_size=8, learning_rate="constant", eta0=1e300, max_iter=5,
                     tol=None).fit(X * 1e10, y)  # fmt: skip


def test_verbose_prints_epochs(capsys, backend):
    X, y = _clf_data(n=100)
    SGDClassifier(verbose=1, max_iter=3, tol=None).fit(X, y)
    out = capsys.readouterr().out
    assert out.count("-- Epoch") == 3
    assert "Avg. loss" in out


def test_pa_schedules_fall_back_to_sklearn():
    X, y = _clf_data()
    params = dict(learning_rate="pa1", shuffle=False, max_iter=5, tol=None, eta0=1.0)
    ours, theirs = _both(SGDClassifier, sk.SGDClassifier, **params)
    ours.fit(X, y)
    theirs.fit(X, y)
    _assert_same_fit(ours, theirs)


def test_is_a_sklearn_estimator():
    assert isinstance(SGDClassifier(), sk.SGDClassifier)
    assert gradkit.linear_model.SGDRegressor().get_params()["optimizer"] == "sgd"
