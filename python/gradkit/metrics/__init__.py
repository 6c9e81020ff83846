"""Evaluation metrics: a drop-in for sklearn.metrics, computed by gradkit's kernels.

Same names, signatures, return values, exceptions and warnings as scikit-learn 1.9.
"""

from gradkit.metrics import streaming as streaming
from gradkit.metrics._classification import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)
from gradkit.metrics._probabilistic import brier_score_loss, log_loss
from gradkit.metrics._ranking import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from gradkit.metrics._regression import (
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from gradkit.metrics._scorer import get_scorer, get_scorer_names

__all__ = [
    "accuracy_score",
    "average_precision_score",
    "balanced_accuracy_score",
    "brier_score_loss",
    "confusion_matrix",
    "f1_score",
    "fbeta_score",
    "get_scorer",
    "get_scorer_names",
    "log_loss",
    "matthews_corrcoef",
    "mean_absolute_error",
    "mean_squared_error",
    "precision_recall_curve",
    "precision_recall_fscore_support",
    "precision_score",
    "r2_score",
    "recall_score",
    "roc_auc_score",
    "roc_curve",
]
