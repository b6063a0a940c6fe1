"""UniPC and DEIS: equal to diffusers' UniPCMultistepScheduler / DEISMultistepScheduler in
float64, their orders against the exact probability-flow map of the mixture oracle, bad input.

The diffusers side runs its own loop (set_timesteps, scale_model_input, step) with its
noise levels replaced by the same levels in float64 (diffusers stores them in float32); the
sdelab side runs `sdelab.sample` on the `DiscreteVPSDE` of the same config at the times of
those levels, from the same x_T.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sdelab
from sdelab import DEIS, DiscreteVPSDE, UniPC
from sdelab.solvers import Corrector

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 in diffusers

F64 = torch.float64
SHAPE = (6, 3)
REL = 1e-8


def eps_model(x: torch.Tensor, timestep) -> torch.Tensor:
    """A deterministic diffusers-style noise model, smooth in x and the timestep."""
    tau = torch.as_tensor(timestep, dtype=x.dtype)
    c = (tau.reshape(-1, *([1] * (x.ndim - 1))) if tau.ndim else tau) / 1000.0
    return 0.8 * torch.tanh(x * (1.0 + c)) + 0.3 * c * torch.sin(2.0 * x + 3.0 * c)


def _float64_levels(sched, karras: bool) -> torch.Tensor:
    """diffusers' noise levels (sigma = sqrt((1 - abar)/abar)) recomputed in float64."""
    ac = sched.alphas_cumprod.to(F64)
    table = ((1 - ac) / ac).sqrt()
    n = len(sched.timesteps)
    if karras:
        levels = torch.from_numpy(sched._convert_to_karras(table.flip(0).numpy(), n).copy())
    else:
        levels = table[sched.timesteps]
    last = sched.sigmas[-1].item()
    tail = 0.0 if last == 0.0 else table[0].item()  # "zero" or the smallest training level
    return torch.cat([levels.to(F64), torch.tensor([tail], dtype=F64)])


def _run_diffusers(sched, sde, x, karras: bool) -> torch.Tensor:
    """diffusers' own loop in float64. With Karras levels the model gets the exact fractional
    timestep of each level (diffusers rounds it; see test_karras_timestep_rounding_quirk)."""
    sched.sigmas = _float64_levels(sched, karras)
    for i, tau in enumerate(sched.timesteps):
        if karras:
            tau = sde.timestep(sde.t_from_log_snr(-math.log(sched.sigmas[i].item())))
        model_in = sched.scale_model_input(x, tau)
        x = sched.step(eps_model(model_in, tau), sched.timesteps[i], x).prev_sample
    return x


def _run_sdelab(sched, sde, solver, karras: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sdelab on diffusers' levels: returns (x_T, sample)."""
    zero = sched.sigmas[-1].item() == 0.0
    n = len(sched.timesteps)
    if karras:  # sdelab's own Karras grid on this SDE is diffusers' use_karras_sigmas
        schedule, steps = sdelab.Karras(7.0), n - 1
    else:
        ts = [float(tau) / (sde.num_train_timesteps - 1) for tau in sched.timesteps.tolist()]
        schedule, steps = sdelab.Times(ts if zero else [*ts, 0.0]), None
    eps = 0.0 if karras or not zero else float(sched.timesteps[-1]) / (sde.num_train_timesteps - 1)
    score = sdelab.score_from_diffusers_model(eps_model, sde)
    g = torch.Generator().manual_seed(seed)
    x_T = sde.prior_sample(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=F64)
    res = sdelab.sample(
        sde, score, solver, SHAPE, steps=steps, schedule=schedule, eps=eps, denoise=zero,
        generator=g, dtype=F64,
    )  # fmt: skip
    assert res.nfe == n
    return x_T, res.x


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


UNIPC_CASES = [
    # (order, variant, predict_x0, lower_order_final, final_sigmas_type, karras)
    *[(o, "bh2", True, True, "zero", False) for o in (1, 2, 3)],  # bh1 + "zero": see below
    *[(o, v, True, lof, "sigma_min", False) for o in (1, 2, 3) for v in ("bh1", "bh2") for lof in (True, False)],
    *[(o, v, False, lof, "sigma_min", False) for o in (2, 3) for v in ("bh1", "bh2") for lof in (True, False)],
    *[(o, "bh2", True, True, "zero", True) for o in (1, 2, 3)],
]  # fmt: skip


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize(("order", "variant", "x0", "lof", "final", "karras"), UNIPC_CASES)
def test_unipc_equals_diffusers(order, variant, x0, lof, final, karras, steps):
    sched = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", solver_order=order,
        solver_type=variant, predict_x0=x0, lower_order_final=lof, final_sigmas_type=final,
        use_karras_sigmas=karras, timestep_spacing="linspace", disable_corrector=[],
    )  # fmt: skip
    sched.set_timesteps(steps)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    solver = UniPC(
        order=order, variant=variant, predict="data" if x0 else "noise",
        lower_order_final=lof, final_denoise=final == "zero",
    )  # fmt: skip
    x_T, ours = _run_sdelab(sched, sde, solver, karras, seed=steps + order)
    theirs = _run_diffusers(sched, sde, x_T, karras)
    assert _rel(ours, theirs) < REL


@pytest.mark.parametrize("steps", [10, 25])
def test_unipc_disable_corrector_equals_diffusers(steps):
    off = [0, 3, steps - 2]
    sched = diffusers.UniPCMultistepScheduler(
        solver_order=3, lower_order_final=True, final_sigmas_type="sigma_min",
        disable_corrector=off, timestep_spacing="linspace",
    )  # fmt: skip
    sched.set_timesteps(steps)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    x_T, ours = _run_sdelab(sched, sde, UniPC(order=3, disable_corrector=off), False, seed=1)
    theirs = _run_diffusers(sched, sde, x_T, False)
    assert _rel(ours, theirs) < REL
    _, with_all = _run_sdelab(sched, sde, UniPC(order=3), False, seed=1)
    assert _rel(with_all, theirs) > 1e-6  # the option changes the numbers


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("lof", [True, False])
def test_deis_equals_diffusers(order, lof, steps):
    sched = diffusers.DEISMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", solver_order=order,
        algorithm_type="deis", solver_type="logrho", lower_order_final=lof,
        timestep_spacing="linspace",
    )  # fmt: skip
    sched.set_timesteps(steps)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    solver = DEIS(order=order, lower_order_final=lof)
    x_T, ours = _run_sdelab(sched, sde, solver, False, seed=steps + order)
    theirs = _run_diffusers(sched, sde, x_T, False)
    assert _rel(ours, theirs) < REL


# --- where diffusers differs, shown --------------------------------------------------------------
@pytest.mark.parametrize(("variant", "x0"), [("bh1", True), ("bh2", False)])
def test_diffusers_final_zero_step_is_nan_for_bh1_and_noise_prediction(variant, x0):
    """diffusers' last step to sigma = 0 multiplies 0 by an infinite B(h) (bh1) or by an
    infinite h*phi_1 (noise prediction, lambda = inf) and returns NaN; sdelab's `denoise=True`
    step is the finite limit D(x, t) of that step."""
    sched = diffusers.UniPCMultistepScheduler(
        solver_order=2, solver_type=variant, predict_x0=x0, final_sigmas_type="zero"
    )
    sched.set_timesteps(10)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    solver = UniPC(order=2, variant=variant, predict="data" if x0 else "noise", final_denoise=True)
    x_T, ours = _run_sdelab(sched, sde, solver, False, seed=0)
    assert torch.isfinite(ours).all()
    assert torch.isnan(_run_diffusers(sched, sde, x_T, False)).all()


def test_karras_timestep_rounding_quirk():
    """With use_karras_sigmas diffusers calls the model at the rounded training step of each
    level while its update uses the level itself; sdelab (and the equivalence test's diffusers
    loop) evaluates the model at the level's own fractional step. The rounding shows."""
    sched = diffusers.UniPCMultistepScheduler(solver_order=2, use_karras_sigmas=True)
    sched.set_timesteps(10)
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    x_T, ours = _run_sdelab(sched, sde, UniPC(order=2, final_denoise=True), True, seed=0)
    sched.sigmas = _float64_levels(sched, True)
    x = x_T
    for tau in sched.timesteps:
        x = sched.step(eps_model(x, tau), tau, x).prev_sample
    assert 1e-7 < _rel(ours, x) < 1e-2


# --- composition with a corrector ------------------------------------------------------------------
class _Still(Corrector):
    """A corrector that leaves x where it is (but is announced to the predictor)."""

    def update(self, sde, score, x, t, dt, generator):
        return x


def test_a_corrector_replaces_unic_and_keeps_the_history():
    sde, steps = sdelab.VPSDE(), 12
    score = MIX.score(sde)

    def run(solver):
        return sdelab.sample(sde, score, solver, (32, 2), steps=steps, schedule="logsnr",
                             generator=torch.Generator().manual_seed(3), dtype=F64).x  # fmt: skip

    moved = run(sdelab.PC(UniPC(order=3), _Still()))
    assert torch.equal(moved, run(UniPC(order=3, disable_corrector=tuple(range(steps)))))
    assert not torch.equal(moved, run(UniPC(order=3)))
    assert torch.equal(run(sdelab.PC(DEIS(), _Still())), run(DEIS()))


# --- orders on the oracle ---------------------------------------------------------------------------
MIX = sdelab.GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [[0.8, 1.0], [1.0, 0.7]], [0.4, 0.6])
LADDER = (160, 320, 640)
ORDER_CASES = [
    *[(UniPC(order=o, variant=v, lower_order_final=False), o + 1) for o in (1, 2, 3) for v in ("bh1", "bh2")],
    (UniPC(order=2, predict="noise", lower_order_final=False), 3),
    *[(DEIS(order=o), o) for o in (1, 2, 3)],
]  # fmt: skip


@pytest.fixture(scope="module")
def flow_reference():
    """The exact probability-flow map of the prior draw (DOP853 at 1e-10), VP, eps = 1e-3."""
    sde = sdelab.VPSDE()
    ode = sdelab.ProbabilityFlowODE(method="DOP853", rtol=1e-10, atol=1e-10)
    x = sdelab.sample(sde, MIX.score(sde), ode, (64, 2), generator=torch.Generator().manual_seed(0),
                      dtype=F64).x  # fmt: skip
    return sde, x


@pytest.mark.parametrize(("solver", "declared"), ORDER_CASES, ids=repr)
def test_order_on_the_oracle(solver, declared, flow_reference):
    """Pathwise error against the exact flow on the log-SNR grid, where it is asymptotic
    (160-640 steps on a smooth mixture; DEIS-3 is still pre-asymptotic at 40-160, slope 3.5)."""
    sde, ref = flow_reference
    errs = []
    for steps in LADDER:
        x = sdelab.sample(sde, MIX.score(sde), solver, (64, 2), steps=steps, schedule="logsnr",
                          generator=torch.Generator().manual_seed(0), dtype=F64).x  # fmt: skip
        errs.append((x - ref).norm(dim=1).max().item())
    slope = -np.polyfit(np.log(LADDER), np.log(errs), 1)[0]
    assert abs(slope - declared) < 0.3, (errs, slope)
    if isinstance(solver, UniPC):
        assert solver.effective_order == declared


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: UniPC(order=4), r"order must be 1, 2 or 3, got order=4"),
        (lambda: UniPC(order=0), r"order must be 1, 2 or 3, got order=0"),
        (lambda: UniPC(order=True), r"order must be 1, 2 or 3, got order=True"),
        (lambda: UniPC(variant="bh3"), r"variant must be one of \('bh1', 'bh2'\), got 'bh3'"),
        (lambda: UniPC(predict="x0"), r"predict must be one of \('data', 'noise'\), got 'x0'"),
        (lambda: UniPC(disable_corrector=[-1]), r"disable_corrector must be .*integers >= 0.*-1"),
        (lambda: UniPC(disable_corrector=["a"]), r"disable_corrector must be .*'a'"),
        (lambda: UniPC(lower_order_final=1), r"lower_order_final must be a bool, got 1"),
        (lambda: DEIS(order=4), r"DEIS order must be 1, 2 or 3, got order=4"),
        (lambda: DEIS(order=2.5), r"DEIS order must be 1, 2 or 3, got order=2.5"),
        (lambda: DEIS(lower_order_final="yes"), r"lower_order_final must be a bool, got 'yes'"),
    ],
)
def test_bad_options_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("solver", [UniPC(), DEIS()], ids=repr)
def test_needs_a_linear_sde(solver):
    with pytest.raises(TypeError, match=f"{type(solver).__name__} needs a linear SDE.*got Geom"):
        solver.init(sdelab.GeometricBrownianMotion(), torch.ones(4, 1), [1.0, 0.5])


def test_disable_corrector_accepts_a_list_and_stays_hashable():
    solver = UniPC(disable_corrector=[0, 2])
    assert solver.disable_corrector == (0, 2) and hash(solver) == hash(
        UniPC(disable_corrector=(0, 2))
    )
