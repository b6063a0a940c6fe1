"""DiscreteVPSDE: a diffusers alphas-cumprod table as a continuous-time VP SDE."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import discrete_vp_sdes

import sdelab

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize(
    "config",
    [
        {"beta_schedule": "linear"},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        {"beta_schedule": "squaredcos_cap_v2"},
        {"num_train_timesteps": 50, "beta_schedule": "linear", "beta_start": 1e-3, "beta_end": 0.2},
        {"trained_betas": torch.linspace(1e-4, 0.05, 200).tolist(), "num_train_timesteps": 200},
    ],
    ids=["linear", "scaled_linear", "cosine", "short", "trained"],
)
def test_table_equals_diffusers(config):
    sched = diffusers.DDPMScheduler(**config)
    sde = sdelab.DiscreteVPSDE.from_diffusers(sched.config)
    assert torch.equal(sde.alphas_cumprod, sched.alphas_cumprod.double())
    assert torch.equal(
        sdelab.DiscreteVPSDE.from_diffusers(sched).alphas_cumprod, sde.alphas_cumprod
    )
    n = sde.num_train_timesteps
    t = torch.arange(n, dtype=torch.float64) / (n - 1)
    # at the training steps the marginal is DDPM's N(sqrt(abar) x0, (1 - abar) I)
    torch.testing.assert_close(sde.mean_coeff(t) ** 2, sde.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.std(t) ** 2, 1 - sde.alphas_cumprod, rtol=1e-10, atol=1e-15)
    assert sde.timestep(t[3].item()) == pytest.approx(3.0)


@given(sde=discrete_vp_sdes(), u=st.floats(0.0, 1.0), w=st.floats(0.05, 0.95))
def test_moment_odes_hold_between_training_steps(sde, u, w):
    """m' = a m and (sigma^2)' = 2 a sigma^2 + g^2 inside an interval (central differences)."""
    n = sde.num_train_timesteps
    k = min(int(u * (n - 1)), n - 2)
    t = (k + w) / (n - 1)
    h = 1e-4 / (n - 1)
    dm = (sde.mean_coeff(t + h) - sde.mean_coeff(t - h)) / (2 * h)
    dv = (sde.std(t + h) ** 2 - sde.std(t - h) ** 2) / (2 * h)
    a, g, m, s = sde.drift_coeff(t), sde.diffusion(t), sde.mean_coeff(t), sde.std(t)
    assert dm == pytest.approx(a * m, rel=1e-5, abs=1e-9)
    assert dv == pytest.approx(2 * a * s**2 + g**2, rel=1e-5, abs=1e-9)
    assert m**2 + s**2 == pytest.approx(1.0, abs=1e-12)


@given(sde=discrete_vp_sdes(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_tensor_times_equal_float_times(sde, dtype):
    ts = [0.0, 0.013, 0.5, 0.77, 1.0]
    tt = torch.tensor(ts, dtype=dtype)
    for f in (sde.mean_coeff, sde.std, sde.log_snr, sde.drift_coeff, sde.diffusion):
        out = f(tt)
        assert out.dtype == dtype
        ref = torch.tensor([f(t) for t in ts], dtype=torch.float64)
        rtol = 1e-12 if dtype == torch.float64 else 2e-5
        torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=rtol)


def test_oracle_samples_through_the_discrete_sde():
    """The exact score of a mixture under the discrete VP samples the mixture: mean within
    5 standard errors plus the small bias of 200 Euler steps."""
    mix = sdelab.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.5], [0.3, 0.7])
    sde = sdelab.DiscreteVPSDE.from_diffusers({"beta_schedule": "linear"})
    n = 20000
    res = sdelab.sample(
        sde,
        mix.score(sde),
        sdelab.EulerMaruyama(probability_flow=True),
        (n, 2),
        steps=200,
        eps=0.0,
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    se = mix.covariance().diagonal().sqrt() / math.sqrt(n)
    assert ((res.x.mean(0) - mix.mean()).abs() <= 5 * se + 0.02).all()


def test_diffusers_model_is_called_with_its_training_step():
    sde = sdelab.DiscreteVPSDE.from_diffusers({"num_train_timesteps": 100})
    seen = []

    def unet(x, timestep):
        seen.append(timestep)
        return torch.zeros_like(x)

    score = sdelab.score_from_diffusers_model(unet, sde)
    score(torch.zeros(3, 2, dtype=torch.float64), 0.5)
    torch.testing.assert_close(seen[0], torch.full((3,), 49.5, dtype=torch.float64))
