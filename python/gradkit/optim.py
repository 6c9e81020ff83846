"""Optimizers on numpy arrays with torch.optim's update rules: SGD, Adam, AdamW.

    params = [W, b]                      # float32 or float64 arrays, updated in place
    opt = gradkit.optim.Adam(params, lr=1e-3)
    for batch in data:
        opt.step([dW, db])               # gradients in the same order, shapes, dtypes

Each step is one fused pass per array in a compiled kernel (C++ or numba, as
gradkit's config says), in the array's own dtype, following torch.optim's
single-tensor path step for step. A gradient given as None skips its array, as a
missing .grad does in torch. state_dict() / load_state_dict() round-trip exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradkit import _config

__all__ = ["SGD", "Adam", "AdamW", "Optimizer"]


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
