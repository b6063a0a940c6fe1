"""What every exported fixed-grid solver must do, found by discovery so a new solver is covered
the day it is exported: every linear SDE, both float dtypes, counted NFE, trajectory, progress
bar, the per-step non-finite report, composition with a corrector, and no host reads per step."""

import inspect

import pytest
import torch
from test_host_sync import count_host_reads

import sdelab
from sdelab.solvers.grid import GridSolver


def _grid_solver_classes():
    out = []
    for name in sdelab.__all__:
        obj = getattr(sdelab, name)
        if (
            inspect.isclass(obj)
            and issubclass(obj, GridSolver)
            and not inspect.isabstract(obj)
            and obj is not sdelab.PC
        ):
            out.append(obj)
    return out


SOLVERS = [cls() for cls in _grid_solver_classes()]
IDS = [type(s).__name__ for s in SOLVERS]
MIX = sdelab.GaussianMixture([[-1.0, 0.0], [1.5, 0.5]], [[0.6, 1.0], [0.8, 0.5]], [0.4, 0.6])
SDES = {
    "vp": sdelab.VPSDE(),
    "subvp": sdelab.SubVPSDE(),
    "ve": sdelab.VESDE(sigma_max=20.0),
    "ou": sdelab.OrnsteinUhlenbeck(),
    "discrete": sdelab.DiscreteVPSDE.from_diffusers({"beta_schedule": "linear"}),
}


class Counter:
    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


def test_discovery_finds_the_solvers():
    names = set(IDS)
    assert {"EulerMaruyama", "ReverseDiffusion", "AncestralSampling"} <= names


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_every_solver_runs_on_every_sde_and_dtype(solver, sde_name, dtype):
    sde = SDES[sde_name]
    score = Counter(MIX.score(sde))
    steps = 12
    res = sdelab.sample(
        sde,
        score,
        solver,
        (256, 2),
        steps=steps,
        generator=torch.Generator().manual_seed(0),
        dtype=dtype,
        return_trajectory=True,
    )
    assert res.x.dtype == dtype and res.x.shape == (256, 2)
    assert torch.isfinite(res.x).all()
    assert res.nfe == score.calls >= steps - 1
    assert res.trajectory.shape == (steps + 1, 256, 2) and torch.equal(res.trajectory[-1], res.x)
    assert res.times.tolist() == pytest.approx(sdelab.time_grid(sde, steps))
    # the samples are in the right place: the mean within a generous band (12 coarse steps)
    assert (res.x.double().mean(0) - MIX.mean()).abs().max() < 0.5


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_no_host_reads_per_step(solver):
    sde = sdelab.VPSDE()
    score = MIX.score(sde)
    counts = []
    for steps in (10, 40):
        with count_host_reads() as stats:
            sdelab.sample(sde, score, solver, (64, 2), steps=steps, generator=torch.Generator())
        counts.append(stats["reads"])
    assert counts[0] == counts[1], f"host reads grow with steps: {counts}"


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_nonfinite_score_is_reported_with_its_step(solver):
    sde = sdelab.VPSDE()

    def score(x, t):
        return -x * (float("nan") if t < 0.5 else 1.0)

    with pytest.raises(
        FloatingPointError, match=r"score\(x, t\) returned NaN.*sampler step \d+ of 20"
    ):
        sdelab.sample(sde, score, solver, (8, 2), steps=20)


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_composes_with_a_corrector_and_shows_progress(solver, capsys):
    sde = sdelab.VPSDE()
    score = Counter(MIX.score(sde))
    res = sdelab.sample(
        sde,
        score,
        sdelab.PC(solver, sdelab.Langevin(snr=0.05)),
        (128, 2),
        steps=8,
        generator=torch.Generator().manual_seed(1),
        progress=True,
    )
    assert torch.isfinite(res.x).all() and res.nfe == score.calls
    err = capsys.readouterr().err
    assert f"sampling ({type(solver).__name__})" in err and "8/8" in err


@pytest.mark.parametrize(
    "solver", [s for s in SOLVERS if not s.stochastic], ids=lambda s: type(s).__name__
)
def test_deterministic_solvers_are_deterministic(solver):
    sde = sdelab.VPSDE()
    runs = [
        sdelab.sample(
            sde,
            MIX.score(sde),
            solver,
            (16, 2),
            steps=6,
            generator=torch.Generator().manual_seed(s),
        ).x
        for s in (0, 0)
    ]
    assert torch.equal(*runs)
    assert solver.order is not None and solver.order >= 1


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_nfe_per_step_is_what_a_step_costs_once_warmed_up(solver):
    """Ten more steps cost ten times ``nfe_per_step`` more score calls, with or without a
    corrector (warm-up and final steps may cost differently; they are in both runs)."""
    sde = sdelab.VPSDE()
    for s in (solver, sdelab.PC(solver, sdelab.Langevin(n_steps=2))):
        nfe = [
            sdelab.sample(sde, MIX.score(sde), s, (8, 2), steps=n, generator=torch.Generator()).nfe
            for n in (20, 30)
        ]
        assert nfe[1] - nfe[0] == 10 * s.nfe_per_step, (nfe, s.nfe_per_step)
