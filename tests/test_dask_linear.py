"""gradkit.dask.LogisticRegression / LinearRegression on a 2-process LocalCluster:
the fit equals the in-memory scikit-learn lbfgs / least-squares fit, binary and
multinomial; a worker killed mid-fit is retried by Dask or fails the fit."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")

import cloudpickle  # noqa: E402
import dask  # noqa: E402
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from sklearn import linear_model as sk  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402

import gradkit.linear_model as memory  # noqa: E402
from gradkit.dask import _linear  # noqa: E402
from gradkit.dask._linear import LinearRegression, LogisticRegression  # noqa: E402

N, D = 20_000, 10
# Unequal row chunks, and y chunked differently from X.
X_CHUNKS = ((3_000, 7_000, 4_500, 5_500), (D,))
Y_CHUNKS = 6_000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D)) * rng.uniform(0.5, 3.0, size=D) + rng.normal(size=D)
    w = rng.normal(size=D)
    logit = (X - X.mean(axis=0)) @ w / 3 + 0.4
    y_clf = np.where(logit + rng.logistic(size=N) > 0, 7, 3)  # labels 3 and 7
    y_reg = X @ w + 1.5 + rng.normal(size=N)
    return X, y_clf, y_reg


@pytest.fixture(scope="module")
def multiclass(data):
    X = data[0]
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, D))
    scores = (X - X.mean(axis=0)) @ W.T / 3 + rng.gumbel(size=(N, 4))
    return np.array([-2, 0, 5, 11])[np.argmax(scores, axis=1)]


def _dask(X, y):
    return da.from_array(X, chunks=X_CHUNKS), da.from_array(y, chunks=Y_CHUNKS)


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_logistic_equals_in_memory(client, data, fit_intercept):
    X, y, _ = data
    Xd, yd = _dask(X, y)
    est = LogisticRegression(C=0.5, fit_intercept=fit_intercept, tol=1e-10)
    est.fit(Xd, yd)
    ref = sk.LogisticRegression(
        C=0.5, fit_intercept=fit_intercept, tol=1e-10, max_iter=1000
    ).fit(X, y)
    assert est.coef_.shape == ref.coef_.shape == (1, D)
    assert est.intercept_.shape == (1,)
    np.testing.assert_array_equal(est.classes_, [3, 7])
    assert _rel(est.coef_, ref.coef_) < 1e-5
    assert abs(est.intercept_[0] - ref.intercept_[0]) < 1e-5 * (
        1 + abs(ref.intercept_[0])
    )
    assert est.n_iter_[0] > 0

    pred = est.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(X))
    proba = est.predict_proba(Xd)
    assert isinstance(proba, da.Array) and proba.shape == (N, 2)
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(
        est.decision_function(Xd).compute(), ref.decision_function(X), atol=1e-5
    )
    score = est.score(Xd, yd)
    assert isinstance(score, float)
    assert score == pytest.approx(ref.score(X, y), abs=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_multinomial_logistic_equals_in_memory(client, data, multiclass, fit_intercept):
    X, y = data[0], multiclass
    Xd, yd = _dask(X, y)
    est = LogisticRegression(C=0.5, fit_intercept=fit_intercept, tol=1e-10)
    est.fit(Xd, yd)
    ref = sk.LogisticRegression(
        C=0.5, fit_intercept=fit_intercept, tol=1e-10, max_iter=1000
    ).fit(X, y)
    in_memory = memory.LogisticRegression(
        solver="lbfgs", C=0.5, fit_intercept=fit_intercept, tol=1e-10, max_iter=1000
    ).fit(X, y)
    assert est.coef_.shape == ref.coef_.shape == (4, D)
    assert est.intercept_.shape == (4,)
    np.testing.assert_array_equal(est.classes_, [-2, 0, 5, 11])
    for other in (ref, in_memory):
        assert _rel(est.coef_, other.coef_) < 1e-5
        np.testing.assert_allclose(est.intercept_, other.intercept_, atol=1e-5)

    pred = est.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_array_equal(pred.compute(), ref.predict(X))
    proba = est.predict_proba(Xd)
    assert isinstance(proba, da.Array) and proba.shape == (N, 4)
    np.testing.assert_allclose(proba.compute(), ref.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(da.exp(est.predict_log_proba(Xd)), proba, rtol=1e-12)
    scores = est.decision_function(Xd)
    assert isinstance(scores, da.Array) and scores.shape == (N, 4)
    np.testing.assert_allclose(scores.compute(), ref.decision_function(X), atol=1e-5)
    score = est.score(Xd, yd)
    assert isinstance(score, float)
    assert score == pytest.approx(ref.score(X, y), abs=1e-12)
    w = np.random.default_rng(3).uniform(0, 2, N)
    expected = accuracy_score(y, est.predict(Xd).compute(), sample_weight=w)
    assert est.score(Xd, yd, sample_weight=w) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_linear_regression_equals_in_memory(client, data, fit_intercept):
    X, _, y = data
    Xd, yd = _dask(X, y)
    est = LinearRegression(fit_intercept=fit_intercept, tol=1e-10).fit(Xd, yd)
    ref = sk.LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    assert est.coef_.shape == ref.coef_.shape == (D,)
    assert _rel(est.coef_, ref.coef_) < 1e-5
    assert est.intercept_ == pytest.approx(ref.intercept_, rel=1e-5, abs=1e-5)
    pred = est.predict(Xd)
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(pred.compute(), ref.predict(X), rtol=1e-6, atol=1e-5)
    score = est.score(Xd, yd)
    assert isinstance(score, float)
    assert score == pytest.approx(ref.score(X, y), rel=1e-9)
    w = np.random.default_rng(3).uniform(0, 2, N)
    expected = r2_score(y, pred.compute(), sample_weight=w)
    assert est.score(Xd, yd, sample_weight=w) == pytest.approx(expected, rel=1e-12)


def test_numpy_y_and_column_chunks_are_aligned(client, data):
    X, y, _ = data
    # Column chunks get merged; a numpy y gets X's row chunks.
    Xd = da.from_array(X, chunks=(4_000, 3))
    est = LogisticRegression(tol=1e-10).fit(Xd, y)
    ref = sk.LogisticRegression(tol=1e-10, max_iter=1000).fit(X, y)
    assert _rel(est.coef_, ref.coef_) < 1e-5


def test_unknown_chunk_sizes_are_measured(client, data):
    X, y, _ = data
    keep = np.random.default_rng(4).random(N) < 0.7
    Xd, yd = _dask(X, y)
    Xm = Xd[da.from_array(keep, chunks=X_CHUNKS[0])]
    ym = yd[da.from_array(keep, chunks=Y_CHUNKS)]
    assert np.isnan(Xm.shape[0]) and np.isnan(ym.shape[0])
    est = LogisticRegression(tol=1e-10).fit(Xm, ym)
    ref = sk.LogisticRegression(tol=1e-10, max_iter=1000).fit(X[keep], y[keep])
    assert _rel(est.coef_, ref.coef_) < 1e-5
    assert np.isnan(Xm.shape[0]) and np.isnan(ym.shape[0])  # the caller's arrays


def test_bad_input(client, data):
    X, y, y_reg = data
    Xd, yd = _dask(X, y)
    with pytest.raises(ValueError, match="at least 2 classes in y, got 1"):
        LogisticRegression().fit(Xd, da.ones(N, chunks=5_000))
    with pytest.raises(ValueError, match="different numbers of samples"):
        LogisticRegression().fit(Xd, yd[:-5])
    with pytest.raises(ValueError, match="different numbers of samples"):
        LinearRegression().fit(Xd[:-1], da.from_array(y_reg))
    with pytest.raises(ValueError, match="2-D"):
        LinearRegression().fit(Xd[:, 0], yd)
    with pytest.raises(ValueError, match="C must be positive"):
        LogisticRegression(C=0).fit(Xd, yd)
    with pytest.raises(NotFittedError):
        LogisticRegression().predict(Xd)
    est = LinearRegression().fit(Xd[:2_000], da.from_array(y_reg[:2_000]))
    with pytest.raises(ValueError, match="fitted with 10"):
        est.predict(Xd[:, :3])


def _failing_chunk(X, y, coef, intercept, loss):
    raise OSError("simulated worker failure")


def test_failure_mid_fit_leaves_estimator_unfitted(client, data, monkeypatch):
    X, y, _ = data
    Xd, yd = _dask(X, y)
    # The replacement runs on the worker processes, which cannot import this
    # test module: ship it by value.
    this = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this)
    calls = []
    original = _linear._loss_grad_sum

    def third_call_fails(X, y, coef, intercept, loss):
        calls.append(1)
        if len(calls) < 3:
            return original(X, y, coef, intercept, loss)
        monkeypatch.setattr(_linear, "_chunk_loss_grad", _failing_chunk)
        return original(X, y, coef, intercept, loss)

    monkeypatch.setattr(_linear, "_loss_grad_sum", third_call_fails)
    est = LogisticRegression(tol=1e-10)
    try:
        with pytest.raises(RuntimeError, match="evaluation 3") as info:
            est.fit(Xd, yd)
    finally:
        cloudpickle.unregister_pickle_by_value(this)
    assert "simulated worker failure" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert not hasattr(est, "coef_")
    assert not hasattr(est, "classes_")
    with pytest.raises(NotFittedError):
        est.predict(Xd)


def _dies_once(marker, after_calls, chunk_loss_grad):
    """A chunk task that kills its own worker process (SIGKILL, no cleanup) on
    call number after_calls, counted over all workers by files beside marker;
    only the first process to create marker dies, so the retry runs normally."""

    def task(X, y, coef, intercept, loss):
        folder = os.path.dirname(marker)
        open(os.path.join(folder, f"call-{os.getpid()}-{os.urandom(8).hex()}"), "w")
        calls = sum(name.startswith("call-") for name in os.listdir(folder))
        if calls >= after_calls:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return chunk_loss_grad(X, y, coef, intercept, loss)

    return task


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_worker_killed_mid_fit(data, tmp_path, monkeypatch, allowed_failures):
    """A worker process dies during the third objective evaluation. With Dask's
    retries (allowed-failures 3, its default) the task is rerun elsewhere and the
    fit equals the normal fit; with none, fit raises RuntimeError and the
    estimator stays unfitted. Never a half-trained model."""
    X, y, _ = data
    Xd, yd = _dask(X, y)
    expected = LogisticRegression(tol=1e-8).fit(Xd, yd)
    marker = str(tmp_path / "killed")
    n_chunks = len(X_CHUNKS[0])
    task = _dies_once(marker, 2 * n_chunks + 1, _linear._chunk_loss_grad)
    this = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(this)
    monkeypatch.setattr(_linear, "_chunk_loss_grad", task)
    # Its own cluster: one of its workers dies (the nanny starts a new one).
    config = {"distributed.scheduler.allowed-failures": allowed_failures}
    try:
        with (
            dask.config.set(config),
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster),
        ):  # fmt: skip
            est = LogisticRegression(tol=1e-8)
            if allowed_failures:
                est.fit(Xd, yd)
            else:
                with pytest.raises(RuntimeError, match="evaluation 3") as info:
                    est.fit(Xd, yd)
    finally:
        cloudpickle.unregister_pickle_by_value(this)
    assert os.path.exists(marker), "no worker was killed"
    if allowed_failures:
        np.testing.assert_allclose(est.coef_, expected.coef_, rtol=1e-12)
        np.testing.assert_allclose(est.intercept_, expected.intercept_, rtol=1e-12)
        assert est.n_iter_[0] == expected.n_iter_[0]
    else:
        assert "KilledWorker" in str(info.value)
        assert "not fitted" in str(info.value)
        assert not hasattr(est, "coef_")
        with pytest.raises(NotFittedError):
            est.predict(Xd)
