r"""DDIM: the first-order exponential integrator of the probability-flow ODE, and its
stochastic family (Song, Meng & Ermon 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive
from ..sde.base import SDE
from ._exp import Coeffs, coeffs, data_prediction, require_linear
from .grid import GridSolver, Step
from .pc import gaussian_noise

__all__ = ["DDIM", "ddim_noise_split", "ddim_update", "ddim_variance_ratio"]


def ddim_variance_ratio(c: Coeffs, n: Coeffs, eta: float) -> float:
    r"""$q = (\varsigma_t/\sigma_t)^2 = \eta^2(1 - e^{-2h})$, $h = \lambda_t - \lambda_s$, of the
    DDIM step from ``c`` to ``n`` (Song et al. 2021a, eq. 16); raises unless $q \le 1$."""
    q = eta * eta * -math.expm1(-2.0 * (n.lam - c.lam))
    if not q <= 1.0:
        raise ValueError(
            f"eta={eta!r} is too large for the step {c.t!r} -> {n.t!r}: eta^2 (1 - e^(-2h)) = "
            f"{q!r} must be <= 1 (use eta <= 1)"
        )
    return q


def ddim_noise_split(c: Coeffs, n: Coeffs, eta: float) -> tuple[float, float]:
    r"""The two noise coefficients of the DDIM step from ``c`` to ``n`` (Song et al. 2021a,
    eq. 12): $\big(\sigma_t\sqrt{1 - q},\ \sigma_t\sqrt q\big) = \big(\sqrt{\sigma_t^2 -
    \varsigma_t^2},\ \varsigma_t\big)$ (`ddim_variance_ratio`), so $x_t = m_t D +
    \sqrt{\sigma_t^2 - \varsigma_t^2}\,\hat\epsilon + \varsigma_t z$. A target with
    $\sigma_t = 0$ (the clean level) gives $(0, 0)$."""
    if n.sigma == 0.0:
        return 0.0, 0.0
    q = ddim_variance_ratio(c, n, eta)
    return n.sigma * math.sqrt(1.0 - q), n.sigma * math.sqrt(q)


@dataclass(frozen=True)
class DDIM(GridSolver):
    r"""Denoising diffusion implicit models (Song, Meng & Ermon 2021, eq. 12), written for any
    linear SDE with marginals $\mathcal N(m_t x_0, \sigma_t^2 I)$. From $s = t_i$ to
    $t = t_{i+1}$ with the data prediction $D = D(x_s, s)$ (`_exp.data_prediction`) and its
    noise $\hat\epsilon = (x_s - m_s D)/\sigma_s$:

    $$ x_t = m_t\,D + \sqrt{\sigma_t^2 - \varsigma_t^2}\;\hat\epsilon + \varsigma_t\,z,
       \qquad \varsigma_t = \eta\,\sigma_t\sqrt{1 - e^{-2h}}, \quad h = \lambda_t - \lambda_s,
       \quad z \sim \mathcal N(0, I). $$

    $\varsigma_t$ is eq. 16 of the paper, $\eta\sqrt{(1-\bar\alpha_{t})/(1-\bar\alpha_s)}
    \sqrt{1 - \bar\alpha_s/\bar\alpha_t}$, in the half log-SNR $\lambda = \log(m/\sigma)$:
    $\sigma_t^2(1 - e^{-2h})$ is the variance of the forward posterior
    $q(x_t \mid x_s, x_0)$ for every linear SDE.

    * ``eta = 0`` (deterministic): $x_t = \frac{\sigma_t}{\sigma_s}x_s - m_t\,(e^{-h} - 1)\,D$,
      the exponential Euler step of the probability-flow ODE in data prediction, i.e.
      DPM-Solver-1 / DPM-Solver++(1) (Lu et al. 2022a, eq. 3.7; 2022b, eq. 8): order 1.
    * ``eta = 1``: the ancestral sampler (DDPM's posterior, Ho et al. 2020), which is also the
      first-order SDE-DPM-Solver++ (Lu et al. 2022b, App. B).
    * $0 < \eta$: weak order 1. The step needs $\eta^2(1 - e^{-2h}) \le 1$ (always for
      $\eta \le 1$).

    One score evaluation per step; diffusers' ``DDIMScheduler`` (``eta`` of its ``step``) on the
    same grid. Runs in both directions: with $t > s$ (``eta = 0``) it is DDIM inversion
    (`sdelab.invert`).

    Args:
        eta: $\eta \ge 0$, the weight of the fresh noise.
    """

    eta: float = 0.0
    order = 1
    weak_order = 1.0
    nfe_per_step = 1

    def __post_init__(self) -> None:
        check_positive("eta", self.eta, allow_zero=True)  # 0: deterministic DDIM, 1: ancestral

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.eta > 0

    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, None]:
        require_linear(sde, "DDIM")
        c, n = coeffs(sde, step.t), coeffs(sde, step.t_next)
        return ddim_update(x, data_prediction(score, x, c), c, n, self.eta, generator), None


def ddim_update(
    x: Tensor, d: Tensor, c: Coeffs, n: Coeffs, eta: float, generator: torch.Generator | None
) -> Tensor:
    r"""The DDIM update from the state ``x`` at ``c`` with data prediction ``d`` (= $D$) to
    ``n`` (the formulas of `DDIM`): for $\eta = 0$,
    $x_t = \frac{\sigma_t}{\sigma_s}x - m_t(e^{-h} - 1)D$; else
    $x_t = c_x x + (m_t - c_x m_s)D + \varsigma z$ with $c_x = \sigma_t\sqrt{1 - q}/\sigma_s$,
    $\varsigma = \sigma_t\sqrt q$, $q$ = `ddim_variance_ratio`. The one place of this
    formula: `DDIM.step` and the DDIM scheduler classes (which know $D$ without a score) call it.
    """
    h = n.lam - c.lam
    if eta == 0:  # one fused kernel for the combination
        return torch.add((n.sigma / c.sigma) * x, d, alpha=-(n.m * math.expm1(-h)))
    q = ddim_variance_ratio(c, n, eta)  # (varsigma_t / sigma_t)^2
    # m_t - c_x m_s = -m_t expm1(-h + log(1 - q)/2) without cancellation.
    cx = n.sigma * math.sqrt(1.0 - q) / c.sigma
    cd = -n.m * math.expm1(-h + 0.5 * math.log1p(-q))
    return cx * x + cd * d + gaussian_noise(x, generator, n.sigma * math.sqrt(q))
