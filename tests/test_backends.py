"""The two backends agree with each other, and the result does not depend on the
thread count: exactly for counts, to rtol 1e-12 for float sums (the kernels may
split a float sum differently across threads, which moves only the last ulps).

Inputs are above 2**16 elements: below that the kernels run on one thread."""

import numpy as np
import pytest
from oracle import assert_same_value

import gradkit
import gradkit.metrics as gm

N = 150_000
SETTINGS = [("cpp", 1), ("cpp", 2), ("numba", 1), ("numba", 2)]


def _data():
    rng = np.random.default_rng(12345)
    y_bin = (rng.random(N) < 0.3).astype(np.int64)
    y_multi = rng.integers(0, 4, N)
    y_pred = np.where(rng.random(N) < 0.7, y_multi, rng.integers(0, 4, N))
    scores = np.round(rng.random(N), 2)  # many ties
    w = rng.integers(0, 4, N).astype(np.float64)  # zeros included
    proba = rng.random((N, 4)) + 0.01
    proba /= proba.sum(axis=1, keepdims=True)
    names = np.array(["ant", "bee", "cat", "dog"])
    y_reg = rng.normal(size=(N, 2)) * 10 + 100
    p_reg = y_reg + rng.normal(size=(N, 2))
    return {
        "y_bin": y_bin,
        "y_multi": y_multi,
        "y_pred": y_pred,
        "scores": scores,
        "scores32": scores.astype(np.float32),
        "w": w,
        "proba": proba,
        "s_true": names[y_multi],
        "s_pred": names[y_pred],
        "y_reg": y_reg,
        "p_reg": p_reg,
    }


D = _data()

CASES = [
    ("confusion_matrix", lambda d: ((d["y_multi"], d["y_pred"]), {})),
    (
        "confusion_matrix",
        lambda d: ((d["s_true"], d["s_pred"]), {"sample_weight": d["w"]}),
    ),
    (
        "confusion_matrix",
        lambda d: ((d["y_multi"], d["y_pred"]), {"normalize": "true"}),
    ),
    (
        "accuracy_score",
        lambda d: ((d["y_multi"], d["y_pred"]), {"sample_weight": d["w"]}),
    ),
    ("balanced_accuracy_score", lambda d: ((d["y_multi"], d["y_pred"]), {})),
    (
        "matthews_corrcoef",
        lambda d: ((d["y_multi"], d["y_pred"]), {"sample_weight": d["w"]}),
    ),
    (
        "precision_recall_fscore_support",
        lambda d: ((d["s_true"], d["s_pred"]), {"sample_weight": d["w"], "beta": 2.0}),
    ),
    ("f1_score", lambda d: ((d["y_multi"], d["y_pred"]), {"average": "macro"})),
    ("f1_score", lambda d: ((d["y_bin"], (d["scores"] > 0.6).astype(int)), {})),
    ("roc_curve", lambda d: ((d["y_bin"], d["scores"]), {"sample_weight": d["w"]})),
    (
        "roc_curve",
        lambda d: ((d["y_bin"], d["scores32"]), {"drop_intermediate": False}),
    ),
    (
        "precision_recall_curve",
        lambda d: ((d["y_bin"], d["scores"]), {"sample_weight": d["w"]}),
    ),
    ("roc_auc_score", lambda d: ((d["y_bin"], d["scores"]), {})),
    (
        "roc_auc_score",
        lambda d: (
            (d["y_bin"], d["scores"]),
            {"sample_weight": d["w"], "max_fpr": 0.3},
        ),
    ),
    ("roc_auc_score", lambda d: ((d["y_multi"], d["proba"]), {"multi_class": "ovr"})),
    ("roc_auc_score", lambda d: ((d["y_multi"], d["proba"]), {"multi_class": "ovo"})),
    (
        "average_precision_score",
        lambda d: ((d["y_bin"], d["scores32"]), {"sample_weight": d["w"]}),
    ),
    ("log_loss", lambda d: ((d["y_multi"], d["proba"]), {"sample_weight": d["w"]})),
    ("log_loss", lambda d: ((d["y_bin"], d["scores"]), {})),
    (
        "brier_score_loss",
        lambda d: ((d["y_bin"], d["scores"]), {"sample_weight": d["w"]}),
    ),
    (
        "mean_squared_error",
        lambda d: ((d["y_reg"], d["p_reg"]), {"multioutput": "raw_values"}),
    ),
    (
        "mean_absolute_error",
        lambda d: ((d["y_reg"], d["p_reg"]), {"sample_weight": d["w"]}),
    ),
    (
        "r2_score",
        lambda d: ((d["y_reg"], d["p_reg"]), {"multioutput": "variance_weighted"}),
    ),
    (
        "r2_score",
        lambda d: ((d["y_reg"][:, 0], d["p_reg"][:, 0]), {"sample_weight": d["w"]}),
    ),
]


@pytest.mark.parametrize(
    ("name", "make"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
def test_backends_and_thread_counts_agree(name, make):
    args, kwargs = make(D)
    results = {}
    for backend, threads in SETTINGS:
        with gradkit.config_context(backend=backend, n_threads=threads):
            results[(backend, threads)] = getattr(gm, name)(*args, **kwargs)
    reference = results[SETTINGS[0]]
    for setting, value in results.items():
        # ints (counts, supports) exactly; floats to rtol 1e-12
        assert_same_value(value, reference, rtol=1e-12, where=f"{name} {setting}")


def test_threads_do_not_change_counts_exactly():
    # counts are integers whatever the split: the confusion matrix and the curve's
    # unweighted counts must be bit-identical across settings
    y, s = D["y_bin"], D["scores"]
    outs = []
    for backend, threads in SETTINGS:
        with gradkit.config_context(backend=backend, n_threads=threads):
            cm = gm.confusion_matrix(D["y_multi"], D["y_pred"])
            fpr, tpr, thr = gm.roc_curve(y, s, drop_intermediate=False)
            outs.append((cm, fpr, tpr, thr))
    for cm, fpr, tpr, thr in outs[1:]:
        np.testing.assert_array_equal(cm, outs[0][0])
        np.testing.assert_array_equal(fpr, outs[0][1])
        np.testing.assert_array_equal(tpr, outs[0][2])
        np.testing.assert_array_equal(thr, outs[0][3])
