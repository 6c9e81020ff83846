"""Scorers: gradkit's metrics behind sklearn's scoring names.

get_scorer("roc_auc") returns a scorer made by sklearn's own make_scorer, with the
same response method, sign and keyword arguments as sklearn's scorer of that name,
so it plugs into cross_val_score, GridSearchCV and friends as `scoring=`. Names
gradkit does not accelerate fall through to sklearn.metrics.get_scorer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import get_scorer_names as _sklearn_get_scorer_names
from sklearn.metrics import make_scorer

from gradkit.metrics._classification import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
)
from gradkit.metrics._probabilistic import brier_score_loss, log_loss
from gradkit.metrics._ranking import average_precision_score, roc_auc_score
from gradkit.metrics._regression import (
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

_SCORES = ("decision_function", "predict_proba")


def _build_scorers() -> dict[str, Any]:
    scorers: dict[str, Any] = {
        "accuracy": make_scorer(accuracy_score),
        "balanced_accuracy": make_scorer(balanced_accuracy_score),
        "matthews_corrcoef": make_scorer(matthews_corrcoef),
        "roc_auc": make_scorer(roc_auc_score, response_method=_SCORES),
        "average_precision": make_scorer(
            average_precision_score, response_method=_SCORES
        ),
        "roc_auc_ovr": make_scorer(
            roc_auc_score, response_method="predict_proba", multi_class="ovr"
        ),
        "roc_auc_ovo": make_scorer(
            roc_auc_score, response_method="predict_proba", multi_class="ovo"
        ),
        "roc_auc_ovr_weighted": make_scorer(
            roc_auc_score,
            response_method="predict_proba",
            multi_class="ovr",
            average="weighted",
        ),
        "roc_auc_ovo_weighted": make_scorer(
            roc_auc_score,
            response_method="predict_proba",
            multi_class="ovo",
            average="weighted",
        ),
        "neg_log_loss": make_scorer(
            log_loss, greater_is_better=False, response_method="predict_proba"
        ),
        "neg_brier_score": make_scorer(
            brier_score_loss, greater_is_better=False, response_method="predict_proba"
        ),
        "r2": make_scorer(r2_score),
        "neg_mean_squared_error": make_scorer(
            mean_squared_error, greater_is_better=False
        ),
        "neg_mean_absolute_error": make_scorer(
            mean_absolute_error, greater_is_better=False
        ),
    }
    metric: Callable[..., Any]
    for name, metric in (
        ("precision", precision_score),
        ("recall", recall_score),
        ("f1", f1_score),
    ):
        scorers[name] = make_scorer(metric, average="binary")
        for average in ("macro", "micro", "samples", "weighted"):
            scorers[f"{name}_{average}"] = make_scorer(
                metric, pos_label=None, average=average
            )
    return scorers


_SCORERS = _build_scorers()


def get_scorer(scoring: Any) -> Any:
    """A scorer for `scoring` (a name, a callable or None), like sklearn's get_scorer.

    The names gradkit accelerates (see get_scorer_names) give gradkit scorers; any
    other name sklearn knows gives sklearn's scorer, and unknown names raise the
    same ValueError sklearn raises.
    """
    if isinstance(scoring, str) and scoring in _SCORERS:
        return copy.deepcopy(_SCORERS[scoring])
    return _sklearn_get_scorer(scoring)


def get_scorer_names() -> list[str]:
    """Every scoring name get_scorer accepts (sklearn's list)."""
    return _sklearn_get_scorer_names()


def accelerated_scorer_names() -> list[str]:
    """The scoring names that gradkit computes itself."""
    return sorted(_SCORERS)
