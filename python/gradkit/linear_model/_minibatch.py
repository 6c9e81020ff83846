"""Mini-batch training of linear models: SGD or Adam steps on the fused gradient.

Each update asks the loss_grad kernel for the summed loss and gradient over one
batch of rows (X read once), averages it over the batch, adds the L2 part of the
penalty, and steps gradkit.optim.SGD or gradkit.optim.Adam. The L1 part is applied
as a proximal step (soft thresholding by lr * alpha * l1_ratio) after each
update, which keeps exact zeros, unlike a subgradient. The learning rate follows
scikit-learn's schedules counted in updates rather than samples; with Adam,
"optimal" means a constant eta0, since Adam scales its own steps. The stopping
test is scikit-learn's, once per epoch.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from gradkit import _config, optim
from gradkit.linear_model._losses import (
    MULTINOMIAL,
    LossSpec,
    kernel_data,
    linear_kernels,
    optimal_init,
)

_MAX_SEED = np.iinfo(np.int32).max
_DEFAULT_BATCH = 32


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def train(
    est: Any,
    X: Any,
    y: np.ndarray,
    sample_weight: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    spec: LossSpec,
    alpha: float,
    learning_rate: str,
    max_iter: int,
    validation_mask: np.ndarray,
    score: Any,
    seed: int,
) -> int:
    """Train coef (k, d) and intercept (k,), float64, in place; returns n_iter.

    y is float64 as the kernel's loss code wants it; sample_weight float64 with the
    class weights folded in; score(coef, intercept) the early-stopping score.
    """
    kernels = linear_kernels(spec)
    Xd, Xi, Xp = kernel_data(X)
    threads = _config.n_threads()
    penalty = est.penalty or "none"
    l1_ratio = {"l2": 0.0, "l1": 1.0, "none": 0.0}.get(penalty, est.l1_ratio)
    l2 = alpha * (1.0 - l1_ratio) if penalty != "none" else 0.0
    l1 = alpha * l1_ratio if penalty != "none" else 0.0
    adam = est.optimizer == "adam"
    rate = "constant" if adam and learning_rate == "optimal" else learning_rate
    t0 = optimal_init(alpha, spec) if rate == "optimal" else 0.0
    batch = est.batch_size or _DEFAULT_BATCH
    tol = est.tol if est.tol is not None else -np.inf
    rows = np.flatnonzero(~validation_mask).astype(np.int64)
    train_count = max(len(rows), 1)
    y = np.ascontiguousarray(y, dtype=np.float64)
    sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
    grad_coef, grad_intercept = np.empty_like(coef), np.empty_like(intercept)
    params = [coef, intercept]
    opt: optim.Optimizer = (
        optim.Adam(params, lr=est.eta0) if adam else optim.SGD(params, lr=est.eta0)
    )
    rng = np.random.default_rng(seed)
    eta = est.eta0
    t = float(est.t_)
    best_objective, best_score, no_improvement = np.inf, -np.inf, 0
    started = time.time()
    epoch = 0
    for epoch in range(max_iter):  # noqa: B007 - epoch is reported after the loop
        order = rng.permutation(rows) if est.shuffle else rows
        sumloss = 0.0
        for start in range(0, len(order), batch):
            part = order[start : start + batch]
            if rate == "optimal":
                eta = 1.0 / (alpha * (t0 + t - 1))
            elif rate == "invscaling":
                eta = est.eta0 / t**est.power_t
            sumloss += kernels.loss_grad(
                Xd, Xi, Xp, y, sample_weight, part, coef, intercept, spec.code,
                spec.param, grad_coef, grad_intercept, threads,
            )  # fmt: skip
            grad_coef /= len(part)
            grad_intercept /= len(part)
            if l2:
                grad_coef += l2 * coef
            if not est.fit_intercept:
                grad_intercept[:] = 0.0
            opt.param_groups[0]["lr"] = eta
            opt.step([grad_coef, grad_intercept])
            if l1:
                np.copysign(np.maximum(np.abs(coef) - eta * l1, 0.0), coef, out=coef)
            t += len(part)
        finite = np.isfinite(coef).all() and np.isfinite(intercept).all()
        if not (finite and np.isfinite(sumloss)):
            raise ValueError(
                f"Training diverged at epoch #{epoch + 1} (the loss or the weights "
                "became inf or NaN): lower eta0 or scale the input with StandardScaler."
            )
        objective = sumloss / train_count
        if penalty != "none":
            objective += 0.5 * l2 * float(np.sum(coef * coef))
            objective += l1 * float(np.abs(coef).sum())
        message = f"-- Epoch {epoch + 1}\nAvg. loss: {sumloss / train_count:f}"
        if est.early_stopping:
            value = score(coef, intercept)
            message += f", Validation score: {value:f}"
            improved = not (tol > -np.inf and value < best_score + tol)
            best_score = max(best_score, value)
        else:
            improved = not (tol > -np.inf and objective > best_objective - tol)
            best_objective = min(best_objective, objective)
        no_improvement = 0 if improved else no_improvement + 1
        if est.verbose:
            print(f"{message}, Objective: {objective:f}")
            print(f"Total training time: {time.time() - started:.2f} seconds.")
        if no_improvement >= est.n_iter_no_change:
            if rate == "adaptive" and eta > 1e-6:
                eta /= 5
                no_improvement = 0
            else:
                break
    return epoch + 1


def _class_weights(est: Any, codes: np.ndarray, sample_weight: np.ndarray) -> Any:
    return sample_weight * np.asarray(est._expanded_class_weight)[codes]


def fit_classifier(
    est: Any,
    X: Any,
    y: np.ndarray,
    alpha: float,
    sample_weight: np.ndarray,
    learning_rate: str,
    max_iter: int,
) -> None:
    """Binary, one-vs-rest or multinomial mini-batch fit of an SGDClassifier."""
    classes = est.classes_
    codes = np.searchsorted(classes, y)
    n_classes, d = len(classes), X.shape[1]
    validation_mask = est._make_validation_split(y, sample_mask=sample_weight > 0)
    weights = _class_weights(est, codes, np.asarray(sample_weight, dtype=np.float64))
    random_state = check_random_state(est.random_state)
    multinomial = est.multi_class == "multinomial" and n_classes > 2
    # One row of coefficients for two classes, one per class otherwise (a
    # softmax row or a one-vs-rest model), as scikit-learn lays them out.
    n_rows = 1 if n_classes == 2 else n_classes
    coef = np.array(est.coef_, dtype=np.float64).reshape(n_rows, d)
    intercept = np.array(est.intercept_, dtype=np.float64).reshape(-1)
    if multinomial:
        Xv, yv, wv = (
            X[validation_mask],
            codes[validation_mask],
            weights[validation_mask],
        )

        def multinomial_score(c: np.ndarray, b: np.ndarray) -> float:
            hits = np.asarray(Xv @ c.T + b).argmax(axis=1) == yv
            return float(np.average(hits, weights=wv))

        n_iter = train(
            est, X, codes.astype(np.float64), weights, coef, intercept, MULTINOMIAL,
            alpha, learning_rate, max_iter, validation_mask, multinomial_score,
            random_state.randint(_MAX_SEED),
        )  # fmt: skip
    else:
        spec = est._loss_spec()
        n_iter = 0
        for i in range(n_rows):
            positive = codes == (1 if n_classes == 2 else i)
            y_i = np.where(positive, 1.0, 0.0 if spec.label_encode else -1.0)
            labels = np.array([0.0 if spec.label_encode else -1.0, 1.0])
            cb = est._make_validation_score_cb(
                validation_mask, X, y_i.astype(X.dtype), weights, classes=labels
            )
            row_coef, row_intercept = coef[i : i + 1], intercept[i : i + 1]

            def binary_score(c: np.ndarray, b: np.ndarray, cb: Any = cb) -> float:
                return float(cb(c.ravel().astype(X.dtype), float(b[0])))

            n_iter = max(
                n_iter,
                train(
                    est, X, y_i, weights, row_coef, row_intercept, spec, alpha,
                    learning_rate, max_iter, validation_mask, binary_score,
                    random_state.randint(_MAX_SEED),
                ),
            )  # fmt: skip
    est.t_ += n_iter * X.shape[0]
    est.n_iter_ = n_iter
    est.coef_ = coef.astype(X.dtype)
    est.intercept_ = intercept.astype(X.dtype if n_rows > 1 else np.float64)


def fit_regressor(
    est: Any,
    X: Any,
    y: np.ndarray,
    alpha: float,
    sample_weight: np.ndarray,
    learning_rate: str,
    max_iter: int,
) -> None:
    """Mini-batch fit of an SGDRegressor."""
    if not hasattr(est, "t_"):
        est.t_ = 1.0
    validation_mask = est._make_validation_split(y, sample_mask=sample_weight > 0)
    cb = est._make_validation_score_cb(validation_mask, X, y, sample_weight)
    coef = np.array(est.coef_, dtype=np.float64).reshape(1, -1)
    intercept = np.array(est.intercept_, dtype=np.float64).reshape(1)

    def score(c: np.ndarray, b: np.ndarray) -> float:
        return float(cb(c.ravel().astype(X.dtype), float(b[0])))

    seed = check_random_state(est.random_state).randint(0, _MAX_SEED)
    est.n_iter_ = train(
        est, X, y, sample_weight, coef, intercept, est._loss_spec(), alpha,
        learning_rate, max_iter, validation_mask, score, seed,
    )  # fmt: skip
    est.t_ += est.n_iter_ * X.shape[0]
    est.coef_ = coef.ravel().astype(X.dtype)
    est.intercept_ = intercept.astype(np.float64)
