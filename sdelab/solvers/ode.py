r"""The probability-flow ODE solver (Song et al. 2021, Sec. 4.3, eq. 13).

Every SDE of the form $\mathrm{d}x = f(x,t)\,\mathrm{d}t + g(t)\,\mathrm{d}w$ has a
deterministic ODE whose trajectories share the SDE's marginals $p_t$:

$$ \frac{\mathrm{d}x}{\mathrm{d}t} = f(x, t) - \tfrac12 g(t)^2\,\nabla_x \log p_t(x). $$

Integrating it backwards from a prior draw $x(T) \sim p_T$ down to $t = \varepsilon$ gives a
sample of $p_\varepsilon$ (`ProbabilityFlowODE`); integrating forward from data gives its
latent code (`sdelab.encode`) and, augmented with the divergence of the drift, its exact
log-likelihood (`sdelab.log_likelihood`). All three hand one `sdelab._ode.ODEOptions` to the
adaptive machinery in ``sdelab._ode``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._ode import ODEOptions, OdeSolution, solve
from ..sde.base import SDE, check_sde
from ..sde.reverse import Score
from .base import AdaptiveResult, AdaptiveSolver, CountingScore

__all__ = ["ProbabilityFlowODE", "integrate_probability_flow"]


def integrate_probability_flow(
    sde: SDE,
    score: Score,
    x: Tensor,
    t0: float,
    t1: float,
    *,
    backend: str = "scipy",
    method: str | type = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    ode_dtype: torch.dtype | None = None,
    error_norm: str = "sample",
    return_trajectory: bool = False,
    progress: bool = False,
    desc: str = "probability-flow ODE",
) -> OdeSolution:
    r"""Integrate $\mathrm{d}x/\mathrm{d}t = f(x,t) - \tfrac12 g(t)^2 s(x,t)$ from ``t0`` to
    ``t1`` (either direction) with `sdelab._ode.odeint` (the options: see
    `sdelab._ode.ODEOptions`).

    The drift is ``sde.reverse(score, probability_flow=True).drift`` evaluated with a Python
    float time, in ``x``'s dtype and on its device.
    """
    options = ODEOptions(backend, method, rtol, atol, ode_dtype, error_norm)
    return solve_probability_flow(
        sde,
        score,
        x,
        t0,
        t1,
        options,
        return_trajectory=return_trajectory,
        progress=progress,
        desc=desc,
    )


def solve_probability_flow(
    sde: SDE,
    score: Score,
    x: Tensor,
    t0: float,
    t1: float,
    options: ODEOptions,
    *,
    return_trajectory: bool = False,
    progress: bool = False,
    desc: str = "probability-flow ODE",
) -> OdeSolution:
    """`integrate_probability_flow` with the integrator options already gathered in
    ``options`` (what `ProbabilityFlowODE`, `sdelab.encode` and `sdelab.decode` call)."""
    drift = check_sde(sde).reverse(score, probability_flow=True).drift
    return solve(
        lambda t, y: drift(y, t),
        x,
        t0,
        t1,
        options,
        return_trajectory=return_trajectory,
        progress=progress,
        desc=desc,
    )


@dataclass(frozen=True)
class ProbabilityFlowODE(AdaptiveSolver):
    r"""Sample by integrating the probability-flow ODE (Song et al. 2021, eq. 13) from $T$ to
    $\varepsilon$ with an adaptive integrator:

    $$ \frac{\mathrm{d}x}{\mathrm{d}t} = f(x, t) - \tfrac12 g(t)^2\, s_\theta(x, t),
       \qquad x(T) \sim p_T . $$

    The ODE is deterministic: the only randomness is the prior draw, and with the exact score
    the only errors are the integrator's (controlled by ``rtol``/``atol``) and stopping at
    $\varepsilon$ instead of 0.

    Args:
        method: any `scipy.integrate.solve_ivp` method (``"RK45"``, ``"RK23"``, ``"DOP853"``,
            ``"Radau"``, ``"BDF"``, ``"LSODA"``) or an ``OdeSolver`` subclass; with
            ``backend="torch"`` only ``"RK45"`` (Dormand-Prince 5(4)).
        rtol: relative tolerance, $> 0$.
        atol: absolute tolerance, $> 0$.
        backend: ``"scipy"`` (default, the paper's way: the state crosses to the host, in
            float64, once per score evaluation) or ``"torch"`` (sdelab's own Dormand-Prince
            on the input's device; the state never leaves it). See `sdelab.log_likelihood`.
        ode_dtype: the integrator's state dtype on the torch backend (default: the input's
            dtype; ``torch.float64`` for more headroom). scipy always uses float64.
        error_norm: ``"sample"`` (default: every sample of the batch meets the tolerance as if
            solved alone) or ``"batch"`` (scipy's RMS over the whole batch, the paper's code's
            behaviour; one sample may be off by up to $\sqrt B$ times the tolerance). See
            ``sdelab._ode``.

    Notes:
        ``steps`` is ignored: the integrator chooses its own steps. `AdaptiveResult.steps` is
        the number of accepted steps; the NFE is counted by the `CountingScore` that
        `sdelab.sample` wraps around the score (RK45 costs 6 evaluations per step plus 2 to
        start, and 6 more per rejected step). The trajectory, when asked for, holds the
        state at the integrator's accepted times (no interpolation), from $T$ down to
        $\varepsilon$. The score is always called with a Python float time.

    **Stability.** The step-size controller keeps the explicit integrator inside its
    stability region, so a loose tolerance costs accuracy gradually, never a blow-up: on the
    tests' 2-D mixture with the exact score (sliced $W_2$ in data stds;
    ``benchmarks/stability_limits.py``) RK45 is at the noise floor (about 0.05) at ``rtol = atol`` from
    ``1e-1`` to ``1e-3`` on VP (50-74 NFE) and VE (50-104 NFE). A stiff model makes it take
    many small steps (watch the NFE) rather than return garbage.
    """

    method: str = "RK45"
    rtol: float = 1e-5
    atol: float = 1e-5
    backend: str = "scipy"
    ode_dtype: torch.dtype | None = None
    error_norm: str = "sample"

    stochastic = False  # class attribute (not a field): the ODE draws no random numbers

    def __post_init__(self) -> None:
        options = ODEOptions(
            self.backend, self.method, self.rtol, self.atol, self.ode_dtype, self.error_norm
        )  # checks them; kept (not a field) for `solve`
        object.__setattr__(self, "_options", options)

    def solve(
        self,
        sde: SDE,
        score: CountingScore,
        x: Tensor,
        t_start: float,
        t_end: float,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        return_trajectory: bool = False,
    ) -> AdaptiveResult:
        """Integrate the probability-flow ODE from ``x`` at ``t_start`` (= T) to ``t_end``
        (= eps). ``steps`` and ``generator`` are unused (adaptive, deterministic)."""
        sol = solve_probability_flow(
            sde,
            score,
            x,
            t_start,
            t_end,
            self._options,
            return_trajectory=return_trajectory,
            progress=progress,
        )
        times = None
        if sol.times is not None:
            times = torch.tensor(sol.times, dtype=x.dtype, device=x.device)
        return AdaptiveResult(x=sol.y, steps=sol.steps, times=times, trajectory=sol.trajectory)
