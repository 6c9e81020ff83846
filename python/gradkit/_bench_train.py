"""The training benchmark behind `gradkit bench train`, shared with
bench/test_bench_train.py.

Each case times gradkit on both backends next to its peer on the same data, in
the same process: scikit-learn's SGD estimators and LogisticRegression(lbfgs),
numpy's X @ w for one fused gradient pass, torch.optim.Adam for an optimizer
step (when torch is installed). Each case also checks the quality of gradkit's
result against the peer's (test accuracy / R2 within 0.5 points, the objective
within 1e-6, the same step), so a fast wrong answer shows up as a failure.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from gradkit._bench import GRADKIT_BACKENDS, Repeats, _fmt_ms, _fmt_ratio, best_time_ms
from gradkit._table import text_table

FULL_SHAPE = (1_000_000, 100)
QUICK_SHAPE = (200_000, 100)
SEED = 20261127
EPOCHS = 5
ADAM_ARRAYS, ADAM_SIZE = 10, 1_000_000
ONCE = Repeats(1, 0.0)
FEW = Repeats(5, 2.0)


def make_train_data(n: int, d: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Standard-normal features, a dense true weight vector, and targets: y_clf
    the sign of a noisy linear score (about 8% of labels flipped by the noise),
    y_reg a noisy linear response. The last n // 5 rows are the test set."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d) / np.sqrt(d)
    score = X @ w + 0.3 + 0.2 * rng.standard_normal(n)
    return {
        "X": X,
        "y_clf": (score > 0).astype(np.int64),
        "y_reg": score,
        "w": w,
    }


@dataclass
class Row:
    case: str
    peer: str
    peer_ms: float | None = None
    ms: dict[str, float | None] = field(default_factory=dict)
    quality: str = ""
    ok: bool = True
    problems: list[str] = field(default_factory=list)


def _split(data: dict[str, np.ndarray], key: str) -> tuple[Any, Any, Any, Any]:
    X, y = data["X"], data[key]
    cut = len(y) - len(y) // 5
    return X[:cut], y[:cut], X[cut:], y[cut:]


def _sgd_case(data: dict[str, np.ndarray], kind: str, loss: str) -> Row:
    import sklearn.linear_model as sk

    import gradkit
    from gradkit import linear_model as gk

    classifier = kind == "classifier"
    Xt, yt, Xv, yv = _split(data, "y_clf" if classifier else "y_reg")
    params: dict[str, Any] = dict(loss=loss, max_iter=EPOCHS, tol=None, random_state=0)
    peer_cls = sk.SGDClassifier if classifier else sk.SGDRegressor
    ours_cls = gk.SGDClassifier if classifier else gk.SGDRegressor
    name = f"SGD{'Classifier' if classifier else 'Regressor'}({loss}), {EPOCHS} epochs"
    row = Row(name, "scikit-learn")
    peer_ms, peer = best_time_ms(lambda: peer_cls(**params).fit(Xt, yt), [], ONCE)
    row.peer_ms = peer_ms
    want = peer.score(Xv, yv)
    scores = []
    for backend in GRADKIT_BACKENDS:
        with gradkit.config_context(backend=backend):
            ours_cls(**{**params, "max_iter": 1}).fit(Xt[:1000], yt[:1000])  # compile
            ms, est = best_time_ms(lambda: ours_cls(**params).fit(Xt, yt), [], ONCE)
        row.ms[backend] = ms
        got = est.score(Xv, yv)
        scores.append(got)
        if got < want - 0.005:
            row.ok = False
            row.problems.append(
                f"{backend}: score {got:.4f} < scikit-learn's {want:.4f}"
            )
    metric = "accuracy" if classifier else "R2"
    row.quality = f"{metric} {min(scores):.4f} vs {want:.4f}"
    return row


def _gradient_case(data: dict[str, np.ndarray]) -> Row:
    import gradkit
    from gradkit import _config

    X, y = data["X"], data["y_clf"].astype(np.float64)
    coef = data["w"][None, :].copy()
    intercept = np.zeros(1)
    row = Row("logistic loss + gradient, one pass", "numpy X @ w")
    w = data["w"]
    row.peer_ms, _ = best_time_ms(lambda: X @ w, [], FEW)
    grads = []
    for backend in GRADKIT_BACKENDS:
        with gradkit.config_context(backend=backend):
            kernels = _config.kernels("linear")
            threads = _config.n_threads()
            g, gb = np.empty_like(coef), np.empty(1)

            args = (X, None, None, y, None, None, coef, intercept, 4, 0.0, g, gb,
                    threads)  # fmt: skip
            kernels.loss_grad(*args)
            row.ms[backend], _ = best_time_ms(kernels.loss_grad, args, FEW)
            grads.append(g.copy())
    p = 1.0 / (1.0 + np.exp(-(X @ w)))
    want = (p - y) @ X
    for backend, g in zip(GRADKIT_BACKENDS, grads, strict=True):
        if not np.allclose(g[0], want, rtol=1e-9, atol=1e-6):
            row.ok = False
            row.problems.append(f"{backend}: gradient differs from numpy's")
    row.quality = "gradient = numpy's"
    return row


def _logistic_objective(est: Any, X: np.ndarray, y: np.ndarray) -> float:
    p = X @ est.coef_[0] + est.intercept_[0]
    loss = np.logaddexp(0.0, p) - y * p
    return float(
        loss.mean() + 0.5 * np.dot(est.coef_[0], est.coef_[0]) / (est.C * len(y))
    )


def _logistic_case(data: dict[str, np.ndarray]) -> Row:
    import sklearn.linear_model as sk

    import gradkit
    from gradkit import linear_model as gk

    X, y = data["X"], data["y_clf"]
    row = Row("LogisticRegression fit", "scikit-learn lbfgs")
    row.peer_ms, peer = best_time_ms(
        lambda: sk.LogisticRegression().fit(X, y), [], ONCE
    )
    want = _logistic_objective(peer, X, y)
    gaps = []
    for backend in GRADKIT_BACKENDS:
        with gradkit.config_context(backend=backend):
            gk.LogisticRegression().fit(X[:1000], y[:1000])  # compile
            ms, est = best_time_ms(lambda: gk.LogisticRegression().fit(X, y), [], ONCE)
        row.ms[backend] = ms
        gap = (_logistic_objective(est, X, y) - want) / abs(want)
        gaps.append(gap)
        if gap > 1e-6:
            row.ok = False
            row.problems.append(f"{backend}: objective {gap:.1e} above lbfgs's")
    row.quality = f"objective - lbfgs's: {max(gaps):+.1e} (relative)"
    return row


def _adam_case(_: dict[str, np.ndarray]) -> Row:
    import gradkit
    from gradkit import optim

    rng = np.random.default_rng(0)
    params = [
        rng.standard_normal(ADAM_SIZE, dtype=np.float32) for _ in range(ADAM_ARRAYS)
    ]
    grads = [
        rng.standard_normal(ADAM_SIZE, dtype=np.float32) for _ in range(ADAM_ARRAYS)
    ]
    row = Row(
        f"Adam step, {ADAM_ARRAYS} x {ADAM_SIZE:,} float32", "torch fused / default",
    )  # fmt: skip
    for backend in GRADKIT_BACKENDS:
        with gradkit.config_context(backend=backend):
            ours = [p.copy() for p in params]
            opt = optim.Adam(ours)
            opt.step(grads)
            row.ms[backend], _ = best_time_ms(opt.step, [grads], FEW)
    try:
        import torch
    except ImportError:
        row.peer = "torch (not installed)"
        return row
    times = []
    for fused in (True, None):
        tensors = [torch.tensor(p, requires_grad=True) for p in params]
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.from_numpy(g)
        topt = torch.optim.Adam(tensors, fused=fused)
        topt.step()
        with torch.no_grad():
            times.append(best_time_ms(topt.step, [], FEW)[0])
    row.peer_ms = times[0]
    row.quality = f"torch default: {_fmt_ms(times[1])} ms"
    return row


CASES: dict[str, Callable[[dict[str, np.ndarray]], Row]] = {
    "sgd_hinge": lambda data: _sgd_case(data, "classifier", "hinge"),
    "sgd_log_loss": lambda data: _sgd_case(data, "classifier", "log_loss"),
    "sgd_regressor": lambda data: _sgd_case(data, "regressor", "squared_error"),
    "gradient": _gradient_case,
    "logistic": _logistic_case,
    "adam": _adam_case,
}


def run_train_bench(
    quick: bool,
    out: TextIO | None = sys.stdout,
    progress: bool = True,
    *,
    n: int | None = None,
    n_threads: int | None | str = "keep",
    cases: list[str] | None = None,
) -> list[Row]:
    """Run the training cases (all, or those named) and print the table."""
    import gradkit

    shape = QUICK_SHAPE if quick else FULL_SHAPE
    n = n or shape[0]
    d = shape[1]
    if progress:
        print(f"gradkit bench train: making data, {n:,} x {d} ...", file=sys.stderr)
    data = make_train_data(n, d)
    names = cases or list(CASES)
    with gradkit.config_context(n_threads=n_threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the fixed-epoch fits
        threads = gradkit._config.n_threads()
        rows = run_cases(
            [(name, functools.partial(CASES[name], data)) for name in names], progress
        )
    if out is not None:
        print(
            f"gradkit {gradkit.__version__} training benchmark: {n:,} x {d} float64, "
            f"{threads} thread(s)",
            file=out,
        )
        print_rows(rows, out)
    return rows


def run_cases(cases: list[tuple[str, Callable[[], Row]]], progress: bool) -> list[Row]:
    """Run each (name, case); a case that raises becomes a failed row, so one broken
    case does not hide the others. A progress line per case on stderr."""
    rows = []
    for i, (name, case) in enumerate(cases, 1):
        try:
            row = case()
        except Exception as exc:  # one broken case must not hide the others
            row = Row(name, "-", ok=False, problems=[f"{type(exc).__name__}: {exc}"])
        rows.append(row)
        if progress:
            print(
                f"[{i}/{len(cases)}] {row.case:<40} cpp "
                f"{_fmt_ms(row.ms.get('cpp')):>8}  peer {_fmt_ms(row.peer_ms):>8}  "
                f"{'ok' if row.ok else 'FAILED'}",
                file=sys.stderr,
            )
    return rows


def print_rows(rows: list[Row], out: TextIO) -> None:
    """The table of rows, then each problem a row reported."""
    print(format_table(rows), file=out)
    for row in rows:
        for problem in row.problems:
            print(f"!!! {row.case}: {problem}", file=out)


def format_table(rows: list[Row]) -> str:
    titles = ["case", "cpp ms", "numba ms", "peer", "peer ms", "peer/cpp", "quality",
              "check"]  # fmt: skip
    cells = []
    for row in rows:
        ms = row.ms
        cpp = ms.get("cpp")
        cells.append(
            [
                row.case,
                _fmt_ms(cpp),
                _fmt_ms(ms.get("numba")),
                row.peer,
                _fmt_ms(row.peer_ms),
                _fmt_ratio(row.peer_ms / cpp if cpp and row.peer_ms else None, "x"),
                row.quality,
                "ok" if row.ok else "FAILED",
            ]
        )
    return text_table(titles, cells, right={1, 2, 4, 5})
