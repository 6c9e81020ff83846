"""The compression kernels (gradkit._core.compress and gradkit._numba.compress),
checked directly on both backends against their oracles:

- the slow numpy references of tests/naive.py (torch_qparams,
  quantize_rows_reference, magnitude_threshold_reference, prune_reference, ...) on
  random inputs, bit for bit: nothing in these kernels is summed, so no result may
  depend on the backend or on the thread count;
- torch itself (2.13, CPU): PerChannelMinMaxObserver + torch.quantize_per_channel
  and MinMaxObserver + torch.quantize_per_tensor, scale and zero point included.

Sizes above 2**16 elements run on several threads (the contract's rule counts
elements, not rows), and those tests compare 1 and 2 threads as well.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from naive import (
    dequantize_rows_reference,
    magnitude_threshold_reference,
    prune_reference,
    quantize_rows_reference,
    torch_qparams,
    unpack_reference,
)

from gradkit import _config

#: (qmin, qmax) of the integer types: int8, uint8, their reduce_range halves, int4.
RANGES = [(-128, 127), (0, 255), (-64, 63), (0, 127), (-8, 7), (0, 15)]
EPS32 = np.float32(2.0**-23)
#: torch's warning (once per process) that its quantized tensors are deprecated.
TORCH_DEPRECATION = (
    "ignore:torch.quantize_per_tensor, torch.quantize_per_channel and other "
    "quantized tensor creation functions:UserWarning"
)
#: Elements that collide often: zeros of both signs, exact halves, repeats.
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.5, -2.5, 3.0, 1e-30, -7.25]


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    return request.param


def _kernels():
    return _config.kernels("compress")


def _out_for(x, qmin):
    return np.empty(x.shape, np.int8 if qmin < 0 else np.uint8)


def _quantize(x, lo, hi, qmin, qmax, symmetric, fma_rounding, n_threads):
    out = _out_for(x, qmin)
    scale, zero_point = _kernels().quantize_rows(
        x, lo, hi, qmin, qmax, symmetric, fma_rounding, out, n_threads
    )
    return out, scale, zero_point


def _assert_quantized(got, expected):
    out, scale, zero_point = got
    q, exp_scale, exp_zero_point = expected
    assert out.dtype == q.dtype
    assert scale.dtype == np.float32 and zero_point.dtype == np.int32
    np.testing.assert_array_equal(scale, exp_scale)
    np.testing.assert_array_equal(zero_point, exp_zero_point)
    np.testing.assert_array_equal(out, q)


def _bits(a):
    """The bit patterns of a float array: equality that tells -0.0 from 0.0."""
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def _rows(data, max_rows=6):
    columns = st.sampled_from([1, 2, 3, 7, 16, 31, 33, 64, 65, 127, 200])
    shape = (data.draw(st.integers(1, max_rows)), data.draw(columns))
    elements = st.one_of(
        st.sampled_from(SPECIAL), st.floats(-1e3, 1e3, width=32, allow_subnormal=True)
    )
    return data.draw(hnp.arrays(np.float32, shape, elements=elements))


def _normal_rows(seed, shape, spread=True):
    """Rows of different scales and offsets, as the channels of a weight matrix."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    if spread:
        x = x * rng.uniform(1e-3, 10.0, (shape[0], 1)) + rng.uniform(
            -1, 1, (shape[0], 1)
        )
    return x.astype(np.float32)


# --------------------------------------------------------------------------------
# row_minmax


@given(data=st.data())
def test_row_minmax_matches_numpy(backend, threads, data):
    x = _rows(data)
    lo, hi = _kernels().row_minmax(x, threads)
    assert lo.dtype == hi.dtype == np.float32 and lo.shape == hi.shape == (len(x),)
    # == and not the bits: which zero a row of zeros of both signs gives is open.
    assert np.array_equal(lo, x.min(axis=1)) and np.array_equal(hi, x.max(axis=1))


@pytest.mark.parametrize(
    "shape", [(1, 2**18 + 3), (3, 70_001), (5, 2**16), (4096, 33), (2**17 + 5, 1)]
)
def test_row_minmax_parallel(backend, shape):
    """Rows cut between threads (fewer rows than threads) and whole rows per thread
    both give every row's exact min and max."""
    x = _normal_rows(7, shape)
    x[-1, -1] = 1e4  # extremes at the ends of the ranges the threads take
    x[0, 0] = -1e4
    for n_threads in (1, 2, 3):
        lo, hi = _kernels().row_minmax(x, n_threads)
        np.testing.assert_array_equal(lo, x.min(axis=1))
        np.testing.assert_array_equal(hi, x.max(axis=1))


# --------------------------------------------------------------------------------
# quantize_rows and dequantize_rows against the numpy reference


@given(data=st.data())
def test_quantize_rows_matches_reference(backend, data):
    x = _rows(data)
    qmin, qmax = data.draw(st.sampled_from(RANGES))
    symmetric = data.draw(st.booleans())
    fma_rounding = data.draw(st.booleans())
    n_threads = data.draw(st.integers(1, 3))
    lo = hi = None
    how = data.draw(st.sampled_from(["own", "minmax", "clipped", "wider"]))
    if how != "own":
        lo, hi = x.min(axis=1), x.max(axis=1)
        # A calibrated range need not hold the row: values outside it clamp.
        factor = {"minmax": 1.0, "clipped": 0.5, "wider": 3.0}[how]
        lo, hi = (lo * np.float32(factor)), (hi * np.float32(factor))
    got = _quantize(x, lo, hi, qmin, qmax, symmetric, fma_rounding, n_threads)
    _assert_quantized(
        got, quantize_rows_reference(x, lo, hi, qmin, qmax, symmetric, fma_rounding)
    )
    q, scale, zero_point = got
    deq = np.empty(x.shape, np.float32)
    _kernels().dequantize_rows(q, scale, zero_point, deq, n_threads)
    np.testing.assert_array_equal(
        _bits(deq), _bits(dequantize_rows_reference(q, scale, zero_point))
    )


@pytest.mark.parametrize(
    "shape",
    [(1, 3 * 2**16 + 5), (3, 70_001), (2, 2**16), (4096, 64), (1025, 129), (9, 30_011)],
)
@pytest.mark.parametrize(
    ("qrange", "symmetric"), [((-128, 127), True), ((0, 255), False), ((0, 15), True)]
)
@pytest.mark.parametrize("given_range", [False, True], ids=["own", "lohi"])
def test_quantize_rows_parallel(backend, shape, qrange, symmetric, given_range):
    """The element rule: a 4096 x 64 matrix (2**18 elements) and a single row are
    both cut between threads, and any cut gives the same bytes."""
    x = _normal_rows(sum(shape), shape)
    qmin, qmax = qrange
    lo = hi = None
    if given_range:
        lo, hi = x.min(axis=1) * np.float32(0.8), x.max(axis=1) * np.float32(0.8)
    for fma_rounding in (False, True):
        expected = quantize_rows_reference(
            x, lo, hi, qmin, qmax, symmetric, fma_rounding
        )
        for n_threads in (1, 2, 3):
            got = _quantize(x, lo, hi, qmin, qmax, symmetric, fma_rounding, n_threads)
            _assert_quantized(got, expected)
    q, scale, zero_point = expected
    outs = []
    for n_threads in (1, 2):
        out = np.empty(x.shape, np.float32)
        _kernels().dequantize_rows(q, scale, zero_point, out, n_threads)
        outs.append(out)
    reference = dequantize_rows_reference(q, scale, zero_point)
    for out in outs:
        np.testing.assert_array_equal(_bits(out), _bits(reference))


@settings(max_examples=12)
@given(
    rows=st.sampled_from([1, 2, 3, 7, 64, 1000]),
    seed=st.integers(0, 2**32 - 1),
    qrange=st.sampled_from(RANGES),
    symmetric=st.booleans(),
    fma_rounding=st.booleans(),
    own_range=st.booleans(),
)
def test_quantize_rows_large_random(
    backend, rows, seed, qrange, symmetric, fma_rounding, own_range
):
    """Random shapes above 2**16 elements: 1 and 2 threads give the reference."""
    rng = np.random.default_rng(seed)
    cols = int(rng.integers(2**16 // rows + 1, 2**18 // rows + 2))
    x = _normal_rows(seed, (rows, cols))
    qmin, qmax = qrange
    lo = hi = None
    if not own_range:
        lo, hi = x.min(axis=1) * np.float32(0.9), x.max(axis=1) * np.float32(0.9)
    expected = quantize_rows_reference(x, lo, hi, qmin, qmax, symmetric, fma_rounding)
    for n_threads in (1, 2):
        got = _quantize(x, lo, hi, qmin, qmax, symmetric, fma_rounding, n_threads)
        _assert_quantized(got, expected)


@pytest.mark.parametrize(("qmin", "qmax"), RANGES)
@pytest.mark.parametrize("symmetric", [True, False])
def test_constant_and_zero_rows(backend, qmin, qmax, symmetric):
    """A row whose range is {0} gets scale = eps; every row of one value maps that
    value exactly as the formulas say (a constant range includes 0)."""
    x = np.array(
        [
            np.zeros(9),
            -np.zeros(9),
            np.full(9, 2.5),
            np.full(9, -3.0),
            np.full(9, 1e-30),
            [0.0, -0.0] * 4 + [0.0],
        ],
        dtype=np.float32,
    )
    for fma_rounding in (False, True):
        got = _quantize(x, None, None, qmin, qmax, symmetric, fma_rounding, 1)
        expected = quantize_rows_reference(
            x, None, None, qmin, qmax, symmetric, fma_rounding
        )
        _assert_quantized(got, expected)
        out, scale, zero_point = got
        for row in (0, 1, 5):
            assert scale[row] == EPS32
            assert (out[row] == zero_point[row]).all()
        # symmetric: zero point 0 (int8) or the middle of the range (uint8)
        if symmetric:
            mid = 0 if qmin < 0 else (qmin + qmax + 1) // 2
            assert (zero_point == mid).all()
        else:
            assert zero_point[0] == qmin  # min_neg = 0: zero at the bottom


@pytest.mark.parametrize(("qmin", "qmax"), [(-128, 127), (-64, 63), (0, 255), (0, 127)])
@pytest.mark.parametrize("fma_rounding", [False, True])
def test_exact_ties_round_half_to_even(backend, qmin, qmax, fma_rounding):
    """Values (k + 0.5) * scale with a power-of-two scale land exactly halfway:
    they round to the even integer, on both paths."""
    half_range = (qmax - qmin) / 2
    scale = np.float32(2.0**-4)
    bound = np.float32(half_range * scale)  # exact: the symmetric scale is 2**-4
    zp = 0 if qmin < 0 else (qmin + qmax + 1) // 2
    k = np.arange(qmin - zp, qmax - zp)
    row = np.concatenate([[bound, -bound], (k + 0.5) * scale]).astype(np.float32)
    x = row[None, :]
    out, s, z = _quantize(x, None, None, qmin, qmax, True, fma_rounding, 1)
    assert s[0] == scale and z[0] == zp
    halves = k + 0.5 + zp
    expected = np.clip(2 * np.round(halves / 2), qmin, qmax)  # nearest even
    assert (np.abs(expected - halves) == 0.5).all()
    np.testing.assert_array_equal(out[0, 2:], expected.astype(out.dtype))


@pytest.mark.parametrize(("qmin", "qmax"), [(0, 255), (-128, 127), (0, 15)])
def test_fma_rounding_is_one_rounding(backend, threads, qmin, qmax):
    """Values whose x * inv lies within a few ulps of k + 0.5 - z: there the one
    rounding of the fma and the two of multiply-then-add give different integers,
    and each path must give its own."""
    rng = np.random.default_rng(qmax)
    lo, hi = np.float32(-0.37), np.float32(1.9)
    scale, zero_point = torch_qparams([lo], [hi], qmin, qmax, False)
    inv = float(np.float32(1) / scale[0])
    targets = rng.integers(qmin, qmax, 4000) + 0.5 - float(zero_point[0])
    centers = (targets / inv).astype(np.float32)  # never 0: targets are k + 0.5
    bits = centers.view(np.int32)[:, None] + np.arange(-4, 5, dtype=np.int32)
    x = bits.view(np.float32).reshape(1, -1)
    lo_hi = (np.array([lo]), np.array([hi]))
    fused = quantize_rows_reference(x, *lo_hi, qmin, qmax, False, True)
    unfused = quantize_rows_reference(x, *lo_hi, qmin, qmax, False, False)
    assert not np.array_equal(fused[0], unfused[0])  # the data tells them apart
    _assert_quantized(_quantize(x, *lo_hi, qmin, qmax, False, True, threads), fused)
    _assert_quantized(_quantize(x, *lo_hi, qmin, qmax, False, False, threads), unfused)


def test_negative_zero(backend):
    """-0.0 quantizes like 0.0: to the zero point, with a range of -0.0 too."""
    x = np.array([[-0.0, 0.0, -0.0, 1.0], [-0.0, -0.0, -0.0, -0.0]], np.float32)
    lo = np.array([-0.0, -0.0], np.float32)
    hi = np.array([1.0, -0.0], np.float32)
    for qmin, qmax in RANGES:
        for symmetric in (True, False):
            for lohi in ((None, None), (lo, hi)):
                out, scale, zero_point = _quantize(
                    x, *lohi, qmin, qmax, symmetric, False, 2
                )
                assert (out[:, :3] == zero_point[:, None]).all()
                assert scale[1] == EPS32
    lo_got, hi_got = _kernels().row_minmax(x, 1)
    assert (lo_got == 0).all() and hi_got[1] == 0


def test_extreme_ranges_match_reference(backend):
    """Finite but huge values: the range overflows to inf (scale inf, inv 0) or
    x * inv overflows; the results are still the reference's, not a crash."""
    big = np.float32(3e38)
    x = np.array([[big, -big, 1.0], [big, big, 0.0], [1e-38, -1e-38, 0.0]], np.float32)
    for qmin, qmax in RANGES:
        for symmetric in (True, False):
            for fma_rounding in (False, True):
                got = _quantize(x, None, None, qmin, qmax, symmetric, fma_rounding, 1)
                expected = quantize_rows_reference(
                    x, None, None, qmin, qmax, symmetric, fma_rounding
                )
                _assert_quantized(got, expected)


def test_dequantize_rows_extreme_zero_points(backend, threads):
    """Any int32 zero point: the difference is exact in 64 bits, then rounded once."""
    q = np.array([[-128, 0, 127], [5, 6, 7], [0, 1, 2]], np.int8)
    scale = np.array([0.5, 3.0, 1e-3], np.float32)
    zero_point = np.array([2**31 - 1, -(2**31), 2**30 + 1], np.int32)
    out = np.empty(q.shape, np.float32)
    _kernels().dequantize_rows(q, scale, zero_point, out, threads)
    np.testing.assert_array_equal(out, dequantize_rows_reference(q, scale, zero_point))
    qu = q.view(np.uint8)
    _kernels().dequantize_rows(qu, scale, zero_point, out, threads)
    np.testing.assert_array_equal(out, dequantize_rows_reference(qu, scale, zero_point))


@given(data=st.data())
def test_torch_qparams_reference_formulas(data):
    """The reference's parameters are the contract's formulas (a check of naive.py
    itself, one row at a time in Python floats rounded to float32)."""
    f32 = np.float32
    lo = f32(data.draw(st.floats(-1e3, 0, width=32)))
    hi = f32(data.draw(st.floats(0, 1e3, width=32)))
    qmin, qmax = data.draw(st.sampled_from(RANGES))
    scale, zero_point = torch_qparams([lo], [hi], qmin, qmax, False)
    expected = max(f32(f32(hi - lo) / f32(qmax - qmin)), EPS32)
    assert scale[0] == expected
    shift = int(np.rint(f32(lo / expected)))
    assert zero_point[0] == min(max(qmin - shift, qmin), qmax)


# --------------------------------------------------------------------------------
# quantize_rows against torch


def _torch_config(qtype, reduce_range):
    """torch, its dtype, (qmin, qmax), and the observer's range arguments.

    torch warns that reduce_range=True is deprecated in favour of quant_min and
    quant_max; for the schemes compared here the two give the same observer (the
    halved range; only quint8 symmetric's zero point would differ, 128 against the
    middle of a custom range), so the reduced range is passed explicitly."""
    import torch

    dtype = {"qint8": torch.qint8, "quint8": torch.quint8}[qtype]
    qmin, qmax = {"qint8": (-128, 127), "quint8": (0, 255)}[qtype]
    observer_range = {}
    if reduce_range:
        qmin, qmax = qmin // 2, qmax // 2
        observer_range = {"quant_min": qmin, "quant_max": qmax}
    return torch, dtype, qmin, qmax, observer_range


def _compare_with_torch(out, torch_q, qmin, qmax):
    """torch clamps to its dtype's range, not to the observer's reduced range: with
    reduce_range a value at the edge (x * inv = 63.5000x for qint8) comes out as 64,
    which the contract clamps to qmax. Everything else is torch's exactly."""
    torch_q = torch_q.astype(np.int64)
    assert ((torch_q < qmin) | (torch_q > qmax)).sum() <= 2 * out.shape[0]
    np.testing.assert_array_equal(out.astype(np.int64), np.clip(torch_q, qmin, qmax))


SCHEMES = [("qint8", True), ("quint8", False), ("qint8", False), ("quint8", True)]
#: (qtype, symmetric, reduce_range) compared with torch. Not quint8 symmetric with the
#: reduced range: torch's observer refuses reduce_range there, and with an explicit
#: [0, 127] it puts the zero point at 63, where the contract (like torch's default
#: range) takes the upper middle, 64.
TORCH_CASES = [
    (qtype, symmetric, reduce_range)
    for qtype, symmetric in SCHEMES
    for reduce_range in (False, True)
    if not (qtype == "quint8" and symmetric and reduce_range)
]


@pytest.mark.filterwarnings(TORCH_DEPRECATION)
@pytest.mark.parametrize(("qtype", "symmetric", "reduce_range"), TORCH_CASES)
@pytest.mark.parametrize("seed", range(4))
def test_per_channel_matches_torch(backend, qtype, symmetric, reduce_range, seed):
    torch, dtype, qmin, qmax, observer_range = _torch_config(qtype, reduce_range)
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    shape = [(64, 301), (7, 2**14 + 3), (300, 1), (1, 5)][seed]
    x = _normal_rows(seed, shape)
    if seed == 2:
        x = np.abs(x)  # all positive rows: min_neg = 0
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    observer = PerChannelMinMaxObserver(
        ch_axis=0, dtype=dtype, qscheme=qscheme, **observer_range
    )
    xt = torch.from_numpy(x)
    observer(xt)
    scale, zero_point = observer.calculate_qparams()
    torch_q = torch.quantize_per_channel(xt, scale, zero_point, 0, dtype)
    out, s, z = _quantize(x, None, None, qmin, qmax, symmetric, False, 2)
    np.testing.assert_array_equal(s, scale.numpy())
    np.testing.assert_array_equal(z, zero_point.numpy())
    _compare_with_torch(out, torch_q.int_repr().numpy(), qmin, qmax)
    deq = np.empty(x.shape, np.float32)
    _kernels().dequantize_rows(out, s, z, deq, 2)
    if not reduce_range:
        np.testing.assert_array_equal(deq, torch_q.dequantize().numpy())


@pytest.mark.filterwarnings(TORCH_DEPRECATION)
@pytest.mark.parametrize(("qtype", "symmetric", "reduce_range"), TORCH_CASES)
@pytest.mark.parametrize("seed", range(3))
def test_per_tensor_matches_torch(backend, qtype, symmetric, reduce_range, seed):
    torch, dtype, qmin, qmax, observer_range = _torch_config(qtype, reduce_range)
    from torch.ao.quantization.observer import MinMaxObserver

    shape = [(3, 70_001), (64, 301), (1, 2**17 + 7)][seed]
    x = _normal_rows(seed, shape, spread=seed != 2)
    qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    observer = MinMaxObserver(dtype=dtype, qscheme=qscheme, **observer_range)
    xt = torch.from_numpy(x)
    observer(xt)
    scale, zero_point = observer.calculate_qparams()
    torch_q = torch.quantize_per_tensor(xt, float(scale), int(zero_point), dtype)
    rows = x.reshape(1, -1)
    lo, hi = _kernels().row_minmax(rows, 2)
    out, s, z = _quantize(rows, lo, hi, qmin, qmax, symmetric, True, 2)
    assert s[0] == scale.item() and z[0] == zero_point.item()
    _compare_with_torch(out.reshape(x.shape), torch_q.int_repr().numpy(), qmin, qmax)


# --------------------------------------------------------------------------------
# magnitude_threshold, prune_mask, unpack_mask


def _prune_input(data, max_size=300):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    n = data.draw(st.integers(1, max_size))
    width = 32 if dtype == np.float32 else 64
    elements = st.one_of(
        st.sampled_from(SPECIAL),
        st.floats(-1e6, 1e6, width=width, allow_subnormal=True),
    )
    return data.draw(hnp.arrays(dtype, n, elements=elements))


def _prune_checked(x, threshold, ties, n_threads):
    mask, values, ties_left = _kernels().prune_mask(x, threshold, ties, n_threads)
    exp_mask, exp_values, exp_left = prune_reference(x, threshold, ties)
    assert mask.dtype == np.uint8 and values.dtype == x.dtype
    np.testing.assert_array_equal(mask, exp_mask)
    np.testing.assert_array_equal(_bits(values), _bits(exp_values))  # signs kept
    assert ties_left == exp_left
    return mask, values, ties_left


@given(data=st.data())
def test_magnitude_threshold_matches_sort(backend, threads, data):
    x = _prune_input(data)
    k = data.draw(st.integers(1, x.size))
    threshold, ties = _kernels().magnitude_threshold(x, k, threads)
    assert isinstance(threshold, float)
    assert (threshold, ties) == magnitude_threshold_reference(x, k)
    assert ties >= 1


@given(data=st.data())
def test_prune_mask_matches_reference(backend, threads, data):
    x = _prune_input(data)
    if data.draw(st.booleans()):
        k = data.draw(st.integers(1, x.size))
        threshold, ties = _kernels().magnitude_threshold(x, k, threads)
        ties += data.draw(st.sampled_from([0, 0, 1, 5]))  # more than there are, too
    else:
        threshold = data.draw(
            st.one_of(st.sampled_from([abs(v) for v in SPECIAL]), st.floats(0, 1e6))
        )
        ties = data.draw(st.integers(0, x.size + 2))
    mask, values, _ = _prune_checked(x, threshold, ties, threads)
    out = np.empty_like(x)
    _kernels().unpack_mask(mask, values, out, threads)
    np.testing.assert_array_equal(
        _bits(out), _bits(unpack_reference(mask, values, x.size))
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_k_1_and_n_and_ties(backend, threads, dtype):
    x = np.array([0.5, -0.0, -2.0, 2.0, 0.0, -0.5, 2.0, 1.0, -0.5], dtype)
    n = x.size
    assert _kernels().magnitude_threshold(x, 1, threads) == (0.0, 1)
    assert _kernels().magnitude_threshold(x, 2, threads) == (0.0, 2)  # -0.0 == 0.0
    assert _kernels().magnitude_threshold(x, 3, threads) == (0.5, 1)
    assert _kernels().magnitude_threshold(x, 5, threads) == (0.5, 3)
    assert _kernels().magnitude_threshold(x, n, threads) == (2.0, 3)
    # k = n prunes everything: the mask is empty and no value is kept.
    mask, values, ties_left = _prune_checked(x, 2.0, 3, threads)
    assert not mask.any() and values.size == 0 and ties_left == 0
    # The 3 elements of magnitude 0.5 at the threshold, the first 2 pruned.
    mask, values, ties_left = _prune_checked(x, 0.5, 2, threads)
    np.testing.assert_array_equal(values, np.array([-2.0, 2.0, 2.0, 1.0, -0.5], dtype))
    assert ties_left == 0
    # ties = 0 keeps everything at the threshold; 0.0 at threshold 0 is kept.
    _, values, _ = _prune_checked(x, 0.0, 0, threads)
    np.testing.assert_array_equal(_bits(values), _bits(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_is_packbits_little(backend, dtype):
    rng = np.random.default_rng(3)
    for n in (1, 7, 8, 9, 63, 64, 65, 1000, 2**16 + 13):
        x = rng.standard_normal(n).astype(dtype)
        k = max(1, n // 3)
        threshold, ties = _kernels().magnitude_threshold(x, k, 2)
        mask, values, ties_left = _kernels().prune_mask(x, threshold, ties, 2)
        kept = np.abs(x) > threshold  # no ties in continuous data
        assert ties == 1 and ties_left == 0
        assert kept.sum() == n - k
        np.testing.assert_array_equal(mask, np.packbits(kept, bitorder="little"))
        np.testing.assert_array_equal(values, x[kept])


def test_float32_against_float64_threshold(backend, threads):
    """A float64 threshold between two float32 values (global pruning of mixed
    arrays): compared in float64, nothing is equal to it."""
    x = np.array(
        [1.0, np.nextafter(np.float32(1), np.float32(2)), -1.0, 0.5], np.float32
    )
    between = 1.0 + 2.0**-30
    mask, values, ties_left = _prune_checked(x, between, 5, threads)
    np.testing.assert_array_equal(values, x[[1]])
    assert ties_left == 5
    for threshold in (1e300, -1.0, 0.0, float(np.finfo(np.float32).max) * 2):
        _prune_checked(x, threshold, 1, threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2**17 + 13, 3 * 2**16 + 5])
def test_pruning_parallel_with_ties_across_threads(backend, dtype, n):
    """Many equal magnitudes spread over every thread's range: the pruned ties are
    the first in index order whatever the split, and all thread counts agree."""
    rng = np.random.default_rng(n)
    x = rng.choice(np.array([0.0, -0.0, 0.25, -0.25, 1.0, -1.0, 3.0], dtype), n)
    noise = rng.random(n) < 0.1  # some distinct magnitudes between the ties
    x[noise] = rng.standard_normal(int(noise.sum()))
    for k in (1, n // 3, n // 2, n - 1, n):
        expected = magnitude_threshold_reference(x, k)
        results = [_kernels().magnitude_threshold(x, k, t) for t in (1, 2, 3)]
        assert all(r == expected for r in results)
        threshold, ties = expected
        outs = [_prune_checked(x, threshold, ties, t) for t in (1, 2, 3)]
        mask, values, _ = outs[0]
        assert int(np.unpackbits(mask).sum()) == n - k == values.size
        unpacked = []
        for t in (1, 2, 3):
            out = np.empty_like(x)
            _kernels().unpack_mask(mask, values, out, t)
            unpacked.append(_bits(out))
        for u in unpacked:
            np.testing.assert_array_equal(u, _bits(unpack_reference(mask, values, n)))


@settings(max_examples=12)
@given(
    n=st.integers(2**16 + 1, 2**18),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    distinct=st.sampled_from([3, 50, 10**9]),
    extra_ties=st.integers(-1, 3),
)
def test_pruning_large_random(backend, n, seed, dtype, distinct, extra_ties):
    """Random sizes above 2**16 with few or many distinct magnitudes: 1 and 2
    threads give the reference, and the mask unpacks to the pruned array."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(-distinct, distinct, n) / 7).astype(dtype)
    k = int(rng.integers(1, n + 1))
    expected = magnitude_threshold_reference(x, k)
    threshold, ties = expected
    ties = max(0, ties + extra_ties)
    for n_threads in (1, 2):
        assert _kernels().magnitude_threshold(x, k, n_threads) == expected
        mask, values, _ = _prune_checked(x, threshold, ties, n_threads)
        out = np.empty_like(x)
        _kernels().unpack_mask(mask, values, out, n_threads)
        np.testing.assert_array_equal(
            _bits(out), _bits(unpack_reference(mask, values, n))
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pruning_parallel_random(backend, dtype):
    rng = np.random.default_rng(11)
    n = 2**18 + 77
    x = (0.02 * rng.standard_normal(n)).astype(dtype)
    x[rng.random(n) < 0.05] = 0  # a run of one bucket in the histogram
    for sparsity in (0.1, 0.5, 0.9, 0.99):
        k = int(round(sparsity * n))
        expected = magnitude_threshold_reference(x, k)
        for t in (1, 2):
            assert _kernels().magnitude_threshold(x, k, t) == expected
            _prune_checked(x, *expected, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threshold_when_one_bucket_holds_most(backend, dtype):
    """Zeros of an already pruned array, magnitudes that share their top 16 bits,
    magnitudes equal but for their last bits, one value: the select counts further
    digits before it gathers, down to the last bit."""
    rng = np.random.default_rng(5)
    n = 2**18 + 3
    zeros = (0.02 * rng.standard_normal(n)).astype(dtype)
    zeros[rng.random(n) < 0.8] = 0
    narrow = ((1 + rng.random(n) / 256) * rng.choice([-1, 1], n)).astype(dtype)
    last_bits = (1 + rng.integers(0, 10, n) * np.finfo(dtype).eps).astype(dtype)
    for x in (zeros, narrow, last_bits, np.full(n, -3.5, dtype)):
        for k in (1, n // 5, n // 2, n - 7, n):
            expected = magnitude_threshold_reference(x, k)
            for t in (1, 2):
                assert _kernels().magnitude_threshold(x, k, t) == expected


@given(data=st.data())
def test_ties_left_chains_over_arrays(backend, threads, data):
    """Global pruning: one threshold for several arrays, ties passed on in order,
    prunes exactly what pruning their concatenation would."""
    parts = [
        _prune_input(data, max_size=40) for _ in range(data.draw(st.integers(1, 4)))
    ]
    everything = np.concatenate([p.astype(np.float64) for p in parts])
    k = data.draw(st.integers(1, everything.size))
    threshold, ties = _kernels().magnitude_threshold(everything, k, threads)
    whole_mask, whole_values, _ = prune_reference(everything, threshold, ties)
    kept = []
    for part in parts:
        mask, values, ties = _prune_checked(part, threshold, ties, threads)
        kept.append(np.unpackbits(mask, bitorder="little")[: part.size])
    assert ties == 0
    np.testing.assert_array_equal(
        np.packbits(np.concatenate(kept), bitorder="little"), whole_mask
    )
    n_kept = sum(int(bits.sum()) for bits in kept)
    assert n_kept == whole_values.size == everything.size - k


def test_unpack_mask_ignores_padding_bits(backend):
    """n = 10: the last 6 bits of the second byte are padding, set or not."""
    mask = np.array([0b1111_0101, 0b1111_1110], np.uint8)
    values = np.array([1.0, -2.0, 3.0, -4.0, 5.0, 6.0, 7.0], np.float32)
    out = np.empty(10, np.float32)
    _kernels().unpack_mask(mask, values, out, 1)
    np.testing.assert_array_equal(out, [1, 0, -2, 0, 3, -4, 5, 6, 0, 7])
    np.testing.assert_array_equal(out, unpack_reference(mask, values, 10))


# --------------------------------------------------------------------------------
# The C++ bindings refuse what the contract does not allow, and never crash.


def test_cpp_bindings_refuse_bad_input():
    from gradkit._core import compress as kernels

    x = np.zeros((2, 3), np.float32)
    out = np.empty((2, 3), np.int8)
    with pytest.raises(ValueError, match="n_threads"):
        kernels.row_minmax(x, 0)
    with pytest.raises(ValueError, match="2-D"):
        kernels.row_minmax(np.zeros(3, np.float32), 1)
    with pytest.raises(ValueError, match="at least one row"):
        kernels.row_minmax(np.zeros((2, 0), np.float32), 1)
    with pytest.raises(ValueError, match="both"):
        kernels.quantize_rows(x, x[:, 0].copy(), None, -128, 127, True, False, out, 1)
    with pytest.raises(ValueError, match="lo has 3 elements"):
        lo = np.zeros(3, np.float32)
        kernels.quantize_rows(x, lo, lo, -128, 127, True, False, out, 1)
    with pytest.raises(ValueError, match="qmin must be < qmax"):
        kernels.quantize_rows(x, None, None, 5, 5, True, False, out, 1)
    with pytest.raises(ValueError, match="fit int8"):
        kernels.quantize_rows(x, None, None, -128, 200, True, False, out, 1)
    with pytest.raises(TypeError, match="uint8"):
        kernels.quantize_rows(x, None, None, 0, 255, True, False, out, 1)
    with pytest.raises(ValueError, match="shape"):
        kernels.quantize_rows(x, None, None, -128, 127, True, False, out[:1], 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        big = np.empty((2, 6), np.int8)
        kernels.quantize_rows(x, None, None, -128, 127, True, False, big[:, ::2], 1)
    readonly = np.empty((2, 3), np.int8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        kernels.quantize_rows(x, None, None, -128, 127, True, False, readonly, 1)
    with pytest.raises(TypeError, match="int8 or uint8"):
        kernels.dequantize_rows(x, np.ones(2, np.float32), np.zeros(2, np.int32), x, 1)
    with pytest.raises(ValueError, match="scale has 3"):
        kernels.dequantize_rows(
            out, np.ones(3, np.float32), np.zeros(2, np.int32), x.copy(), 1
        )
    with pytest.raises(TypeError, match="float32"):
        kernels.dequantize_rows(
            out, np.ones(2, np.float32), np.zeros(2, np.int32), np.empty((2, 3)), 1
        )
    flat = np.arange(10, dtype=np.float32)
    for k in (0, 11, -1):
        with pytest.raises(ValueError, match="k must be in"):
            kernels.magnitude_threshold(flat, k, 1)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.magnitude_threshold(np.arange(10), 3, 1)
    with pytest.raises(ValueError, match="1-D"):
        kernels.magnitude_threshold(x, 3, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.prune_mask(np.zeros(20, np.float32)[::2], 0.5, 1, 1)
    with pytest.raises(ValueError, match="ties must be >= 0"):
        kernels.prune_mask(flat, 0.5, -1, 1)
    mask, values, _ = kernels.prune_mask(flat, 4.5, 0, 1)
    with pytest.raises(ValueError, match="bits set"):
        kernels.unpack_mask(mask, values[:-1], np.empty(10, np.float32), 1)
    with pytest.raises(ValueError, match="bytes"):
        kernels.unpack_mask(mask, values, np.empty(17, np.float32), 1)
    with pytest.raises(TypeError, match="values"):
        kernels.unpack_mask(mask, values, np.empty(10), 1)
    with pytest.raises(TypeError, match="mask must be a uint8"):
        kernels.unpack_mask(mask.astype(np.int64), values, np.empty(10, np.float32), 1)
    x16 = np.arange(16, dtype=np.float32)
    mask16, values16, _ = kernels.prune_mask(x16, 7.5, 0, 1)
    buffer = np.zeros(16, np.float32)
    buffer[:8] = values16
    with pytest.raises(ValueError, match="share memory"):
        kernels.unpack_mask(mask16, buffer[:8], buffer, 1)
    raw = np.zeros(16, np.float32)
    x8, q8 = raw.reshape(2, 8), raw.view(np.int8)[:16].reshape(2, 8)
    with pytest.raises(ValueError, match="share memory"):
        kernels.quantize_rows(x8, None, None, -128, 127, True, False, q8, 1)
