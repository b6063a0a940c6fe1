r"""What every solver is, and the score wrapper that `sdelab.sample` hands to them.

There are two kinds of solver:

* `Predictor` / `Corrector`: one update rule on a fixed time grid. `sdelab.sample` owns the
  loop (grid, progress bar, trajectory, non-finite detection); the solver only supplies its
  update. `PC` combines one of each.
* `AdaptiveSolver`: hands the whole reverse process to a library integrator (scipy's
  ``solve_ivp`` for the probability-flow ODE, ``torchsde.sdeint`` for the reverse SDE) and
  implements `AdaptiveSolver.solve`.

Solvers are small immutable configuration values (dataclasses with ``frozen=True``): they
hold options, never state, so one solver object can be reused for any SDE, shape or device.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import Time, check_like
from ..sde.base import SDE
from ..sde.reverse import Score

__all__ = ["AdaptiveResult", "AdaptiveSolver", "CountingScore", "Solver"]


class Solver(abc.ABC):  # noqa: B024 - a marker base: predictors, correctors, adaptive solvers
    """Base of every solver accepted by `sdelab.sample`."""

    #: whether the solver draws random numbers (False for the probability-flow ODE)
    stochastic: bool = True


class CountingScore:
    r"""Wraps a score ``s(x, t)``: counts every call (the NFE), checks the output's shape, and
    keeps a device-side flag of non-finite outputs so no host synchronisation happens per call.

    Attributes:
        nfe: the number of score evaluations so far (each call on a batch counts once).
        nonfinite: a 0-d bool tensor on the score's device, True once any output had a NaN
            or an infinity (``None`` before the first call).
        first_bad_call: 0-d int64 tensor, the 1-based index of the first call whose output
            was non-finite (0 while none was); read it once at the end.
    """

    def __init__(self, score: Score) -> None:
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        self.score = score
        self.nfe = 0
        self.first_bad_call: Tensor | None = None

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        s = self.score(x, t)
        check_like("score(x, t)", s, x)
        self.nfe += 1
        bad = ~torch.isfinite(s).all()
        if self.first_bad_call is None:
            self.first_bad_call = torch.zeros((), dtype=torch.int64, device=s.device)
        # record the first bad call index without leaving the device
        self.first_bad_call = torch.where(
            bad & (self.first_bad_call == 0),
            torch.full_like(self.first_bad_call, self.nfe),
            self.first_bad_call,
        )
        return s

    def check(self) -> None:
        """Raise ``FloatingPointError`` if any output was non-finite (one host sync)."""
        if self.first_bad_call is not None:
            k = int(self.first_bad_call)
            if k:
                raise FloatingPointError(
                    f"score(x, t) returned NaN or inf, first at score evaluation {k} of {self.nfe}"
                )


@dataclass
class AdaptiveResult:
    """What `AdaptiveSolver.solve` returns.

    Attributes:
        x: the state at ``t_end``.
        steps: the number of accepted steps the integrator took.
        times: the times of ``trajectory`` (decreasing), or ``None``.
        trajectory: states at ``times``, stacked on a new first dimension, or ``None``.
    """

    x: Tensor
    steps: int
    times: Tensor | None = None
    trajectory: Tensor | None = None


class AdaptiveSolver(Solver):
    """A solver that integrates the whole reverse process with a library integrator."""

    @abc.abstractmethod
    def solve(
        self,
        sde: SDE,
        score: CountingScore,
        x: Tensor,
        t_start: float,
        t_end: float,
        *,
        steps: int | None,
        generator: torch.Generator | None,
        progress: bool,
        return_trajectory: bool,
    ) -> AdaptiveResult:
        """Integrate from ``x`` at ``t_start`` (= T) down to ``t_end`` (= eps).

        ``score`` is already wrapped by `CountingScore` (it counts NFE itself); ``steps``
        is the user's optional step hint, ``generator`` seeds all randomness.
        """
