"""The one order test: every deterministic fixed-grid solver converges with its declared order.

For each solver the pathwise error against the exact probability-flow map of the same $x_T$
(scipy's DOP853 at rtol = atol = 1e-10 through `sdelab.ProbabilityFlowODE`; the same generator
gives the same prior draw) is measured in float64 over a ladder of steps on a smooth mixture
(wide components, so the error is asymptotic at a few hundred steps) under VP, and the log-log slope
of error against steps must lie within 0.3 of the declared ``order`` (diffrax's order test is
the model).

The solvers are found, not listed: every class exported by `sdelab` that subclasses
`sdelab.solvers.grid.GridSolver` and whose default instance is deterministic
(``stochastic == False``) with an ``order``, plus the variants in `VARIANTS` (an entry whose
class is not exported yet is skipped).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import sdelab
from sdelab._convergence import deterministic_grid_solvers, exact_flow_solver, fit_order, flow_error

F64 = torch.float64
SDE = sdelab.VPSDE()
#: wide components: the flow is smooth down to eps; 80-640 steps are asymptotic for every
#: method here (at 20-160 the third- and fourth-order ones still measure 0.3-0.6 off)
MIX = sdelab.GaussianMixture([[-1.0, 0.5], [1.0, -0.5]], [[0.8, 1.0], [1.0, 0.7]], [0.4, 0.6])
SHAPE = (64, 2)
SEED = 0
LADDER = (80, 160, 320, 640)
SCHEDULE = "logsnr"
TOLERANCE = 0.3

#: variants beyond the default instances: (class name, options)
VARIANTS = [
    ("EulerMaruyama", {"probability_flow": True}),
    ("ReverseDiffusion", {"probability_flow": True}),
    ("DDIM", {}),
    *[("DPMSolver", {"order": k, "multistep": ms}) for k in (1, 2, 3) for ms in (True, False)],
    *[("DPMSolver", {"order": k, "predict": "noise"}) for k in (2, 3)],
    *[("UniPC", {"order": k}) for k in (1, 2, 3)],
    ("UniPC", {"variant": "bh1"}),
    *[("DEIS", {"order": k}) for k in (1, 2, 3)],
    *[("LMS", {"order": k}) for k in (1, 2, 3, 4)],
    ("Euler", {}),
    ("Heun", {}),
    ("DPM2", {}),
    ("PNDM", {"skip_prk": True}),
    *[("IPNDM", {"order": k}) for k in (1, 2, 3)],
]


def expected_order(solver) -> float:
    """The declared convergence order (`GridSolver.convergence_order`: ``order`` unless the
    method's ``order`` option means something else, as for UniPC and IPNDM)."""
    return float(solver.convergence_order)


def _discovered() -> list:
    return [pytest.param(s, id=repr(s)) for s in deterministic_grid_solvers()]


def _variants() -> list:
    out = []
    for name, options in VARIANTS:
        cls = getattr(sdelab, name, None)
        label = f"{name}({', '.join(f'{k}={v!r}' for k, v in options.items())})"
        if cls is None:
            out.append(
                pytest.param(None, id=label, marks=pytest.mark.skip(f"{name} not exported yet"))
            )
        else:
            out.append(pytest.param(cls(**options), id=label))
    return out


def _unique(params: list) -> list:
    seen, out = set(), []
    for p in params:
        key = p.id if p.values[0] is None else repr(p.values[0])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


SOLVERS = _unique(_discovered() + _variants())


def _run(solver, steps=None, schedule="uniform"):
    g = torch.Generator().manual_seed(SEED)
    return sdelab.sample(
        SDE, MIX.score(SDE), solver, SHAPE, steps=steps, schedule=schedule, generator=g, dtype=F64
    ).x


@pytest.fixture(scope="module")
def exact_flow():
    """The exact probability-flow map of the same x_T (DOP853, rtol = atol = 1e-10)."""
    return _run(exact_flow_solver())


def test_discovery_finds_the_deterministic_solvers():
    found = {type(p.values[0]).__name__ for p in _discovered()}
    assert {"PNDM", "IPNDM"} <= found
    assert not found & {"EulerMaruyama", "ReverseDiffusion", "AncestralSampling"}  # stochastic


@pytest.mark.parametrize("solver", SOLVERS)
def test_measured_order_matches_the_declared_order(solver, exact_flow):
    assert solver.stochastic is False
    errors = [flow_error(_run(solver, n, SCHEDULE), exact_flow) for n in LADDER]
    assert all(e1 > e2 for e1, e2 in itertools.pairwise(errors)), errors
    slope = fit_order([1 / n for n in LADDER], errors)
    assert abs(slope - expected_order(solver)) <= TOLERANCE, (slope, errors)
