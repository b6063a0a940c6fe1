r"""Karras et al. 2022's stochastic sampler (EDM, Algorithm 2): churn, then a Heun step."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._checks import check_positive
from ._exp import coeffs
from .karras import KarrasSolver, heun_step, level
from .pc import gaussian_noise

__all__ = ["EDMStochastic"]


@dataclass(frozen=True)
class EDMStochastic(KarrasSolver):
    r"""The stochastic sampler of Karras et al. 2022 (Algorithm 2; diffusers'
    ``KarrasVeScheduler``), in the scaled state $\tilde x = x/m$ and the noise-to-signal ratio
    $s = \sigma/m$ of any linear SDE. Step $i$ of $N$ first raises the noise level ("churn"),

    $$ \gamma_i = \begin{cases} \min\big(S_{\mathrm{churn}}/N,\ \sqrt2 - 1\big) &
       s_i \in [S_{t\min}, S_{t\max}] \\ 0 & \text{otherwise,}\end{cases} \qquad
       \hat s_i = (1 + \gamma_i)\,s_i, \qquad
       \hat x_i = \tilde x_i + \sqrt{\hat s_i^2 - s_i^2}\;S_{\mathrm{noise}}\,z, $$

    then takes a `Heun` step from $\hat s_i$ to $s_{i+1}$ (two score evaluations). The churn
    is an exact forward noising from $s_i$ to $\hat s_i$ (for $S_{\mathrm{noise}} = 1$), so
    the only error in distribution is that of the Heun steps: weak order 2. With
    ``s_churn=0`` (the default) it is `Heun`, order 2.

    $N$ is the number of steps of sdelab's grid (which ends at ``eps`` > 0; Algorithm 2's
    last step to $\sigma = 0$ is ``denoise=True``, without churn). $\hat s_i$ is capped at
    $s(T)$, the largest level the SDE defines (so there is no churn at $t = T$ itself); with
    the paper's $S_{t\max}$ below $s(T)$ the cap never acts. Noise is drawn only on steps
    with $\gamma_i > 0$.

    Args:
        s_churn: $S_{\mathrm{churn}} \ge 0$, the total amount of churn (0: deterministic).
        s_tmin: $S_{t\min} \ge 0$, the lowest level $s$ that is churned.
        s_tmax: $S_{t\max} \ge S_{t\min}$, the highest (default $\infty$).
        s_noise: $S_{\mathrm{noise}} > 0$, the std of the churn noise (slightly above 1 in
            the paper, to offset the loss of detail).
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    order = 2.0
    weak_order = 2.0
    nfe_per_step = 2

    def __post_init__(self) -> None:
        check_positive("s_churn", self.s_churn, allow_zero=True)
        check_positive("s_tmin", self.s_tmin, allow_zero=True)
        check_positive("s_noise", self.s_noise)
        if isinstance(self.s_tmax, bool) or not isinstance(self.s_tmax, int | float):
            raise TypeError(f"s_tmax must be a real number, got {self.s_tmax!r}")
        if not self.s_tmax >= self.s_tmin:
            raise ValueError(
                f"s_tmax must be >= s_tmin = {self.s_tmin!r} (math.inf for no upper limit), "
                f"got {self.s_tmax!r}"
            )

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.s_churn > 0

    def gamma(self, s: float, steps: int) -> float:
        r"""$\gamma_i$ at the level $s_i$ on a grid of ``steps`` steps."""
        if self.s_churn == 0.0 or not self.s_tmin <= s <= self.s_tmax:
            return 0.0
        return min(self.s_churn / steps, math.sqrt(2.0) - 1.0)

    def churn_std(self, s: float, s_hat: float) -> float:
        r"""The std of the churn noise from $s_i$ up to $\hat s_i$:
        $\sqrt{\hat s_i^2 - s_i^2}\,S_{\mathrm{noise}}$ (Algorithm 2, line 6)."""
        return math.sqrt(max(s_hat * s_hat - s * s, 0.0)) * self.s_noise

    def churn(self, sde, xs, c, steps: int, generator):
        r"""$(\hat x_i, \hat c_i)$: the churned scaled state and the `Coeffs` of $\hat s_i$
        (capped at $s(T)$); ``(xs, c)`` itself where $\gamma_i = 0$ (no draw)."""
        gamma = self.gamma(c.nsr, steps)
        if gamma > 0.0:
            top = coeffs(sde, sde.T)
            hat = top if (1.0 + gamma) * c.nsr >= top.nsr else level(sde, c.lam - math.log1p(gamma))
            if hat.nsr > c.nsr:
                return xs + gaussian_noise(xs, generator, self.churn_std(c.nsr, hat.nsr)), hat
        return xs, c

    def scaled_step(self, sde, score, x, xs, c, cn, step, generator):
        xh, hat = self.churn(sde, xs, c, step.count, generator)
        return heun_step(score, xh, hat, cn, x if hat is c else None)
