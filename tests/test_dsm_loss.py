"""dsm_loss against the exact score of a Gaussian mixture: the irreducible constant, a zero
gradient at the exact score, the parametrizations, the likelihood weighting's importance
sampling, and bad input."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import dtypes, sdes_with_log_snr

import sdelab
import sdelab.nets
from sdelab.experiments.config.problems import builtin_mixture
from sdelab.training import dsm_loss, from_score, to_score
from sdelab.training.loss import PARAMETRIZATIONS, likelihood_weight, sample_time

MIX = builtin_mixture("gmm2d")


def _discrete():
    return sdelab.DiscreteVPSDE.from_betas(torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))


SDES = {
    "vp": sdelab.VPSDE(),
    "subvp": sdelab.SubVPSDE(),
    "ve": sdelab.VESDE(sigma_min=0.01, sigma_max=10.0),
    "ou": sdelab.OrnsteinUhlenbeck(theta=1.0, sigma=1.5),
    "discrete": _discrete(),
}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _exact(sde, dtype, parametrization="score", a=None, h=None):
    """The exact score of MIX under ``sde`` as a model of ``parametrization``, optionally
    perturbed to s* + a h(x, t)."""
    score = MIX.to(dtype=dtype).score(sde)

    def model(x, t):
        s = score(x, t)
        if a is not None:
            s = s + a * h(x, t)
        return from_score(sde, parametrization, s, x, t)

    return model


def _irreducible(sde, weighting, n, eps, dtype, seed):
    r"""An independent estimate of C = E_t lambda(t) (E|grad log p_0t|^2 - E|grad log p_t|^2)
    with uniform t: E_t w(t) (d - sigma^2 |s*(x_t, t)|^2), w = 1 (sigma2), g^2 / sigma^2
    (likelihood); x_t drawn from the mixture's marginal. Returns (mean, standard error)."""
    g = _gen(seed)
    mix = MIX.to(dtype=dtype)
    t = eps + (sde.T - eps) * torch.rand(n, generator=g, dtype=dtype)
    x0 = mix.sample(n, generator=g)
    m, std = sde.marginal_coeffs(t)
    xt = m[:, None] * x0 + std[:, None] * torch.randn(x0.shape, generator=g, dtype=dtype)
    s = mix.marginal_score(sde, xt, t)
    term = MIX.dim - std**2 * s.pow(2).sum(-1)
    if weighting == "likelihood":
        term = term * sde.diffusion(t) ** 2 / std**2
    return term.mean(), term.std() / math.sqrt(n)


def _loss_stats(sde, model, n, batches, seed, **kw):
    """Mean and standard error of dsm_loss over independent batches."""
    dtype = kw.pop("dtype")
    g = _gen(seed)
    vals = torch.stack(
        [dsm_loss(sde, model, MIX.to(dtype=dtype).sample(n, generator=g), generator=g, **kw)
         for _ in range(batches)]
    )  # fmt: skip
    return vals.mean(), vals.std() / math.sqrt(batches)


@pytest.mark.parametrize(
    ("name", "weighting", "dtype"),
    [
        (name, weighting, torch.float64)
        for name in ("vp", "ve", "discrete")
        for weighting in ("sigma2", "likelihood")
    ]
    + [("vp", "sigma2", torch.float32), ("ou", "likelihood", torch.float32)],
)
def test_exact_score_loss_is_the_irreducible_constant(name, weighting, dtype):
    sde = SDES[name]
    eps = 0.0 if name == "discrete" else 1e-3
    loss, se_loss = _loss_stats(
        sde, _exact(sde, dtype), 20_000, 10, 1, dtype=dtype, weighting=weighting, eps=eps
    )
    c, se_c = _irreducible(sde, weighting, 200_000, eps, dtype, 2)
    se = math.hypot(se_loss, se_c)
    print(
        f"{name} {weighting}: loss(exact) = {loss:.4f} +- {se_loss:.4f}, C = {c:.4f} +- {se_c:.4f}"
    )
    assert abs(loss - c) < 5 * se
    assert c > 10 * se  # the constant is not trivially 0: the comparison has power


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ou"])
@pytest.mark.parametrize("weighting", ["sigma2", "none", "likelihood"])
def test_gradient_at_the_exact_score_is_zero_in_expectation(name, weighting):
    sde, dtype = SDES[name], torch.float64
    a = torch.zeros((), dtype=dtype, requires_grad=True)

    def h(x, t):  # a fixed smooth direction, bounded in x
        return torch.tanh(x.flip(-1)) * (1.0 + t)[:, None]

    model = _exact(sde, dtype, a=a, h=h)
    g, grads, eps = _gen(3), [], 1e-2
    for _ in range(12):
        x0 = MIX.to(dtype=dtype).sample(4000, generator=g)
        (grad,) = torch.autograd.grad(dsm_loss(sde, model, x0, weighting=weighting, eps=eps,
                                               generator=g), a)  # fmt: skip
        grads.append(grad)
    grads = torch.stack(grads)
    mean, se = grads.mean(), grads.std() / math.sqrt(len(grads))
    assert abs(mean) < 5 * se
    # power: moving away from the exact score along h raises the loss, its gradient at a = 4
    # is positive and many standard errors away from 0
    a2 = torch.full((), 4.0, dtype=dtype, requires_grad=True)
    model2 = _exact(sde, dtype, a=a2, h=h)
    x0 = MIX.to(dtype=dtype).sample(4000, generator=g)
    (grad2,) = torch.autograd.grad(dsm_loss(sde, model2, x0, weighting=weighting, eps=eps,
                                            generator=g), a2)  # fmt: skip
    assert grad2 > 10 * se


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("weighting", ["sigma2", "none", "likelihood"])
def test_parametrizations_of_the_exact_score_give_the_same_loss(name, weighting, dtype):
    sde = SDES[name]
    eps = 1e-3
    x0 = MIX.to(dtype=dtype).sample(2000, generator=_gen(4))
    losses = [
        dsm_loss(sde, _exact(sde, dtype, p), x0, weighting=weighting, parametrization=p,
                 eps=eps, generator=_gen(5))
        for p in PARAMETRIZATIONS
    ]  # fmt: skip
    assert all(v.dtype == dtype and v.shape == () for v in losses)
    rtol = 1e-3 if dtype == torch.float32 else 1e-9
    for v in losses[1:]:
        torch.testing.assert_close(v, losses[0], rtol=rtol, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ou"])
def test_each_parametrization_loss_in_its_own_terms(name, dtype):
    r"""The equivalences of `to_score`'s docstring, with t and z read back from the model's
    inputs: sigma2-weighted score loss = |eps_hat - z|^2 (noise) = (m / sigma)^2 |x0_hat -
    x0|^2 (data) = m^2 / (m^2 + sigma^2) |v_hat - v|^2 (v)."""
    sde = SDES[name]
    torch.manual_seed(0)
    net = sdelab.nets.MLPScore(2, hidden=16, depth=1).to(dtype)
    x0 = MIX.to(dtype=dtype).sample(256, generator=_gen(9))
    seen = {}

    def model(x, t):
        seen["x"], seen["t"] = x, t
        seen["out"] = net(x, t)
        return seen["out"]

    for p in ("noise", "data", "v"):
        loss = dsm_loss(sde, model, x0, parametrization=p, eps=1e-2, generator=_gen(10))
        m, std = (c[:, None] for c in sde.marginal_coeffs(seen["t"]))
        z = (seen["x"] - m * x0) / std
        out = seen["out"]
        if p == "noise":
            per = (out - z).pow(2).sum(-1)
        elif p == "data":
            per = (m / std) ** 2 * (out - x0).pow(2).sum(-1, keepdim=True)
        else:
            r = (m * m + std * std).sqrt()
            v = (m * z - std * x0) / r
            per = (m / r) ** 2 * (out - v).pow(2).sum(-1, keepdim=True)
        rtol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(loss, per.mean(), rtol=rtol, atol=0.0)


@pytest.mark.parametrize("name", list(SDES))
def test_likelihood_weighting_is_unbiased_for_the_uniform_time_integral(name):
    r"""The importance-sampled estimator (t ~ g^2/sigma^2) and the plain uniform-t estimator
    of E_t g^2 E|s + z/sigma|^2 agree, for a score that is not the exact one (so the
    integrand is not a constant multiple of g^2/sigma^2)."""
    sde, dtype, eps = SDES[name], torch.float64, 1e-3
    h = lambda x, t: torch.sin(x) * t[:, None]  # noqa: E731
    model = _exact(sde, dtype, a=0.3, h=h)
    imp, se_imp = _loss_stats(
        sde, model, 20_000, 10, 6, dtype=dtype, weighting="likelihood", eps=eps
    )
    # the uniform-t estimate, written out here from the definition
    g, n = _gen(7), 200_000
    x0 = MIX.to(dtype=dtype).sample(n, generator=g)
    t = eps + (sde.T - eps) * torch.rand(n, generator=g, dtype=dtype)
    xt, z = sde.perturb(x0, t, generator=g)
    std = sde.std(t)
    term = sde.diffusion(t) ** 2 * (model(xt, t) + z / std[:, None]).pow(2).sum(-1)
    uni, se_uni = term.mean(), term.std() / math.sqrt(n)
    print(f"{name}: importance {imp:.4f} +- {se_imp:.4f}, uniform {uni:.4f} +- {se_uni:.4f}")
    assert abs(imp - uni) < 5 * math.hypot(se_imp, se_uni)
    # and importance sampling is the better estimator: both used 200,000 samples
    assert se_imp < se_uni / 2


class _NoInverse(sdelab.SubVPSDE):
    """A sub-VP SDE that hides its closed-form log-SNR inverse: the tabulated inverse CDF."""

    t_from_log_snr = sdelab.LinearSDE.t_from_log_snr


def test_tabulated_inverse_cdf_matches_the_closed_form():
    closed, table = sdelab.SubVPSDE(), _NoInverse()
    u_closed = sample_time(closed, "likelihood", 50_000, eps=1e-4, generator=_gen(8),
                           dtype=torch.float64)  # fmt: skip
    u_table = sample_time(table, "likelihood", 50_000, eps=1e-4, generator=_gen(8),
                          dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(u_table, u_closed, rtol=1e-4, atol=1e-7)
    assert likelihood_weight(table, 1e-4) == pytest.approx(likelihood_weight(closed, 1e-4))


@given(sde=sdes_with_log_snr(), dtype=dtypes, t=st.floats(1e-3, 1.0), seed=st.integers(0, 99))
def test_to_score_inverts_from_score(sde, dtype, t, seed):
    g = _gen(seed)
    m, std = sde.marginal_coeffs(t)
    x = m * torch.randn(8, 3, generator=g, dtype=dtype) + std * torch.randn(8, 3, generator=g,
                                                                           dtype=dtype)  # fmt: skip
    s = torch.randn(8, 3, generator=g, dtype=dtype) / std
    tt = torch.full((8,), t, dtype=dtype)
    u = torch.finfo(dtype).eps
    scale = 1.0 + x.abs() * (m + 1.0 / m) / std  # the rounding the conversions can amplify
    for p in PARAMETRIZATIONS:
        for time in (t, tt):
            back = to_score(sde, p, from_score(sde, p, s, x, time), x, time)
            assert back.dtype == dtype
            assert ((back - s).abs() * std <= 50 * u * scale).all(), p


# --- bad input ----------------------------------------------------------------------------
def _model(x, t):
    return torch.zeros_like(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"weighting": "sigma"},
            "weighting must be one of 'sigma2', 'likelihood', 'none', got 'sigma'",
        ),
        ({"parametrization": "eps"}, "parametrization must be one of .*got 'eps'"),
        ({"eps": 0.0}, r"eps must lie in \(0, 1.0\) for VPSDE.*got 0.0"),
        ({"eps": 1.0}, r"eps must lie in \(0, 1.0\).*got 1.0"),
        ({"eps": -1e-3}, r"eps must lie in \(0, 1.0\).*got -0.001"),
        ({"eps": float("nan")}, r"eps must lie in \(0, 1.0\).*got nan"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dsm_loss(sdelab.VPSDE(), _model, torch.zeros(4, 2), **kwargs)


def test_discrete_vp_accepts_eps_zero_but_not_one():
    sde = SDES["discrete"]
    assert torch.isfinite(dsm_loss(sde, _model, torch.zeros(4, 2), eps=0.0))
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1.0\) for DiscreteVPSDE"):
        dsm_loss(sde, _model, torch.zeros(4, 2), eps=1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_data_names_the_first_bad_row(bad):
    x0 = torch.zeros(6, 2)
    x0[4, 1] = bad
    x0[5, 0] = bad
    with pytest.raises(ValueError, match=r"x0 must be finite, but 2 of its 6 rows .*row 4"):
        dsm_loss(sdelab.VPSDE(), _model, x0)


def test_model_output_of_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"model must return a tensor shaped like x \(4, 2\), got \(4, 3\)"
    ):
        dsm_loss(sdelab.VPSDE(), lambda x, t: torch.zeros(4, 3), torch.zeros(4, 2))


def test_sde_without_gaussian_kernel_is_refused():
    with pytest.raises(TypeError, match="sde must be a LinearSDE.*GeometricBrownianMotion"):
        dsm_loss(sdelab.GeometricBrownianMotion(), _model, torch.zeros(4, 2))


def test_model_sees_times_of_shape_batch_in_the_data_dtype():
    seen = {}

    def model(x, t):
        seen["t"] = t
        return torch.zeros_like(x)

    dsm_loss(sdelab.VESDE(), model, torch.zeros(5, 2, dtype=torch.float64), eps=0.1)
    t = seen["t"]
    assert t.shape == (5,) and t.dtype == torch.float64
    assert bool(((t >= 0.1) & (t <= 1.0)).all())


@pytest.mark.parametrize("name", [*SDES, "tabulated"])
@pytest.mark.parametrize("weighting", ["sigma2", "none", "likelihood"])
def test_the_loss_step_reads_nothing_from_the_device(name, weighting):
    """The unchecked step (`_dsm_loss`, for a training loop that validated its data once) never
    reads a tensor's value; `dsm_loss` adds one read, its finite-rows check of ``x0``."""
    from test_host_sync import count_host_reads

    from sdelab.training.loss import _dsm_loss

    sde = _NoInverse() if name == "tabulated" else SDES[name]
    x0 = torch.randn(16, 2)
    _dsm_loss(sde, _model, x0, weighting, "v", 1e-3, None)  # builds the tabulated CDF once
    with count_host_reads() as stats:
        for p in PARAMETRIZATIONS:
            _dsm_loss(sde, _model, x0, weighting, p, 1e-3, None)
    assert stats["reads"] == 0
    with count_host_reads() as stats:
        dsm_loss(sde, _model, x0, weighting=weighting, eps=1e-3)
    assert stats["reads"] == 1
