"""gradkit.dask.roc_auc_score and average_precision_score (the sample sort of
gradkit.dask._ranking) equal gradkit.metrics on the whole numpy data: the value
(bit for bit for the unweighted ROC AUC, else to 1e-12 relative), and the same
errors and warnings. Most tests run on the synchronous scheduler; the last one
runs on a 2-process LocalCluster."""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import distributed
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays as _arrays

import gradkit.dask as gd
import gradkit.metrics as M
from gradkit.dask import _ranking

RTOL = 1e-12
ATOL = 1e-15  # an AUC of exactly 0 may come back as a few ulps of 1
LABEL_SETS = [(0, 1), (-1, 1), ("a", "b"), (False, True)]
# Few distinct scores, so that ties within and across blocks are the rule.
TIED_SCORES = [-2.5, -1.0, -0.0, 0.0, 0.25, 0.5, 1.0, 3.0]
MAX_FPRS = [None, 0.1, 0.37, 0.5, 1.0]


@pytest.fixture
def sync():
    with dask.config.set(scheduler="sync"):
        yield


def outcome(call):
    """(the value, or (exception type, message)), [(warning category, message)]."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = call()
        except Exception as exc:  # noqa: BLE001 - the exception is the outcome
            value = (type(exc), str(exc))
    return value, [(w.category, str(w.message)) for w in caught]


def assert_same(got, expected, *, exact=False):
    """Same warnings, same exception or value: bit for bit when exact."""
    (value, caught), (want, want_caught) = got, expected
    assert caught == want_caught
    if isinstance(want, tuple):
        assert value == want
        return
    assert isinstance(value, float), value
    if exact:
        assert value.hex() == float(want).hex(), (value, want)
    else:
        assert value == pytest.approx(want, rel=RTOL, abs=ATOL, nan_ok=True)


def arrays(dtype, n, elements=None):
    """n elements, each drawn: hypothesis' default fills most of an array with
    one repeated value."""
    return _arrays(dtype, n, elements=elements, fill=st.nothing())


def dask_1d(x, chunks):
    return None if x is None else da.from_array(x, chunks=(tuple(chunks),))


@st.composite
def ranking_data(draw):
    """(y, s, w, chunks, mask or None, pos_label): numpy data, how to cut it, and
    either label as average precision's positive one."""
    n = draw(st.integers(1, 300))
    neg, pos = draw(st.sampled_from(LABEL_SETS))
    is_pos = draw(arrays(np.bool_, n))
    y = np.where(is_pos, pos, neg)
    if draw(st.booleans()):
        s = draw(arrays(np.float64, n, elements=st.sampled_from(TIED_SCORES)))
    else:
        finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=True)
        s = draw(arrays(np.float64, n, elements=finite))
    kind = draw(st.sampled_from(["none", "float", "zeros", "dyadic"]))
    if kind == "none":
        w = None
    elif kind == "float":
        w = draw(arrays(np.float64, n, elements=st.floats(1e-3, 100.0)))
    elif kind == "zeros":
        w = draw(arrays(np.float64, n, elements=st.sampled_from([0, 0.1, 1, 3.25])))
    else:  # multiples of 1/8: every sum is exact in any order
        w = draw(arrays(np.float64, n, elements=st.integers(0, 64))) / 8
    if n <= 40 and draw(st.booleans()):
        chunks = [1] * n
    else:  # repeated cuts make empty blocks
        cuts = sorted(draw(st.lists(st.integers(0, n), max_size=12)))
        chunks = np.diff([0, *cuts, n]).tolist()
    mask = None
    if draw(st.booleans()):  # unknown block sizes, some blocks emptied
        mask = draw(arrays(np.bool_, n))
        mask[draw(st.integers(0, n - 1))] = True  # empty input is tested apart
    pos_label = draw(st.sampled_from([neg, pos]))  # for average precision
    return y, s, w, chunks, mask, pos_label


def both(data, metric, **kwargs):
    """(dask outcome, in-memory outcome) of metric on the drawn data."""
    y, s, w, chunks, mask, _ = data
    dy, ds, dw = (dask_1d(a, chunks) for a in (y, s, w))
    if mask is not None:
        dmask = dask_1d(mask, chunks)
        dy, ds = dy[dmask], ds[dmask]
        dw = None if dw is None else dw[dmask]
        y, s, w = y[mask], s[mask], None if w is None else w[mask]
    n_ranges = kwargs.pop("n_ranges")
    got = outcome(
        lambda: getattr(gd, metric)(
            dy, ds, sample_weight=dw, n_ranges=n_ranges, **kwargs
        )
    )
    expected = outcome(lambda: getattr(M, metric)(y, s, sample_weight=w, **kwargs))
    return got, expected


N_RANGES = st.none() | st.integers(1, 20)


@settings(deadline=None, max_examples=200)
@given(data=ranking_data(), n_ranges=N_RANGES, max_fpr=st.sampled_from(MAX_FPRS))
def test_roc_auc_matches_in_memory(sync, data, n_ranges, max_fpr):
    got, expected = both(data, "roc_auc_score", n_ranges=n_ranges, max_fpr=max_fpr)
    unweighted = data[2] is None
    assert_same(got, expected, exact=unweighted and max_fpr in (None, 1.0))


@settings(deadline=None, max_examples=200)
@given(data=ranking_data(), n_ranges=N_RANGES)
def test_average_precision_matches_in_memory(sync, data, n_ranges):
    got, expected = both(
        data, "average_precision_score", n_ranges=n_ranges, pos_label=data[5]
    )
    assert_same(got, expected)


@pytest.mark.parametrize("backend_name", ["cpp", "numba"])
@settings(deadline=None, max_examples=15)
@given(data=ranking_data(), n_ranges=N_RANGES)
def test_both_backends(sync, backend_name, data, n_ranges):
    """The range kernels run under the configured backend, as the in-memory ones."""
    import gradkit

    with gradkit.config_context(backend=backend_name):
        got, expected = both(data, "roc_auc_score", n_ranges=n_ranges, max_fpr=None)
        assert_same(got, expected, exact=data[2] is None)
        got, expected = both(
            data, "average_precision_score", n_ranges=n_ranges, pos_label=data[5]
        )
        assert_same(got, expected)


# --------------------------------------------------------------------------------
# Hand-picked cases: the dask outcome (value, error, warnings) is the in-memory one


def compare(metric, y, s, w=None, chunks=(2, 1, 3), exact=False, **kwargs):
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    w = None if w is None else np.asarray(w, dtype=float)
    n_ranges = kwargs.pop("n_ranges", 3)
    got = outcome(
        lambda: getattr(gd, metric)(
            dask_1d(y, chunks),
            dask_1d(s, chunks),
            sample_weight=dask_1d(w, chunks),
            n_ranges=n_ranges,
            **kwargs,
        )
    )
    expected = outcome(lambda: getattr(M, metric)(y, s, sample_weight=w, **kwargs))
    assert_same(got, expected, exact=exact)
    return got


S6 = [0.1, 0.4, 0.35, 0.8, 0.4, 0.2]


@pytest.mark.parametrize("w", [None, [1, 2, 0, 1, 1, 3]])
@pytest.mark.parametrize("labels", [[0] * 6, [1] * 6, ["b"] * 6])
def test_one_class(sync, labels, w):
    (value, caught) = compare("roc_auc_score", labels, S6, w)
    assert np.isnan(value) and len(caught) == 1
    compare("roc_auc_score", labels, S6, w, max_fpr=0.5)
    pos_label = labels[0] if labels[0] != 0 else 1
    compare("average_precision_score", labels, S6, w, pos_label=pos_label)


@pytest.mark.parametrize("zero_class", [0, 1])
def test_class_of_zero_total_weight(sync, zero_class):
    y = np.array([0, 1, 1, 0, 1, 0])
    w = np.where(y == zero_class, 0.0, [1, 2, 3, 4, 5, 6])
    value, caught = compare("roc_auc_score", y, S6, w)
    assert np.isnan(value) and caught
    compare("roc_auc_score", y, S6, w, max_fpr=0.3)
    compare("average_precision_score", y, S6, w)


@pytest.mark.parametrize(
    ("y", "pos_label"),
    [([0, 1, 1, 0, 1, 0], 2), (["a", "b", "b", "a", "a", "b"], 1), ([0] * 6, "x")],
)
def test_pos_label_not_a_label(sync, y, pos_label):
    compare("average_precision_score", y, S6, pos_label=pos_label)
    compare("average_precision_score", y, S6, [1, 0, 2, 1, 1, 1], pos_label=pos_label)


@pytest.mark.parametrize("max_fpr", [0, 0.0, 1.5, -0.1, float("nan"), True, "0.5"])
def test_invalid_max_fpr(sync, max_fpr):
    value, _ = compare("roc_auc_score", [0, 1, 1, 0, 1, 0], S6, max_fpr=max_fpr)
    assert isinstance(value, tuple)


@pytest.mark.parametrize("metric", ["roc_auc_score", "average_precision_score"])
def test_invalid_average(sync, metric):
    value, _ = compare(metric, [0, 1, 1, 0, 1, 0], S6, average="mean")
    assert isinstance(value, tuple)


@pytest.mark.parametrize("metric", ["roc_auc_score", "average_precision_score"])
@pytest.mark.parametrize(
    "chunks",
    [(6,), (2, 2, 2)],  # three labels in one block; over blocks of two labels each
)
def test_three_labels_raise(sync, metric, chunks):
    y = dask_1d(np.array([0, 0, 1, 1, 2, 2]), chunks)
    with pytest.raises(ValueError, match="binary"):
        getattr(gd, metric)(y, dask_1d(np.array(S6), chunks))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("metric", ["roc_auc_score", "average_precision_score"])
def test_non_finite_score(sync, metric, bad):
    s = np.array(S6)
    s[4] = bad
    value, _ = compare(metric, [0, 1, 1, 0, 1, 0], s)
    assert value[0] is ValueError


@pytest.mark.parametrize("n_ranges", [0, 256, -1, 2.5, True, "3", np.float64(4)])
@pytest.mark.parametrize("metric", ["roc_auc_score", "average_precision_score"])
def test_invalid_n_ranges(sync, metric, n_ranges):
    y, s = dask_1d(np.array([0, 1, 1, 0]), (2, 2)), dask_1d(np.array(S6[:4]), (2, 2))
    with pytest.raises(ValueError, match="n_ranges"):
        getattr(gd, metric)(y, s, n_ranges=n_ranges)


@pytest.mark.parametrize("n_ranges", [1, np.int64(255), 255])
def test_extreme_n_ranges(sync, n_ranges):
    y = np.arange(600) % 3 == 0
    s = np.linspace(0, 1, 600) ** 2
    compare("roc_auc_score", y, s, chunks=(100,) * 6, n_ranges=n_ranges, exact=True)


@pytest.mark.parametrize("limit", [0.0, np.inf])
def test_unweighted_auc_exact_by_either_path(sync, monkeypatch, limit):
    # Ranges past FAST_AUC_LIMIT (pos * neg, over 2**48 rows squared: too big for
    # a test) sum their area from the curve instead of binary_auc; both are exact.
    monkeypatch.setattr(_ranking, "FAST_AUC_LIMIT", limit)
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 900)
    s = np.round(rng.random(900) + 0.3 * y, 2)  # ties within and across blocks
    compare("roc_auc_score", y, s, chunks=(300, 1, 299, 300), n_ranges=6, exact=True)


@pytest.mark.parametrize("w", [None, [1, 2, 0.5, 1, 1, 3]])
def test_all_scores_equal(sync, w):
    y, s = [0, 1, 1, 0, 1, 0], [0.7] * 6
    value, _ = compare("roc_auc_score", y, s, w, exact=w is None)
    assert value == 0.5
    compare("roc_auc_score", y, s, w, max_fpr=0.37)
    compare("average_precision_score", y, s, w)


@pytest.mark.parametrize("metric", ["roc_auc_score", "average_precision_score"])
@pytest.mark.parametrize("w", [None, [2.0]])
def test_single_row(sync, metric, w):
    compare(metric, [1], [0.3], w, chunks=(1,))


def test_more_ranges_than_distinct_scores(sync):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = rng.choice([-0.0, 0.0, 1.0], 200)  # -0.0 == 0.0: two distinct scores
    w = rng.uniform(0, 2, 200)
    chunks = (50, 1, 0, 99, 50)
    compare("roc_auc_score", y, s, chunks=chunks, n_ranges=20, exact=True)
    compare("roc_auc_score", y, s, w, chunks=chunks, n_ranges=20)
    compare("roc_auc_score", y, s, w, chunks=chunks, n_ranges=20, max_fpr=0.1)
    compare("average_precision_score", y, s, w, chunks=chunks, n_ranges=20)


@pytest.mark.parametrize("metric", ["roc_auc_score", "average_precision_score"])
def test_empty_input(sync, metric):
    compare(metric, np.array([], dtype=int), [], chunks=(0,))


def test_numpy_inputs(sync):
    """Plain numpy inputs are taken as one block."""
    y, s = np.array([0, 1, 1, 0, 1, 0]), np.array(S6)
    assert gd.roc_auc_score(y, s) == M.roc_auc_score(y, s)
    assert gd.average_precision_score(y, s) == pytest.approx(
        M.average_precision_score(y, s), rel=RTOL
    )


# --------------------------------------------------------------------------------
# A 2-process cluster: the shares are computed on the workers


@pytest.mark.parametrize("n_ranges", [None, 5])
def test_on_cluster(client, n_ranges):
    rng = np.random.default_rng(7)
    n = 20_000
    y = rng.integers(0, 2, n)
    s = np.round(0.4 * y + rng.random(n), 3)  # ties across blocks
    w = rng.uniform(0, 2, n)
    chunks = (1, 3000, 17, 2500, 4000, 999, 1500, 2, 3000, 1234, 766, 980, 2001)
    assert len(chunks) == 13 and sum(chunks) == n
    dy, ds, dw = (dask_1d(a, chunks) for a in (y, s, w))
    with distributed.get_task_stream(client) as tasks:
        got = gd.roc_auc_score(dy, ds, n_ranges=n_ranges)
    assert any("_range_share" in str(t["key"]) for t in tasks.data)
    assert got == M.roc_auc_score(y, s)
    checks = [
        (gd.roc_auc_score(dy, ds, sample_weight=dw, n_ranges=n_ranges),
         M.roc_auc_score(y, s, sample_weight=w)),
        (gd.roc_auc_score(dy, ds, max_fpr=0.2, n_ranges=n_ranges),
         M.roc_auc_score(y, s, max_fpr=0.2)),
        (gd.roc_auc_score(dy, ds, sample_weight=dw, max_fpr=0.37, n_ranges=n_ranges),
         M.roc_auc_score(y, s, sample_weight=w, max_fpr=0.37)),
        (gd.average_precision_score(dy, ds, n_ranges=n_ranges),
         M.average_precision_score(y, s)),
        (gd.average_precision_score(dy, ds, sample_weight=dw, n_ranges=n_ranges),
         M.average_precision_score(y, s, sample_weight=w)),
    ]  # fmt: skip
    for got, want in checks:
        assert got == pytest.approx(want, rel=RTOL, abs=ATOL)
