"""The Karras / k-diffusion family (Euler, Heun, DPM2, the ancestral variants, DPM++ 2S a, LMS,
EDM's stochastic sampler): equal to diffusers' schedulers in float64, orders and weak errors on
the Gaussian-mixture oracle, bad input.

**How the two sides are made to see the same thing.**

* *Noise levels.* diffusers computes its table $s_k = \\sqrt{(1 - \\bar\\alpha_k)/\\bar\\alpha_k}$
  in float32 and interpolates it (linearly in the timestep, or Karras's rho-ramp). The sdelab
  SDE is built from that float32 table itself (``DiscreteVPSDE(1 / (1 + s_k^2))``, which differs
  from ``DiscreteVPSDE.from_diffusers(config)`` only by the float32 rounding of $s_k$: checked
  below), truncated at the first timestep so that its $T$ is diffusers' first level, and
  sdelab's grid is ``Times(t(s_i))`` with ``t = sde.t_from_log_snr(-log s_i)``: exactly
  diffusers' nonzero levels. diffusers' last step to $s = 0$ is ``denoise=True``.
* *The model.* A deterministic diffusers-style noise model ``model(x, timestep)``. diffusers
  calls it at its own timestep, which for interpolated sigmas is not the timestep sdelab's
  log-linear table gives the same sigma (diffusers interpolates sigma linearly in the
  timestep); so on the diffusers side the model is called at ``tau(sigma)`` of the level the
  scheduler is at (read from its state exactly where its ``scale_model_input`` reads it), and
  on the sdelab side `sdelab.score_from_diffusers_model` calls it at ``sde.timestep(t)`` of the
  grid time: the same noise-level dependence on both sides.
* *float64.* Some schedulers round the sample to float32 in ``step`` and all build their
  tables with ``torch.from_numpy(... float32)``; the module's ``torch`` is swapped for a proxy
  in which ``float32`` means float64 (`_float64_diffusers`), so diffusers' own code runs in
  float64 on the float32-rounded noise levels above.
* *Starting noise.* sdelab draws $x_T$ from ``sde.prior_sample`` with the generator; diffusers
  is given the same draw in its scaled state, $x_T/m(T) = x_T\\sqrt{1 + s_0^2}$ (its pipelines
  scale by ``init_noise_sigma`` $= s_0$, the VE approximation of the same prior) and the same
  generator continues for the ancestral noise, drawn in the same order.
"""

from __future__ import annotations

import inspect
import itertools
import math
import sys

import diffusers
import pytest
import torch
from _oracle import Oracle, mixture_2d
from diffusers.schedulers.deprecated.scheduling_karras_ve import KarrasVeScheduler

import sdelab
from sdelab.solvers._exp import coeffs
from sdelab.solvers.lms import lms_coefficients

# the float64 proxy of the equivalence tests hands numpy tensors it warns about (NumPy 2)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

F64 = torch.float64
SHAPE = (6, 3)
REL = 1e-8


# --- the diffusers side --------------------------------------------------------------------
class _Float64Torch:
    """``torch`` as a diffusers scheduler module sees it: ``float32`` is float64 and
    ``from_numpy`` gives float64 for floating arrays (the values stay the float32-rounded ones)."""

    float32 = torch.float64

    @staticmethod
    def from_numpy(a):
        t = torch.from_numpy(a)
        return t.to(torch.float64) if t.is_floating_point() else t

    def __getattr__(self, name):
        return getattr(torch, name)


@pytest.fixture
def _float64_diffusers(monkeypatch):
    def patch(sched):
        monkeypatch.setattr(sys.modules[type(sched).__module__], "torch", _Float64Torch())
        return sched

    return patch


def model(x: torch.Tensor, timestep) -> torch.Tensor:
    """A smooth nonlinear noise prediction depending on the training step."""
    w = torch.as_tensor(timestep, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) / 1000.0
    return torch.tanh(0.8 * x + 0.3 * torch.sin(3.0 * w)) * (0.6 + 0.5 * w) + 0.2 * x * torch.cos(
        2.0 * w
    )


def _table(sched) -> torch.Tensor:
    ac = sched.alphas_cumprod
    return (((1 - ac) / ac) ** 0.5).to(F64)  # float32 arithmetic, as diffusers does


def _levels(sched) -> list[float]:
    """diffusers' distinct nonzero noise levels, in order."""
    s = torch.unique_consecutive(sched.sigmas.to(F64))
    return [v for v in s.tolist() if v > 0]


def _sde_and_times(sched, levels):
    table = _table(sched)
    top = int(torch.nonzero(table == levels[0])[0]) if (table == levels[0]).any() else None
    assert top is not None, "diffusers' first level is a table entry"
    sde = sdelab.DiscreteVPSDE(1.0 / (1.0 + table[: top + 1] ** 2))
    ts = [min(max(sde.t_from_log_snr(-math.log(v)), 0.0), 1.0) for v in levels]
    assert abs(ts[0] - 1.0) < 1e-12
    ts[0] = 1.0
    ts[-1] = 0.0 if abs(ts[-1]) < 1e-12 else ts[-1]
    assert (
        max(abs(math.exp(-sde.log_snr(t)) / v - 1) for t, v in zip(ts, levels, strict=True)) < 1e-11
    )
    return sde, ts


def _tau(sde, sigma: float) -> float:
    return sde.timestep(min(max(sde.t_from_log_snr(-math.log(sigma)), 0.0), 1.0))


def _sigma_now(sched) -> float:
    """The level at which diffusers evaluates the model now (what its scale_model_input uses)."""
    i = sched.step_index
    name = type(sched).__name__
    if name == "KDPM2DiscreteScheduler" and not sched.state_in_first_order:
        return float(sched.sigmas_interpol[i])
    if name == "KDPM2AncestralDiscreteScheduler" and not sched.state_in_first_order:
        return float(sched.sigmas_interpol[i - 1])
    return float(sched.sigmas[i])


def _run_diffusers(sched, sde, x_t, generator, stop=None):
    """diffusers' own loop (set_timesteps already called), model at tau(sigma)."""
    x = x_t * math.sqrt(1.0 + _levels(sched)[0] ** 2)
    noise = (
        {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
    )
    for k, t in enumerate(sched.timesteps):
        if stop is not None and k == stop:
            break
        inp = sched.scale_model_input(x, t)
        eps = model(inp, _tau(sde, _sigma_now(sched)))
        x = sched.step(eps, t, x, **noise).prev_sample
    return x


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _sdelab(sde, score, solver, ts, *, denoise, seed):
    """sdelab on the explicit grid ``ts`` (x_T from the prior with the seeded generator)."""
    return sdelab.sample(
        sde,
        score,
        solver,
        SHAPE,
        schedule=sdelab.Times(ts),
        eps=ts[-1],
        denoise=denoise,
        generator=torch.Generator().manual_seed(seed),
        dtype=F64,
    )


def _compare(sched, solver, steps, _patch, *, seed=0, full=True):
    _patch(sched)
    sched.set_timesteps(steps)
    levels = _levels(sched)
    sde, ts = _sde_and_times(sched, levels)
    g = torch.Generator().manual_seed(seed)
    x_t = sde.prior_sample(SHAPE, generator=g, dtype=F64)
    stop = None if full else len(levels) - 1
    ref = _run_diffusers(sched, sde, x_t, g, stop=stop)
    score = sdelab.score_from_diffusers_model(model, sde)
    res = _sdelab(sde, score, solver, ts, denoise=full, seed=seed)
    x = res.x if full else res.x / coeffs(sde, ts[-1]).m
    return _rel(x, ref), res, ref, sde, ts


_SPACINGS = ["linspace", "leading", "trailing"]


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("spacing", _SPACINGS)
def test_euler_equals_diffusers(spacing, karras, steps, _float64_diffusers):
    sched = diffusers.EulerDiscreteScheduler(
        timestep_spacing=spacing,
        use_karras_sigmas=karras,
        steps_offset=1,
        final_sigmas_type="zero",
        interpolation_type="linear",
        prediction_type="epsilon",
    )
    rel, res, *_ = _compare(sched, sdelab.Euler(), steps, _float64_diffusers)
    assert rel < REL, rel
    assert res.nfe == steps


_CASES = [  # (diffusers class, sdelab solver, NFE for n levels, with Karras sigmas)
    (diffusers.HeunDiscreteScheduler, sdelab.Heun(), lambda n: 2 * n - 1, False),
    (diffusers.HeunDiscreteScheduler, sdelab.Heun(), lambda n: 2 * n - 1, True),
    (diffusers.KDPM2DiscreteScheduler, sdelab.DPM2(), lambda n: 2 * n - 1, False),
    (diffusers.KDPM2DiscreteScheduler, sdelab.DPM2(), lambda n: 2 * n - 1, True),
    (diffusers.EulerAncestralDiscreteScheduler, sdelab.EulerAncestral(), lambda n: n, None),
    (diffusers.KDPM2AncestralDiscreteScheduler, sdelab.DPM2Ancestral(), lambda n: 2 * n - 1, False),
    (diffusers.KDPM2AncestralDiscreteScheduler, sdelab.DPM2Ancestral(), lambda n: 2 * n - 1, True),
]


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize(
    ("cls", "solver", "nfe", "karras"),
    _CASES,
    ids=[f"{c.__name__}-karras={k}" for c, _, _, k in _CASES],
)
def test_equals_diffusers(cls, solver, nfe, karras, steps, _float64_diffusers):
    """Same levels, model and starting noise; the ancestral ones also draw the same noise (one
    draw per step after the model calls on both sides). EulerAncestralDiscreteScheduler has no
    use_karras_sigmas option."""
    opts = {} if karras is None else {"use_karras_sigmas": karras}
    sched = cls(timestep_spacing="linspace", prediction_type="epsilon", **opts)
    rel, res, *_ = _compare(sched, solver, steps, _float64_diffusers, seed=3)
    assert rel < REL, rel
    assert res.nfe == nfe(steps)


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
def test_lms_equals_diffusers_up_to_its_last_step(spacing, steps, _float64_diffusers):
    """LMS(4) agrees with diffusers' LMSDiscreteScheduler on every step between nonzero levels.
    diffusers' last step to s = 0 is a full 4-point step (it extrapolates the noise prediction
    to s = 0); sdelab's grid ends at eps > 0 and denoise=True takes the first-order (Tweedie)
    step there: the two final samples differ, visibly, by that choice."""
    sched = diffusers.LMSDiscreteScheduler(timestep_spacing=spacing, prediction_type="epsilon")
    rel, *_ = _compare(sched, sdelab.LMS(order=4), steps, _float64_diffusers, full=False)
    assert rel < REL, rel
    # the last step: diffusers' 4-point step to 0 against sdelab's Tweedie step
    rel_full, *_ = _compare(sched, sdelab.LMS(order=4), steps, _float64_diffusers, full=True)
    assert rel_full > 50 * REL, rel_full


def test_lms_coefficients_are_diffusers_quadrature(_float64_diffusers):
    """The closed-form weights equal diffusers' scipy.quad integrals of the Lagrange basis."""
    sched = _float64_diffusers(diffusers.LMSDiscreteScheduler())
    sched.set_timesteps(12)
    s = sched.sigmas.tolist()
    for i in range(len(s) - 1):
        for order in range(1, min(i + 1, 4) + 1):
            ours = lms_coefficients(s, i, order)
            theirs = [sched.get_lms_coefficient(order, i, j) for j in range(order)]
            scale = max(abs(v) for v in theirs)
            assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) <= 1e-11 * scale


def test_sde_from_the_float32_table_is_from_diffusers_up_to_rounding():
    sched = diffusers.EulerDiscreteScheduler()
    a = sdelab.DiscreteVPSDE.from_diffusers(sched.config)
    b = sdelab.DiscreteVPSDE(1.0 / (1.0 + _table(sched) ** 2))
    ts = [k / 999 for k in range(0, 1000, 37)]
    worst = max(abs(math.exp(a.log_nsr(t) - b.log_nsr(t)) - 1) for t in ts)
    assert worst < 4 * 2.0**-24  # a few float32 ulps of s_k


# --- KarrasVeScheduler (deprecated in diffusers, still shipped in 0.42.1: the top-level
# diffusers.KarrasVeScheduler is a placeholder object there, the class lives in
# diffusers.schedulers.deprecated.scheduling_karras_ve) -------------------------------------
def _ve_score(x, sigma):
    """A smooth score of a VE model at noise level sigma (diffusers' KarrasVe model output is
    sigma times it: D = x + sigma * output)."""
    return -(x - 0.5 * torch.tanh(x)) / (1.0 + sigma**2) + 0.1 * torch.sin(x) / (1.0 + sigma)


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("churn", [0.0, 80.0])
def test_edm_stochastic_equals_karras_ve(churn, steps):
    """EDMStochastic on a VESDE against KarrasVeScheduler's add_noise_to_input / step /
    step_correct, with its defaults (sigma_min 0.02, sigma_max 100, S_noise 1.007, S_min 0.05,
    S_max 50) and the same noise. Two diffusers quirks are left out of the loop and shown:
    its ``schedule`` holds the *squares* of the geometric sigma grid (its pipeline uses them as
    sigmas), so the loop below runs on sdelab's Karras levels; and add_noise_to_input draws
    (and discards) noise even when gamma = 0, so the loop calls it only where the churn is on
    (sdelab draws only there)."""
    sched = KarrasVeScheduler(s_churn=churn)
    sched.set_timesteps(steps)  # gamma = min(s_churn / steps, sqrt(2) - 1)
    cfg = sched.config
    geometric = [
        cfg.sigma_max * (cfg.sigma_min / cfg.sigma_max) ** (i / (steps - 1)) for i in range(steps)
    ]
    assert torch.allclose(sched.schedule.flip(0).to(F64), torch.tensor(geometric, dtype=F64) ** 2)

    sde = sdelab.VESDE(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max)
    ts = sdelab.time_grid(sde, steps, sdelab.Karras(7.0), eps=1e-2)
    levels = [coeffs(sde, t).nsr for t in ts]
    solver = sdelab.EDMStochastic(churn, cfg.s_min, cfg.s_max, cfg.s_noise)

    def score(x, t):
        return _ve_score(x, math.exp(-sde.log_snr(t)))

    res = _sdelab(sde, score, solver, ts, denoise=True, seed=5)
    g = torch.Generator().manual_seed(5)
    x = sde.prior_sample(SHAPE, generator=g, dtype=F64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # its churn noise is drawn in the default dtype
    try:
        for s, s_next in itertools.pairwise(levels):
            if solver.gamma(s, steps) > 0:
                x_hat, s_hat = sched.add_noise_to_input(x, s, generator=g)
            else:
                x_hat, s_hat = x, s
            out = sched.step(s_hat * _ve_score(x_hat, s_hat), s_hat, s_next, x_hat)
            out = sched.step_correct(
                s_next * _ve_score(out.prev_sample, s_next),
                s_hat,
                s_next,
                x_hat,
                out.prev_sample,
                out.derivative,
            )
            x = out.prev_sample
        x = sched.step(levels[-1] * _ve_score(x, levels[-1]), levels[-1], 0.0, x).prev_sample
    finally:
        torch.set_default_dtype(default)
    assert _rel(res.x, x) < REL
    assert res.nfe == 2 * steps + 1
    churned = sum(solver.gamma(s, steps) > 0 for s in levels[:-1])
    assert churned == (0 if churn == 0 else sum(cfg.s_min <= s <= cfg.s_max for s in levels[:-1]))


# --- DPM++ 2S ancestral: no diffusers counterpart; the paper's equations in VP coordinates ---
def _dpmpp_2s_ancestral_reference(sde, score, x, ts, eta, generator):
    """Lu et al. 2022b, Algorithm 1 (DPM-Solver++(2S), r = 1/2) written in the VP variables
    (alpha_t = m, sigma_t, lambda_t) from t_i down to the time of s_down, then fresh noise
    s_up * z in the scaled state x/m (the ancestral split of k-diffusion's sampler)."""

    def at(lam):
        t = sde.t_from_log_snr(lam)
        return t, float(sde.mean_coeff(t)), float(sde.std(t))

    def data(x, t, m, sd):
        return (x + sd**2 * score(x, t)) / m

    for t, t_next in itertools.pairwise(ts):
        m, sd, lam = float(sde.mean_coeff(t)), float(sde.std(t)), float(sde.log_snr(t))
        s, s_next = sd / m, float(sde.std(t_next) / sde.mean_coeff(t_next))
        up = min(s_next, eta * (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
        down = (s_next**2 - up**2) ** 0.5
        lam_down = -math.log(down)
        h = lam_down - lam
        t_mid, m_mid, sd_mid = at(lam + h / 2)
        _, m_down, sd_down = at(lam_down)
        d0 = data(x, t, m, sd)
        u = (sd_mid / sd) * x - m_mid * math.expm1(-h / 2) * d0
        d1 = data(u, t_mid, m_mid, sd_mid)
        x_down = (sd_down / sd) * x - m_down * math.expm1(-h) * d1
        m_next = float(sde.mean_coeff(t_next))
        x = m_next * (x_down / m_down)
        if up > 0:
            x = x + m_next * up * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


MIX = sdelab.GaussianMixture([[-1.0, 0.5], [1.5, -0.5]], [[0.8, 0.6], [0.7, 0.9]], [0.5, 0.5])


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.VESDE(sigma_max=20.0)], ids=["vp", "ve"])
def test_dpmpp_2s_ancestral_is_the_papers_2s_plus_ancestral_noise(sde, eta):
    score = MIX.score(sde)
    ts = sdelab.time_grid(sde, 12, "karras", eps=1e-2)
    res = sdelab.sample(
        sde,
        score,
        sdelab.DPMpp2SAncestral(eta=eta),
        (8, 2),
        schedule=sdelab.Times(ts),
        eps=ts[-1],
        generator=torch.Generator().manual_seed(1),
        dtype=F64,
    )
    g = torch.Generator().manual_seed(1)
    x = sde.prior_sample((8, 2), generator=g, dtype=F64)
    ref = _dpmpp_2s_ancestral_reference(sde, score, x, ts, eta, g)
    assert _rel(res.x, ref) < 1e-10
    assert res.nfe == 2 * 12


# --- orders on the oracle -----------------------------------------------------------------
ORDER_EPS = 1e-2
ORDER_SHAPE = (16, 2)


@pytest.fixture(scope="module")
def flow_map():
    """x_T and its image under the exact probability-flow map (DOP853 at 1e-10), VP."""
    sde = sdelab.VPSDE()
    ode = sdelab.ProbabilityFlowODE(method="DOP853", rtol=1e-10, atol=1e-10)
    ref = sdelab.sample(
        sde,
        MIX.score(sde),
        ode,
        ORDER_SHAPE,
        eps=ORDER_EPS,
        generator=torch.Generator().manual_seed(0),
        dtype=F64,
    )
    return sde, ref.x


# ladders where the error is asymptotic on this mixture (Karras grid, rho = 7); LMS's 3- and
# 4-point formulas need longer ladders: their Euler / 2-point warm-up steps dominate before
ORDER_CASES = [
    (sdelab.Euler(), (20, 40, 80)),
    (sdelab.Heun(), (20, 40, 80)),
    (sdelab.DPM2(), (20, 40, 80)),
    (sdelab.DPMpp2SAncestral(eta=0.0), (20, 40, 80)),
    (sdelab.LMS(order=1), (20, 40, 80)),
    (sdelab.LMS(order=2), (40, 80, 160)),
    (sdelab.LMS(order=3), (80, 160, 320)),
    (sdelab.LMS(order=4), (80, 160, 320)),
]


@pytest.mark.parametrize(("solver", "ladder"), ORDER_CASES, ids=lambda v: repr(v))
def test_measured_order_is_declared_order(flow_map, solver, ladder):
    sde, exact = flow_map
    errs = []
    for n in ladder:
        x = sdelab.sample(
            sde,
            MIX.score(sde),
            solver,
            ORDER_SHAPE,
            steps=n,
            schedule="karras",
            eps=ORDER_EPS,
            generator=torch.Generator().manual_seed(0),
            dtype=F64,
        ).x
        errs.append(float((x - exact).norm(dim=1).max()))
    logn = torch.log(torch.tensor(ladder, dtype=F64))
    loge = torch.log(torch.tensor(errs, dtype=F64))
    slope = -float(
        ((logn - logn.mean()) * (loge - loge.mean())).sum() / (logn - logn.mean()).pow(2).sum()
    )
    assert abs(slope - solver.order) <= 0.3, (slope, errs)
    assert solver.stochastic is False


@pytest.mark.parametrize(
    ("solver", "same_as"),
    [
        (sdelab.EDMStochastic(), sdelab.Heun()),
        (sdelab.EulerAncestral(eta=0.0), sdelab.Euler()),
        (sdelab.DPM2Ancestral(eta=0.0), sdelab.DPM2()),
    ],
    ids=lambda v: repr(v),
)
def test_deterministic_limits(solver, same_as):
    sde = sdelab.DiscreteVPSDE.from_betas(torch.linspace(1e-4, 0.02, 1000))
    run = [
        sdelab.sample(
            sde,
            MIX.score(sde),
            s,
            (8, 2),
            steps=7,
            schedule="karras",
            generator=torch.Generator().manual_seed(2),
            dtype=F64,
        )
        for s in (solver, same_as)
    ]
    assert torch.equal(run[0].x, run[1].x) and run[0].nfe == run[1].nfe
    assert solver.stochastic is False and solver.order == same_as.order


# --- the stochastic ones in distribution ------------------------------------------------------
DIST_EPS = 1e-3
DIST_STEPS = 50
DIST_N = 4096
# discretisation allowance (in units of the truth's std) at 50 steps on the Karras grid
DIST_DISC = 0.02


@pytest.fixture(scope="module")
def dist_oracles():
    return {}


@pytest.mark.parametrize(
    ("solver", "sde"),
    [
        (sdelab.EulerAncestral(), sdelab.VPSDE()),
        (sdelab.DPM2Ancestral(), sdelab.VPSDE()),
        (sdelab.DPMpp2SAncestral(), sdelab.VPSDE()),
        (sdelab.DPMpp2SAncestral(eta=0.5), sdelab.VESDE()),
        (sdelab.EDMStochastic(s_churn=40.0, s_tmin=0.05, s_tmax=50.0), sdelab.VPSDE()),
        (sdelab.EDMStochastic(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.0), sdelab.VESDE()),
    ],
    ids=lambda v: repr(v),
)
def test_stochastic_samples_match_the_exact_marginal(dist_oracles, solver, sde):
    key = type(sde).__name__
    if key not in dist_oracles:
        dist_oracles[key] = Oracle(mixture_2d().at(sde, DIST_EPS), DIST_N)
    o = dist_oracles[key]
    res = sdelab.sample(
        sde,
        mixture_2d().score(sde),
        solver,
        (DIST_N, 2),
        steps=DIST_STEPS,
        schedule="karras",
        eps=DIST_EPS,
        generator=torch.Generator().manual_seed(7),
    )
    assert solver.stochastic
    errs = o.errors(res.x, DIST_DISC)
    bad = {k: v for k, v in errs.items() if v[0] > v[1]}
    assert not bad, f"(error, tolerance) {errs}"


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sdelab.EulerAncestral(eta=-0.5), r"eta must be .*>= 0.*-0\.5"),
        (lambda: sdelab.DPM2Ancestral(eta=float("nan")), r"eta must be .*nan"),
        (lambda: sdelab.DPMpp2SAncestral(eta=float("inf")), r"eta must be a finite.*inf"),
        (lambda: sdelab.LMS(order=0), r"order must be an integer in 1\.\.4, got 0"),
        (lambda: sdelab.LMS(order=5), r"order must be an integer in 1\.\.4, got 5"),
        (lambda: sdelab.LMS(order=2.0), r"order must be an integer in 1\.\.4, got 2\.0"),
        (
            lambda: sdelab.EDMStochastic(s_churn=-1.0),
            r"s_churn must be a finite number >= 0, got -1",
        ),
        (lambda: sdelab.EDMStochastic(s_noise=0.0), r"s_noise must be a finite number > 0, got 0"),
        (lambda: sdelab.EDMStochastic(s_tmin=-0.1), r"s_tmin must be a finite number >= 0"),
        (
            lambda: sdelab.EDMStochastic(s_tmin=2.0, s_tmax=1.0),
            r"s_tmax must be >= s_tmin = 2\.0.*got 1\.0",
        ),
    ],
)
def test_bad_options_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


class _CubicSDE(sdelab.SDE):
    """dx = -x^3 dt + dw: no Gaussian perturbation kernel, so no data prediction."""

    prior_std = 1.0

    def drift(self, x, t):
        return -(x**3)

    def diffusion(self, t):
        return 1.0

    def marginal(self, x0, t):
        raise NotImplementedError


@pytest.mark.parametrize(
    "solver", [sdelab.Heun(), sdelab.LMS(), sdelab.EDMStochastic()], ids=lambda v: repr(v)
)
def test_needs_a_linear_sde(solver):
    with pytest.raises(TypeError, match=f"{type(solver).__name__} needs a linear SDE.*_CubicSDE"):
        sdelab.sample(_CubicSDE(), lambda x, t: -x, solver, (4, 2), steps=3)
