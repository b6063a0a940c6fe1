"""Bad input raises at the boundary with a message naming the argument, its value, the expectation."""

import math

import pytest
import torch

import sdelab
from sdelab.sde import simulate


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (
            lambda: sdelab.VPSDE(beta_min=-0.1),
            ValueError,
            r"beta_min must be a finite number >= 0, got -0.1",
        ),
        (
            lambda: sdelab.VPSDE(beta_min=5.0, beta_max=1.0),
            ValueError,
            r"beta_max must be >= beta_min.*5.0.*1.0",
        ),
        (
            lambda: sdelab.SubVPSDE(beta_max=0.0, beta_min=0.0),
            ValueError,
            r"beta_max must be a finite number > 0, got 0.0",
        ),
        (
            lambda: sdelab.VPSDE(beta_max=math.inf),
            ValueError,
            r"beta_max must be a finite number > 0, got inf",
        ),
        (
            lambda: sdelab.VESDE(sigma_min=0.0),
            ValueError,
            r"sigma_min must be a finite number > 0, got 0.0",
        ),
        (
            lambda: sdelab.VESDE(sigma_min=-1.0),
            ValueError,
            r"sigma_min must be a finite number > 0",
        ),
        (
            lambda: sdelab.VESDE(sigma_min=10.0, sigma_max=1.0),
            ValueError,
            r"sigma_min must be smaller than sigma_max.*10.0.*1.0",
        ),
        (
            lambda: sdelab.VESDE(sigma_min=1.0, sigma_max=1.0),
            ValueError,
            r"sigma_min must be smaller than sigma_max",
        ),
        (lambda: sdelab.VPSDE(N=0), ValueError, r"N must be an integer >= 1, got 0"),
        (lambda: sdelab.VESDE(N=2.5), TypeError, r"N must be an integer >= 1, got 2.5"),
        (lambda: sdelab.VPSDE(beta_min="0.1"), TypeError, r"beta_min must be a real number"),
        (
            lambda: sdelab.OrnsteinUhlenbeck(theta=0.0),
            ValueError,
            r"theta must be a finite number > 0",
        ),
        (
            lambda: sdelab.GeometricBrownianMotion(sigma=-1.0),
            ValueError,
            r"sigma must be a finite number > 0",
        ),
    ],
)
def test_bad_parameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


SDES = [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE(), sdelab.OrnsteinUhlenbeck()]


@pytest.mark.parametrize("sde", SDES, ids=repr)
@pytest.mark.parametrize("t", [-0.1, 1.0001, math.nan, math.inf])
def test_time_outside_range(sde, t):
    x = torch.zeros(3, 2)
    for call in (lambda: sde.drift(x, t), lambda: sde.marginal(x, t), lambda: sde.perturb(x, t)):
        with pytest.raises(ValueError, match=r"t must lie in \[0, T\] = \[0, 1.0\], got"):
            call()
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        sde.reverse(lambda x, t: x).drift(x, t)
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        sde.drift(x, torch.tensor([0.5, t, 0.2]))


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_time_tensor_must_match_x(sde):
    x = torch.zeros(3, 2)
    with pytest.raises(
        ValueError, match=r"t of shape \(2,\) does not match the batch of x with shape \(3, 2\)"
    ):
        sde.marginal(x, torch.tensor([0.1, 0.2]))
    with pytest.raises(TypeError, match="t has dtype torch.float64 but x has dtype torch.float32"):
        sde.drift(x, torch.full((3,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="t is on device meta but x is on device cpu"):
        sde.drift(x, torch.full((3,), 0.5, device="meta"))
    with pytest.raises(
        ValueError, match=r"t must be a float, a 0-d tensor or a tensor of shape \(B,\)"
    ):
        sde.drift(x, torch.full((3, 1), 0.5))
    with pytest.raises(TypeError, match="t must be a floating-point tensor"):
        sde.diffusion(torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="t must be a float or a floating-point tensor, got 'a'"):
        sde.diffusion("a")


def test_discretize_step_and_shape_checks():
    sde = sdelab.VPSDE()
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="dt must be a finite number > 0, got -0.1"):
        sde.discretize(x, 0.5, -0.1)
    with pytest.raises(ValueError, match="dt must be at most T = 1.0, got 2.0"):
        sde.discretize(x, 0.5, 2.0)
    with pytest.raises(ValueError, match=r"noise must have x0's shape \(2, 2\), got \(2, 3\)"):
        sde.perturb(x, 0.5, noise=torch.zeros(2, 3))
    with pytest.raises(
        ValueError, match=r"shape must be \(B, ...\) with every size >= 1, got \(0, 2\)"
    ):
        sde.prior_sample((0, 2))
    with pytest.raises(ValueError, match="z must have a batch dimension"):
        sde.prior_logp(torch.tensor(1.0))
    with pytest.raises(TypeError, match="score must be callable"):
        sde.reverse(3.0)


def test_simulate_checks():
    sde = sdelab.OrnsteinUhlenbeck()
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        simulate(sde, x, 0)
    with pytest.raises(ValueError, match="t0 must be smaller than t1, got t0=0.5, t1=0.2"):
        simulate(sde, x, 10, t0=0.5, t1=0.2)
    with pytest.raises(ValueError, match=r"dw must have shape \(steps, \*x0.shape\)"):
        simulate(sde, x, 10, dw=torch.zeros(5, 2, 1))
