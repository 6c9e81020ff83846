"""The linear-model kernels (gradkit._core.linear and gradkit._numba.linear),
checked directly on both backends against their oracles:

- sgd_epoch against scikit-learn's own _plain_sgd64 / _plain_sgd32 (the reference
  of the contract), called with shuffle=False so that it visits the rows in the
  identity order, several epochs in one call while the kernel carries `state`
  from call to call;
- loss_grad against the numpy reference in tests/naive.py.

sgd_epoch follows sklearn's order of operations to the letter except where the
contract says otherwise: a dense row sums over its features in 16 lanes
(tests/naive.py's lane_sum, checked exactly by test_dense_sums_in_sixteen_lanes),
so a dense fit equals sklearn's to a relative tolerance, a CSR fit to the last
bits. Both backends follow the contract to the letter, so they agree with each
other bit for bit; test_backends_agree_bit_for_bit says so.
"""

import re
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from naive import lane_dot, lane_sum, linear_loss_grad, linear_losses
from sklearn._loss._loss import CyHalfBinomialLoss, CyHalfSquaredError, CyHuberLoss
from sklearn.linear_model import _sgd_fast
from sklearn.linear_model._base import make_dataset

from gradkit import _config
from gradkit._numba import linear as numba_linear

LOSS_CODES = range(8)
LOSS_PARAMS = {1: 0.7, 2: 0.1, 3: 0.1, 5: 1.0, 6: 1.0}
#: The kernels' penalty codes and sklearn's (PENALTY_TYPES of _stochastic_gradient).
SKLEARN_PENALTY = {0: 0, 1: 2, 2: 1, 3: 3}
EPOCHS = 3


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    return request.param


def _kernels():
    return _config.kernels("linear")


def _csr(X):
    """X as the kernels take CSR: data, int32 indices, int64 indptr."""
    m = sp.csr_matrix(X)
    return m.data, m.indices.astype(np.int32), m.indptr.astype(np.int64)


def _layout(X, sparse):
    return _csr(X) if sparse else (X, None, None)


def _targets(rng, code, n, k=3):
    if code == 8:
        return rng.integers(0, k, n).astype(np.float64)
    if code == 4:
        return (rng.random(n) < 0.5).astype(np.float64)
    if code >= 5:
        return np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return rng.standard_normal(n)


def _features(rng, n, d, dtype, sparse):
    X = (0.5 * rng.standard_normal((n, d))).astype(dtype)
    if sparse:
        X[rng.random((n, d)) < 0.5] = 0
    return X


# --------------------------------------------------------------------------------
# sgd_epoch against sklearn


def _sklearn_loss(code, param):
    return [
        CyHalfSquaredError,
        lambda: CyHuberLoss(param),
        lambda: _sgd_fast.EpsilonInsensitive(param),
        lambda: _sgd_fast.SquaredEpsilonInsensitive(param),
        CyHalfBinomialLoss,
        lambda: _sgd_fast.Hinge(param),
        lambda: _sgd_fast.SquaredHinge(param),
        _sgd_fast.ModifiedHuber,
    ][code]()


def _optimal_init(loss, alpha):
    """sklearn's optimal_init for learning_rate="optimal" (_plain_sgd)."""
    typw = np.sqrt(1.0 / np.sqrt(alpha))
    if hasattr(loss, "py_dloss"):
        dloss = loss.py_dloss(-typw, 1.0)
    else:
        out = np.empty(1)
        loss.gradient(np.array([1.0]), np.array([-typw]), None, out, 1)
        dloss = out[0]
    return 1.0 / (typw / max(1.0, dloss) * alpha)


def _sgd_run(X, y, sample_weight, config, sparse, order=None, verbose=0):
    """sklearn's _plain_sgd over EPOCHS epochs in the identity order, and the
    kernel over the same epochs one call at a time (rows in `order`, identity
    when None). Returns sklearn's (w, b, aw, ab) and the kernel's, finished as
    sklearn's last reset_wscale, the kernel's (sumloss, objective) sums and its
    final state."""
    dtype = X.dtype.type
    n, d = X.shape
    code, param = config["loss"], config["loss_param"]
    loss = _sklearn_loss(code, param)
    alpha, average = config["alpha"], config["average"]
    lr, eta0 = config["learning_rate"], config["eta0"]
    optimal_init = _optimal_init(loss, alpha) if lr == 2 else 0.0
    sw = np.ones(n) if sample_weight is None else sample_weight
    X_sklearn = X if order is None else X[order]
    y_sklearn = y if order is None else y[order]
    sw_sklearn = sw if order is None else sw[order]
    dataset, intercept_decay = make_dataset(
        sp.csr_matrix(X_sklearn) if sparse else X_sklearn,
        y_sklearn.astype(dtype),
        sw_sklearn.astype(dtype),
        random_state=0,
    )
    plain_sgd = (
        _sgd_fast._plain_sgd32 if dtype is np.float32 else _sgd_fast._plain_sgd64
    )
    w, b, aw, ab, _ = plain_sgd(
        np.zeros(d, dtype),
        0.0,
        np.zeros(d, dtype) if average else None,
        0.0,
        loss,
        SKLEARN_PENALTY[config["penalty"]],
        alpha,
        config["l1_ratio"],
        dataset,
        np.zeros(len(y_sklearn), np.uint8),  # no validation rows
        False,  # early_stopping
        None,
        5,
        EPOCHS,
        -np.inf,  # tol: every epoch runs, and eta never changes
        int(config["fit_intercept"]),
        verbose,
        False,  # shuffle
        0,
        config["weight_pos"],
        config["weight_neg"],
        lr,
        eta0,
        config["power_t"],
        False,  # one_class
        1.0,
        intercept_decay,
        average,
    )
    expected = (w, b, aw, ab)

    weights = np.zeros(d, dtype)
    average_weights = np.zeros(d, dtype) if average else None
    l1_q = np.zeros(d, dtype) if config["penalty"] in (2, 3) else None
    state = np.array([0.0, 0.0, 1.0, eta0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    rows = np.arange(n, dtype=np.int64) if order is None else order
    sums = []
    for _ in range(EPOCHS):
        sums.append(
            _kernels().sgd_epoch(
                *_layout(X, sparse),
                y,
                sample_weight,
                rows,
                weights,
                average_weights,
                l1_q,
                state,
                code,
                param,
                config["penalty"],
                alpha,
                config["l1_ratio"],
                lr,
                eta0,
                config["power_t"],
                optimal_init,
                config["fit_intercept"],
                intercept_decay,
                config["weight_pos"],
                config["weight_neg"],
                average,
                config["compute_loss"],
            )  # fmt: skip
        )
    # sklearn's final reset_wscale, in float64
    w_ours = weights.astype(np.float64) * state[5]
    aw_ours = None
    if average:
        aw_ours = (average_weights + state[8] * weights.astype(np.float64)) / state[9]
    return expected, (w_ours, state[0], aw_ours, state[1]), sums, state


def _config_of(code, penalty, **changes):
    config = {
        "loss": code,
        "loss_param": LOSS_PARAMS.get(code, 0.0),
        "penalty": penalty,
        "alpha": 1e-3,
        "l1_ratio": 0.3,
        "learning_rate": 1,
        "eta0": 0.05,
        "power_t": 0.25,
        "fit_intercept": True,
        "weight_pos": 1.0,
        "weight_neg": 1.0,
        "average": 0,
        "compute_loss": True,
    }
    config.update(changes)
    return config


def _fit_rtol(dtype, sparse):
    """How close a fit is to sklearn's. CSR rows add as sklearn does: only the
    final reset_wscale, done in float64 here, rounds differently. Dense rows sum
    in 16 lanes, which moves each sum by an ulp or so, and the fit a little more
    after a few epochs."""
    if dtype is np.float32:
        return 1e-5  # p and the weights round to float32
    return 1e-12 if sparse else 1e-9


def _assert_same_fit(expected, got, rtol):
    w, b, aw, ab = expected
    w_ours, b_ours, aw_ours, ab_ours = got
    scale = max(1.0, float(np.abs(w).max()))
    np.testing.assert_allclose(w_ours, w, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(b_ours, b, rtol=rtol, atol=rtol * scale)
    if aw is not None:
        np.testing.assert_allclose(aw_ours, aw, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(ab_ours, ab, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("penalty", [0, 1, 2, 3], ids=["none", "l2", "l1", "enet"])
@pytest.mark.parametrize("code", LOSS_CODES)
def test_sgd_epoch_matches_sklearn(backend, code, penalty, dtype, sparse):
    rng = np.random.default_rng(1000 * code + 10 * penalty + sparse)
    n, d = 40, 19  # a dense row: a block of 16 lanes and 3 features more
    # |x| as for 7 features: a fit that diverges would magnify any rounding
    X = _features(rng, n, d, dtype, sparse) * dtype(np.sqrt(7 / d))
    y = _targets(rng, code, n)
    rtol = _fit_rtol(dtype, sparse)
    for learning_rate in (1, 2, 3, 4):
        for average in (0, 1, 4):
            for weighted in (False, True):
                config = _config_of(
                    code,
                    penalty,
                    learning_rate=learning_rate,
                    # optimal starts at eta = 1 / sqrt(alpha)**0.5 and decays as
                    # 1 / (alpha t): keep it tame, a fit that diverges magnifies
                    # any rounding
                    alpha=1e-1 if learning_rate == 2 else 1e-3,
                    average=average,
                    weight_pos=2.0 if weighted else 1.0,
                    weight_neg=0.5 if weighted else 1.0,
                )
                sample_weight = rng.random(n) * 2 if weighted else None
                expected, got, _, state = _sgd_run(X, y, sample_weight, config, sparse)
                _assert_same_fit(expected, got, rtol)
                if not sparse and penalty < 2:
                    _assert_norms_tracked(state, got[0], rtol)


def _assert_norms_tracked(state, w, rtol):
    """WeightVector's norm accumulators (state 6, 7) are those of the weights
    after a dense epoch: add() sums them over the row's features, all of them
    for a dense row, and scale() scales them (L1's truncation leaves them be)."""
    sq_norm, l1_norm = state[6], state[7]
    assert sq_norm == pytest.approx(float(np.dot(w, w)), rel=10 * rtol, abs=1e-300)
    assert l1_norm == pytest.approx(float(np.abs(w).sum()), rel=10 * rtol, abs=1e-300)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sgd_epoch_rescales_weights_as_sklearn(backend, dtype, sparse):
    """A large alpha * eta drives wscale under WeightVector's threshold every few
    samples: the reset folds wscale (and the average) into the arrays."""
    rng = np.random.default_rng(7)
    X = _features(rng, 60, 5, dtype, sparse)
    y = _targets(rng, 5, 60)
    for penalty in (1, 3):
        for average in (0, 1):
            config = _config_of(5, penalty, alpha=1.0, eta0=0.6, average=average)
            expected, got, _, _ = _sgd_run(X, y, None, config, sparse)
            _assert_same_fit(expected, got, _fit_rtol(dtype, sparse))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_sgd_epoch_follows_order(backend, sparse):
    """Rows are visited in `order` (a shuffle, with some left out): the same as
    sklearn on the rows so ordered."""
    rng = np.random.default_rng(3)
    X = _features(rng, 50, 6, np.float64, sparse)
    y = _targets(rng, 4, 50)
    order = rng.permutation(50)[:41].astype(np.int64)
    for penalty in (1, 3):
        config = _config_of(4, penalty, learning_rate=2, alpha=1e-2, average=3)
        expected, got, _, _ = _sgd_run(X, y, rng.random(50), config, sparse, order)
        _assert_same_fit(expected, got, _fit_rtol(np.float64, sparse))


_EPOCH_LINE = re.compile(r"Avg\. loss: (\S+), Objective: (\S+)")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("code", [0, 4, 5, 7])
def test_sgd_epoch_loss_sums_match_sklearn(backend, capsys, code, sparse):
    """(sumloss, objective_sum) are sklearn's, as its verbose output prints them
    (divided by n, to 6 decimals)."""
    rng = np.random.default_rng(code)
    n = 40
    X = _features(rng, n, 5, np.float64, sparse)
    y = _targets(rng, code, n)
    for penalty in (0, 1, 2, 3):
        config = _config_of(code, penalty, alpha=0.05)
        capsys.readouterr()
        _, _, sums, _ = _sgd_run(X, y, None, config, sparse, verbose=1)
        printed = _EPOCH_LINE.findall(capsys.readouterr().out)
        assert len(printed) == EPOCHS
        for (sumloss, objective), (avg_loss, avg_objective) in zip(
            sums, printed, strict=True
        ):
            assert sumloss / n == pytest.approx(float(avg_loss), abs=1e-6)
            assert objective / n == pytest.approx(float(avg_objective), abs=1e-6)
            if penalty == 0:
                assert objective == sumloss


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_sgd_epoch_without_loss_sums(backend, sparse):
    """compute_loss=False returns (0.0, 0.0) and changes nothing else, to the
    bit: not the weights, and not the norm accumulators in `state`, which a dense
    epoch then sums once at its end (the scales since the last add replayed)."""
    rng = np.random.default_rng(5)
    X = _features(rng, 30, 37, np.float64, sparse)
    y = _targets(rng, 5, 30)
    for penalty in (1, 3):
        fits = []
        for compute_loss in (True, False):
            config = _config_of(5, penalty, compute_loss=compute_loss, average=2)
            _, got, sums, state = _sgd_run(X, y, None, config, sparse)
            fits.append((*got, state))
            assert (sums[0] == (0.0, 0.0)) is not compute_loss
        for a, b in zip(*fits, strict=True):
            np.testing.assert_array_equal(a, b)


def _one_row_step(X, weights, compute_loss):
    """One sgd_epoch step on the single row X (dense, or CSR when a tuple) from
    a copy of weights and intercept 0: the squared error, y = 0, a constant eta
    of 1 and no penalty, so that the update is -p and the intercept becomes -p,
    p = w.x as the kernel sums it. Returns the new weights and state."""
    layout = X if isinstance(X, tuple) else (X, None, None)
    weights = weights.copy()
    state = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    _kernels().sgd_epoch(
        *layout, np.zeros(1), None, np.zeros(1, np.int64), weights, None, None,
        state, 0, 0.0, 0, 0.0, 0.0, 1, 1.0, 0.5, 0.0, True, 1.0, 1.0, 1.0, 0,
        compute_loss,
    )  # fmt: skip
    return weights, state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d", [1, 15, 16, 17, 100])
def test_dense_sums_in_sixteen_lanes(backend, d, dtype):
    """The contract's order of the sums over a dense row, exactly: the dot
    product (seen through the intercept, -p) and add()'s two norm accumulators
    (state 6 and 7, over the new weights), against tests/naive.py's lane_sum;
    a CSR row keeps sklearn's sequential order."""
    rng = np.random.default_rng(d)
    w = rng.standard_normal(d) * np.exp(rng.uniform(-6, 6, d))
    x = rng.standard_normal((1, d)) * np.exp(rng.uniform(-6, 6, d))
    if d > 1:
        # terms 2**60 at feature 0 and -2**60 in the same lane (feature 16) or,
        # with fewer features, in the lane added to it first (8): the lanes
        # cancel them exactly, one sequential chain loses the small terms to them
        partner = 16 if d > 16 else 8
        w[0] = w[partner] = x[0, 0] = 2.0**30
        x[0, partner] = -(2.0**30)
    w, x = w.astype(dtype), x.astype(dtype)
    p = lane_dot(w, x[0])
    sequential = 0.0
    for term in (w * x[0]).astype(np.float64):
        sequential += term
    assert bool(p != sequential) == (d > 1)  # the data tell the orders apart
    for compute_loss in (True, False):
        new_w, state = _one_row_step(x, w, compute_loss)
        assert state[0] == -np.float64(dtype(p))  # p is rounded to T
        assert state[6] == lane_sum(new_w * new_w)  # the products in T
        assert state[7] == lane_sum(np.abs(new_w.astype(np.float64)))
        _, state = _one_row_step(_csr(x), w, compute_loss)
        assert state[0] == -np.float64(dtype(sequential))


@pytest.mark.parametrize("penalty", [0, 1, 2, 3], ids=["none", "l2", "l1", "enet"])
@pytest.mark.parametrize("code", [5, 7])
def test_sgd_epoch_dense_schedule_changes_no_bit(backend, code, penalty):
    """The dense path's schedule (dot products computed ahead while the weights
    stay, the norm accumulators summed at the end without the loss sums) changes
    no bit: one call over the rows gives what one call per row gives, where
    nothing is computed ahead. And the CSR path (sklearn's order) is close."""
    rng = np.random.default_rng(11)
    n, d = 400, 37
    X = rng.standard_normal((n, d)) + 3.0  # separable enough for many zero updates
    y = np.where(X[:, 0] + 0.1 * rng.standard_normal(n) > 3.0, 1.0, -1.0)
    X *= 0.5  # |x| about as for 9 features: the fit does not diverge
    order = rng.permutation(n).astype(np.int64)

    def fit(layout, compute_loss, rows_per_call):
        weights = np.zeros(d)
        average_weights = np.zeros(d)
        l1_q = np.zeros(d) if penalty in (2, 3) else None
        state = np.array([0.0, 0.0, 1.0, 0.01, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
        sums = np.zeros(2)
        for _ in range(3):
            for start in range(0, n, rows_per_call):
                sums += _kernels().sgd_epoch(
                    *layout, y, None, order[start : start + rows_per_call],
                    weights, average_weights, l1_q, state, code, 1.0, penalty,
                    1e-4, 0.15, 1, 0.01, 0.5, 0.0, True, 1.0, 1.0, 1.0, 50,
                    compute_loss,
                )  # fmt: skip
        return (weights, average_weights, l1_q, state), sums

    for compute_loss in (True, False):
        whole, sums = fit((X, None, None), compute_loss, n)
        by_row, row_sums = fit((X, None, None), compute_loss, 1)
        csr, csr_sums = fit(_csr(X), compute_loss, n)
        for a, b, c in zip(whole, by_row, csr, strict=True):
            if a is None:
                assert b is None and c is None
                continue
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
        # the epoch adds each sample's loss to its sums; the calls add theirs
        np.testing.assert_allclose(sums, row_sums, rtol=1e-12)
        np.testing.assert_allclose(sums, csr_sums, rtol=1e-9)


# --------------------------------------------------------------------------------
# loss_grad against the numpy reference


def _loss_grad(X, y, sample_weight, rows, coef, intercept, code, param, n_threads):
    k, d = coef.shape
    grad_coef = np.full((k, d), np.nan)  # overwritten, whatever was there
    grad_intercept = np.full(k, np.nan)
    loss = _kernels().loss_grad(
        *X, y, sample_weight, rows, coef, intercept, code, param, grad_coef,
        grad_intercept, n_threads,
    )  # fmt: skip
    assert isinstance(loss, float)
    return loss, grad_coef, grad_intercept


def _assert_loss_grad_close(got, expected, rtol=1e-10):
    loss, grad_coef, grad_intercept = got
    scale = max(1.0, abs(expected[0]), float(np.abs(expected[1]).max(initial=0.0)))
    assert loss == pytest.approx(expected[0], rel=rtol, abs=rtol * scale)
    np.testing.assert_allclose(grad_coef, expected[1], rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(
        grad_intercept, expected[2], rtol=rtol, atol=rtol * scale
    )


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("code", range(9))
def test_loss_grad_matches_naive(backend, threads, code, dtype, sparse):
    rng = np.random.default_rng(100 * code + sparse)
    n, d = 45, 6
    k = 3 if code == 8 else 1
    X = _features(rng, n, d, dtype, sparse)
    y = _targets(rng, code, n, k)
    coef = rng.standard_normal((k, d))
    intercept = rng.standard_normal(k)
    param = LOSS_PARAMS.get(code, 0.0)
    weights = [None, rng.random(n) * (rng.random(n) < 0.8)]  # some weights 0
    rows_cases = [
        None,
        rng.integers(0, n, 3 * n),  # repeats, any order
        np.sort(rng.choice(n, n // 2, replace=False)),  # a subset
        np.zeros(0, np.int64),
    ]
    for sample_weight in weights:
        for rows in rows_cases:
            rows = None if rows is None else rows.astype(np.int64)
            got = _loss_grad(
                _layout(X, sparse), y, sample_weight, rows, coef, intercept, code,
                param, threads,
            )  # fmt: skip
            expected = linear_loss_grad(
                X, y, sample_weight, rows, coef, intercept, code, param
            )
            _assert_loss_grad_close(got, expected)


@pytest.mark.parametrize("code", [4, 8])
def test_loss_grad_in_two_chunks(backend, code):
    """Above 2**17 rows two threads split the rows in two chunks; the result
    differs from one chunk's only in the last bits of the sums."""
    rng = np.random.default_rng(code)
    n, d = (1 << 17) + 3, 3
    k = 3 if code == 8 else 1
    X = rng.standard_normal((n, d))
    y = _targets(rng, code, n, k)
    coef = rng.standard_normal((k, d))
    intercept = rng.standard_normal(k)
    sample_weight = rng.random(n)
    rows = rng.integers(0, n, n).astype(np.int64)
    expected = linear_loss_grad(X, y, sample_weight, rows, coef, intercept, code, 0.0)
    one, two = (
        _loss_grad(
            (X, None, None),
            y,
            sample_weight,
            rows,
            coef,
            intercept,
            code,
            0.0,
            n_threads,
        )  # fmt: skip
        for n_threads in (1, 2)
    )
    _assert_loss_grad_close(one, expected, rtol=1e-9)
    _assert_loss_grad_close(two, one, rtol=1e-12)


@given(data=st.data())
def test_loss_grad_property(backend, threads, data):
    code = data.draw(st.integers(0, 8))
    dtype = data.draw(st.sampled_from([np.float64, np.float32]))
    sparse = data.draw(st.booleans())
    n = data.draw(st.integers(0, 25))
    d = data.draw(st.integers(1, 5))
    k = data.draw(st.integers(2, 4)) if code == 8 else 1
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = _features(rng, n, d, dtype, sparse)
    if data.draw(st.booleans()):
        X *= 10.0  # predictions far into the losses' tails
    y = _targets(rng, code, n, k)
    coef = rng.standard_normal((k, d))
    intercept = rng.standard_normal(k)
    param = data.draw(st.sampled_from([0.0, 0.3, 1.0]))
    sample_weight = None
    if data.draw(st.booleans()):
        sample_weight = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    rows = None
    if n and data.draw(st.booleans()):
        rows = rng.integers(0, n, data.draw(st.integers(0, 2 * n))).astype(np.int64)
    got = _loss_grad(
        _layout(X, sparse), y, sample_weight, rows, coef, intercept, code, param,
        threads,
    )  # fmt: skip
    expected = linear_loss_grad(X, y, sample_weight, rows, coef, intercept, code, param)
    _assert_loss_grad_close(got, expected, rtol=1e-9)


def test_single_output_losses_as_sklearn():
    """The built-in loss functions are sklearn's, point by point, and naive.py's
    closed forms agree with them (the two references of the tests above)."""
    p = np.linspace(-40.0, 40.0, 321)
    for code in LOSS_CODES:
        param = LOSS_PARAMS.get(code, 0.0)
        loss = _sklearn_loss(code, param)
        for y in (0.0, 1.0) if code == 4 else (-1.0, 1.0) if code >= 5 else (0.3,):
            for pi in p:
                ours = (
                    numba_linear._builtin_loss(code, param, y, pi),
                    numba_linear._builtin_dloss(code, param, y, pi),
                )
                if hasattr(loss, "py_loss"):
                    theirs = (loss.py_loss(pi, y), loss.py_dloss(pi, y))
                else:
                    out = np.empty(2)
                    args = (np.array([y]), np.array([pi]), None)
                    loss.loss(*args, out[:1], 1)
                    loss.gradient(*args, out[1:], 1)
                    theirs = tuple(out)
                assert ours == theirs
                naive = [float(v) for v in linear_losses(code, param, y, pi)]
                np.testing.assert_allclose(ours, naive, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------
# The two backends, bit for bit


def test_backends_agree_bit_for_bit():
    """Same inputs, same bits, for every loss. sgd_epoch runs with L2 (dot
    products computed ahead) and elastic net (L1 truncation), with and without
    the loss sums (norm accumulators summed as they go, or at the end), on 37
    features (two blocks of 16 lanes and 5 features more)."""
    from gradkit import _core

    backends = (_core.linear, numba_linear)
    rng = np.random.default_rng(2)
    n, d = 300, 37
    for dtype in (np.float64, np.float32):
        for sparse in (False, True):
            X = _features(rng, n, d, dtype, sparse)
            layout = _layout(X, sparse)
            sample_weight = rng.random(n)
            for code in range(9):
                k = 3 if code == 8 else 1
                y = _targets(rng, code, n, k)
                coef, intercept = rng.standard_normal((k, d)), rng.standard_normal(k)
                rows = rng.integers(0, n, n).astype(np.int64)
                out = []
                for module in backends:
                    g, gi = np.empty((k, d)), np.empty(k)
                    loss = module.loss_grad(
                        *layout, y, sample_weight, rows, coef, intercept, code,
                        LOSS_PARAMS.get(code, 0.0), g, gi, 2,
                    )  # fmt: skip
                    out.append((loss, g, gi))
                assert out[0][0] == out[1][0]
                np.testing.assert_array_equal(out[0][1], out[1][1])
                np.testing.assert_array_equal(out[0][2], out[1][2])
                if code == 8:
                    continue
                data = (layout, d, dtype, y, sample_weight)
                orders = [rng.permutation(n) for _ in range(3)]
                for penalty in (1, 3):
                    for compute_loss in (True, False):
                        run = (orders, code, penalty, compute_loss)
                        out = [_three_epochs(m, *data, *run) for m in backends]
                        for a, b in zip(*out, strict=True):
                            np.testing.assert_array_equal(a, b)


def _three_epochs(
    module, layout, d, dtype, y, sample_weight, orders, code, penalty, compute_loss
):  # fmt: skip
    """sgd_epoch over each order in turn, from zero weights: the arrays, state
    and sums it leaves."""
    w, aw, q = np.zeros(d, dtype), np.zeros(d, dtype), np.zeros(d, dtype)
    state = np.array([0.0, 0.0, 1.0, 0.02, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    sums = []
    for order in orders:
        sums.append(module.sgd_epoch(
            *layout, y, sample_weight, order, w, aw, q, state, code,
            LOSS_PARAMS.get(code, 0.0), penalty, 1e-3, 0.2, 3, 0.02, 0.3, 0.0,
            True, 1.0, 2.0, 0.5, 20, compute_loss,
        ))  # fmt: skip
    return w, aw, q, state, sums


# --------------------------------------------------------------------------------
# Custom losses (numba only)


def _squared_loss(y, p):
    return 0.5 * (p - y) * (p - y)


def _squared_dloss(y, p):
    return p - y


def test_custom_squared_loss_equals_builtin(threads):
    custom = numba_linear.custom_kernels(_squared_loss, _squared_dloss)
    assert numba_linear.custom_kernels(_squared_loss, _squared_dloss) is custom
    rng = np.random.default_rng(4)
    n, d = 60, 5
    for sparse in (False, True):
        X = _features(rng, n, d, np.float64, sparse)
        y = rng.standard_normal(n)
        coef, intercept = rng.standard_normal((1, d)), rng.standard_normal(1)
        sample_weight = rng.random(n)
        order = rng.permutation(n)
        out = []
        # the custom kernels ignore the loss code and parameter
        for kernels, code, param in ((numba_linear, 0, 0.0), (custom, 5, 9.0)):
            g, gi = np.empty((1, d)), np.empty(1)
            loss = kernels.loss_grad(
                *_layout(X, sparse), y, sample_weight, None, coef, intercept, code,
                param, g, gi, threads,
            )  # fmt: skip
            w, aw = np.zeros(d), np.zeros(d)
            state = np.array([0.0, 0.0, 1.0, 0.01, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
            sums = kernels.sgd_epoch(
                *_layout(X, sparse), y, sample_weight, order, w, aw, None, state,
                code, param, 1, 1e-3, 0.15, 3, 0.01, 0.25, 0.0, True, 1.0, 1.0,
                1.0, 10, True,
            )  # fmt: skip
            out.append((loss, g, gi, w, aw, state, sums))
        for a, b in zip(*out, strict=True):
            np.testing.assert_array_equal(a, b)


def test_custom_kernels_take_jitted_functions():
    from numba import njit

    loss, dloss = njit(_squared_loss), njit(_squared_dloss)
    kernels = numba_linear.custom_kernels(loss, dloss)
    X = np.arange(12.0).reshape(4, 3)
    y = np.ones(4)
    g, gi = np.empty((1, 3)), np.empty(1)
    total = kernels.loss_grad(
        X, None, None, y, None, None, np.ones((1, 3)), np.zeros(1), 0, 0.0, g, gi, 1
    )
    expected = linear_loss_grad(X, y, None, None, np.ones((1, 3)), np.zeros(1), 0, 0)
    _assert_loss_grad_close((total, g, gi), expected, rtol=1e-12)


def test_custom_kernels_reject_what_numba_cannot_compile():
    def exact_loss(y, p):  # numba knows nothing of Fraction
        return float(Fraction(p) - Fraction(y)) ** 2

    with pytest.raises(TypeError, match="exact_loss") as info:
        numba_linear.custom_kernels(exact_loss, _squared_dloss)
    assert "numba" in str(info.value)

    def dloss_as_pair(y, p):
        return p - y, 1.0

    with pytest.raises(TypeError, match="dloss_as_pair"):
        numba_linear.custom_kernels(_squared_loss, dloss_as_pair)
    with pytest.raises(TypeError, match="callable"):
        numba_linear.custom_kernels(_squared_loss, 1.0)
