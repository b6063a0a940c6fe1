r"""DEIS: the diffusion exponential integrator sampler with polynomial extrapolation (tAB)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sde.base import SDE
from ._exp import Coeffs, coeffs, multistep_order, noise_prediction, push, require_linear
from .grid import GridSolver, Step

__all__ = ["DEIS"]

_History = tuple[tuple[Coeffs, Tensor], ...]


def _exp_moments(a: float, n: int) -> list[float]:
    r"""$M_k = \int_0^a v^k e^v\,\mathrm{d}v$ for $k = 0, \dots, n - 1$:
    $M_0 = e^a - 1$, $M_k = a^k e^a - k\,M_{k-1}$ (by parts)."""
    out = [math.expm1(a)]
    for k in range(1, n):
        out.append(a**k * math.exp(a) - k * out[-1])
    return out


def _lagrange_weights(nodes: list[float], a: float) -> list[float]:
    r"""$\int_0^a \ell_j(v)\,e^v\,\mathrm{d}v$ for the Lagrange basis $\ell_j$ on ``nodes``
    (``nodes[0] = 0``)."""
    moments = _exp_moments(a, len(nodes))
    weights = []
    for j, vj in enumerate(nodes):
        poly = [1.0]  # coefficients of ell_j in increasing powers of v
        for k, vk in enumerate(nodes):
            if k != j:
                shifted = [0.0, *poly]
                poly = [
                    (s - vk * p) / (vj - vk) for s, p in zip(shifted, [*poly, 0.0], strict=True)
                ]
        weights.append(sum(c * m for c, m in zip(poly, moments, strict=True)))
    return weights


@dataclass(frozen=True)
class DEIS(GridSolver):
    r"""DEIS, multistep (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with
    Exponential Integrator", ICLR), as diffusers' ``DEISMultistepScheduler``
    (``algorithm_type="deis"``, ``solver_type="logrho"``).

    In the scaled state $y = x/m$ and the noise-to-signal ratio $\rho = \sigma/m$ the
    probability-flow ODE of a linear SDE is $\mathrm{d}y/\mathrm{d}\rho = \hat\epsilon(x, t)$
    with the noise prediction $\hat\epsilon = -\sigma\,s$ (Zhang & Chen 2023, eq. 13: the
    exponential integrator's linear part is solved exactly). The $p$-th order step from $s_0$
    to $t$ extrapolates $\hat\epsilon$ by the polynomial through the last $p$ model outputs
    $\hat\epsilon_{s_0}, \dots, \hat\epsilon_{s_{p-1}}$ in $\log\rho$ (diffusers' "logrho";
    the paper's tAB uses the time variable of its SDE) and integrates it exactly:

    $$ x_t = m_t\Big(\frac{x_{s_0}}{m_{s_0}} + \sum_{j=0}^{p-1} C_j\,\hat\epsilon_{s_j}\Big),
       \qquad C_j = \int_{\rho_{s_0}}^{\rho_t} \ell_j(\log\rho)\,\mathrm{d}\rho
       = \rho_{s_0}\!\int_0^{\log(\rho_t/\rho_{s_0})}\!\ell_j(v)\,e^{v}\,\mathrm{d}v, $$

    $\ell_j$ the Lagrange basis on the nodes $v_k = \log(\rho_{s_k}/\rho_{s_0})$. Order 1 is
    DDIM. One model evaluation per step; the order is ``order`` (the polynomial's degree + 1).
    Warm-up: orders 1, 2, ... while the history fills. With ``lower_order_final`` (default),
    as diffusers, on grids of fewer than 15 steps the last step has order 1 and the one before
    at most 2. A corrector that moves $x$ between steps keeps the history (`GridSolver`).

    Args:
        order: 1, 2 or 3 (diffusers' ``solver_order``).
        lower_order_final: lower the order on the last two steps of grids under 15 steps.
    """

    order: int = 3
    lower_order_final: bool = True
    stochastic = False
    nfe_per_step = 1

    def __post_init__(self) -> None:
        if isinstance(self.order, bool) or self.order not in (1, 2, 3):
            raise ValueError(f"DEIS order must be 1, 2 or 3, got order={self.order!r}")
        if not isinstance(self.lower_order_final, bool):
            raise TypeError(
                f"DEIS lower_order_final must be a bool, got {self.lower_order_final!r}"
            )

    def init(self, sde: SDE, x: Tensor, times: list[float]) -> _History:
        require_linear(sde, "DEIS")
        return ()

    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: _History,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, _History]:
        c0 = coeffs(sde, step.t)
        history = push(state, (c0, noise_prediction(score, x, c0)), self.order)
        final = self.lower_order_final and step.count < 15
        p = multistep_order(self.order, len(history), step.remaining if final else None)
        nodes = history[::-1][:p]  # newest first
        ct = coeffs(sde, step.t_next)
        weights = _lagrange_weights([c0.lam - ck.lam for ck, _ in nodes], c0.lam - ct.lam)
        y = x / c0.m
        for w, (_, eps) in zip(weights, nodes, strict=True):
            y = y + (c0.nsr * w) * eps
        return ct.m * y, history
