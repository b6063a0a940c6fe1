"""DDIM and DPM-Solver / DPM-Solver++: equal to diffusers 0.42.1 on the same noise levels, model
and starting noise (float64, 1e-8 relative), their orders against the exact probability-flow
map of the oracle, inversion round trips, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import sdelab
from sdelab import (
    DDIM,
    VPSDE,
    DiscreteVPSDE,
    DPMSolver,
    GaussianMixture,
    ProbabilityFlowODE,
    Times,
    invert,
    reconstruct,
    sample,
    score_from_diffusers_model,
)

diffusers = pytest.importorskip("diffusers")

SHAPE = (5, 3)
TOL = 1e-8  # float64 relative agreement
F64 = torch.float64


def eps_model(x, timestep):
    """A deterministic diffusers-style noise model, smooth and nonlinear in x and the step."""
    u = torch.as_tensor(timestep, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) / 1000.0
    return torch.tanh(0.8 * x + u) * (0.4 + u) + 0.2 * torch.sin(2.0 * x - u)


class KeepFloat64(TorchFunctionMode):
    """diffusers' DPMSolver steps cast the sample and the SDE noise to float32
    (``sample.to(torch.float32)``, ``randn_tensor(..., dtype=torch.float32)``); inside this
    mode those casts keep float64, so the comparison is not limited by float32 rounding."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.to or func is torch.randn:
            args = tuple(F64 if a is torch.float32 else a for a in args)
            if kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = F64
        return func(*args, **kwargs)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def prior(sde, seed):
    """sdelab's x_T for ``seed`` and the generator after that draw (for the step noise)."""
    g = torch.Generator().manual_seed(seed)
    return sde.prior_sample(SHAPE, generator=g, dtype=F64), g


def table64(sched) -> np.ndarray:
    ac = sched.alphas_cumprod.to(F64).numpy()
    return np.sqrt((1 - ac) / ac)


def set_sigmas64(sched, n, karras=False):
    """Recompute diffusers' sigmas (float32 after set_timesteps) in float64 with its own rules."""
    sig = table64(sched)
    if karras:
        levels = sched._convert_to_karras(in_sigmas=np.flip(sig).copy(), num_inference_steps=n)
    else:
        levels = sig[sched.timesteps.numpy()]
    last = 0.0 if sched.config.final_sigmas_type == "zero" else sig[0]
    sched.sigmas = torch.from_numpy(np.concatenate([levels, [last]])).to(F64)
    return levels


def times_of(sde, sched, levels):
    """sdelab's grid for diffusers' noise levels ``levels`` (and its final sigma)."""
    ts = [float(sde.t_from_log_snr(-math.log(s))) for s in levels]
    if sched.config.final_sigmas_type == "sigma_min":
        ts.append(0.0)
    ts[-1] = 0.0 if abs(ts[-1]) < 1e-12 else ts[-1]
    return ts


def diffusers_loop(sched, x, model, generator=None, **step_kw):
    x = x * sched.init_noise_sigma
    with KeepFloat64():
        for t in sched.timesteps:
            out = model(sched.scale_model_input(x, t), t)
            x = sched.step(out, t, x, generator=generator, **step_kw).prev_sample
    return x


def sdelab_run(sde, solver, ts, seed, model=eps_model, denoise=False, **kw):
    return sample(
        sde,
        score_from_diffusers_model(model, sde),
        solver,
        SHAPE,
        schedule=Times(ts),
        eps=ts[-1],
        denoise=denoise,
        generator=torch.Generator().manual_seed(seed),
        dtype=F64,
        **kw,
    )


CONFIG = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


# --------------------------------------------------------------------------------------------
# DDIM
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("alpha_to_one", [True, False])
def test_ddim_equals_diffusers(eta, alpha_to_one):
    n = 10
    sched = diffusers.DDIMScheduler(
        **CONFIG, timestep_spacing="trailing", set_alpha_to_one=alpha_to_one, clip_sample=False
    )
    sched.set_timesteps(n)
    sched.alphas_cumprod = sched.alphas_cumprod.to(F64)
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.to(F64)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    ts = [int(t) / 999 for t in sched.timesteps] + ([] if alpha_to_one else [0.0])
    x_T, g = prior(sde, 3)
    theirs = diffusers_loop(sched, x_T, eps_model, generator=g, eta=eta)
    ours = sdelab_run(sde, DDIM(eta), ts, 3, denoise=alpha_to_one).x
    assert rel(ours, theirs) < TOL


def test_ddim_inverse_equals_diffusers_inverse_scheduler():
    """DDIMInverseScheduler's update is sdelab's DDIM step run upwards. Its pipelines evaluate
    the model at the step's *destination* timestep with the source sample (the usual DDIM
    inversion shortcut); `sdelab.invert` evaluates it where the step starts, as an explicit
    integrator must, so the loop here hands diffusers' step the model at the source level."""
    n = 10
    sched = diffusers.DDIMInverseScheduler(
        **CONFIG, timestep_spacing="trailing", set_alpha_to_one=False, clip_sample=False
    )
    sched.set_timesteps(n)
    sched.alphas_cumprod = sched.alphas_cumprod.to(F64)
    sched.initial_alpha_cumprod = sched.initial_alpha_cumprod.to(F64)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    x0, _ = prior(sde, 4)
    x, src = x0, 0
    for t in sched.timesteps:
        x, src = sched.step(eps_model(x, src), t, x).prev_sample, int(t)
    ts = [1.0, *[int(t) / 999 for t in reversed(sched.timesteps)][1:], 0.0]
    score = score_from_diffusers_model(eps_model, sde)
    ours = invert(sde, score, x0, DDIM(), schedule=Times(ts), eps=0.0)
    assert rel(ours, x) < TOL
    pipeline_style = x0
    for t in sched.timesteps:  # the diffusers pipelines' convention: model at the destination
        pipeline_style = sched.step(eps_model(pipeline_style, t), t, pipeline_style).prev_sample
    assert rel(ours, pipeline_style) > 1e-4


# --------------------------------------------------------------------------------------------
# DPMSolverMultistepScheduler and its inverse
# --------------------------------------------------------------------------------------------
def multistep(n, karras=False, **kw):
    sched = diffusers.DPMSolverMultistepScheduler(
        **CONFIG, timestep_spacing="linspace", use_karras_sigmas=karras, **kw
    )
    sched.set_timesteps(n)
    levels = set_sigmas64(sched, n, karras)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    return sched, sde, times_of(sde, sched, levels)


MULTISTEP_CASES = [
    dict(
        algorithm_type=a, solver_order=k, solver_type=st, lower_order_final=lof, final_sigmas_type=f
    )
    for a in ("dpmsolver++", "dpmsolver")
    for k in (1, 2)
    for st in ("midpoint", "heun")
    for lof in (True, False)
    for f in ("zero", "sigma_min")
    if not (a == "dpmsolver" and f == "zero")  # diffusers refuses it
    if not (k == 1 and st == "heun")
]


# Karras levels end at sigma_min already: only final_sigmas_type="zero" makes sense with them
@pytest.mark.parametrize(
    "kw, karras",
    [(kw, False) for kw in MULTISTEP_CASES]
    + [(kw, True) for kw in MULTISTEP_CASES if kw["final_sigmas_type"] == "zero"],
    ids=lambda v: "-".join(map(str, v.values())) if isinstance(v, dict) else f"karras={v}",
)
def test_dpm_multistep_equals_diffusers(kw, karras):
    n = 8
    sched, sde, ts = multistep(n, karras, **kw)
    x_T, _ = prior(sde, 5)
    model = eps_model
    if karras:  # diffusers rounds the model's timestep of a Karras level; sdelab does not
        model = lambda x, tau: eps_model(x, torch.as_tensor(tau).round())  # noqa: E731
    theirs = diffusers_loop(sched, x_T, eps_model)
    # diffusers' "zero" final step is the Tweedie step of sample(denoise=True) and always
    # first order, so its lower_order_final touches the grid's last step only from order 3.
    lof = kw["lower_order_final"] and kw["final_sigmas_type"] == "sigma_min"
    predict = "data" if kw["algorithm_type"] == "dpmsolver++" else "noise"
    solver = DPMSolver(kw["solver_order"], True, predict, False, kw["solver_type"], lof)
    zero = kw["final_sigmas_type"] == "zero"
    ours = sdelab_run(sde, solver, ts, 5, model=model, denoise=zero)
    assert ours.nfe == n
    assert rel(ours.x, theirs) < TOL
    if karras:  # the rounding is visible
        assert rel(sdelab_run(sde, solver, ts, 5, denoise=zero).x, theirs) > 1e-6


@pytest.mark.parametrize("predict", ["data", "noise"])
def test_dpm_3m_keeps_the_factor_two_that_diffusers_drops(predict):
    """diffusers' (and the reference code's) 3M uses D2 = (D1_0 - D1_1)/(r0 + r1), half the
    second divided difference: it agrees with sdelab's 3M on the order-1 and order-2 warm-up
    steps and differs at the first third-order step by exactly that missing half."""
    algo = "dpmsolver++" if predict == "data" else "dpmsolver"
    n = 3
    sched, sde, ts = multistep(
        n,
        algorithm_type=algo,
        solver_order=3,
        lower_order_final=False,
        final_sigmas_type="sigma_min",
    )
    x_T, _ = prior(sde, 6)
    theirs = diffusers_loop(sched, x_T, eps_model)
    res = sdelab_run(
        sde, DPMSolver(3, predict=predict, lower_order_final=False), ts, 6, return_trajectory=True
    )
    traj = res.trajectory
    score = score_from_diffusers_model(eps_model, sde)
    c = [sdelab.solvers._exp.coeffs(sde, t) for t in ts]
    if predict == "data":
        y = [sdelab.solvers._exp.data_prediction(score, traj[i], c[i]) for i in range(3)]
        scale, u = c[3].m, -(c[3].lam - c[2].lam)
    else:
        y = [-c[i].sigma * score(traj[i], c[i].t) for i in range(3)]
        scale, u = c[3].sigma, c[3].lam - c[2].lam
    h = c[3].lam - c[2].lam
    r0, r1 = (c[2].lam - c[1].lam) / h, (c[1].lam - c[0].lam) / h
    d2 = (2 / (r0 + r1)) * ((y[2] - y[1]) / r0 - (y[1] - y[0]) / r1)
    b2 = -scale * ((math.expm1(u) / u - 1) / u - 0.5)
    assert rel(res.x - 0.5 * b2 * d2, theirs) < TOL
    assert rel(res.x, theirs) > 1e-6


def test_dpm_2m_sde_equals_diffusers_with_the_same_noise():
    n = 8
    sched, sde, ts = multistep(
        n, algorithm_type="sde-dpmsolver++", solver_order=2, final_sigmas_type="zero"
    )
    x_T, g = prior(sde, 7)
    theirs = diffusers_loop(sched, x_T, eps_model, generator=g)
    ours = sdelab_run(
        sde, DPMSolver(2, stochastic=True, lower_order_final=False), ts, 7, denoise=True
    )
    assert rel(ours.x, theirs) < TOL


@pytest.mark.parametrize("order", [1, 2])
def test_dpm_multistep_inverse_equals_diffusers(order):
    n = 8
    sched = diffusers.DPMSolverMultistepInverseScheduler(
        **CONFIG, timestep_spacing="linspace", solver_order=order, lower_order_final=True
    )
    sched.set_timesteps(n)
    sig = table64(sched)
    sched.sigmas = torch.from_numpy(np.concatenate([sig[sched.timesteps.numpy()], sig[-1:]]))
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    x0, _ = prior(sde, 8)
    theirs = diffusers_loop(sched, x0, eps_model)
    ts = [1.0] + [int(t) / 999 for t in reversed(sched.timesteps)]  # decreasing, ends at 0
    score = score_from_diffusers_model(eps_model, sde)
    ours = invert(sde, score, x0, DPMSolver(order), schedule=Times(ts), eps=0.0)
    assert rel(ours, theirs) < TOL


# --------------------------------------------------------------------------------------------
# DPMSolverSinglestepScheduler: its intermediate points are grid points, so diffusers is given
# the levels [s, lambda_s + r1 h, (lambda_s + r2 h), t, ...] of sdelab's steps.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "order, solver_type, predict",
    [
        (1, "midpoint", "data"),
        (2, "midpoint", "data"),
        (2, "heun", "data"),
        (2, "midpoint", "noise"),
        (3, "heun", "data"),
        (3, "heun", "noise"),
        (3, "midpoint", "data"),
    ],
)
def test_dpm_singlestep_equals_diffusers(order, solver_type, predict):
    steps = 4
    sched = diffusers.DPMSolverSinglestepScheduler(
        **CONFIG,
        solver_order=order,
        solver_type=solver_type,
        algorithm_type="dpmsolver++" if predict == "data" else "dpmsolver",
        lower_order_final=False,
        final_sigmas_type="sigma_min",
    )
    sched.set_timesteps(order * steps)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    solver = DPMSolver(order, multistep=False, predict=predict, solver_type=solver_type)
    ts = sdelab.time_grid(sde, steps, "logsnr", 0.0)
    lams = [float(sde.log_snr(t)) for t in ts]
    rs = [0.0, *solver.ratios[: order - 1]] if order > 1 else [0.0]
    nodes = [lams[i] + r * (lams[i + 1] - lams[i]) for i in range(steps) for r in rs]
    sched.sigmas = torch.tensor([math.exp(-lam) for lam in [*nodes, lams[-1]]], dtype=F64)
    sched.timesteps = torch.tensor(
        [float(sde.t_from_log_snr(lam)) * 999 for lam in nodes], dtype=F64
    )
    assert sched.order_list == [1, 2, 3][:order] * steps
    x_T, _ = prior(sde, 9)
    theirs = diffusers_loop(sched, x_T, eps_model)
    ours = sdelab_run(sde, solver, ts, 9)
    assert ours.nfe == order * steps
    if (order, solver_type) == (3, "midpoint"):
        # diffusers' midpoint 3S takes its second intermediate point with the midpoint
        # coefficient; sdelab follows Lu et al. 2022a, Alg. 2 (the Taylor coefficient there)
        assert rel(ours.x, theirs) > 1e-6
    else:
        assert rel(ours.x, theirs) < TOL


# --------------------------------------------------------------------------------------------
# orders against the exact probability-flow map, inversion, stochastic weak errors
# --------------------------------------------------------------------------------------------
MIX = GaussianMixture([[-1.0, 0.5], [1.0, -0.5]], [[0.5, 0.4], [0.4, 0.6]], [0.6, 0.4])
LADDER = (40, 80, 160, 320)


@pytest.fixture(scope="module")
def flow_reference():
    sde = VPSDE()
    ode = ProbabilityFlowODE(method="DOP853", rtol=1e-10, atol=1e-10)
    x = sample(
        sde, MIX.score(sde), ode, (32, 2), generator=torch.Generator().manual_seed(0), dtype=F64
    )
    return sde, x.x


ORDER_CASES = [
    DDIM(),
    DPMSolver(2),
    DPMSolver(2, solver_type="heun"),
    DPMSolver(3),
    DPMSolver(2, predict="noise"),
    DPMSolver(3, predict="noise"),
    DPMSolver(2, multistep=False),
    DPMSolver(3, multistep=False),
    DPMSolver(3, multistep=False, solver_type="heun"),
    DPMSolver(3, multistep=False, predict="noise"),
]


@pytest.mark.parametrize("solver", ORDER_CASES, ids=repr)
def test_measured_order_matches_declared(solver, flow_reference):
    """Pathwise error against the DOP853 flow of the same x_T, on the log-SNR grid from 40 to
    320 steps (asymptotic on this smooth mixture); the slope of the last three within 0.3."""
    sde, ref = flow_reference
    errs = []
    for n in LADDER:
        x = sample(
            sde,
            MIX.score(sde),
            solver,
            (32, 2),
            steps=n,
            schedule="logsnr",
            generator=torch.Generator().manual_seed(0),
            dtype=F64,
        ).x
        errs.append(float((x - ref).norm(dim=1).max()))
    slope = math.log(errs[1] / errs[-1]) / math.log(LADDER[-1] / LADDER[1])
    assert abs(slope - solver.order) < 0.3, (errs, slope)


@pytest.mark.parametrize("solver", [DDIM(), DPMSolver(2), DPMSolver(3, multistep=False)], ids=repr)
def test_invert_then_reconstruct_round_trips_to_the_solver_order(solver):
    """The round-trip error falls at least like h^order (2M's falls faster: the errors of
    the two directions cancel to leading order on the same grid)."""
    sde = VPSDE()
    score = MIX.score(sde)
    x = MIX.sample(16, torch.Generator().manual_seed(1)).to(F64)
    errs = []
    for n in (50, 100, 200):
        z = invert(sde, score, x, solver, steps=n, schedule="logsnr")
        back = reconstruct(sde, score, z, solver, steps=n, schedule="logsnr")
        errs.append(float((back - x).abs().max()))
    slope = math.log2(errs[0] / errs[-1]) / 2
    assert slope > solver.order - 0.3, errs


@pytest.mark.parametrize("solver", [DDIM(1.0), DDIM(0.5), DPMSolver(2, stochastic=True)], ids=repr)
def test_stochastic_variants_sample_the_marginal(solver):
    """Mean and covariance of 4000 samples at eps against the exact marginal there: 5 standard
    errors plus 5% of the std for the discretisation at 100 log-SNR steps."""
    sde, n, eps = VPSDE(), 4000, 1e-3
    x = sample(
        sde,
        MIX.score(sde),
        solver,
        (n, 2),
        steps=100,
        schedule="logsnr",
        eps=eps,
        generator=torch.Generator().manual_seed(2),
        dtype=F64,
    ).x
    truth = MIX.at(sde, eps)
    mean, cov = truth.mean().to(F64), truth.covariance().to(F64)
    sd = cov.diagonal().sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * sd / n**0.5 + 0.05 * sd).all()
    se_cov = torch.outer(sd, sd) * (2 / n) ** 0.5
    assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov + 0.05 * torch.outer(sd, sd)).all()


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DPMSolver(order=4), "order must be 1, 2 or 3, got 4"),
        (lambda: DPMSolver(order=3, stochastic=True), "order must be 1 or 2 with stochastic=True"),
        (lambda: DPMSolver(predict="score"), "predict must be one of"),
        (lambda: DPMSolver(solver_type="rk4"), "solver_type must be one of"),
        (lambda: DPMSolver(stochastic=True, predict="noise"), "needs predict='data'"),
        (lambda: DPMSolver(multistep="yes"), "multistep must be a bool"),
        (lambda: DPMSolver(2, multistep=False, r1=1.5), "0 < r1 < 1"),
        (lambda: DPMSolver(2, r1=0.5), "r1 applies to singlestep"),
        (lambda: DDIM(eta=-0.1), "eta must be a finite number >= 0"),
    ],
)
def test_bad_options_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_use_raises():
    sde = VPSDE()
    score = MIX.score(sde)
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="deterministic"):
        invert(sde, score, x, DDIM(eta=1.0), steps=4)
    with pytest.raises(TypeError, match="solver must be a deterministic fixed-grid solver"):
        invert(sde, score, x, ProbabilityFlowODE(), steps=4)
    with pytest.raises(ValueError, match="eta=3.0 is too large"):
        sample(sde, score, DDIM(eta=3.0), (2, 2), steps=2)
