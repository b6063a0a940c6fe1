"""The fixed-grid solver interface: state in the loop, correctors composing with any predictor,
and today's one-step solvers reproduced bit for bit."""

from dataclasses import dataclass

import pytest
import torch

import sdelab
from sdelab.solvers.grid import GridSolver, Step

MIX = sdelab.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.5], [0.3, 0.7])
SDES = {
    "vp": sdelab.VPSDE(),
    "subvp": sdelab.SubVPSDE(),
    "ve": sdelab.VESDE(),
    "ou": sdelab.OrnsteinUhlenbeck(),
}
ONE_STEP = {
    "EM": sdelab.EulerMaruyama(),
    "EM-PF": sdelab.EulerMaruyama(probability_flow=True),
    "RD": sdelab.ReverseDiffusion(),
    "RD-PF": sdelab.ReverseDiffusion(probability_flow=True),
    "AS": sdelab.AncestralSampling(),
    "AS-transition": sdelab.AncestralSampling(variance="transition"),
    "L": sdelab.Langevin(),
    "AL": sdelab.AnnealedLangevin(n_steps=2),
    "RD+L": sdelab.PC(sdelab.ReverseDiffusion(), sdelab.Langevin()),
    "EM+AL": sdelab.PC(sdelab.EulerMaruyama(), sdelab.AnnealedLangevin()),
}


def legacy_loop(sde, score, pc, shape, eps, steps, generator, dtype):
    """The sampling loop as it was before solvers had state: a constant dt, the predictor's
    update from t_i, then the corrector's updates at t_{i+1}."""
    x = sde.prior_sample(shape, generator=generator, dtype=dtype)
    T = sde.T
    dt = (T - eps) / steps
    t = T
    for i in range(steps):
        t_next = T - (i + 1) * dt if i + 1 < steps else eps
        if pc.predictor is not None:
            x = pc.predictor.update(sde, score, x, t, dt, generator)
        if pc.corrector is not None:
            for _ in range(pc.corrector.n_steps):
                x = pc.corrector.update(sde, score, x, t_next, dt, generator)
        t = t_next
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("name", sorted(ONE_STEP))
def test_one_step_solvers_are_bit_for_bit_unchanged(name, sde_name, dtype):
    sde, solver = SDES[sde_name], ONE_STEP[name]
    pc = solver if isinstance(solver, sdelab.PC) else sdelab.solvers.pc.as_pc(solver)
    score = MIX.score(sde)
    ref = legacy_loop(sde, score, pc, (64, 2), 1e-3, 23, torch.Generator().manual_seed(5), dtype)
    got = sdelab.sample(
        sde,
        score,
        solver,
        (64, 2),
        steps=23,
        generator=torch.Generator().manual_seed(5),
        dtype=dtype,
    ).x
    assert torch.equal(got, ref)


@dataclass(frozen=True)
class _Recorder(GridSolver):
    """A two-step method that records what the loop tells it (its state is a tuple)."""

    stochastic = False
    order = 1.0

    def init(self, sde, x, times):
        return (len(times), [], 0)

    def step(self, sde, score, x, step, state, generator):
        n_times, log, corrected = state
        assert isinstance(step, Step) and step.dt == pytest.approx(step.t - step.t_next)
        log.append((step.index, step.count, step.t, step.t_next, corrected))
        d = score(x, step.t)
        return x + step.dt * d * 0.0, (n_times, log, 0)

    def after_correction(self, state):
        n_times, log, corrected = state
        return n_times, log, corrected + 1


def test_state_lives_in_the_loop_and_the_corrector_is_announced():
    sde = sdelab.VPSDE()
    solver = _Recorder()
    logs = []

    class Spy(_Recorder):
        def init(self, sde, x, times):
            state = super().init(sde, x, times)
            logs.append(state[1])
            return state

    spy = Spy()
    for _ in range(2):  # the same solver value runs twice, each run with a fresh state
        sdelab.sample(
            sde,
            MIX.score(sde),
            sdelab.PC(spy, sdelab.Langevin(n_steps=2)),
            (8, 2),
            steps=4,
            schedule="quadratic",
        )
    ts = sdelab.time_grid(sde, 4, "quadratic")
    assert len(logs) == 2 and logs[0] is not logs[1]
    for log in logs:
        assert [e[:4] for e in log] == [(i, 4, ts[i], ts[i + 1]) for i in range(4)]
        # the corrector ran after every step, once announced per step (not per corrector step)
        assert [e[4] for e in log] == [0, 1, 1, 1]
    assert solver == _Recorder()  # frozen and stateless


def test_the_uniform_grid_hands_the_constant_dt_to_the_solver():
    sde = sdelab.VPSDE()
    dts = []

    @dataclass(frozen=True)
    class Probe(GridSolver):
        def step(self, sde, score, x, step, state, generator):
            dts.append((step.dt, step.t - step.t_next))
            return x, state

    sdelab.sample(sde, MIX.score(sde), Probe(), (2, 2), steps=7)
    assert {dt for dt, _ in dts} == {(1.0 - 1e-3) / 7}
    dts.clear()
    sdelab.sample(sde, MIX.score(sde), Probe(), (2, 2), steps=7, schedule="logsnr")
    assert all(dt == diff for dt, diff in dts)
