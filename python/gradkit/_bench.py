"""The metrics benchmark behind `gradkit bench metrics`, and the data and cases that
bench/test_bench_metrics.py shares with it.

Every gradkit metric is timed on both backends next to sklearn.metrics on the same
inputs, and next to a yardstick: the cheapest NumPy work that any implementation of
that metric must at least do (one read pass over the labels, one np.sort of the
scores, or the NumPy one-liner of the formula). Each gradkit result is checked
against sklearn's, so a fast wrong answer shows up as MISMATCH, never as a win.
"""

from __future__ import annotations

import gc
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from gradkit._table import text_table

FULL_N = 10_000_000
QUICK_N = 1_000_000
SEED = 20261127
# Share of y_pred that disagrees with y_true.
LABEL_NOISE = 0.2

GRADKIT_BACKENDS = ("cpp", "numba")


@dataclass(frozen=True)
class Repeats:
    """How often to time one call: best of `count`, stopping early once the calls
    so far have taken `budget_s` in total (sklearn's slowest calls take seconds)."""

    count: int
    budget_s: float


# quick: gradkit and the yardsticks best of 3; sklearn once when it is slow.
QUICK_REPEATS = {"gradkit": Repeats(3, 2.0), "sklearn": Repeats(3, 0.25)}
FULL_REPEATS = {"gradkit": Repeats(7, 5.0), "sklearn": Repeats(3, 12.0)}


def make_metrics_data(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """The benchmark inputs, the same for every run with the same n and seed.

    - y_true, y_pred: binary int64 labels that agree on about 80% of samples.
    - scores: float64 probabilities of the positive class, strictly inside (0, 1)
      and informative (higher for positives), as a classifier would give.
    - y_reg, pred_reg: float64 regression targets and predictions.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 samples, got {n}.")
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=n, dtype=np.int64)
    flip = rng.random(n) < LABEL_NOISE
    y_pred = np.where(flip, 1 - y_true, y_true)
    # A logit that separates the classes well but not perfectly; |logit| stays far
    # below 36, so the sigmoid never rounds to exactly 0 or 1.
    logit = 1.5 * (2 * y_true - 1) + rng.standard_normal(n)
    scores = 1.0 / (1.0 + np.exp(-logit))
    y_reg = rng.standard_normal(n) * 3.0 + 10.0
    pred_reg = y_reg + rng.standard_normal(n)
    return {
        "y_true": y_true,
        "y_pred": y_pred,
        "scores": scores,
        "y_reg": y_reg,
        "pred_reg": pred_reg,
    }


# --- yardsticks: NumPy lower bounds for the work of each metric ------------------


def read_pass(a: np.ndarray, b: np.ndarray) -> tuple[Any, Any]:
    """One read pass over both label arrays: no label metric can do less."""
    return np.sum(a), np.sum(b)


def sort_scores(scores: np.ndarray) -> np.ndarray:
    """np.sort of the scores: a ranking metric's usual floor (quicksort, unstable)."""
    return np.sort(scores)


def numpy_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def numpy_mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def numpy_r2(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - np.sum((a - b) ** 2) / np.sum((a - np.mean(a)) ** 2))


@dataclass(frozen=True)
class Yardstick:
    name: str
    func: Callable[..., Any]
    args: tuple[str, ...]
    # The one-liners compute the metric itself, so their result is checked too.
    computes_metric: bool


READ_PASS = Yardstick("read pass", read_pass, ("y_true", "y_pred"), False)
NP_SORT = Yardstick("np.sort", sort_scores, ("scores",), False)


@dataclass(frozen=True)
class MetricCase:
    name: str
    args: tuple[str, ...]
    yardstick: Yardstick
    exact: bool = False


METRIC_CASES: tuple[MetricCase, ...] = (
    MetricCase("accuracy_score", ("y_true", "y_pred"), READ_PASS),
    MetricCase("confusion_matrix", ("y_true", "y_pred"), READ_PASS, exact=True),
    MetricCase("precision_score", ("y_true", "y_pred"), READ_PASS),
    MetricCase("recall_score", ("y_true", "y_pred"), READ_PASS),
    MetricCase("f1_score", ("y_true", "y_pred"), READ_PASS),
    MetricCase("roc_auc_score", ("y_true", "scores"), NP_SORT),
    MetricCase("average_precision_score", ("y_true", "scores"), NP_SORT),
    MetricCase(
        "log_loss",
        ("y_true", "scores"),
        Yardstick("numpy 1-liner", numpy_log_loss, ("y_true", "scores"), True),
    ),
    MetricCase(
        "r2_score",
        ("y_reg", "pred_reg"),
        Yardstick("numpy 1-liner", numpy_r2, ("y_reg", "pred_reg"), True),
    ),
    MetricCase(
        "mean_squared_error",
        ("y_reg", "pred_reg"),
        Yardstick("numpy 1-liner", numpy_mse, ("y_reg", "pred_reg"), True),
    ),
)


def same_result(got: Any, want: Any, *, exact: bool) -> bool:
    """gradkit's result against sklearn's: exact for counts, else rtol 1e-9."""
    got_a = np.asarray(got)
    want_a = np.asarray(want)
    if got_a.shape != want_a.shape:
        return False
    if exact:
        return bool(np.array_equal(got_a, want_a))
    return bool(np.allclose(got_a, want_a, rtol=1e-9, atol=1e-12))


def metric_func(library: str, name: str) -> Callable[..., Any]:
    """gradkit.metrics.<name> or sklearn.metrics.<name>."""
    if library == "sklearn":
        import sklearn.metrics as module  # type: ignore[import-untyped]
    else:
        import gradkit.metrics as module
    try:
        return getattr(module, name)  # type: ignore[no-any-return]
    except AttributeError:
        raise AttributeError(f"{module.__name__} has no function {name!r}") from None


# --- timing ----------------------------------------------------------------------


def best_time_ms(
    func: Callable[..., Any], args: Sequence[Any], repeats: Repeats
) -> tuple[float, Any]:
    """The fastest of up to repeats.count calls in milliseconds, and the last result.

    The garbage collector is off while timing, as timeit does, so that a collection
    triggered by someone else's garbage is not billed to the call.
    """
    best = float("inf")
    spent = 0.0
    result: Any = None
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(max(1, repeats.count)):
            start = time.perf_counter()
            result = func(*args)
            elapsed = time.perf_counter() - start
            best = min(best, elapsed)
            spent += elapsed
            if spent >= repeats.budget_s:
                break
    finally:
        if was_enabled:
            gc.enable()
    return best * 1e3, result


def _time_gradkit(
    backend: str,
    name: str,
    args: Sequence[Any],
    repeats: Repeats,
    n_threads: int | None | str,
) -> tuple[float, Any]:
    import gradkit

    func = metric_func("gradkit", name)
    with gradkit.config_context(backend=backend, n_threads=n_threads):
        # The first call compiles numba kernels (or loads them from its cache) and
        # touches fresh pages; neither is what this benchmark measures.
        func(*args)
        return best_time_ms(func, args, repeats)


# --- the benchmark ---------------------------------------------------------------


def run_metrics_bench(
    quick: bool,
    out: TextIO | None = sys.stdout,
    progress: bool = True,
    *,
    n: int | None = None,
    n_threads: int | None | str = "keep",
    seed: int = SEED,
) -> list[dict[str, Any]]:
    """Time every metric on gradkit's two backends, sklearn and its yardstick.

    quick: n = 10**6 and fewer repeats (sklearn once where it is slow) instead of
    n = 10**7. n overrides the sample count; n_threads the configured thread count
    ("keep" leaves gradkit's configuration alone). The table goes to `out` (None
    prints nothing), one progress line per metric to stderr. Returns one dict per
    metric with the times in ms, the ratios, and `ok` (False on a mismatch or an
    error, explained in `problems`).
    """
    import sklearn  # type: ignore[import-untyped]

    import gradkit
    import gradkit.metrics  # fail here, once, if it cannot be imported

    if n is None:
        n = QUICK_N if quick else FULL_N
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int of at least 2, got {n!r}.")
    repeats = QUICK_REPEATS if quick else FULL_REPEATS

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    say(f"gradkit bench metrics: making data, n = {n:,} ...")
    data = make_metrics_data(n, seed)
    with gradkit.config_context(n_threads=n_threads):
        threads = gradkit._config.n_threads()

    rows: list[dict[str, Any]] = []
    for index, case in enumerate(METRIC_CASES, 1):
        args = [data[key] for key in case.args]
        row: dict[str, Any] = {"function": case.name, "n": n, "problems": []}
        problems: list[str] = row["problems"]

        sk_ms, want = best_time_ms(
            metric_func("sklearn", case.name), args, repeats["sklearn"]
        )
        row["sklearn_ms"] = sk_ms

        for backend in GRADKIT_BACKENDS:
            try:
                ms, got = _time_gradkit(
                    backend, case.name, args, repeats["gradkit"], n_threads
                )
            except Exception as exc:  # one broken backend must not hide the rest
                row[f"{backend}_ms"] = None
                row[f"{backend}_status"] = "ERROR"
                problems.append(f"{backend}: {type(exc).__name__}: {exc}")
                continue
            row[f"{backend}_ms"] = ms
            if same_result(got, want, exact=case.exact):
                row[f"{backend}_status"] = "ok"
            else:
                row[f"{backend}_status"] = "MISMATCH"
                problems.append(
                    f"{backend}: got {_short(got)}, sklearn gives {_short(want)}"
                )

        yard = case.yardstick
        yard_ms, yard_result = best_time_ms(
            yard.func, [data[key] for key in yard.args], repeats["gradkit"]
        )
        row["yardstick"] = yard.name
        row["yardstick_ms"] = yard_ms
        if yard.computes_metric and not same_result(yard_result, want, exact=False):
            # Not gradkit's fault, but it means the yardstick is not the same
            # computation; say so rather than compare against a wrong floor.
            problems.append(
                f"yardstick {yard.name}: got {_short(yard_result)}, "
                f"sklearn gives {_short(want)}"
            )

        cpp_ms = row["cpp_ms"]
        numba_ms = row["numba_ms"]
        row["speedup"] = sk_ms / cpp_ms if cpp_ms else None
        row["numba_over_cpp"] = numba_ms / cpp_ms if cpp_ms and numba_ms else None
        row["cpp_over_yardstick"] = cpp_ms / yard_ms if cpp_ms and yard_ms else None
        row["ok"] = not problems
        row["check"] = _check_label(row)
        rows.append(row)
        say(
            f"[{index:>2}/{len(METRIC_CASES)}] {case.name:<24} "
            f"cpp {_fmt_ms(cpp_ms):>8}  numba {_fmt_ms(numba_ms):>8}  "
            f"sklearn {_fmt_ms(sk_ms):>8}  {row['check']}"
        )

    if out is not None:
        header = (
            f"gradkit {gradkit.__version__} metrics benchmark: n = {n:,}, "
            f"{threads} thread(s), best of {repeats['gradkit'].count} "
            f"(sklearn: up to {repeats['sklearn'].count}); "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
            f"Python {platform.python_version()}"
        )
        print(header, file=out)
        print(format_table(rows), file=out)
        failed = [row for row in rows if not row["ok"]]
        if failed:
            print(file=out)
            print(
                f"!!! {len(failed)} of {len(rows)} metrics did not match sklearn "
                "or failed:",
                file=out,
            )
            for row in failed:
                for problem in row["problems"]:
                    print(f"!!! {row['function']}: {problem}", file=out)
        out.flush()
    return rows


def _check_label(row: dict[str, Any]) -> str:
    statuses = [row.get(f"{b}_status", "ok") for b in GRADKIT_BACKENDS]
    if all(s == "ok" for s in statuses) and row["ok"]:
        return "ok"
    bad = [
        f"{s}({b})"
        for b, s in zip(GRADKIT_BACKENDS, statuses, strict=True)
        if s != "ok"
    ]
    if not bad:  # only the yardstick disagreed
        return "ok (yardstick differs)"
    return " ".join(bad)


def _short(value: Any) -> str:
    text = np.array2string(np.asarray(value), precision=17, separator=",")
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


# --- formatting (numpy + stdlib only) --------------------------------------------


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def _fmt_ratio(ratio: float | None, suffix: str = "") -> str:
    if ratio is None:
        return "-"
    if ratio >= 100:
        return f"{ratio:,.0f}{suffix}"
    if ratio >= 10:
        return f"{ratio:.1f}{suffix}"
    return f"{ratio:.2f}{suffix}"


TABLE_COLUMNS = (
    # (title, right-aligned)
    ("function", False),
    ("n", True),
    ("cpp ms", True),
    ("numba ms", True),
    ("sklearn ms", True),
    ("sklearn/cpp", True),
    ("numba/cpp", True),
    ("yardstick", False),
    ("yard ms", True),
    ("cpp/yard", True),
    ("check", False),
)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """An aligned plain-text table of run_metrics_bench's rows."""
    cells = [
        [
            row["function"],
            f"{row['n']:,}",
            _fmt_ms(row["cpp_ms"]),
            _fmt_ms(row["numba_ms"]),
            _fmt_ms(row["sklearn_ms"]),
            _fmt_ratio(row["speedup"], "x"),
            _fmt_ratio(row["numba_over_cpp"]),
            row["yardstick"],
            _fmt_ms(row["yardstick_ms"]),
            _fmt_ratio(row["cpp_over_yardstick"]),
            row["check"],
        ]
        for row in rows
    ]
    titles = [title for title, _ in TABLE_COLUMNS]
    right = {i for i, (_, numeric) in enumerate(TABLE_COLUMNS) if numeric}
    return text_table(titles, cells, right)
