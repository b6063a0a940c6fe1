"""DPM++ SDE (``DPMSolver(2, multistep=False, stochastic=True)``): equal to diffusers'
DPMSolverSDEScheduler given the same two noises per step (float64), equal to it in distribution
with its own torchsde Brownian tree, weak errors on the Gaussian-mixture oracle, bad input.

The diffusers side is set up as in ``test_karras_family`` (its helpers are reused): the sdelab
SDE is built from diffusers' float32 table, the grid is diffusers' nonzero levels, diffusers'
last (Euler) step to sigma = 0 is ``denoise=True``, the model is called at ``tau(sigma)`` of the
level the scheduler is at on both sides, and diffusers' module runs in float64.
"""

from __future__ import annotations

import math
import sys

import diffusers
import pytest
import torch
from _oracle import Oracle, mixture_2d
from test_karras_family import _Float64Torch, _levels, _rel, _sde_and_times, _tau, model

import sdelab
from sdelab import DDIM, VPSDE, DPMSolver

pytest.importorskip("torchsde")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

F64 = torch.float64
SOLVER = DPMSolver(2, multistep=False, stochastic=True)


@pytest.fixture
def sched(monkeypatch):
    """A float64 DPMSolverSDEScheduler (the k-diffusion defaults: linspace, epsilon)."""
    s = diffusers.DPMSolverSDEScheduler(
        timestep_spacing="linspace", prediction_type="epsilon", use_karras_sigmas=False
    )
    monkeypatch.setattr(sys.modules[type(s).__module__], "torch", _Float64Torch())
    return s


def _sigma_now(s) -> float:
    """The level of diffusers' next model call (what its scale_model_input reads)."""
    return float(s.sigmas[s.step_index] if s.state_in_first_order else s.mid_point_sigma)


def run_diffusers(s, sde, x_t: torch.Tensor) -> torch.Tensor:
    x = x_t * math.sqrt(1.0 + _levels(s)[0] ** 2)  # x / m(T): its scaled state
    for t in s.timesteps:
        inp = s.scale_model_input(x, t)
        x = s.step(model(inp, _tau(sde, _sigma_now(s))), t, x).prev_sample
    return x


class SameNoise:
    """A stand-in for diffusers' BrownianTreeNoiseSampler that hands it sdelab's noise: on the
    first stage of a step it draws z1, z2 from ``generator`` (sdelab's order) and returns z1;
    on the second it returns the normalised increment over the whole step,
    (sqrt(s - s_mid) z1 + sqrt(s_mid - s_next) z2) / sqrt(s - s_next), in diffusers' sigmas."""

    def __init__(self, generator: torch.Generator, shape) -> None:
        self.g, self.shape, self.first = generator, shape, None

    def __call__(self, s, s_next):
        s, s_next = float(s), float(s_next)
        if self.first is None:
            z1 = torch.randn(self.shape, generator=self.g, dtype=F64)
            z2 = torch.randn(self.shape, generator=self.g, dtype=F64)
            self.first = (s, s_next, z1, z2)
            return z1
        s0, mid, z1, z2 = self.first
        assert s0 == s and s_next < mid < s
        self.first = None
        return (math.sqrt(s - mid) * z1 + math.sqrt(mid - s_next) * z2) / math.sqrt(s - s_next)


def sdelab_run(sde, ts, shape, seed, solver=SOLVER):
    return sdelab.sample(
        sde,
        sdelab.score_from_diffusers_model(model, sde),
        solver,
        shape,
        schedule=sdelab.Times(ts),
        eps=ts[-1],
        denoise=True,
        generator=torch.Generator().manual_seed(seed),
        dtype=F64,
    )


@pytest.mark.parametrize("steps", [4, 10])
def test_equals_diffusers_with_the_same_noise(sched, steps):
    """Both stages of every step, and the Euler step to 0, given the same z1, z2: 1e-8."""
    sched.set_timesteps(steps)
    sde, ts = _sde_and_times(sched, _levels(sched))
    shape = (6, 3)
    g = torch.Generator().manual_seed(1)
    x_t = sde.prior_sample(shape, generator=g, dtype=F64)
    sched.noise_sampler = SameNoise(g, shape)
    theirs = run_diffusers(sched, sde, x_t)
    ours = sdelab_run(sde, ts, shape, 1)
    assert ours.nfe == 2 * (steps - 1) + 1 == len(sched.timesteps)
    assert _rel(ours.x, theirs) < 1e-8
    # the correlation is part of the method: an independent second noise is another path
    sched.set_timesteps(steps)
    g = torch.Generator().manual_seed(1)
    x_t = sde.prior_sample(shape, generator=g, dtype=F64)
    sched.noise_sampler = lambda s, s_next: torch.randn(shape, generator=g, dtype=F64)
    assert _rel(ours.x, run_diffusers(sched, sde, x_t)) > 1e-3


def moments(x: torch.Tensor):
    """Sample mean and covariance with their standard errors (from the sample itself)."""
    n = x.shape[0]
    c = x - x.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    return x.mean(0), torch.cov(x.T), c.std(0) / n**0.5, prods.std(0) / n**0.5


N_DIST = 16384


def z_scores(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """The largest |difference| of the two samples' means and covariances, in combined
    standard errors."""
    ma, ca, sma, sca = moments(a)
    mb, cb, smb, scb = moments(b)
    z_mean = ((ma - mb).abs() / (sma**2 + smb**2).sqrt()).max()
    z_cov = ((ca - cb).abs() / (sca**2 + scb**2).sqrt()).max()
    return float(z_mean), float(z_cov)


@pytest.mark.filterwarnings("ignore:Should have:UserWarning")  # torchsde: float32 tree ends
def test_equals_diffusers_in_distribution(sched):
    """16384 samples of a 2-D problem at 10 steps, diffusers with its Brownian tree (seeded by
    ``noise_sampler_seed``), sdelab with its generator: means and covariances within 5 combined
    standard errors of each other. The comparison has the power to see the noise correlation:
    diffusers' own stages with an independent second noise are far outside it (about 13 SE
    in the covariance). (With 4096 samples that variant sits at about 6 SE: too close.)"""
    sched.register_to_config(noise_sampler_seed=11)
    sched.noise_sampler_seed = 11
    sched.set_timesteps(10)
    sde, ts = _sde_and_times(sched, _levels(sched))
    shape = (N_DIST, 2)
    x_t = sde.prior_sample(shape, generator=torch.Generator().manual_seed(12), dtype=F64)
    theirs = run_diffusers(sched, sde, x_t)
    z_mean, z_cov = z_scores(sdelab_run(sde, ts, shape, 13).x, theirs)
    assert z_mean < 5 and z_cov < 5, (z_mean, z_cov)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(14)
    sched.noise_sampler = lambda s, s_next: torch.randn(shape, generator=g, dtype=F64)
    assert z_scores(run_diffusers(sched, sde, x_t), theirs)[1] > 8


# --- the oracle ------------------------------------------------------------------------------
ORACLE_N, EPS = 4000, 1e-3


@pytest.fixture(scope="module")
def oracle():
    sde = VPSDE()
    return sde, Oracle(mixture_2d().at(sde, EPS), ORACLE_N)


def oracle_errors(sde, orc, steps, seed=2):
    x = sdelab.sample(
        sde,
        mixture_2d().score(sde),
        SOLVER,
        (ORACLE_N, 2),
        steps=steps,
        schedule="logsnr",
        eps=EPS,
        generator=torch.Generator().manual_seed(seed),
        dtype=F64,
    ).x.float()  # the oracle's moments are float32
    sd = orc.scale
    err_mean = ((x.mean(0) - orc.mean) / sd).abs().max()
    err_cov = ((torch.cov(x.T) - orc.cov) / torch.outer(sd, sd)).abs().max()
    return x, float(err_mean), float(err_cov)


def test_weak_error_on_the_oracle(oracle):
    """At 50 log-SNR steps: mean and covariance within 5 standard errors + 2% of the std."""
    sde, orc = oracle
    x, *_ = oracle_errors(sde, orc, 50)
    errs = orc.errors(x, allowance=0.02)
    assert errs["mean"][0] <= 1 and errs["cov"][0] <= 1, errs


def test_weak_error_falls_with_the_steps(oracle):
    """The covariance error (in units of the std) at 3, 6 and 12 steps falls, and at 3 steps it
    is well above the Monte-Carlo noise of the estimate."""
    sde, orc = oracle
    errs = [oracle_errors(sde, orc, n)[2] for n in (3, 6, 12)]
    noise = float((orc.se_cov / torch.outer(orc.scale, orc.scale)).max())
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[0] > 10 * noise, (errs, noise)


# --- properties and bad input -----------------------------------------------------------------
def test_declared_properties():
    assert SOLVER.stochastic and SOLVER.weak_order == 1.0 and SOLVER.nfe_per_step == 2


def test_singlestep_order_one_is_ancestral_ddim():
    """Order 1 has one stage: SDE-DPM-Solver++(1), i.e. DDIM with eta = 1, the same draw."""
    sde, score = VPSDE(), mixture_2d().score(VPSDE())
    run = [
        sdelab.sample(
            sde,
            score,
            s,
            (8, 2),
            steps=7,
            schedule="logsnr",
            generator=torch.Generator().manual_seed(4),
            dtype=F64,
        ).x
        for s in (DPMSolver(1, multistep=False, stochastic=True), DDIM(1.0))
    ]
    assert _rel(*run) < 1e-12


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DPMSolver(3, multistep=False, stochastic=True), "order must be 1 or 2 .* got 3"),
        (
            lambda: DPMSolver(2, multistep=False, stochastic=True, predict="noise"),
            "needs predict='data'.*got predict='noise'",
        ),
        (lambda: DPMSolver(2, multistep=False, stochastic=True, r1=0.0), "0 < r1 < 1"),
    ],
)
def test_bad_options_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
