r"""Time grids for the fixed-grid samplers: which times $T = t_0 > t_1 > \dots > t_N = \epsilon$
the solver visits.

A schedule is a small frozen value, like a solver; `time_grid` (and ``sample(...,
schedule=...)``) accepts one of them or its name:

| name | object | grid |
| --- | --- | --- |
| ``"uniform"`` | `UniformTime` | equal steps in $t$ (the default) |
| ``"logsnr"`` | `UniformLogSNR` | equal steps in the half log-SNR $\lambda(t) = \log(m(t)/\sigma(t))$ |
| ``"karras"`` | `Karras` | equal steps in $s^{1/\rho}$, $s = \sigma/m$ (Karras et al. 2022, eq. 5) |
| ``"quadratic"`` | `QuadraticTime` | equal steps in $\sqrt t$ (DPM-Solver's "time_quadratic") |
| — | `Times` | explicit times |

Grids in $\lambda$ or $s$ are mapped back to $t$ with the SDE's closed-form
`LinearSDE.t_from_log_snr`; the end points are exactly $T$ and $\epsilon$. Times are Python
floats, so the sampling loop never synchronises with the device.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from ._checks import check_int, check_positive
from .sde.base import SDE, LinearSDE

__all__ = [
    "SCHEDULES",
    "Karras",
    "QuadraticTime",
    "Schedule",
    "Times",
    "UniformLogSNR",
    "UniformTime",
    "as_schedule",
    "time_grid",
]


class Schedule(abc.ABC):
    """A rule that places ``steps + 1`` times from $T$ down to $\\epsilon$."""

    @abc.abstractmethod
    def times(self, sde: SDE, steps: int, eps: float) -> list[float]:
        """The ``steps + 1`` grid times, strictly decreasing from ``sde.T`` to ``eps``."""

    def constant_step(self, sde: SDE, steps: int, eps: float) -> float | None:
        """The step size if the grid has equal steps (solvers then get exactly this ``dt``),
        else ``None`` (each step gets ``t - t_next``)."""
        return None


def _interior(ends: tuple[float, float], steps: int, f) -> list[float]:
    """``f`` applied to ``steps + 1`` points evenly spaced between ``ends``, with the first and
    last grid times given exactly by the caller."""
    a, b = ends
    return [f(a + (b - a) * i / steps) for i in range(1, steps)]


def _needs_log_snr(sde: SDE, schedule: Schedule) -> LinearSDE:
    if not isinstance(sde, LinearSDE) or (type(sde).t_from_log_snr is LinearSDE.t_from_log_snr):
        raise TypeError(
            f"schedule {schedule!r} needs an SDE with a closed-form log-SNR and its inverse "
            f"(LinearSDE.log_snr / t_from_log_snr: VPSDE, SubVPSDE, VESDE, OrnsteinUhlenbeck, "
            f"DiscreteVPSDE), got {type(sde).__name__}"
        )
    return sde


@dataclass(frozen=True)
class UniformTime(Schedule):
    r"""Equal steps in time, $t_i = T - i\,(T - \epsilon)/N$ (the paper's grid and sdelab's
    default; the last time is exactly $\epsilon$)."""

    def times(self, sde: SDE, steps: int, eps: float) -> list[float]:
        T = sde.T
        dt = (T - eps) / steps
        return [T - i * dt for i in range(steps)] + [eps]

    def constant_step(self, sde: SDE, steps: int, eps: float) -> float | None:
        return (sde.T - eps) / steps


@dataclass(frozen=True)
class UniformLogSNR(Schedule):
    r"""Equal steps in the half log-SNR (Lu et al. 2022, DPM-Solver's "logSNR" grid):

    $$ \lambda_i = \lambda(T) + \tfrac iN\big(\lambda(\epsilon) - \lambda(T)\big), \qquad
       t_i = \lambda^{-1}(\lambda_i). $$
    """

    def times(self, sde: SDE, steps: int, eps: float) -> list[float]:
        lin = _needs_log_snr(sde, self)
        lam = (lin.log_snr(sde.T), lin.log_snr(eps))
        return [sde.T, *_interior(lam, steps, lin.t_from_log_snr), eps]


@dataclass(frozen=True)
class Karras(Schedule):
    r"""The noise levels of Karras et al. 2022 (eq. 5) in the noise-to-signal ratio
    $s(t) = \sigma(t)/m(t) = e^{-\lambda(t)}$ (EDM's $\sigma$):

    $$ s_i = \Big(s_{\max}^{1/\rho} + \tfrac iN\big(s_{\min}^{1/\rho} - s_{\max}^{1/\rho}\big)\Big)^{\rho},
       \qquad s_{\max} = s(T),\ s_{\min} = s(\epsilon),\qquad t_i = \lambda^{-1}(-\log s_i). $$

    Args:
        rho: $\rho > 0$ (7 in the paper; 1 is uniform in $s$, $\rho \to \infty$ uniform in $\log s$).
    """

    rho: float = 7.0

    def __post_init__(self) -> None:
        check_positive("rho", self.rho)

    def times(self, sde: SDE, steps: int, eps: float) -> list[float]:
        lin = _needs_log_snr(sde, self)
        r = 1.0 / self.rho
        ends = (math.exp(-lin.log_snr(sde.T) * r), math.exp(-lin.log_snr(eps) * r))

        def t_of(u: float) -> float:
            return lin.t_from_log_snr(-self.rho * math.log(u))

        return [sde.T, *_interior(ends, steps, t_of), eps]


@dataclass(frozen=True)
class QuadraticTime(Schedule):
    r"""Equal steps in $\sqrt t$ (DPM-Solver's "time_quadratic" grid, Lu et al. 2022, App. D.1):

    $$ t_i = \Big(\sqrt T + \tfrac iN\big(\sqrt\epsilon - \sqrt T\big)\Big)^2. $$
    """

    def times(self, sde: SDE, steps: int, eps: float) -> list[float]:
        ends = (math.sqrt(sde.T), math.sqrt(eps))
        return [sde.T, *_interior(ends, steps, lambda u: u * u), eps]


@dataclass(frozen=True)
class Times(Schedule):
    r"""Explicit grid times ``ts``: strictly decreasing, first $T$, last the sampler's
    $\epsilon$ (a tensor is read once, when the grid is built).

    Args:
        ts: the times $t_0 = T > t_1 > \dots > t_N = \epsilon$, $N \ge 1$.
    """

    ts: tuple[float, ...]

    def __init__(self, ts: Sequence[float] | Tensor) -> None:
        if isinstance(ts, Tensor):
            ts = ts.detach().cpu().reshape(-1).tolist()
        try:
            values = tuple(float(v) for v in ts)
        except (TypeError, ValueError):
            raise TypeError(f"ts must be a sequence of times, got {ts!r}") from None
        if len(values) < 2:
            raise ValueError(f"ts must hold at least 2 times (T and eps), got {values!r}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"ts must be finite, got {values!r}")
        for i in range(len(values) - 1):
            if not values[i] > values[i + 1]:
                raise ValueError(
                    f"ts must be strictly decreasing, got ts[{i}]={values[i]!r} <= "
                    f"ts[{i + 1}]={values[i + 1]!r}"
                )
        object.__setattr__(self, "ts", values)

    def times(self, sde: SDE, steps: int, eps: float) -> list[float]:
        ts = self.ts
        if not math.isclose(ts[0], sde.T, rel_tol=1e-12, abs_tol=1e-12):
            raise ValueError(f"Times(ts) must start at T = {sde.T}, got ts[0]={ts[0]!r}")
        if not math.isclose(ts[-1], eps, rel_tol=1e-9, abs_tol=0.0):
            raise ValueError(
                f"Times(ts) must end at the sampler's eps = {eps!r}, got ts[-1]={ts[-1]!r} "
                f"(pass eps=ts[-1] to sample)"
            )
        return [sde.T, *ts[1:-1], eps]

    def __repr__(self) -> str:
        return f"Times({len(self.ts) - 1} steps from {self.ts[0]!r} to {self.ts[-1]!r})"


#: the schedules that have a name
SCHEDULES: dict[str, type[Schedule]] = {
    "uniform": UniformTime,
    "logsnr": UniformLogSNR,
    "karras": Karras,
    "quadratic": QuadraticTime,
}


def as_schedule(schedule: str | Schedule) -> Schedule:
    """A schedule value from a name (`SCHEDULES`) or a `Schedule`, raising for anything else."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str):
        cls = SCHEDULES.get(schedule)
        if cls is None:
            raise ValueError(
                f"schedule must be one of {sorted(SCHEDULES)} or a Schedule (UniformTime(), "
                f"UniformLogSNR(), Karras(rho), QuadraticTime(), Times(ts)), got {schedule!r}"
            )
        return cls()
    if isinstance(schedule, type) and issubclass(schedule, Schedule):
        raise TypeError(
            f"schedule must be a schedule instance, got the class {schedule.__name__}; did you "
            f"mean {schedule.__name__}()?"
        )
    raise TypeError(f"schedule must be a name or a Schedule, got {type(schedule).__name__}")


def check_eps(sde: SDE, eps: float) -> float:
    """``eps`` as a float in $(0, T)$, or in $[0, T)$ for an SDE whose noise level at $t = 0$
    is already positive (`DiscreteVPSDE`: the first training step), raising otherwise."""
    if isinstance(sde, LinearSDE) and isinstance(eps, int | float) and eps == 0:
        if float(sde.std(0.0)) > 0:
            return 0.0
    eps = check_positive("eps", eps)
    if not eps < sde.T:
        raise ValueError(f"eps must lie in (0, T) = (0, {sde.T}), got {eps!r}")
    return eps


def grid_steps(schedule: Schedule, steps: int | None, default: int) -> int:
    """The number of steps: ``len(ts) - 1`` for `Times` (``steps`` must agree), else
    ``steps`` (default ``default``)."""
    if isinstance(schedule, Times):
        n = len(schedule.ts) - 1
        if steps is not None and steps != n:
            raise ValueError(f"steps={steps!r} does not match the {n} steps of {schedule!r}")
        return n
    return default if steps is None else check_int("steps", steps, minimum=1)


def time_grid(
    sde: SDE, steps: int | None = None, schedule: str | Schedule = "uniform", eps: float = 1e-3
) -> list[float]:
    r"""The ``steps + 1`` times of a sampler's grid, strictly decreasing from $T$ to $\epsilon$,
    as Python floats (see the module docs for the schedules).

    Args:
        sde: the forward SDE (its $T$; its log-SNR for ``"logsnr"`` and ``"karras"``).
        steps: the number of steps $N \ge 1$ (default ``sde.N``; for `Times`, its own).
        schedule: a name in `SCHEDULES` or a `Schedule`.
        eps: the last time, in $(0, T)$ (or 0 for `DiscreteVPSDE`, whose $\sigma(0) > 0$).
    """
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdelab SDE, got {type(sde).__name__}")
    sched = as_schedule(schedule)
    n = grid_steps(sched, steps, sde.N)
    eps = check_eps(sde, eps)
    ts = sched.times(sde, n, eps)
    for i in range(n):  # a grid mapped back through t(lambda) must still decrease
        if not ts[i] > ts[i + 1]:
            raise ValueError(
                f"schedule {sched!r} gave a grid that is not strictly decreasing at step {i}: "
                f"{ts[i]!r} -> {ts[i + 1]!r} (too many steps for the float precision?)"
            )
    return ts
