"""Compression kernels on a 4096 x 4096 float32 matrix, next to torch and numpy.

    python -m pytest bench/test_bench_compress.py --benchmark-only

Three groups: per-channel int8 symmetric quantization with its statistics (torch:
PerChannelMinMaxObserver + quantize_per_channel), dequantization (torch's
dequantize) and magnitude pruning to 90% sparsity (numpy's np.partition
threshold; torch.nn.utils.prune.l1_unstructured). gradkit runs on its cpp and
numba backends; every gradkit benchmark then checks its result against the peer's
(int_repr, scales and zero points equal; the same dequantized values; the same
elements kept), so a fast wrong answer fails. The compression ratios of the bench
models are printed by `gradkit bench compress`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.ao.quantization.observer import PerChannelMinMaxObserver
from torch.nn.utils import prune as torch_prune

import gradkit
from gradkit._bench_compress import SPARSITY, numpy_prune
from gradkit.compress import prune, quantize

SIDE = 4096
QUANTIZE = f"quantize int8 per channel + statistics, {SIDE} x {SIDE} float32"
DEQUANTIZE = f"dequantize int8 per channel, {SIDE} x {SIDE}"
PRUNE = f"magnitude prune to {SPARSITY:.0%}, {SIDE} x {SIDE} float32"

pytestmark = pytest.mark.filterwarnings(
    "ignore:torch.quantize_per_tensor, torch.quantize_per_channel:UserWarning"
)


@pytest.fixture(scope="module")
def weights() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((SIDE, SIDE), dtype=np.float32)


def torch_quantize(tensor: torch.Tensor) -> torch.Tensor:
    observer = PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric
    )
    observer(tensor)
    scale, zero_point = observer.calculate_qparams()
    return torch.quantize_per_channel(tensor, scale, zero_point, 0, torch.qint8)


@pytest.fixture(scope="module")
def torch_quantized(weights) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch_quantize(torch.from_numpy(weights))


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_gradkit_quantize(benchmark, weights, torch_quantized, backend):
    benchmark.group, benchmark.name = QUANTIZE, f"gradkit {backend}"
    with gradkit.config_context(backend=backend):
        ours = benchmark(quantize, weights, granularity="channel")
    np.testing.assert_array_equal(ours.data, torch_quantized.int_repr().numpy())
    np.testing.assert_array_equal(ours.scale, torch_quantized.q_per_channel_scales())
    np.testing.assert_array_equal(
        ours.zero_point, torch_quantized.q_per_channel_zero_points()
    )


def test_torch_quantize(benchmark, weights):
    benchmark.group, benchmark.name = QUANTIZE, "torch observer + quantize_per_channel"
    benchmark(torch_quantize, torch.from_numpy(weights))


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_gradkit_dequantize(benchmark, weights, torch_quantized, backend):
    benchmark.group, benchmark.name = DEQUANTIZE, f"gradkit {backend}"
    with gradkit.config_context(backend=backend):
        quantized = quantize(weights, granularity="channel")
        ours = benchmark(quantized.dequantize)
    np.testing.assert_array_equal(ours, torch_quantized.dequantize().numpy())


def test_torch_dequantize(benchmark, torch_quantized):
    benchmark.group, benchmark.name = DEQUANTIZE, "torch dequantize"
    benchmark(torch_quantized.dequantize)


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_gradkit_prune(benchmark, weights, backend):
    benchmark.group, benchmark.name = PRUNE, f"gradkit {backend}"
    with gradkit.config_context(backend=backend):
        ours = benchmark(prune, weights, SPARSITY)
    np.testing.assert_array_equal(ours.kept_mask(), numpy_prune(weights, SPARSITY) != 0)


def test_numpy_prune(benchmark, weights):
    benchmark.group, benchmark.name = PRUNE, "numpy np.partition"
    benchmark(numpy_prune, weights, SPARSITY)


def test_torch_prune(benchmark, weights):
    benchmark.group, benchmark.name = PRUNE, "torch l1_unstructured"

    def fresh_layer():
        layer = torch.nn.Linear(SIDE, SIDE, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weights))
        return (layer, "weight"), {"amount": SPARSITY}

    benchmark.pedantic(torch_prune.l1_unstructured, setup=fresh_layer, rounds=2)
