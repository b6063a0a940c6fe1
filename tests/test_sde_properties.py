"""Property tests of the forward SDEs: the closed forms against the ODEs that define them."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.integrate import solve_ivp
from strategies import dtypes, linear_sdes, shapes, times, vp_params

import sdelab
from sdelab.sde import LinearSDE


@given(sde=linear_sdes(), t=times)
def test_marginal_solves_moment_odes(sde: LinearSDE, t: float):
    """m' = a m and v' = 2 a v + g^2 from m(0) = 1, v(0) = 0, integrated to high accuracy."""

    def rhs(s, y):
        a, g = sde.drift_coeff(s), sde.diffusion(s)
        return [a * y[0], 2 * a * y[1] + g**2]

    sol = solve_ivp(rhs, (0.0, t), [1.0, 0.0], method="DOP853", rtol=1e-11, atol=1e-14)
    m_num, v_num = sol.y[:, -1]
    assert sde.mean_coeff(t) == pytest.approx(m_num, rel=1e-7)
    assert sde.std(t) ** 2 == pytest.approx(v_num, rel=1e-6, abs=1e-12)


@given(params=vp_params(), t=times)
def test_vp_preserves_unit_variance(params, t):
    sde = sdelab.VPSDE(*params)
    assert sde.mean_coeff(t) ** 2 + sde.std(t) ** 2 == pytest.approx(1.0, abs=1e-12)


@given(sde=linear_sdes(), t1=times, t2=times)
def test_std_increases_with_t(sde, t1, t2):
    lo, hi = sorted((t1, t2))
    assert sde.std(lo) <= sde.std(hi) * (1 + 1e-12)


@given(params=vp_params(), t=times)
def test_subvp_std_below_vp_std(params, t):
    assert sdelab.SubVPSDE(*params).std(t) <= sdelab.VPSDE(*params).std(t) * (1 + 1e-12)


@given(sde=linear_sdes(), shape=shapes, dtype=dtypes, seed=st.integers(0, 2**16))
def test_prior_logp_is_gaussian_log_density(sde, shape, dtype, seed):
    z = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2.0
    scale = torch.tensor(sde.prior_std, dtype=torch.float64)
    expected = torch.distributions.Normal(0.0, scale).log_prob(z.double())
    expected = expected.reshape(shape[0], -1).sum(-1)
    got = sde.prior_logp(z)
    assert got.shape == (shape[0],) and got.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol * z[0].numel())


@given(sde=linear_sdes(), t=times, shape=shapes, dtype=dtypes, pf=st.booleans())
def test_reverse_drift_and_probability_flow(sde, t, shape, dtype, pf):
    """Reverse SDE drift f - g^2 s (eq. 6) and probability-flow drift f - g^2 s / 2 (eq. 13)."""
    x = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))

    def score(x, t):
        return 1.0 - 2.0 * x

    rev = sde.reverse(score, probability_flow=pf)
    g2 = sde.diffusion(t) ** 2
    expected = sde.drift(x, t) - (0.5 if pf else 1.0) * g2 * score(x, t)
    torch.testing.assert_close(rev.drift(x, t), expected)
    assert rev.diffusion(t) == (0.0 if pf else sde.diffusion(t))


@given(sde=linear_sdes(), shape=shapes, dtype=dtypes, seed=st.integers(0, 2**16))
def test_batched_times_agree_with_scalar_times(sde, shape, dtype, seed):
    """A (B,) tensor t gives per-sample coefficients equal to the scalar-t computation."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    t = torch.rand(shape[0], generator=g, dtype=dtype) * 0.999 + 1e-3
    mean, std = sde.marginal(x, t)
    drift = sde.drift(x, t)
    assert mean.dtype == drift.dtype == dtype and std.shape == (shape[0],)
    for i in range(shape[0]):
        ti = float(t[i])
        mi, si = sde.marginal(x[i : i + 1], ti)
        torch.testing.assert_close(mean[i : i + 1], mi)
        torch.testing.assert_close(std[i], torch.tensor(si, dtype=dtype))
        torch.testing.assert_close(drift[i : i + 1], sde.drift(x[i : i + 1], ti))
        torch.testing.assert_close(
            sde.diffusion(t)[i], torch.tensor(sde.diffusion(ti), dtype=dtype)
        )


@given(
    sde=linear_sdes(), t=st.floats(0.02, 1.0), frac=st.floats(0.05, 0.95), h=st.floats(1e-3, 1.0)
)
def test_transition_composes_chapman_kolmogorov(sde, t, frac, h):
    """One step from s to t equals a step s -> u followed by u -> t: alpha = a1 a2, v = a2^2 v1 + v2."""
    dt = h * t
    s, u = t - dt, t - dt + frac * dt
    a, v = sde.transition(t, dt)
    a1, v1 = sde.transition(u, u - s)
    a2, v2 = sde.transition(t, t - u)
    assert a == pytest.approx(a1 * a2, rel=1e-9)
    assert v == pytest.approx(a2**2 * v1 + v2, rel=1e-7, abs=1e-12)
    # and it is consistent with the marginal: std(t)^2 = alpha^2 std(s)^2 + v
    assert sde.std(t) ** 2 == pytest.approx(a**2 * sde.std(s) ** 2 + v, rel=1e-7, abs=1e-12)


@given(sde=linear_sdes(), t=st.floats(0.05, 1.0))
def test_discretize_is_euler_maruyama_to_first_order(sde, t):
    """f_i = f dt + O(dt^2) and G_i = g sqrt(dt) (1 + O(dt)): the discretisation's limit is the SDE."""
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    errs = []
    for dt in (1e-3, 5e-4):
        f, G = sde.discretize(x, t, dt)
        rel_f = (f - sde.drift(x, t) * dt).abs().max().item() / dt
        rel_g = abs(G / (sde.diffusion(t) * math.sqrt(dt)) - 1.0)
        errs.append((rel_f, rel_g))
    # halving dt halves both relative errors (first order), up to rounding
    for k in range(2):
        assert errs[1][k] <= 0.55 * errs[0][k] + 1e-9


@given(sde=linear_sdes(), dtype=dtypes, shape=shapes)
def test_coefficients_keep_dtype_and_shape(sde, dtype, shape):
    x = torch.zeros(shape, dtype=dtype)
    t = torch.full((shape[0],), 0.5, dtype=dtype)
    f, G = sde.discretize(x, t, 0.01)
    assert f.dtype == dtype and f.shape == x.shape and G.shape == (shape[0],)
    xt, z = sde.perturb(x, t)
    assert xt.dtype == dtype and xt.shape == x.shape and z.shape == x.shape
    assert sde.prior_sample(shape, dtype=dtype).dtype == dtype


def test_python_float_time_gives_python_float_coefficients():
    for sde in (sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE(), sdelab.OrnsteinUhlenbeck()):
        assert isinstance(sde.diffusion(0.3), float)
        assert isinstance(sde.std(0.3), float)
        assert isinstance(sde.marginal(torch.zeros(2, 3), 0.3)[1], float)


def test_ve_std_is_exact_law_and_sigma_is_paper_noise_level():
    sde = sdelab.VESDE(sigma_min=0.1, sigma_max=10.0)
    for t in (0.0, 0.3, 1.0):
        assert sde.sigma(t) == pytest.approx(0.1 * 100.0**t)
        assert sde.std(t) ** 2 == pytest.approx(sde.sigma(t) ** 2 - 0.01)
    assert sde.prior_std == 10.0


def test_gbm_solution_matches_fine_euler_maruyama_on_one_path():
    gbm = sdelab.GeometricBrownianMotion(mu=0.3, sigma=0.5)
    gen = torch.Generator().manual_seed(1)
    steps = 2**14
    dw = torch.randn(steps, 4, 1, generator=gen, dtype=torch.float64) / math.sqrt(steps)
    x0 = torch.ones(4, 1, dtype=torch.float64)
    xT = sdelab.sde.simulate(gbm, x0, steps, dw=dw)
    exact = gbm.solution(x0, 1.0, dw.sum(0))
    # strong order 1/2: error ~ C sqrt(dt) with C of order sigma^2 x / sqrt(2)
    assert (xT - exact).abs().max().item() < 3 * 0.5**2 * exact.abs().max().item() / np.sqrt(steps)


@given(sde=linear_sdes(), t=times, dtype=dtypes)
def test_marginal_coeffs_are_mean_coeff_and_std(sde, t, dtype):
    tt = torch.tensor([t, 0.5 * t], dtype=dtype)
    m, s = sde.marginal_coeffs(tt)
    assert torch.equal(m, sde.mean_coeff(tt)) and torch.equal(s, sde.std(tt))
    assert sde.marginal_coeffs(t) == (sde.mean_coeff(t), sde.std(t))
