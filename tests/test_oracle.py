"""The Gaussian-mixture oracle: exact, and stable in float32."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import linear_sdes

import sdelab


@st.composite
def mixtures(draw, max_k=4, max_d=5):
    k = draw(st.integers(1, max_k))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g, dtype=torch.float64) * 3
    diag = draw(st.booleans())
    stds = torch.rand((k, d) if diag else (k,), generator=g, dtype=torch.float64) * 1.5 + 0.05
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    return sdelab.GaussianMixture(means, stds, weights)


def _cov_standard_error(x):
    """Standard error of each sample covariance entry, from the sample's own fourth moments."""
    c = x - x.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    return prods.std(0) / math.sqrt(x.shape[0])


def anisotropic_2d(dtype=torch.float64):
    return sdelab.GaussianMixture(
        means=torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=dtype),
        stds=torch.tensor([[0.3, 1.0], [0.6, 0.2], [0.4, 0.4]], dtype=dtype),
        weights=torch.tensor([0.2, 0.5, 0.3], dtype=dtype),
    )


@given(gm=mixtures(), sde=linear_sdes(), t=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_score_is_gradient_of_marginal_log_prob(gm, sde, t, seed):
    x = torch.randn(6, gm.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = (x * 3).requires_grad_()
    (grad,) = torch.autograd.grad(gm.marginal_log_prob(sde, x, t).sum(), x)
    torch.testing.assert_close(gm.score(sde)(x.detach(), t), grad, rtol=1e-9, atol=1e-9)


@given(gm=mixtures(), sde=linear_sdes(), t=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_marginal_equals_perturbed_mixture(gm, sde, t, seed):
    """p_t is the mixture with means m mu_k and variances m^2 s_k^2 + std^2 (`at`)."""
    x = torch.randn(5, gm.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(gm.marginal_log_prob(sde, x, t), gm.at(sde, t).log_prob(x))
    torch.testing.assert_close(gm.marginal_log_prob(sde, x, 0.0), gm.log_prob(x))


def test_log_prob_integrates_to_one():
    gm = anisotropic_2d()
    h = 0.02
    grid = torch.arange(-6.0, 6.0, h, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], -1)
    assert gm.log_prob(pts).exp().sum().item() * h * h == pytest.approx(1.0, abs=1e-6)


def test_sample_has_the_stated_law():
    gm = anisotropic_2d()
    n = 40_000
    x, k = gm.sample(n, generator=torch.Generator().manual_seed(0), return_labels=True)
    cov = gm.covariance()
    se = torch.sqrt(torch.diagonal(cov) / n)
    assert ((x.mean(0) - gm.mean()).abs() <= 5 * se).all()
    # se of a sample covariance entry: std of the products (x_i - mu_i)(x_j - mu_j) over sqrt(n)
    se_cov = _cov_standard_error(x)
    assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov).all()
    freq = torch.bincount(k, minlength=3).double() / n
    w = gm.weights
    assert ((freq - w).abs() <= 5 * torch.sqrt(w * (1 - w) / n)).all()


@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE(0.05, 5.0)])
def test_perturbed_samples_have_marginal_moments(sde):
    """Draw x0 from the mixture, perturb it with the SDE kernel: moments of `at(sde, t)`."""
    gm = anisotropic_2d()
    n, t = 40_000, 0.4
    g = torch.Generator().manual_seed(1)
    xt, _ = sde.perturb(gm.sample(n, generator=g), t, generator=g)
    pt = gm.at(sde, t)
    se = torch.sqrt(torch.diagonal(pt.covariance()) / n)
    assert ((xt.mean(0) - pt.mean()).abs() <= 5 * se).all()
    assert ((torch.cov(xt.T) - pt.covariance()).abs() <= 5 * _cov_standard_error(xt)).all()


@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE()])
@pytest.mark.parametrize("t", [0.0, 1e-7, 1e-3, 0.5, 1.0])
def test_float32_is_finite_and_matches_float64(sde, t):
    gm64 = anisotropic_2d()
    gm32 = anisotropic_2d(torch.float32)
    x = torch.tensor([[0.1, 0.2], [1e4, -1e4], [-30.0, 7.0], [2.0, 1.0]], dtype=torch.float64)
    s64 = gm64.score(sde)(x, t)
    s32 = gm32.score(sde)(x.float(), t)
    lp32 = gm32.marginal_log_prob(sde, x.float(), t)
    assert torch.isfinite(s32).all() and torch.isfinite(lp32).all()
    torch.testing.assert_close(s32.double(), s64, rtol=2e-4, atol=1e-4)
    torch.testing.assert_close(
        lp32.double(), gm64.marginal_log_prob(sde, x, t), rtol=2e-5, atol=1e-3
    )


def test_batched_times_and_image_shaped_input():
    gm = sdelab.GaussianMixture(
        torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), [0.5, 1.0, 0.2]
    )
    sde = sdelab.VPSDE()
    x = torch.randn(4, 1, 4, 4)
    t = torch.tensor([0.1, 0.2, 0.5, 0.9])
    s = gm.score(sde)(x, t)
    assert s.shape == x.shape
    for i in range(4):
        si = gm.score(sde)(x[i : i + 1].reshape(1, 16), float(t[i]))
        torch.testing.assert_close(s[i].reshape(1, 16), si, rtol=1e-5, atol=1e-5)


def test_moments():
    gm = sdelab.GaussianMixture([[0.0], [2.0]], [1.0, 0.5], [0.25, 0.75])
    # E = 1.5; E[x^2] = 0.25 (1) + 0.75 (4 + 0.25) = 3.4375; Var = 3.4375 - 2.25
    assert gm.mean().item() == pytest.approx(1.5)
    assert gm.covariance().item() == pytest.approx(1.1875)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"means": [0.0, 1.0], "stds": [1.0]}, "means must have shape"),
        ({"means": [[0.0], [1.0]], "stds": [1.0, -1.0]}, "stds must be finite and > 0"),
        ({"means": [[0.0], [1.0]], "stds": [1.0, 1.0, 1.0]}, "stds must have shape"),
        ({"means": [[0.0], [1.0]], "stds": [1.0, 1.0], "weights": [1.0, -0.5]}, "weights must be"),
        ({"means": [[0.0], [1.0]], "stds": [1.0, 1.0], "weights": [0.0, 0.0]}, "not all 0"),
        ({"means": [[0.0], [float("nan")]], "stds": [1.0, 1.0]}, "means must be finite"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sdelab.GaussianMixture(**kwargs)


def test_bad_inputs_raise():
    gm = anisotropic_2d()
    with pytest.raises(ValueError, match="x must have 2 entries per sample"):
        gm.log_prob(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="needs a linear SDE"):
        gm.score(sdelab.GeometricBrownianMotion())
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        gm.marginal_log_prob(sdelab.VPSDE(), torch.zeros(3, 2, dtype=torch.float64), 1.5)


@pytest.mark.parametrize("diagonal", [False, True], ids=["isotropic", "diagonal"])
@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE()], ids=repr)
def test_per_sample_times_equal_float_times_sample_by_sample(sde, diagonal):
    """The (B,)-t path (components first, fused steps) gives, for each sample, what the
    Python-float path gives for that sample's time, to float32 round-off."""
    g = torch.Generator().manual_seed(3)
    K, d, B = 5, 3, 7
    stds = torch.rand((K, d) if diagonal else (K,), generator=g) + 0.1
    gm = sdelab.GaussianMixture(3 * torch.randn(K, d, generator=g), stds, torch.rand(K) + 0.1)
    x = 4 * torch.randn(B, d, generator=g)
    t = torch.tensor([0.0, 1e-4, 0.01, 0.2, 0.5, 0.9, 1.0])
    score, logp = gm.score(sde)(x, t), gm.marginal_log_prob(sde, x, t)
    for i in range(B):
        ti = float(t[i])
        torch.testing.assert_close(score[i : i + 1], gm.score(sde)(x[i : i + 1], ti))
        torch.testing.assert_close(logp[i : i + 1], gm.marginal_log_prob(sde, x[i : i + 1], ti))


def test_isotropic_and_diagonal_paths_agree():
    """Diagonal stds with equal entries go down the isotropic path; spelled out per dimension
    (one entry nudged by far less than round-off matters) they go the diagonal way."""
    g = torch.Generator().manual_seed(4)
    means, s = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.rand(4) + 0.2
    iso = sdelab.GaussianMixture(means, s.double())
    diag_stds = s.double()[:, None].repeat(1, 3)
    diag_stds[0, 0] *= 1 + 1e-15
    diag = sdelab.GaussianMixture(means, diag_stds)
    assert iso._isotropic and not diag._isotropic
    x, sde = 2 * torch.randn(6, 3, generator=g, dtype=torch.float64), sdelab.VPSDE()
    t = torch.rand(6, generator=g, dtype=torch.float64)
    for tt in (0.3, t):
        torch.testing.assert_close(iso.score(sde)(x, tt), diag.score(sde)(x, tt))
        torch.testing.assert_close(
            iso.marginal_log_prob(sde, x, tt), diag.marginal_log_prob(sde, x, tt)
        )


def test_nan_input_raises_naming_x():
    gm, sde = anisotropic_2d(), sdelab.VPSDE()
    x = torch.tensor([[0.0, 1.0], [float("nan"), 0.0]], dtype=torch.float64)
    for call in (gm.log_prob, gm.component_posterior, lambda v: gm.marginal_log_prob(sde, v, 0.5)):
        with pytest.raises(ValueError, match="x must not contain NaN, but 1 of its 4 entries"):
            call(x)
    # an infinite x is a point of zero density, not an error
    assert gm.log_prob(torch.tensor([[float("inf"), 0.0]], dtype=torch.float64)).item() == -math.inf
