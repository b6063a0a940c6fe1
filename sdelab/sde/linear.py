r"""Two SDEs with known solutions, for teaching and for convergence-order tests.

* `OrnsteinUhlenbeck`: additive noise, like VP/VE/sub-VP. Euler-Maruyama has strong order 1
  here (the noise coefficient does not depend on x, so EM coincides with Milstein).
* `GeometricBrownianMotion`: multiplicative noise with the closed-form pathwise solution
  $x_t = x_0 \exp((\mu - \sigma^2/2)t + \sigma W_t)$; Euler-Maruyama has strong order 1/2.
"""

from __future__ import annotations

import math

from torch import Tensor

from .. import _tmath as tm
from .._checks import Time, check_positive, check_time, check_time_like
from .base import ItoSDE, LinearSDE

__all__ = ["GeometricBrownianMotion", "OrnsteinUhlenbeck"]


class OrnsteinUhlenbeck(LinearSDE):
    r"""Ornstein-Uhlenbeck process $\mathrm{d}x = -\theta\,x\,\mathrm{d}t + \sigma\,\mathrm{d}w$.

    Perturbation kernel $\mathcal N\big(e^{-\theta t} x_0,\
    \tfrac{\sigma^2}{2\theta}(1 - e^{-2\theta t}) I\big)$. The prior is the law of $x_T$
    started at 0, $\mathcal N(0, \sigma(T)^2 I)$.

    Args:
        theta: mean-reversion rate $\theta > 0$.
        sigma: noise scale $\sigma > 0$.
        N: default number of steps.
    """

    def __init__(self, theta: float = 1.0, sigma: float = 1.0, N: int = 1000) -> None:
        super().__init__(N)
        self.theta = check_positive("theta", theta)
        self.sigma = check_positive("sigma", sigma)

    @property
    def prior_std(self) -> float:
        r"""$\sigma(T)$."""
        return float(self.std(self.T))

    def drift_coeff(self, t: Time) -> Time:
        r"""$a(t) = -\theta$."""
        t = check_time(t, self.T)
        return tm.like_time(-self.theta, t)

    def diffusion(self, t: Time) -> Time:
        r"""$g(t) = \sigma$."""
        t = check_time(t, self.T)
        return tm.like_time(self.sigma, t)

    def mean_coeff(self, t: Time) -> Time:
        r"""$m(t) = e^{-\theta t}$."""
        t = check_time(t, self.T)
        return tm.exp(-self.theta * t)

    def std(self, t: Time) -> Time:
        r"""$\sigma(t) = \sigma\sqrt{(1 - e^{-2\theta t}) / (2\theta)}$."""
        t = check_time(t, self.T)
        return self.sigma * tm.sqrt(-tm.expm1(-2.0 * self.theta * t) / (2.0 * self.theta))

    def log_snr(self, t: Time) -> Time:
        r"""$\lambda(t) = -\theta t - \tfrac12\log\big(\sigma^2 (1 - e^{-2\theta t})/(2\theta)\big)$."""
        t = check_time(t, self.T)
        c = self.sigma**2 / (2.0 * self.theta)
        return -self.theta * t - 0.5 * (math.log(c) + tm.log(-tm.expm1(-2.0 * self.theta * t)))

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""Inverse of `log_snr`: $e^{2\lambda} = (2\theta/\sigma^2)/(e^{2\theta t} - 1)$, so
        $t = \log\big(1 + (2\theta/\sigma^2)\,e^{-2\lambda}\big)/(2\theta)$."""
        c = math.log(2.0 * self.theta / self.sigma**2)
        return tm.log1p(tm.exp(c - 2.0 * lam)) / (2.0 * self.theta)

    def _params(self) -> dict:
        return {"theta": self.theta, "sigma": self.sigma, "N": self.N}


class GeometricBrownianMotion(ItoSDE):
    r"""Geometric Brownian motion $\mathrm{d}x = \mu\,x\,\mathrm{d}t + \sigma\,x\,\mathrm{d}w$.

    Its pathwise solution is known: $x_t = x_0 \exp\big((\mu - \tfrac12\sigma^2)\,t +
    \sigma W_t\big)$ (`solution`), and $\mathbb E[x_t] = x_0 e^{\mu t}$.

    Args:
        mu: drift rate (any real).
        sigma: volatility $\sigma > 0$.
    """

    def __init__(self, mu: float = 0.5, sigma: float = 1.0) -> None:
        if not math.isfinite(mu):
            raise ValueError(f"mu must be finite, got {mu!r}")
        self.mu = float(mu)
        self.sigma = check_positive("sigma", sigma)

    def drift(self, x: Tensor, t: Time) -> Tensor:
        r"""$f(x, t) = \mu\,x$."""
        check_time_like(x, t, self.T)
        return self.mu * x

    def noise(self, x: Tensor, t: Time) -> Tensor:
        r"""$G(x, t) = \sigma\,x$."""
        check_time_like(x, t, self.T)
        return self.sigma * x

    def solution(self, x0: Tensor, t: Time, w: Tensor) -> Tensor:
        r"""$x_t = x_0 \exp((\mu - \sigma^2/2)\,t + \sigma W_t)$ for the Brownian value $W_t$ = ``w``."""
        t = check_time_like(x0, t, self.T)
        return x0 * tm.exp(tm.bcast((self.mu - 0.5 * self.sigma**2) * t, x0) + self.sigma * w)

    def __repr__(self) -> str:
        return f"GeometricBrownianMotion(mu={self.mu!r}, sigma={self.sigma!r})"
