"""gradkit.dask metrics on a 2-process cluster equal gradkit.metrics on the whole
numpy data: blocks of unequal, mismatched and unknown sizes, with and without
sample weights; per-block values are never averaged."""

from __future__ import annotations

import dask.array as da
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest

import gradkit.dask as gd
import gradkit.metrics as M
from gradkit.metrics.streaming import BinnedAUCState

RTOL = 1e-12
N = 1001
CHUNKS_Y = (7, 300, 1, 693)  # unequal, one block of a single row
CHUNKS_OTHER = (500, 501)  # not the blocks of y: must be rechunked
CHUNKS_W = (100,) * 10 + (1,)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    y_bin = rng.integers(0, 2, N)
    # Scores that rank y_bin imperfectly, with ties (two decimals), in (0, 1).
    proba = np.clip(np.round(0.3 * y_bin + 0.7 * rng.random(N), 2), 0.005, 0.995)
    y_reg = 1e3 + rng.normal(size=N)
    arrays = {
        "y_bin": y_bin,
        "pred_bin": np.where(rng.random(N) < 0.8, y_bin, 1 - y_bin),
        "y_multi": rng.integers(0, 3, N),
        "pred_multi": rng.integers(0, 3, N),
        "proba": proba,
        "y_reg": y_reg,
        "pred_reg": y_reg + rng.normal(scale=0.5, size=N),
        "weight": rng.uniform(0.0, 3.0, N),
        "mask": rng.random(N) < 0.7,
    }
    # Class probabilities of y_multi: rows summing to one, leaning to the true
    # class, some exactly one-hot (drawn last: the arrays above stay as they were).
    truth = np.eye(3)[arrays["y_multi"]]
    proba_multi = rng.dirichlet(np.ones(3), N) + 2 * truth
    proba_multi /= proba_multi.sum(axis=1, keepdims=True)
    proba_multi[::50] = truth[::50]
    arrays["proba_multi"] = proba_multi
    return arrays


# (name, y_true key, second argument key, keyword arguments)
CASES = [
    ("accuracy_score", "y_multi", "pred_multi", {}),
    ("accuracy_score", "y_bin", "pred_bin", {"normalize": False}),
    ("balanced_accuracy_score", "y_multi", "pred_multi", {"adjusted": True}),
    ("matthews_corrcoef", "y_multi", "pred_multi", {}),
    ("precision_score", "y_bin", "pred_bin", {}),
    ("recall_score", "y_multi", "pred_multi", {"average": "macro"}),
    ("f1_score", "y_multi", "pred_multi", {"average": "weighted"}),
    ("f1_score", "y_multi", "pred_multi", {"average": None}),
    ("fbeta_score", "y_bin", "pred_bin", {"beta": 0.5, "pos_label": 0}),
    ("log_loss", "y_bin", "proba", {}),
    ("log_loss", "y_bin", "proba", {"normalize": False}),
    ("brier_score_loss", "y_bin", "proba", {}),
    ("log_loss", "y_multi", "proba_multi", {}),
    ("log_loss", "y_multi", "proba_multi", {"normalize": False}),
    ("brier_score_loss", "y_multi", "proba_multi", {"labels": [0, 1, 2]}),
    ("mean_squared_error", "y_reg", "pred_reg", {}),
    ("mean_absolute_error", "y_reg", "pred_reg", {}),
    ("r2_score", "y_reg", "pred_reg", {}),
    ("roc_auc_score", "y_bin", "proba", {}),
    ("roc_auc_score", "y_bin", "proba", {"max_fpr": 0.3}),
    ("average_precision_score", "y_bin", "proba", {}),
]


def _layout(data, y_key, other_key, weighted, layout):
    """(numpy y, numpy other, numpy w, dask y, dask other, dask w)."""
    y, other = data[y_key], data[other_key]
    w = data["weight"] if weighted else None
    dy = da.from_array(y, chunks=CHUNKS_Y)
    # 2-D probabilities come with their columns split too: both must be rechunked.
    other_chunks = CHUNKS_OTHER if other.ndim == 1 else (CHUNKS_OTHER, (1, 2))
    dother = da.from_array(other, chunks=other_chunks)
    dw = None if w is None else da.from_array(w, chunks=CHUNKS_W)
    if layout == "unknown":
        mask = data["mask"]
        y, other = y[mask], other[mask]
        w = None if w is None else w[mask]
        dy = dy[da.from_array(mask, chunks=CHUNKS_Y)]
        dother = dother[da.from_array(mask, chunks=CHUNKS_OTHER)]
        dw = None if dw is None else dw[da.from_array(mask, chunks=CHUNKS_W)]
        assert np.isnan(dy.chunks[0]).all()
    return y, other, w, dy, dother, dw


def assert_close(got, expected):
    if np.ndim(expected):
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0)
    else:
        assert type(got) is float
        assert got == pytest.approx(float(expected), rel=RTOL, abs=0)


@pytest.mark.parametrize("layout", ["mismatched", "unknown"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("name", "y_key", "other_key", "kwargs"), CASES)
def test_equals_whole_data(
    client, data, name, y_key, other_key, kwargs, weighted, layout
):
    y, other, w, dy, dother, dw = _layout(data, y_key, other_key, weighted, layout)
    expected = getattr(M, name)(y, other, sample_weight=w, **kwargs)
    got = getattr(gd, name)(dy, dother, sample_weight=dw, **kwargs)
    assert_close(got, expected)


def test_caller_array_keeps_unknown_chunks(client, data):
    dy = da.from_array(data["y_bin"], chunks=CHUNKS_Y)
    dy = dy[da.from_array(data["mask"], chunks=CHUNKS_Y)]
    dp = da.from_array(data["pred_bin"], chunks=CHUNKS_Y)
    dp = dp[da.from_array(data["mask"], chunks=CHUNKS_Y)]
    gd.accuracy_score(dy, dp)
    assert np.isnan(dy.chunks[0]).all() and np.isnan(dp.chunks[0]).all()


@pytest.mark.parametrize("split_every", [2, 3, 100])
def test_merge_tree_fan_in(client, data, split_every):
    y, p, w = data["y_reg"], data["pred_reg"], data["weight"]
    dy = da.from_array(y, chunks=37)  # 28 blocks: several tree levels at fan-in 2
    got = gd.r2_score(dy, p, sample_weight=w, split_every=split_every)
    assert_close(got, M.r2_score(y, p, sample_weight=w))


class DuckSeries:
    """What the functions use of a dask Series: to_dask_array(lengths=True)."""

    def __init__(self, array, npartitions):
        self._array = da.from_array(array, chunks=-(-len(array) // npartitions))

    def to_dask_array(self, lengths=False):
        assert lengths
        return self._array


def test_series_like_inputs(client, data):
    y, p = data["y_bin"], data["proba"]
    got = gd.log_loss(DuckSeries(y, 3), DuckSeries(p, 4))
    assert_close(got, M.log_loss(y, p))


def test_dask_frame_of_class_probabilities(client, data):
    y, p = data["y_multi"], data["proba_multi"]
    frame = dd.from_pandas(pd.DataFrame(p, columns=["a", "b", "c"]), npartitions=4)
    got = gd.log_loss(DuckSeries(y, 3), frame, labels=[0, 1, 2])
    assert_close(got, M.log_loss(y, p, labels=[0, 1, 2]))


def test_dask_series(client, data):
    frame = dd.from_pandas(
        pd.DataFrame({"y": data["y_bin"], "p": data["proba"]}), npartitions=3
    )
    frame = frame[frame["p"] > 0.2]  # unknown partition lengths
    keep = data["proba"] > 0.2
    got = gd.roc_auc_score(frame["y"], frame["p"])
    assert_close(got, M.roc_auc_score(data["y_bin"][keep], data["proba"][keep]))


@pytest.mark.parametrize("weighted", [False, True])
def test_binned_roc_auc(client, data, weighted):
    y, p = data["y_bin"], data["proba"]
    w = data["weight"] if weighted else None
    dw = None if w is None else da.from_array(w, chunks=CHUNKS_W)
    auc, bound = gd.binned_roc_auc(
        da.from_array(y, chunks=CHUNKS_Y),
        da.from_array(p, chunks=CHUNKS_OTHER),
        n_bins=64,
        sample_weight=dw,
    )
    exp_auc, exp_bound = BinnedAUCState(n_bins=64).update(y, p, w).compute()
    assert_close(auc, exp_auc)
    assert_close(bound, exp_bound)
    assert abs(auc - M.roc_auc_score(y, p, sample_weight=w)) <= bound


def test_unequal_blocks_are_not_averaged(client):
    """dask-ml's log_loss averages per-block means; with a 7-row block of bad
    predictions next to 993 good ones that is far from the log loss of the data."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    proba = np.where(y == 1, 0.9, 0.1)
    proba[:7] = 1 - proba[:7]  # confidently wrong in the small block
    chunks = (7, 993)
    exact = M.log_loss(y, proba)
    per_block = np.mean(
        [M.log_loss(y[:7], proba[:7], labels=[0, 1]), M.log_loss(y[7:], proba[7:])]
    )
    assert abs(per_block - exact) > 0.5  # the counterexample bites
    with distributed.get_task_stream(client) as tasks:
        got = gd.log_loss(
            da.from_array(y, chunks=chunks), da.from_array(proba, chunks=chunks)
        )
    assert_close(got, exact)
    # One state per block, built on the workers, then merged there.
    names = [
        t["key"][0] if isinstance(t["key"], tuple) else t["key"] for t in tasks.data
    ]
    assert sum("_block_state" in str(n) for n in names) == 2
    assert sum("_merge_states" in str(n) for n in names) == 1


def test_errors(client, data):
    dy = da.from_array(data["y_bin"], chunks=CHUNKS_Y)
    with pytest.raises(ValueError, match="same length"):
        gd.accuracy_score(dy, data["pred_bin"][:-1])
    with pytest.raises(ValueError, match="split_every"):
        gd.accuracy_score(dy, data["pred_bin"], split_every=1)
    with pytest.raises(ValueError, match="1-D"):
        gd.mean_squared_error(da.ones((4, 2)), da.ones((4, 2)))
    with pytest.raises(ValueError, match="n_bins"):
        gd.binned_roc_auc(dy, data["proba"], n_bins=0)
    with pytest.raises(ValueError, match="binary"):
        gd.log_loss(da.from_array(data["y_multi"], chunks=CHUNKS_Y), data["proba"])
