"""The losses of linear models: names, kernel codes, and user-written custom losses.

The kernels (gradkit._core.linear and gradkit._numba.linear, contract in
_core.pyi) know each built-in loss by a code. A CustomLoss is compiled by numba
into kernels with the same signatures, so everything above the kernels treats
both the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradkit import _config


@dataclass(frozen=True)
class LossSpec:
    """A loss as the kernels see it: its code, its parameter, its target coding."""

    code: int
    param: float = 0.0
    #: targets are 0/1 (log_loss) rather than -1/+1
    label_encode: bool = False
    custom: CustomLoss | None = None


MULTINOMIAL = LossSpec(8)

# name -> (code, parameter): None takes the estimator's epsilon.
_BUILTIN: dict[str, tuple[int, float | None]] = {
    "squared_error": (0, 0.0),
    "huber": (1, None),
    "epsilon_insensitive": (2, None),
    "squared_epsilon_insensitive": (3, None),
    "log_loss": (4, 0.0),
    "hinge": (5, 1.0),
    "perceptron": (5, 0.0),
    "squared_hinge": (6, 1.0),
    "modified_huber": (7, 0.0),
}


class CustomLoss:
    """A loss written by the user as two small Python functions, trained at
    compiled speed: gradkit compiles them with numba into its SGD kernels.

        def loss(y, p):            # y the target, p = x @ coef + intercept
            r = p - y
            return math.log(math.cosh(r))

        def dloss(y, p):           # d loss / d p
            return math.tanh(p - y)

        est = gradkit.linear_model.SGDRegressor(loss=CustomLoss(loss, dloss))

    Both take and return floats and must be compilable by numba in nopython mode
    (math and numpy scalar functions, no Python objects); a function numba cannot
    compile raises TypeError here, when the CustomLoss is made. For a classifier,
    y is -1 or +1 (as for "hinge"). Training runs on the numba backend whatever
    the configured backend is, since C++ cannot compile Python code.
    """

    def __init__(
        self,
        loss: Callable[[float, float], float],
        dloss: Callable[[float, float], float],
        name: str = "custom",
    ) -> None:
        if not callable(loss) or not callable(dloss):
            raise TypeError(
                "CustomLoss(loss, dloss) takes two functions of (y, p) returning "
                f"floats, got {type(loss).__name__} and {type(dloss).__name__}."
            )
        self.loss = loss
        self.dloss = dloss
        self.name = name
        self.kernels = _custom_kernels(loss, dloss)

    def __repr__(self) -> str:
        return f"CustomLoss({self.name})"

    # Copies (clone, deepcopy) and pickles rebuild from the two functions; the
    # compiled kernels are memoized per pair, so that costs nothing after the first.
    def __reduce__(self) -> tuple[Any, ...]:
        return (CustomLoss, (self.loss, self.dloss, self.name))

    # Two CustomLoss of the same functions are the same loss, so that clone() and
    # get_params() comparisons in scikit-learn see equal parameters.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, CustomLoss) and (self.loss, self.dloss) == (
            other.loss,
            other.dloss,
        )

    def __hash__(self) -> int:
        return hash((self.loss, self.dloss))


def _custom_kernels(loss: Callable, dloss: Callable) -> Any:
    from gradkit._numba.linear import custom_kernels

    return custom_kernels(loss, dloss)


def loss_spec(loss: Any, epsilon: float = 0.1) -> LossSpec:
    """The LossSpec of a loss name (or CustomLoss) of scikit-learn's SGD."""
    if isinstance(loss, CustomLoss):
        return LossSpec(-1, custom=loss)
    try:
        code, param = _BUILTIN[loss]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown loss {loss!r}; use one of {sorted(_BUILTIN)} or a CustomLoss."
        ) from None
    return LossSpec(
        code, epsilon if param is None else param, label_encode=loss == "log_loss"
    )


def linear_kernels(spec: LossSpec) -> Any:
    """The kernel module for this loss: the configured backend's, or the compiled
    custom kernels of a CustomLoss."""
    if spec.custom is not None:
        return spec.custom.kernels
    return _config.kernels("linear")


def kernel_data(X: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(data, indices, indptr) of X as the kernels take it: a C-contiguous dense
    array with None, None; or a CSR matrix's arrays (int32 indices, int64 indptr)."""
    if hasattr(X, "indptr"):
        return (
            np.ascontiguousarray(X.data),
            np.ascontiguousarray(X.indices, dtype=np.int32),
            np.ascontiguousarray(X.indptr, dtype=np.int64),
        )
    return np.ascontiguousarray(X), None, None


def dloss(spec: LossSpec, y: float, p: float) -> float:
    """d loss / d p of one sample, in Python (for the few scalars the Python
    layer needs, such as the 'optimal' schedule's start)."""
    if spec.custom is not None:
        return float(spec.custom.dloss(y, p))
    code, param = spec.code, spec.param
    if code == 0:
        return p - y
    if code == 1:
        r = p - y
        return r if abs(r) <= param else math.copysign(param, r)
    if code == 2:
        return -1.0 if y - p > param else (1.0 if p - y > param else 0.0)
    if code == 3:
        z = y - p
        return (
            -2 * (z - param) if z > param else (2 * (-z - param) if z < -param else 0.0)
        )
    if code == 4:
        if p > -37:
            e = math.exp(-p)
            return ((1 - y) - y * e) / (1 + e)
        return math.exp(p) - y
    if code == 5:
        return -y if p * y <= param else 0.0
    if code == 6:
        z = param - p * y
        return -2 * y * z if z > 0 else 0.0
    if code == 7:
        z = p * y
        return 0.0 if z >= 1 else (2 * (1 - z) * -y if z >= -1 else -4.0 * y)
    raise ValueError(f"no scalar derivative for loss code {code}")


def optimal_init(alpha: float, spec: LossSpec) -> float:
    """t0 of scikit-learn's 'optimal' schedule eta = 1 / (alpha (t0 + t - 1)):
    the first step equals a typical weight's size divided by the loss's slope."""
    if spec.code == MULTINOMIAL.code:
        # The softmax's slope for the true class is the logistic one's.
        spec = loss_spec("log_loss")
    typw = np.sqrt(1.0 / np.sqrt(alpha))
    initial_eta0 = typw / max(1.0, dloss(spec, 1.0, -typw))
    return float(1.0 / (initial_eta0 * alpha))
