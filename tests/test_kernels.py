"""The kernel contract (python/gradkit/_core.pyi), checked directly on both backends
against the slow references in tests/naive.py, with 1 and 2 threads.

The public tests reach the kernels only through inputs that the public layer has
cleaned; these pin down what each kernel promises, so a kernel bug is reported
where it is, and the two backends are held to the same contract."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from naive import (
    curve_counts,
    offset_average_precision,
    pairwise_auc,
    range_partition_reference,
)

import gradkit
from gradkit import _config


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    return request.param


def _kernels():
    return _config.kernels("metrics")


def _naive_label_table(t, p, w, lo, width):
    counts = np.zeros((width, width), np.int64)
    weighted = np.zeros((width, width)) if w is not None else None
    outside = 0
    for i, (a, b) in enumerate(zip(t.tolist(), p.tolist(), strict=True)):
        ia, ib = int(a) - lo, int(b) - lo
        if 0 <= ia < width and 0 <= ib < width:
            counts[ia, ib] += 1
            if w is not None:
                weighted[ia, ib] += w[i]
        else:
            outside += 1
    return counts, weighted, outside


@given(data=st.data())
def test_label_table(backend, threads, data):
    dtype = data.draw(
        st.sampled_from([np.int32, np.int64, np.uint8, np.float32, np.float64])
    )
    n = data.draw(st.integers(0, 80))
    lo_value = 0 if dtype is np.uint8 else -3
    values = st.integers(lo_value, 6)
    t = np.asarray(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)
    p = np.asarray(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=dtype)
    w = None
    if data.draw(st.booleans()):
        w = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=n, max_size=n)
            )
        )
    lo = data.draw(st.integers(lo_value, 2))
    width = data.draw(st.integers(1, 6))
    counts, weighted, outside, vmin, vmax, status = _kernels().label_table(
        t, p, w, lo, width, threads
    )
    assert status == 0
    exp_counts, exp_weighted, exp_outside = _naive_label_table(t, p, w, lo, width)
    assert counts.dtype == np.int64 and counts.shape == (width, width)
    np.testing.assert_array_equal(counts, exp_counts)
    assert outside == exp_outside
    if w is None:
        assert weighted is None
    else:
        np.testing.assert_allclose(weighted, exp_weighted, rtol=1e-12)
    if n:
        both = np.concatenate([t, p]).astype(np.int64)
        assert (vmin, vmax) == (int(both.min()), int(both.max()))


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([0.0, 1.0, 2.0**62], 0),
        ([0.0, 1.0, 2.0**63], 1),
        ([0.0, 1.5, 1.0], 2),
        ([0.0, 1.5, np.nan], 3),
        ([0.0, np.inf, 2.0**63], 3),
        ([0.0, 2.0**63, 1.5], 2),
    ],
)
def test_label_table_status(backend, values, status):
    t = np.asarray(values, dtype=np.float64)
    p = np.zeros_like(t)
    got = _kernels().label_table(t, p, None, 0, 2, 1)
    assert got[5] == status
    big = np.array([2**62 + 1, 0], dtype=np.int64)
    assert _kernels().label_table(big, big, None, 0, 2, 1)[5] == 1


@given(data=st.data())
def test_binary_curve_and_auc_and_ap(backend, threads, data):
    n = data.draw(st.integers(0, 60))
    y = np.asarray(
        data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8
    )
    s = (
        np.asarray(
            data.draw(st.lists(st.integers(-3, 5), min_size=n, max_size=n)), float
        )
        / 4
    )
    if data.draw(st.booleans()):
        s = s.astype(np.float32)
    w = None
    if data.draw(st.booleans()):
        w = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=n, max_size=n)
            )
        )
    k = _kernels()
    fps, tps, thr = k.binary_curve(y, s, w, threads)
    efps, etps, ethr = curve_counts(y, s, w)
    np.testing.assert_array_equal(thr, ethr)
    np.testing.assert_allclose(fps, efps, rtol=1e-12)
    np.testing.assert_allclose(tps, etps, rtol=1e-12)

    auc, pos_w, neg_w = k.binary_auc(y, s, w, threads)
    ww = np.ones(n) if w is None else w
    np.testing.assert_allclose(pos_w, ww[y == 1].sum(), rtol=1e-12)
    np.testing.assert_allclose(neg_w, ww[y == 0].sum(), rtol=1e-12)
    expected = pairwise_auc(y, s, w)
    if pos_w > 0 and neg_w > 0:
        np.testing.assert_allclose(auc, expected, rtol=1e-12, atol=1e-15)
    else:
        assert np.isnan(auc)

    ap, ap_pos = k.binary_average_precision(y, s, w, threads)
    np.testing.assert_allclose(ap_pos, pos_w, rtol=1e-12)
    if pos_w > 0:
        denom = etps + efps
        precision = np.divide(etps, denom, out=np.zeros_like(etps), where=denom > 0)
        recall_step = np.diff(np.concatenate([[0.0], etps])) / pos_w
        np.testing.assert_allclose(
            ap, np.sum(recall_step * precision), rtol=1e-12, atol=1e-15
        )
    else:
        assert np.isnan(ap)


def test_binary_curve_negative_zero_and_empty(backend):
    k = _kernels()
    y = np.array([1, 0, 1], np.uint8)
    fps, tps, thr = k.binary_curve(y, np.array([0.0, -0.0, 0.0]), None, 1)
    assert len(thr) == 1 and thr[0] == 0
    np.testing.assert_array_equal(fps, [1])
    np.testing.assert_array_equal(tps, [2])
    for out in k.binary_curve(np.array([], np.uint8), np.array([]), None, 1):
        assert len(out) == 0
    for out in k.binary_curve(y, np.array([0.1, 0.2, 0.3]), np.zeros(3), 1):
        assert len(out) == 0


def _same_bits(a, b):
    """Equal dtype, shape and bytes (-0.0 is not 0.0), or both None."""
    if a is None or b is None:
        assert a is None and b is None
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _both_backends(kernel, *args):
    results = []
    for backend in ("cpp", "numba"):
        with gradkit.config_context(backend=backend):
            results.append(getattr(_kernels(), kernel)(*args))
    return results


@given(data=st.data())
def test_binary_average_precision_offsets(data):
    n = data.draw(st.integers(0, 60))
    y = np.asarray(
        data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8
    )
    s = np.asarray(
        data.draw(st.lists(st.sampled_from([-0.5, -0.0, 0.0, 0.25, 1.0]), min_size=n,
                           max_size=n)),
        float,
    )  # fmt: skip
    w = None
    if data.draw(st.booleans()):
        w = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=n, max_size=n)
            )
        )
    offsets = st.sampled_from([0.0, 0.5, 1.0, 7.0, 1e6])
    tp_offset, fp_offset = data.draw(offsets), data.draw(offsets)
    threads = data.draw(st.sampled_from([1, 2]))
    plain = _both_backends("binary_average_precision", y, s, w, threads)
    zero = _both_backends("binary_average_precision", y, s, w, threads, 0.0, 0.0)
    got = _both_backends(
        "binary_average_precision", y, s, w, threads, tp_offset, fp_offset
    )
    for a, b in zip(plain + got, zero + got[::-1], strict=True):  # bit for bit
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    ap, pos_weight = got[0]
    assert pos_weight == plain[0][1]
    expected = offset_average_precision(y, s, w, tp_offset, fp_offset)
    if pos_weight > 0:
        np.testing.assert_allclose(ap, expected, rtol=1e-12, atol=1e-15)
    else:
        assert np.isnan(ap) and np.isnan(expected)


def test_binary_average_precision_offsets_by_keyword(backend):
    # A range's share given the weight above it: 2 positives and 1 negative above,
    # then this range holds (0.9: pos), (0.5: neg, pos).
    y = np.array([1, 0, 1], np.uint8)
    s = np.array([0.9, 0.5, 0.5])
    ap, pos = _kernels().binary_average_precision(
        y, s, None, 1, tp_offset=2.0, fp_offset=1.0
    )
    assert pos == 2.0
    assert ap == (1 / 2) * (3 / 4) + (1 / 2) * (4 / 6)


@given(data=st.data())
def test_range_partition(data):
    n = data.draw(st.integers(0, 80))
    grid = [-1.0, -0.5, -0.0, 0.0, 0.25, 1.0, 2.0]
    y = np.asarray(
        data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8
    )
    s = np.asarray(data.draw(st.lists(st.sampled_from(grid), min_size=n, max_size=n)))
    w = None
    if data.draw(st.booleans()):
        w = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.1, 0.5, 3.0]), min_size=n, max_size=n)
            )
        )
    # repeated bounds (empty ranges), -0.0 next to 0.0, and many bounds (the C++
    # kernel searches beyond 64)
    m = data.draw(st.sampled_from([0, 1, 2, 3, 5, 70, 254]))
    bounds = np.sort(
        np.asarray(
            data.draw(
                st.lists(st.sampled_from(grid + [0.1, 3.0]), min_size=m, max_size=m)
            )
        )
    )
    expected = range_partition_reference(y, s, w, bounds)
    for got in _both_backends("range_partition", y, s, w, bounds):
        assert len(got) == 5
        for a, b in zip(got, expected, strict=True):
            _same_bits(a, b)


@pytest.mark.parametrize("weighted", [False, True])
def test_range_partition_cases(backend, weighted):
    k = _kernels()
    rng = np.random.default_rng(3)
    n = 1000
    y = (rng.random(n) < 0.3).astype(np.uint8)
    s = rng.standard_normal(n)
    s[::7] = -0.0
    s[1::7] = 0.0
    w = rng.integers(0, 3, n) * 0.25 if weighted else None
    cases = [
        np.array([]),  # one range
        np.array([-10.0]),  # every row in the last range
        np.array([10.0, 11.0]),  # every row in the first range
        np.array([-0.0, 0.0, 0.0, 0.5]),  # repeats: empty ranges; -0.0 is 0.0
        np.quantile(s, [0.25, 0.5, 0.75]),
        np.sort(rng.standard_normal(254)),
    ]
    for bounds in cases:
        got = k.range_partition(y, s, w, bounds)
        for a, b in zip(got, range_partition_reference(y, s, w, bounds), strict=True):
            _same_bits(a, b)
    codes, scores, weights, sizes, label_weights = k.range_partition(
        y, s, w, np.array([0.0, 0.0])
    )
    assert sizes[1] == 0 and sizes.sum() == n  # -0.0 and 0.0 are in range 2
    assert sizes[2] == np.count_nonzero(s >= 0)
    assert (weights is None) == (not weighted)
    empty = k.range_partition(
        np.empty(0, np.uint8), np.empty(0), None if w is None else np.empty(0),
        np.array([0.5]),
    )  # fmt: skip
    for a, b in zip(
        empty, [np.empty(0, np.uint8), np.empty(0), empty[2], [0, 0], np.zeros((2, 2))],
        strict=True,
    ):  # fmt: skip
        if a is not None:
            np.testing.assert_array_equal(a, b)
            assert len(a) == len(b)


def test_range_partition_rejects_bad_bounds(backend):
    k = _kernels()
    y, s = np.zeros(3, np.uint8), np.zeros(3)
    for bounds, message in (
        (np.zeros(255), "at most 254"),
        (np.array([1.0, 0.0]), "sorted ascending"),
        (np.array([np.nan]), "sorted ascending"),
    ):
        with pytest.raises(ValueError, match=message):
            k.range_partition(y, s, None, bounds)


@given(data=st.data())
def test_log_loss_sum(backend, threads, data):
    n = data.draw(st.integers(1, 50))
    k = data.draw(st.sampled_from([None, 2, 3]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    eps = float(np.finfo(dtype).eps)
    probs = st.sampled_from([0.0, 1e-20, 0.1, 0.5, 0.9, 1.0])
    if k is None:
        prob = np.asarray(
            data.draw(st.lists(probs, min_size=n, max_size=n)), dtype=dtype
        )
        idx = np.asarray(
            data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int64
        )
        full = np.stack([1 - prob, prob], axis=1)
        # clip after 1 - p
        picked = np.clip(full[np.arange(n), idx], eps, 1 - eps)
    else:
        prob = np.asarray(
            data.draw(st.lists(probs, min_size=n * k, max_size=n * k)), dtype=dtype
        ).reshape(n, k)
        idx = np.asarray(
            data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), np.int64
        )
        picked = np.clip(prob[np.arange(n), idx].astype(np.float64), eps, 1 - eps)
    w = None
    if data.draw(st.booleans()):
        w = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=n, max_size=n)
            )
        )
    loss, wsum = _kernels().log_loss_sum(idx, prob, w, eps, threads)
    ww = np.ones(n) if w is None else w
    np.testing.assert_allclose(
        loss,
        np.sum(ww * -np.log(picked.astype(np.float64))),
        rtol=1e-6 if dtype is np.float32 else 1e-12,
    )
    np.testing.assert_allclose(wsum, ww.sum(), rtol=1e-12)


@given(data=st.data())
def test_regression_stats(backend, threads, data):
    n = data.draw(st.integers(1, 50))
    k = data.draw(st.integers(1, 3))
    vals = st.integers(-20, 20)
    y = (
        np.asarray(
            data.draw(st.lists(vals, min_size=n * k, max_size=n * k)), float
        ).reshape(n, k)
        / 4
    )
    p = (
        np.asarray(
            data.draw(st.lists(vals, min_size=n * k, max_size=n * k)), float
        ).reshape(n, k)
        / 4
    )
    w = None
    if data.draw(st.booleans()):
        w = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=n, max_size=n)
            )
        )
        if not w.any():
            w[0] = 1.0
    sum_w, sse, sae, mean_true, ss_tot = _kernels().regression_stats(y, p, w, threads)
    ww = np.ones(n) if w is None else w
    np.testing.assert_allclose(sum_w, ww.sum(), rtol=1e-12)
    np.testing.assert_allclose(sse, (ww[:, None] * (y - p) ** 2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(sae, (ww[:, None] * np.abs(y - p)).sum(0), rtol=1e-12)
    mean = (ww[:, None] * y).sum(0) / ww.sum()
    np.testing.assert_allclose(mean_true, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        ss_tot, (ww[:, None] * (y - mean) ** 2).sum(0), rtol=1e-12, atol=1e-12
    )


def test_regression_stats_second_pass(backend):
    # ss_tot is a second pass around the mean, not sum(y^2) - n mean^2
    y = (1e9 + np.array([0.0, 1.0, 2.0, 3.0])).reshape(4, 1)
    _, _, _, _, ss_tot = _kernels().regression_stats(y, y, None, 1)
    np.testing.assert_allclose(ss_tot, [5.0], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite(backend, dtype):
    k = _kernels()
    x = np.arange(300_000, dtype=dtype).reshape(1000, 300)
    assert k.all_finite(x, 2)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[999, 299] = bad
        assert not k.all_finite(y, 1)
        assert not k.all_finite(y, 2)
    assert k.all_finite(np.zeros(0, dtype), 1)


def test_kernels_agree_across_backends_large():
    # above 2**16 elements the kernels may go parallel: same answers everywhere
    rng = np.random.default_rng(7)
    n = 200_000
    y = (rng.random(n) < 0.4).astype(np.uint8)
    s = np.round(rng.random(n), 3)
    w = rng.integers(0, 3, n).astype(float)
    results = []
    for backend in ("cpp", "numba"):
        for threads in (1, 2):
            with gradkit.config_context(backend=backend):
                k = _kernels()
                results.append(
                    (
                        k.binary_curve(y, s, w, threads),
                        k.binary_auc(y, s, w, threads),
                        k.binary_average_precision(y, s, None, threads),
                        k.binary_average_precision(y, s, w, threads, 7.0, 3.0),
                        k.range_partition(y, s, w, np.array([0.2, 0.5, 0.5, 0.9])),
                        k.label_table(y, (s > 0.5).astype(np.uint8), w, 0, 2, threads)[
                            :2
                        ],
                    )
                )
    ref = results[0]
    for other in results[1:]:
        for a, b in zip(ref[0], other[0], strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-12)
        np.testing.assert_allclose(other[1], ref[1], rtol=1e-12)
        np.testing.assert_allclose(other[2], ref[2], rtol=1e-12)
        np.testing.assert_allclose(other[3], ref[3], rtol=1e-12)
        for a, b in zip(ref[4], other[4], strict=True):  # serial: bit for bit
            _same_bits(a, b)
        np.testing.assert_array_equal(other[5][0], ref[5][0])
        np.testing.assert_allclose(other[5][1], ref[5][1], rtol=1e-12)
