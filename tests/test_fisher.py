"""fisher_divergence against known answers: zero at the exact score, lambda-weighted |c|^2 for a
score off by a constant c, the denoising-loss gap of Vincent (2011) for a non-constant error, a
standard error that matches the spread over seeds, and bad input."""

import math

import pytest
import torch

import sdelab
from sdelab.experiments.config.problems import builtin_mixture
from sdelab.training import FisherDivergence, dsm_loss, fisher_divergence

MIX = builtin_mixture("gmm2d")
SDES = {
    "vp": sdelab.VPSDE(),
    "subvp": sdelab.SubVPSDE(),
    "ve": sdelab.VESDE(sigma_min=0.01, sigma_max=10.0),
}
EPS = 1e-3


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _x0(n, seed=0):
    return MIX.sample(n, generator=_gen(seed))


def _mean_weight(sde, weighting, eps=EPS, n=200_001):
    """E_{t ~ U(eps, T)} lambda(t) by the trapezoid rule on a fine float64 grid."""
    t = torch.linspace(eps, sde.T, n, dtype=torch.float64)
    if weighting == "sigma2":
        lam = sde.std(t) ** 2
    elif weighting == "likelihood":
        lam = sde.diffusion(t) ** 2
    else:
        lam = torch.ones_like(t)
    return float(torch.trapezoid(lam, t)) / (sde.T - eps)


def _single_gaussian_score(mu, s, sde):
    """Closed-form score of N(mu, diag(s^2)) perturbed by sde: -(x - m mu)/(m^2 s^2 + sigma^2)."""

    def score(x, t):
        m, std = sde.marginal_coeffs(t)
        m, std = m[:, None], std[:, None]
        return -(x - m * mu) / (m * m * s * s + std * std)

    return score


@pytest.mark.parametrize("name", list(SDES))
def test_exact_score_gives_zero(name):
    sde = SDES[name]
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    s = torch.tensor([0.5, 1.5], dtype=torch.float64)
    one = sdelab.GaussianMixture(mu[None], s[None])
    x0 = one.sample(500, generator=_gen(1))
    res = fisher_divergence(
        sde, _single_gaussian_score(mu, s, sde), one, x0, eps=EPS, generator=_gen(2)
    )
    assert isinstance(res, FisherDivergence)
    # the closed form and the oracle agree to rounding: the estimator adds nothing
    assert 0.0 <= res.value < 1e-20 and res.stderr < 1e-20
    assert res.n == 500 * 8


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("weighting", ["sigma2", "likelihood", "none"])
def test_constant_offset_gives_weighted_c_squared(name, weighting):
    sde = SDES[name]
    exact = MIX.score(sde)
    c = torch.tensor([0.3, -0.4], dtype=torch.float64)  # |c|^2 = 0.25
    res = fisher_divergence(
        sde, lambda x, t: exact(x, t) + c, MIX, _x0(400), weighting=weighting, n_t=4,
        eps=EPS, generator=_gen(3),
    )  # fmt: skip
    expected = 0.25 * _mean_weight(sde, weighting)
    if weighting == "none":  # lambda = 1: every term is |c|^2 exactly
        assert res.value == pytest.approx(0.25, rel=1e-10)
        assert res.stderr < 1e-10
    else:
        assert res.stderr > 0
        assert abs(res.value - expected) < 5 * res.stderr + 1e-9 * expected
        # and the standard error is a small fraction of the value at this sample size
        assert res.stderr < 0.05 * expected


def test_matches_the_denoising_loss_gap():
    """Vincent (2011): dsm_loss(s) - dsm_loss(exact) = D_sigma2(s) for any s, here a score with
    a non-constant error; both sides are Monte-Carlo estimates compared within their errors."""
    sde = SDES["vp"]
    exact = MIX.score(sde)

    def model(x, t):
        return 0.7 * exact(x, t) + 0.2 * x

    gaps = []
    for k in range(24):  # same seed for both losses: common random numbers
        x0 = _x0(2000, seed=100 + k)
        lm = dsm_loss(sde, model, x0, eps=EPS, generator=_gen(k))
        le = dsm_loss(sde, exact, x0, eps=EPS, generator=_gen(k))
        gaps.append(float(lm - le))
    gaps = torch.tensor(gaps, dtype=torch.float64)
    gap, gap_se = float(gaps.mean()), float(gaps.std()) / math.sqrt(len(gaps))
    res = fisher_divergence(sde, model, MIX, _x0(4000, seed=7), eps=EPS, generator=_gen(8))
    assert res.value > 0.05  # a real error, well above both standard errors
    assert abs(res.value - gap) < 5 * math.hypot(res.stderr, gap_se)


def test_stderr_matches_the_spread_over_seeds():
    sde = SDES["vp"]
    exact = MIX.score(sde)

    def model(x, t):
        return 0.8 * exact(x, t)

    runs = [
        fisher_divergence(sde, model, MIX, _x0(200, seed=s), n_t=2, eps=EPS, generator=_gen(s))
        for s in range(40)
    ]
    values = torch.tensor([r.value for r in runs], dtype=torch.float64)
    se = torch.tensor([r.stderr for r in runs], dtype=torch.float64).mean()
    ratio = float(values.std() / se)
    # the sample std of 40 values is within ~+-11% of the truth at 1 sd; allow ~4 sd either way
    # plus the scatter of the (heavy-tailed) per-run estimates of the standard error
    assert 0.6 < ratio < 1.6, ratio


def test_float32_and_stratified_times_stay_inside_the_span():
    sde = SDES["vp"]
    seen = []

    def score(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    x0 = _x0(64).float()
    res = fisher_divergence(
        sde, score, MIX.to(dtype=torch.float32), x0, n_t=16, batch_size=100, generator=_gen(0)
    )
    t = torch.cat(seen)
    assert t.dtype == torch.float32 and t.numel() == 64 * 16
    assert float(t.min()) >= 1e-5 and float(t.max()) <= sde.T
    # stratified: each row's 16 times fall one in each sixteenth of [eps, T]
    strata = ((t.reshape(64, 16) - 1e-5) / (sde.T - 1e-5) * 16).floor().clamp(max=15)
    assert torch.equal(strata, torch.arange(16.0).expand(64, 16))
    assert math.isfinite(res.value) and res.value > 0


def _zero(x, t):
    return torch.zeros_like(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weighting": "fisher"}, "weighting must be one of .*'fisher'"),
        ({"n_t": 0}, "n_t must be an integer >= 1, got 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"eps": 0.0}, "eps must lie in"),
        ({"eps": 1.5}, "eps must lie in"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fisher_divergence(SDES["vp"], _zero, MIX, _x0(8), **kwargs)


def test_bad_data_and_scores():
    sde, x0 = SDES["vp"], _x0(8)
    bad = x0.clone()
    bad[5, 1] = math.nan
    with pytest.raises(ValueError, match="x0 must be finite.*row 5"):
        fisher_divergence(sde, _zero, MIX, bad)
    with pytest.raises(ValueError, match="x0 must hold at least one row"):
        fisher_divergence(sde, _zero, MIX, x0[:0])
    with pytest.raises(TypeError, match="score must be callable"):
        fisher_divergence(sde, "not a score", MIX, x0)
    with pytest.raises(ValueError, match="score"):
        fisher_divergence(sde, lambda x, t: x[:, :1], MIX, x0)
    with pytest.raises(TypeError, match="sde must be a LinearSDE"):
        fisher_divergence(sdelab.GeometricBrownianMotion(), _zero, MIX, x0)


def test_host_reads_do_not_grow_with_the_number_of_batches():
    """On a GPU each host read is a synchronisation: the estimator reads once at the end (plus
    the one-off input checks), however many batches it evaluates."""
    from test_host_sync import count_host_reads

    sde, x0 = SDES["vp"], _x0(256)
    counts = []
    for batch_size in (2048, 64):  # 1 batch, then 16
        with count_host_reads() as stats:
            fisher_divergence(sde, _zero, MIX, x0, batch_size=batch_size, generator=_gen(0))
        counts.append(stats["reads"])
    assert counts[0] == counts[1], counts
