"""UniPC and DEIS: equal to diffusers' UniPCMultistepScheduler / DEISMultistepScheduler in
float64, their orders against the exact probability-flow map of the mixture oracle, bad input.

The diffusers side runs its own loop (set_timesteps, scale_model_input, step) with its
noise levels replaced by the same levels in float64 (diffusers stores them in float32); the
sdelab side runs `sdelab.sample` on the `DiscreteVPSDE` of the same config at the times of
those levels, from the same x_T.
"""

from __future__ import annotations

import math

import pytest
import torch

import sdelab
from sdelab import DEIS, DiscreteVPSDE, UniPC

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
