"""SGDClassifier and SGDRegressor fitted on dask arrays.

The parameters are those of gradkit.linear_model.SGDClassifier / SGDRegressor
(scikit-learn's), plus mode, which says how the row chunks share the epochs:

- mode="sequential": exact single-stream SGD. Each epoch passes the model
  through the chunks one after the other, as a chain of tasks: each runs
  gradkit's sgd_epoch kernel over its chunk on the worker holding it, taking the
  whole kernel state (weights, scale, t, eta, the L1 and averaging accumulators)
  from the previous chunk and handing it to the next. With shuffle=False this is
  the in-memory fit on the concatenated rows, to rounding in the loss sums that
  feed the stopping test. shuffle=True permutes the order of the chunks and the
  rows inside each chunk every epoch (seeds derived from random_state, the epoch
  and the chunk), never moving rows between workers: a different, reproducible
  row order from the in-memory fit's global permutation, so a statistically,
  not bitwise, equal model. Only one worker computes at a time.
- mode="average" (the default): parameter averaging. With shuffle=True the rows
  are first shuffled across the chunks once (each row goes to a random chunk,
  chosen with probability proportional to the chunk sizes, and each new chunk is
  permuted), and persisted. Then every epoch, each chunk runs one epoch of the
  kernel from the same starting model, in parallel (with shuffle=True in a new
  order each epoch), and the new model is the average of the chunks' models
  weighted by their row counts. The learning-rate counter t advances by the
  total row count per epoch, as in memory; inside an epoch every chunk starts
  from the epoch's t. The L1 truncation accumulators restart each epoch. The
  result is a model as good as the in-memory one, not the same numbers.

Stopping follows scikit-learn with early_stopping=False: after each epoch, the
epoch's training objective (the per-sample losses plus penalty, summed over all
chunks as the kernel accumulates them, divided by the row count) must improve by
tol within n_iter_no_change epochs, else training stops (or, for
learning_rate="adaptive", eta is divided by 5). n_iter_, t_, coef_,
intercept_ and classes_ are set as in memory; multiclass is one-vs-rest, each
class stopping on its own, n_iter_ the largest.

Not available (a ValueError says so): early_stopping (hold out a validation set
and use score), warm_start, partial_fit, optimizer="adam", batch_size > 1,
multi_class="multinomial" (use gradkit.dask.LogisticRegression), CustomLoss,
learning_rate "pa1" / "pa2", and average (ASGD) with mode="average". n_jobs is
accepted and ignored: Dask decides the parallelism.

A failed epoch (a task raising, a worker lost more often than Dask's retries
allow) makes fit raise RuntimeError naming the epoch; the estimator is left
without coef_, never half trained.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask
import dask.array as da
import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from gradkit import _config
from gradkit.dask._linear import (
    _as_dask,
    _check_Xy,
    _DaskLinear,
    _predict_labels,
    _proba_dask,
    classifier_score,
    regressor_score,
)
from gradkit.dask._tasks import with_known_chunks
from gradkit.linear_model import _sgd as _memory
from gradkit.linear_model._losses import CustomLoss, loss_spec, optimal_init

__all__ = ["SGDClassifier", "SGDRegressor"]

_MODES = ("average", "sequential")

# One model being trained: the kernel's whole state for one binary problem (or
# the regression). label is the positive class (None: y is the target itself).
_Problem = dict[str, Any]


def _chunk_epoch(
    data: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    carry: tuple[list[_Problem], np.ndarray],
    settings: dict[str, Any],
    seed: list[int] | None,
) -> tuple[list[_Problem], np.ndarray]:
    """One epoch of the sgd_epoch kernel over this chunk's rows, for each problem.

    Runs on the worker holding the chunk. carry is (problems, loss sums so far,
    (n_problems, 2)); returns them updated. The states are copied first: the
    caller's (or the threaded scheduler's) arrays are never written."""
    X, y, sw = data
    problems, sums = carry
    X = np.ascontiguousarray(X)
    n = X.shape[0]
    order = np.arange(n, dtype=np.int64)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    # scikit-learn casts the targets and weights to X's dtype before the kernel.
    sw64 = (
        np.ones(n)
        if sw is None
        else np.ascontiguousarray(np.asarray(sw, X.dtype), dtype=np.float64)
    )
    kernels = _config.kernels("linear")
    out, new_sums = [], sums.copy()
    for i, problem in enumerate(problems):
        p = {
            key: (v.copy() if isinstance(v, np.ndarray) else v)
            for key, v in problem.items()
        }
        if p["label"] is None:
            target = np.asarray(y, X.dtype)
        else:
            negative = 0.0 if settings["label_encode"] else -1.0
            target = np.where(y == p["label"], 1.0, negative).astype(X.dtype)
        y64 = np.ascontiguousarray(target, dtype=np.float64)
        if n:
            sumloss, objective_sum = kernels.sgd_epoch(
                X, None, None, y64, sw64, order, p["weights"], p["average_weights"],
                p["l1_q"], p["state"], settings["code"], settings["param"],
                settings["penalty"], settings["alpha"], settings["l1_ratio"],
                settings["rate"], settings["eta0"], settings["power_t"],
                settings["init"], settings["fit_intercept"], 1.0, p["weight_pos"],
                p["weight_neg"], settings["average"], settings["compute_loss"],
            )  # fmt: skip
            new_sums[i] += (sumloss, objective_sum)
        out.append(p)
    return out, new_sums


def _split_rows(
    X: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray | None,
    probs: np.ndarray,
    seed: list[int],
) -> tuple[Any, ...]:
    """Send each row of a chunk to a random target chunk (probabilities probs)."""
    target = np.random.default_rng(seed).choice(len(probs), size=X.shape[0], p=probs)
    return tuple(
        (X[target == t], y[target == t], None if sw is None else sw[target == t])
        for t in range(len(probs))
    )


def _gather_rows(pieces: list[tuple[Any, ...]], seed: list[int]) -> tuple[Any, ...]:
    """A target chunk: its pieces from every source chunk, in a random order."""
    X = np.concatenate([p[0] for p in pieces])
    y = np.concatenate([p[1] for p in pieces])
    sw = None if pieces[0][2] is None else np.concatenate([p[2] for p in pieces])
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    return X[perm], y[perm], None if sw is None else sw[perm]


def _n_rows(data: tuple[Any, ...]) -> int:
    return int(data[0].shape[0])


def _new_problem(
    d: int, dtype: Any, label: Any, weight_pos: float, weight_neg: float, eta0: float,
    average: bool, l1: bool,
) -> _Problem:  # fmt: skip
    """A model at zero, in the kernel's state layout (_core.pyi, sgd_epoch)."""
    state = np.zeros(10)
    state[2] = 1.0  # t, scikit-learn's t_ at the start of fit
    state[3] = eta0
    state[5] = 1.0  # wscale
    state[9] = 1.0  # average_b
    return {
        "label": label,
        "weight_pos": float(weight_pos),
        "weight_neg": float(weight_neg),
        "weights": np.zeros(d, dtype),
        "average_weights": np.zeros(d, dtype) if average else None,
        "l1_q": np.zeros(d, dtype) if l1 else None,
        "state": state,
    }


def _fold(problem: _Problem) -> None:
    """scikit-learn's reset_wscale: the true weights (and finished averaged
    weights) in place, in the weights' dtype."""
    weights, state = problem["weights"], problem["state"]
    dtype = weights.dtype.type
    if problem["average_weights"] is not None:
        problem["average_weights"] += dtype(state[8]) * weights
        problem["average_weights"] *= dtype(1.0 / state[9])
        state[8], state[9] = 0.0, 1.0
    weights *= dtype(state[5])
    state[5] = 1.0


def _restart(problem: _Problem) -> None:
    """Reset the per-epoch accumulators of a folded, averaged model."""
    w, state = problem["weights"], problem["state"]
    state[4] = 0.0  # u, the cumulative L1 penalty
    state[6] = float(np.dot(w, w))
    state[7] = float(np.abs(w).sum())
    if problem["l1_q"] is not None:
        problem["l1_q"][:] = 0


class _DaskSGD(_DaskLinear):
    """What SGDClassifier and SGDRegressor share: checks, data layout, epochs."""

    _memory_class: Any
    coef_: Any
    intercept_: Any

    def _memory_params(self) -> dict[str, Any]:
        params = self.get_params()
        params.pop("mode")
        return params

    def _check_params(self) -> None:
        """scikit-learn's parameter checks, through the in-memory class, then
        what gradkit.dask adds or lacks."""
        name = f"gradkit.dask.{type(self).__name__}"
        memory = self._memory_class(**self._memory_params())
        memory._validate_params()
        memory._more_validate_params()
        if self.mode not in _MODES:
            raise ValueError(
                f"mode must be 'average' or 'sequential', got {self.mode!r}."
            )
        unsupported = {
            "early_stopping": (
                self.early_stopping,
                "hold out a validation set yourself and compare score on it",
            ),
            "warm_start": (self.warm_start, "fit from scratch"),
            "optimizer": (
                self.optimizer != "sgd",
                "use optimizer='sgd' (gradkit.linear_model has Adam in memory)",
            ),
            "batch_size": ((self.batch_size or 1) > 1, "use batch_size=None"),
            "loss": (
                isinstance(self.loss, CustomLoss),
                "use a built-in loss (a CustomLoss is in-memory only)",
            ),
            "learning_rate": (
                self.learning_rate not in _memory._LEARNING_RATE,
                f"use one of {sorted(_memory._LEARNING_RATE)}",
            ),
        }
        if getattr(self, "multi_class", "ovr") != "ovr":
            raise ValueError(
                f"{name} trains multiclass one-vs-rest only: multi_class must be "
                "'ovr'; for a multinomial model use gradkit.dask.LogisticRegression."
            )
        for param, (bad, fix) in unsupported.items():
            if bad:
                raise ValueError(
                    f"{name} does not support {param}={getattr(self, param)!r}; {fix}."
                )
        if self.average and self.mode == "average":
            raise ValueError(
                f"{name}: average={self.average!r} (averaged SGD) needs "
                "mode='sequential'; with mode='average' set average=False."
            )

    def _check_data(
        self, X: Any, y: Any, sample_weight: Any
    ) -> tuple[da.Array, da.Array, da.Array | None]:
        X, y = _check_Xy(X, y)
        sw = None
        if sample_weight is not None:
            sw = with_known_chunks(_as_dask(sample_weight, "sample_weight"))
            if sw.shape != y.shape:
                raise ValueError(
                    f"sample_weight must have shape {y.shape}, got {sw.shape}."
                )
            sw = sw.astype(np.float64).rechunk({0: X.chunks[0]})
        return X, y, sw

    def _chunks(
        self, X: da.Array, y: da.Array, sw: da.Array | None, seed: int
    ) -> tuple[list[Any], np.ndarray]:
        """The row chunks as delayed (X, y, sample_weight) tuples, persisted, and
        their row counts. mode="average" with shuffle=True shuffles the rows
        across the chunks first."""
        Xb = X.to_delayed().ravel()
        yb = y.to_delayed().ravel()
        swb = sw.to_delayed().ravel() if sw is not None else [None] * len(Xb)
        counts = np.asarray(X.chunks[0], dtype=np.int64)
        if not (self.mode == "average" and self.shuffle):
            return [(x, t, w) for x, t, w in zip(Xb, yb, swb, strict=True)], counts
        k = len(Xb)
        probs = counts / counts.sum()
        split = dask.delayed(_split_rows, nout=k)
        pieces = [
            split(x, t, w, probs, [seed, 0, c])
            for c, (x, t, w) in enumerate(zip(Xb, yb, swb, strict=True))
        ]
        chunks = [
            dask.delayed(_gather_rows)([p[c] for p in pieces], [seed, 1, c])
            for c in range(k)
        ]
        chunks = list(dask.persist(*chunks))
        counts = np.array(
            dask.compute(*[dask.delayed(_n_rows)(c) for c in chunks]), dtype=np.int64
        )
        return chunks, counts

    def _train(
        self,
        X: da.Array,
        y: da.Array,
        sw: da.Array | None,
        problems: list[_Problem],
    ) -> tuple[list[_Problem], int]:
        """The epoch loop; returns the folded problems and n_iter."""
        name = f"{type(self).__name__}.fit"
        seed = int(check_random_state(self.random_state).randint(_memory._MAX_SEED))
        try:
            chunks, counts = self._chunks(X, y, sw, seed)
        except Exception as exc:
            raise RuntimeError(
                f"{name} failed while shuffling the rows across the chunks (a task "
                f"raised {type(exc).__name__}: {exc}); the estimator was not fitted."
            ) from exc
        n = int(counts.sum())
        spec = loss_spec(self.loss, self.epsilon)
        penalty = _memory._PENALTY[self.penalty]
        rate = _memory._LEARNING_RATE[self.learning_rate]
        tol = self.tol if self.tol is not None else -np.inf
        settings = {
            "code": spec.code,
            "param": spec.param,
            "label_encode": spec.label_encode,
            "penalty": penalty,
            "alpha": float(self.alpha),
            "l1_ratio": {1: 0.0, 2: 1.0}.get(
                penalty, float(self.l1_ratio if self.l1_ratio is not None else 0.0)
            ),
            "rate": rate,
            "eta0": float(self.eta0),
            "power_t": float(self.power_t),
            "init": optimal_init(self.alpha, spec) if rate == 2 else 0.0,
            "fit_intercept": bool(self.fit_intercept),
            "average": int(self.average),
            "compute_loss": bool(self.verbose) or tol > -np.inf,
        }
        best = np.full(len(problems), np.inf)
        no_improvement = np.zeros(len(problems), dtype=np.int64)
        n_iter = np.zeros(len(problems), dtype=np.int64)
        active = list(range(len(problems)))
        for epoch in range(self.max_iter):
            if not active:
                break
            try:
                results, sums = self._epoch(
                    chunks, counts, [problems[i] for i in active], settings, seed, epoch
                )
            except Exception as exc:
                raise RuntimeError(
                    f"{name} failed at epoch {epoch + 1} (a task on the dask cluster "
                    f"raised {type(exc).__name__}: {exc}); the estimator was not "
                    "fitted."
                ) from exc
            still_active = []
            for j, i in enumerate(active):
                problems[i] = results[j]
                state = results[j]["state"]
                n_iter[i] = epoch + 1
                finite = (
                    np.isfinite(state[0]) and np.isfinite(results[j]["weights"]).all()
                )
                if not finite or not np.isfinite(sums[j, 0]):
                    raise ValueError(_memory._DIVERGED.format(epoch + 1))
                objective = sums[j, 1] / max(n, 1)
                if self.verbose > 0:
                    print(
                        f"-- Epoch {epoch + 1}, problem {i}: Avg. loss: "
                        f"{sums[j, 0] / max(n, 1):f}, Objective: {objective:f}"
                    )
                if tol > -np.inf and objective > best[i] - tol:
                    no_improvement[i] += 1
                else:
                    no_improvement[i] = 0
                best[i] = min(best[i], objective)
                if no_improvement[i] >= self.n_iter_no_change:
                    if rate == 4 and state[3] > 1e-6:
                        state[3] /= 5
                        no_improvement[i] = 0
                    else:
                        continue  # this problem has converged
                still_active.append(i)
            active = still_active
        for problem in problems:
            _fold(problem)
        n_iter_ = int(n_iter.max())
        if tol > -np.inf and n_iter_ == self.max_iter:
            warnings.warn(
                "Maximum number of iteration reached before convergence. Consider "
                "increasing max_iter to improve the fit.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return problems, n_iter_

    def _epoch(
        self,
        chunks: list[Any],
        counts: np.ndarray,
        problems: list[_Problem],
        settings: dict[str, Any],
        seed: int,
        epoch: int,
    ) -> tuple[list[_Problem], np.ndarray]:
        """One epoch over all chunks: (new problems, loss sums (n_problems, 2))."""
        k = len(chunks)
        zero = np.zeros((len(problems), 2))

        def chunk_seed(c: int) -> list[int] | None:
            return [seed, 2, epoch, c] if self.shuffle else None

        if self.mode == "sequential":
            order = np.arange(k)
            if self.shuffle:
                order = np.random.default_rng([seed, 3, epoch]).permutation(k)
            carry: Any = (problems, zero)
            for c in order:
                carry = dask.delayed(_chunk_epoch)(
                    chunks[c], carry, settings, chunk_seed(int(c))
                )
            (result,) = dask.compute(carry)
            return result[0], result[1]
        # Parameter averaging: every chunk from the same start, in parallel.
        parts = [
            dask.delayed(_chunk_epoch)(
                chunks[c], (problems, zero), settings, chunk_seed(c)
            )
            for c in range(k)
            if counts[c] > 0
        ]
        weights = counts[counts > 0] / counts.sum()
        results = dask.compute(*parts)
        averaged = []
        for j, start in enumerate(problems):
            models = [r[0][j] for r in results]
            for m in models:
                _fold(m)
            new = dict(start)
            dtype = start["weights"].dtype
            new["weights"] = np.asarray(
                sum(
                    w * m["weights"].astype(np.float64)
                    for w, m in zip(weights, models, strict=True)
                ),
                dtype,
            )
            state = start["state"].copy()
            state[0] = float(
                sum(w * m["state"][0] for w, m in zip(weights, models, strict=True))
            )
            state[2] = start["state"][2] + counts.sum()
            state[5] = 1.0
            new["state"] = state
            new["l1_q"] = (
                None if start["l1_q"] is None else np.zeros_like(start["l1_q"])
            )
            _restart(new)
            averaged.append(new)
        sums = np.sum([r[1] for r in results], axis=0)
        return averaged, sums


class SGDClassifier(ClassifierMixin, _DaskSGD):
    """A linear classifier trained by SGD on dask arrays (one-vs-rest for more
    than two classes), with gradkit's sgd_epoch kernel on the workers.

    Parameters: those of gradkit.linear_model.SGDClassifier (scikit-learn's;
    see the module docstring for the few not available), plus

    mode : {"average", "sequential"}, default="average"
        "average": every epoch the chunks train in parallel from the same model
        and their models are averaged (rows shuffled across chunks once first
        when shuffle=True). "sequential": exact single-stream SGD, the model
        passed from chunk to chunk; with shuffle=False it equals the in-memory
        fit. Details in the module docstring.

    X: a dask array (n_samples, n_features) split into row chunks; y and
    sample_weight 1-D, rechunked to X's rows.
    """

    _memory_class = _memory.SGDClassifier

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
        mode: str = "average",
    ) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.average = average
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.multi_class = multi_class
        self.mode = mode

    def _class_weights(self, classes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """scikit-learn's compute_class_weight, from the class counts."""
        if self.class_weight is None:
            return np.ones(len(classes))
        if isinstance(self.class_weight, str):  # "balanced", as validated
            return counts.sum() / (len(classes) * counts.astype(np.float64))
        weights = np.ones(len(classes))
        for label, weight in self.class_weight.items():
            index = np.flatnonzero(classes == label)
            if len(index) == 0:
                raise ValueError(
                    f"class_weight has the label {label!r}, which is not in y "
                    f"(classes: {classes.tolist()})."
                )
            weights[index[0]] = weight
        return weights

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SGDClassifier:
        self._check_params()
        X, y, sw = self._check_data(X, y, sample_weight)
        X, y, sw = dask.persist(X, y, sw)
        classes, counts = dask.compute(*da.unique(y, return_counts=True))
        if len(classes) < 2:
            raise ValueError(
                "The number of classes has to be greater than one; got "
                f"{len(classes)} class."
            )
        class_weight = self._class_weights(classes, counts)
        if len(classes) == 2:
            pairs = [(classes[1], class_weight[1], class_weight[0])]
        else:
            pairs = [(c, class_weight[i], 1.0) for i, c in enumerate(classes)]
        d, dtype = X.shape[1], X.dtype
        l1 = _memory._PENALTY[self.penalty] in (2, 3)
        problems = [
            _new_problem(d, dtype, c, wp, wn, self.eta0, bool(self.average), l1)
            for c, wp, wn in pairs
        ]
        problems, n_iter = self._train(X, y, sw, problems)
        n = X.shape[0]
        t = 1.0 + n_iter * n
        use_average = bool(self.average) and self.average <= t - 1
        key = "average_weights" if use_average else "weights"
        coef = np.stack([p[key] for p in problems])
        intercept = [p["state"][1 if use_average else 0] for p in problems]
        # Only a finished fit sets the attributes.
        self.classes_ = classes
        self.n_features_in_ = d
        self.t_ = t
        self.n_iter_ = n_iter
        self.coef_ = coef
        self.intercept_ = np.asarray(
            intercept, dtype=np.float64 if len(problems) == 1 else dtype
        )
        return self

    def decision_function(self, X: Any) -> da.Array:
        """X @ coef_.T + intercept_, a dask array: (n_samples,) for two classes,
        (n_samples, n_classes) for more."""
        return self._decision(X)

    def predict(self, X: Any) -> da.Array:
        """Predicted class labels, a dask array (n_samples,)."""
        return _predict_labels(self.decision_function(X), self.classes_)

    def predict_proba(self, X: Any) -> da.Array:
        """Class probabilities, a dask array (n_samples, n_classes), for
        loss="log_loss" and "modified_huber", as scikit-learn computes them
        (one-vs-rest, normalized over the classes)."""
        if self.loss not in ("log_loss", "modified_huber"):
            raise AttributeError(
                f"probability estimates are not available for loss={self.loss!r}; "
                "use loss='log_loss' or 'modified_huber'."
            )
        scores = self.decision_function(X)
        block = _log_loss_proba if self.loss == "log_loss" else _modified_huber_proba
        return _proba_dask(scores, block, len(self.classes_))

    def predict_log_proba(self, X: Any) -> da.Array:
        return da.log(self.predict_proba(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy on (X, y), a float."""
        return classifier_score(self, X, y, sample_weight)


def _ovr_normalize(p: np.ndarray) -> np.ndarray:
    """scikit-learn's one-vs-rest probabilities: (n,) positive-class or (n, k)."""
    if p.ndim == 1:
        return np.stack([1.0 - p, p], axis=1)
    total = p.sum(axis=1, keepdims=True)
    # Rows where every class scores 0 become uniform, as in scikit-learn.
    uniform = total[:, 0] == 0
    p = p.copy()
    p[uniform] = 1.0
    total[uniform] = p.shape[1]
    return p / total


def _log_loss_proba(z: np.ndarray) -> np.ndarray:
    return _ovr_normalize(0.5 * (1.0 + np.tanh(0.5 * z)))


def _modified_huber_proba(z: np.ndarray) -> np.ndarray:
    return _ovr_normalize((np.clip(z, -1, 1) + 1) / 2)


class SGDRegressor(RegressorMixin, _DaskSGD):
    """A linear regressor trained by SGD on dask arrays, with gradkit's
    sgd_epoch kernel on the workers.

    Parameters: those of gradkit.linear_model.SGDRegressor (scikit-learn's;
    see the module docstring for the few not available), plus mode, as in
    gradkit.dask.SGDClassifier.
    """

    _memory_class = _memory.SGDRegressor

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
        mode: str = "average",
    ) -> None:
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.average = average
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.mode = mode

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SGDRegressor:
        self._check_params()
        X, y, sw = self._check_data(X, y, sample_weight)
        X, y, sw = dask.persist(X, y.astype(np.float64), sw)
        d, dtype = X.shape[1], X.dtype
        l1 = _memory._PENALTY[self.penalty] in (2, 3)
        problems = [
            _new_problem(d, dtype, None, 1.0, 1.0, self.eta0, bool(self.average), l1)
        ]
        problems, n_iter = self._train(X, y, sw, problems)
        (problem,) = problems
        t = 1.0 + n_iter * X.shape[0]
        use_average = bool(self.average) and self.average <= t - 1
        self.n_features_in_ = d
        self.t_ = t
        self.n_iter_ = n_iter
        self.coef_ = problem["average_weights" if use_average else "weights"]
        self.intercept_ = np.atleast_1d(
            problem["state"][1 if use_average else 0]
        ).astype(dtype)
        return self

    def predict(self, X: Any) -> da.Array:
        """x . coef_ + intercept_ per row, a dask array (n_samples,)."""
        return self._decision(X)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R^2 of the predictions on (X, y), a float."""
        return regressor_score(self, X, y, sample_weight)
