"""`gradkit bench patch`: an unmodified scikit-learn workflow, unpatched and then
under gradkit.patch_sklearn(), in one process on the same data.

The workflow is plain scikit-learn: cross_validate of an SGDClassifier (log loss,
5 epochs) with four scorers on 1,000,000 x 20 rows (--quick: 200,000). The
scores must agree (SGD shuffles with its own generator under the patch, so they
agree statistically, within 0.01, not bit for bit).
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, TextIO

import numpy as np

from gradkit._table import text_table

FULL_N, QUICK_N = 1_000_000, 200_000
SCORING = ("accuracy", "f1", "roc_auc", "neg_log_loss")


def _workflow(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import cross_validate

    model = SGDClassifier(loss="log_loss", max_iter=5, tol=None, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_validate(model, X, y, cv=3, scoring=list(SCORING))


def run_patch_bench(
    quick: bool, out: TextIO | None = sys.stdout, progress: bool = True,
    *, n: int | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    import gradkit

    n = n or (QUICK_N if quick else FULL_N)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 20))
    y = (X @ rng.standard_normal(20) + rng.standard_normal(n) > 0).astype(np.int64)
    timings: dict[str, tuple[float, dict[str, Any]]] = {}
    for label in ("scikit-learn", "patched"):
        if progress:
            print(f"gradkit bench patch: {label} ...", file=sys.stderr)
        start = time.perf_counter()
        if label == "patched":
            with gradkit.sklearn_patched():
                result = _workflow(X, y)
        else:
            result = _workflow(X, y)
        timings[label] = (time.perf_counter() - start, result)
    plain_s, plain = timings["scikit-learn"]
    patched_s, patched = timings["patched"]
    rows = []
    for scorer in SCORING:
        a = float(np.mean(plain[f"test_{scorer}"]))
        b = float(np.mean(patched[f"test_{scorer}"]))
        rows.append({"scorer": scorer, "sklearn": a, "patched": b,
                     "ok": abs(a - b) <= 0.01})  # fmt: skip
    if out is not None:
        print(
            f"gradkit {gradkit.__version__} patch benchmark: cross_validate("
            f"SGDClassifier(log_loss, 5 epochs), cv=3, 4 scorers) on {n:,} x 20",
            file=out,
        )
        print(
            text_table(
                ["", "seconds", "speedup"],
                [["scikit-learn", f"{plain_s:.2f}", ""],
                 ["patched", f"{patched_s:.2f}", f"{plain_s / patched_s:.2f}x"]],
                right={1, 2},
            ),
            file=out,
        )  # fmt: skip
        print(
            text_table(
                ["scorer", "scikit-learn", "patched", "check"],
                [[str(r["scorer"]), f"{r['sklearn']:.4f}", f"{r['patched']:.4f}",
                  "ok" if r["ok"] else "DIFFERS"] for r in rows],
                right={1, 2},
            ),
            file=out,
        )  # fmt: skip
    return rows
