"""`sdelab.sample` and the fixed-grid solvers: NFE, determinism, the PC order, the update
formulas against the paper's, the Langevin corrector's stationary bias, denoising, the
trajectory, adaptive-solver wrapping and bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from _oracle import CallCounter
from hypothesis import given, settings
from hypothesis import strategies as st

from sdelab import (
    PC,
    SDE,
    VESDE,
    VPSDE,
    AncestralSampling,
    AnnealedLangevin,
    EulerMaruyama,
    GaussianMixture,
    Langevin,
    ReverseDiffusion,
    SampleResult,
    SubVPSDE,
    sample,
    time_grid,
)
from sdelab.solvers import AdaptiveResult, AdaptiveSolver, CountingScore

SOLVERS = [
    EulerMaruyama(),
    EulerMaruyama(probability_flow=True),
    ReverseDiffusion(),
    ReverseDiffusion(probability_flow=True),
    AncestralSampling(),
    AncestralSampling(variance="transition"),
    Langevin(snr=0.2, n_steps=2),
    AnnealedLangevin(snr=0.2, n_steps=2),
    PC(ReverseDiffusion(), Langevin(n_steps=3)),
    PC(EulerMaruyama(probability_flow=True), AnnealedLangevin()),
    PC(AncestralSampling(), None),
    PC(None, Langevin()),
]
SDES = [VPSDE(), SubVPSDE(), VESDE()]
ids = [repr(s) for s in SOLVERS]


class GaussianScore:
    r"""Exact score of $p_t$ for data $\mathcal N(0, s_0^2 I)$ of any shape under a linear SDE."""

    def __init__(self, sde, s0: float = 0.7) -> None:
        self.sde, self.s0 = sde, s0

    def var(self, t):
        return self.sde.mean_coeff(t) ** 2 * self.s0**2 + self.sde.std(t) ** 2

    def __call__(self, x, t):
        return -x / self.var(t)


class CubicSDE(SDE):
    """A non-linear SDE dx = -x^3 dt + dw (no Gaussian transition law)."""

    prior_std = 1.0

    def drift(self, x, t):
        return -(x**3)

    def diffusion(self, t):
        return 1.0 if not isinstance(t, torch.Tensor) else torch.ones_like(t)

    def marginal(self, x0, t):
        raise NotImplementedError


# --- NFE, determinism, order -----------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS, ids=ids)
@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_nfe_is_counted_and_seed_determines_samples(solver, sde):
    counter = CallCounter(GaussianScore(sde))
    kw = dict(steps=7, generator=torch.Generator().manual_seed(1))
    a = sample(sde, counter, solver, (64, 3), **kw)
    assert isinstance(a, SampleResult) and a.steps == 7
    assert a.nfe == counter.calls > 0
    b = sample(
        sde,
        GaussianScore(sde),
        solver,
        (64, 3),
        steps=7,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(a.x, b.x)
    c = sample(
        sde,
        GaussianScore(sde),
        solver,
        (64, 3),
        steps=7,
        generator=torch.Generator().manual_seed(2),
    )
    assert not torch.allclose(a.x, c.x)
    counter.calls = 0
    d = sample(
        sde,
        counter,
        solver,
        (64, 3),
        steps=7,
        denoise=True,
        generator=torch.Generator().manual_seed(1),
    )
    assert d.nfe == counter.calls == a.nfe + 1


def test_solver_alone_equals_pc_with_none():
    sde, score = VPSDE(), GaussianScore(VPSDE())

    def run(solver):
        return sample(
            sde, score, solver, (32, 2), steps=5, generator=torch.Generator().manual_seed(0)
        ).x

    assert torch.equal(run(ReverseDiffusion()), run(PC(ReverseDiffusion(), None)))
    assert torch.equal(run(Langevin()), run(PC(None, Langevin())))


def test_pc_runs_predictor_first_then_corrector_at_the_new_time():
    calls = []

    def score(x, t):
        calls.append(t)
        return -x

    res = sample(VPSDE(), score, PC(EulerMaruyama(), Langevin(n_steps=2)), (4, 2), steps=3, eps=0.1)
    t0, t1, t2, t3 = time_grid(VPSDE(), 3, eps=0.1)
    assert calls == [t0, t1, t1, t1, t2, t2, t2, t3, t3]  # P(t0), C(t1) x2, P(t1), ...
    assert res.nfe == 9
    assert [t0, t1, t2, t3] == pytest.approx([1.0, 0.7, 0.4, 0.1]) and t3 == 0.1


def test_time_grid_and_trajectory():
    sde = VPSDE()

    def run(**kw):
        g = torch.Generator().manual_seed(0)
        return sample(
            sde, GaussianScore(sde), EulerMaruyama(), (16, 2), steps=10, eps=0.05, generator=g, **kw
        )

    res = run(return_trajectory=True)
    assert res.trajectory.shape == (11, 16, 2) and res.times.shape == (11,)
    assert res.times[0] == 1.0 and res.times[-1] == pytest.approx(0.05)
    assert torch.allclose(res.times.diff(), torch.full((10,), -0.095))
    assert torch.equal(res.trajectory[-1], res.x)
    prior = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.trajectory[0], prior)  # starts from the prior draw
    plain = run()
    assert plain.trajectory is None and plain.times is None and torch.equal(plain.x, res.x)


def test_progress_bar_does_not_change_samples(capsys):
    sde = VESDE()

    def run(**kw):
        g = torch.Generator().manual_seed(3)
        return sample(sde, GaussianScore(sde), Langevin(), (8, 2), steps=5, generator=g, **kw)

    a, b = run(progress=True), run()
    assert torch.equal(a.x, b.x)
    assert "5/5" in capsys.readouterr().err


def test_dtype_and_device_follow_arguments():
    sde = SubVPSDE()
    for dtype in (torch.float32, torch.float64):
        res = sample(
            sde,
            GaussianScore(sde),
            PC(AncestralSampling(), Langevin()),
            (5, 2, 3),
            steps=3,
            dtype=dtype,
            generator=torch.Generator().manual_seed(0),
        )
        assert res.x.dtype == dtype and res.x.shape == (5, 2, 3) and res.x.device.type == "cpu"


# --- update rules against the paper's formulas ---------------------------------------------
def _one_step(solver, sde, score, t, dt, seed=0):
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(9))
    return x, solver.update(sde, score, x, t, dt, torch.Generator().manual_seed(seed))


def test_vp_reverse_diffusion_and_ancestral_are_the_papers_rules():
    """Song et al. 2021, eq. 47 / Algorithm 3 (VP): reverse diffusion
    (2 - sqrt(1 - b)) x + b s + sqrt(b) z and ancestral (x + b s)/sqrt(1 - b) + sqrt(b) z with
    1 - b = m(t)^2 / m(t - dt)^2 of the sampler's own step dt."""
    sde, t, dt = VPSDE(), 0.7, 0.05
    score = GaussianScore(sde)
    b = 1 - sde.mean_coeff(t) ** 2 / sde.mean_coeff(t - dt) ** 2
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    x, rd = _one_step(ReverseDiffusion(), sde, score, t, dt)
    s = score(x, t)
    assert torch.allclose(rd, (2 - math.sqrt(1 - b)) * x + b * s + math.sqrt(b) * z, atol=1e-6)
    _, anc = _one_step(AncestralSampling(variance="transition"), sde, score, t, dt)
    assert torch.allclose(anc, (x + b * s) / math.sqrt(1 - b) + math.sqrt(b) * z, atol=1e-6)
    # the posterior variance: DDPM's beta-tilde = b (1 - m(t-dt)^2) / (1 - m(t)^2)
    _, post = _one_step(AncestralSampling(), sde, score, t, dt)
    bt = b * (1 - sde.mean_coeff(t - dt) ** 2) / (1 - sde.mean_coeff(t) ** 2)
    assert torch.allclose(post, (x + b * s) / math.sqrt(1 - b) + math.sqrt(bt) * z, atol=1e-6)


def test_ve_reverse_diffusion_is_smld():
    """VE (Algorithm 2): x + (sigma_i^2 - sigma_{i-1}^2) s + sqrt(sigma_i^2 - sigma_{i-1}^2) z."""
    sde, t, dt = VESDE(), 0.6, 0.1
    score = GaussianScore(sde)
    v = sde.sigma(t) ** 2 - sde.sigma(t - dt) ** 2
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    x, rd = _one_step(ReverseDiffusion(), sde, score, t, dt)
    assert torch.allclose(rd, x + v * score(x, t) + math.sqrt(v) * z, rtol=1e-5, atol=1e-4)


def test_probability_flow_predictors_are_deterministic_euler_steps():
    sde, t, dt = VPSDE(), 0.5, 0.01
    score = GaussianScore(sde)
    x, em = _one_step(EulerMaruyama(probability_flow=True), sde, score, t, dt, seed=0)
    _, em2 = _one_step(EulerMaruyama(probability_flow=True), sde, score, t, dt, seed=1)
    assert torch.equal(em, em2)
    beta = sde.beta(t)
    expected = x - (-0.5 * beta * x - 0.5 * beta * score(x, t)) * dt  # eq. 13, one Euler step
    assert torch.allclose(em, expected, atol=1e-6)


# --- the Langevin corrector's stationary bias ------------------------------------------------
def _stationary_var(corrector, sde, t, dt, s0, n_iter, B=16384, d=2):
    """Run the corrector alone at fixed t with the exact score of N(0, s^2 I), s^2 = Var p_t,
    from exact draws; return (empirical variance, s^2, its standard error)."""
    score = GaussianScore(sde, s0)
    s2 = score.var(t)
    g = torch.Generator().manual_seed(5)
    x = math.sqrt(s2) * torch.randn(B, d, generator=g)
    for _ in range(n_iter):
        x = corrector.update(sde, score, x, t, dt, g)
    return float(x.pow(2).mean()), s2, math.sqrt(2 / (B * d))


@pytest.mark.parametrize("snr", [0.16, 0.5])
def test_langevin_stationary_bias_is_one_plus_snr_squared(snr):
    r"""With the batch-averaged SNR rule the step is eps = 2 r^2 s^4 / V at stationary variance
    V, and unadjusted Langevin on N(0, s^2) is stationary at V = s^2 / (1 - eps / 2 s^2);
    together V = s^2 (1 + r^2) (VE: alpha = 1), whatever the number of steps."""
    sde = VESDE()
    for n_iter in (60, 300):
        v, s2, rel_se = _stationary_var(Langevin(snr=snr), sde, 0.5, 0.01, 0.5, n_iter)
        expected = s2 * (1 + snr**2)
        assert abs(v - expected) < 5 * rel_se * expected, (n_iter, v / s2, 1 + snr**2)
    if snr == 0.5:  # not s^2 / (1 - r^2) = 1.333 s^2, the pure-noise annealed rule below
        assert v / s2 < 1 / (1 - snr**2) - 10 * rel_se


def test_langevin_vp_step_uses_alpha_of_the_samplers_grid():
    """VP: eps_i = 2 alpha_i (r ||z|| / ||s||)^2 with alpha_i = 1 - beta_i of the sampler's own
    dt, so V = s^2 (1 + alpha_i r^2); on a coarse grid alpha_i is far from 1."""
    sde, t, dt, snr = VPSDE(), 0.9, 0.1, 1.0
    alpha = sde.mean_coeff(t) ** 2 / sde.mean_coeff(t - dt) ** 2
    assert alpha < 0.2
    v, s2, rel_se = _stationary_var(Langevin(snr=snr), sde, t, dt, 0.5, 60)
    expected = s2 * (1 + alpha * snr**2)
    assert abs(v - expected) < 5 * rel_se * expected, (v / s2, 1 + alpha * snr**2)


def test_annealed_langevin_stationary_bias():
    r"""Annealed Langevin: eps = 2 (r sigma(t))^2, so V = s^2 / (1 - r^2 sigma(t)^2 / s^2);
    for pure noise (s = sigma(t)) this is the s / sqrt(1 - r^2) of the issue."""
    sde, t, snr = VESDE(), 0.5, 0.5
    for s0, n_iter in ((0.5, 60), (0.5, 300), (1e-4, 60)):
        v, s2, rel_se = _stationary_var(AnnealedLangevin(snr=snr), sde, t, 0.01, s0, n_iter)
        expected = s2 / (1 - snr**2 * sde.std(t) ** 2 / s2)
        assert abs(v - expected) < 5 * rel_se * expected, (s0, n_iter, v / s2)
    assert v / s2 == pytest.approx(1 / (1 - snr**2), rel=5 * rel_se)


# --- denoising -------------------------------------------------------------------------------
def test_denoise_is_tweedie():
    sde, eps, s0 = VPSDE(), 0.3, 0.6
    mix = GaussianMixture([[0.0, 0.0]], [s0])
    score = mix.score(sde)
    kw = dict(steps=40, eps=eps)
    noisy = sample(
        sde, score, EulerMaruyama(), (8192, 2), generator=torch.Generator().manual_seed(0), **kw
    )
    den = sample(
        sde,
        score,
        EulerMaruyama(),
        (8192, 2),
        denoise=True,
        generator=torch.Generator().manual_seed(0),
        **kw,
    )
    m, std = sde.mean_coeff(eps), sde.std(eps)
    assert torch.allclose(den.x, (noisy.x + std**2 * score(noisy.x, eps)) / m, atol=1e-5)
    # E[x0 | x_t] for Gaussian data: variance s0^4 m^2 / (m^2 s0^2 + std^2) (shrunk towards 0)
    expected = s0**4 * m**2 / (m**2 * s0**2 + std**2)
    rel_se = math.sqrt(2 / den.x.numel())
    assert abs(float(den.x.var(0).mean()) / expected - 1) < 5 * rel_se + 0.02  # 0.02: 40 steps


def test_denoise_needs_a_linear_sde():
    with pytest.raises(TypeError, match="denoise=True needs a linear SDE"):
        sample(CubicSDE(), lambda x, t: -x, EulerMaruyama(), (4, 2), steps=2, denoise=True)


def test_nonlinear_sde_runs_em_reverse_diffusion_and_langevin_but_not_ancestral():
    sde = CubicSDE()
    for solver in (EulerMaruyama(), ReverseDiffusion(), PC(EulerMaruyama(), Langevin())):
        assert sample(sde, lambda x, t: -x, solver, (4, 2), steps=3).x.shape == (4, 2)
    for solver, what in (
        (AncestralSampling(), "AncestralSampling"),
        (AnnealedLangevin(), "AnnealedLangevin"),
    ):
        with pytest.raises(TypeError, match=f"{what} needs a linear SDE"):
            sample(sde, lambda x, t: -x, solver, (4, 2), steps=3)


# --- adaptive solvers are wrapped, not looped ------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _EulerODE(AdaptiveSolver):
    """A stand-in adaptive solver: probability-flow Euler with steps (default 10)."""

    stochastic = False

    def solve(
        self, sde, score, x, t_start, t_end, *, steps, generator, progress, return_trajectory
    ):
        n = steps or 10
        ts = torch.linspace(t_start, t_end, n + 1, dtype=torch.float64)
        traj = [x]
        for i in range(n):
            x = EulerMaruyama(probability_flow=True).update(
                sde, score, x, float(ts[i]), float(ts[i] - ts[i + 1]), None
            )
            traj.append(x)
        return AdaptiveResult(
            x,
            n,
            ts if return_trajectory else None,
            torch.stack(traj) if return_trajectory else None,
        )


def test_adaptive_solver_is_called_with_counting_score():
    sde = VPSDE()
    counter = CallCounter(GaussianScore(sde))
    res = sample(sde, counter, _EulerODE(), (16, 2), denoise=True, return_trajectory=True)
    assert res.steps == 10 and res.nfe == counter.calls == 11
    assert res.trajectory.shape == (11, 16, 2) and res.times[0] == 1.0
    res = sample(sde, counter, _EulerODE(), (16, 2), steps=4)
    assert res.steps == 4 and res.trajectory is None
    with pytest.raises(FloatingPointError, match="first at score evaluation 1 of 4"):
        sample(sde, lambda x, t: x * float("nan"), _EulerODE(), (16, 2), steps=4)


# --- non-finite values ---------------------------------------------------------------------
def test_nan_score_is_reported_with_its_step():
    sde, steps = VPSDE(), 100

    def score(x, t):
        return -x * (float("nan") if t < 0.5 else 1.0)

    grid = time_grid(sde, steps, eps=1e-3)
    first = next(i for i, t in enumerate(grid) if t < 0.5)  # 0-based step index
    with pytest.raises(
        FloatingPointError, match=f"evaluation {first + 1} of {steps}.*step {first + 1} of {steps}"
    ):
        sample(sde, score, EulerMaruyama(), (8, 2), steps=steps)
    # PC(EM, 2 x Langevin), predictor first: step j (1-based) makes its predictor call at
    # t_{j-1} and its 2 corrector calls at t_j, so t_first is first met by the corrector of
    # step `first`, at evaluation 3 (first - 1) + 2
    with pytest.raises(
        FloatingPointError, match=f"evaluation {3 * (first - 1) + 2} of .*step {first} of"
    ):
        sample(sde, score, PC(EulerMaruyama(), Langevin(n_steps=2)), (8, 2), steps=steps)


def test_nan_only_in_denoising_step_is_reported_as_such():
    def score(x, t):
        return -x * (float("nan") if t == 1e-3 else 1.0)

    sde = VPSDE()
    sample(sde, score, EulerMaruyama(), (4, 2), steps=3)  # the last step starts at t_2 > eps
    with pytest.raises(FloatingPointError, match=r"evaluation 4 of 4 \(in the final denoising"):
        sample(sde, score, EulerMaruyama(), (4, 2), steps=3, denoise=True)


def test_diverging_solver_is_reported():
    with pytest.raises(FloatingPointError, match="the solver diverged"):
        # a finite score (3e38 < float32 max) whose step g^2 dt * s overflows
        sample(VESDE(), lambda x, t: torch.full_like(x, 3e38), EulerMaruyama(), (4, 2), steps=3)


def test_counting_score_finds_first_bad_call_across_folds():
    for bad in (1, 255, 256, 257, 600):
        c = CountingScore(lambda x, t, b=bad: x * (float("inf") if t in (b, b + 3) else 1.0))
        for i in range(1, 700):
            c(torch.ones(3, 2), i)
        assert c.nfe == 699 and c.first_nonfinite() == bad and bool(c.nonfinite)
        with pytest.raises(FloatingPointError, match=f"evaluation {bad} of 699"):
            c.check()
    c = CountingScore(lambda x, t: x)
    c(torch.ones(2), 0.5)
    c.check()
    assert c.first_nonfinite() == 0 and not bool(c.nonfinite)


# --- bad input -------------------------------------------------------------------------------
def _bad(**over):
    kw = dict(sde=VPSDE(), score=lambda x, t: -x, solver=EulerMaruyama(), shape=(4, 2), steps=3)
    kw.update(over)
    return sample(kw.pop("sde"), kw.pop("score"), kw.pop("solver"), kw.pop("shape"), **kw)


@pytest.mark.parametrize(
    ("over", "exc", "match"),
    [
        ({"steps": 0}, ValueError, "steps must be an integer >= 1, got 0"),
        ({"steps": 2.5}, TypeError, "steps must be an integer"),
        ({"eps": 0.0}, ValueError, "eps must be a finite number > 0, got 0.0"),
        ({"eps": -0.1}, ValueError, "eps must be"),
        ({"eps": float("nan")}, ValueError, "eps must be"),
        ({"eps": 1.0}, ValueError, r"eps must lie in \(0, T\) = \(0, 1.0\), got 1.0"),
        ({"eps": 2}, ValueError, r"eps must lie in \(0, T\)"),
        ({"shape": (0, 2)}, ValueError, "shape must be"),
        ({"shape": ()}, ValueError, "shape must be"),
        ({"shape": "ab"}, TypeError, "shape must be a sequence of ints"),
        ({"solver": "em"}, TypeError, "solver must be an sdelab solver"),
        ({"solver": EulerMaruyama}, TypeError, r"did you mean EulerMaruyama\(\)"),
        ({"sde": "vp"}, TypeError, "sde must be a forward sdelab SDE"),
        ({"score": 3}, TypeError, "score must be callable"),
        ({"score": lambda x, t: x[:, :1]}, ValueError, r"shaped like x \(4, 2\), got \(4, 1\)"),
        ({"score": lambda x, t: 1.0}, ValueError, "shaped like x"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(over, exc, match):
    with pytest.raises(exc, match=match):
        _bad(**over)


def test_shape_that_does_not_fit_the_score():
    mix = GaussianMixture([[0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match="2 entries per sample"):
        sample(VPSDE(), mix.score(VPSDE()), EulerMaruyama(), (4, 3), steps=2)


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda: Langevin(snr=0.0), ValueError, "snr must be a finite number > 0, got 0.0"),
        (lambda: Langevin(snr=-1), ValueError, "snr must be"),
        (lambda: AnnealedLangevin(snr=float("nan")), ValueError, "snr must be"),
        (lambda: Langevin(n_steps=0), ValueError, "n_steps must be an integer >= 1, got 0"),
        (lambda: AnnealedLangevin(n_steps=1.5), TypeError, "n_steps must be an integer"),
        (
            lambda: EulerMaruyama(probability_flow="yes"),
            TypeError,
            "probability_flow must be a bool",
        ),
        (
            lambda: ReverseDiffusion(probability_flow=1),
            TypeError,
            "probability_flow must be a bool",
        ),
        (lambda: AncestralSampling(variance="beta"), ValueError, "variance must be one of"),
        (lambda: PC(None, None), ValueError, "PC needs a predictor, a corrector or both"),
        (
            lambda: PC(Langevin(), EulerMaruyama()),
            TypeError,
            "predictor must be a fixed-grid solver",
        ),
        (lambda: PC(EulerMaruyama(), EulerMaruyama()), TypeError, "corrector must be a Corrector"),
    ],
)
def test_bad_solver_options(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_solvers_are_immutable_values():
    s = Langevin()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.snr = 0.3
    assert Langevin(0.2, 2) == Langevin(snr=0.2, n_steps=2)
    assert EulerMaruyama.weak_order == 1.0 and EulerMaruyama().strong_order == 1.0


# --- property test: any shape, dtype, solver, SDE, grid --------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    solver=st.sampled_from(SOLVERS),
    sde=st.sampled_from(SDES),
    batch=st.integers(1, 5),
    rest=st.lists(st.integers(1, 3), max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    steps=st.integers(1, 6),
    eps=st.floats(1e-4, 0.5),
    seed=st.integers(0, 2**16),
)
def test_any_shape_dtype_and_grid(solver, sde, batch, rest, dtype, steps, eps, seed):
    shape = (batch, *rest)
    counter = CallCounter(GaussianScore(sde))
    res = sample(
        sde,
        counter,
        solver,
        shape,
        steps=steps,
        eps=eps,
        dtype=dtype,
        generator=torch.Generator().manual_seed(seed),
    )
    assert res.x.shape == shape and res.x.dtype == dtype
    assert res.nfe == counter.calls and res.steps == steps
    assert bool(torch.isfinite(res.x).all())
