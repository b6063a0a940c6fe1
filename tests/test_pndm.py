"""PNDM and IPNDM against diffusers' PNDMScheduler / IPNDMScheduler (float64, same noise levels,
same model, same starting noise), and their bad input. Their orders on the oracle are measured
in tests/test_fast_orders.py.

Grid quirks of diffusers' PNDMScheduler and how the tests meet them:

* its timesteps are training steps ``0 .. num_train_timesteps - 1``; sdelab's `DiscreteVPSDE`
  puts step ``tau`` at ``t = tau / (N - 1)``, and the last step goes to ``final_alpha_cumprod``
  (``alphas_cumprod[0]``, tau = 0, with ``set_alpha_to_one=False``);
* the PRK phase lists each midpoint timestep twice (two evaluations at the midpoint of the step,
  RK4's second and third stage) and the step end once: sdelab's PNDM takes the midpoint of
  its own grid step, so the grid handed to sdelab holds the step ends only;
* ``timestep_spacing="leading"`` does not start at the last training step (with
  ``steps_offset=1``: at ``(n-1) r + 1``): sdelab starts at T, so the test truncates the table
  to the steps ``0 .. (n-1) r + 1`` (the same noise levels, and the model sees the same tau);
  with ``steps_offset=0`` diffusers' last step goes from tau 0 to ``alphas_cumprod[0]``, i.e.
  nowhere: an identity step that costs one model call, which sdelab's strictly decreasing grid
  does not have (the samples agree, diffusers counts one evaluation more);
* not matched: ``"linspace"`` spacing (each PLMS step is ``num_train // n`` training steps long,
  which is not the spacing of the linspace grid, so the sample lands between the listed
  timesteps), an odd ``num_train // n`` (the PRK midpoint is rounded down for the sample but
  the model is called at the rounded-up timestep), and ``set_alpha_to_one=True`` (the last
  step goes to sigma = 0, outside every SDE's grid; sdelab's ``denoise=True`` takes a fresh
  Tweedie step at eps instead of the multistep combination).
"""

import itertools
import math

import pytest
import torch

import sdelab
from sdelab.solvers.grid import Step

diffusers = pytest.importorskip("diffusers")

F64 = torch.float64
SHAPE = (6, 3)


def eps_model(x, timestep):
    """A deterministic, smooth, nonlinear diffusers-style noise model ``model(x, timestep)``."""
    tt = torch.as_tensor(timestep, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return torch.tanh(x) * (0.5 + tt / 1000) + 0.3 * torch.sin(x.roll(1, -1) + tt / 300)


def prior(seed, shape=SHAPE):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def run_pndm_scheduler(sched, x, n):
    """diffusers' own loop in float64: set_timesteps, then model + step per listed timestep."""
    sched.set_timesteps(n)
    sched.alphas_cumprod = sched.alphas_cumprod.to(F64)
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.to(F64)
    for t in sched.timesteps:
        x = sched.step(eps_model(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x, len(sched.timesteps)


def run_sdelab(sde, solver, taus, seed, **kw):
    """sdelab on the training steps ``taus`` (decreasing, the last one the end), same x_T."""
    ts = [tau / (sde.num_train_timesteps - 1) for tau in taus]
    score = sdelab.score_from_diffusers_model(eps_model, sde)
    g = torch.Generator().manual_seed(seed)
    return sdelab.sample(
        sde,
        score,
        solver,
        SHAPE,
        schedule=sdelab.Times(ts),
        eps=ts[-1],
        generator=g,
        dtype=F64,
        **kw,
    )


CONFIGS = [
    dict(beta_schedule="linear"),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
]


@pytest.mark.parametrize("skip_prk", [False, True])
@pytest.mark.parametrize("n", [4, 10, 25])
@pytest.mark.parametrize("cfg", CONFIGS, ids=["linear", "scaled_linear"])
def test_pndm_equals_diffusers_trailing(cfg, n, skip_prk):
    sched = diffusers.PNDMScheduler(
        num_train_timesteps=1000,
        skip_prk_steps=skip_prk,
        set_alpha_to_one=False,
        timestep_spacing="trailing",
        steps_offset=0,
        prediction_type="epsilon",
        **cfg,
    )
    x_diff, nfe_diff = run_pndm_scheduler(sched, prior(n), n)
    r = 1000 // n
    taus = [999 - k * r for k in range(n)] + [
        0
    ]  # diffusers' noise levels; the end: alphas_cumprod[0]
    sde = sdelab.DiscreteVPSDE.from_diffusers(sched.config)
    res = run_sdelab(sde, sdelab.PNDM(skip_prk=skip_prk), taus, n)
    assert rel_diff(res.x, x_diff) < 1e-8
    assert res.nfe == nfe_diff == (n + 1 if skip_prk else n + 9)


@pytest.mark.parametrize("skip_prk", [False, True])
@pytest.mark.parametrize("offset", [0, 1])
def test_pndm_equals_diffusers_leading(offset, skip_prk):
    n, r = 10, 100
    sched = diffusers.PNDMScheduler(
        num_train_timesteps=1000,
        skip_prk_steps=skip_prk,
        set_alpha_to_one=False,
        timestep_spacing="leading",
        steps_offset=offset,
    )
    x_diff, nfe_diff = run_pndm_scheduler(sched, prior(1), n)
    top = (n - 1) * r + offset
    # start at diffusers' first timestep: the table of the training steps 0 .. top
    sde = sdelab.DiscreteVPSDE(
        sdelab.DiscreteVPSDE.from_diffusers(sched.config).alphas_cumprod[: top + 1]
    )
    taus = [top - k * r for k in range(n)] + [0]
    if offset == 0:
        taus = taus[:-1]  # diffusers' last step, tau 0 -> alphas_cumprod[0], is the identity
    res = run_sdelab(sde, sdelab.PNDM(skip_prk=skip_prk), taus, 1)
    assert rel_diff(res.x, x_diff) < 1e-8
    assert res.nfe == nfe_diff - (1 if offset == 0 else 0)


def test_pndm_final_step_to_sigma_zero_is_not_sdelab_denoising():
    """set_alpha_to_one=True: diffusers' last PLMS step goes to sigma = 0 with the multistep
    combination of noise predictions; sdelab stops at tau 0 and denoises with a fresh Tweedie
    step. The two agree up to the last step and then differ (by far more than rounding)."""
    n = 10
    kw = dict(num_train_timesteps=1000, timestep_spacing="trailing", set_alpha_to_one=True)
    x_diff, _ = run_pndm_scheduler(diffusers.PNDMScheduler(**kw), prior(3), n)
    sde = sdelab.DiscreteVPSDE.from_diffusers(diffusers.PNDMScheduler(**kw).config)
    taus = [999 - 100 * k for k in range(n)]  # up to diffusers' last timestep, 99
    ours = run_sdelab(sde, sdelab.PNDM(), [*taus, 0], 3, denoise=True).x
    assert rel_diff(ours, x_diff) > 1e-4


def ipndm_levels(sde, n):
    ts = sdelab.time_grid(sde, n, "uniform", eps=1e-3)
    return ts, [float(sde.std(t)) for t in ts]


@pytest.mark.parametrize("n", [1, 3, 12])
def test_ipndm_equals_diffusers(n):
    """diffusers' IPNDMScheduler runs a v-prediction model on its own VP levels sigma_k
    (``betas``; alpha = sqrt(1 - sigma^2), the model sees atan2(sigma, alpha) 2/pi). Its default
    levels start at sigma = 1 and end at sigma = 0, no time of an SDE with a finite log-SNR;
    ``trained_betas`` sets them, so it gets sdelab's VP levels at a uniform grid."""
    sde = sdelab.VPSDE()
    ts, sigmas = ipndm_levels(sde, n)
    sched = diffusers.IPNDMScheduler(num_train_timesteps=1000, trained_betas=sigmas)
    sched.set_timesteps(n)
    sched.betas = torch.tensor(sigmas, dtype=F64)  # float64 instead of diffusers' float32
    sched.alphas = (1.0 - sched.betas**2) ** 0.5
    sched.timesteps = (torch.atan2(sched.betas, sched.alphas) / math.pi * 2)[:-1]

    def v_model(x, c):
        return eps_model(x, 1000 * torch.as_tensor(c, dtype=x.dtype))

    x = prior(n)
    for c in sched.timesteps:
        x = sched.step(v_model(x, c), c, x).prev_sample

    def score(x, t):  # the same v-model as an sdelab score: eps = sigma x + alpha v
        m, s = float(sde.mean_coeff(t)), float(sde.std(t))
        return -(s * x + m * v_model(x, math.atan2(s, m) / math.pi * 2)) / s

    g = torch.Generator().manual_seed(n)
    ours = sdelab.sample(
        sde, score, sdelab.IPNDM(), SHAPE, schedule=sdelab.Times(ts), generator=g, dtype=F64
    )
    assert rel_diff(ours.x, x) < 1e-8
    assert ours.nfe == n


def test_ipndm_order_one_is_the_ddim_step():
    """IPNDM(order=1) is the transfer alone with a fresh noise prediction: DDIM."""
    sde = sdelab.VPSDE()
    mix = sdelab.GaussianMixture([[-1.0, 0.0], [1.5, 0.5]], [0.7, 0.9])
    score = mix.score(sde)
    g = torch.Generator().manual_seed(0)
    ts = sdelab.time_grid(sde, 5, "logsnr")
    x = sde.prior_sample((8, 2), generator=g, dtype=F64)
    for t, tn in itertools.pairwise(ts):  # DDIM: x' = m'/m x + (sigma' - m' sigma/m) eps
        m, s, mn, sn = (float(f(u)) for u in (t, tn) for f in (sde.mean_coeff, sde.std))
        x = mn / m * x + (sn - mn / m * s) * (-s * score(x, t))
    res = sdelab.sample(
        sde,
        score,
        sdelab.IPNDM(order=1),
        (8, 2),
        steps=5,
        schedule="logsnr",
        generator=torch.Generator().manual_seed(0),
        dtype=F64,
    )
    assert rel_diff(res.x, x) < 1e-12


@pytest.mark.parametrize(
    "sde", [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE(), sdelab.OrnsteinUhlenbeck()], ids=repr
)
@pytest.mark.parametrize(
    "solver", [sdelab.PNDM(), sdelab.PNDM(skip_prk=True), sdelab.IPNDM()], ids=repr
)
def test_float32_run_tracks_float64(sde, solver):
    """float32 through `sdelab.sample` against the same steps in float64 from the same x_T."""
    mix = sdelab.GaussianMixture([[-1.0, 0.0], [1.5, 0.5]], [0.7, 0.9])
    score = mix.score(sde)
    g = torch.Generator().manual_seed(0)
    ours = sdelab.sample(sde, score, solver, (16, 2), steps=12, schedule="logsnr", generator=g)
    assert ours.x.dtype == torch.float32
    ts = sdelab.time_grid(sde, 12, "logsnr")
    x = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0)).double()
    state = solver.init(sde, x, ts)
    for i in range(12):
        step = Step(i, 12, ts[i], ts[i + 1], ts[i] - ts[i + 1])
        x, state = solver.step(sde, score, x, step, state, None)
    assert rel_diff(ours.x.double(), x) < 1e-4


def test_bad_input():
    with pytest.raises(TypeError, match=r"skip_prk must be a bool.*got 1"):
        sdelab.PNDM(skip_prk=1)
    for bad in (0, 5, 2.0, True, "4"):
        with pytest.raises(ValueError, match=r"order must be an integer 1, 2, 3 or 4, got"):
            sdelab.IPNDM(order=bad)
    gbm = sdelab.GeometricBrownianMotion()
    for solver, name in ((sdelab.PNDM(), "PNDM"), (sdelab.IPNDM(), "IPNDM")):
        with pytest.raises(TypeError, match=name):
            solver.init(gbm, torch.zeros(4, 1), [1.0, 0.5])
