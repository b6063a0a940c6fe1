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
from collections.abc import Callable
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
    r"""Wraps a score ``s(x, t)``: counts every call (the NFE), checks that the output is like
    ``x`` (shape, dtype and device, `sdelab._checks.check_like`), and records on the device
    whether each output was finite, so no host synchronisation happens per call.

    Per call it keeps the output's minimum and maximum (one cheap reduction, ``aminmax``: a NaN
    or an infinity anywhere shows up in them, with no false alarm from overflow); every
    256 calls these are folded into one device-side index of the first bad call, so memory
    stays flat however many calls are made. Read the result once at the end with `check` or
    `first_nonfinite`.

    Args:
        score: the callable ``score(x, t)``.
        name: how messages name it (the pipelines wrap their model as ``unet(sample, t)``).

    Attributes:
        nfe: the number of score evaluations so far (each call on a batch counts once).
    """

    _FOLD_EVERY = 256

    def __init__(self, score: Score, name: str = "score(x, t)") -> None:
        self.name = name
        self._arg = name.split("(")[0]  # "score", "unet": the argument the messages name
        if not callable(score):
            raise TypeError(f"{self._arg} must be callable as {name}, got {type(score).__name__}")
        self.score = score
        self.nfe = 0
        self._pending: list[Tensor] = []  # min, max of each call not folded yet
        self._folded = 0  # calls already folded into _first_bad
        self._first_bad: Tensor | None = None  # 0-d int64, 1-based index, 0 = none

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        s = self.score(x, t)
        check_like(self.name, s, x)  # shape, dtype, device: attributes only, no sync
        self.nfe += 1
        if s.numel():
            self._pending.extend(torch.aminmax(s.detach()))
        else:  # nothing to check: record a finite placeholder to keep indices aligned
            self._pending.extend((s.new_zeros(()),) * 2)
        if len(self._pending) >= 2 * self._FOLD_EVERY:
            self._fold()
        return s

    def _fold(self) -> None:
        """Fold the pending per-call extremes into the device-side first-bad index."""
        if not self._pending:
            return
        ext = torch.stack(self._pending).reshape(-1, 2)
        n = ext.shape[0]
        bad = ~torch.isfinite(ext).all(-1)
        idx = torch.arange(self._folded + 1, self._folded + n + 1, device=ext.device)
        none = self._folded + n + 1
        first = idx.masked_fill(~bad, none).min()
        first = first.masked_fill(first == none, 0)
        if self._first_bad is None:
            self._first_bad = first
        else:
            self._first_bad = torch.where(self._first_bad > 0, self._first_bad, first)
        self._folded += n
        self._pending.clear()

    @property
    def first_bad_call(self) -> Tensor | None:
        """0-d int64 tensor on the score's device: the 1-based index of the first call whose
        output was non-finite, 0 while none was (``None`` before the first call). No sync."""
        self._fold()
        return self._first_bad

    @property
    def nonfinite(self) -> Tensor | None:
        """0-d bool tensor, True once any output had a NaN or an infinity. No sync."""
        first = self.first_bad_call
        return None if first is None else first > 0

    def first_nonfinite(self) -> int:
        """The 1-based index of the first call with a non-finite output, 0 if none (one sync)."""
        first = self.first_bad_call
        return 0 if first is None else int(first)

    def check(
        self, where: Callable[[int], str] | None = None, result: Tensor | None = None
    ) -> None:
        """Raise ``FloatingPointError`` if any output was non-finite (one host sync).

        ``where(k)``, if given, adds to the message where the bad call ``k`` happened (the
        sampler names its step). ``result``, if given, is the final state computed from these
        outputs: it is checked in the same host read (a solver that diverged with finite
        score outputs), so a sampler reads the device once at the end."""
        first = self.first_bad_call
        if first is None:
            first = torch.zeros((), dtype=torch.long)
        if result is None:
            k, finite = int(first), True
        else:
            ext = torch.aminmax(result.detach()) if result.numel() else ()
            ok = (
                torch.isfinite(torch.stack(ext)).all()
                if ext
                else result.new_ones((), dtype=torch.bool)
            )
            k, finite = torch.stack((first.to(ok.device), ok.long())).tolist()
        if k:
            raise FloatingPointError(
                f"{self.name} returned NaN or inf, first at {self._arg} evaluation {k} of "
                f"{self.nfe}" + (where(k) if where is not None else "")
            )
        if not finite:
            raise FloatingPointError(
                "the samples contain NaN or inf although every score evaluation was finite: the "
                "solver diverged (try more steps)"
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
