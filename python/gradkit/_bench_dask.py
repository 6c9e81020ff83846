"""`gradkit bench dask`: gradkit.dask next to gradkit in memory, on one
distributed.LocalCluster (2 worker processes, 1 thread each) started and closed
by the run.

1. Metrics: roc_auc_score, average_precision_score, log_loss (the scores as
   probabilities) and accuracy_score (the scores thresholded at 0.5) of 10**8
   float64 scores and int64 labels in 100 chunks (--quick: 10**7), generated on
   the workers with a fixed seed and persisted; gradkit.dask's against
   gradkit.metrics on the same data computed to numpy (once), each the best of
   REPEATS calls. Results must agree to rtol 1e-12 ("equal" when bit for bit);
   the table gives the time ratio dask / in-memory (target: within 2x).
2. Logistic regression on 4,000,000 x 20 in 8 row chunks (--quick: 1,000,000):
   gradkit.dask.LogisticRegression against in-memory
   gradkit.linear_model.LogisticRegression(solver="lbfgs") on the same data,
   both with tol 1e-8; the coefficients (intercept included) must agree to a
   max relative difference below 1e-4. dask-ml's LogisticRegression (default
   solver) runs on the same cluster when dask_ml imports, for time and
   difference only (it is no check).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import numpy as np

from gradkit._table import text_table

FULL_N, QUICK_N = 10**8, 10**7
N_CHUNKS = 100
FULL_LR_N, QUICK_LR_N = 4_000_000, 1_000_000
LR_D, LR_CHUNKS = 20, 8
METRIC_RTOL = 1e-12
COEF_RTOL = 1e-4
LR_TOL, LR_MAX_ITER = 1e-8, 1000
TARGET_RATIO = 2.0
REPEATS = 3


def _timed(func: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result


def _scheduler_tasks() -> int:
    from distributed import get_client

    return int(get_client().run_on_scheduler(lambda dask_scheduler: len(
        dask_scheduler.tasks)))  # fmt: skip


def _best(func: Any, *args: Any, settle: bool = False) -> tuple[float, float]:
    """(the least seconds of REPEATS calls, the result as a float). With settle,
    each call waits first until the scheduler holds no more tasks than before the
    first: gradkit.dask's task keys are pure, so a repeat sent while the last
    call's results are still being released would reuse them, and time nothing."""
    baseline = _scheduler_tasks() if settle else 0
    runs = []
    for _ in range(REPEATS):
        for _ in range(200):
            if not settle or _scheduler_tasks() <= baseline:
                break
            time.sleep(0.05)
        seconds, value = _timed(func, *args)
        runs.append((seconds, float(value)))
    return min(runs)


def _params(model: Any) -> np.ndarray:
    return np.concatenate([np.ravel(model.coef_), np.ravel(model.intercept_)])


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _lr_row(
    name: str, seconds: float | None, model: Any, diff: float | None, ok: bool,
    note: str,
) -> dict[str, Any]:  # fmt: skip
    n_iter = getattr(model, "n_iter_", None)
    return {"name": name, "seconds": seconds, "diff": diff, "ok": ok, "note": note,
            "n_iter": None if n_iter is None else int(np.max(n_iter))}  # fmt: skip


def _metric_rows(n: int, progress: bool) -> list[dict[str, Any]]:
    import dask
    import dask.array as da

    import gradkit.dask as gd
    import gradkit.metrics as gm

    rng = da.random.default_rng(0)
    chunk = -(-n // N_CHUNKS)
    scores = rng.random(n, chunks=chunk)
    labels = (rng.random(n, chunks=chunk) < scores).astype(np.int64)
    scores, labels = dask.persist(scores, labels)
    dask.compute(scores.sum(), labels.sum())  # wait for the workers to hold them
    if progress:
        print("gradkit bench dask: metrics, computing to numpy ...", file=sys.stderr)
    s_np, y_np = dask.compute(scores, labels)

    cases: list[tuple[str, Any, Any]] = [
        ("roc_auc_score", gd.roc_auc_score, gm.roc_auc_score),
        ("average_precision_score", gd.average_precision_score,
         gm.average_precision_score),
        ("log_loss", gd.log_loss, gm.log_loss),
        ("accuracy_score", gd.accuracy_score, gm.accuracy_score),
    ]  # fmt: skip
    # The thresholded predictions are made (and persisted) beforehand: both
    # sides time the metric alone.
    preds = dask.persist((scores > 0.5).astype(np.int64))[0]
    preds_np = (s_np > 0.5).astype(np.int64)
    rows = []
    for name, on_dask, in_memory in cases:
        if progress:
            print(f"gradkit bench dask: {name} ...", file=sys.stderr)
        thresholded = name == "accuracy_score"
        pred, pred_np = (preds, preds_np) if thresholded else (scores, s_np)
        # Best of REPEATS each: the first call of a fresh worker process also
        # pays for mapping its memory, which says nothing about the method.
        dask_s, a = _best(on_dask, labels, pred, settle=True)
        mem_s, b = _best(in_memory, y_np, pred_np)
        ok = bool(np.isclose(a, b, rtol=METRIC_RTOL, atol=0.0))
        rows.append({"name": name, "dask_s": dask_s, "memory_s": mem_s,
                     "dask": a, "memory": b, "ok": ok, "exact": a == b})  # fmt: skip
    del s_np, y_np, preds_np
    return rows


def _lr_rows(n: int, progress: bool) -> list[dict[str, Any]]:
    import dask
    import dask.array as da

    import gradkit.dask as gd
    import gradkit.linear_model as glm

    rng = da.random.default_rng(1)
    chunk = -(-n // LR_CHUNKS)
    w = np.random.default_rng(2).standard_normal(LR_D)
    X = rng.standard_normal((n, LR_D), chunks=(chunk, LR_D))
    noise = rng.standard_normal(n, chunks=chunk)
    y = ((X @ w + 0.5 + noise) > 0).astype(np.int64)
    X, y = dask.persist(X, y)
    X_np, y_np = dask.compute(X, y)

    if progress:
        print("gradkit bench dask: LogisticRegression in memory ...", file=sys.stderr)
    mem = glm.LogisticRegression(solver="lbfgs", tol=LR_TOL, max_iter=LR_MAX_ITER)
    mem_s, _ = _timed(mem.fit, X_np, y_np)
    ref = _params(mem)
    del X_np, y_np

    if progress:
        print("gradkit bench dask: gradkit.dask LogisticRegression", file=sys.stderr)
    gdm = gd.LogisticRegression(tol=LR_TOL, max_iter=LR_MAX_ITER)
    gd_s, _ = _timed(gdm.fit, X, y)
    gd_diff = _rel_diff(_params(gdm), ref)
    rows = [
        _lr_row("gradkit (in memory, lbfgs)", mem_s, mem, 0.0, True, "reference"),
        _lr_row("gradkit.dask", gd_s, gdm, gd_diff, gd_diff < COEF_RTOL, ""),
    ]  # fmt: skip

    try:
        from dask_ml.linear_model import LogisticRegression as DaskMLLogistic
    except Exception as exc:  # noqa: BLE001 - any import failure means "absent"
        note = f"dask-ml not available ({type(exc).__name__})"
        rows.append(_lr_row("dask-ml", None, None, None, True, note))
        return rows
    if progress:
        print("gradkit bench dask: dask-ml LogisticRegression ...", file=sys.stderr)
    try:
        dml = DaskMLLogistic()
        dml_s, _ = _timed(dml.fit, X, y)
        dml_params = np.concatenate([np.ravel(dml.coef_), np.ravel(dml.intercept_)])
        diff = _rel_diff(dml_params, ref)
        note = f"solver={dml.solver}, not checked"
        rows.append(_lr_row("dask-ml (default solver)", dml_s, dml, diff, True, note))
    except Exception as exc:  # noqa: BLE001 - a bench-only peer; report, go on
        note = f"dask-ml failed: {type(exc).__name__}: {exc}"[:80]
        rows.append(_lr_row("dask-ml", None, None, None, True, note))
    return rows


def run_dask_bench(
    quick: bool, out: TextIO | None = sys.stdout, progress: bool = True,
    *, n: int | None = None, lr_n: int | None = None,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """Both parts on one LocalCluster; returns {"metrics": rows, "logistic": rows}."""
    from distributed import Client, LocalCluster

    import gradkit

    n = n or (QUICK_N if quick else FULL_N)
    lr_n = lr_n or (QUICK_LR_N if quick else FULL_LR_N)
    if progress:
        print("gradkit bench dask: starting LocalCluster ...", file=sys.stderr)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True,
            dashboard_address=":0", silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster),
    ):  # fmt: skip
        metric_rows = _metric_rows(n, progress)
        lr_rows = _lr_rows(lr_n, progress)

    if out is not None:
        print(
            f"gradkit {gradkit.__version__} dask benchmark: LocalCluster(2 worker "
            "processes x 1 thread) vs in memory",
            file=out,
        )
        print(f"metrics on {n:,} scores in {N_CHUNKS} chunks", file=out)
        print(
            text_table(
                ["metric", "dask s", "in-memory s", "ratio", "<= 2x", "dask value",
                 "in-memory value", "check"],
                [[r["name"], f"{r['dask_s']:.2f}", f"{r['memory_s']:.2f}",
                  f"{r['dask_s'] / r['memory_s']:.2f}x",
                  "yes" if r["dask_s"] <= TARGET_RATIO * r["memory_s"] else "no",
                  f"{r['dask']:.15g}",
                  f"{r['memory']:.15g}",
                  "equal" if r["exact"] else "ok" if r["ok"] else "DIFFERS"]
                 for r in metric_rows],
                right={1, 2, 3, 5, 6},
            ),
            file=out,
        )  # fmt: skip
        print(
            f"LogisticRegression on {lr_n:,} x {LR_D} in {LR_CHUNKS} chunks "
            f"(tol {LR_TOL:g}; diff = max relative coefficient difference "
            "from in memory)",
            file=out,
        )
        print(
            text_table(
                ["model", "seconds", "iterations", "diff", "check"],
                [[r["name"],
                  "" if r["seconds"] is None else f"{r['seconds']:.2f}",
                  "" if r["n_iter"] is None else str(r["n_iter"]),
                  "" if r["diff"] is None else f"{r['diff']:.2e}",
                  r["note"] or ("ok" if r["ok"] else "DIFFERS")]
                 for r in lr_rows],
                right={1, 2, 3},
            ),
            file=out,
        )  # fmt: skip
    return {"metrics": metric_rows, "logistic": lr_rows}
