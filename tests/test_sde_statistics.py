"""Statistical tests with fixed seeds: simulated and sampled laws against the closed forms.

Tolerances: a sample mean of n draws is off by about std / sqrt(n) and a sample variance by
about var * sqrt(2 / n); we allow 5 of those. Where Euler-Maruyama is involved, its own bias is
computed exactly from the discrete moment recursion and added as a stated allowance.
"""

import math

import pytest
import torch
from scipy import stats

import sdelab
from sdelab.sde import simulate

SDES = {
    "vp": sdelab.VPSDE(),
    "subvp": sdelab.SubVPSDE(),
    "ve": sdelab.VESDE(sigma_min=0.05, sigma_max=5.0),
    "ou": sdelab.OrnsteinUhlenbeck(theta=2.0, sigma=0.7),
}
N = 20_000


def em_moments(sde, x0: float, t1: float, steps: int) -> tuple[float, float]:
    """Exact mean and variance of the Euler-Maruyama chain x <- (1 + a dt) x + g sqrt(dt) z."""
    dt = t1 / steps
    m, v = x0, 0.0
    for i in range(steps):
        t = i * dt
        c = 1.0 + sde.drift_coeff(t) * dt
        m, v = c * m, c * c * v + sde.diffusion(t) ** 2 * dt
    return m, v


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("t1", [0.3, 1.0])
def test_forward_euler_maruyama_reproduces_marginal(name, t1):
    sde = SDES[name]
    x0 = 1.5
    steps = 1000
    x = simulate(
        sde,
        torch.full((N, 1), x0, dtype=torch.float64),
        steps,
        t1=t1,
        generator=torch.Generator().manual_seed(7),
    )
    mean, std = sde.marginal(torch.tensor([[x0]], dtype=torch.float64), t1)
    mean, var = mean.item(), std**2
    em_mean, em_var = em_moments(sde, x0, t1, steps)
    se_mean, se_var = math.sqrt(var / N), var * math.sqrt(2.0 / N)
    # stated discretisation allowance: the exact bias of the EM chain (first order in dt)
    assert abs(x.mean().item() - mean) <= 5 * se_mean + abs(em_mean - mean)
    assert abs(x.var().item() - var) <= 5 * se_var + abs(em_var - var)
    # the allowance is small: EM with 1000 steps is within 2% of the exact law here
    assert abs(em_var - var) <= 0.02 * var and abs(em_mean - mean) <= 0.02 * max(1.0, abs(mean))


@pytest.mark.parametrize("name", SDES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_perturb_has_the_stated_law(name, dtype):
    sde = SDES[name]
    g = torch.Generator().manual_seed(3)
    x0 = torch.tensor([[1.0, -2.0]], dtype=dtype).expand(N, 2)
    t = torch.rand(N, generator=g, dtype=dtype) * 0.98 + 0.02
    xt, z = sde.perturb(x0, t, generator=g)
    mean, std = sde.marginal(x0, t)
    standardised = ((xt - mean) / std[:, None]).double()
    torch.testing.assert_close(standardised, z.double(), rtol=1e-4, atol=1e-4)
    for j in range(2):
        assert stats.kstest(standardised[:, j].numpy(), "norm").pvalue > 1e-3


@pytest.mark.parametrize("name", SDES)
def test_prior_sample_has_the_prior_law(name):
    sde = SDES[name]
    z = sde.prior_sample((N, 3), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s = sde.prior_std
    assert abs(z.mean().item()) <= 5 * s / math.sqrt(3 * N)
    assert abs(z.var().item() - s**2) <= 5 * s**2 * math.sqrt(2.0 / (3 * N))
    assert stats.kstest((z / s).flatten().numpy(), "norm").pvalue > 1e-3


def test_vp_prior_is_close_to_p_T():
    """At T the VP marginal is N(m(T) x0, (1 - m(T)^2) I), m(T) ~ 6.6e-3: the prior N(0, I) fits."""
    sde = sdelab.VPSDE()
    assert sde.mean_coeff(1.0) < 7e-3 and abs(sde.std(1.0) - 1.0) < 1e-4
