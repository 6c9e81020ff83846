"""gradkit.optim against torch.optim (single-tensor path), on both backends."""

import itertools

import numpy as np
import pytest
import torch

import gradkit
from gradkit import optim

SHAPES = [(7, 5), (13,), (300,)]
STEPS = 200
RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def _run_both(make_gradkit, make_torch, dtype, steps=STEPS, seed=0):
    """The same random gradients through gradkit and torch; returns both params."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    torch_params = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours = make_gradkit(params)
    theirs = make_torch(torch_params)
    for _ in range(steps):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        ours.step(grads)
        for tp, g in zip(torch_params, grads, strict=True):
            tp.grad = torch.from_numpy(g.copy())
        theirs.step()
    return params, [tp.detach().numpy() for tp in torch_params]


def _assert_close(ours, theirs, dtype):
    rtol = RTOL[dtype]
    for a, b in zip(ours, theirs, strict=True):
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


SGD_CASES = [
    dict(lr=0.01),
    dict(lr=0.01, momentum=0.9),
    dict(lr=0.01, momentum=0.9, dampening=0.3),
    dict(lr=0.01, momentum=0.9, nesterov=True),
    dict(lr=0.01, momentum=0.5, weight_decay=0.1),
    dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", SGD_CASES)
def test_sgd_matches_torch(backend, dtype, kwargs):
    ours, theirs = _run_both(
        lambda p: optim.SGD(p, **kwargs),
        lambda p: torch.optim.SGD(p, foreach=False, **kwargs),
        dtype,
    )
    _assert_close(ours, theirs, dtype)


ADAM_CASES = [
    dict(),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.003, weight_decay=0.1),
    dict(lr=0.01, betas=(0.3, 0.99)),  # lerp's other branch: weight 1 - beta1 > 0.5
    dict(lr=0.01, eps=1e-3, maximize=True),
    dict(lr=0.01, betas=(0.0, 0.5), amsgrad=True, weight_decay=0.05, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", ADAM_CASES)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_matches_torch(backend, dtype, kwargs, name):
    ours, theirs = _run_both(
        lambda p: getattr(optim, name)(p, **kwargs),
        lambda p: getattr(torch.optim, name)(p, foreach=False, **kwargs),
        dtype,
    )
    _assert_close(ours, theirs, dtype)


def test_adamw_default_weight_decay_is_decoupled():
    assert optim.AdamW([np.zeros(3)]).defaults["weight_decay"] == 1e-2
    assert optim.Adam([np.zeros(3)]).defaults["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_backends_and_thread_counts_agree_exactly(name):
    kwargs = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(amsgrad=True)
    results = []
    for backend, threads in itertools.product(["cpp", "numba"], [1, 2]):
        with gradkit.config_context(backend=backend, n_threads=threads):
            rng = np.random.default_rng(1)
            p = rng.standard_normal(200_000).astype(np.float32)
            opt = getattr(optim, name)([p], **kwargs)
            for _ in range(5):
                opt.step([rng.standard_normal(p.shape).astype(np.float32)])
            results.append(p)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_state_dict_round_trip_continues_identically(backend, name):
    kwargs = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(amsgrad=True)
    rng = np.random.default_rng(2)
    p = rng.standard_normal((4, 3))
    opt = getattr(optim, name)([p], **kwargs)
    for _ in range(10):
        opt.step([rng.standard_normal(p.shape)])
    saved = opt.state_dict()
    clone = p.copy()
    restored = getattr(optim, name)([clone], lr=1.0)
    restored.load_state_dict(saved)
    assert restored.defaults == opt.defaults
    for _ in range(10):
        g = rng.standard_normal(p.shape)
        opt.step([g])
        restored.step([g.copy()])
    np.testing.assert_array_equal(p, clone)
    # the saved dict is a copy: later steps did not change it
    assert saved["state"][0] is not opt.state[0]


def test_none_gradient_skips_its_param(backend):
    a, b = np.ones(4), np.ones(4)
    opt = optim.Adam([a, b], lr=0.1)
    opt.step([None, np.ones(4)])
    np.testing.assert_array_equal(a, np.ones(4))
    assert (b < 1).all()
    assert 0 not in opt.state_dict()["state"]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: optim.SGD([np.zeros(3)], lr=0.0), ValueError, "lr"),
        (lambda: optim.Adam([np.zeros(3)], lr=-1e-3), ValueError, "lr"),
        (lambda: optim.Adam([np.zeros(3)], betas=(1.0, 0.9)), ValueError, "beta1"),
        (lambda: optim.Adam([np.zeros(3)], betas=(0.9, -0.1)), ValueError, "beta2"),
        (lambda: optim.Adam([np.zeros(3)], betas=0.9), ValueError, "betas"),
        (lambda: optim.Adam([np.zeros(3)], eps=-1.0), ValueError, "eps"),
        (
            lambda: optim.SGD([np.zeros(3)], lr=0.1, nesterov=True),
            ValueError,
            "Nesterov",
        ),
        (lambda: optim.SGD([np.zeros(3)], lr="fast"), TypeError, "lr"),
        (lambda: optim.SGD([], lr=0.1), ValueError, "empty"),
        (lambda: optim.SGD([[1.0, 2.0]], lr=0.1), TypeError, r"params\[0\]"),
        (lambda: optim.SGD([np.zeros(3, dtype=np.int64)], lr=0.1), TypeError, "dtype"),
        (lambda: optim.SGD([np.zeros((4, 4))[:, 0]], lr=0.1), ValueError, "contiguous"),
        (lambda: optim.SGD([np.zeros(3, dtype=">f8")], lr=0.1), TypeError, "dtype"),
    ],
)
def test_bad_hyperparameters_and_params(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_read_only_param_is_refused():
    p = np.zeros(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD([p], lr=0.1)


@pytest.mark.parametrize(
    "grads, error, match",
    [
        ([np.zeros(3)], ValueError, "2 params"),
        ([np.zeros(3), np.zeros(4)], ValueError, r"grads\[1\] has shape"),
        (
            [np.zeros(3), np.zeros(5, dtype=np.float32)],
            TypeError,
            r"grads\[1\] has dtype",
        ),
    ],
)
def test_bad_gradients(backend, grads, error, match):
    params = [np.zeros(3), np.zeros(5)]
    opt = optim.Adam(params)
    with pytest.raises(error, match=match):
        opt.step(grads)
    np.testing.assert_array_equal(params[0], 0)  # nothing was half-updated


def test_non_contiguous_gradient_is_accepted(backend):
    p, q = np.zeros(5), np.zeros(5)
    g = np.arange(10.0)[::2]
    optim.SGD([p], lr=0.5).step([g])
    optim.SGD([q], lr=0.5).step([g.copy()])
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(p, -0.5 * g)


def test_param_as_its_own_gradient(backend):
    """The gradient may be the param array itself: the step reads a copy."""
    p, q = np.arange(1.0, 5.0), np.arange(1.0, 5.0)
    optim.SGD([p], lr=0.5, momentum=0.9).step([p])
    optim.SGD([q], lr=0.5, momentum=0.9).step([q.copy()])
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(p, 0.5 * np.arange(1.0, 5.0))
