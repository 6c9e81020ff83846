"""gradkit.dask.SGDClassifier / SGDRegressor on a 2-process LocalCluster:
mode="sequential" with shuffle=False is the in-memory gradkit fit; mode="average"
reaches a model as good as the in-memory one."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("distributed")

import cloudpickle  # noqa: E402
import dask  # noqa: E402
import dask.array as da  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402

import gradkit.linear_model as memory  # noqa: E402
from gradkit.dask import (  # noqa: E402
    SGDClassifier,
    SGDRegressor,
    _sgd,  # noqa: E402
)

N, D = 12_000, 8
# Unequal row chunks, and y chunked differently from X.
X_CHUNKS = ((2_000, 4_500, 1_500, 4_000), (D,))
Y_CHUNKS = 5_000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, D)) * rng.uniform(0.5, 2.0, size=D)
    w = rng.normal(size=D)
    y2 = np.where(X @ w + 0.3 + rng.logistic(size=N) > 0, 7, 3)  # labels 3 and 7
    W = rng.normal(size=(3, D))
    y3 = np.array([-1, 4, 9])[np.argmax(X @ W.T + rng.gumbel(size=(N, 3)), axis=1)]
    y_reg = X @ w + 1.5 + rng.normal(size=N)
    return X, y2, y3, y_reg


def _dask(X, y):
    return da.from_array(X, chunks=X_CHUNKS), da.from_array(y, chunks=Y_CHUNKS)


def _assert_same_model(est, ref, atol=1e-10):
    assert est.n_iter_ == ref.n_iter_
    assert est.t_ == ref.t_
    assert est.coef_.shape == ref.coef_.shape
    assert est.intercept_.shape == ref.intercept_.shape
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=0, atol=atol)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=0, atol=atol)


CLASSIFIER_CASES = [
    dict(loss="hinge"),
    dict(loss="log_loss", average=True),
    dict(loss="modified_huber", penalty="elasticnet", alpha=1e-3),
    dict(loss="log_loss", learning_rate="adaptive", eta0=0.1),
]


@pytest.mark.parametrize("params", CLASSIFIER_CASES)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_sequential_classifier_equals_in_memory(client, data, params, n_classes):
    X, y2, y3, _ = data
    y = y2 if n_classes == 2 else y3
    Xd, yd = _dask(X, y)
    est = SGDClassifier(mode="sequential", shuffle=False, **params).fit(Xd, yd)
    ref = memory.SGDClassifier(shuffle=False, **params).fit(X, y)
    np.testing.assert_array_equal(est.classes_, ref.classes_)
    _assert_same_model(est, ref)
    assert est.coef_.dtype == ref.coef_.dtype
    assert est.intercept_.dtype == ref.intercept_.dtype

    pred = est.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(X))
    scores = est.decision_function(Xd)
    assert isinstance(scores, da.Array)
    np.testing.assert_allclose(scores.compute(), ref.decision_function(X), atol=1e-9)
    if params["loss"] != "hinge":
        proba = est.predict_proba(Xd)
        assert isinstance(proba, da.Array) and proba.shape == (N, n_classes)
        np.testing.assert_allclose(proba.compute(), ref.predict_proba(X), atol=1e-9)
    else:
        with pytest.raises(AttributeError, match="loss='log_loss'"):
            est.predict_proba(Xd)
    score = est.score(Xd, yd)
    assert isinstance(score, float)
    assert score == pytest.approx(ref.score(X, y), abs=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(loss="huber", average=10, penalty="l1"),
        dict(loss="epsilon_insensitive", learning_rate="constant", eta0=1e-3),
    ],
)
def test_sequential_regressor_equals_in_memory(client, data, params):
    X, _, _, y = data
    Xd, yd = _dask(X, y)
    est = SGDRegressor(mode="sequential", shuffle=False, **params).fit(Xd, yd)
    ref = memory.SGDRegressor(shuffle=False, **params).fit(X, y)
    _assert_same_model(est, ref)
    pred = est.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(pred.compute(), ref.predict(X), atol=1e-9)
    score = est.score(Xd, yd)
    assert isinstance(score, float)
    assert score == pytest.approx(ref.score(X, y), abs=1e-12)


def test_sequential_weights_and_float32_equal_in_memory(client, data):
    X, _, y3, _ = data
    sw = np.random.default_rng(2).uniform(0.2, 2.0, size=N)
    params = dict(loss="log_loss", class_weight="balanced", shuffle=False)
    Xd, yd = _dask(X, y3)
    est = SGDClassifier(mode="sequential", **params).fit(
        Xd, yd, sample_weight=da.from_array(sw, chunks=3_000)
    )
    ref = memory.SGDClassifier(**params).fit(X, y3, sample_weight=sw)
    _assert_same_model(est, ref)

    X32 = X.astype(np.float32)
    weights = {-1: 2.0, 9: 0.5}
    est = SGDClassifier(mode="sequential", shuffle=False, class_weight=weights)
    est.fit(da.from_array(X32, chunks=X_CHUNKS), yd)
    ref = memory.SGDClassifier(shuffle=False, class_weight=weights).fit(X32, y3)
    assert est.coef_.dtype == ref.coef_.dtype == np.float32
    _assert_same_model(est, ref, atol=1e-6)


def test_sequential_shuffle_is_seeded(client, data):
    X, y2, _, _ = data
    Xd, yd = _dask(X, y2)
    params = dict(loss="log_loss", mode="sequential", random_state=3)
    a = SGDClassifier(**params).fit(Xd, yd)
    b = SGDClassifier(**params).fit(Xd, yd)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    unshuffled = SGDClassifier(**{**params, "shuffle": False}).fit(Xd, yd)
    assert not np.array_equal(a.coef_, unshuffled.coef_)
    ref = memory.SGDClassifier(loss="log_loss", random_state=3).fit(X, y2)
    # Another row order of the same algorithm: a model as good.
    assert a.score(Xd, yd) == pytest.approx(ref.score(X, y2), abs=0.01)


def _accuracy_spread(make, X, y, seeds=range(4)):
    """The in-memory fit's accuracies over a few random_states: the noise of SGD."""
    return [make(random_state=s).fit(X, y).score(X, y) for s in seeds]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_average_classifier_as_good_as_in_memory(client, data, n_classes):
    X, y2, y3, _ = data
    y = y2 if n_classes == 2 else y3
    Xd, yd = _dask(X, y)
    est = SGDClassifier(loss="log_loss", random_state=0).fit(Xd, yd)
    assert est.coef_.shape == (1 if n_classes == 2 else 3, D)
    assert est.t_ == 1.0 + est.n_iter_ * N
    accuracies = _accuracy_spread(
        lambda **kw: memory.SGDClassifier(loss="log_loss", **kw), X, y
    )
    # Parameter averaging is a different SGD path: it must score within the
    # in-memory fit's own seed-to-seed spread, widened by 0.01 (a 1 % accuracy
    # difference is ~1.5 standard errors of a 12 000-row accuracy).
    score = est.score(Xd, yd)
    assert min(accuracies) - 0.01 <= score <= max(accuracies) + 0.01
    proba = est.predict_proba(Xd)
    assert isinstance(proba, da.Array)
    ref = memory.SGDClassifier(loss="log_loss", random_state=0).fit(X, y)
    # The log loss of the probabilities, within 5 % of the in-memory model's.
    assert log_loss(y, proba.compute()) <= 1.05 * log_loss(y, ref.predict_proba(X))
    again = SGDClassifier(loss="log_loss", random_state=0).fit(Xd, yd)
    np.testing.assert_array_equal(again.coef_, est.coef_)


def test_average_regressor_as_good_as_in_memory(client, data):
    X, _, _, y = data
    Xd, yd = _dask(X, y)
    est = SGDRegressor(random_state=0).fit(Xd, yd)
    ref = memory.SGDRegressor(random_state=0).fit(X, y)
    # R^2 of a well-specified linear model: SGD's noise moves it by far less
    # than 0.005.
    assert est.score(Xd, yd) == pytest.approx(ref.score(X, y), abs=0.005)
    # Without the shuffle the chunks keep their rows; the model is as good here
    # since the rows were already in random order.
    plain = SGDRegressor(shuffle=False).fit(Xd, yd)
    assert plain.score(Xd, yd) == pytest.approx(ref.score(X, y), abs=0.005)


def test_bad_input(client, data):
    X, y2, _, y_reg = data
    Xd, yd = _dask(X, y2)
    cases = [
        (dict(mode="both"), "mode must be 'average' or 'sequential'"),
        (dict(early_stopping=True), "does not support early_stopping=True"),
        (dict(warm_start=True), "does not support warm_start=True"),
        (dict(optimizer="adam"), "does not support optimizer='adam'"),
        (dict(batch_size=16), "does not support batch_size=16"),
        (dict(learning_rate="pa1"), "does not support learning_rate='pa1'"),
        (dict(average=True), "needs mode='sequential'"),
        (
            dict(loss="log_loss", multi_class="multinomial"),
            "gradkit.dask.LogisticRegression",
        ),
    ]
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            SGDClassifier(**params).fit(Xd, yd)
    # scikit-learn's own parameter checks apply too.
    with pytest.raises(ValueError, match="alpha"):
        SGDClassifier(alpha=-1.0).fit(Xd, yd)
    with pytest.raises(ValueError, match="greater than one"):
        SGDClassifier().fit(Xd, da.ones(N, chunks=5_000))
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        SGDRegressor().fit(Xd, y_reg, sample_weight=np.ones(N - 1))
    with pytest.raises(ValueError, match="different numbers of samples"):
        SGDRegressor().fit(Xd[:-1], y_reg)
    with pytest.raises(NotFittedError):
        SGDClassifier().predict(Xd)
    est = SGDRegressor(max_iter=50).fit(Xd[:2_000], y_reg[:2_000])
    with pytest.raises(ValueError, match="fitted with 8"):
        est.predict(Xd[:, :3])


def _failing_epoch(data, carry, settings, seed):
    raise OSError("simulated worker failure")


@pytest.mark.parametrize("mode", ["average", "sequential"])
def test_failure_mid_fit_leaves_estimator_unfitted(client, data, monkeypatch, mode):
    X, y2, _, _ = data
    Xd, yd = _dask(X, y2)
    # The replacement runs on the worker processes, which cannot import this
    # test module: ship it by value.
    this = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this)
    original = _sgd._DaskSGD._epoch

    def third_epoch_fails(self, chunks, counts, problems, settings, seed, epoch):
        if epoch == 2:
            monkeypatch.setattr(_sgd, "_chunk_epoch", _failing_epoch)
        return original(self, chunks, counts, problems, settings, seed, epoch)

    monkeypatch.setattr(_sgd._DaskSGD, "_epoch", third_epoch_fails)
    est = SGDClassifier(mode=mode, tol=None, max_iter=20)
    try:
        with pytest.raises(RuntimeError, match="failed at epoch 3") as info:
            est.fit(Xd, yd)
    finally:
        cloudpickle.unregister_pickle_by_value(this)
    assert "simulated worker failure" in str(info.value)
    assert not hasattr(est, "coef_")
    with pytest.raises(NotFittedError):
        est.predict(Xd)


def test_works_without_distributed(data):
    # The threaded scheduler shares the client's arrays with the tasks: the
    # chunks' updates must not leak into the states the loop keeps.
    X, _, _, y = data
    Xd, yd = _dask(X, y)
    with dask.config.set(scheduler="threads"):
        est = SGDRegressor(mode="sequential", shuffle=False).fit(Xd, yd)
        averaged = SGDRegressor(random_state=0).fit(Xd, yd)
    ref = memory.SGDRegressor(shuffle=False).fit(X, y)
    _assert_same_model(est, ref)
    assert averaged.score(Xd, yd) == pytest.approx(ref.score(X, y), abs=0.005)
