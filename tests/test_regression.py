"""gradkit.metrics regression metrics (mean_squared_error, mean_absolute_error,
r2_score) against sklearn.metrics 1.9.1, on both backends."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import assert_same_value, call, compare, rtol_for
from sklearn.exceptions import UndefinedMetricWarning
from strategies import weights

import gradkit.metrics as gm

REGRESSION = ["mean_squared_error", "mean_absolute_error", "r2_score"]
# r2 = 1 - sse / ss_tot: when the ratio is near 1 the result is a small difference
# of O(1) numbers, so it gets absolute slack on top of the relative tolerance.
ATOL = {"mean_squared_error": 0.0, "mean_absolute_error": 0.0, "r2_score": 1e-12}


@st.composite
def regression_problem(draw, max_size=60):
    n = draw(st.integers(1, max_size))
    k = draw(st.sampled_from([None, 1, 2, 3]))  # None: 1-D
    size = n * (k or 1)
    mode = draw(st.sampled_from(["grid", "wide", "constant"]))
    if mode == "grid":  # coarse values: ties, zero residuals, constant columns
        y = np.asarray(draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size)))
        p = np.asarray(draw(st.lists(st.integers(-3, 3), min_size=size, max_size=size)))
        y, p = y / 2.0, p / 2.0
    elif mode == "wide":
        floats = st.floats(-1e6, 1e6, allow_nan=False)
        y = np.asarray(draw(st.lists(floats, min_size=size, max_size=size)))
        p = np.asarray(draw(st.lists(floats, min_size=size, max_size=size)))
    else:
        y = np.full(size, draw(st.sampled_from([0.0, 1.5, -2.0])))
        p = y + np.asarray(
            draw(
                st.lists(st.sampled_from([0.0, 0.0, 1.0]), min_size=size, max_size=size)
            )
        )
    if k is not None:
        y, p = y.reshape(n, k), p.reshape(n, k)
    if draw(st.booleans()):
        dtype = draw(st.sampled_from([np.float32, np.int64]))
        if dtype is np.int64:
            y, p = np.round(y).astype(np.int64), np.round(p).astype(np.int64)
        else:
            y, p = y.astype(np.float32), p.astype(np.float32)
    # a constant y_true must stay constant in sklearn's weighted mean (else r2 is
    # 1 - sse / 1e-31): dyadic weights there
    sample_weight = draw(weights(n, allow_zero=True, dyadic=mode == "constant"))
    return y, p, sample_weight, k


@given(
    problem=regression_problem(),
    name=st.sampled_from(REGRESSION),
    data=st.data(),
)
def test_regression_matches_sklearn(backend, problem, name, data):
    y, p, sample_weight, k = problem
    kwargs = {}
    if sample_weight is not None:
        kwargs["sample_weight"] = sample_weight
    choices = ["default", "raw_values", "uniform_average"]
    if name == "r2_score":
        choices.append("variance_weighted")
        ff = data.draw(st.sampled_from(["default", True, False]), label="force_finite")
        if ff != "default":
            kwargs["force_finite"] = ff
    if k is not None:
        choices.append("array")
    mo = data.draw(st.sampled_from(choices), label="multioutput")
    if mo == "array":
        kwargs["multioutput"] = np.asarray(
            data.draw(
                st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=k, max_size=k)
            )
        )
    elif mo != "default":
        kwargs["multioutput"] = mo
    rtol = rtol_for(y)
    atol = ATOL[name] if rtol == 1e-12 else rtol  # float32: float32 accuracy
    compare(name, y, p, rtol=rtol, atol=atol, **kwargs)


# ---------------------------------------------------------------------------
# Hand-written cases
# ---------------------------------------------------------------------------


def test_known_values(backend):
    y = [3, -0.5, 2, 7]
    p = [2.5, 0.0, 2, 8]
    out = compare("mean_squared_error", y, p)
    assert out.value == 0.375
    out = compare("mean_absolute_error", y, p)
    assert out.value == 0.5
    out = compare("r2_score", y, p)
    np.testing.assert_allclose(out.value, 0.9486081370449679, rtol=1e-14)
    compare("mean_squared_error", y, p, sample_weight=[1, 0, 2, 0.5])
    compare("r2_score", y, p, sample_weight=[1, 0, 2, 0.5])


@pytest.mark.parametrize("force_finite", [True, False])
def test_r2_constant_y_true(backend, force_finite):
    # perfect prediction of a constant: 1.0 (forced) or nan (0/0)
    out = compare(
        "r2_score", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], force_finite=force_finite
    )
    if force_finite:
        assert out.value == 1.0
    else:
        assert np.isnan(out.value)
    # imperfect prediction of a constant: 0.0 (forced) or -inf
    out = compare(
        "r2_score", [1.0, 1.0, 1.0], [1.0, 2.0, 1.0], force_finite=force_finite
    )
    assert out.value == (0.0 if force_finite else -np.inf)
    y = np.array([[1, 2], [1, 3], [1, 4.0]])
    p = np.array([[1, 2], [1.5, 3], [1, 5]])
    for mo in ("raw_values", "uniform_average", "variance_weighted", [0.3, 0.7]):
        compare("r2_score", y, p, multioutput=mo, force_finite=force_finite)
        compare("r2_score", y, y, multioutput=mo, force_finite=force_finite)
        compare(
            "r2_score",
            np.ones((3, 2)),
            np.ones((3, 2)),
            multioutput=mo,
            force_finite=force_finite,
        )
    # weights that make y_true constant
    compare(
        "r2_score",
        [1.0, 2.0, 2.0],
        [1.0, 2.0, 3.0],
        sample_weight=[0, 1, 1],
        force_finite=force_finite,
    )


def test_r2_constant_y_true_with_float_weights(backend):
    # sum(w * 1.5) / sum(w) is 1.5 + 1 ulp for these weights in sklearn, which
    # makes ss_tot ~1e-31 and r2 ~ -4e29; exactly 0 (force_finite) is the better
    # answer, and both are accepted: finite, at most 0, and sklearn's sign.
    y = np.full(30, 1.5)
    p = y.copy()
    p[-1] = 2.5
    w = np.zeros(30)
    w[-3:] = [1.0, 0.1, 0.1]
    got = gm.r2_score(y, p, sample_weight=w)
    assert isinstance(got, float) and got <= 0.0


def test_r2_single_sample_is_nan_and_warns(backend):
    out = compare("r2_score", [1.0], [2.0])
    assert np.isnan(out.value) and out.warnings == [UndefinedMetricWarning]
    compare("r2_score", [[1.0, 2.0]], [[2.0, 2.0]], multioutput="raw_values")


@pytest.mark.parametrize("name", REGRESSION)
def test_multioutput_modes(backend, name):
    rng = np.random.default_rng(3)
    y = np.round(rng.normal(size=(25, 3)), 1)
    p = np.round(y + rng.normal(scale=0.5, size=(25, 3)), 1)
    w = rng.integers(0, 4, 25).astype(float)
    modes = [
        "raw_values",
        "uniform_average",
        [0.2, 0.3, 0.5],
        np.array([0.0, 1.0, 0.0]),
    ]
    if name == "r2_score":
        modes.append("variance_weighted")
    for mo in modes:
        out = compare(name, y, p, multioutput=mo, atol=ATOL[name])
        compare(name, y, p, multioutput=mo, sample_weight=w, atol=ATOL[name])
        if isinstance(mo, str) and mo == "raw_values":
            assert out.value.shape == (3,)
    # a single output column as 2-D, with raw_values, is a 1-element array
    out = compare(name, y[:, :1], p[:, :1], multioutput="raw_values")
    assert out.value.shape == (1,)


def test_large_magnitudes_and_cancellation(backend):
    # large offsets: a one-pass sum-of-squares formula loses everything here
    y = 1e9 + np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    p = 1e9 + np.array([0.5, 1.0, 2.5, 3.0, 3.5])
    out = compare("r2_score", y, p, rtol=1e-9)
    np.testing.assert_allclose(out.value, 1 - 0.75 / 10, rtol=1e-9)
    compare("mean_squared_error", y, p, rtol=1e-9)
    compare("mean_absolute_error", y, p, rtol=1e-9)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

BAD_INPUTS = [
    (
        "mean_absolute_error",
        ([1, 2, 3, 4], [1, 2, 2, 4]),
        {"sample_weight": [0.0, 0.0, 0.0, 0.0]},
    ),
    ("mean_squared_error", ([1, 2, 3], [1, 2]), {}),
    ("mean_absolute_error", ([1, 2], [1, 2]), {"sample_weight": [1, 2, 3]}),
    ("r2_score", ([1, 2, 3], [1, 2]), {}),
    ("mean_squared_error", ([], []), {}),
    ("mean_absolute_error", ([], []), {}),
    ("r2_score", ([], []), {}),
    ("mean_squared_error", ([1, 2], [1, np.nan]), {}),
    ("mean_absolute_error", ([1, np.inf], [1, 2]), {}),
    ("r2_score", ([1, 2], [1, -np.inf]), {}),
    ("r2_score", ([1, 2], [1, 2]), {"sample_weight": [1, np.nan]}),
    ("mean_squared_error", ([1, 2], [[1, 2], [3, 4]]), {}),
    ("mean_squared_error", (np.ones((2, 2, 2)), np.ones((2, 2, 2))), {}),
    ("mean_squared_error", ([1, 2], [1, 2]), {"multioutput": "bogus"}),
    ("mean_squared_error", ([1, 2], [1, 2]), {"multioutput": "variance_weighted"}),
    (
        "r2_score",
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]]),
        {"multioutput": [0.3, 0.7, 1.0]},
    ),
    ("mean_absolute_error", ([1, 2], [1, 2]), {"multioutput": [1.0]}),
    ("mean_squared_error", (["a", "2"], [1, 2]), {}),
    ("mean_squared_error", ([1, 2], [1, 2]), {"sample_weight": [0, 0]}),
    ("r2_score", ([1, 2], [1, 2]), {"sample_weight": [0.0, 0.0]}),
    ("r2_score", ([1, 2], [1, 2]), {"sample_weight": [[1, 1]]}),
    ("r2_score", ([1, 2], [1, 2]), {"force_finite": "yes"}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_INPUTS)
def test_bad_input_raises_like_sklearn(backend, name, args, kwargs):
    out = compare(name, *args, **kwargs)
    assert out.error is not None, f"sklearn accepted {name}{args} {kwargs}"


ACCEPTED_ODD_INPUTS = [
    ("mean_squared_error", (["1", "2"], [1, 2]), {}),  # numeric strings convert
    (
        "mean_squared_error",
        (np.array([1, 2], dtype=object), np.array([1, 2.5], dtype=object)),
        {},
    ),
    ("mean_squared_error", ([True, False], [1, 2]), {}),
    ("mean_absolute_error", ([1, 2], [1, 2]), {"sample_weight": [-1, 2]}),
    ("r2_score", ([[1.0], [2.0], [4.0]], [[1.0], [2.5], [3.0]]), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), ACCEPTED_ODD_INPUTS)
def test_odd_input_like_sklearn(backend, name, args, kwargs):
    compare(name, *args, **kwargs)


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", REGRESSION)
def test_layouts_give_same_result(backend, name):
    rng = np.random.default_rng(4)
    y = np.round(rng.normal(size=(31, 3)), 2)
    p = np.round(y + rng.normal(size=(31, 3)), 2)
    w = rng.random(31)
    plain = gm.__dict__[name](y, p, sample_weight=w, multioutput="raw_values")
    ro_y, ro_p, ro_w = y.copy(), p.copy(), w.copy()
    for a in (ro_y, ro_p, ro_w):
        a.flags.writeable = False
    variants = {
        "fortran": (np.asfortranarray(y), np.asfortranarray(p), w),
        "strided_rows": (
            np.repeat(y, 2, axis=0)[::2],
            np.repeat(p, 2, axis=0)[::2],
            np.repeat(w, 2)[::2],
        ),
        "strided_cols": (
            np.repeat(y, 2, axis=1)[:, ::2],
            np.repeat(p, 2, axis=1)[:, ::2],
            w,
        ),
        "transposed": (np.ascontiguousarray(y.T).T, np.ascontiguousarray(p.T).T, w),
        "readonly": (ro_y, ro_p, ro_w),
        "bigendian": (y.astype(">f8"), p.astype(">f8"), w.astype(">f8")),
        "lists": (y.tolist(), p.tolist(), w.tolist()),
        "object": (y.astype(object), p.astype(object), w),
    }
    for label, (yv, pv, wv) in variants.items():
        out = compare(name, yv, pv, sample_weight=wv, multioutput="raw_values")
        assert out.error is None, (label, out.describe())
        got = call(
            getattr(gm, name), yv, pv, sample_weight=wv, multioutput="raw_values"
        )
        assert_same_value(got.value, plain, rtol=1e-12)
    # 1-D strided and big-endian integers
    y1 = np.arange(40, dtype=">i8")[::3]
    p1 = (np.arange(40, dtype=np.int64)[::3] % 5).astype(">i8")
    compare(name, y1, p1)
    compare(name, y1.astype(np.int32), p1.astype(np.float32), rtol=1e-5)
