"""Compressing whole models: recipes, the accuracy-aware search, CompressedModel.

A recipe is a string of one or two steps joined by "+": at most one structural step
and at most one value coding.
    prune:S       magnitude pruning to sparsity S (0 <= S < 1) across all the
                  compressed arrays at once (global), stored sparse
    prune:N:M     N:M pruning along the last axis (2:4)
    lowrank:E     truncated SVD keeping energy E of the squared singular values,
                  where the two factors are smaller than the array
    int8 | uint8 | int4
                  quantization, per channel along axis 0 (int8 and int4 symmetric,
                  uint8 affine); after pruning, the kept values per tensor
    share:B       k-means weight sharing with a 2**B codebook
e.g. "int8", "prune:0.9+share:4" (Deep Compression without retraining).

Which arrays are compressed: a gradkit estimator's coef_; in a dict of arrays
(e.g. a network's state dict) every float array of two or more dims. Biases,
intercepts and the like stay exact: they are tiny and errors there shift every
output.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradkit import _serialize
from gradkit._table import text_table
from gradkit.compress._arrays import (
    QUANT_RANGES,
    LowRankArray,
    _dense,
    global_prune,
    low_rank,
    prune,
    quantize,
    share_weights,
)

#: What compress_model(..., max_drop=...) tries when no recipes are given; each is
#: tried from the smallest file to the largest, and the first within max_drop wins.
DEFAULT_SEARCH = (
    "prune:0.95+share:4",
    "prune:0.9+share:4",
    "prune:0.8+share:5",
    "int4",
    "prune:0.5+share:6",
    "share:6",
    "int8",
)


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: structure ("prune", S) / ("n:m", N, M) / ("lowrank", E) or
    None, then values ("quantize", dtype) / ("share", bits) or None."""

    text: str
    structure: tuple | None
    values: tuple | None

    @classmethod
    def parse(cls, text: Any) -> Recipe:
        if isinstance(text, Recipe):
            return text
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"a recipe is a string such as 'int8' or 'prune:0.9+share:4', got "
                f"{text!r}."
            )
        structure: tuple | None = None
        values: tuple | None = None
        for step in text.replace(" ", "").split("+"):
            name, _, arg = step.partition(":")
            if name in ("prune", "lowrank"):
                if structure is not None:
                    raise ValueError(
                        f"recipe {text!r} has two structural steps; use one of "
                        "prune or lowrank."
                    )
                structure = _structure_step(text, name, arg)
            elif name in QUANT_RANGES or name == "share":
                if values is not None:
                    raise ValueError(
                        f"recipe {text!r} codes the values twice; use one of "
                        "int8, uint8, int4 or share:B."
                    )
                values = _values_step(text, name, arg)
            else:
                raise ValueError(
                    f"unknown step {step!r} in recipe {text!r}; steps are prune:S, "
                    "prune:N:M, lowrank:E, int8, uint8, int4 and share:B."
                )
        return cls(text, structure, values)

    def apply(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """The compressed form of each weight array. Unstructured pruning is global:
        one magnitude threshold across all the arrays, so layers with small
        weights lose more (torch's global_unstructured; on an MLP it keeps far
        more accuracy than pruning each layer to the same sparsity)."""
        if self.structure is not None and self.structure[0] == "prune":
            pruned = global_prune(arrays, self.structure[1])
            return {
                name: p if p.n_kept == 0 else p.with_values(self._code(p.values, False))
                for name, p in pruned.items()
            }
        return {name: self._apply_one(w) for name, w in arrays.items()}

    def _apply_one(self, w: np.ndarray) -> Any:
        if self.structure is None:
            return self._code(w, per_channel=True)
        if self.structure[0] == "n:m":
            pruned = prune(w, None, "n:m", self.structure[1], self.structure[2])
            return pruned.with_values(self._code(pruned.values, per_channel=False))
        if w.ndim < 2 or min(w.shape[0], w.size // w.shape[0]) < 2:
            return self._code(w, per_channel=True)  # a vector has no lower rank
        factors = low_rank(w, energy=self.structure[1])
        if factors.nbytes >= w.nbytes:  # the rank is too high to save anything
            return self._code(w, per_channel=True)
        return LowRankArray(
            self._code(factors.left, per_channel=True),
            self._code(factors.right, per_channel=True),
            factors.shape,
            factors.dtype,
        )

    def _code(self, w: np.ndarray, per_channel: bool) -> Any:
        if self.values is None:
            return w
        if self.values[0] == "share":
            return share_weights(w, self.values[1])
        dtype = self.values[1]
        return quantize(
            w,
            dtype=dtype,
            scheme="affine" if dtype == "uint8" else "symmetric",
            granularity="channel" if per_channel and w.ndim >= 2 else "tensor",
        )


def _structure_step(text: str, name: str, arg: str) -> tuple:
    numbers_ = arg.split(":") if arg else []
    try:
        if name == "prune" and len(numbers_) == 1:
            sparsity = float(numbers_[0])
            if 0.0 <= sparsity < 1.0:
                return ("prune", sparsity)
        elif name == "prune" and len(numbers_) == 2:
            n, m = int(numbers_[0]), int(numbers_[1])
            if 1 <= n <= m:
                return ("n:m", n, m)
        elif name == "lowrank" and len(numbers_) == 1:
            energy = float(numbers_[0])
            if 0.0 < energy <= 1.0:
                return ("lowrank", energy)
    except ValueError:
        pass
    raise ValueError(
        f"bad step {name}:{arg} in recipe {text!r}: use prune:S with 0 <= S < 1, "
        "prune:N:M with 1 <= N <= M, or lowrank:E with 0 < E <= 1."
    )


def _values_step(text: str, name: str, arg: str) -> tuple:
    if name != "share":
        if arg:
            raise ValueError(f"step {name} in recipe {text!r} takes no argument.")
        return ("quantize", name)
    if arg.isdigit() and 1 <= int(arg) <= 8:
        return ("share", int(arg))
    raise ValueError(
        f"bad step share:{arg} in recipe {text!r}: use share:B, 1 <= B <= 8."
    )


# --- the compressed model --------------------------------------------------------


def _is_target(name: str, array: np.ndarray, estimator: bool) -> bool:
    if estimator:
        return name == "coef_"
    return array.dtype.kind == "f" and array.ndim >= 2


class CompressedModel:
    """A model whose weight arrays are stored compressed.

    For an estimator it predicts like the original (predict, predict_proba,
    decision_function, score): the weights are decompressed once, on first use, into
    a fitted estimator of the original class, `.to_dense()`. For a dict of arrays
    `.to_dense()` is the dict of decompressed arrays. `.arrays` holds the stored
    forms, `.report` the CompressionReport of compress_model (not saved with the
    model), `.nbytes` the bytes the arrays take in memory; gradkit.save writes it,
    entropy-coded.
    """

    def __init__(
        self,
        arrays: dict[str, Any],
        template: Any | None,
        recipe: str,
        report: CompressionReport | None = None,
    ) -> None:
        self.arrays = arrays
        self.template = template  # the estimator without its compressed arrays
        self.recipe = recipe
        self.report = report
        self._dense: Any = None

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

    def to_dense(self) -> Any:
        """The decompressed model: a fitted estimator, or a dict of arrays."""
        if self._dense is None:
            dense = {name: _dense(part) for name, part in self.arrays.items()}
            if self.template is None:
                self._dense = dense
            else:
                estimator = copy.copy(self.template)
                for name, value in dense.items():
                    setattr(estimator, name, value)
                self._dense = estimator
        return self._dense

    def _estimator(self, method: str) -> Any:
        if self.template is None:
            raise TypeError(
                f"a compressed dict of arrays has no {method}(); take the arrays "
                "with .to_dense() and run them with your own model code."
            )
        return self.to_dense()

    def predict(self, X: Any) -> Any:
        return self._estimator("predict").predict(X)

    def predict_proba(self, X: Any) -> Any:
        return self._estimator("predict_proba").predict_proba(X)

    def decision_function(self, X: Any) -> Any:
        return self._estimator("decision_function").decision_function(X)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        return self._estimator("score").score(X, y, sample_weight=sample_weight)

    @property
    def classes_(self) -> Any:
        return self._estimator("classes_").classes_

    def __repr__(self) -> str:
        what = "dict" if self.template is None else type(self.template).__name__
        return (
            f"CompressedModel({what}, recipe={self.recipe!r}, nbytes={self.nbytes:,})"
        )

    def _encode(self, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "kind": "compressed",
            "recipe": self.recipe,
            "arrays": {
                name: _serialize.encode_array(part, f"arrays/{name}", tensors)
                for name, part in self.arrays.items()
            },
        }
        if self.template is not None:
            meta["estimator"] = _serialize._encode_estimator(
                self.template, tensors, skip=tuple(self.arrays)
            )
        # The report is not stored: it describes how the model was chosen, and the
        # file sizes it quotes are those of files without it.
        return meta

    @classmethod
    def _decode(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
        arrays = {
            name: _serialize.decode_array(m, tensors)
            for name, m in meta["arrays"].items()
        }
        template = (
            _serialize._decode_estimator(meta["estimator"], tensors)
            if "estimator" in meta
            else None
        )
        return cls(arrays, template, meta["recipe"])


def _split_model(model: Any) -> tuple[dict[str, np.ndarray], Any | None]:
    """(the arrays to consider, the estimator template or None) of a model."""
    if isinstance(model, CompressedModel):
        raise TypeError(
            "model is already compressed; compress the original model instead."
        )
    if isinstance(model, dict):
        if not model:
            raise ValueError("model is an empty dict; there is nothing to compress.")
        return _serialize.check_arrays(model), None
    _serialize.class_path(model)  # a TypeError for classes gradkit cannot store
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model)
    template = copy.copy(model)
    arrays = {"coef_": np.asarray(model.coef_)}
    del template.coef_
    return arrays, template


def _compress(
    arrays: dict[str, Any], template: Any | None, recipe: Recipe
) -> CompressedModel:
    estimator = template is not None
    targets = {
        name: a
        for name, a in arrays.items()
        if not hasattr(a, "_tensors") and _is_target(name, a, estimator)
    }
    compressed = recipe.apply(targets) if targets else {}
    merged = {name: compressed.get(name, a) for name, a in arrays.items()}
    return CompressedModel(merged, template, recipe.text)


# --- the report ------------------------------------------------------------------


@dataclass
class CompressionReport:
    """What compress_model did: the original's size and metric, and one row per
    recipe: its file size, ratio, metric, drop and status ("chosen", "drop too
    large", "not needed": a smaller recipe already passed, or "no metric")."""

    bytes_before: int
    metric_before: float | None
    max_drop: float | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def chosen(self) -> dict[str, Any]:
        return next(row for row in self.rows if row["status"] == "chosen")

    @property
    def bytes_after(self) -> int:
        return int(self.chosen["bytes"])

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after

    @property
    def metric_after(self) -> float | None:
        return self.chosen["metric"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes_before": self.bytes_before,
            "metric_before": self.metric_before,
            "max_drop": self.max_drop,
            "rows": self.rows,
        }

    def __str__(self) -> str:
        def metric(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        before = metric(self.metric_before)
        cells = [["original", f"{self.bytes_before:,}", "1.0x", before, "", ""]]
        for row in self.rows:
            drop = row["drop"]
            cells.append(
                [
                    row["recipe"],
                    f"{row['bytes']:,}",
                    f"{self.bytes_before / row['bytes']:.1f}x",
                    metric(row["metric"]),
                    "" if drop is None else f"{drop:+.4f}",
                    row["status"],
                ]
            )
        titles = ["recipe", "bytes", "ratio", "metric", "drop", "status"]
        table = text_table(titles, cells, right={1, 2, 3, 4})
        if self.max_drop is not None:
            table += f"\nmax_drop = {self.max_drop:g} (drop = metric before - after)"
        return table


# --- compress_model --------------------------------------------------------------


def _scorer(metric: Any, estimator: bool) -> Callable[[Any, Any, Any], float]:
    if metric is None:
        if not estimator:
            raise ValueError(
                "a dict of arrays cannot be scored by itself: pass metric, a function "
                "metric(weights, X_val, y_val) -> float (higher is better)."
            )
        return lambda model, X, y: float(model.score(X, y))
    if isinstance(metric, str):
        if not estimator:
            raise ValueError(
                f"metric={metric!r} names a scorer, which needs an estimator; for a "
                "dict of arrays pass a function metric(weights, X_val, y_val)."
            )
        from gradkit.metrics import get_scorer

        scorer = get_scorer(metric)
        return lambda model, X, y: float(scorer(model, X, y))
    if callable(metric):
        return lambda model, X, y: float(metric(model, X, y))
    raise ValueError(
        f"metric must be None, a scorer name such as 'accuracy' or 'roc_auc', or a "
        f"function metric(model, X_val, y_val) -> float; got {metric!r}."
    )


def compress_model(
    model: Any,
    recipe: str | Sequence[str] | None = "int8",
    X_val: Any = None,
    y_val: Any = None,
    metric: Any = None,
    max_drop: float | None = None,
) -> CompressedModel:
    """Compress a gradkit estimator or a dict of arrays; see the module docstring
    for recipes and which arrays are compressed.

    metric scores a model on (X_val, y_val), higher is better: None is the
    estimator's own score (accuracy, R^2), a string is a scorer name
    (gradkit.metrics.get_scorer), a function is called as metric(model, X_val,
    y_val) with the decompressed model (for a dict of arrays, the dict; X_val and
    y_val may then be None and the function close over its own data).

    Without max_drop, `recipe` is applied as it is. With max_drop, `recipe` is a
    list of candidates (None: DEFAULT_SEARCH); they are tried from the smallest
    file to the largest and the first whose metric drop (before - after) is at
    most max_drop is returned. When none is, the one with the smallest drop is
    returned with a warning. Either way `.report` lists every recipe.
    """
    arrays, template = _split_model(model)
    estimator = template is not None
    can_score = metric is not None or (X_val is not None and y_val is not None)
    if max_drop is not None:
        if isinstance(max_drop, (bool, np.bool_)) or not isinstance(
            max_drop, numbers.Real
        ):
            raise ValueError(f"max_drop must be a number >= 0, got {max_drop!r}.")
        if not max_drop >= 0:
            raise ValueError(f"max_drop must be a number >= 0, got {max_drop!r}.")
        if estimator and (X_val is None or y_val is None):
            raise ValueError(
                "max_drop needs validation data to measure the drop: pass X_val and "
                "y_val."
            )
        if not estimator and metric is None:
            raise ValueError(
                "max_drop on a dict of arrays needs metric, a function "
                "metric(weights, X_val, y_val) -> float (higher is better)."
            )
        texts = DEFAULT_SEARCH if recipe is None else recipe
        if isinstance(texts, str):
            texts = [texts]
    else:
        if recipe is None or not isinstance(recipe, (str, Recipe)):
            raise ValueError(
                "without max_drop, recipe is one recipe such as 'int8'; a list of "
                "recipes is searched only with max_drop."
            )
        texts = [recipe]
    recipes = [Recipe.parse(text) for text in texts]
    score = _scorer(metric, estimator) if can_score else None

    def evaluate(candidate: Any) -> float | None:
        return None if score is None else score(candidate, X_val, y_val)

    report = CompressionReport(
        bytes_before=len(_serialize.to_bytes(model)),
        metric_before=evaluate(model if estimator else arrays),
        max_drop=None if max_drop is None else float(max_drop),
    )
    candidates = [_compress(arrays, template, r) for r in recipes]
    sizes = [len(_serialize.to_bytes(c)) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: sizes[i])
    chosen = None
    best_drop = None
    for i in order:
        row = {"recipe": recipes[i].text, "bytes": sizes[i], "metric": None,
               "drop": None, "status": "not needed"}  # fmt: skip
        report.rows.append(row)
        if chosen is not None and max_drop is not None:
            continue
        after = evaluate(candidates[i].to_dense())
        row["metric"] = after
        if after is None or report.metric_before is None:
            row["status"] = "no metric" if chosen is not None else "chosen"
            chosen = i if chosen is None else chosen
            continue
        row["drop"] = drop = report.metric_before - after
        if max_drop is None or drop <= max_drop:
            row["status"] = "chosen"
            chosen = i
        else:
            row["status"] = "drop too large"
            if best_drop is None or drop < best_drop[0]:
                best_drop = (drop, i)
    if chosen is None:
        assert best_drop is not None
        chosen = best_drop[1]
        next(r for r in report.rows if r["recipe"] == recipes[chosen].text)[
            "status"
        ] = "chosen"
        warnings.warn(
            f"no recipe kept the metric drop within max_drop={max_drop:g}; returning "
            f"the one with the smallest drop, {recipes[chosen].text!r} "
            f"({best_drop[0]:+.4g}). Allow a larger drop or try milder recipes.",
            UserWarning,
            stacklevel=2,
        )
    result = candidates[chosen]
    result.report = report
    return result
