"""LogisticRegression and LinearRegression fitted on dask arrays.

The rows of X live on the workers, persisted once; the model is a few numbers.
Every evaluation of the objective is one dask computation: each row chunk's
loss and gradient come from gradkit's fused loss_grad kernel on the worker that
holds the chunk, and the (k (d + 1) + 1)-float partial results are summed in a tree.
scipy's L-BFGS-B drives the evaluations from the client, so the fit is
scikit-learn's lbfgs fit on the same objective, and its result equals the
in-memory one to the optimizer's tolerance:

- LogisticRegression: (1 / n) sum_i log_loss_i + ||W||^2 / (2 C n), the binomial
  loss for two classes, the multinomial (softmax) loss for more
- LinearRegression: (1 / n) sum_i (y_i - p_i)^2 / 2

The optimizer works in standardized coordinates (u = w * sigma, c = b + w . mu,
with the column means and spreads of X, found in the same pass that checks y),
as gradkit.linear_model._full_batch does: the same model, better conditioned.

A failed evaluation (a task raising, a worker lost more often than Dask's
retries allow) makes fit raise RuntimeError naming the evaluation; the estimator
is left without coef_, never half trained.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from gradkit import _config
from gradkit.dask._metrics import accuracy_score, r2_score
from gradkit.dask._tasks import one_thread_per_task, with_known_chunks

__all__ = ["LinearRegression", "LogisticRegression"]

_SQUARED_ERROR = 0
_LOG_LOSS = 4
_MULTINOMIAL = 8


@one_thread_per_task
def _chunk_loss_grad(
    X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray, loss: int
) -> np.ndarray:
    """[sum loss, grad_coef (k d, row-major), grad_intercept (k)] of one row chunk,
    as a (1, k (d + 1) + 1) block. Runs on the worker holding the chunk."""
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    y = np.ascontiguousarray(y.reshape(-1), dtype=np.float64)
    k, d = coef.shape
    grad_coef = np.empty((k, d))
    grad_intercept = np.empty(k)
    total = _config.kernels("linear").loss_grad(
        X, None, None, y, None, None, coef, intercept, loss, 0.0,
        grad_coef, grad_intercept, _config.n_threads(),
    )  # fmt: skip
    return np.concatenate([[total], grad_coef.ravel(), grad_intercept])[None, :]


def _loss_grad_sum(
    X: da.Array, y: da.Array, coef: np.ndarray, intercept: np.ndarray, loss: int
) -> np.ndarray:
    """[sum loss, grad_coef, grad_intercept] over all rows: one dask computation.
    The model is embedded in the graph (k (d + 1) floats, smaller than a
    scatter's round trip)."""
    k, d = coef.shape
    parts = da.map_blocks(
        _chunk_loss_grad,
        X,
        y[:, None],
        coef=coef,
        intercept=intercept,
        loss=loss,
        chunks=((1,) * X.numblocks[0], (k * (d + 1) + 1,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )
    return np.asarray(parts.sum(axis=0).compute())


def _as_dask(a: Any, name: str) -> da.Array:
    if isinstance(a, da.Array):
        return a
    if hasattr(a, "shape") or isinstance(a, list | tuple):
        return da.from_array(np.asarray(a))
    raise TypeError(f"{name} must be a dask or numpy array, got {type(a).__name__}.")


def _check_X(X: Any, n_features: int | None = None) -> da.Array:
    X = _as_dask(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got {X.ndim}-D.")
    X = with_known_chunks(X)  # rows of unknown count (a boolean mask, say)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but the model was fitted with {n_features}."
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    # The kernel takes whole rows: one chunk across the columns.
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


def _check_Xy(X: Any, y: Any) -> tuple[da.Array, da.Array]:
    X = _check_X(X)
    y = _as_dask(y, "y")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,), got shape {y.shape}.")
    y = with_known_chunks(y)
    if y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and y have different numbers of samples: {X.shape[0]} and {y.shape[0]}."
        )
    if X.shape[0] == 0:
        raise ValueError("X and y have no samples; fit needs at least one.")
    if y.chunks[0] != X.chunks[0]:
        y = y.rechunk({0: X.chunks[0]})
    return X, y


def _fit_lbfgs(
    X: da.Array,
    y: da.Array,
    loss: int,
    n_outputs: int,
    l2: float,
    fit_intercept: bool,
    mean: np.ndarray,
    spread: np.ndarray,
    tol: float,
    max_iter: int,
    name: str,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(coef (k, d), intercept (k,), n_iter) minimizing
    (1 / n) sum loss + l2 / 2 ||W||^2, k = n_outputs."""
    n, d = X.shape
    k = n_outputs
    if fit_intercept:
        mu = mean
        sigma = np.where(spread > 1e-12 * (1 + np.abs(mean)), spread, 1.0)
    else:  # no centering: scale by the root mean square
        mu = np.zeros(d)
        rms = np.sqrt(spread**2 + mean**2)
        sigma = np.where(rms > 1e-12, rms, 1.0)
    evaluations = 0

    def model(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta = theta.reshape(k, d + 1)
        W = theta[:, :d] / sigma
        b = theta[:, d] - W @ mu if fit_intercept else np.zeros(k)
        return W, b

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        evaluations += 1
        W, b = model(theta)
        try:
            total = _loss_grad_sum(X, y, np.ascontiguousarray(W), b, loss)
        except Exception as exc:
            raise RuntimeError(
                f"{name}.fit failed at evaluation {evaluations} of the objective "
                f"(a task on the dask cluster raised {type(exc).__name__}: {exc}); "
                "the estimator was not fitted."
            ) from exc
        gW = total[1 : k * d + 1].reshape(k, d) / n + l2 * W
        gb = total[k * d + 1 :] / n
        grad = np.zeros((k, d + 1))
        # Chain rule back to theta: b depends on U through -W mu.
        grad[:, :d] = (gW - np.outer(gb, mu)) / sigma
        if fit_intercept:
            grad[:, d] = gb
        value = total[0] / n + 0.5 * l2 * float(np.sum(W * W))
        return float(value), grad.ravel()

    result = minimize(
        objective,
        np.zeros(k * (d + 1)),
        method="L-BFGS-B",
        jac=True,
        # scikit-learn's lbfgs options, for the same stopping point.
        options={
            "maxiter": max_iter,
            "maxls": 50,
            "gtol": tol,
            "ftol": 64 * np.finfo(float).eps,
        },
    )
    if not np.all(np.isfinite(result.x)):
        raise RuntimeError(f"{name}.fit diverged: the coefficients are not finite.")
    if result.status == 1:
        warnings.warn(
            f"{name}: L-BFGS did not converge in max_iter={max_iter} iterations; "
            "increase max_iter or scale the data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    W, b = model(result.x)
    return W, b, int(result.nit)


def _decision(X: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """X @ coef.T + intercept: (n,) for one output row, else (n, k)."""
    out = np.asarray(X, dtype=np.float64) @ coef.T + intercept
    return out[:, 0] if coef.shape[0] == 1 else out


def _decision_dask(X: da.Array, coef: np.ndarray, intercept: np.ndarray) -> da.Array:
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.ravel(np.asarray(intercept, dtype=np.float64))
    k = coef.shape[0]
    if k == 1:
        return da.map_blocks(
            _decision, X, coef, intercept, drop_axis=1, dtype=np.float64,
            meta=np.empty((0,)),
        )  # fmt: skip
    return da.map_blocks(
        _decision, X, coef, intercept, chunks=(X.chunks[0], (k,)), dtype=np.float64,
        meta=np.empty((0, 0)),
    )  # fmt: skip


def _take(index: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return classes[index.astype(np.intp)]


def _argmax(scores: np.ndarray) -> np.ndarray:
    return np.argmax(scores, axis=1)


def _predict_labels(scores: da.Array, classes: np.ndarray) -> da.Array:
    """Labels from decision scores: (n,) positive-class scores, or (n, k) argmax."""
    if scores.ndim == 1:
        index = scores > 0
    else:
        index = da.map_blocks(
            _argmax, scores, drop_axis=1, dtype=np.intp, meta=np.empty((0,), np.intp)
        )
    return da.map_blocks(
        _take, index, classes, dtype=classes.dtype, meta=np.empty((0,), classes.dtype)
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, overflow-free


def _binary_proba(z: np.ndarray) -> np.ndarray:
    p = _sigmoid(z)
    return np.stack([1.0 - p, p], axis=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _proba_dask(scores: da.Array, block_proba: Any, k: int) -> da.Array:
    """Per-block probabilities (n, k) from the decision scores."""
    if scores.ndim == 1:
        return da.map_blocks(
            block_proba, scores, new_axis=1, chunks=(scores.chunks[0], (k,)),
            dtype=np.float64, meta=np.empty((0, 0)),
        )  # fmt: skip
    return da.map_blocks(block_proba, scores, dtype=np.float64, meta=np.empty((0, 0)))


def classifier_score(model: Any, X: Any, y: Any, sample_weight: Any) -> float:
    """Mean accuracy of model.predict(X) against y, as scikit-learn's score."""
    X, y = _check_Xy(X, y)
    return accuracy_score(y, model.predict(X), sample_weight=sample_weight)


def regressor_score(model: Any, X: Any, y: Any, sample_weight: Any) -> float:
    """R^2 of model.predict(X) against y, as scikit-learn's score."""
    X, y = _check_Xy(X, y)
    return float(r2_score(y, model.predict(X), sample_weight=sample_weight))


class _DaskLinear(BaseEstimator):
    """What gradkit.dask's linear models share: the fitted check, the decision
    function as a dask array."""

    coef_: np.ndarray
    intercept_: Any

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; "
                "call fit first."
            )

    def _decision(self, X: Any) -> da.Array:
        self._check_fitted()
        X = _check_X(X, self.n_features_in_)
        return _decision_dask(X, self.coef_, self.intercept_)


def _column_stats(X: da.Array) -> tuple[da.Array, da.Array]:
    """X's column means and spreads (lazy): L-BFGS works in standardized
    coordinates."""
    return X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)


def _class_index(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return np.searchsorted(classes, y).astype(np.float64)


class LogisticRegression(ClassifierMixin, _DaskLinear):
    """L2 logistic regression on dask arrays, fitted by L-BFGS over the workers:
    scikit-learn's LogisticRegression(solver="lbfgs") objective, with its C,
    fit_intercept, tol and max_iter. Two classes: the binomial loss, coef_
    (1, d); more: the multinomial (softmax) loss, coef_ (n_classes, d), as
    scikit-learn does.

    X: a dask array (n_samples, n_features), split into row chunks only (column
    chunks are merged); y: 1-D with at least two classes, rechunked to X's rows.
    Both are persisted once; every L-BFGS evaluation is one pass of gradkit's
    fused loss and gradient kernel over each chunk, on the worker that holds it.
    """

    def __init__(
        self,
        C: float = 1.0,
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 100,
    ) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LogisticRegression:
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C!r}.")
        X, y = _check_Xy(X, y)
        X, y = dask.persist(X, y)
        mean, spread = _column_stats(X)
        classes, mean, spread = dask.compute(da.unique(y), mean, spread)
        if len(classes) < 2:
            raise ValueError(
                "gradkit.dask.LogisticRegression needs at least 2 classes in y, "
                f"got {len(classes)} ({classes.tolist()})."
            )
        if len(classes) == 2:
            loss, k = _LOG_LOSS, 1
            target = (y == classes[1]).astype(np.float64)
        else:
            # The kernel's multinomial loss takes the class index as a float.
            loss, k = _MULTINOMIAL, len(classes)
            target = da.map_blocks(_class_index, y, classes, dtype=np.float64)
        n = X.shape[0]
        coef, intercept, n_iter = _fit_lbfgs(
            X, target, loss, k, 1.0 / (self.C * n), self.fit_intercept,
            mean, spread, self.tol, self.max_iter, type(self).__name__,
        )  # fmt: skip
        # Only a finished fit sets the attributes.
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.n_iter_ = np.array([n_iter])
        self.intercept_ = intercept
        self.coef_ = coef
        return self

    def decision_function(self, X: Any) -> da.Array:
        """X @ coef_.T + intercept_, a dask array: (n_samples,) for two classes,
        (n_samples, n_classes) for more."""
        return self._decision(X)

    def predict_proba(self, X: Any) -> da.Array:
        """Class probabilities, a dask array (n_samples, n_classes) in classes_
        order: the sigmoid for two classes, the softmax for more."""
        scores = self.decision_function(X)
        block_proba = _binary_proba if scores.ndim == 1 else _softmax
        return _proba_dask(scores, block_proba, len(self.classes_))

    def predict_log_proba(self, X: Any) -> da.Array:
        return da.log(self.predict_proba(X))

    def predict(self, X: Any) -> da.Array:
        """Predicted class labels, a dask array (n_samples,)."""
        return _predict_labels(self.decision_function(X), self.classes_)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy on (X, y), a float."""
        return classifier_score(self, X, y, sample_weight)


class LinearRegression(RegressorMixin, _DaskLinear):
    """Ordinary least squares on dask arrays, fitted by L-BFGS over the workers
    (the same model as scikit-learn's LinearRegression, to the tolerance).

    tol is L-BFGS's gradient tolerance on (1 / n) sum (y - p)^2 / 2 in
    standardized coordinates; max_iter bounds its iterations.
    """

    def __init__(
        self, fit_intercept: bool = True, tol: float = 1e-6, max_iter: int = 200
    ) -> None:
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LinearRegression:
        X, y = _check_Xy(X, y)
        y = y.astype(np.float64)
        X, y = dask.persist(X, y)
        mean, spread = dask.compute(*_column_stats(X))
        coef, intercept, n_iter = _fit_lbfgs(
            X, y, _SQUARED_ERROR, 1, 0.0, self.fit_intercept, mean, spread,
            self.tol, self.max_iter, type(self).__name__,
        )  # fmt: skip
        self.n_features_in_ = X.shape[1]
        self.n_iter_ = n_iter
        self.intercept_ = float(intercept[0])
        self.coef_ = coef[0]
        return self

    def predict(self, X: Any) -> da.Array:
        """x . coef + intercept per row, a dask array (n_samples,)."""
        return self._decision(X)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of the predictions on (X, y), a float."""
        return regressor_score(self, X, y, sample_weight)
