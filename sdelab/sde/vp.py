r"""The variance-preserving SDE (VP, the continuous limit of DDPM) and its sub-VP sibling."""

from __future__ import annotations

from .. import _tmath as tm
from .._checks import Time, check_positive, check_time
from .base import LinearSDE

__all__ = ["VPSDE", "SubVPSDE"]


class _LinearBetaSDE(LinearSDE):
    r"""Shared linear noise schedule $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$
    and drift $f(x, t) = -\tfrac12 \beta(t)\,x$ of VP and sub-VP."""

    prior_std = 1.0

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000) -> None:
        super().__init__(N)
        self.beta_min = check_positive("beta_min", beta_min, allow_zero=True)
        self.beta_max = check_positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(
                f"beta_max must be >= beta_min, got beta_min={beta_min!r} > beta_max={beta_max!r}"
            )

    def beta(self, t: Time) -> Time:
        r"""$\beta(t) = \beta_{\min} + t\,(\beta_{\max} - \beta_{\min})$."""
        t = check_time(t, self.T)
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_mean_coeff(self, t: Time) -> Time:
        r"""$\log m(t) = -\tfrac14 t^2 (\beta_{\max} - \beta_{\min}) - \tfrac12 t\,\beta_{\min}
        = -\tfrac12\int_0^t \beta(s)\,\mathrm{d}s$."""
        t = check_time(t, self.T)
        return -0.25 * t * t * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def drift_coeff(self, t: Time) -> Time:
        r"""$a(t) = -\tfrac12 \beta(t)$."""
        t = check_time(t, self.T)
        return -0.5 * self.beta(t)

    def mean_coeff(self, t: Time) -> Time:
        r"""$m(t) = \exp(-\tfrac12 \int_0^t \beta(s)\,\mathrm{d}s)$."""
        t = check_time(t, self.T)
        return tm.exp(self.log_mean_coeff(t))

    def _t_from_neg_log_mean(self, L: Time) -> Time:
        r"""Solve $-\log m(t) = L$ for $t \ge 0$: $\tfrac14\Delta\beta\, t^2 + \tfrac12\beta_{\min} t = L$,
        $t = 4L / \big(\beta_{\min} + \sqrt{\beta_{\min}^2 + 4\Delta\beta\, L}\big)$ (the root
        written without cancellation, valid for $\Delta\beta = 0$ too)."""
        d = self.beta_max - self.beta_min
        return 4.0 * L / (self.beta_min + tm.sqrt(self.beta_min**2 + 4.0 * d * L))

    def _params(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "N": self.N}


class VPSDE(_LinearBetaSDE):
    r"""Variance-preserving SDE (Song et al. 2021, eq. 11; the continuous DDPM):

    $$ \mathrm{d}x = -\tfrac12 \beta(t)\,x\,\mathrm{d}t + \sqrt{\beta(t)}\,\mathrm{d}w,
       \qquad \beta(t) = \beta_{\min} + t\,(\beta_{\max} - \beta_{\min}). $$

    Perturbation kernel (eq. 29): $\mathcal N\big(m(t)\,x_0,\ (1 - m(t)^2) I\big)$ with
    $m(t) = e^{-\frac14 t^2 (\beta_{\max}-\beta_{\min}) - \frac12 t \beta_{\min}}$; prior
    $\mathcal N(0, I)$. `discretize` is DDPM's step
    $x_i = \sqrt{1-\beta_i}\,x_{i-1} + \sqrt{\beta_i}\,z$ with
    $1 - \beta_i = m(t)^2 / m(t - \Delta t)^2$.

    Args:
        beta_min: $\beta_{\min} \ge 0$ (paper: 0.1).
        beta_max: $\beta_{\max} \ge \beta_{\min}$, $> 0$ (paper: 20).
        N: default number of steps (paper: 1000).
    """

    def diffusion(self, t: Time) -> Time:
        r"""$g(t) = \sqrt{\beta(t)}$."""
        t = check_time(t, self.T)
        return tm.sqrt(self.beta(t))

    def std(self, t: Time) -> Time:
        r"""$\sigma(t) = \sqrt{1 - m(t)^2}$ (computed with ``expm1``)."""
        t = check_time(t, self.T)
        return tm.sqrt(-tm.expm1(2.0 * self.log_mean_coeff(t)))

    def marginal_coeffs(self, t: Time) -> tuple[Time, Time]:
        r"""$(m, \sqrt{1 - m^2})$ from one $\log m(t)$."""
        lm = self.log_mean_coeff(t)
        return tm.exp(lm), tm.sqrt(-tm.expm1(2.0 * lm))

    def log_snr(self, t: Time) -> Time:
        r"""$\lambda(t) = \log m - \tfrac12\log(1 - m^2)$ (with ``expm1``)."""
        t = check_time(t, self.T)
        lm = self.log_mean_coeff(t)
        return lm - 0.5 * tm.log(-tm.expm1(2.0 * lm))

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""Inverse of `log_snr`: $m^2 = 1/(1 + e^{-2\lambda})$, so
        $-\log m = \tfrac12\,\mathrm{softplus}(-2\lambda)$, then the quadratic in $t$
        (Lu et al. 2022, App. D)."""
        return self._t_from_neg_log_mean(0.5 * tm.softplus(-2.0 * lam))

    def transition(self, t: Time, dt: float) -> tuple[Time, Time]:
        r"""DDPM step: $\alpha = \sqrt{1 - \beta_i} = m(t)/m(t - \Delta t)$, $v = \beta_i = 1 - \alpha^2$."""
        t = check_time(t, self.T)
        dt = check_positive("dt", dt)
        s = tm.clamp_min(t - dt, 0.0)
        log_alpha = self.log_mean_coeff(t) - self.log_mean_coeff(s)
        return tm.exp(log_alpha), -tm.expm1(2.0 * log_alpha)


class SubVPSDE(_LinearBetaSDE):
    r"""Sub-VP SDE (Song et al. 2021, eq. 12):

    $$ \mathrm{d}x = -\tfrac12 \beta(t)\,x\,\mathrm{d}t
       + \sqrt{\beta(t)\big(1 - e^{-2\beta_{\min} t - (\beta_{\max}-\beta_{\min}) t^2}\big)}\,\mathrm{d}w. $$

    Same mean as VP; its variance is bounded by VP's (eq. 29):
    $\sigma(t)^2 = (1 - m(t)^2)^2 \le 1 - m(t)^2$; prior $\mathcal N(0, I)$. There is no
    DDPM/SMLD counterpart: `discretize` is the exact Gaussian step of this SDE (see
    `LinearSDE.transition`), which ancestral sampling and the corrector's
    $\alpha_i$ use too.

    Args:
        beta_min: $\beta_{\min} \ge 0$ (paper: 0.1).
        beta_max: $\beta_{\max} \ge \beta_{\min}$, $> 0$ (paper: 20).
        N: default number of steps (paper: 1000).
    """

    def diffusion(self, t: Time) -> Time:
        r"""$g(t) = \sqrt{\beta(t)\,(1 - m(t)^4)}$."""
        t = check_time(t, self.T)
        return tm.sqrt(self.beta(t) * -tm.expm1(4.0 * self.log_mean_coeff(t)))

    def std(self, t: Time) -> Time:
        r"""$\sigma(t) = 1 - m(t)^2$ (computed with ``expm1``)."""
        t = check_time(t, self.T)
        return -tm.expm1(2.0 * self.log_mean_coeff(t))

    def marginal_coeffs(self, t: Time) -> tuple[Time, Time]:
        r"""$(m, 1 - m^2)$ from one $\log m(t)$."""
        lm = self.log_mean_coeff(t)
        return tm.exp(lm), -tm.expm1(2.0 * lm)

    def log_snr(self, t: Time) -> Time:
        r"""$\lambda(t) = \log m - \log(1 - m^2)$ (with ``expm1``)."""
        t = check_time(t, self.T)
        lm = self.log_mean_coeff(t)
        return lm - tm.log(-tm.expm1(2.0 * lm))

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""Inverse of `log_snr`. With $r = m$ and $k = e^\lambda$, $r/(1 - r^2) = k$ gives
        $r = 2/(a + \sqrt{a^2 + 4})$, $a = e^{-\lambda}$, so $-\log m = \log(1 + \delta)$ with
        $\delta = \tfrac a2\big(1 + 1/(\sqrt{1 + 4/a^2} + 2/a)\big)$ (no overflow or
        cancellation at either end), then the same quadratic in $t$ as VP."""
        a = tm.exp(-lam)
        delta = 0.5 * a * (1.0 + 1.0 / (tm.sqrt(1.0 + 4.0 / (a * a)) + 2.0 / a))
        return self._t_from_neg_log_mean(tm.log1p(delta))
