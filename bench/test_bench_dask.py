"""`gradkit bench dask` at its --quick sizes, checked for correctness only.

    python -m pytest bench/test_bench_dask.py

One run of gradkit._bench_dask.run_dask_bench(quick=True) on a LocalCluster (2
worker processes) it starts and closes: gradkit.dask's roc_auc_score,
average_precision_score, log_loss and accuracy_score must equal gradkit.metrics
on the same data in memory (rtol 1e-12; the unweighted ROC AUC bit for bit), and
gradkit.dask.LogisticRegression must reach the in-memory lbfgs optimum (max
relative coefficient difference < 1e-4). Timing targets are not asserted here.
"""

from __future__ import annotations

from typing import Any

import pytest

from gradkit._bench_dask import COEF_RTOL, run_dask_bench


@pytest.fixture(scope="module")
def result() -> dict[str, list[dict[str, Any]]]:
    return run_dask_bench(quick=True, out=None, progress=False)


@pytest.mark.parametrize(
    "metric",
    ["roc_auc_score", "average_precision_score", "log_loss", "accuracy_score"],
)
def test_metric_exact(result: dict[str, list[dict[str, Any]]], metric: str) -> None:
    (row,) = [r for r in result["metrics"] if r["name"] == metric]
    assert row["ok"], f"{metric}: dask {row['dask']!r} != in memory {row['memory']!r}"
    if metric == "roc_auc_score":  # a sum of exact half-integers, in any order
        assert row["exact"], row


def test_logistic_converges(result: dict[str, list[dict[str, Any]]]) -> None:
    (row,) = [r for r in result["logistic"] if r["name"] == "gradkit.dask"]
    assert row["diff"] < COEF_RTOL, row
