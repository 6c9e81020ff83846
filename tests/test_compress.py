"""gradkit.compress on arrays, checked against its oracles on both backends:

- quantize against torch's MinMax observers + quantize_per_tensor /
  quantize_per_channel (int_repr, scale and zero_point equal), exact ties included;
- prune against torch.nn.utils.prune (the same count, the same elements when the
  magnitudes are distinct) and a numpy reference;
- share_weights against scikit-learn's KMeans (Lloyd from the same linear init);
- low_rank against numpy's SVD;
and every round trip within its bound (dequantize within scale / 2).
The kernels themselves are tested in test_compress_kernels.py.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from naive import lloyd_1d
from sklearn.cluster import KMeans
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
from torch.nn.utils import prune as torch_prune

import gradkit
from gradkit.compress import (
    LowRankArray,
    PrunedArray,
    QuantizedArray,
    SharedArray,
    global_prune,
    low_rank,
    prune,
    quantize,
    share_weights,
)
from gradkit.compress._arrays import quantize_range

# torch warns that its quantized tensors and reduce_range are deprecated; they are
# still the oracle.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"
    ),
    pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning"),
]

#: (gradkit dtype, scheme, torch dtype, per-tensor qscheme, per-channel qscheme)
TORCH_CASES = [
    ("int8", "symmetric", torch.qint8, torch.per_tensor_symmetric,
     torch.per_channel_symmetric),
    ("uint8", "affine", torch.quint8, torch.per_tensor_affine,
     torch.per_channel_affine),
    ("int8", "affine", torch.qint8, torch.per_tensor_affine,
     torch.per_channel_affine),
    ("uint8", "symmetric", torch.quint8, torch.per_tensor_symmetric,
     torch.per_channel_symmetric),
]  # fmt: skip


def torch_quantized(w, dtype, qscheme, axis=None, reduce_range=False):
    tensor = torch.from_numpy(w)
    if axis is None:
        observer = MinMaxObserver(
            dtype=dtype, qscheme=qscheme, reduce_range=reduce_range
        )
        observer(tensor)
        scale, zero_point = observer.calculate_qparams()
        return torch.quantize_per_tensor(tensor, float(scale), int(zero_point), dtype)
    observer = PerChannelMinMaxObserver(
        ch_axis=axis, dtype=dtype, qscheme=qscheme, reduce_range=reduce_range
    )
    observer(tensor)
    scale, zero_point = observer.calculate_qparams()
    return torch.quantize_per_channel(tensor, scale, zero_point, axis, dtype)


def with_ties(w, rng, fraction=0.3):
    """w with about `fraction` of its elements moved onto exact rounding ties
    (k + 0.5) * scale of its per-tensor int8 symmetric scale, inside its range."""
    scale = np.float32(
        max(np.abs(w).max() / np.float32(127.5), np.finfo(np.float32).eps)
    )
    ties = ((rng.integers(-120, 120, w.shape) + 0.5) * scale).astype(np.float32)
    chosen = rng.random(w.shape) < fraction
    return np.clip(np.where(chosen, ties, w), w.min(), w.max()).astype(np.float32)


matrices = st.tuples(
    st.integers(1, 40), st.integers(1, 300), st.integers(0, 2**32 - 1),
    st.floats(1e-3, 1e3),
)  # fmt: skip


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@given(shape_seed=matrices, reduce_range=st.booleans())
def test_quantize_equals_torch(backend, case, shape_seed, reduce_range):
    dtype, scheme, torch_dtype, per_tensor, per_channel = case
    rows, cols, seed, spread = shape_seed
    # torch refuses reduce_range for symmetric quint8 (gradkit allows it: [0, 127]).
    reduce_range = reduce_range and (dtype, scheme) != ("uint8", "symmetric")
    rng = np.random.default_rng(seed)
    w = with_ties((rng.standard_normal((rows, cols)) * spread).astype(np.float32), rng)
    for granularity, axis, qscheme in [
        ("tensor", None, per_tensor), ("channel", 0, per_channel),
        ("channel", 1, per_channel),
    ]:  # fmt: skip
        ours = quantize(
            w, dtype, scheme, granularity, axis=axis or 0, reduce_range=reduce_range
        )
        theirs = torch_quantized(w, torch_dtype, qscheme, axis, reduce_range)
        want = theirs.int_repr().numpy()
        if reduce_range:
            # torch computes the scale for the halved range but clamps to the whole
            # dtype, so a value on the range's edge can round one step past it
            # (63.5 -> 64); gradkit keeps the halved range, reduce_range's point.
            want = np.clip(want, *quantize_range(dtype, True))
        np.testing.assert_array_equal(ours.data, want)
        if axis is None:
            assert ours.scale == np.float32(theirs.q_scale())
            assert ours.zero_point == theirs.q_zero_point()
        else:
            np.testing.assert_array_equal(ours.scale, theirs.q_per_channel_scales())
            np.testing.assert_array_equal(
                ours.zero_point, theirs.q_per_channel_zero_points()
            )
        if not reduce_range:
            np.testing.assert_array_equal(
                ours.dequantize(), theirs.dequantize().numpy()
            )


@pytest.mark.parametrize("value", [0.0, 1.5, -3.0])
@pytest.mark.parametrize("case", TORCH_CASES[:2], ids=["int8", "uint8"])
def test_constant_and_zero_tensors_quantize_like_torch(backend, case, value):
    dtype, scheme, torch_dtype, per_tensor, per_channel = case
    w = np.full((3, 5), value, np.float32)
    ours = quantize(w, dtype, scheme)
    theirs = torch_quantized(w, torch_dtype, per_tensor)
    np.testing.assert_array_equal(ours.data, theirs.int_repr().numpy())
    assert ours.scale == np.float32(theirs.q_scale())
    if value == 0.0:
        assert ours.scale == np.finfo(np.float32).eps
    ours = quantize(w, dtype, scheme, "channel")
    theirs = torch_quantized(w, torch_dtype, per_channel, 0)
    np.testing.assert_array_equal(ours.data, theirs.int_repr().numpy())


def test_symmetric_int8_uses_127_5(backend):
    q = quantize(np.array([-1.0, 0.3, 1.0], np.float32))
    assert q.scale == np.float32(0.0078431377)
    np.testing.assert_array_equal(q.data, [-127, 38, 127])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int4"])
@pytest.mark.parametrize("scheme", ["symmetric", "affine"])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
@given(
    seed=st.integers(0, 2**32 - 1), shape=st.sampled_from([(8, 64), (3, 4, 32), (64,)])
)
def test_round_trip_within_half_a_step(
    backend, dtype, scheme, granularity, seed, shape
):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape) * rng.uniform(0.01, 100)
    q = quantize(w, dtype, scheme, granularity, group_size=16)
    restored = q.dequantize()
    assert restored.dtype == np.float32 and restored.shape == w.shape
    assert q.to_dense().dtype == w.dtype

    def per_element(param):
        if granularity == "tensor":
            return np.broadcast_to(param, w.shape)
        if granularity == "channel":
            return np.broadcast_to(param.reshape((-1,) + (1,) * (w.ndim - 1)), w.shape)
        return np.repeat(param.reshape(-1), 16).reshape(w.shape)

    step = per_element(q.scale).astype(np.float64)
    zero = per_element(q.zero_point).astype(np.float64)
    qmin, qmax = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7)}[dtype]
    error = np.abs(restored - w)
    rounding = np.abs(w) * 2e-7  # float32 rounding of w and of the product
    # Within the representable range [(qmin - zp) * scale, (qmax - zp) * scale]:
    # half a step. Affine rounds the zero point to an integer, which may shift that
    # range by half a step off [min, max]; the ends are then clamped, within a step.
    inside = (w >= (qmin - zero) * step) & (w <= (qmax - zero) * step)
    assert np.all((error <= step / 2 * (1 + 1e-5) + rounding)[inside])
    slack = 1.0 if scheme == "affine" else 0.5
    assert np.all(error <= step * slack * (1 + 1e-5) + rounding)
    values = q.int_repr()
    assert values.shape == w.shape and qmin <= values.min() and values.max() <= qmax


def test_int4_packs_two_values_per_byte(backend):
    w = np.arange(-7, 8, dtype=np.float32)  # 15 values: an odd count
    q = quantize(w, "int4")
    assert q.data.dtype == np.uint8 and q.data.shape == (8,)
    assert q.scale == np.float32(7 / 7.5)  # symmetric int4 divides by (7 + 8) / 2
    inverse = np.float32(1) / q.scale
    want = np.clip(np.rint(w * inverse), -8, 7)  # -7.5 rounds to -8, 7.5 to 8 -> 7
    np.testing.assert_array_equal(q.int_repr(), want)
    assert q.data[1] == (np.uint8(-5 & 0xF) | np.uint8(-4 & 0xF) << 4)
    assert q.nbytes == 8 + 4 + 1  # the packed values, the scale, the zero point


def test_group_granularity_layout(backend):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 64)).astype(np.float32)
    q = quantize(w, granularity="group", group_size=16)
    assert q.scale.shape == (6, 4)
    for g in range(4):  # each group is its own per-tensor-shaped range
        part = w[:, 16 * g : 16 * (g + 1)]
        np.testing.assert_array_equal(
            q.scale[:, g], np.maximum(np.abs(part).max(1) / np.float32(127.5), 2**-23)
        )


def test_clipping_calibrations(backend):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 4096)).astype(np.float32)
    w[:, 0] = 40.0  # one outlier per row stretches the min-max range

    def errors(q):
        return ((q.dequantize() - w) ** 2).sum(axis=1)

    minmax = quantize(w, "int4", granularity="channel")
    percentile = quantize(w, "int4", granularity="channel", calibration="percentile")
    assert np.all(percentile.scale < minmax.scale)
    inliers = (percentile.dequantize() - w)[:, 1:] ** 2
    assert inliers.sum() < ((minmax.dequantize() - w)[:, 1:] ** 2).sum()
    # mse minimises the whole row's error; here it clips the outlier hard.
    mse = quantize(w, "int4", granularity="channel", calibration="mse")
    assert np.all(errors(mse) < errors(minmax) / 2)
    assert np.all(mse.scale < minmax.scale / 4)
    # Without an outlier, no clipping beats min-max by much, and mse never loses.
    normal = rng.standard_normal((8, 512))
    assert np.all(
        errors_of(
            normal, quantize(normal, "int4", granularity="channel", calibration="mse")
        )
        <= errors_of(normal, quantize(normal, "int4", granularity="channel"))
        * (1 + 1e-6)
    )


def errors_of(w, q):
    return ((q.dequantize() - w.astype(np.float32)).astype(np.float64) ** 2).sum(axis=1)


# --- pruning ---------------------------------------------------------------------


def torch_pruned_mask(w, amount, **structured):
    layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
    if structured:
        torch_prune.ln_structured(layer, "weight", amount=amount, n=2, **structured)
    else:
        torch_prune.l1_unstructured(layer, "weight", amount=amount)
    return layer.weight_mask.numpy().astype(bool)


@given(
    shape=st.tuples(st.integers(1, 30), st.integers(1, 40)),
    sparsity=st.floats(0, 0.999),
    seed=st.integers(0, 2**32 - 1),
)
def test_prune_equals_torch_l1_unstructured(backend, shape, sparsity, seed):
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    pruned = prune(w, sparsity)
    np.testing.assert_array_equal(pruned.kept_mask(), torch_pruned_mask(w, sparsity))
    np.testing.assert_array_equal(pruned.to_dense(), np.where(pruned.kept_mask(), w, 0))


@pytest.mark.parametrize("amount, n, pruned", [(0.5, 5, 2), (0.5, 7, 4), (0.25, 10, 2)])
def test_prune_count_rounds_half_to_even_like_torch(backend, amount, n, pruned):
    w = np.arange(1, n + 1, dtype=np.float32).reshape(1, n)
    assert n - prune(w, amount).n_kept == pruned
    assert (~torch_pruned_mask(w, amount)).sum() == pruned


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prune_ties_go_in_index_order(backend, dtype):
    w = np.array([3, -1, 1, 2, -1, 1, 0, 0], dtype)
    pruned = prune(w, 0.5)  # 4 pruned: the two zeros, then the first two |1|
    np.testing.assert_array_equal(pruned.to_dense(), [3, 0, 0, 2, -1, 1, 0, 0])
    assert pruned.to_dense().dtype == dtype


@pytest.mark.parametrize("structure, dim", [("row", 0), ("column", 1)])
@given(seed=st.integers(0, 2**32 - 1), sparsity=st.floats(0, 0.99))
def test_structured_prune_equals_torch_ln_structured(
    backend, structure, dim, seed, sparsity
):
    w = np.random.default_rng(seed).standard_normal((12, 9)).astype(np.float32)
    pruned = prune(w, sparsity, structure)
    np.testing.assert_array_equal(
        pruned.kept_mask(), torch_pruned_mask(w, sparsity, dim=dim)
    )


def test_n_m_pruning_keeps_the_largest_of_each_group(backend):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 32)).astype(np.float32)
    pruned = prune(w, None, "n:m", n=2, m=4)
    kept = pruned.kept_mask().reshape(-1, 4)
    assert np.all(kept.sum(axis=1) == 2)
    groups = np.abs(w).reshape(-1, 4)
    assert np.all(
        groups[kept].reshape(-1, 2).min(1) >= groups[~kept].reshape(-1, 2).max(1)
    )
    assert pruned.sparsity == 0.5


def test_sparse_storage_really_shrinks(backend):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((256, 512)).astype(np.float32)
    half = prune(w, 0.5)
    assert half.storage == "bitmask"
    assert half.nbytes == w.size // 8 + half.n_kept * 4
    very = prune(w, 0.99)
    assert very.storage == "csr" and very.indices.dtype == np.uint16
    assert very.nbytes < w.size // 8 + very.n_kept * 4
    for p in (half, very):
        np.testing.assert_array_equal(p.to_dense(), np.where(p.kept_mask(), w, 0))
        assert abs(p.sparsity - round(p.sparsity * w.size) / w.size) < 1e-12


def test_global_prune_matches_one_threshold(backend):
    rng = np.random.default_rng(4)
    weights = {
        "big": rng.standard_normal((40, 50)).astype(np.float32),
        "small": rng.standard_normal((30, 20)) * 0.1,
    }
    pruned = global_prune(weights, 0.7)
    everything = np.concatenate([np.abs(w).ravel() for w in weights.values()])
    k = round(0.7 * everything.size)
    threshold = np.sort(everything)[k - 1]
    for name, w in weights.items():
        np.testing.assert_array_equal(pruned[name].kept_mask(), np.abs(w) > threshold)
        assert pruned[name].to_dense().dtype == w.dtype
    assert pruned["small"].sparsity > pruned["big"].sparsity
    assert sum(p.size - p.n_kept for p in pruned.values()) == k


# --- weight sharing and low rank -------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4])
@given(seed=st.integers(0, 2**32 - 1))
def test_share_weights_is_lloyd_from_linear_init(bits, seed):
    w = np.random.default_rng(seed).standard_normal(2000)
    shared = share_weights(w, bits)
    np.testing.assert_allclose(
        np.sort(shared.codebook), lloyd_1d(w, 2**bits), rtol=1e-9
    )
    dense = shared.to_dense()
    # Every element sits on its nearest centroid.
    nearest = shared.codebook[np.abs(w[:, None] - shared.codebook).argmin(1)]
    np.testing.assert_allclose(np.abs(dense - w), np.abs(nearest - w), atol=1e-12)


def test_share_weights_equals_sklearn_kmeans():
    # A sample on which no cluster empties, so sklearn's Lloyd runs the same steps.
    w = np.random.default_rng(1).standard_normal(2000)
    init = np.linspace(w.min(), w.max(), 16).reshape(-1, 1)
    km = KMeans(16, init=init, n_init=1, tol=0, max_iter=300, algorithm="lloyd")
    km.fit(w.reshape(-1, 1))
    np.testing.assert_allclose(
        np.sort(share_weights(w, 4).codebook), np.sort(km.cluster_centers_.ravel()),
        rtol=1e-9,
    )  # fmt: skip


@pytest.mark.parametrize("bits", [1, 3, 5, 8])
def test_share_weights_packs_codes(bits):
    w = np.random.default_rng(5).standard_normal((33, 7)).astype(np.float32)
    shared = share_weights(w, bits)
    assert shared.codes.nbytes == -(-w.size * bits // 8)
    assert shared.codebook.dtype == np.float32 and shared.codebook.size == 2**bits
    assert shared.to_dense().shape == w.shape
    assert len(np.unique(shared.to_dense())) <= 2**bits


def test_low_rank_keeps_the_energy():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 40))
    w += 0.01 * rng.standard_normal(w.shape)
    factors = low_rank(w, energy=0.999)
    assert factors.rank == 8
    assert factors.nbytes < w.nbytes / 2
    s = np.linalg.svd(w, compute_uv=False)
    error = np.linalg.norm(factors.to_dense() - w)
    np.testing.assert_allclose(error, np.sqrt(np.sum(s[8:] ** 2)), rtol=1e-8)
    assert low_rank(w, rank=3).rank == 3
    assert low_rank(np.zeros((4, 5))).rank == 1


# --- both backends, bad input ----------------------------------------------------


def test_backends_agree():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((300, 500)).astype(np.float32)
    results = {}
    for backend in ("cpp", "numba"):
        with gradkit.config_context(backend=backend):
            results[backend] = [
                quantize(w, "int4", "affine", "group", group_size=50).data,
                quantize(w, calibration="mse").data,
                quantize(w, "uint8", granularity="channel", axis=1).dequantize(),
                prune(w, 0.73).to_dense(),
                prune(w, 0.999).to_dense(),
            ]
    for ours, theirs in zip(results["cpp"], results["numba"], strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda w: quantize(w * np.nan), "w contains NaN or infinity"),
        (lambda w: prune(w * np.inf, 0.5), "w contains NaN or infinity"),
        (lambda w: quantize(w, dtype="int2"), "dtype must be one of"),
        (lambda w: quantize(w, scheme="asym"), "scheme must be one of"),
        (lambda w: quantize(w, granularity="row"), "granularity must be one of"),
        (lambda w: quantize(w, calibration="kl"), "calibration must be one of"),
        (
            lambda w: quantize(w, granularity="group", group_size=7),
            "group_size=7 does not divide",
        ),
        (lambda w: quantize(w, axis=2), "axis=2 is out of range"),
        (
            lambda w: quantize(w, calibration="percentile", percentile=20),
            "percentile must be",
        ),
        (lambda w: prune(w, 1.0), r"sparsity must be in \[0, 1\)"),
        (lambda w: prune(w, -0.1), r"sparsity must be in \[0, 1\)"),
        (lambda w: prune(w, "half"), "sparsity must be a number"),
        (lambda w: prune(w, 0.5, structure="block"), "structure must be one of"),
        (lambda w: prune(w, None, "n:m", n=2, m=3), "multiple of m=3"),
        (lambda w: prune(w, 0.9, "n:m"), "contradicts 2:4 pruning"),
        (lambda w: prune(w[0], 0.5, "row"), "2-D array"),
        (lambda w: share_weights(w, 0), "bits must be an int from 1 to 8"),
        (lambda w: share_weights(w, 9), "bits must be an int from 1 to 8"),
        (lambda w: low_rank(w[0]), "2 or more dims"),
        (lambda w: low_rank(w, rank=9), "rank=9 exceeds"),
        (lambda w: low_rank(w, energy=1.5), r"energy must be in \[0, 1\]"),
        (lambda w: quantize(w[:0]), "w is empty"),
        (lambda w: quantize(w.astype(complex)), "real numbers"),
        (lambda w: global_prune({}, 0.5), "non-empty dict"),
    ],
)
def test_bad_input_names_the_argument(backend, call, message):
    w = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match=message):
        call(w)


def test_compressed_forms_are_frozen_records():
    w = np.ones((2, 4), np.float32)
    for form in (quantize(w), prune(w, 0.5), share_weights(w, 2), low_rank(w)):
        assert isinstance(
            form, (QuantizedArray, PrunedArray, SharedArray, LowRankArray)
        )
        with pytest.raises(AttributeError):
            form.shape = (8,)
