"""The compression benchmark behind `gradkit bench compress`, shared with
bench/test_bench_compress.py.

Kernel cases on one float32 matrix (4096 x 4096; --quick 2048 x 2048), each timed
on both backends next to its peer in the same process and checked against it:
per-channel int8 quantization with its statistics (torch's
PerChannelMinMaxObserver + quantize_per_channel: int_repr, scales and zero points
must be equal), dequantization (torch's dequantize, equal), and magnitude pruning
to 90% (numpy's np.partition threshold, same elements kept; torch's
l1_unstructured timed as a second peer).

Then the sizes compression reaches on two bench models, with the metric before
and after: an MLP state dict trained by scikit-learn on the digits dataset
(float32, 64-256-256-10) and a 10-class gradkit LogisticRegression on 500
features, 30 of them informative (float64). Sizes are those of the files
gradkit.save writes.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from gradkit._bench import GRADKIT_BACKENDS, Repeats, _fmt_ms, best_time_ms
from gradkit._bench_train import Row, print_rows, run_cases
from gradkit._table import text_table

FULL_SIDE, QUICK_SIDE = 4096, 2048
SPARSITY = 0.9
FEW = Repeats(7, 3.0)
RATIO_RECIPES = ("int8", "int4", "prune:0.9+share:4")
MAX_DROP = 0.01
_TORCH_DEPRECATION = "torch.quantize_per_tensor, torch.quantize_per_channel"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _time_backends(row: Row, func: Callable[[], Any]) -> dict[str, Any]:
    """Time func on each backend (after one warm-up call); the results by backend."""
    import gradkit

    results = {}
    for backend in GRADKIT_BACKENDS:
        with gradkit.config_context(backend=backend):
            func()  # compiles numba kernels, touches fresh pages
            row.ms[backend], results[backend] = best_time_ms(func, [], FEW)
    return results


def _quantize_case(w: np.ndarray) -> tuple[Row, Any]:
    from gradkit.compress import quantize

    row = Row("quantize int8 per channel + stats", "torch observer+quantize")
    ours = _time_backends(row, lambda: quantize(w, granularity="channel"))
    torch = _torch()
    if torch is None:
        row.peer = "torch (not installed)"
        return row, None
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    tensor = torch.from_numpy(w)

    def peer() -> Any:
        observer = PerChannelMinMaxObserver(
            ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
        )
        observer(tensor)
        scale, zero_point = observer.calculate_qparams()
        return torch.quantize_per_channel(tensor, scale, zero_point, 0, torch.qint8)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_DEPRECATION)
        peer()
        row.peer_ms, q = best_time_ms(peer, [], FEW)
    for backend, result in ours.items():
        same = (
            np.array_equal(result.data, q.int_repr().numpy())
            and np.array_equal(result.scale, q.q_per_channel_scales().numpy())
            and np.array_equal(result.zero_point, q.q_per_channel_zero_points().numpy())
        )
        if not same:
            row.ok = False
            row.problems.append(f"{backend}: differs from torch's int_repr/qparams")
    row.quality = "int_repr, scale, zero_point == torch" if row.ok else "differs"
    return row, q


def _dequantize_case(w: np.ndarray, torch_q: Any) -> Row:
    from gradkit.compress import quantize

    row = Row("dequantize int8 per channel", "torch dequantize")
    quantized = quantize(w, granularity="channel")
    ours = _time_backends(row, quantized.dequantize)
    if torch_q is None:
        row.peer = "torch (not installed)"
        return row
    torch_q.dequantize()
    row.peer_ms, want = best_time_ms(torch_q.dequantize, [], FEW)
    for backend, result in ours.items():
        if not np.array_equal(result, want.numpy()):
            row.ok = False
            row.problems.append(f"{backend}: differs from torch's dequantize")
    row.quality = "== torch" if row.ok else "differs"
    return row


def numpy_prune(w: np.ndarray, sparsity: float) -> np.ndarray:
    """The numpy yardstick: zero the round(sparsity * n) smallest |w|."""
    magnitude = np.abs(w)
    k = round(sparsity * w.size)
    threshold = np.partition(magnitude.reshape(-1), k - 1)[k - 1]
    return np.where(magnitude > threshold, w, 0)


def _prune_case(w: np.ndarray, torch_repeats: Repeats) -> Row:
    from gradkit.compress import prune

    row = Row(f"prune {SPARSITY:.0%} by magnitude", "numpy np.partition")
    ours = _time_backends(row, lambda: prune(w, SPARSITY))
    numpy_prune(w, SPARSITY)
    row.peer_ms, want = best_time_ms(numpy_prune, [w, SPARSITY], FEW)
    for backend, result in ours.items():
        if not np.array_equal(result.kept_mask(), want != 0):
            row.ok = False
            row.problems.append(f"{backend}: keeps other elements than numpy")
    torch = _torch()
    if torch is None:
        row.quality = "torch not installed"
        return row
    from torch.nn.utils import prune as torch_prune

    best = float("inf")
    for _ in range(torch_repeats.count):
        layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        start = time.perf_counter()
        torch_prune.l1_unstructured(layer, "weight", amount=SPARSITY)
        best = min(best, time.perf_counter() - start)
    cpp = row.ms.get("cpp")
    ratio = f" ({best * 1e3 / cpp:.0f}x)" if cpp else ""
    row.quality = f"torch l1_unstructured {_fmt_ms(best * 1e3)} ms{ratio}"
    return row


# --- compression ratios on the bench models --------------------------------------


@dataclass
class RatioRow:
    model: str
    recipe: str
    bytes_before: int
    bytes_after: int
    metric_before: float
    metric_after: float

    @property
    def ratio(self) -> float:
        return self.bytes_before / self.bytes_after

    @property
    def drop(self) -> float:
        return self.metric_before - self.metric_after


def mlp_forward(weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Logits of a ReLU MLP state dict {"layerI.weight" (out, in), "layerI.bias"}."""
    h = X
    layers = sorted({name.split(".")[0] for name in weights})
    for i, layer in enumerate(layers):
        h = h @ weights[f"{layer}.weight"].T + weights[f"{layer}.bias"]
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h


def mlp_accuracy(weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(mlp_forward(weights, X).argmax(axis=1) == y))


def bench_models() -> dict[str, tuple[Any, Any, Any, Any]]:
    """name -> (model, X_test, y_test, metric) of the two bench models."""
    from sklearn.datasets import load_digits, make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    from gradkit.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier((256, 256), max_iter=60, random_state=0)
        mlp.fit(X_train, y_train)
    state = {}
    for i, (coef, bias) in enumerate(zip(mlp.coefs_, mlp.intercepts_, strict=True)):
        state[f"layer{i}.weight"] = np.ascontiguousarray(coef.T, dtype=np.float32)
        state[f"layer{i}.bias"] = bias.astype(np.float32)

    Xc, yc = make_classification(
        n_samples=8000, n_features=500, n_informative=30, n_redundant=0,
        n_classes=10, class_sep=3.0, random_state=0,
    )  # fmt: skip
    Xc_train, Xc_test, yc_train, yc_test = train_test_split(Xc, yc, random_state=0)
    # lbfgs: 10 classes on 500 features is ill-conditioned for plain gradient descent.
    logistic = LogisticRegression(solver="lbfgs", max_iter=500)
    logistic.fit(Xc_train, yc_train)

    def mlp_metric(weights: Any, X_val: Any, y_val: Any) -> float:
        return mlp_accuracy(weights, X_val, y_val)

    return {
        "MLP 64-256-256-10 float32 (digits)": (state, X_test, y_test, mlp_metric),
        "LogisticRegression 10 x 500 float64": (logistic, Xc_test, yc_test, None),
    }


def ratio_rows(progress: bool = False) -> list[RatioRow]:
    from gradkit.compress import compress_model

    rows = []
    for name, (model, X_test, y_test, metric) in bench_models().items():
        searches: list[tuple[str, Any, float | None]] = [
            (recipe, recipe, None) for recipe in RATIO_RECIPES
        ]
        searches.append((f"search, max_drop={MAX_DROP}", None, MAX_DROP))
        for label, recipe, max_drop in searches:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # reported in the table
                compressed = compress_model(
                    model, recipe, X_test, y_test, metric=metric, max_drop=max_drop
                )
            report = compressed.report
            assert report is not None and report.metric_before is not None
            if max_drop is not None:
                label = f"{label}: {compressed.recipe}"
            rows.append(
                RatioRow(
                    name, label, report.bytes_before, report.bytes_after,
                    report.metric_before, float(report.metric_after or 0.0),
                )
            )  # fmt: skip
            if progress:
                print(f"  {name}: {label} {rows[-1].ratio:.1f}x", file=sys.stderr)
    return rows


def format_ratio_table(rows: list[RatioRow]) -> str:
    cells = [
        [
            r.model, r.recipe, f"{r.bytes_before:,}", f"{r.bytes_after:,}",
            f"{r.ratio:.1f}x", f"{r.metric_before:.4f}", f"{r.metric_after:.4f}",
            f"{r.drop:+.4f}",
        ]
        for r in rows
    ]  # fmt: skip
    titles = ["model", "recipe", "bytes", "compressed", "ratio", "metric", "after",
              "drop"]  # fmt: skip
    return text_table(titles, cells, right={2, 3, 4, 5, 6, 7})


def run_compress_bench(
    quick: bool,
    out: TextIO | None = sys.stdout,
    progress: bool = True,
    *,
    n: int | None = None,
    n_threads: int | None | str = "keep",
) -> tuple[list[Row], list[RatioRow]]:
    """Time the kernels next to their peers, measure the ratios, print both."""
    import gradkit

    side = n or (QUICK_SIDE if quick else FULL_SIDE)
    w = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
    torch_q: list[Any] = [None]

    def quantize_case() -> Row:
        row, torch_q[0] = _quantize_case(w)
        return row

    cases: list[tuple[str, Callable[[], Row]]] = [
        ("quantize", quantize_case),
        ("dequantize", lambda: _dequantize_case(w, torch_q[0])),
        ("prune", lambda: _prune_case(w, Repeats(1 if not quick else 2, 0.0))),
    ]
    with gradkit.config_context(n_threads=n_threads):
        threads = gradkit._config.n_threads()
        rows = run_cases(cases, progress)
        if progress:
            print("compressing the bench models ...", file=sys.stderr)
        ratios = ratio_rows(progress)
    if out is not None:
        print(
            f"gradkit {gradkit.__version__} compression benchmark: {side} x {side} "
            f"float32, {threads} thread(s)",
            file=out,
        )
        print_rows(rows, out)
        print("\nsizes of gradkit.save files, metric = test accuracy", file=out)
        print(format_ratio_table(ratios), file=out)
    return rows, ratios
