"""gradkit on Dask: metrics of dask arrays (and dataframe columns), reduced to
mergeable states on the workers and merged in a tree, exactly (never by
averaging per-chunk values), the exact ranking metrics by a sample sort;
LogisticRegression (binary or multinomial) and LinearRegression fitted by L-BFGS
on gradients summed over the chunks, each computed by gradkit's fused kernel on
the worker that holds the chunk; SGDClassifier and SGDRegressor trained by
gradkit's SGD epoch kernel on each chunk, either averaging the chunks' models
every epoch (mode="average") or passing one model through the chunks in turn
(mode="sequential", the in-memory fit). Needs the dask extra:
pip install "gradkit[dask]".
"""

from gradkit.dask._linear import LinearRegression, LogisticRegression
from gradkit.dask._metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    binned_roc_auc,
    brier_score_loss,
    f1_score,
    fbeta_score,
    log_loss,
    matthews_corrcoef,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)
from gradkit.dask._sgd import SGDClassifier, SGDRegressor

__all__ = [
    "LinearRegression",
    "LogisticRegression",
    "SGDClassifier",
    "SGDRegressor",
    "accuracy_score",
    "average_precision_score",
    "balanced_accuracy_score",
    "binned_roc_auc",
    "brier_score_loss",
    "f1_score",
    "fbeta_score",
    "log_loss",
    "matthews_corrcoef",
    "mean_absolute_error",
    "mean_squared_error",
    "precision_score",
    "r2_score",
    "recall_score",
    "roc_auc_score",
]
