r"""Fixed-grid solvers: the `Predictor` and `Corrector` interfaces and their combination `PC`.

`sdelab.sample` owns the loop over the time grid $T = t_0 > t_1 > \dots > t_N = \epsilon$
(`sdelab.time_grid`); a solver only supplies one update:

* a **predictor** moves the state from $t_i$ to $t_{i+1} = t_i - \Delta t_i$ along the
  reverse-time SDE (or the probability-flow ODE): a one-step `Predictor` with
  `Predictor.update`, or any `GridSolver` (the multistep fast samplers carry state);
* a **corrector** is a Markov chain that leaves (approximately) $p_t$ invariant at a fixed
  $t$: score-based MCMC (Song et al. 2021, Sec. 4.2 and App. G), with `Corrector.update`.

**Order.** `PC` runs the predictor first and then the corrector at the new time, as in the
paper's Algorithms 1-3 (Song et al. 2021, App. G): step $i$ is
$x \leftarrow P(x, t_i \to t_{i+1})$, then $M$ corrector steps at $t_{i+1}$. The last
corrector steps therefore act at $\epsilon$, and none at $T$ (where the state is a draw from the
prior). The paper's reference code and diffusers run the corrector first (at $t_i$, before the
predictor); both use the same number of score evaluations, $N(1 + M)$.

**Correctors and multistep predictors.** A multistep predictor (DPM-Solver 2M, UniPC, LMS,
PNDM, ...) keeps its history when the corrector moves $x$: the stored model outputs belong to
the earlier grid times, and the next step evaluates the model afresh at the corrected state
(`GridSolver.after_correction`; this is how predictor-corrector sampling composes with any
linear multistep method, whose history is the past of the trajectory).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sde.base import SDE
from .base import Solver
from .grid import GridSolver, Step

__all__ = ["PC", "Corrector", "Predictor", "as_pc", "gaussian_noise"]


def gaussian_noise(x: Tensor, generator: torch.Generator | None, std: float = 1.0) -> Tensor:
    r"""A draw $z \sim \mathcal N(0, \mathrm{std}^2 I)$ shaped like ``x``, on its device and
    dtype, from ``generator`` (one kernel)."""
    z = torch.empty_like(x, memory_format=torch.contiguous_format)
    return z.normal_(0.0, std, generator=generator)


class Predictor(GridSolver):
    r"""A one-step solver of the reverse-time process, from $t$ to $t - \Delta t$, without
    state: it implements `update`, and its `GridSolver.step` is that update.

    Attributes:
        strong_order: the strong (pathwise) order of convergence on the reverse-time SDEs of
            this package (additive noise), or ``None`` where it is not meaningful.
        weak_order: the weak order (error of expectations).
    """

    strong_order: float | None = None
    weak_order: float | None = None

    @abc.abstractmethod
    def update(
        self,
        sde: SDE,
        score,
        x: Tensor,
        t: float,
        dt: float,
        generator: torch.Generator | None,
    ) -> Tensor:
        r"""Return the state at $t - \Delta t$ given ``x`` at ``t`` (``dt`` $= \Delta t > 0$).

        ``score`` is called as ``score(x, t)``; ``t`` and ``dt`` are Python floats.
        """

    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, None]:
        return self.update(sde, score, x, step.t, step.dt, generator), None


class FlowPredictor(Predictor):
    """A predictor with a ``probability_flow`` option: the deterministic variant integrates
    the probability-flow ODE (eq. 13) instead of the reverse-time SDE (eq. 6).

    Subclasses are frozen dataclasses that declare the field
    ``probability_flow: bool = False``.
    """

    probability_flow: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.probability_flow, bool):
            raise TypeError(f"probability_flow must be a bool, got {self.probability_flow!r}")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return not self.probability_flow


class Corrector(Solver):
    r"""One step of score-based MCMC targeting $p_t$ at a fixed time $t$.

    Attributes:
        n_steps: how many corrector steps `sdelab.sample` runs at each grid time.
    """

    n_steps: int = 1

    @abc.abstractmethod
    def update(
        self,
        sde: SDE,
        score,
        x: Tensor,
        t: float,
        dt: float,
        generator: torch.Generator | None,
    ) -> Tensor:
        r"""One Markov-chain step at time ``t``; ``dt`` is the sampler's grid step (the VP
        corrector's $\alpha_i$ depends on it)."""


@dataclass(frozen=True)
class PC(GridSolver):
    r"""Predictor-corrector sampling (Song et al. 2021, Sec. 4.2, Algorithm 1):

    $$ x \leftarrow P(x,\ t_i \to t_{i+1}), \qquad
       x \leftarrow C(x,\ t_{i+1})\ \ (M\ \text{times}), \qquad i = 0, \dots, N-1. $$

    The predictor runs first, then ``corrector.n_steps`` corrector steps at the new time, as in
    the paper's algorithms (the reference code runs the corrector first). Either part may be
    ``None``: ``PC(None, corrector)`` is corrector-only sampling (annealed Langevin dynamics
    along the grid, as in SMLD), ``PC(predictor, None)`` the predictor alone. Passing a
    predictor or a corrector directly to `sdelab.sample` means the same.

    Args:
        predictor: any fixed-grid solver (`EulerMaruyama`, `ReverseDiffusion`,
            `AncestralSampling`, or a fast sampler such as `DPMSolver`) or ``None``.
        corrector: a `Corrector` (`Langevin`, `AnnealedLangevin`) or ``None``.
    """

    predictor: GridSolver | None = None
    corrector: Corrector | None = None

    def __post_init__(self) -> None:
        if self.predictor is not None and (
            not isinstance(self.predictor, GridSolver) or isinstance(self.predictor, PC)
        ):
            raise TypeError(
                "predictor must be a fixed-grid solver (EulerMaruyama(), ReverseDiffusion(), "
                f"AncestralSampling(), DDIM(), DPMSolver(), ...) or None, got {self.predictor!r}"
            )
        if self.corrector is not None and not isinstance(self.corrector, Corrector):
            raise TypeError(
                "corrector must be a Corrector (Langevin(), AnnealedLangevin()) or None, "
                f"got {self.corrector!r}"
            )
        if self.predictor is None and self.corrector is None:
            raise ValueError("PC needs a predictor, a corrector or both, got neither")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.corrector is not None or bool(self.predictor and self.predictor.stochastic)

    @property
    def nfe_per_step(self) -> int:  # type: ignore[override]
        """The predictor's score evaluations per step plus the corrector's ``n_steps``."""
        p = self.predictor.nfe_per_step if self.predictor is not None else 0
        return p + (self.corrector.n_steps if self.corrector is not None else 0)

    def init(self, sde: SDE, x: Tensor, times: list[float]):
        return None if self.predictor is None else self.predictor.init(sde, x, times)

    def step(self, sde: SDE, score, x: Tensor, step: Step, state, generator):
        """The predictor's step to ``t_next``, then ``corrector.n_steps`` corrector steps there."""
        if self.predictor is not None:
            x, state = self.predictor.step(sde, score, x, step, state, generator)
        if self.corrector is not None:
            for _ in range(self.corrector.n_steps):
                x = self.corrector.update(sde, score, x, step.t_next, step.dt, generator)
            if self.predictor is not None:
                state = self.predictor.after_correction(state)
        return x, state


def as_pc(solver: Solver) -> PC | None:
    """``solver`` as a `PC` if it is a fixed-grid solver, else ``None``."""
    if isinstance(solver, PC):
        return solver
    if isinstance(solver, GridSolver):
        return PC(solver, None)
    if isinstance(solver, Corrector):
        return PC(None, solver)
    return None
