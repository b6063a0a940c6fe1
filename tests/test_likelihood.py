"""log_likelihood, the trace estimators, bits/dim and encode/decode, against closed forms.

Ground truth is the Gaussian-mixture oracle: with the exact score and the exact prior the
probability-flow likelihood must reproduce `marginal_log_prob(sde, x, eps)`; the only error
left is the integrator's.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sdelab
from sdelab import (
    VESDE,
    VPSDE,
    GaussianMixture,
    SubVPSDE,
    bits_per_dim,
    decode,
    dequantize,
    encode,
    log_likelihood,
)
from sdelab.likelihood import exact_divergence, hutchinson_divergence

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
F64 = torch.float64


def make_mixture(d: int, seed: int, dtype=F64) -> GaussianMixture:
    """Three components, random means, per-axis stds in [0.2, 0.8], unequal weights."""
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(3, d, generator=g, dtype=dtype)
    stds = 0.2 + 0.6 * torch.rand(3, d, generator=g, dtype=dtype)
    weights = 0.5 + torch.rand(3, generator=g, dtype=dtype)
    return GaussianMixture(means, stds, weights)


def exact_prior(mix, sde):
    return lambda z: mix.marginal_log_prob(sde, z, sde.T)


# --------------------------------------------------------------------------------------------
# exact divergence against the closed form
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["scipy", "torch"])
@pytest.mark.parametrize(("name", "d"), [("vp", 2), ("vp", 8), ("subvp", 5), ("ve", 3), ("ve", 8)])
def test_exact_divergence_reproduces_marginal_log_prob(name, d, backend):
    sde = SDES[name]()
    mix = make_mixture(d, seed=d)
    x = mix.sample(16, generator=torch.Generator().manual_seed(1))
    eps = 1e-5
    res = log_likelihood(
        sde,
        mix.score(sde),
        x,
        divergence="exact",
        backend=backend,
        rtol=1e-5,
        atol=1e-5,
        eps=eps,
        prior_logp=exact_prior(mix, sde),
    )
    truth = mix.marginal_log_prob(sde, x, eps)
    assert res.logp.shape == (16,) and res.z.shape == x.shape
    assert torch.equal(res.logp, res.prior_logp + res.delta_logp)
    # integrator error only: about 1e-3 nats per sample at rtol = atol = 1e-5
    assert (res.logp - truth).abs().max() < 1e-3
    assert res.nfe > 0 and res.steps > 0


def test_error_is_the_integrators_and_shrinks_with_tolerance():
    sde, mix = VPSDE(), make_mixture(4, seed=4)
    x = mix.sample(8, generator=torch.Generator().manual_seed(2))
    truth = mix.marginal_log_prob(sde, x, 1e-5)
    errs, nfes = [], []
    for tol in (1e-4, 1e-7):
        res = log_likelihood(
            sde, mix.score(sde), x, divergence="exact", backend="torch", rtol=tol, atol=tol,
            prior_logp=exact_prior(mix, sde),
        )  # fmt: skip
        errs.append((res.logp - truth).abs().max().item())
        nfes.append(res.nfe)
    assert errs[1] < errs[0] / 30 and errs[1] < 1e-5
    assert nfes[1] > nfes[0]


def test_default_prior_carries_the_mismatch_term():
    sde, mix = VESDE(sigma_max=5.0), make_mixture(2, seed=3)
    x = mix.sample(8, generator=torch.Generator().manual_seed(3))
    kw = dict(divergence="exact", backend="torch")
    exact = log_likelihood(sde, mix.score(sde), x, prior_logp=exact_prior(mix, sde), **kw)
    default = log_likelihood(sde, mix.score(sde), x, **kw)
    # same path, same divergence integral; only log p_T(z) differs
    torch.testing.assert_close(default.delta_logp, exact.delta_logp)
    torch.testing.assert_close(default.prior_logp, sde.prior_logp(default.z))
    mismatch = default.prior_logp - exact_prior(mix, sde)(default.z)
    torch.testing.assert_close(default.logp - exact.logp, mismatch)
    assert mismatch.abs().max() > 1e-3  # sigma_max = 5 leaves a visible mismatch


def test_float32_input_gives_float32_results_and_matches():
    sde, mix = SubVPSDE(), make_mixture(3, seed=5, dtype=torch.float32)
    x = mix.sample(8, generator=torch.Generator().manual_seed(4))
    res = log_likelihood(
        sde, mix.score(sde), x, divergence="exact", prior_logp=exact_prior(mix, sde)
    )
    assert res.logp.dtype == torch.float32 and res.z.dtype == torch.float32
    assert (res.logp - mix.marginal_log_prob(sde, x, 1e-5)).abs().max() < 2e-3


def test_exact_divergence_helper_is_the_jacobian_trace():
    A = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 3.0, 0.0], [0.3, 0.2, -2.0]], dtype=F64)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    fn = lambda v: torch.tanh(v) @ A.T  # noqa: E731  J = A diag(1 - tanh^2)
    v, div = exact_divergence(fn, x)
    torch.testing.assert_close(v, fn(x))
    torch.testing.assert_close(div, ((1 - torch.tanh(x) ** 2) * torch.diagonal(A)).sum(1))
    # a Rademacher probe on a diagonal Jacobian is exact; on this one it is not
    probes = torch.ones(1, 5, 3, dtype=F64)
    _, est = hutchinson_divergence(fn, x, probes)
    manual = torch.einsum("bi,ij,bj->b", probes[0], A, (1 - torch.tanh(x) ** 2) * probes[0])
    torch.testing.assert_close(est, manual)


# --------------------------------------------------------------------------------------------
# Hutchinson-Skilling
# --------------------------------------------------------------------------------------------
def _hutchinson_spread(noise: str, n_probes: int, R: int, seed: int):
    """R independent estimates of delta_logp at one point between modes of a correlated
    mixture (its Jacobian has large off-diagonal terms), and the exact value."""
    sde = VPSDE()
    mix = GaussianMixture(
        torch.tensor([[1.5, 1.2, 0.0, -0.5], [-1.0, -1.4, 0.8, 0.5], [0.3, -1.0, -1.2, 1.0]], dtype=F64),
        torch.tensor([[0.3, 0.7, 0.5, 0.4], [0.6, 0.3, 0.4, 0.5], [0.4, 0.4, 0.6, 0.3]], dtype=F64),
    )  # fmt: skip
    x = torch.tensor([[0.2, -0.1, 0.3, 0.0]], dtype=F64)
    exact = log_likelihood(sde, mix.score(sde), x, divergence="exact", backend="torch")
    res = log_likelihood(
        sde, mix.score(sde), x.expand(R, 4).contiguous(), divergence="hutchinson",
        noise=noise, n_probes=n_probes, backend="torch", error_norm="batch",
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return res.delta_logp, exact.delta_logp[0]


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_on_a_mixture(noise):
    R = 1024
    est, exact = _hutchinson_spread(noise, 1, R, seed=11)
    sd = est.std()
    assert sd > 0.05  # the estimator is not trivially exact here: the test can fail
    # a mean of R draws is off by ~sd/sqrt(R); allow 5 of those plus the integrator's 1e-3
    assert abs(est.mean() - exact) < 5 * sd / math.sqrt(R) + 1e-3


def test_hutchinson_variance_falls_as_one_over_n_probes():
    R = 1024
    v = {}
    for n in (1, 4):
        est, _ = _hutchinson_spread("rademacher", n, R, seed=20 + n)
        c = est - est.mean()
        var = c.pow(2).mean()
        se = ((c.pow(4).mean() - var**2) / R).sqrt()  # standard error of a sample variance
        v[n] = (var, se)
    ratio = v[1][0] / v[4][0]
    rel = math.hypot(v[1][1] / v[1][0], v[4][1] / v[4][0])
    assert abs(ratio - 4.0) < 5 * 4.0 * rel


def test_probes_come_from_the_generator():
    sde, mix = VPSDE(), make_mixture(3, seed=7)
    x = mix.sample(4, generator=torch.Generator().manual_seed(5))

    def run(seed):
        return log_likelihood(
            sde, mix.score(sde), x, backend="torch", generator=torch.Generator().manual_seed(seed)
        ).logp

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------------------------
# backends, encode / decode
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_scipy_and_torch_backends_agree(divergence):
    sde, mix = VESDE(), make_mixture(4, seed=8)
    x = mix.sample(16, generator=torch.Generator().manual_seed(6))
    out = {}
    for backend in ("scipy", "torch"):
        out[backend] = log_likelihood(
            sde, mix.score(sde), x, divergence=divergence, backend=backend,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    # each is within ~1e-3 of the same number (same probes for Hutchinson)
    assert (out["scipy"].logp - out["torch"].logp).abs().max() < 2e-3
    assert (out["scipy"].z - out["torch"].z).abs().max() < 1e-3 * sde.sigma_max


@pytest.mark.parametrize("name", ["vp", "ve"])
@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_encode_decode_round_trip(name, backend):
    sde, mix = SDES[name](), make_mixture(3, seed=9)
    x = mix.sample(32, generator=torch.Generator().manual_seed(7))
    z = encode(sde, mix.score(sde), x, backend=backend)
    back = decode(sde, mix.score(sde), z, backend=backend)
    assert z.shape == x.shape
    assert (back - x).abs().max() < 1e-3
    # the latent is the one the likelihood uses
    res = log_likelihood(sde, mix.score(sde), x, divergence="exact", backend=backend)
    assert (res.z - z).abs().max() < 1e-3 * sde.prior_std


@settings(max_examples=6, deadline=None)
@given(
    shape=st.sampled_from([(3, 4), (2, 1, 2, 2), (5, 2, 3)]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    name=st.sampled_from(["vp", "subvp", "ve"]),
)
def test_encode_decode_any_shape_and_dtype(shape, dtype, name):
    sde = SDES[name]()
    d = math.prod(shape[1:])
    mix = make_mixture(d, seed=d, dtype=dtype)
    x = mix.sample(shape[0], generator=torch.Generator().manual_seed(0)).reshape(shape)
    z = encode(sde, mix.score(sde), x, backend="torch")
    assert z.shape == x.shape and z.dtype == dtype
    back = decode(sde, mix.score(sde), z, backend="torch")
    assert (back - x).abs().max() < (1e-3 if dtype == F64 else 3e-3)


# --------------------------------------------------------------------------------------------
# bits per dimension
# --------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    n_bits=st.integers(1, 16),
    lo=st.floats(-5, 5),
    width=st.floats(0.01, 100),
    shape=st.sampled_from([(2, 1), (3, 3, 4, 4), (1, 7)]),
)
def test_bits_per_dim_of_uniform_data_is_n_bits(n_bits, lo, width, shape):
    # data uniform over all 2^n levels (D dims): entropy is exactly n bits per dimension; the
    # dequantised density is uniform on [lo, lo + width]^D, log p = -D log(width)
    x = torch.full(shape, lo + width / 2, dtype=F64)
    D = math.prod(shape[1:])
    logp = torch.full((shape[0],), -D * math.log(width), dtype=F64)
    bpd = bits_per_dim(logp, x, n_bits=n_bits, data_range=(lo, lo + width))
    torch.testing.assert_close(bpd, torch.full_like(bpd, float(n_bits)))


def test_bits_per_dim_of_a_known_discrete_distribution():
    # 2 dims of 2 bits (4 levels) in [-1, 1]; P(k) on the 16 cells; a model whose density is
    # P(k)/Delta^D inside cell k gives bpd = -log2 P(k) / D exactly, and its mean over data
    # drawn from P is the entropy H(P)/D
    g = torch.Generator().manual_seed(0)
    P = torch.rand(4, 4, generator=g, dtype=F64) + 0.1
    P /= P.sum()
    n = 4000
    cells = torch.multinomial(P.reshape(-1), n, replacement=True, generator=g)
    k = torch.stack([cells // 4, cells % 4], 1)
    x = dequantize(k, n_bits=2, data_range=(-1.0, 1.0), generator=g, dtype=F64)
    assert x.min() >= -1 and x.max() < 1
    delta = 2.0 / 4
    logp = P[k[:, 0], k[:, 1]].log() - 2 * math.log(delta)  # density inside the cell
    bpd = bits_per_dim(logp, x, n_bits=2, data_range=(-1.0, 1.0))
    torch.testing.assert_close(bpd, -P[k[:, 0], k[:, 1]].log2() / 2)
    entropy = -(P * P.log2()).sum() / 2
    assert abs(bpd.mean() - entropy) < 5 * bpd.std() / math.sqrt(n)


def test_bits_per_dim_offsets_of_the_paper():
    x = torch.zeros(1, 3, 8, 8)
    zero = torch.zeros(1)
    assert bits_per_dim(zero, x, n_bits=8, data_range=(0.0, 1.0)).item() == pytest.approx(8.0)
    assert bits_per_dim(zero, x, n_bits=8, data_range=(-1.0, 1.0)).item() == pytest.approx(7.0)
    assert bits_per_dim(zero, x, n_bits=5, data_range=(0.0, 255.0)).item() == pytest.approx(
        5 - math.log2(255)
    )


def test_bits_per_dim_accepts_a_likelihood_result():
    sde, mix = VPSDE(), make_mixture(2, seed=1)
    x = mix.sample(3, generator=torch.Generator().manual_seed(0))
    res = log_likelihood(sde, mix.score(sde), x, divergence="exact", backend="torch")
    span = (float(x.min()) - 1.0, float(x.max()) + 1.0)  # bits_per_dim checks x lies in it
    torch.testing.assert_close(
        bits_per_dim(res, x, data_range=span), bits_per_dim(res.logp, x, data_range=span)
    )


# --------------------------------------------------------------------------------------------
# bad input, failures, progress
# --------------------------------------------------------------------------------------------
_MIX = make_mixture(2, seed=0)
_X = _MIX.sample(4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"rtol": 0.0}, ValueError, "rtol"),
        ({"atol": -1e-5}, ValueError, "atol"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": 1.0}, ValueError, r"eps must lie in \(0, T\)"),
        ({"eps": 2.0}, ValueError, "eps"),
        ({"divergence": "trace"}, ValueError, "divergence"),
        ({"noise": "uniform"}, ValueError, "noise"),
        ({"backend": "jax"}, ValueError, "backend"),
        ({"n_probes": 0}, ValueError, "n_probes"),
        ({"n_probes": 1.5}, TypeError, "n_probes"),
        ({"method": "Euler"}, ValueError, "method"),
        ({"backend": "torch", "method": "BDF"}, ValueError, "method"),
        ({"error_norm": "max"}, ValueError, "error_norm"),
        ({"prior_logp": 3}, TypeError, "prior_logp"),
        ({"prior_logp": lambda z: z}, ValueError, "prior_logp"),
        ({"generator": 1}, TypeError, "generator"),
        ({"backend": "scipy", "ode_dtype": torch.float32}, ValueError, "ode_dtype"),
    ],
)
def test_bad_arguments_are_named(kwargs, exc, match):
    sde = VPSDE()
    with pytest.raises(exc, match=match):
        log_likelihood(sde, _MIX.score(sde), _X, **kwargs)


@pytest.mark.parametrize(
    ("x", "exc", "match"),
    [
        (torch.tensor([[0.0, float("nan")]]), ValueError, "x must be finite"),
        (torch.tensor([[0.0, float("inf")]]), ValueError, "x must be finite"),
        (torch.zeros(4), ValueError, r"x\[:, None\]"),
        (torch.zeros(0, 2), ValueError, "B >= 1"),
        (torch.zeros(4, 3), ValueError, "entries per sample"),  # the 2-D oracle refuses
        (torch.zeros(4, 2, dtype=torch.int64), TypeError, "floating"),
        ([[0.0, 1.0]], TypeError, "x must be a torch.Tensor"),
    ],
)
def test_bad_data_is_refused(x, exc, match):
    sde = VPSDE()
    with pytest.raises(exc, match=match):
        log_likelihood(sde, _MIX.score(sde), x)


def test_encode_decode_and_bits_per_dim_check_their_input():
    sde = VPSDE()
    with pytest.raises(ValueError, match="z must be finite"):
        decode(sde, _MIX.score(sde), torch.full((2, 2), float("nan")))
    with pytest.raises(ValueError, match="eps"):
        encode(sde, _MIX.score(sde), _X, eps=-1.0)
    with pytest.raises(TypeError, match="sde"):
        encode(sde.reverse(_MIX.score(sde)), _MIX.score(sde), _X)
    with pytest.raises(ValueError, match="n_bits"):
        bits_per_dim(torch.zeros(4), _X, n_bits=0)
    with pytest.raises(ValueError, match="data_range"):
        bits_per_dim(torch.zeros(4), _X, data_range=(1.0, 0.0))
    with pytest.raises(TypeError, match="data_range"):
        bits_per_dim(torch.zeros(4), _X, data_range=1.0)
    with pytest.raises(ValueError, match="logp must have shape"):
        bits_per_dim(torch.zeros(3), _X)
    with pytest.raises(ValueError, match="k must hold integers"):
        dequantize(torch.tensor([0, 4]), n_bits=2)


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_non_finite_score_raises_with_the_reason(backend):
    sde = VPSDE()

    def bad_score(x, t):
        s = _MIX.score(sde)(x, t)
        return s * float("nan") if t < 0.5 else s

    with pytest.raises(FloatingPointError, match="NaN"):
        log_likelihood(sde, bad_score, _X, backend=backend, divergence="exact")


def test_progress_bar_runs(capsys):
    sde = VPSDE()
    res = log_likelihood(sde, _MIX.score(sde), _X, backend="torch", progress=True)
    assert torch.isfinite(res.logp).all()
    assert "log-likelihood" in capsys.readouterr().err


def test_public_names():
    for name in ("log_likelihood", "LikelihoodResult", "bits_per_dim", "encode", "decode"):
        assert name in sdelab.__all__ and hasattr(sdelab, name)
