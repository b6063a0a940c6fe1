"""Every fixed-grid solver on every SDE against the exact Gaussian-mixture oracle.

The truth is the data perturbed to ``eps`` (``mixture.at(sde, eps)``), which is what the
samplers target. Tolerances: ``Z = 5`` standard errors for the sample size (estimated from an
exact sample) plus a stated allowance: ``DISC = 0.02`` (2% of the data's std; these solvers are
first order, and the step counts below, 100 for VP / sub-VP and 400 for VE, whose
$g(t)^2$ is far larger near $T$, are where that bias sits below the statistical tolerance),
plus $r^2$ for a Langevin corrector of signal-to-noise ratio $r$ (its unadjusted stationary
bias: the variance grows by about $1 + r^2$; see test_sampling.py). The sliced-Wasserstein
distance must stay within 3x its noise floor (the same distance between two exact samples).
``test_error_visible_at_coarse_steps`` shows that the same checks fail on coarse grids.
"""

from __future__ import annotations

import pytest
import torch
from _oracle import CallCounter, Oracle, mixture_2d, mixture_8d

from sdelab import (
    PC,
    VESDE,
    VPSDE,
    AncestralSampling,
    AnnealedLangevin,
    EulerMaruyama,
    Langevin,
    ReverseDiffusion,
    SubVPSDE,
    sample,
)

EPS = 1e-3
DISC = 0.02
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}
STEPS = {"vp": 100, "subvp": 100, "ve": 400}
# the deterministic reverse-diffusion step has a large first-order constant on VP / sub-VP
# (for N(0, I) data its factor is 1 + (1 - alpha)^2 / 2 per step instead of 1): 4x the steps
STEPS_FACTOR = {"rd_flow": 4}
PREDICTORS = {
    "em": EulerMaruyama(),
    "em_flow": EulerMaruyama(probability_flow=True),
    "rd": ReverseDiffusion(),
    "rd_flow": ReverseDiffusion(probability_flow=True),
    "ancestral": AncestralSampling(),
    "ancestral_transition": AncestralSampling(variance="transition"),
}
PCS = {
    "rd+langevin": PC(ReverseDiffusion(), Langevin(snr=0.16)),
    "em+annealed": PC(EulerMaruyama(), AnnealedLangevin(snr=0.16)),
    "ancestral+langevin": PC(AncestralSampling(), Langevin(snr=0.1, n_steps=2)),
}
MIXTURES = {"2d": (mixture_2d, 4096), "8d": (mixture_8d, 2048)}
_oracles: dict = {}


def oracle(sde_name: str, mix_name: str) -> Oracle:
    key = (sde_name, mix_name)
    if key not in _oracles:
        make, n = MIXTURES[mix_name]
        _oracles[key] = Oracle(make().at(SDES[sde_name], EPS), n)
    return _oracles[key]


def run(sde_name, mix_name, solver, steps, seed=0):
    sde = SDES[sde_name]
    make, n = MIXTURES[mix_name]
    counter = CallCounter(make().score(sde))
    res = sample(
        sde,
        counter,
        solver,
        (n, make().dim),
        steps=steps,
        eps=EPS,
        generator=torch.Generator().manual_seed(seed),
    )
    assert res.nfe == counter.calls  # reported NFE is the true number of calls
    return res


def corrector_allowance(solver) -> float:
    c = solver.corrector if isinstance(solver, PC) else solver
    return c.snr**2 if isinstance(c, Langevin | AnnealedLangevin) else 0.0


def assert_matches(o: Oracle, x: torch.Tensor, allowance: float, label: str) -> None:
    errs = o.errors(x, allowance)
    bad = {k: v for k, v in errs.items() if v[0] > v[1]}
    assert not bad, f"{label}: (error, tolerance) {errs}"


# every solver x every SDE in d = 2 and d = 8; in d = 8 one PC combination (all in d = 2)
CASES = [
    (name, sde_name, mix_name)
    for mix_name in MIXTURES
    for sde_name in SDES
    for name in [*PREDICTORS, *(PCS if mix_name == "2d" else ["rd+langevin"])]
]


@pytest.mark.parametrize(("name", "sde_name", "mix_name"), CASES)
def test_solver_matches_oracle(name, sde_name, mix_name):
    solver = {**PREDICTORS, **PCS}[name]
    steps = STEPS[sde_name] * STEPS_FACTOR.get(name, 1)
    res = run(sde_name, mix_name, solver, steps)
    per_step = 1 + (solver.corrector.n_steps if isinstance(solver, PC) else 0)
    assert res.nfe == steps * per_step and res.steps == steps
    assert_matches(
        oracle(sde_name, mix_name),
        res.x,
        DISC + corrector_allowance(solver),
        f"{name} on {sde_name} ({mix_name})",
    )


@pytest.mark.parametrize(
    ("name", "sde_name", "solver"),
    [
        ("langevin", "vp", Langevin(snr=0.16, n_steps=2)),
        ("langevin", "subvp", Langevin(snr=0.16, n_steps=2)),
        ("langevin", "ve", Langevin(snr=0.16, n_steps=2)),
        ("annealed", "ve", AnnealedLangevin(snr=0.16, n_steps=2)),
    ],
)
def test_corrector_alone_matches_oracle(name, sde_name, solver):
    """Corrector-only sampling (annealed Langevin along the grid) needs more steps: 500."""
    res = run(sde_name, "2d", solver, 500)
    assert res.nfe == 500 * solver.n_steps
    assert_matches(oracle(sde_name, "2d"), res.x, DISC + corrector_allowance(solver), name)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("name", list(PREDICTORS))
def test_error_visible_at_coarse_steps(name, sde_name):
    """On a 2-step grid the same acceptance checks fail clearly, and the sliced-Wasserstein
    distance to the truth shrinks from 4 to 64 steps (at 64 it is down to the noise floor, so
    the intermediate grids are not compared: their order there is Monte-Carlo noise)."""
    o = oracle(sde_name, "2d")
    x = run(sde_name, "2d", PREDICTORS[name], 2).x
    assert o.worst(x, DISC) > 2.0, f"{name} on {sde_name}: error at 2 steps not visible"
    d4, d64 = (
        o.errors(run(sde_name, "2d", PREDICTORS[name], n).x, DISC)["sliced_w2"][0] for n in (4, 64)
    )
    assert d4 > d64, f"{name} on {sde_name}: SW2 at 4 steps {d4} <= at 64 steps {d64}"
