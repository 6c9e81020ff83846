"""SGDClassifier and SGDRegressor: scikit-learn's, with gradkit's kernels inside.

They subclass scikit-learn's estimators, so parameters, defaults, validation,
attributes, partial_fit, warm_start, class weights, the early-stopping split and
predict / predict_proba are scikit-learn's own code. What changes is the training
loop: scikit-learn's per-sample `_plain_sgd` is replaced by gradkit's `sgd_epoch`
kernel (C++ or numba, one call per epoch), which follows it operation by operation.
The epoch loop (shuffling, the stopping test, the adaptive schedule, verbose
output) is here, in Python, once per epoch.

Differences from scikit-learn, all deliberate:
- Shuffling uses numpy's Generator seeded from random_state, not scikit-learn's
  xorshift, so a shuffled fit is statistically, not bitwise, the same model. With
  shuffle=False both follow the same order and agree to rounding.
- The early-stopping score is computed with the true weights (scikit-learn passes
  its internal unscaled weight buffer, and 0/1 targets with -1/1 classes for
  log_loss).
- Extra parameters: optimizer="sgd" | "adam", batch_size, multi_class="ovr" |
  "multinomial", and loss= a gradkit.linear_model.CustomLoss. Mini-batches, Adam
  and the multinomial loss train through the fused loss/gradient kernel instead
  (see _minibatch.py). learning_rate="pa1"/"pa2" (passive-aggressive) run
  scikit-learn's own loop.

The private hooks overridden (_fit_binary, _fit_multiclass, _fit_regressor) and the
private attributes used (_expanded_class_weight, _standard_coef, ...) are those of
scikit-learn 1.9; tests/test_sgd.py fails loudly if a release changes them.
"""

from __future__ import annotations

import time
from numbers import Integral
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn import linear_model as sk
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from gradkit import _config
from gradkit.linear_model import _minibatch
from gradkit.linear_model._losses import (
    CustomLoss,
    LossSpec,
    kernel_data,
    linear_kernels,
    loss_spec,
    optimal_init,
)

_MAX_SEED = np.iinfo(np.int32).max
_PENALTY = {None: 0, "none": 0, "l2": 1, "l1": 2, "elasticnet": 3}
_LEARNING_RATE = {"constant": 1, "optimal": 2, "invscaling": 3, "adaptive": 4}
_EXTRA_CONSTRAINTS: dict = {
    "optimizer": [StrOptions({"sgd", "adam"})],
    "batch_size": [Interval(Integral, 1, None, closed="left"), None],
}

_DIVERGED = (
    "Floating-point under-/overflow occurred at epoch #{}. Scaling input data with "
    "StandardScaler or MinMaxScaler might help."
)


class _GradkitSGD:
    """What SGDClassifier and SGDRegressor add to scikit-learn's base classes."""

    optimizer: str
    batch_size: int | None
    loss: Any
    average: bool | int
    # Set by scikit-learn's fit; declared for the type checker.
    coef_: Any
    intercept_: Any
    _standard_intercept: Any
    _average_intercept: Any
    penalty: str | None
    learning_rate: str

    def _get_loss_function(self, loss: Any) -> Any:
        if isinstance(loss, CustomLoss):
            return loss
        return super()._get_loss_function(loss)  # type: ignore[misc]

    def _uses_minibatch(self) -> bool:
        return (
            self.optimizer != "sgd"
            or (self.batch_size or 1) > 1
            or getattr(self, "multi_class", "ovr") == "multinomial"
        )

    def _check_gradkit_params(self) -> None:
        """What the mini-batch path (Adam, batch_size > 1, multinomial) lacks."""
        if self._uses_minibatch() and self.average:
            raise ValueError(
                "average is only available for plain SGD (optimizer='sgd', "
                "batch_size=None or 1, multi_class='ovr')."
            )
        if self._uses_minibatch() and isinstance(self.loss, CustomLoss):
            raise ValueError(
                "A CustomLoss trains one row at a time: use optimizer='sgd', "
                "batch_size=None and multi_class='ovr' with it."
            )

    def _uses_sklearn_loop(self, learning_rate: str) -> bool:
        return learning_rate not in _LEARNING_RATE

    def _loss_spec(self) -> LossSpec:
        return loss_spec(self.loss, getattr(self, "epsilon", 0.1))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.input_tags.sparse = True
        return tags


def _run_plain_sgd(
    est: Any,
    X: Any,
    y: np.ndarray,
    sample_weight: np.ndarray,
    weights: np.ndarray,
    intercept: float,
    average_weights: np.ndarray | None,
    average_intercept: float,
    alpha: float,
    learning_rate: str,
    max_iter: int,
    weight_pos: float,
    weight_neg: float,
    validation_mask: np.ndarray,
    score_cb: Any,
    seed: int,
) -> tuple[float, float, int]:
    """scikit-learn's _plain_sgd with gradkit's epoch kernel.

    weights (and average_weights) are updated in place. Returns
    (intercept, average_intercept, n_iter).
    """
    spec = est._loss_spec()
    kernels = linear_kernels(spec)
    Xd, Xi, Xp = kernel_data(X)
    penalty = _PENALTY[est.penalty]
    l1_ratio = {1: 0.0, 2: 1.0}.get(penalty, float(est._get_l1_ratio()))
    rate = _LEARNING_RATE[learning_rate]
    init = optimal_init(alpha, spec) if rate == 2 else 0.0
    tol = est.tol if est.tol is not None else -np.inf
    rows = np.flatnonzero(~validation_mask).astype(np.int64)
    train_count = max(len(rows), 1)
    y64 = np.ascontiguousarray(y, dtype=np.float64)
    sw64 = np.ascontiguousarray(sample_weight, dtype=np.float64)
    l1_q = np.zeros_like(weights) if penalty in (2, 3) else None
    state = np.array(
        [
            intercept,
            average_intercept,
            est.t_,
            est.eta0,
            0.0,
            1.0,
            float(np.dot(weights, weights)),
            float(np.abs(weights).sum()),
            0.0,
            1.0,
        ]
    )
    # The losses feed the stopping test and the verbose report only (scikit-learn
    # sums them whenever early stopping is off, tol=None included).
    compute_loss = bool(est.verbose) or (not est.early_stopping and tol > -np.inf)
    rng = np.random.default_rng(seed)
    best_objective, best_score = np.inf, -np.inf
    no_improvement = 0
    count = 0
    started = time.time()
    epoch = 0
    for epoch in range(max_iter):  # noqa: B007 - epoch is reported after the loop
        if est.verbose > 0:
            print(f"-- Epoch {epoch + 1}")
        order = rng.permutation(rows) if est.shuffle else rows
        sumloss, objective_sum = kernels.sgd_epoch(
            Xd, Xi, Xp, y64, sw64, order, weights, average_weights, l1_q, state,
            spec.code, spec.param, penalty, alpha, l1_ratio, rate, est.eta0,
            est.power_t, init, bool(est.fit_intercept), _intercept_decay(X),
            weight_pos, weight_neg, int(est.average), compute_loss,
        )  # fmt: skip
        count += len(rows)
        # scikit-learn checks the weights; an infinite loss (finite weights that
        # overflow the predictions) is as much a divergence.
        diverged = not np.isfinite(state[0]) or not np.isfinite(weights).all()
        if diverged or not np.isfinite(sumloss):
            raise ValueError(_DIVERGED.format(epoch + 1))
        report = ""
        if est.early_stopping:
            score = score_cb(weights * state[5], state[0])
            report = f", Validation score: {score:f}"
            if tol > -np.inf and score < best_score + tol:
                no_improvement += 1
            else:
                no_improvement = 0
            best_score = max(best_score, score)
        else:
            objective = objective_sum / train_count
            if tol > -np.inf and objective > best_objective - tol:
                no_improvement += 1
            else:
                no_improvement = 0
            best_objective = min(best_objective, objective)
        if est.verbose > 0:
            print(
                f"Norm: {np.sqrt(state[6]):.2f}, NNZs: {np.count_nonzero(weights)}, "
                f"Bias: {state[0]:.6f}, T: {count}, "
                f"Avg. loss: {sumloss / train_count:f}, "
                f"Objective: {objective_sum / train_count:f}{report}"
            )
            print(f"Total training time: {time.time() - started:.2f} seconds.")
        if no_improvement >= est.n_iter_no_change:
            if rate == 4 and state[3] > 1e-6:
                state[3] /= 5
                no_improvement = 0
            else:
                if est.verbose:
                    print(
                        f"Convergence after {epoch + 1} epochs took "
                        f"{time.time() - started:.2f} seconds"
                    )
                break
    # WeightVector.reset_wscale: fold the scale into the weights and finish the
    # averaged weights, in the weights' dtype.
    dtype = weights.dtype.type
    if average_weights is not None:
        average_weights += dtype(state[8]) * weights
        average_weights *= dtype(1.0 / state[9])
    weights *= dtype(state[5])
    return float(state[0]), float(state[1]), epoch + 1


def _intercept_decay(X: Any) -> float:
    # scikit-learn's make_dataset: the intercept of sparse data learns 100x slower.
    return 0.01 if hasattr(X, "indptr") else 1.0


def _fit_binary_problem(
    est: Any,
    i: int,
    X: Any,
    y: np.ndarray,
    alpha: float,
    learning_rate: str,
    max_iter: int,
    pos_weight: float,
    neg_weight: float,
    sample_weight: np.ndarray,
    validation_mask: np.ndarray | None = None,
    random_state: Any = None,
) -> tuple[np.ndarray, float, int]:
    """scikit-learn's fit_binary: class i against the rest, in place in est."""
    label_encode = est._loss_spec().label_encode
    y_i = np.where(y == est.classes_[i], 1.0, 0.0 if label_encode else -1.0)
    y_i = y_i.astype(X.dtype)
    row = 0 if len(est.classes_) == 2 else i
    average_coef = None
    average_intercept = 0.0
    if not est.average:
        coef, intercept = est.coef_.reshape(-1, X.shape[1])[row], est.intercept_[row]
    else:
        coef = est._standard_coef.reshape(-1, X.shape[1])[row]
        intercept = est._standard_intercept[row]
        average_coef = est._average_coef.reshape(-1, X.shape[1])[row]
        average_intercept = est._average_intercept[row]
    random_state = check_random_state(random_state)
    if validation_mask is None:
        validation_mask = est._make_validation_split(y_i, sample_mask=sample_weight > 0)
    classes = np.array([0, 1] if label_encode else [-1, 1], dtype=y_i.dtype)
    score_cb = est._make_validation_score_cb(
        validation_mask, X, y_i, sample_weight, classes=classes
    )
    seed = random_state.randint(_MAX_SEED)
    intercept, average_intercept, n_iter = _run_plain_sgd(
        est, X, y_i, sample_weight, coef, float(intercept), average_coef,
        float(average_intercept), alpha, learning_rate, max_iter, pos_weight,
        neg_weight, validation_mask, score_cb, seed,
    )  # fmt: skip
    if est.average:
        est._average_intercept[row] = average_intercept
    return coef, intercept, n_iter


def _finish_classifier(est: Any, intercepts: list[float], n_iter: int, n: int) -> None:
    """What scikit-learn does after the binary / one-vs-rest fits; the standard
    intercepts are kept even once averaging takes over (scikit-learn drops the
    binary one, so a later partial_fit restarts from a stale intercept)."""
    est.t_ += n_iter * n
    est.n_iter_ = n_iter
    dtype = est.coef_.dtype if len(intercepts) > 1 else np.float64
    intercept = np.asarray(intercepts, dtype=dtype)
    if est.average > 0:
        est._standard_intercept = intercept
        if est.average <= est.t_ - 1:
            est.coef_ = est._average_coef.reshape(len(intercepts), -1)
            est.intercept_ = est._average_intercept
        else:
            est.coef_ = est._standard_coef.reshape(len(intercepts), -1)
            est.intercept_ = est._standard_intercept
    else:
        est.coef_ = est.coef_.reshape(len(intercepts), -1)
        est.intercept_ = intercept


class SGDClassifier(_GradkitSGD, sk.SGDClassifier):
    """scikit-learn's SGDClassifier trained by gradkit's kernels.

    Same parameters, defaults and attributes as sklearn.linear_model.SGDClassifier
    (see its documentation), plus:

    optimizer : {"sgd", "adam"}, default="sgd"
        "adam" trains with mini-batches and torch.optim.Adam's update rule, the
        learning rate following learning_rate ("optimal" counts as "constant" for
        Adam, which scales its own steps) with eta0 as the base rate.
    batch_size : int or None, default=None
        Rows per update. None: one row at a time (scikit-learn's algorithm) for
        optimizer="sgd" with multi_class="ovr", 32 otherwise.
    multi_class : {"ovr", "multinomial"}, default="ovr"
        "multinomial" fits one softmax model over all classes (loss must be
        "log_loss"); predict_proba is then the softmax.
    loss : str or CustomLoss
        Also a gradkit.linear_model.CustomLoss, trained at compiled speed.
    """

    _parameter_constraints: dict = {
        **sk.SGDClassifier._parameter_constraints,
        **_EXTRA_CONSTRAINTS,
        "loss": [*sk.SGDClassifier._parameter_constraints["loss"], CustomLoss],
        "multi_class": [StrOptions({"ovr", "multinomial"})],
    }

    def __init__(
        self,
        loss: Any = "hinge",
        *,
        penalty: str | None = "l2",
        alpha: float = 0.0001,
        l1_ratio: float = 0.15,
        fit_intercept: bool = True,
        max_iter: int = 1000,
        tol: float | None = 1e-3,
        shuffle: bool = True,
        verbose: int = 0,
        epsilon: float = 0.1,
        n_jobs: int | None = None,
        random_state: Any = None,
        learning_rate: str = "optimal",
        eta0: float = 0.01,
        power_t: float = 0.5,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        class_weight: Any = None,
        warm_start: bool = False,
        average: bool | int = False,
        optimizer: str = "sgd",
        batch_size: int | None = None,
        multi_class: str = "ovr",
    ) -> None:
        super().__init__(
            loss=loss,
            penalty=penalty,
            alpha=alpha,
            l1_ratio=l1_ratio,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
            shuffle=shuffle,
            verbose=verbose,
            epsilon=epsilon,
            n_jobs=n_jobs,
            random_state=random_state,
            learning_rate=learning_rate,
            eta0=eta0,
            power_t=power_t,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            class_weight=class_weight,
            warm_start=warm_start,
            average=average,
        )
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.multi_class = multi_class

    def _check_gradkit_params(self) -> None:
        if self.multi_class == "multinomial" and self.loss != "log_loss":
            raise ValueError(
                f"multi_class='multinomial' needs loss='log_loss', got "
                f"loss={self.loss!r}; use multi_class='ovr' for other losses."
            )
        super()._check_gradkit_params()

    def _fit_binary(
        self,
        X: Any,
        y: np.ndarray,
        alpha: float,
        sample_weight: np.ndarray,
        learning_rate: str,
        max_iter: int,
    ) -> None:
        if self._uses_sklearn_loop(learning_rate):
            return super()._fit_binary(
                X, y, alpha, sample_weight, learning_rate, max_iter
            )
        self._check_gradkit_params()
        if self._uses_minibatch():
            return _minibatch.fit_classifier(
                self, X, y, alpha, sample_weight, learning_rate, max_iter
            )
        coef, intercept, n_iter = _fit_binary_problem(
            self, 1, X, y, alpha, learning_rate, max_iter,
            self._expanded_class_weight[1], self._expanded_class_weight[0],
            sample_weight, random_state=self.random_state,
        )  # fmt: skip
        _finish_classifier(self, [intercept], n_iter, X.shape[0])

    def _fit_multiclass(
        self,
        X: Any,
        y: np.ndarray,
        alpha: float,
        learning_rate: str,
        sample_weight: np.ndarray,
        max_iter: int,
    ) -> None:
        if self._uses_sklearn_loop(learning_rate):
            return super()._fit_multiclass(
                X, y, alpha, learning_rate, sample_weight, max_iter
            )
        self._check_gradkit_params()
        if self._uses_minibatch():
            return _minibatch.fit_classifier(
                self, X, y, alpha, sample_weight, learning_rate, max_iter
            )
        validation_mask = self._make_validation_split(y, sample_mask=sample_weight > 0)
        seeds = check_random_state(self.random_state).randint(
            _MAX_SEED, size=len(self.classes_)
        )
        # One binary problem per class; the kernels release the GIL, so threads
        # run them in parallel (n_jobs, as in scikit-learn). Each keeps the
        # caller's gradkit config, which is thread-local.
        config = _config.get_config()

        def fit_one(i: int, seed: int) -> tuple[np.ndarray, float, int]:
            with _config.config_context(**config):
                return _fit_binary_problem(
                    self, i, X, y, alpha, learning_rate, max_iter,
                    self._expanded_class_weight[i], 1.0, sample_weight,
                    validation_mask=validation_mask, random_state=seed,
                )  # fmt: skip

        results = Parallel(n_jobs=self.n_jobs, require="sharedmem")(
            delayed(fit_one)(i, seed) for i, seed in enumerate(seeds)
        )
        intercepts = [intercept for _, intercept, _ in results]
        n_iter = max(n_iter_i for _, _, n_iter_i in results)
        _finish_classifier(self, intercepts, n_iter, X.shape[0])

    @available_if(sk.SGDClassifier._check_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """scikit-learn's (one-vs-rest for log_loss and modified_huber), or the
        softmax of the decision function for multi_class="multinomial"."""
        check_is_fitted(self)
        if self.multi_class == "multinomial" and len(self.classes_) > 2:
            return _minibatch.softmax(self.decision_function(X))
        return super().predict_proba(X)


class SGDRegressor(_GradkitSGD, sk.SGDRegressor):
    """scikit-learn's SGDRegressor trained by gradkit's kernels.

    Same parameters, defaults and attributes as sklearn.linear_model.SGDRegressor,
    plus optimizer, batch_size and CustomLoss losses as in SGDClassifier.
    """

    _parameter_constraints: dict = {
        **sk.SGDRegressor._parameter_constraints,
        **_EXTRA_CONSTRAINTS,
        "loss": [*sk.SGDRegressor._parameter_constraints["loss"], CustomLoss],
    }

    def __init__(
        self,
        loss: Any = "squared_error",
        *,
        penalty: str | None = "l2",
        alpha: float = 0.0001,
        l1_ratio: float = 0.15,
        fit_intercept: bool = True,
        max_iter: int = 1000,
        tol: float | None = 1e-3,
        shuffle: bool = True,
        verbose: int = 0,
        epsilon: float = 0.1,
        random_state: Any = None,
        learning_rate: str = "invscaling",
        eta0: float = 0.01,
        power_t: float = 0.25,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        warm_start: bool = False,
        average: bool | int = False,
        optimizer: str = "sgd",
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            loss=loss,
            penalty=penalty,
            alpha=alpha,
            l1_ratio=l1_ratio,
            fit_intercept=fit_intercept,
            max_iter=max_iter,
            tol=tol,
            shuffle=shuffle,
            verbose=verbose,
            epsilon=epsilon,
            random_state=random_state,
            learning_rate=learning_rate,
            eta0=eta0,
            power_t=power_t,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            warm_start=warm_start,
            average=average,
        )
        self.optimizer = optimizer
        self.batch_size = batch_size

    def _fit_regressor(
        self,
        X: Any,
        y: np.ndarray,
        alpha: float,
        loss: Any,
        learning_rate: str,
        sample_weight: np.ndarray,
        max_iter: int,
    ) -> None:
        if self._uses_sklearn_loop(learning_rate):
            return super()._fit_regressor(
                X, y, alpha, loss, learning_rate, sample_weight, max_iter
            )
        self._check_gradkit_params()
        if self._uses_minibatch():
            return _minibatch.fit_regressor(
                self, X, y, alpha, sample_weight, learning_rate, max_iter
            )
        if not hasattr(self, "t_"):
            self.t_ = 1.0
        validation_mask = self._make_validation_split(y, sample_mask=sample_weight > 0)
        score_cb = self._make_validation_score_cb(validation_mask, X, y, sample_weight)
        seed = check_random_state(self.random_state).randint(0, _MAX_SEED)
        if self.average:
            coef, intercept = self._standard_coef, self._standard_intercept
            average_coef, average_intercept = (
                self._average_coef,
                self._average_intercept,
            )
        else:
            coef, intercept = self.coef_, self.intercept_
            average_coef, average_intercept = None, np.zeros(1)
        new_intercept, new_average_intercept, self.n_iter_ = _run_plain_sgd(
            self, X, y, sample_weight, coef, float(intercept[0]), average_coef,
            float(average_intercept[0]), alpha, learning_rate, max_iter, 1.0, 1.0,
            validation_mask, score_cb, seed,
        )  # fmt: skip
        self.t_ += self.n_iter_ * X.shape[0]
        dtype = coef.dtype
        if self.average > 0:
            self._average_intercept = np.atleast_1d(new_average_intercept).astype(dtype)
            self._standard_intercept = np.atleast_1d(new_intercept).astype(dtype)
            if self.average <= self.t_ - 1.0:
                self.coef_ = average_coef
                self.intercept_ = self._average_intercept
            else:
                self.coef_ = coef
                self.intercept_ = self._standard_intercept
        else:
            self.intercept_ = np.atleast_1d(new_intercept).astype(dtype)
