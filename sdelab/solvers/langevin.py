r"""Langevin correctors: score-based MCMC at a fixed time (Song et al. 2021, App. G)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import check_int, check_positive
from ..sde.base import SDE, LinearSDE, check_linear_sde
from .pc import Corrector, gaussian_noise

__all__ = ["AnnealedLangevin", "Langevin", "langevin_step", "step_scale"]


def step_scale(sde: SDE, t: float, dt: float) -> float:
    r"""The factor $\alpha_i$ of the corrector step size (Song et al. 2021, Algorithms 4-5):
    $\alpha_i = 1 - \beta_i$ for VP (and sub-VP), computed on the sampler's own grid as
    $\alpha^2$ of the one-step transition ending at $t$ (`LinearSDE.transition`); this is
    exactly 1 for VE, and 1 for any SDE without a transition law."""
    if isinstance(sde, LinearSDE):
        alpha, _ = sde.transition(t, dt)
        return alpha * alpha
    return 1.0


def langevin_step(x: Tensor, s: Tensor, z: Tensor, step) -> Tensor:
    r"""One unadjusted Langevin step $x + \epsilon\, s + \sqrt{2\epsilon}\, z$
    (Song et al. 2021, Algorithms 4-5; Roberts & Tweedie 1996). ``step`` is $\epsilon$, a
    float, a 0-d tensor or per-sample of shape (B,)."""
    if isinstance(step, Tensor) and step.ndim == 1:
        step = tm.bcast(step, x)
    return x + step * s + tm.sqrt(2.0 * step) * z


@dataclass(frozen=True)
class _SNRCorrector(Corrector):
    """The options both Langevin correctors share: the signal-to-noise ratio and the number
    of steps per grid time."""

    snr: float = 0.16
    n_steps: int = 1

    def __post_init__(self) -> None:
        check_positive("snr", self.snr)
        check_int("n_steps", self.n_steps, minimum=1)


@dataclass(frozen=True)
class Langevin(_SNRCorrector):
    r"""The Langevin corrector of Song et al. 2021 (Algorithms 4 and 5, App. G):

    $$ x \leftarrow x + \epsilon_i\, s_\theta(x, t) + \sqrt{2\epsilon_i}\, z, \qquad
       \epsilon_i = 2\alpha_i \left(r\,\frac{\lVert z\rVert}{\lVert s_\theta(x,t)\rVert}\right)^2, $$

    with the signal-to-noise ratio $r$ = ``snr``, $\alpha_i = 1$ for VE and $1 - \beta_i$ for
    VP and sub-VP (from the sampler's own grid, `step_scale`). The norms are averaged over the
    batch, $\lVert z\rVert^2 = \frac1B\sum_b \lVert z_b\rVert^2$ (likewise for the score), so
    every sample takes the same step; per-sample norms vary wildly in low dimensions, where one
    noise draw's norm is far from its mean.

    **Stationary bias.** With the exact score of $\mathcal N(0, \sigma^2 I)$ the chain's
    stationary variance solves $V = \sigma^2 / (1 - \epsilon/2\sigma^2)$ with
    $\epsilon = 2 r^2 \sigma^4 / V$ (since $\lVert s\rVert^2 \approx dV/\sigma^4$), so
    $V = \sigma^2 (1 + r^2)$ (for $\alpha_i = 1$): the corrector inflates the std by
    $\sqrt{1 + r^2}$, however many steps it takes (the unadjusted Langevin bias; Metropolis
    adjustment would remove it).

    **Stability.** The step is scaled to the score's size, so it never diverges, but alone (no
    predictor) it mixes slowly: on the tests' 2-D mixture with the exact score (sliced $W_2$
    in data stds; noise floor about 0.1; ``benchmarks/stability_limits.py``) it is still 0.17 off on VP and
    22 on VE (the prior's scale, $\sigma_{\max} = 50$) after 200 steps, and near the floor
    only at 1000. As the corrector of ``PC(ReverseDiffusion(), Langevin())`` it adds nothing
    to the predictor's coarse-grid error (VE: 10 stds off at 2 steps, 0.5 at 5, at the
    floor from about 20).

    Args:
        snr: $r > 0$ (paper: 0.16 for VE on CIFAR-10, 0.01-0.17 elsewhere).
        n_steps: corrector steps $M \ge 1$ per grid time.
    """

    def update(
        self, sde: SDE, score, x: Tensor, t: float, dt: float, generator: torch.Generator | None
    ) -> Tensor:
        s = score(x, t)
        z = gaussian_noise(x, generator)
        # (r ||z|| / ||s||)^2 with batch-averaged squared norms: the batch size cancels
        ratio = z.square().sum() / s.square().sum()
        step = (2.0 * step_scale(sde, t, dt) * self.snr**2) * ratio
        return langevin_step(x, s, z, step)


@dataclass(frozen=True)
class AnnealedLangevin(_SNRCorrector):
    r"""Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; the reference code's
    ``AnnealedLangevinDynamics``): the same Langevin step, with the step size set by the noise
    level instead of measured norms,

    $$ x \leftarrow x + \epsilon_i\, s_\theta(x, t) + \sqrt{2\epsilon_i}\, z, \qquad
       \epsilon_i = 2\alpha_i\,\big(r\,\sigma(t)\big)^2, $$

    i.e. the signal-to-noise rule of `Langevin` with $\lVert z\rVert^2 \approx d$ and
    $\lVert s\rVert^2 \approx d/\sigma(t)^2$ (true when the noise dominates the data), where
    $\sigma(t)$ is the marginal std (`LinearSDE.std`) and $\alpha_i$ as in `Langevin`. The step
    is deterministic and per-time, so it needs no reduction over the batch. Its stationary
    variance on $\mathcal N(0, \sigma_p^2 I)$ with the exact score is
    $\sigma_p^2 / (1 - \epsilon/2\sigma_p^2)$; for pure noise ($\sigma_p = \sigma(t)$, VE) that
    is $\sigma_p^2 / (1 - r^2)$. Needs a `LinearSDE`.

    **Stability.** $\epsilon_i/\sigma(t)^2 = 2\alpha_i r^2$ is small for $r < 1$, so it never
    diverges, but alone it needs many steps: on the tests' 2-D mixture with the exact score
    (sliced $W_2$ in data stds; noise floor about 0.1; ``benchmarks/stability_limits.py``) VE is 25 stds off
    at 10 steps, 2.6 at 100, 0.4 at 200, near the floor at 1000; VP 0.5 at 10, 0.23 at 200.
    As the corrector of a `PC` it leaves the predictor's error as it is.

    Args:
        snr: $r > 0$.
        n_steps: corrector steps $M \ge 1$ per grid time.
    """

    def update(
        self, sde: SDE, score, x: Tensor, t: float, dt: float, generator: torch.Generator | None
    ) -> Tensor:
        check_linear_sde(sde, "AnnealedLangevin", "marginal std (the step size)")
        s = score(x, t)
        step = 2.0 * step_scale(sde, t, dt) * (self.snr * sde.std(t)) ** 2
        return langevin_step(x, s, gaussian_noise(x, generator), step)
