"""Optimizers on numpy arrays with torch.optim's update rules: SGD, Adam, AdamW.

    params = [W, b]                      # float32 or float64 arrays, updated in place
    opt = gradkit.optim.Adam(params, lr=1e-3)
    for batch in data:
        opt.step([dW, db])               # gradients in the same order, shapes, dtypes

Each step is one fused pass per array in a compiled kernel (C++ or numba, as
gradkit's config says), in the array's own dtype, following torch.optim's
single-tensor path step for step. A gradient given as None skips its array, as a
missing .grad does in torch. state_dict() / load_state_dict() round-trip exactly.

Learning-rate schedules change opt.param_groups[0]["lr"] once per scheduler.step(),
as torch.optim.lr_scheduler does: ConstantLR, StepLR, ExponentialLR and
CosineAnnealingLR follow torch's closed forms; OptimalLR, InvScalingLR and
AdaptiveLR are scikit-learn's SGD schedules ("optimal", "invscaling", "adaptive").

    sched = gradkit.optim.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(100):
        ...                              # opt.step(...) for each batch
        sched.step()
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradkit import _config

__all__ = [
    "SGD",
    "AdaptiveLR",
    "Adam",
    "AdamW",
    "ConstantLR",
    "CosineAnnealingLR",
    "ExponentialLR",
    "InvScalingLR",
    "LRScheduler",
    "OptimalLR",
    "Optimizer",
    "StepLR",
]


def _check_params(params: Any) -> list[np.ndarray]:
    if isinstance(params, np.ndarray):
        params = [params]
    params = list(params)
    if not params:
        raise ValueError("params is empty: pass a list of the arrays to optimize.")
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray):
            raise TypeError(
                f"params[{i}] must be a numpy array, got {type(p).__name__}; gradkit "
                "updates the arrays themselves in place."
            )
        if p.dtype not in (np.float32, np.float64) or not p.dtype.isnative:
            raise TypeError(
                f"params[{i}] has dtype {p.dtype}; use float32 or float64 "
                "(p.astype(np.float32) makes a new array: optimize that one)."
            )
        if not p.flags.c_contiguous:
            raise ValueError(
                f"params[{i}] is not C-contiguous; optimize a contiguous array "
                "(np.ascontiguousarray(p)) so it can be updated in place."
            )
        if not p.flags.writeable:
            raise ValueError(f"params[{i}] is read-only; it must be writeable.")
    return params


def _check_number(
    value: Any,
    name: str,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
) -> float:
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.floating, np.integer)
    ):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if math.isnan(value) or below or above:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(
            f"Invalid {name}: {value!r}; it must be in {lo}{low}, {high}{hi}."
        )
    return value


class Optimizer:
    """What SGD, Adam and AdamW share: the parameters, their state, the step loop."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.params = _check_params(params)
        self.defaults = dict(defaults)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    # The hyperparameters live in a torch-like param group so schedulers and users
    # can change them between steps: opt.param_groups[0]["lr"] = 0.01.
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [self.defaults]

    def _grads(self, grads: Sequence[Any]) -> list[np.ndarray | None]:
        if isinstance(grads, np.ndarray):
            grads = [grads]
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(
                f"step got {len(grads)} gradients for {len(self.params)} params; pass "
                "one per param, in the same order (None to skip one)."
            )
        checked: list[np.ndarray | None] = []
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if g is None:
                checked.append(None)
                continue
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(
                    f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}."
                )
            if g.dtype != p.dtype:
                raise TypeError(
                    f"grads[{i}] has dtype {g.dtype} but params[{i}] is {p.dtype}; "
                    "gradients must have their parameter's dtype."
                )
            if np.may_share_memory(g, p):
                g = g.copy()  # the kernels read the gradient while writing the param
            checked.append(np.ascontiguousarray(g).reshape(-1))
        return checked

    def step(self, grads: Sequence[Any]) -> None:
        """Update every param in place from its gradient (None skips a param)."""
        kernels = _config.kernels("optim")
        threads = _config.n_threads()
        for param, grad, state in zip(
            self.params, self._grads(grads), self.state, strict=True
        ):
            if grad is not None:
                self._update(kernels, threads, param, grad, state)

    def _update(
        self,
        kernels: Any,
        threads: int,
        param: np.ndarray,
        grad: np.ndarray,
        state: dict[str, Any],
    ) -> None:
        """One step of one param; the kernels get flat views of param and state."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """{'state': {i: {...}}, 'param_groups': [{..., 'params': [0, 1, ...]}]},
        torch's layout, with numpy copies of the state arrays."""
        return {
            "state": {i: copy.deepcopy(s) for i, s in enumerate(self.state) if s},
            "param_groups": [
                {
                    **copy.deepcopy(self.defaults),
                    "params": list(range(len(self.params))),
                }
            ],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what state_dict() returned (for the same params, same shapes)."""
        try:
            groups, saved = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(
                "state_dict must be what Optimizer.state_dict() returned: a dict with "
                "'state' and 'param_groups'."
            ) from None
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError(
                "state_dict was saved for a different set of params: it has "
                f"{sum(len(g['params']) for g in groups)}, this optimizer has "
                f"{len(self.params)}."
            )
        new_state: list[dict[str, Any]] = [{} for _ in self.params]
        for key, s in saved.items():
            i = int(key)
            p = self.params[i]
            entry = {}
            for name, value in s.items():
                if isinstance(value, np.ndarray):
                    if value.size != p.size:
                        raise ValueError(
                            f"state {name!r} of params[{i}] has {value.size} elements, "
                            f"the param has {p.size}."
                        )
                    value = np.array(value, dtype=p.dtype, order="C").reshape(p.shape)
                entry[name] = value
            new_state[i] = entry
        defaults = {k: v for k, v in groups[0].items() if k != "params"}
        self.defaults = type(self)._validated(**defaults)
        self.state = new_state

    @staticmethod
    def _validated(**hyper: Any) -> dict[str, Any]:
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD: plain, momentum, Nesterov, L2 weight decay, maximize."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            self._validated(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                nesterov=nesterov,
                weight_decay=weight_decay,
                maximize=maximize,
            ),
        )

    @staticmethod
    def _validated(**h: Any) -> dict[str, Any]:
        out = {
            "lr": _check_number(h["lr"], "lr", 0.0, low_open=True),
            "momentum": _check_number(h["momentum"], "momentum", 0.0),
            "dampening": _check_number(h["dampening"], "dampening", 0.0),
            "nesterov": bool(h["nesterov"]),
            "weight_decay": _check_number(h["weight_decay"], "weight_decay", 0.0),
            "maximize": bool(h["maximize"]),
        }
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening."
            )
        return out

    def _update(
        self,
        kernels: Any,
        threads: int,
        param: np.ndarray,
        grad: np.ndarray,
        state: dict[str, Any],
    ) -> None:
        h = self.defaults
        buf: np.ndarray | None = None
        first = False
        if h["momentum"] != 0:
            first = "momentum_buffer" not in state
            if first:
                state["momentum_buffer"] = np.empty_like(param)
            buf = state["momentum_buffer"].reshape(-1)
        kernels.sgd_step(
            param.reshape(-1),
            grad,
            buf,
            h["lr"],
            h["momentum"],
            h["dampening"],
            h["nesterov"],
            h["weight_decay"],
            h["maximize"],
            first,
            threads,
        )


class Adam(Optimizer):
    """torch.optim.Adam: bias-corrected moments, L2 weight decay, amsgrad, maximize."""

    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            self._validated(
                lr=lr,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
            ),
        )

    @staticmethod
    def _validated(**h: Any) -> dict[str, Any]:
        betas = h["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
        return {
            "lr": _check_number(h["lr"], "lr", 0.0, low_open=True),
            "betas": (
                _check_number(betas[0], "beta1 (betas[0])", 0.0, 1.0),
                _check_number(betas[1], "beta2 (betas[1])", 0.0, 1.0),
            ),
            "eps": _check_number(h["eps"], "eps", 0.0),
            "weight_decay": _check_number(h["weight_decay"], "weight_decay", 0.0),
            "amsgrad": bool(h["amsgrad"]),
            "maximize": bool(h["maximize"]),
        }

    def _update(
        self,
        kernels: Any,
        threads: int,
        param: np.ndarray,
        grad: np.ndarray,
        state: dict[str, Any],
    ) -> None:
        h = self.defaults
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        vmax = None
        if h["amsgrad"]:
            if "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = np.zeros_like(param)
            vmax = state["max_exp_avg_sq"].reshape(-1)
        state["step"] += 1
        beta1, beta2 = h["betas"]
        kernels.adam_step(
            param.reshape(-1),
            grad,
            state["exp_avg"].reshape(-1),
            state["exp_avg_sq"].reshape(-1),
            vmax,
            state["step"],
            h["lr"],
            beta1,
            beta2,
            h["eps"],
            h["weight_decay"],
            self._decoupled,
            h["maximize"],
            threads,
        )


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2)."""

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )


class LRScheduler:
    """Sets the optimizer's learning rate from the number of scheduler steps taken.

    Like torch.optim.lr_scheduler: the rate at construction is the base rate and
    step count 0; each step() advances the count by one and sets the new rate.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optimizer must be a gradkit.optim optimizer, got "
                f"{type(optimizer).__name__}."
            )
        self.optimizer = optimizer
        self.base_lr = float(optimizer.param_groups[0]["lr"])
        self.last_epoch = 0
        self._set(self.lr_at(0))

    def lr_at(self, epoch: int) -> float:
        """The learning rate after `epoch` steps."""
        raise NotImplementedError

    def _set(self, lr: float) -> None:
        self.optimizer.param_groups[0]["lr"] = lr

    def step(self) -> None:
        self.last_epoch += 1
        self._set(self.lr_at(self.last_epoch))

    def get_last_lr(self) -> list[float]:
        return [float(self.optimizer.param_groups[0]["lr"])]

    def state_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        vars(self).update(copy.deepcopy(state_dict))


class ConstantLR(LRScheduler):
    """torch's ConstantLR: base_lr * factor for the first total_iters steps, then
    base_lr. factor=1 is a constant rate."""

    def __init__(
        self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5
    ) -> None:
        self.factor = _check_number(factor, "factor", 0.0, 1.0, high_open=False)
        self.total_iters = int(_check_number(total_iters, "total_iters", 0.0))
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * (self.factor if epoch < self.total_iters else 1.0)


class StepLR(LRScheduler):
    """torch's StepLR: base_lr * gamma ** (epoch // step_size)."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1
    ) -> None:
        self.step_size = int(_check_number(step_size, "step_size", 1.0))
        self.gamma = _check_number(gamma, "gamma", 0.0, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """torch's ExponentialLR: base_lr * gamma ** epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _check_number(gamma, "gamma", 0.0, low_open=True)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    """torch's CosineAnnealingLR (closed form):
    eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = int(_check_number(T_max, "T_max", 1.0))
        self.eta_min = _check_number(eta_min, "eta_min", 0.0)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        cosine = 1.0 + math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * cosine / 2.0


class OptimalLR(LRScheduler):
    """scikit-learn's "optimal" schedule: 1 / (alpha * (t0 + epoch)).

    The base rate of the optimizer is not used. t0 defaults to scikit-learn's
    choice for a loss whose slope is at most 1 (hinge, log_loss, ...): the first
    rate is then sqrt(1 / sqrt(alpha)), a typical weight's size.
    """

    def __init__(
        self, optimizer: Optimizer, alpha: float, t0: float | None = None
    ) -> None:
        self.alpha = _check_number(alpha, "alpha", 0.0, low_open=True)
        typical_weight = math.sqrt(1.0 / math.sqrt(self.alpha))
        default_t0 = 1.0 / (typical_weight * self.alpha)
        self.t0 = (
            default_t0 if t0 is None else _check_number(t0, "t0", 0.0, low_open=True)
        )
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return 1.0 / (self.alpha * (self.t0 + epoch))


class InvScalingLR(LRScheduler):
    """scikit-learn's "invscaling" schedule: base_lr / (epoch + 1) ** power_t."""

    def __init__(self, optimizer: Optimizer, power_t: float = 0.5) -> None:
        self.power_t = _check_number(power_t, "power_t", 0.0)
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr / (epoch + 1) ** self.power_t


class AdaptiveLR(LRScheduler):
    """scikit-learn's "adaptive" schedule: step(loss) once per epoch; after
    n_iter_no_change epochs whose loss is not below best - tol, the rate is
    multiplied by factor (1/5), as long as it is above min_lr."""

    def __init__(
        self,
        optimizer: Optimizer,
        tol: float = 1e-3,
        n_iter_no_change: int = 5,
        factor: float = 0.2,
        min_lr: float = 1e-6,
    ) -> None:
        self.tol = _check_number(tol, "tol", 0.0)
        self.n_iter_no_change = int(
            _check_number(n_iter_no_change, "n_iter_no_change", 1.0)
        )
        self.factor = _check_number(factor, "factor", 0.0, 1.0, low_open=True)
        self.min_lr = _check_number(min_lr, "min_lr", 0.0)
        self.best = math.inf
        self.no_improvement = 0
        super().__init__(optimizer)

    def lr_at(self, epoch: int) -> float:
        # The rate depends on the losses seen, not on the count: it is the
        # optimizer's own (the base rate at construction).
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, loss: float | None = None) -> None:  # type: ignore[override]
        if loss is None:
            raise TypeError("AdaptiveLR.step(loss) needs the epoch's loss.")
        lr = float(self.optimizer.param_groups[0]["lr"])
        loss = float(loss)
        if loss > self.best - self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        self.best = min(self.best, loss)
        if self.no_improvement >= self.n_iter_no_change and lr > self.min_lr:
            lr *= self.factor
            self.no_improvement = 0
        self.last_epoch += 1
        self._set(lr)
