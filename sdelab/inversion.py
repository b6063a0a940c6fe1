r"""Inversion with a fixed-grid solver: data to latent (`invert`) and back (`reconstruct`).

A deterministic fixed-grid solver (`DDIM`, `DPMSolver`, probability-flow `EulerMaruyama`, ...)
is an integrator of the probability-flow ODE (Song et al. 2021, eq. 13) on the grid
$T = t_0 > \dots > t_N = \epsilon$. Run on the reversed grid $\epsilon = t_N < \dots < t_0 = T$
the same update integrates the ODE forward in time: that is DDIM inversion (Song, Meng & Ermon
2021, Sec. 5.4; diffusers' ``DDIMInverseScheduler``) and DPM-Solver inversion (diffusers'
``DPMSolverMultistepInverseScheduler``). `reconstruct` runs the grid down again from a given
latent; `invert` followed by `reconstruct` with the same solver and grid returns the data up
to the solver's error, $O(h^p)$ for a method of order $p$. The adaptive counterparts are
`sdelab.encode` / `sdelab.decode`.
"""

from __future__ import annotations

from torch import Tensor

from ._checks import check_batched
from .sampling import _run_grid
from .schedules import Schedule, as_schedule, check_eps, grid_steps, time_grid
from .sde.base import SDE, check_sde
from .sde.reverse import Score
from .solvers.base import CountingScore, Solver
from .solvers.pc import as_pc

__all__ = ["invert", "reconstruct"]


def invert(
    sde: SDE,
    score: Score,
    x: Tensor,
    solver: Solver,
    *,
    steps: int | None = None,
    schedule: str | Schedule = "uniform",
    eps: float = 1e-3,
    progress: bool = False,
) -> Tensor:
    r"""The latent $z \approx x(T)$ of data $x = x(\epsilon)$: the deterministic fixed-grid
    ``solver`` run on the grid of ``schedule`` (`sdelab.time_grid`) from $\epsilon$ up to $T$,

    $$ x_{t_{i}} = \Phi(x_{t_{i+1}};\ t_{i+1} \to t_i), \qquad i = N-1, \dots, 0, $$

    where $\Phi$ is the solver's step (for `DDIM` the exponential Euler step
    $x_t = \frac{\sigma_t}{\sigma_s}x_s - m_t(e^{-h} - 1)D(x_s, s)$ with $t > s$). The model
    is evaluated at each step's starting point, as in an explicit integrator; the inverse of
    `reconstruct` on the same grid up to $O(h^p)$.

    Args:
        sde: a `LinearSDE` (for the exponential integrators) or any SDE the solver accepts.
        score: ``score(x, t)``.
        x: data at time ``eps``, shape (B, ...).
        solver: a deterministic `GridSolver` (``solver.stochastic`` is False).
        steps: the number of steps, as in `sdelab.sample`.
        schedule: the grid (`sdelab.time_grid`), as in `sdelab.sample`.
        eps: the data's time $\epsilon$, the grid's lower end.
        progress: show a tqdm progress bar.

    Returns:
        the latent at $T$, shaped like ``x``.
    """
    return _integrate(sde, score, x, solver, steps, schedule, eps, progress, forward=True)


def reconstruct(
    sde: SDE,
    score: Score,
    z: Tensor,
    solver: Solver,
    *,
    steps: int | None = None,
    schedule: str | Schedule = "uniform",
    eps: float = 1e-3,
    progress: bool = False,
) -> Tensor:
    r"""The data $x(\epsilon)$ of a latent $z = x(T)$: `sdelab.sample`'s loop started from
    ``z`` instead of a prior draw (deterministic ``solver``, same grid arguments); the inverse
    of `invert`."""
    return _integrate(sde, score, z, solver, steps, schedule, eps, progress, forward=False)


def _integrate(sde, score, x, solver, steps, schedule, eps, progress, *, forward: bool) -> Tensor:
    check_sde(sde)
    x = check_batched("z" if not forward else "x", x)
    pc = as_pc(solver) if isinstance(solver, Solver) else None
    if pc is None:
        raise TypeError(
            "solver must be a deterministic fixed-grid solver (DDIM(), DPMSolver(), "
            f"EulerMaruyama(probability_flow=True), ...), got {solver!r}"
        )
    if solver.stochastic:
        raise ValueError(
            f"solver must be deterministic (solver.stochastic False) to invert, got {solver!r}"
        )
    sched = as_schedule(schedule)
    times = time_grid(sde, grid_steps(sched, steps, sde.N), sched, check_eps(sde, eps))
    if forward:
        times = times[::-1]
    counted = CountingScore(score)
    x, _, _, _ = _run_grid(sde, counted, pc, x, times, None, None, progress, False)
    counted.check()
    return x
