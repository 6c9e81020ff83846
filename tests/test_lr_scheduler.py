"""Learning-rate schedules against torch.optim.lr_scheduler and scikit-learn's SGD
schedules, and their bad input."""

import math

import numpy as np
import pytest
import torch

from gradkit import optim


def _pair(lr=0.1):
    p = np.zeros(3)
    tp = torch.zeros(3, requires_grad=True)
    return optim.SGD([p], lr=lr), torch.optim.SGD([tp], lr=lr)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (
            lambda o: optim.StepLR(o, 3, 0.5),
            lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5),
        ),
        (
            lambda o: optim.ExponentialLR(o, 0.9),
            lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9),
        ),
        (
            lambda o: optim.CosineAnnealingLR(o, 10, 0.001),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.001),
        ),
        (
            lambda o: optim.ConstantLR(o, 0.25, 4),
            lambda o: torch.optim.lr_scheduler.ConstantLR(o, 0.25, 4),
        ),
    ],
    ids=["step", "exponential", "cosine", "constant"],
)
def test_torch_schedules(ours, theirs):
    opt, topt = _pair()
    sched, tsched = ours(opt), theirs(topt)
    for _ in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(
            topt.param_groups[0]["lr"], rel=1e-12, abs=1e-15
        )
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
        topt.step()
        tsched.step()
        sched.step()


def test_sklearn_schedules():
    alpha = 1e-3
    opt, _ = _pair(0.05)
    optimal = optim.OptimalLR(opt, alpha)
    typw = math.sqrt(1 / math.sqrt(alpha))
    t0 = 1 / (typw * alpha)
    for t in range(1, 6):  # scikit-learn's t counts from 1
        assert opt.param_groups[0]["lr"] == pytest.approx(1 / (alpha * (t0 + t - 1)))
        optimal.step()
    opt, _ = _pair(0.05)
    inv = optim.InvScalingLR(opt, power_t=0.25)
    for t in range(1, 6):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.05 / t**0.25)
        inv.step()


def test_adaptive_divides_by_five_on_plateau():
    opt, _ = _pair(0.1)
    sched = optim.AdaptiveLR(opt, tol=1e-3, n_iter_no_change=2)
    for loss in [1.0, 0.5, 0.4999, 0.4999]:
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)
    sched.step(0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)
    with pytest.raises(TypeError, match="loss"):
        sched.step()


def test_state_dict_round_trip():
    opt, _ = _pair()
    sched = optim.CosineAnnealingLR(opt, 7)
    for _ in range(3):
        sched.step()
    saved = sched.state_dict()
    other = optim.CosineAnnealingLR(_pair()[0], 7)
    other.load_state_dict(saved)
    sched.step()
    other.step()
    assert other.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda o: optim.StepLR(o, 0), "step_size"),
        (lambda o: optim.ExponentialLR(o, -1.0), "gamma"),
        (lambda o: optim.CosineAnnealingLR(o, 0), "T_max"),
        (lambda o: optim.OptimalLR(o, 0.0), "alpha"),
        (lambda o: optim.ConstantLR(o, 2.0), "factor"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make(_pair()[0])
    with pytest.raises(TypeError, match="optimizer"):
        optim.StepLR(object(), 2)
