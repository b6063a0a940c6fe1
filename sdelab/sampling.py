r"""`sample`: the one entry point that turns a score into samples.

It owns everything around the update rule (the time grid, the prior draw, NFE counting,
non-finite detection, the trajectory, the progress bar, the final denoising step), so a
solver is only its update: a `Predictor`, a `Corrector`, their combination `PC`, or an
`AdaptiveSolver` that integrates the whole span with a library.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _tmath as tm
from ._checks import check_int, check_shape
from .conditioning.base import Condition
from .schedules import Schedule, UniformTime, as_schedule, check_eps, grid_steps, time_grid
from .sde.base import SDE, check_linear_sde, check_sde
from .sde.reverse import Score
from .solvers.base import AdaptiveSolver, CountingScore, Solver
from .solvers.grid import Step
from .solvers.pc import as_pc

__all__ = ["SampleResult", "sample", "time_grid", "tweedie_denoise"]


@dataclass
class SampleResult:
    """What `sample` returns.

    Attributes:
        x: the samples, shape ``shape`` (at time ``eps``, or the denoised estimate of $x_0$
            when ``denoise=True``).
        nfe: the number of score evaluations actually made (counted, denoising included).
        steps: the number of time steps taken (the grid's for fixed-grid solvers, the
            accepted steps of an adaptive one).
        times: the times of ``trajectory`` (decreasing from $T$ to ``eps``), only with
            ``return_trajectory=True``.
        trajectory: the states at ``times`` stacked on a new first dimension, only with
            ``return_trajectory=True`` (the denoising step is not part of it).
    """

    x: Tensor
    nfe: int
    steps: int
    times: Tensor | None = None
    trajectory: Tensor | None = None


def tweedie_denoise(sde: SDE, score: Score, x: Tensor, t: float) -> Tensor:
    r"""Tweedie's formula (Efron 2011; Song et al. 2021, App. G "denoising"): the posterior
    mean of $x_0$ given $x_t \sim \mathcal N(m(t)\,x_0, \sigma(t)^2 I)$,

    $$ \hat x_0 = \mathbb E[x_0 \mid x_t] = \frac{x_t + \sigma(t)^2\,\nabla_x \log p_t(x_t)}{m(t)}. $$

    One score evaluation. Needs a `LinearSDE` (Gaussian perturbation kernel).
    """
    check_linear_sde(sde, "denoise=True", "Gaussian perturbation kernel")
    std = sde.std(t)
    return (x + tm.bcast(std * std, x) * score(x, t)) / tm.bcast(sde.mean_coeff(t), x)


def sample(
    sde: SDE,
    score: Score,
    solver: Solver,
    shape: Sequence[int],
    *,
    steps: int | None = None,
    schedule: str | Schedule = "uniform",
    eps: float = 1e-3,
    denoise: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
    condition: Condition | None = None,
) -> SampleResult:
    r"""Draw samples by running the reverse-time process from the prior at $T$ down to
    $\epsilon$ (Song et al. 2021, Sec. 4).

    The state starts as $x_T \sim p_T$ (`SDE.prior_sample`). A fixed-grid solver (a
    `Predictor`, a `Corrector`, `PC` or a fast sampler such as `DPMSolver`) takes ``steps``
    steps on the grid of ``schedule`` (`time_grid`), by default equal steps in time,

    $$ t_i = T - i\,\Delta t, \quad i = 0, \dots, N, \qquad \Delta t = \frac{T - \epsilon}{N},
       \quad N = \texttt{steps}; $$

    step $i$ runs the predictor from $t_i$ to $t_{i+1}$ and then the corrector
    ``n_steps`` times at $t_{i+1}$ (predictor first, as in the paper's algorithms; see `PC`).
    A solver with memory carries its state from step to step (`GridSolver`).
    Times are handed to the solver as Python floats, so there is no host synchronisation per
    step. An `AdaptiveSolver` integrates the span $[\epsilon, T]$ itself (``steps`` is then its
    optional hint).

    With ``denoise=True`` a final noise-free step at $\epsilon$ returns Tweedie's estimate
    $\hat x_0 = (x + \sigma(\epsilon)^2 s_\theta(x, \epsilon))/m(\epsilon)$ (`tweedie_denoise`),
    counted in the NFE.

    Args:
        sde: the forward SDE whose reverse is simulated.
        score: ``score(x, t)`` approximating $\nabla_x \log p_t(x)$, returning a tensor like x.
        solver: `EulerMaruyama`, `ReverseDiffusion`, `AncestralSampling`, `Langevin`,
            `AnnealedLangevin`, `PC`, or an adaptive solver.
        shape: ``(B, ...)``, the shape of the batch of samples.
        steps: number of grid steps $N \ge 1$ (default: ``sde.N`` for fixed-grid solvers; for
            a `Times` schedule, its own).
        schedule: the time grid of a fixed-grid solver: ``"uniform"`` (default), ``"logsnr"``,
            ``"karras"``, ``"quadratic"`` or a `Schedule` value (`UniformTime`,
            `UniformLogSNR`, `Karras`, `QuadraticTime`, `Times`).
        eps: the final time $\epsilon \in (0, T)$ (scores are singular at $t = 0$; a
            `DiscreteVPSDE` also accepts 0, its first training step, where $\sigma > 0$).
        denoise: apply the Tweedie denoising step at the end.
        generator: seeds the prior draw and every noise draw (same generator state, same
            samples); its device is the default ``device``.
        device: of the samples (default: the generator's device, else torch's default).
        dtype: of the samples (default: torch's default dtype).
        progress: show a tqdm progress bar.
        return_trajectory: also return the states at every grid time (memory grows with
            ``steps``; without it memory does not depend on ``steps``).
        condition: sample given an observation (`Inpaint`, `LinearObservation`) or a class
            (`ClassGuidance`); see `sdelab.conditioning`. Guidance changes the score and works
            with every solver; the others act after each step of a fixed-grid solver (an
            adaptive solver raises ``ValueError``), and the known part of the result equals the
            observation.

    Returns:
        a `SampleResult` with ``x``, ``nfe`` (counted), ``steps`` and, if asked, ``times`` and
        ``trajectory``.

    Raises:
        FloatingPointError: if the score returned NaN/inf (the message names the first
            evaluation and step) or the samples are not finite.
    """
    check_sde(sde)
    if isinstance(solver, type) and issubclass(solver, Solver):
        raise TypeError(
            f"solver must be a solver instance, got the class {solver.__name__}; "
            f"did you mean {solver.__name__}()?"
        )
    if not isinstance(solver, Solver):
        raise TypeError(
            "solver must be an sdelab solver (EulerMaruyama(), ReverseDiffusion(), "
            "AncestralSampling(), Langevin(), AnnealedLangevin(), PC(...), or an adaptive "
            f"solver), got {solver!r}"
        )
    shape = check_shape(shape)
    eps = check_eps(sde, eps)
    sched = as_schedule(schedule)
    pc = as_pc(solver)
    if pc is None:
        if not isinstance(solver, AdaptiveSolver):
            raise TypeError(f"solver {solver!r} is neither a fixed-grid nor an adaptive solver")
        if not isinstance(sched, UniformTime):
            raise ValueError(
                f"schedule={schedule!r} applies to fixed-grid solvers; the adaptive solver "
                f"{solver!r} chooses its own steps"
            )
        if steps is not None:
            steps = check_int("steps", steps, minimum=1)
    else:
        steps = grid_steps(sched, steps, sde.N)
        times = time_grid(sde, steps, sched, eps)
    if condition is not None:
        _check_condition(condition, solver, fixed_grid=pc is not None)
    x = sde.prior_sample(shape, generator=generator, device=device, dtype=dtype)
    bound = None if condition is None else condition.bind(sde, x, score)
    counted = CountingScore(score if bound is None else bound.score)

    if pc is None:
        res = solver.solve(
            sde,
            counted,
            x,
            sde.T,
            eps,
            steps=steps,
            generator=generator,
            progress=progress,
            return_trajectory=return_trajectory,
        )
        x, n_steps, times, traj = res.x, res.steps, res.times, res.trajectory
        step_ends: list[int] | None = None
    else:
        n_steps = steps
        dt = sched.constant_step(sde, steps, eps)
        x, times, traj, step_ends = _run_grid(
            sde, counted, pc, x, times, dt, generator, progress, return_trajectory, bound
        )
    if denoise:
        x = tweedie_denoise(sde, counted, x, eps)
    if bound is not None:
        x = bound.finish(x)
    _check_finite(counted, x, step_ends)
    if not return_trajectory:
        times = traj = None
    return SampleResult(x=x, nfe=counted.nfe, steps=n_steps, times=times, trajectory=traj)


def _run_grid(sde, score, pc, x, times, dt, generator, progress, return_trajectory, bound=None):
    """The one fixed-grid loop: the solver's `init`, then its `step` from each grid time to the
    next (a `PC` runs its predictor, then its corrector at the new time). A bound condition
    wraps the solver with its hook after each step (`sdelab.conditioning.ConditionedSolver`).

    Bookkeeping is O(1) per step apart from 8 bytes (the NFE after each step, which maps a bad
    evaluation to its step). ``dt`` is the constant step of an equal-step grid (handed to the
    solvers exactly), else ``None`` (each step's ``t - t_next``).
    """
    steps = len(times) - 1
    traj = None
    if return_trajectory:  # preallocated: peak memory is one copy of the path, not two
        traj = torch.empty((steps + 1, *x.shape), dtype=x.dtype, device=x.device)
        traj[0] = x
    step_ends = array("q")
    indices = range(steps)
    if progress:
        from tqdm.auto import tqdm

        name = type(pc.predictor or pc.corrector).__name__
        indices = tqdm(indices, desc=f"sampling ({name})")

    def step_at(i: int) -> Step:
        t, t_next = times[i], times[i + 1]
        return Step(i, steps, t, t_next, t - t_next if dt is None else dt)

    solver = pc if bound is None else bound.wrap(pc, times, step_at)
    state = solver.init(sde, x, times)
    for i in indices:
        x, state = solver.step(sde, score, x, step_at(i), state, generator)
        step_ends.append(score.nfe)
        if traj is not None:
            traj[i + 1] = x
    tt = None
    if traj is not None:
        tt = torch.tensor(times, dtype=x.dtype, device=x.device)
    return x, tt, traj, step_ends


def _check_condition(condition: object, solver: Solver, fixed_grid: bool) -> None:
    if not isinstance(condition, Condition):
        raise TypeError(
            "condition must be an sdelab condition (Inpaint(...), LinearObservation(...), "
            f"ClassGuidance(...)) or None, got {type(condition).__name__}"
        )
    if condition.fixed_grid_only and not fixed_grid:
        raise ValueError(
            f"condition={type(condition).__name__}(method={condition.method!r}) acts between the "
            f"steps of a fixed-grid solver; the adaptive solver {solver!r} cannot honour it "
            "(use a fixed-grid solver such as EulerMaruyama() or DPMSolver())"
        )


def _check_finite(score: CountingScore, x: Tensor, step_ends) -> None:
    """One host synchronisation at the end: report the first non-finite score output, else
    non-finite samples."""

    def where(k: int) -> str:
        i = bisect.bisect_left(step_ends, k)
        if i < len(step_ends):
            return f" (in sampler step {i + 1} of {len(step_ends)})"
        return " (in the final denoising step)"

    score.check(where if step_ends is not None else None, result=x)
