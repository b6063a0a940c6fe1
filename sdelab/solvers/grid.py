r"""The fixed-grid solver interface: one step from $t$ to $t_{\mathrm{next}}$, with state.

`sdelab.sample` owns the loop over the grid $T = t_0 > t_1 > \dots > t_N = \epsilon$
(`sdelab.time_grid`). A `GridSolver` is a frozen configuration value with

* `GridSolver.init`, called once before the loop, returning the solver's initial state
  (``None`` for one-step methods);
* `GridSolver.step`, which maps ``(x, state)`` at ``step.t`` to ``(x, state)`` at
  ``step.t_next``;
* `GridSolver.after_correction`, called when a corrector moved ``x`` between two steps.

The state lives in the loop, never on the solver (diffrax's ``init`` / ``step`` /
``solver_state`` pattern), so one solver value serves any number of runs, shapes and devices.
A multistep method keeps its previous model outputs in the state; a corrector that moves
``x`` between steps is announced through `GridSolver.after_correction`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..sde.base import SDE
from .base import Solver

__all__ = ["GridSolver", "Step"]


@dataclass(frozen=True, slots=True)
class Step:
    r"""One step of the grid, as the loop hands it to `GridSolver.step`.

    Attributes:
        index: $i$, from 0 to ``count - 1``.
        count: $N$, the number of steps of the grid.
        t: $t_i$ (a Python float).
        t_next: $t_{i+1} < t_i$.
        dt: the step size $t_i - t_{i+1} > 0$; on a grid of equal steps (`UniformTime`) exactly
            the constant $(T - \epsilon)/N$, so the one-step predictors reproduce their
            historical samples bit for bit.
    """

    index: int
    count: int
    t: float
    t_next: float
    dt: float

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def remaining(self) -> int:
        """How many steps are left after this one (0 on the last step)."""
        return self.count - 1 - self.index


class GridSolver(Solver):
    """A solver on a fixed time grid: `init` once, then `step` along the grid.

    Attributes:
        order: the order of convergence of the deterministic method (pathwise, against the
            exact probability-flow map), or ``None``; stochastic methods declare
            ``weak_order`` instead or as well. Where a method's ``order`` option is not that
            (UniPC's), `convergence_order` is.
        nfe_per_step: score evaluations per step once warmed up (tested: ten more steps cost
            ten times as many more).
    """

    order: float | None = None
    weak_order: float | None = None
    nfe_per_step: int = 1

    @property
    def convergence_order(self) -> float | None:
        """The order the pathwise error against the exact flow falls with: ``order``, unless
        the method's ``order`` option means something else (`UniPC`: the predictor's order,
        one less than the corrected method's)."""
        return self.order

    def init(self, sde: SDE, x: Tensor, times: list[float]) -> Any:
        """The state before the first step (default ``None``); ``times`` is the whole grid."""
        return None

    @abc.abstractmethod
    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: Any,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Any]:
        """Advance ``x`` from ``step.t`` to ``step.t_next``; return ``(x_next, state)``.

        ``score(x, t)`` is called with Python-float times (no host synchronisation)."""

    def after_correction(self, state: Any) -> Any:
        """A corrector moved ``x`` after the last step (at ``t_next``). The default keeps the
        state: multistep methods keep the model outputs at the earlier grid times and evaluate
        the model afresh at the corrected ``x`` in the next step. A method that caches an
        evaluation at the end of its step (first same as last) drops it here."""
        return state
