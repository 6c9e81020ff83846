"""One Adam / AdamW / SGD step over 10M float32 parameters in 10 arrays, next to torch.

    python -m pytest bench/test_bench_optim.py --benchmark-only

Each optimizer is one benchmark group: gradkit on its cpp and numba backends, and
torch.optim with fused=True, its default (foreach) and the single-tensor loop
(foreach=False), all on the same parameters and gradients. After the timed rounds,
every gradkit benchmark checks that one more step from a fresh copy matches torch's
single-tensor step (rtol 1e-6), so a fast wrong step fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradkit
from gradkit import optim

N_ARRAYS, ARRAY_SIZE = 10, 1_000_000
CASES = {
    "Adam": dict(lr=1e-3),
    "AdamW": dict(lr=1e-3, weight_decay=1e-2),
    "SGD": dict(lr=1e-2, momentum=0.9),
}
TORCH_MODES = {
    "torch fused": dict(fused=True),
    "torch default (foreach)": dict(),
    "torch foreach=False": dict(foreach=False),
}


@pytest.fixture(scope="module")
def arrays() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    make = lambda: [  # noqa: E731
        rng.standard_normal(ARRAY_SIZE, dtype=np.float32) for _ in range(N_ARRAYS)
    ]
    return make(), make()


def _torch_step(name, params, grads, **mode):
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.from_numpy(g)
    opt = getattr(torch.optim, name)(tensors, **CASES[name], **mode)
    return opt, [t.detach().numpy() for t in tensors]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_gradkit_step(benchmark, arrays, name, backend):
    params, grads = arrays
    benchmark.group = f"{name} step, {N_ARRAYS} x {ARRAY_SIZE:,} float32"
    benchmark.name = f"gradkit {backend}"
    with gradkit.config_context(backend=backend):
        ours = [p.copy() for p in params]
        opt = getattr(optim, name)(ours, **CASES[name])
        benchmark(opt.step, grads)
        # correctness: one step from the start equals torch's single-tensor step
        fresh = [p.copy() for p in params]
        getattr(optim, name)(fresh, **CASES[name]).step(grads)
    torch_opt, expected = _torch_step(name, params, grads, foreach=False)
    torch_opt.step()
    for a, b in zip(fresh, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", list(TORCH_MODES))
def test_torch_step(benchmark, arrays, name, mode):
    params, grads = arrays
    benchmark.group = f"{name} step, {N_ARRAYS} x {ARRAY_SIZE:,} float32"
    benchmark.name = mode
    opt, _ = _torch_step(name, params, grads, **TORCH_MODES[mode])
    with torch.no_grad():
        benchmark(opt.step)
