"""The oracle with full covariances: its perturbed marginals and scores, the exact posterior of
a linear observation (`condition`) and the exact classifier of its labels (`class_log_prob`),
checked against independent computations (torch.distributions, autograd, numerical
integration on a grid)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import linear_sdes

import sdelab
from sdelab.analytic import PosteriorMixture

F64 = torch.float64


def random_covs(g, K, d, dtype=F64, cond=20.0):
    """K random SPD matrices with eigenvalues in [0.05, 0.05 * cond], random rotations."""
    q, _ = torch.linalg.qr(torch.randn(K, d, d, generator=g, dtype=F64))
    lam = 0.05 * cond ** torch.rand(K, d, generator=g, dtype=F64)
    return ((q * lam[:, None, :]) @ q.mT).to(dtype)


def full_mixture(seed, K, d, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(K, d, generator=g, dtype=F64)
    covs = random_covs(g, K, d)
    w = torch.rand(K, generator=g, dtype=F64) + 0.2
    return sdelab.GaussianMixture(means.to(dtype), weights=w.to(dtype), covs=covs.to(dtype))


def mvn_mixture_log_prob(means, covs, weights, x):
    """log sum_k w_k N(x; mu_k, C_k) by torch.distributions (independent of the oracle)."""
    comps = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    return torch.logsumexp(weights.log() + comps.log_prob(x[:, None, :]), -1)


def marginal_params(gm, sde, t):
    m, s = sde.mean_coeff(t), sde.std(t)
    eye = torch.eye(gm.dim, dtype=gm.dtype)
    return m * gm.means, m**2 * gm.covs + s**2 * eye


@st.composite
def full_mixtures(draw, max_k=4, max_d=5):
    return full_mixture(
        draw(st.integers(0, 2**16)), draw(st.integers(1, max_k)), draw(st.integers(1, max_d))
    )


# --- the perturbed marginal and its score ------------------------------------------------------
@settings(deadline=None)
@given(gm=full_mixtures(), sde=linear_sdes(), t=st.floats(0.0, 1.0), seed=st.integers(0, 99))
def test_full_cov_score_is_gradient_and_marginal_is_the_mvn_mixture(gm, sde, t, seed):
    x = torch.randn(6, gm.dim, generator=torch.Generator().manual_seed(seed), dtype=F64) * 3
    x.requires_grad_()
    lp = gm.marginal_log_prob(sde, x, t)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    torch.testing.assert_close(gm.score(sde)(x.detach(), t), grad, rtol=1e-9, atol=1e-9)
    means, covs = marginal_params(gm, sde, t)
    expect = mvn_mixture_log_prob(means, covs, gm.weights, x.detach())
    torch.testing.assert_close(lp.detach(), expect, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gm.at(sde, t).log_prob(x.detach()), expect, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.VESDE()], ids=repr)
def test_full_cov_per_sample_times_equal_float_times(sde):
    gm = full_mixture(1, 4, 3)
    g = torch.Generator().manual_seed(2)
    x = 3 * torch.randn(6, 3, generator=g, dtype=F64)
    t = torch.tensor([0.0, 1e-4, 0.05, 0.3, 0.7, 1.0], dtype=F64)
    score, logp = gm.score(sde)(x, t), gm.marginal_log_prob(sde, x, t)
    for i in range(6):
        ti = float(t[i])
        torch.testing.assert_close(score[i : i + 1], gm.score(sde)(x[i : i + 1], ti))
        torch.testing.assert_close(logp[i : i + 1], gm.marginal_log_prob(sde, x[i : i + 1], ti))


@pytest.mark.parametrize("isotropic", [False, True])
def test_diagonal_given_as_covs_equals_the_diagonal_path(isotropic):
    g = torch.Generator().manual_seed(5)
    K, d = 4, 3
    means = 2 * torch.randn(K, d, generator=g, dtype=F64)
    stds = 0.2 + torch.rand((K,) if isotropic else (K, d), generator=g, dtype=F64)
    diag = sdelab.GaussianMixture(means, stds, torch.rand(K, generator=g, dtype=F64) + 0.1)
    full = sdelab.GaussianMixture(means, weights=diag.weights, covs=diag.covs)
    assert full._full and not diag._full and full.stds is None
    x, sde = 3 * torch.randn(7, d, generator=g, dtype=F64), sdelab.SubVPSDE()
    for t in (0.0, 0.2, torch.rand(7, generator=g, dtype=F64)):
        torch.testing.assert_close(full.score(sde)(x, t), diag.score(sde)(x, t))
        torch.testing.assert_close(
            full.marginal_log_prob(sde, x, t), diag.marginal_log_prob(sde, x, t)
        )
    torch.testing.assert_close(full.component_posterior(x), diag.component_posterior(x))
    torch.testing.assert_close(full.covariance(), diag.covariance())
    torch.testing.assert_close(full.at(sde, 0.4).covs, diag.at(sde, 0.4).covs)


@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE()], ids=repr)
@pytest.mark.parametrize("t", [0.0, 1e-7, 1e-3, 0.5, 1.0])
def test_full_cov_float32_is_finite_and_matches_float64(sde, t):
    gm64 = full_mixture(3, 3, 2)
    gm32 = gm64.to(dtype=torch.float32)
    x = torch.tensor([[0.1, 0.2], [1e4, -1e4], [-30.0, 7.0], [2.0, 1.0]], dtype=F64)
    s32 = gm32.score(sde)(x.float(), t)
    lp32 = gm32.marginal_log_prob(sde, x.float(), t)
    assert torch.isfinite(s32).all() and torch.isfinite(lp32).all()
    s64, lp64 = gm64.score(sde)(x, t), gm64.marginal_log_prob(sde, x, t)
    torch.testing.assert_close(s32.double(), s64, rtol=2e-4, atol=1e-4)
    torch.testing.assert_close(lp32.double(), lp64, rtol=2e-5, atol=1e-3)


def test_full_cov_samples_have_the_stated_law():
    gm = full_mixture(7, 3, 2)
    n = 40_000
    x, k = gm.sample(n, generator=torch.Generator().manual_seed(0), return_labels=True)
    cov = gm.covariance()
    assert ((x.mean(0) - gm.mean()).abs() <= 5 * torch.sqrt(cov.diagonal() / n)).all()
    c = x - x.mean(0)
    se_cov = (c[:, :, None] * c[:, None, :]).std(0) / math.sqrt(n)
    assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov).all()
    for j in range(3):  # each component's own covariance
        xj = x[k == j]
        cj = xj - xj.mean(0)
        se_j = (cj[:, :, None] * cj[:, None, :]).std(0) / math.sqrt(xj.shape[0])
        assert ((torch.cov(xj.T) - gm.covs[j]).abs() <= 5 * se_j).all()


# --- the exact posterior against numerical integration -------------------------------------------
def grid_2d(h=0.01, lim=9.0):
    g = torch.arange(-lim, lim + h / 2, h, dtype=F64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], -1), h * h


def brute_posterior(gm, pts, dv, log_lik):
    """Mean, covariance and mode weights of p0(x) exp(log_lik(x)) on grid points ``pts``, by
    quadrature; p0's components by torch.distributions."""
    comps = torch.distributions.MultivariateNormal(gm.means, covariance_matrix=gm.covs)
    joint = (gm.weights.log() + comps.log_prob(pts[:, None, :]) + log_lik(pts)[:, None]).exp()
    mass = joint.sum(0) * dv  # (K,) unnormalised mass of each component
    dens = joint.sum(1) * dv
    z = dens.sum()
    mean = (dens[:, None] * pts).sum(0) / z
    c = pts - mean
    cov = (dens[:, None, None] * c[:, :, None] * c[:, None, :]).sum(0) / z
    return mean, cov, mass / mass.sum()


@pytest.mark.parametrize("seed", [0, 1])
def test_noisy_posterior_matches_grid_integration(seed):
    gm = full_mixture(10 + seed, 3, 2)
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(1, 2, generator=g, dtype=F64)
    y, s = torch.randn(1, generator=g, dtype=F64), 0.4
    post = gm.condition(A, y, s)
    assert post.basis is None and post.dim == 2

    def log_lik(x):
        return -0.5 * ((x @ A.T - y) ** 2).sum(-1) / s**2

    mean, cov, w = brute_posterior(gm, *grid_2d(), log_lik)
    torch.testing.assert_close(post.mean(), mean, rtol=0, atol=1e-7)
    torch.testing.assert_close(post.covariance(), cov, rtol=0, atol=1e-7)
    torch.testing.assert_close(post.weights, w, rtol=0, atol=1e-8)


def brute_line_posterior(gm, x0, n, h=0.002, lim=12.0):
    """Mean and variance of z and the mode weights on the line x0 + z n, by quadrature of
    p0 along it (the density of z given A x = y is proportional to p0(x0 + z n))."""
    z = torch.arange(-lim, lim + h / 2, h, dtype=F64)
    pts = x0 + z[:, None] * n
    comps = torch.distributions.MultivariateNormal(gm.means, covariance_matrix=gm.covs)
    joint = (gm.weights.log() + comps.log_prob(pts[:, None, :])).exp()
    dens = joint.sum(1)
    mean = (dens * z).sum() / dens.sum()
    var = (dens * (z - mean) ** 2).sum() / dens.sum()
    return mean, var, joint.sum(0) / joint.sum()


@pytest.mark.parametrize("kind", ["mask", "random"])
def test_exact_observation_posterior_matches_integration_along_the_line(kind):
    gm = full_mixture(21, 3, 2)
    g = torch.Generator().manual_seed(4)
    A = (
        torch.tensor([[0.0, 1.0]], dtype=F64)
        if kind == "mask"
        else torch.randn(1, 2, generator=g, dtype=F64)
    )
    y = torch.tensor([0.7], dtype=F64)
    post = gm.condition(A, y)
    assert post.dim == 1 and post.ambient_dim == 2
    n = post.basis[:, 0]
    if kind == "mask":  # the free coordinate itself
        torch.testing.assert_close(post.basis, torch.tensor([[1.0], [0.0]], dtype=F64))
    torch.testing.assert_close(A @ post.offset, y)
    torch.testing.assert_close(A @ n, torch.zeros(1, dtype=F64), rtol=0, atol=1e-12)
    mean, var, w = brute_line_posterior(gm, post.offset, n)
    torch.testing.assert_close(post.mean(), mean[None], rtol=0, atol=1e-8)
    torch.testing.assert_close(post.covariance(), var[None, None], rtol=0, atol=1e-8)
    torch.testing.assert_close(post.weights, w, rtol=0, atol=1e-8)
    x = post.sample_x(1000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x @ A.T, y.expand(1000, 1), rtol=0, atol=1e-12)


# --- Bayes' rule over shapes -----------------------------------------------------------------------
@st.composite
def problems(draw):
    K, d = draw(st.integers(1, 4)), draw(st.integers(2, 6))
    p = draw(st.integers(1, d - 1))
    seed = draw(st.integers(0, 2**16))
    gm = full_mixture(seed, K, d)
    if draw(st.booleans()):  # a diagonal prior
        gm = sdelab.GaussianMixture(gm.means, gm.covs.diagonal(dim1=1, dim2=2).sqrt(), gm.weights)
    g = torch.Generator().manual_seed(seed + 1)
    if draw(st.booleans()):
        A = torch.eye(d, dtype=F64)[torch.randperm(d, generator=g)[:p]]
    else:
        A = torch.randn(p, d, generator=g, dtype=F64)
    y = A @ gm.sample(1, g)[0] + 0.3 * torch.randn(p, generator=g, dtype=F64)
    noise = draw(st.sampled_from([0.0, 0.05, 1.0]))
    return gm, A, y, noise


@settings(deadline=None, max_examples=60)
@given(problem=problems(), seed=st.integers(0, 99))
def test_posterior_is_bayes_rule(problem, seed):
    r"""log p(x | y) - log p0(x) - log p(y | x) does not depend on x (it is -log p(y)); for an
    exact observation, on the subspace A x = y with the density of z."""
    gm, A, y, s = problem
    post = gm.condition(A, y, s)
    assert isinstance(post, PosteriorMixture)
    d, p = gm.dim, A.shape[0]
    assert post.dim == (d - p if s == 0 else d) and post.ambient_dim == d
    assert post.n_components == gm.n_components
    z = 2 * torch.randn(8, post.dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
    x = post.embed(z)
    torch.testing.assert_close(post.project(x), z)
    gap = post.log_prob(z) - gm.log_prob(x)
    if s > 0:
        gap = gap + 0.5 * ((x @ A.T - y) ** 2).sum(-1) / s**2
    else:
        torch.testing.assert_close(x @ A.T, y.expand(8, p))
    torch.testing.assert_close(gap, gap[:1].expand(8), rtol=0, atol=1e-7)


@settings(deadline=None, max_examples=30)
@given(problem=problems())
def test_float32_posterior_matches_float64(problem):
    gm, A, y, s = problem
    p64 = gm.condition(A, y, s)
    p32 = gm.to(dtype=torch.float32).condition(A.float(), y.float(), s)
    assert p32.dtype == torch.float32
    torch.testing.assert_close(p32.weights.double(), p64.weights, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(p32.means.double(), p64.means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p32.covs.double(), p64.covs, rtol=1e-4, atol=1e-5)


def test_mask_on_a_diagonal_mixture_keeps_the_fast_path():
    g = torch.Generator().manual_seed(3)
    diag = sdelab.GaussianMixture(
        torch.randn(3, 4, generator=g, dtype=F64), 0.3 + torch.rand(3, 4, generator=g, dtype=F64)
    )
    full = sdelab.GaussianMixture(diag.means, weights=diag.weights, covs=diag.covs)
    mask = torch.tensor([True, False, True, False])
    A, y = torch.eye(4, dtype=F64)[mask], torch.tensor([0.5, -1.0], dtype=F64)
    for s in (0.0, 0.2):
        pd, pf = diag.condition(A, y, s), full.condition(A, y, s)
        assert pd.stds is not None and pf.stds is None
        torch.testing.assert_close(pd.covs, pf.covs)
        torch.testing.assert_close(pd.means, pf.means)
        torch.testing.assert_close(pd.weights, pf.weights)
    post = diag.condition(A, y)  # unobserved coordinates are z; the observed ones equal y
    x = post.sample_x(5, torch.Generator().manual_seed(1))
    assert (x[:, mask] == y).all()
    torch.testing.assert_close(post.project(x), x[:, ~mask])


# --- the exact classifier ---------------------------------------------------------------------------
def test_class_log_prob_is_bayes_rule_at_time_t():
    gm, sde = full_mixture(30, 4, 3), sdelab.VPSDE()
    g = torch.Generator().manual_seed(0)
    x, t = 2 * torch.randn(5, 3, generator=g, dtype=F64), 0.3
    clf = gm.class_log_prob(sde)
    lp = clf(x, t)
    assert lp.shape == (5, 4)
    means, covs = marginal_params(gm, sde, t)
    comps = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
    expect = gm.weights.log() + comps.log_prob(x[:, None, :])
    expect = expect - expect.logsumexp(-1, keepdim=True)
    torch.testing.assert_close(lp, expect)
    labels = torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(clf(x, t, labels), expect[torch.arange(5), labels])
    torch.testing.assert_close(clf.for_class(2)(x, t), expect[:, 2])
    # its gradient: the component's score minus the mixture's
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(clf.for_class(2)(xg, t).sum(), xg)
    m, s = sde.mean_coeff(t), sde.std(t)
    own = -torch.linalg.solve(
        m**2 * gm.covs[2] + s**2 * torch.eye(3, dtype=F64), (x - m * gm.means[2]).T
    ).T
    torch.testing.assert_close(grad, own - gm.score(sde)(x, t))


# --- bad input -----------------------------------------------------------------------------------------
def test_singular_or_asymmetric_covs_raise_naming_component_and_eigenvalue():
    covs = torch.eye(2, dtype=F64).repeat(3, 1, 1)
    covs[1] = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"covs\[1\].*smallest eigenvalue"):
        sdelab.GaussianMixture(torch.zeros(3, 2), covs=covs)
    covs[1] = torch.tensor([[1.0, 0.0], [0.0, -0.5]], dtype=F64)
    with pytest.raises(ValueError, match=r"covs\[1\].*smallest eigenvalue -0.5"):
        sdelab.GaussianMixture(torch.zeros(3, 2), covs=covs)
    covs[1] = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"covs must be symmetric, but covs\[1\]"):
        sdelab.GaussianMixture(torch.zeros(3, 2), covs=covs)
    with pytest.raises(ValueError, match=r"covs must have shape \(K, d, d\) = \(3, 2, 2\)"):
        sdelab.GaussianMixture(torch.zeros(3, 2), covs=torch.eye(2))
    with pytest.raises(ValueError, match="exactly one of stds"):
        sdelab.GaussianMixture(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="exactly one of stds"):
        sdelab.GaussianMixture(torch.zeros(3, 2), [1.0] * 3, covs=torch.eye(2).repeat(3, 1, 1))


@pytest.mark.parametrize(
    ("A", "y", "noise", "match"),
    [
        (
            torch.ones(1, 2),
            [0.0],
            0.1,
            r"A must have shape \(p, d\) = \(p, 3\).*got shape \(1, 2\)",
        ),
        (torch.ones(3), [0.0], 0.1, r"A must have shape .* got shape \(3,\)"),
        (torch.ones(1, 3), [0.0, 1.0], 0.1, r"y must have shape \(p,\) = \(1,\).*got shape \(2,\)"),
        (torch.ones(1, 3), [[0.0], [1.0]], 0.1, r"one observation; call condition once"),
        (torch.ones(1, 3), [0.0], -0.1, r"noise_std must be a finite number >= 0, got -0.1"),
        (torch.ones(1, 3), [0.0], float("nan"), r"noise_std must be a finite number >= 0, got nan"),
        (torch.ones(2, 3), [0.0, 1.0], 0.0, r"full row rank p = 2, but its smallest singular"),
        (torch.eye(3), [0.0, 1.0, 2.0], 0.0, r"fewer rows than d = 3 .* give noise_std > 0"),
        (torch.ones(1, 3), [float("nan")], 0.1, r"y must be finite"),
    ],
)
def test_bad_observations_raise(A, y, noise, match):
    gm = full_mixture(0, 2, 3, dtype=torch.float32)
    with pytest.raises(ValueError, match=match):
        gm.condition(A, torch.tensor(y), noise)


def test_bad_class_labels_raise():
    clf = full_mixture(0, 2, 3).class_log_prob(sdelab.VPSDE())
    with pytest.raises(ValueError, match=r"k must be a component index in \[0, 2\), got 2"):
        clf.for_class(2)
    with pytest.raises(ValueError, match=r"y must be an int or an integer tensor of shape \(B,\)"):
        clf(torch.zeros(4, 3, dtype=F64), 0.5, torch.zeros(3, dtype=torch.long))
