r"""Pseudo-numerical methods: PNDM (Liu et al. 2022) and the improved PNDM (Zhang & Chen 2023).

Both integrate the probability-flow ODE written for the scaled state $y = x/m(t)$ in the
noise-to-signal ratio $s = \sigma/m$, where it reads $\mathrm{d}y/\mathrm{d}s = \epsilon(x, t)$
with the noise prediction $\epsilon = -\sigma(t)\,s_\theta(x, t)$ (`sdelab.solvers._exp`). One
step from $t$ to $t'$ moves with the *transfer* $\phi$ (Liu et al. 2022, eq. 11: the DDIM step)
along a combination $e'$ of noise predictions (the *gradient part*):

$$ \phi(x, e', t, t') = \frac{m(t')}{m(t)}\,x + m(t')\big(s(t') - s(t)\big)\,e'
   = \frac{m'}{m}\,x + \Big(\sigma' - \frac{m'\sigma}{m}\Big)\,e'. $$

With diffusers' $\bar\alpha = m^2$ this is eq. 11 of the PNDM paper,
$\sqrt{\bar\alpha'/\bar\alpha}\,x - (\bar\alpha' - \bar\alpha)\,e' /
\big(\sqrt{\bar\alpha}\,(\sqrt{(1-\bar\alpha')\bar\alpha} + \sqrt{(1-\bar\alpha)\bar\alpha'})\big)$.
The gradient part is a classical method with *constant* coefficients, i.e. written for equal
steps in the grid index: Runge-Kutta 4 (PRK, eq. 12) or Adams-Bashforth (PLMS, eq. 13).
On a grid of equal steps in $s$ that is the classical method on the ODE above; on any other
smooth grid the constant coefficients weigh the noise predictions by the index instead of by
$s$, an $O(h^2)$ relative error in each step's average of $\epsilon$, so the method converges
with order 2 there (see the orders in `PNDM` and `IPNDM`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..sde.base import SDE
from ._exp import Coeffs, coeffs, require_linear
from .grid import GridSolver, Step

__all__ = ["IPNDM", "PNDM"]

#: Adams-Bashforth coefficients for equal steps, newest noise prediction first (orders 1-4)
_ADAMS_BASHFORTH = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def _noise(score, x: Tensor, c: Coeffs) -> Tensor:
    r"""The noise prediction $\epsilon(x, t) = -\sigma(t)\,s_\theta(x, t)$ (one score call)."""
    return (-c.sigma) * score(x, c.t)


def transfer(x: Tensor, e: Tensor, c: Coeffs, c_next: Coeffs) -> Tensor:
    r"""The transfer $\phi(x, e, t, t') = \frac{m'}{m}x + (\sigma' - \frac{m'\sigma}{m})\,e$
    (Liu et al. 2022, eq. 11; exact for a constant $e$: the DDIM step)."""
    ratio = c_next.m / c.m
    return torch.add(ratio * x, e, alpha=c_next.sigma - ratio * c.sigma)  # one fused pass


def adams_bashforth(history: tuple[Tensor, ...]) -> Tensor:
    r"""The Adams-Bashforth combination of order $q$ = ``len(history)`` (1 to 4) for equal
    steps, newest last: $e' = \sum_j b^{(q)}_j\,\epsilon_{k-j}$, e.g.
    $e' = (55\epsilon_k - 59\epsilon_{k-1} + 37\epsilon_{k-2} - 9\epsilon_{k-3})/24$
    (Liu et al. 2022, eq. 13)."""
    b = _ADAMS_BASHFORTH[len(history) - 1]
    out = b[0] * history[-1]
    for coef, e in zip(b[1:], reversed(history[:-1]), strict=True):
        out.add_(e, alpha=coef)  # in place on the fresh sum: one pass per term
    return out


def _multistep(score, x: Tensor, c: Coeffs, c_next: Coeffs, history, order: int):
    """One pseudo linear multistep step: a fresh noise prediction at ``x``, the last ``order``
    of them combined by Adams-Bashforth, then the transfer. Returns ``(x_next, history)``."""
    history = (*history, _noise(score, x, c))[-order:]
    return transfer(x, adams_bashforth(history), c, c_next), history


class _PseudoNumerical(GridSolver):
    """What PNDM and IPNDM share: a linear SDE, the history of noise predictions (newest last)
    as the state, the coefficients of both grid times handed to `advance`."""

    stochastic = False

    def init(self, sde: SDE, x: Tensor, times: list[float]) -> tuple[Tensor, ...]:
        require_linear(sde, type(self).__name__)
        return ()

    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: tuple[Tensor, ...],
        generator: torch.Generator | None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        c, c_next = coeffs(sde, step.t), coeffs(sde, step.t_next)
        return self.advance(sde, score, x, step.index, c, c_next, state)

    def advance(
        self, sde: SDE, score, x: Tensor, index: int, c: Coeffs, c_next: Coeffs, history
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Step ``index`` from ``c.t`` to ``c_next.t``: ``(x_next, history)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class PNDM(_PseudoNumerical):
    r"""Pseudo numerical methods for diffusion models (Liu, Ren, Lin, Zhao, ICLR 2022,
    arXiv 2202.09778): pseudo linear multistep (PLMS) on the noise prediction with the transfer
    $\phi$ of the module docs, warmed up by pseudo Runge-Kutta (PRK), as diffusers'
    ``PNDMScheduler``.

    **PRK** (eq. 12), the first three steps, four score evaluations each, with the midpoint
    $t_m = (t + t')/2$ of the step in time (diffusers' midpoint training step):

    $$ \begin{aligned}
       e_1 &= \epsilon(x, t), & x_1 &= \phi(x, e_1, t, t_m), &
       e_2 &= \epsilon(x_1, t_m), & x_2 &= \phi(x, e_2, t, t_m), \\
       e_3 &= \epsilon(x_2, t_m), & x_3 &= \phi(x, e_3, t, t'), &
       e_4 &= \epsilon(x_3, t'), & x' &= \phi\big(x, \tfrac16(e_1 + 2e_2 + 2e_3 + e_4), t, t'\big).
       \end{aligned} $$

    Only $e_1$ (the prediction at the grid time) enters the PLMS history.

    **PLMS** (eq. 13), every later step, one score evaluation:
    $x' = \phi\big(x, \tfrac1{24}(55\epsilon_k - 59\epsilon_{k-1} + 37\epsilon_{k-2} -
    9\epsilon_{k-3}), t, t'\big)$ with $\epsilon_{k-j}$ the predictions at the last four grid
    times.

    With ``skip_prk=True`` (diffusers' ``skip_prk_steps=True``, the PLMS sampler of latent
    diffusion) the warm-up is lower-order PLMS instead: the first step is the pseudo improved
    Euler (Heun) step $x' = \phi(x, \tfrac12(e_1 + \epsilon(\phi(x, e_1, t, t'), t')), t, t')$
    (two evaluations; the second prediction is not kept), then Adams-Bashforth of order 2 and
    3, then 4. No lower-order final steps (as the paper and diffusers). NFE: $N + 9$ for $N
    \ge 3$ steps ($4N$ below), with ``skip_prk`` $N + 1$.

    The grid is sdelab's (`sdelab.time_grid`); to reproduce diffusers' noise levels pass them
    as `sdelab.Times` (``timestep_spacing="trailing"`` or ``"leading"`` with an even
    ``num_train_timesteps // num_inference_steps``; diffusers' repeated PRK timesteps are the
    midpoint evaluations above). A corrector between steps keeps the history (the predictions
    belong to the earlier grid times; `GridSolver.after_correction`).

    **Order 2.** The coefficients are those of equal steps in the grid index (module docs), so
    on a smooth grid that is not equal in $s$ the method is second order (measured on the
    oracle, VP, 10-160 steps: 2.0-2.2 on the uniform, log-SNR, quadratic and Karras grids, both
    warm-ups). On a grid of equal steps in $s$ (``Karras(rho=1)``) the PLMS formula is
    classical fourth-order Adams-Bashforth and the warm-up limits the method to 3.

    Args:
        skip_prk: warm up with lower-order PLMS (1 + 2 evaluations on the first step) instead
            of three Runge-Kutta steps (12 evaluations).
    """

    skip_prk: bool = False
    order = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.skip_prk, bool):
            raise TypeError(f"skip_prk must be a bool (True or False), got {self.skip_prk!r}")

    def advance(self, sde, score, x, index, c, c_next, history):
        if not self.skip_prk and index < 3:
            return self._runge_kutta(sde, score, x, c, c_next, history)
        if self.skip_prk and index == 0:
            e1 = _noise(score, x, c)
            e2 = _noise(score, transfer(x, e1, c, c_next), c_next)
            return transfer(x, 0.5 * (e1 + e2), c, c_next), (e1,)
        return _multistep(score, x, c, c_next, history, 4)

    @staticmethod
    def _runge_kutta(sde, score, x, c, c_next, history):
        """One pseudo Runge-Kutta step (eq. 12); appends $e_1$ to the history."""
        c_mid = coeffs(sde, 0.5 * (c.t + c_next.t))
        e1 = _noise(score, x, c)
        e2 = _noise(score, transfer(x, e1, c, c_mid), c_mid)
        e3 = _noise(score, transfer(x, e2, c, c_mid), c_mid)
        e4 = _noise(score, transfer(x, e3, c, c_next), c_next)
        e = (e1 + 2.0 * e2 + 2.0 * e3 + e4) / 6.0
        return transfer(x, e, c, c_next), (*history, e1)


@dataclass(frozen=True)
class IPNDM(_PseudoNumerical):
    r"""Improved PNDM (Zhang & Chen, "Fast Sampling of Diffusion Models with Exponential
    Integrator", ICLR 2023, arXiv 2204.13902, App. on iPNDM; diffusers' ``IPNDMScheduler``):
    the pseudo linear multistep of `PNDM` without the Runge-Kutta warm-up, one score
    evaluation per step. Step $k$ uses Adams-Bashforth of order $q = \min(k + 1,$
    ``order``$)$ on the noise predictions at the last $q$ grid times,

    $$ x' = \phi\Big(x, \sum_{j<q} b^{(q)}_j\,\epsilon_{k-j}, t, t'\Big), \qquad
       b^{(1)} = (1),\ b^{(2)} = \tfrac12(3, -1),\ b^{(3)} = \tfrac1{12}(23, -16, 5),\
       b^{(4)} = \tfrac1{24}(55, -59, 37, -9), $$

    i.e. a linear multistep method of the ODE $\mathrm{d}y/\mathrm{d}s = \epsilon$ in the
    noise-to-signal ratio with the transfer $\phi$ (the DDIM step) of the module docs. The first
    step is DDIM; no lower-order final steps (as diffusers).

    **Order.** ``order`` is the highest Adams-Bashforth order (diffusers' ``pndm_order``), the
    order of the multistep formula on a grid of equal steps in $s$. The pathwise order of the
    whole method is $\min(\texttt{order}, 2)$: the first (DDIM) step has local error
    $O(h^2)$, which no later step makes up, and on grids that are not equal in $s$ the
    equal-step coefficients are second order anyway (module docs). Measured on the oracle
    (VP, uniform, log-SNR, quadratic and Karras grids, 10-160 steps): 1.0 for ``order=1``,
    2.0 for 2, 3 and 4; ``order=4`` is still the most accurate at a given NFE.

    Args:
        order: the highest Adams-Bashforth order, 1 to 4 (diffusers: 4).
    """

    order: int = 4  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if (
            isinstance(self.order, bool)
            or not isinstance(self.order, int)
            or not 1 <= self.order <= 4
        ):
            raise ValueError(f"order must be an integer 1, 2, 3 or 4, got {self.order!r}")

    @property
    def convergence_order(self) -> float:
        r"""$\min(\texttt{order}, 2)$, the pathwise order of the whole method (see "Order")."""
        return float(min(self.order, 2))

    def advance(self, sde, score, x, index, c, c_next, history):
        return _multistep(score, x, c, c_next, history, self.order)
