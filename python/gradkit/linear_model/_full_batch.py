"""Full-batch solvers of linear models: accelerated gradient descent and Adam.

The objective, for a loss summed over the rows with weights s_i (S = sum s_i):

    f(W, b) = (1 / S) sum_i s_i loss(y_i, W x_i + b) + (l2 / 2) ||W||^2

Every evaluation is one call of the fused loss_grad kernel (one pass over X).

The solvers work in standardized coordinates, U = W * sigma and c = b + W mu, with
mu and sigma the feature means and spreads of a row sample: the same model, but
gradient descent on it behaves as on centered, unit-variance features, so the
intercept no longer couples with large feature means and badly scaled columns no
longer dictate the step. X itself is never copied or centered (that would densify
sparse X): the kernel sees W = U / sigma and b = c - W mu, and the chain rule maps
its gradient back, at O(k d) per evaluation.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from gradkit import _config
from gradkit.linear_model._losses import (
    MULTINOMIAL,
    LossSpec,
    kernel_data,
    linear_kernels,
)

#: Rows sampled to estimate the feature scales and the curvature.
_SAMPLE_ROWS = 20_000
#: Power iterations for the largest eigenvalue of the sampled Gram matrix.
_POWER_STEPS = 12
#: Per accepted gradient step, 1 / L grows by this factor (until f goes up).
_STEP_GROWTH = 0.9
#: Adam's learning rate is multiplied by this whenever the objective goes up.
_ADAM_DECAY = 0.95


class Objective:
    """f and its gradient in standardized coordinates theta = [U | c] (k, d + 1)."""

    def __init__(
        self,
        X: Any,
        y: np.ndarray,
        sample_weight: np.ndarray,
        spec: LossSpec,
        n_outputs: int,
        l2: float,
        fit_intercept: bool,
        seed: int = 0,
    ) -> None:
        self.data = kernel_data(X)
        self.kernels = linear_kernels(spec)
        self.threads = _config.n_threads()
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        self.weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        self.total_weight = float(self.weight.sum())
        self.spec = spec
        self.k, self.d = n_outputs, X.shape[1]
        self.l2 = l2
        self.fit_intercept = fit_intercept
        # The last evaluation: a solver's first call is often at the point the
        # caller just evaluated (a relative tolerance needs the first gradient).
        self._last: tuple[np.ndarray, float, np.ndarray] | None = None
        rng = np.random.default_rng(seed)
        n = X.shape[0]
        sample = (
            np.sort(rng.choice(n, _SAMPLE_ROWS, replace=False))
            if n > _SAMPLE_ROWS
            else np.arange(n)
        )
        # The sample stays sparse when X is: densifying it could take d times
        # its memory. Only matrix-vector products with it are needed.
        Xs: Any = X[sample] if hasattr(X, "indptr") else np.asarray(X[sample], float)
        ws = self.weight[sample]
        if not ws.any():
            ws = np.ones_like(ws)
        ws = ws / ws.sum()
        mean = np.asarray(ws @ Xs).ravel()
        if hasattr(Xs, "indptr"):
            second = np.asarray(ws @ Xs.multiply(Xs)).ravel()
            spread = np.sqrt(np.maximum(second - mean * mean, 0.0))
        else:
            spread = np.sqrt(ws @ (Xs - mean) ** 2)
        if not fit_intercept:  # no centering: scale by the root mean square
            spread = np.sqrt(spread**2 + mean**2)
            mean = np.zeros(self.d)
        self.mu = mean
        # Constant columns keep their scale: there is nothing to standardize.
        self.sigma = np.where(spread > 1e-12 * (1 + np.abs(mean)), spread, 1.0)
        self._sample = Xs, ws
        self._grad_coef = np.empty((self.k, self.d))
        self._grad_intercept = np.empty(self.k)

    def project(self, theta: np.ndarray) -> None:
        """Move theta, in place, to the best point with the same predictions.

        The softmax does not change when one vector is added to every class's
        coefficients (or one number to every intercept), so a multinomial
        optimum has coefficients and intercepts centered over the classes (the
        L2 penalty's choice, and scikit-learn's). Gradient descent from 0 stays
        centered; Adam's per-coordinate steps do not, so it is recentered.
        """
        if self.spec.code == MULTINOMIAL.code:
            theta -= theta.mean(axis=0)

    def model(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) of the original features from standardized theta."""
        W = theta[:, : self.d] / self.sigma
        b = theta[:, self.d] - W @ self.mu if self.fit_intercept else np.zeros(self.k)
        return W, b

    def theta(self, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros((self.k, self.d + 1))
        out[:, : self.d] = W * self.sigma
        out[:, self.d] = b + W @ self.mu if self.fit_intercept else 0.0
        return out

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        if self._last is not None and np.array_equal(theta, self._last[0]):
            return self._last[1], self._last[2].copy()
        W, b = self.model(theta)
        W = np.ascontiguousarray(W)
        Xd, Xi, Xp = self.data
        total = self.kernels.loss_grad(
            Xd, Xi, Xp, self.y, self.weight, None, W, b, self.spec.code,
            self.spec.param, self._grad_coef, self._grad_intercept, self.threads,
        )  # fmt: skip
        S = self.total_weight
        gW = self._grad_coef / S + self.l2 * W
        gb = self._grad_intercept / S
        grad = np.zeros_like(theta)
        # Chain rule back to theta: b depends on U through -W mu.
        grad[:, : self.d] = (gW - np.outer(gb, self.mu)) / self.sigma
        if self.fit_intercept:
            grad[:, self.d] = gb
        value = total / S + 0.5 * self.l2 * float(np.sum(W * W))
        self._last = (theta.copy(), value, grad.copy())
        return value, grad

    def lipschitz(self) -> float:
        """An estimate of the largest curvature of f in theta, from the row sample:
        the top eigenvalue of the sampled standardized Gram matrix (by power
        iteration) times the loss's largest second derivative, plus the penalty's."""
        Xs, ws = self._sample
        d = self.d

        def gram_times(v: np.ndarray) -> np.ndarray:
            # (Z^T W Z) v for the standardized sample Z = [(Xs - mu) / sigma, 1].
            u = v[:d] / self.sigma
            z = Xs @ u - self.mu @ u + (v[d] if self.fit_intercept else 0.0)
            z = ws * z
            out = np.empty_like(v)
            out[:d] = (np.asarray(Xs.T @ z).ravel() - self.mu * z.sum()) / self.sigma
            if self.fit_intercept:
                out[d] = z.sum()
            return out

        size = d + int(self.fit_intercept)
        v = np.ones(size) + np.random.default_rng(0).normal(size=size)
        top = 0.0
        for _ in range(_POWER_STEPS):
            v = gram_times(v)
            top = float(np.linalg.norm(v))
            if top == 0.0:
                break
            v /= top
        curvature = {0: 1.0, 1: 1.0, 3: 2.0, 4: 0.25, 6: 2.0, 7: 2.0, 8: 0.5}.get(
            self.spec.code, 1.0
        )
        return curvature * top + self.l2 / float(np.min(self.sigma) ** 2)


def gradient_descent(
    f: Objective,
    theta: np.ndarray,
    tol: float,
    max_iter: int,
    verbose: int = 0,
) -> tuple[np.ndarray, int, bool]:
    """Nesterov-accelerated gradient descent with step 1 / L and adaptive restart.

    L starts at the estimated curvature and doubles whenever a plain gradient step
    increases f (the estimate was too small), so the step is always safe. Momentum
    restarts whenever f goes up (O'Donoghue and Candes 2015), which recovers
    linear convergence on strongly convex problems without knowing the strong
    convexity. f never ends above its best value. Stops when max |grad| <= tol,
    like L-BFGS-B's gtol. Returns (theta, evaluations, converged).
    """
    L = max(f.lipschitz(), 1e-12)
    y = theta.copy()
    x = theta.copy()
    momentum = 1.0
    plain_step = True  # the step that produced y had no momentum
    accepted: tuple[np.ndarray, float, np.ndarray] | None = None
    for it in range(1, max_iter + 1):
        value, grad = f(y)
        finite = math.isfinite(value) and bool(np.isfinite(grad).all())
        if accepted is None and not finite:
            raise FloatingPointError(
                f"The loss at the starting point is {value}; scale the input "
                "with StandardScaler or start from other coefficients."
            )
        # An increase within rounding of f is no increase: near the optimum f
        # cannot resolve the steps any more, and treating its noise as an
        # increase would shrink the step for nothing.
        if accepted is not None and (
            not finite or value > accepted[1] + 1e-13 * abs(accepted[1])
        ):
            # f went up. After a momentum step: drop the momentum. After a plain
            # gradient step: the step was too long, so halve it. Either way, step
            # again from the last accepted point.
            if plain_step:
                L *= 2.0
            y_ok, _, g_ok = accepted
            x = y = y_ok - g_ok / L
            momentum, plain_step = 1.0, True
            continue
        accepted = (y, value, grad)
        # The curvature estimate bounds the whole space; near the optimum the
        # loss is often much flatter (confident predictions), so let the step
        # grow while f keeps going down. A step that overshoots halves it again.
        L *= _STEP_GROWTH
        if verbose:
            print(
                f"iteration {it}: objective {value:.10g}, "
                f"max |grad| {np.abs(grad).max():.3g}"
            )
        if float(np.abs(grad).max()) <= tol:
            return y, it, True
        x_new = y - grad / L
        next_momentum = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum))
        plain_step = momentum == 1.0
        y = x_new + ((momentum - 1.0) / next_momentum) * (x_new - x)
        x, momentum = x_new, next_momentum
    assert accepted is not None
    return accepted[0], max_iter, False


def adam(
    f: Objective,
    theta: np.ndarray,
    tol: float,
    max_iter: int,
    lr: float,
    verbose: int = 0,
) -> tuple[np.ndarray, int, bool]:
    """Full-batch Adam (torch's update rule, gradkit.optim.Adam) on f, with the
    learning rate divided by 5 after 5 iterations without improvement (scikit-
    learn's 'adaptive' schedule). Stops when max |grad| <= tol."""
    from gradkit import optim

    theta = theta.copy()
    opt = optim.Adam([theta], lr=lr)
    best = math.inf
    for it in range(1, max_iter + 1):
        value, grad = f(theta)
        if not math.isfinite(value) or not np.isfinite(grad).all():
            raise FloatingPointError(
                f"Training diverged at iteration {it} (the loss became {value}); "
                "lower the learning rate or scale the input with StandardScaler."
            )
        if verbose:
            print(f"iteration {it}: objective {value:.10g}")
        if float(np.abs(grad).max()) <= tol:
            return theta, it, True
        if value < best:
            best = value
        else:
            # Overshooting: the steps are too long for this stage.
            opt.param_groups[0]["lr"] *= _ADAM_DECAY
        opt.step([grad])
        f.project(theta)
    return theta, max_iter, False


def warn_not_converged(solver: str, max_iter: int) -> None:
    warnings.warn(
        f"solver={solver!r} did not converge in max_iter={max_iter} iterations; "
        "increase max_iter or scale the data.",
        ConvergenceWarning,
        stacklevel=3,
    )
