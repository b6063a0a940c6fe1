r"""What every condition shares: the value passed as ``sample(..., condition=...)``, its form
bound to one run, and the fixed-grid solver with the condition's hook after each step.

A condition acts in one (or more) of three places of `sdelab.sample`:

* on the **score** (`Bound.score`): classifier guidance adds $\nabla_x \log p_t(y \mid x)$,
  so it works with every solver, adaptive ones included;
* **after each fixed-grid step** (`Bound.after_step`): imputation replaces the known part of
  the state, DPS moves the state along a data-consistency gradient;
* between steps, by **resampling** (`Bound.resample`): RePaint's jumps back up the grid.

At the end `Bound.finish` sets the known part exactly to the observation. A state moved by a
hook is announced to the solver like a corrector's move (`GridSolver.after_correction`), so a
multistep method never reuses an evaluation made at the state before the move.
"""

from __future__ import annotations

import abc
from numbers import Real
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._checks import _short
from ..sde.base import SDE
from ..solvers.grid import Step
from ..solvers.pc import PC

__all__ = ["Bound", "Condition", "ConditionedSolver", "check_scale", "sample_shape"]


class Condition(abc.ABC):
    """Base of the condition values (`Inpaint`, `LinearObservation`, `ClassGuidance`): frozen
    configurations, checked at construction; `bind` checks them against a run's samples."""

    #: whether only a fixed-grid solver can honour the condition (it acts between steps)
    fixed_grid_only: ClassVar[bool] = True

    @abc.abstractmethod
    def bind(self, sde: SDE, x: Tensor, score) -> Bound:
        """The condition for this run: shapes checked against ``x`` (the prior draw, shape
        (B, ...)), tensors moved to its device and dtype."""


class Bound:
    """A condition bound to one run. The defaults do nothing."""

    def __init__(self, score) -> None:
        self.score = score  # the score the solver sees (guidance wraps it)

    def after_step(
        self, sde: SDE, score, x: Tensor, x_next: Tensor, step: Step, generator
    ) -> Tensor:
        """The state after the solver's step from ``x`` at ``step.t`` to ``x_next`` at
        ``step.t_next`` (``score`` is the counted score); return ``x_next`` itself when
        nothing moves."""
        return x_next

    def resample(
        self, solver: ConditionedSolver, sde: SDE, score, x: Tensor, step: Step, state, generator
    ):
        """Resampling after ``step`` (RePaint's jumps); returns ``(x, state)``."""
        return x, state

    def finish(self, x: Tensor) -> Tensor:
        """The final samples (the known part set exactly to the observation)."""
        return x

    def wrap(self, pc: PC, times: list[float], step_at) -> Any:
        """``pc`` with this condition's hooks, for the fixed-grid loop (`ConditionedSolver`);
        a condition that only guides the score returns ``pc`` itself."""
        if type(self).after_step is Bound.after_step and type(self).resample is Bound.resample:
            return pc
        return ConditionedSolver(pc, self, times, step_at)


class ConditionedSolver:
    r"""A fixed-grid solver (as a `PC`) with a condition's hook after each of its steps.

    Its state is ``(inner, offset)``: the solver's own state and the grid index where the
    solver was last (re)started. A restart (after a RePaint jump, which invalidates a
    multistep history) re-initialises the solver on the rest of the grid, ``times[p:]``, as
    if the run began at $t_p$: its steps are numbered from there (warm-up steps again).
    """

    def __init__(self, pc: PC, bound: Bound, times: list[float], step_at) -> None:
        self.pc, self.bound, self.times, self.step_at = pc, bound, times, step_at

    def init(self, sde: SDE, x: Tensor, times: list[float]):
        return self.pc.init(sde, x, times), 0

    def step(self, sde: SDE, score, x: Tensor, step: Step, state, generator):
        inner, offset = state
        x, inner = self.advance(sde, score, x, step, inner, offset, generator)
        return self.bound.resample(self, sde, score, x, step, (inner, offset), generator)

    def advance(self, sde: SDE, score, x: Tensor, step: Step, inner, offset: int, generator):
        """The solver's step (numbered from its last restart), then the condition's hook."""
        if offset:
            step = Step(step.index - offset, step.count - offset, step.t, step.t_next, step.dt)
        x_next, inner = self.pc.step(sde, score, x, step, inner, generator)
        moved = self.bound.after_step(sde, score, x, x_next, step, generator)
        if moved is not x_next and self.pc.predictor is not None:
            inner = self.pc.predictor.after_correction(inner)
        return moved, inner

    def restart(self, sde: SDE, x: Tensor, p: int):
        """The state of a solver started afresh at grid point ``p``."""
        return self.pc.init(sde, x, self.times[p:]), p


def sample_shape(name: str, value: Tensor, x: Tensor, event: tuple[int, ...]) -> Tensor:
    """``value`` of shape ``event`` (shared by the batch) or ``(B, *event)`` (one per sample),
    as a ``(1 or B, *event)`` tensor; else a ValueError naming both accepted shapes."""
    b = x.shape[0]
    if tuple(value.shape) == event:
        return value.unsqueeze(0)
    if tuple(value.shape) == (b, *event):
        return value
    raise ValueError(
        f"{name} must have shape {event} (one for the whole batch) or {(b, *event)} (one per "
        f"sample) for samples of shape {tuple(x.shape)}, got {tuple(value.shape)}"
    )


def check_scale(name: str, value: float, *, allow_negative: bool = True) -> float:
    """``value`` as a finite float (>= 0 unless ``allow_negative``), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    v = float(value)
    ok = v == v and abs(v) != float("inf") and (allow_negative or v >= 0)
    if not ok:
        expected = "a finite number" if allow_negative else "a finite number >= 0"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


def as_float_tensor(name: str, value) -> Tensor:
    """``value`` as a floating tensor with finite entries (checked once, at construction)."""
    t = torch.as_tensor(value)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {_short(t)} with NaN or inf entries")
    return t
