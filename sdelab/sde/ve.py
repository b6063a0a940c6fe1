r"""The variance-exploding SDE (VE, the continuous limit of SMLD / NCSN)."""

from __future__ import annotations

import math

from .. import _tmath as tm
from .._checks import Time, check_order, check_positive, check_time
from .base import LinearSDE

__all__ = ["VESDE"]


class VESDE(LinearSDE):
    r"""Variance-exploding SDE (Song et al. 2021, eq. 9 and App. B):

    $$ \mathrm{d}x = \sigma(t)\sqrt{2\log(\sigma_{\max}/\sigma_{\min})}\,\mathrm{d}w,
       \qquad \sigma(t) = \sigma_{\min}\,(\sigma_{\max}/\sigma_{\min})^t. $$

    **Marginal convention.** `marginal` is the exact law of this SDE started at $x(0) = x_0$:
    $\mathcal N\big(x_0,\ (\sigma(t)^2 - \sigma_{\min}^2) I\big)$, so `std` is
    $\sqrt{\sigma(t)^2 - \sigma_{\min}^2}$ and is 0 at $t = 0$. This is the paper's eq. 29
    ($\sigma^2(t) - \sigma^2(0)$); the paper's training and sampling code use $\sigma(t)$
    itself, i.e. treat the data as already blurred by $\sigma_{\min}$; the difference is at
    most $\sigma_{\min}^2$ in variance. `sigma(t)` gives the paper's noise
    level. Prior: $\mathcal N(0, \sigma_{\max}^2 I)$. `discretize` is the SMLD step
    $x_i = x_{i-1} + \sqrt{\sigma_i^2 - \sigma_{i-1}^2}\,z$.

    Args:
        sigma_min: $\sigma_{\min} > 0$ (paper: 0.01).
        sigma_max: $\sigma_{\max} > \sigma_{\min}$ (paper: 50; 348 / 1348 for large images).
        N: default number of steps (paper: 1000).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000) -> None:
        super().__init__(N)
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        check_order("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)
        self._ratio = self.sigma_max / self.sigma_min
        self._log_ratio = math.log(self._ratio)

    @property
    def prior_std(self) -> float:
        r"""$\sigma_{\max}$."""
        return self.sigma_max

    def sigma(self, t: Time) -> Time:
        r"""The paper's noise level $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$.

        Evaluated as that power in ``t``'s own precision (a float32 tensor gives a float32 power,
        within about 1.5 ulp of the exact value; $\exp(t\log(\sigma_{\max}/\sigma_{\min}))$
        would carry the rounding of the product $t\log(\cdot)$, up to 15 ulp for
        $\sigma_{\max}/\sigma_{\min} = 1.3\times10^5$). It is also diffusers' expression: evaluated
        one float32 time at a time, as diffusers does, it gives diffusers' ``sigmas`` bit for bit.
        """
        t = check_time(t, self.T)
        return self.sigma_min * self._ratio**t

    def drift_coeff(self, t: Time) -> Time:
        r"""$a(t) = 0$."""
        t = check_time(t, self.T)
        return tm.like_time(0.0, t)

    def diffusion(self, t: Time) -> Time:
        r"""$g(t) = \sigma(t)\sqrt{2\log(\sigma_{\max}/\sigma_{\min})}$."""
        t = check_time(t, self.T)
        return self.sigma(t) * math.sqrt(2.0 * self._log_ratio)

    def mean_coeff(self, t: Time) -> Time:
        r"""$m(t) = 1$."""
        t = check_time(t, self.T)
        return tm.like_time(1.0, t)

    def std(self, t: Time) -> Time:
        r"""$\sqrt{\sigma(t)^2 - \sigma_{\min}^2} = \sigma_{\min}\sqrt{e^{2t\log(\sigma_{\max}/\sigma_{\min})} - 1}$."""
        t = check_time(t, self.T)
        return self.sigma_min * tm.sqrt(tm.expm1(2.0 * t * self._log_ratio))

    def log_snr(self, t: Time) -> Time:
        r"""$\lambda(t) = -\log\sigma(t) = -\log\sigma_{\min} - \tfrac12\log\big(e^{2t\log(\sigma_{\max}/\sigma_{\min})} - 1\big)$ ($m = 1$)."""
        t = check_time(t, self.T)
        return -math.log(self.sigma_min) - 0.5 * tm.log(tm.expm1(2.0 * t * self._log_ratio))

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""Inverse of `log_snr`: $t = \log\big(1 + e^{-2\lambda}/\sigma_{\min}^2\big) / \big(2\log(\sigma_{\max}/\sigma_{\min})\big)$."""
        return tm.log1p(tm.exp(-2.0 * (lam + math.log(self.sigma_min)))) / (2.0 * self._log_ratio)

    def transition(self, t: Time, dt: float) -> tuple[Time, Time]:
        r"""SMLD step: $\alpha = 1$, $v = \sigma(t)^2 - \sigma(t - \Delta t)^2$."""
        t = check_time(t, self.T)
        dt = check_positive("dt", dt)
        s = tm.clamp_min(t - dt, 0.0)
        return tm.like_time(1.0, t), self.sigma(t) ** 2 - self.sigma(s) ** 2

    def _params(self) -> dict:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N}
