"""Training on a dense 1,000,000 x 100 float64 matrix, gradkit next to its peers.

    python -m pytest bench/test_bench_train.py --benchmark-only
    GRADKIT_BENCH_TRAIN_N=2e5 python -m pytest bench/test_bench_train.py \
        --benchmark-only

Groups: SGDClassifier (hinge, log_loss) and SGDRegressor, 5 epochs with tol=None,
gradkit cpp / numba against scikit-learn with the same parameters; one fused
logistic loss + gradient pass against numpy's X @ w; LogisticRegression
(solver="gd") against scikit-learn's lbfgs. Every gradkit benchmark asserts its
quality against the peer's: test accuracy / R2 within 0.5 points, the logistic
objective no more than 1e-6 above lbfgs's. The data and cases are those of
`gradkit bench train` (gradkit._bench_train). The fits take seconds, so each runs
a fixed number of rounds (GRADKIT_BENCH_TRAIN_ROUNDS, default 2).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest
import sklearn.linear_model as sk
from sklearn.exceptions import ConvergenceWarning

import gradkit
from gradkit import _config
from gradkit import linear_model as gk
from gradkit._bench_train import (
    EPOCHS,
    FULL_SHAPE,
    _logistic_objective,
    make_train_data,
)

N = int(float(os.environ.get("GRADKIT_BENCH_TRAIN_N", FULL_SHAPE[0])))
ROUNDS = int(os.environ.get("GRADKIT_BENCH_TRAIN_ROUNDS", 2))
LIBRARIES = ("sklearn", "cpp", "numba")
SGD_CASES = {
    "SGDClassifier(hinge)": (sk.SGDClassifier, gk.SGDClassifier, "y_clf", "hinge"),
    "SGDClassifier(log_loss)": (
        sk.SGDClassifier,
        gk.SGDClassifier,
        "y_clf",
        "log_loss",
    ),
    "SGDRegressor": (sk.SGDRegressor, gk.SGDRegressor, "y_reg", "squared_error"),
}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return make_train_data(N, FULL_SHAPE[1])


@pytest.fixture(scope="module")
def peer_scores() -> dict[str, float]:
    return {}


def _split(data: dict[str, np.ndarray], key: str) -> tuple[Any, Any, Any, Any]:
    cut = N - N // 5
    return data["X"][:cut], data[key][:cut], data["X"][cut:], data[key][cut:]


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd(benchmark, data, peer_scores, case, library):
    peer_cls, ours_cls, target, loss = SGD_CASES[case]
    Xt, yt, Xv, yv = _split(data, target)
    params = dict(loss=loss, max_iter=EPOCHS, tol=None, random_state=0)
    benchmark.group = f"{case}, {EPOCHS} epochs, {N:,} x {FULL_SHAPE[1]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if library == "sklearn":
            est = benchmark.pedantic(
                lambda: peer_cls(**params).fit(Xt, yt), rounds=ROUNDS
            )
            peer_scores[case] = est.score(Xv, yv)
            return
        with gradkit.config_context(backend=library):
            ours_cls(**params).fit(Xt[:1000], yt[:1000])  # compile outside the timing
            est = benchmark.pedantic(
                lambda: ours_cls(**params).fit(Xt, yt), rounds=ROUNDS
            )
    want = peer_scores.get(case)
    if want is None:
        want = peer_cls(**params).fit(Xt, yt).score(Xv, yv)
    assert est.score(Xv, yv) >= want - 0.005


@pytest.mark.parametrize("library", ("numpy X @ w", "cpp", "numba"))
def test_gradient_pass(benchmark, data, library):
    X, w = data["X"], data["w"]
    y = data["y_clf"].astype(np.float64)
    benchmark.group = f"logistic loss + gradient, one pass over {N:,} x {FULL_SHAPE[1]}"
    if library == "numpy X @ w":
        benchmark(lambda: X @ w)
        return
    with gradkit.config_context(backend=library):
        kernels = _config.kernels("linear")
        g, gb = np.empty((1, X.shape[1])), np.empty(1)
        args = (X, None, None, y, None, None, w[None, :].copy(), np.zeros(1), 4, 0.0,
                g, gb, _config.n_threads())  # fmt: skip
        kernels.loss_grad(*args)
        benchmark(kernels.loss_grad, *args)
    p = 1.0 / (1.0 + np.exp(-(X @ w)))
    np.testing.assert_allclose(g[0], (p - y) @ X, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("library", LIBRARIES)
def test_logistic_regression(benchmark, data, peer_scores, library):
    X, y = data["X"], data["y_clf"]
    benchmark.group = f"LogisticRegression, {N:,} x {FULL_SHAPE[1]}"
    if library == "sklearn":
        est = benchmark.pedantic(
            lambda: sk.LogisticRegression().fit(X, y), rounds=ROUNDS
        )
        peer_scores["logistic"] = _logistic_objective(est, X, y)
        return
    with gradkit.config_context(backend=library):
        gk.LogisticRegression().fit(X[:1000], y[:1000])
        est = benchmark.pedantic(
            lambda: gk.LogisticRegression().fit(X, y), rounds=ROUNDS
        )
    want = peer_scores.get("logistic")
    if want is None:
        want = _logistic_objective(sk.LogisticRegression().fit(X, y), X, y)
    assert _logistic_objective(est, X, y) <= want * (1 + 1e-6)
