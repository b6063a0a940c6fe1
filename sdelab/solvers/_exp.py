r"""What every fast sampler shares: the data prediction and the coefficients of a linear SDE at a
grid time, as Python floats.

For a linear SDE with perturbation kernel $\mathcal N(m(t)x_0, \sigma(t)^2 I)$ the
probability-flow ODE (Song et al. 2021, eq. 13) written with the data prediction
$D(x, t) = (x + \sigma(t)^2 s(x, t))/m(t)$ (Tweedie's formula) is

$$ \frac{\mathrm{d}x}{\mathrm{d}t} = \frac{\sigma'(t)}{\sigma(t)}\,x
   + \lambda'(t)\,m(t)\,D(x, t), \qquad\text{so}\qquad
   x_t = \frac{\sigma_t}{\sigma_s}\,x_s + \sigma_t \int_{\lambda_s}^{\lambda_t} e^{\lambda} D\,\mathrm{d}\lambda, $$

with the half log-SNR $\lambda = \log(m/\sigma)$ (Lu et al. 2022b, eq. 9). Every exponential
integrator (DDIM, DPM-Solver, UniPC, DEIS) approximates that integral; the Karras-style
samplers integrate the same ODE in the noise-to-signal ratio $s = \sigma/m$ on the scaled
state $x/m$, where it reads $\mathrm{d}(x/m)/\mathrm{d}s = (x/m - D)/s$ (Karras et al. 2022,
eq. 4). Both need only $m$, $\sigma$ and $\lambda$ at the grid times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sde.base import SDE, check_linear_sde

__all__ = [
    "Coeffs",
    "coeffs",
    "data_prediction",
    "multistep_order",
    "noise_from_data",
    "noise_prediction",
    "push",
    "require_linear",
]


@dataclass(frozen=True, slots=True)
class Coeffs:
    r"""$m(t)$, $\sigma(t)$ and $\lambda(t) = \log(m/\sigma)$ at one time, as Python floats.

    Attributes:
        t: the time.
        m: the signal scale $m(t)$.
        sigma: the noise std $\sigma(t)$.
        lam: the half log-SNR $\lambda(t)$.
    """

    t: float
    m: float
    sigma: float
    lam: float

    @property
    def nsr(self) -> float:
        r"""The noise-to-signal ratio $s = \sigma/m = e^{-\lambda}$ (EDM's $\sigma$)."""
        return math.exp(-self.lam)


def require_linear(sde: SDE, who: str):
    """The SDE as a `LinearSDE`, or a TypeError naming the solver ``who``."""
    return check_linear_sde(sde, who, "data prediction D(x, t) = (x + sigma^2 s) / m")


def coeffs(sde, t: float) -> Coeffs:
    """`Coeffs` of the linear SDE ``sde`` at the Python-float time ``t`` (no tensor touched)."""
    return Coeffs(t, *sde.grid_coeffs(t))


def data_prediction(score, x: Tensor, c: Coeffs) -> Tensor:
    r"""$D(x, t) = \big(x + \sigma(t)^2\,s(x, t)\big)/m(t)$: one score evaluation
    (`sdelab.tweedie_denoise`, with the coefficients already at hand)."""
    return torch.add(x, score(x, c.t), alpha=c.sigma * c.sigma).div_(c.m)


def noise_from_data(x: Tensor, d: Tensor, c: Coeffs) -> Tensor:
    r"""The noise prediction that goes with the data prediction $D$:
    $\hat\epsilon = (x - m(t)\,D)/\sigma(t)$ (so $s = -\hat\epsilon/\sigma$)."""
    return (x - c.m * d) / c.sigma


# --- multistep bookkeeping (UniPC, DEIS): the history of model outputs and the order per step --


def noise_prediction(score, x: Tensor, c: Coeffs) -> Tensor:
    r"""$\hat\epsilon(x, t) = -\sigma(t)\,s(x, t)$: the noise prediction, one score evaluation
    (for a noise model wrapped by `sdelab.score_from_noise` this is the model's own output)."""
    return (-c.sigma) * score(x, c.t)


def push(history: tuple, item, keep: int) -> tuple:
    """``history`` with ``item`` appended, keeping the last ``keep`` entries (oldest first)."""
    return (*history, item)[-keep:]


def multistep_order(order: int, available: int, remaining: int | None) -> int:
    r"""The order of a multistep step: at most ``order``, at most the ``available`` model
    outputs (the lower-order warm-up), and, unless ``remaining`` is ``None``, at most
    ``remaining + 1`` (the lower-order final steps: order 1 on the last step, 2 on the one
    before, ...)."""
    p = min(order, available)
    return p if remaining is None else min(p, remaining + 1)
