"""LogisticRegression, LinearRegression and Ridge with gradkit's solvers.

They subclass scikit-learn's estimators: prediction, scoring and every other
solver are scikit-learn's own code. gradkit adds solver="gd" (the default:
full-batch accelerated gradient descent, one fused pass over X per iteration),
"adam" (full-batch Adam) and "sgd" (stochastic gradient descent through
gradkit.linear_model.SGDClassifier / SGDRegressor), all minimizing the same
objective as scikit-learn:

- LogisticRegression: (1 / S) sum_i s_i log_loss_i + ||W||^2 / (2 C S), binomial
  for two classes, multinomial (softmax) for more, S the sum of the sample
  weights times the class weights (scikit-learn's lbfgs objective, L2 only).
- Ridge: sum_i s_i (y_i - p_i)^2 + alpha ||w||^2;  LinearRegression: alpha = 0.

`tol` is the gradient tolerance (max-abs) of the scaled objective for
LogisticRegression, 3% of it for gd and adam (see _GTOL_FACTOR), and relative
to the first gradient for the regressions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import linear_model as sk
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, validate_data

from gradkit.linear_model import _full_batch
from gradkit.linear_model._losses import MULTINOMIAL, LossSpec

_SOLVERS = {"gd", "sgd", "adam"}
#: LogisticRegression's gd and adam stop at max |gradient| <= tol * this. A first-
#: order method meets a gradient tolerance with its objective further from the
#: optimum than L-BFGS does at the same tolerance; 3% of it gives an objective
#: within 1e-6 of (usually below) scikit-learn's lbfgs with the same tol.
_GTOL_FACTOR = 0.03
#: The base learning rate of solver="adam", on the standardized problem.
_ADAM_LR = 0.1


def _solve(
    solver: str,
    f: _full_batch.Objective,
    W0: np.ndarray,
    b0: np.ndarray,
    tol: float,
    max_iter: int,
    verbose: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    theta0 = f.theta(W0, b0)
    if solver == "gd":
        theta, n_iter, converged = _full_batch.gradient_descent(
            f, theta0, tol, max_iter, verbose
        )
    else:
        theta, n_iter, converged = _full_batch.adam(
            f, theta0, tol, max_iter, _ADAM_LR, verbose
        )
    if not converged:
        _full_batch.warn_not_converged(solver, max_iter)
    W, b = f.model(theta)
    return W, b, n_iter


class _NumpyOnly:
    """gradkit's solvers take numpy and scipy input only (no array API)."""

    # Set by fit; declared for the type checker.
    coef_: Any
    intercept_: Any

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.array_api_support = False
        return tags


class LogisticRegression(_NumpyOnly, sk.LogisticRegression):
    """scikit-learn's LogisticRegression with gradkit's solvers "gd" (the
    default), "adam" and "sgd" (L2 penalty only, as C); the other solvers are
    scikit-learn's."""

    _parameter_constraints: dict = {
        **sk.LogisticRegression._parameter_constraints,
        "solver": [
            StrOptions(
                set(sk.LogisticRegression._parameter_constraints["solver"][0].options)
                | _SOLVERS
            )
        ],
    }

    def __init__(
        self,
        penalty: Any = "deprecated",
        *,
        C: float = 1.0,
        l1_ratio: float | None = 0.0,
        dual: bool = False,
        tol: float = 1e-4,
        fit_intercept: bool = True,
        intercept_scaling: float = 1,
        class_weight: Any = None,
        random_state: Any = None,
        solver: str = "gd",
        max_iter: int = 100,
        verbose: int = 0,
        warm_start: bool = False,
        n_jobs: int | None = None,
    ) -> None:
        super().__init__(
            penalty=penalty,
            C=C,
            l1_ratio=l1_ratio,
            dual=dual,
            tol=tol,
            fit_intercept=fit_intercept,
            intercept_scaling=intercept_scaling,
            class_weight=class_weight,
            random_state=random_state,
            solver=solver,
            max_iter=max_iter,
            verbose=verbose,
            warm_start=warm_start,
            n_jobs=n_jobs,
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None, **params: Any) -> Any:
        if self.solver not in _SOLVERS:
            return super().fit(X, y, sample_weight=sample_weight, **params)
        self._validate_params()
        if self.penalty not in ("deprecated", "l2", None) or (self.l1_ratio or 0) != 0:
            raise ValueError(
                f"solver={self.solver!r} supports the L2 penalty only; got "
                f"penalty={self.penalty!r}, l1_ratio={self.l1_ratio!r}. Use "
                "l1_ratio=0, or solver='saga' for L1 and elastic net."
            )
        C = np.inf if self.penalty is None else self.C
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32], order="C"
        )
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {self.classes_[0]!r}"
            )
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        codes = np.searchsorted(self.classes_, y)
        if self.class_weight is not None:
            weights = compute_class_weight(
                self.class_weight,
                classes=self.classes_,
                y=y,
                sample_weight=sample_weight,
            )
            sample_weight = sample_weight * weights[codes]
        S = float(sample_weight.sum())
        l2 = 0.0 if np.isinf(C) else 1.0 / (C * S)
        binary = n_classes == 2
        k = 1 if binary else n_classes
        W0, b0 = np.zeros((k, X.shape[1])), np.zeros(k)
        if self.warm_start and getattr(self, "coef_", None) is not None:
            if self.coef_.shape == W0.shape:
                W0 = np.array(self.coef_, dtype=np.float64)
                b0 = np.array(self.intercept_, dtype=np.float64)
        if self.solver == "sgd":
            W, b, n_iter = self._fit_sgd(X, y, sample_weight, l2, binary)
        else:
            spec = LossSpec(4, label_encode=True) if binary else MULTINOMIAL
            target = codes.astype(np.float64)
            f = _full_batch.Objective(
                X, target, sample_weight, spec, k, l2, self.fit_intercept,
                seed=0 if self.random_state is None else self.random_state,
            )  # fmt: skip
            W, b, n_iter = _solve(
                self.solver, f, W0, b0, self.tol * _GTOL_FACTOR, self.max_iter,
                self.verbose,
            )  # fmt: skip
        self.coef_ = W.astype(X.dtype)
        self.intercept_ = (b if self.fit_intercept else np.zeros(k)).astype(X.dtype)
        self.n_iter_ = np.array([n_iter], dtype=np.int32)
        return self

    def _fit_sgd(
        self, X: Any, y: np.ndarray, sample_weight: np.ndarray, l2: float, binary: bool
    ) -> tuple[np.ndarray, np.ndarray, int]:
        from gradkit.linear_model._sgd import SGDClassifier

        sgd = SGDClassifier(
            loss="log_loss",
            penalty="l2" if l2 else None,
            alpha=l2 if l2 else 0.0001,
            fit_intercept=self.fit_intercept,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
            verbose=self.verbose,
            multi_class="ovr" if binary else "multinomial",
            learning_rate="optimal" if binary and l2 else "adaptive",
        ).fit(X, y, sample_weight=sample_weight * (len(y) / sample_weight.sum()))
        return sgd.coef_, sgd.intercept_, sgd.n_iter_


class _GradkitRegression(_NumpyOnly):
    """Ridge and LinearRegression by gradkit's solvers, on the squared error."""

    solver: str
    fit_intercept: bool
    tol: float
    max_iter: int | None
    random_state: Any

    def _fit_squared_error(
        self, X: Any, y: Any, sample_weight: Any, alpha: float
    ) -> Any:
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse="csr",
            dtype=[np.float64, np.float32],
            order="C",
            y_numeric=True,
            multi_output=True,
        )
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        S = float(sample_weight.sum())
        max_iter = self.max_iter or 1000
        coefs, intercepts, n_iter = [], [], 0
        for j in range(y2.shape[1]):
            target = np.ascontiguousarray(y2[:, j])
            if self.solver == "sgd":
                W, b, n = self._fit_sgd(X, target, sample_weight, alpha, S, max_iter)
            else:
                f = _full_batch.Objective(
                    X, target, sample_weight, LossSpec(0), 1, alpha / S,
                    self.fit_intercept, seed=0,
                )  # fmt: skip
                # tol is relative: the gradient must shrink by tol from the start.
                _, g0 = f(f.theta(np.zeros((1, X.shape[1])), np.zeros(1)))
                gtol = self.tol * max(float(np.abs(g0).max()), 1e-300)
                W, b, n = _solve(self.solver, f, *_zeros(X), gtol, max_iter, 0)
            coefs.append(W[0])
            intercepts.append(b[0] if self.fit_intercept else 0.0)
            n_iter = max(n_iter, n)
        single = y2.shape[1] == 1 and np.ndim(y) == 1
        self.coef_ = np.array(coefs[0] if single else coefs, dtype=X.dtype)
        self.intercept_ = (
            float(intercepts[0]) if single else np.array(intercepts, dtype=X.dtype)
        )
        self.n_iter_ = n_iter
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_sgd(
        self,
        X: Any,
        y: np.ndarray,
        sample_weight: np.ndarray,
        alpha: float,
        S: float,
        max_iter: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        from gradkit.linear_model._sgd import SGDRegressor

        # SGD's objective is the mean of 0.5 (y - p)^2 plus alpha / 2 ||w||^2: the
        # same minimizer as this one with alpha / S.
        sgd = SGDRegressor(
            penalty="l2" if alpha else None,
            alpha=alpha / S if alpha else 0.0001,
            fit_intercept=self.fit_intercept,
            max_iter=max_iter,
            tol=self.tol,
            random_state=self.random_state,
            learning_rate="adaptive",
        ).fit(X, y, sample_weight=sample_weight * (len(y) / S))
        return sgd.coef_[None, :], sgd.intercept_, sgd.n_iter_


def _zeros(X: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((1, X.shape[1])), np.zeros(1)


class Ridge(_GradkitRegression, sk.Ridge):
    """scikit-learn's Ridge with gradkit's solvers "gd" (the default), "adam" and
    "sgd"; the other solvers are scikit-learn's. max_iter=None means 1000."""

    _parameter_constraints: dict = {
        **sk.Ridge._parameter_constraints,
        "solver": [
            StrOptions(
                set(sk.Ridge._parameter_constraints["solver"][0].options) | _SOLVERS
            )
        ],
    }

    def __init__(
        self,
        alpha: Any = 1.0,
        *,
        fit_intercept: bool = True,
        copy_X: bool = True,
        max_iter: int | None = None,
        tol: float = 1e-4,
        solver: str = "gd",
        positive: bool = False,
        random_state: Any = None,
    ) -> None:
        super().__init__(
            alpha=alpha,
            fit_intercept=fit_intercept,
            copy_X=copy_X,
            max_iter=max_iter,
            tol=tol,
            solver=solver,
            positive=positive,
            random_state=random_state,
        )

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        if self.solver not in _SOLVERS:
            return super().fit(X, y, sample_weight=sample_weight)
        self._validate_params()
        if self.positive or np.ndim(self.alpha) > 0:
            raise ValueError(
                f"solver={self.solver!r} supports a scalar alpha and positive=False; "
                "use solver='lbfgs' for positive coefficients and solver='auto' "
                "for one alpha per target."
            )
        self.solver_ = self.solver
        return self._fit_squared_error(X, y, sample_weight, float(self.alpha))


class LinearRegression(_GradkitRegression, sk.LinearRegression):
    """scikit-learn's LinearRegression, solved by gradkit's "gd" (the default),
    "adam" or "sgd"; solver="lstsq" is scikit-learn's exact least squares."""

    _parameter_constraints: dict = {
        **sk.LinearRegression._parameter_constraints,
        "solver": [StrOptions(_SOLVERS | {"lstsq"})],
        "max_iter": [int, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        fit_intercept: bool = True,
        copy_X: bool = True,
        tol: float = 1e-6,
        n_jobs: int | None = None,
        positive: bool = False,
        solver: str = "gd",
        max_iter: int | None = None,
        random_state: Any = None,
    ) -> None:
        super().__init__(
            fit_intercept=fit_intercept,
            copy_X=copy_X,
            tol=tol,
            n_jobs=n_jobs,
            positive=positive,
        )
        self.solver = solver
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        if self.solver == "lstsq" or self.positive:
            return super().fit(X, y, sample_weight=sample_weight)
        self._validate_params()
        return self._fit_squared_error(X, y, sample_weight, 0.0)
