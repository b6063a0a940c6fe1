r"""How far a trained score is from the exact one: the weighted Fisher divergence.

Where the exact score $\nabla_x\log p_t$ is known (the built-in mixtures, through the oracle
`sdelab.GaussianMixture`), the error of a trained score $s_\theta$ can be measured directly
instead of through the denoising loss, which hides it under an irreducible constant:

$$ \mathcal D_\lambda(s_\theta) = \mathbb E_{t\sim\mathcal U(\epsilon, T)}\,\lambda(t)\,
   \mathbb E_{x_t\sim p_t}\big\lVert s_\theta(x_t, t) - \nabla_x\log p_t(x_t)\big\rVert_2^2 .$$

By Vincent (2011) it is the denoising loss minus its constant (see `sdelab.training.dsm_loss`),
so it is what training drives to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import (
    _mark_checked,
    _short,
    check_batched,
    check_generator,
    check_int,
    check_like,
    check_rows_finite,
)
from ..analytic import GaussianMixture
from ..sde.base import LinearSDE
from .loss import _check_eps, _check_sde, check_weighting

__all__ = ["FisherDivergence", "fisher_divergence"]

Score = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class FisherDivergence:
    r"""A Monte-Carlo estimate of the weighted Fisher divergence (`fisher_divergence`).

    ``float(result)`` is the estimate.

    Attributes:
        value: the estimate of $\mathcal D_\lambda$, in (score units)$^2$ times $\lambda$'s
            units; for ``weighting="sigma2"`` it is dimensionless up to the data's scale.
        stderr: its standard error, $\hat s/\sqrt B$ with $\hat s$ the standard deviation of
            the $B$ per-row averages (rows of ``x0`` are independent draws of the data).
        n: the number of terms averaged, $B\,n_t$.
        weighting: the weighting $\lambda$ (``"sigma2"``, ``"likelihood"`` or ``"none"``).
    """

    value: float
    stderr: float
    n: int
    weighting: str

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.4g} +- {self.stderr:.2g}"


def _weight(sde: LinearSDE, weighting: str, t: Tensor, std: Tensor) -> Tensor:
    """$\\lambda(t)$: $\\sigma(t)^2$, $g(t)^2$ or 1."""
    if weighting == "sigma2":
        return std * std
    if weighting == "likelihood":
        g = sde.diffusion(t)
        return g * g
    return torch.ones_like(t)


def fisher_divergence(
    sde: LinearSDE,
    score: Score,
    exact_score: Score | GaussianMixture,
    x0: Tensor,
    *,
    weighting: str = "sigma2",
    n_t: int = 8,
    eps: float = 1e-5,
    batch_size: int = 8192,
    generator: torch.Generator | None = None,
) -> FisherDivergence:
    r"""Estimate the weighted Fisher divergence between ``score`` and ``exact_score``,

    $$ \mathcal D_\lambda = \mathbb E_{t\sim\mathcal U(\epsilon, T)}\,\lambda(t)\,
       \mathbb E_{x_0}\mathbb E_{z}\,\big\lVert s_\theta(x_t, t) - \nabla\log p_t(x_t)
       \big\rVert_2^2, \qquad x_t = m(t)\,x_0 + \sigma(t)\,z,\ z\sim\mathcal N(0, I), $$

    with $\lambda(t) = \sigma(t)^2$ (``"sigma2"``, the weighting of `dsm_loss`'s default),
    $g(t)^2$ (``"likelihood"``) or $1$ (``"none"``). Perturbing data rows $x_0$ with the SDE's
    kernel draws $x_t \sim p_t$ exactly, so the only error is Monte-Carlo.

    Each row $x_{0,b}$ is paired with ``n_t`` stratified times $t_{b,j} = \epsilon + (T -
    \epsilon)(j + u_{b,j})/n_t$, $u\sim\mathcal U[0,1)$, and fresh noise; the estimate is the
    mean of all $B\,n_t$ terms, and its standard error comes from the $B$ per-row means,
    which are independent and identically distributed (stratifying $t$ within a row keeps the
    estimate unbiased and lowers its variance).

    Args:
        sde: the `LinearSDE` the scores are scores of (VP, sub-VP, VE, OU, `DiscreteVPSDE`).
        score: the score to measure, ``score(x, t) -> tensor like x`` with ``t`` of shape (B,).
        exact_score: the true score $\nabla_x\log p_t$ as a callable of the same form, or a
            `GaussianMixture` (its ``score(sde)``, the oracle).
        x0: data, shape (B, ...), finite: independent draws from $p_0$.
        weighting: ``"sigma2"``, ``"likelihood"`` or ``"none"``.
        n_t: times per data row, $\ge 1$.
        eps: the smallest time, in $(0, T)$ (as for `dsm_loss`).
        batch_size: terms evaluated per call of the scores, $\ge 1$ (bounds memory).
        generator: a ``torch.Generator`` on ``x0``'s device for $t$ and $z$.

    Returns:
        A `FisherDivergence` (``value``, ``stderr``, ``n``, ``weighting``); one host
        synchronisation at the end.

    Raises:
        ValueError: an unknown weighting, ``n_t`` or ``batch_size`` < 1, ``eps`` outside its
            range, ``x0`` with NaN or inf (naming the first bad row), or a score whose output
            is not shaped like its input.
        TypeError: a non-linear SDE, a score that is not callable.
    """
    sde = _check_sde(sde)
    check_weighting(weighting)
    n_t = check_int("n_t", n_t, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    eps = _check_eps(sde, eps)
    check_batched("x0", x0)
    if x0.shape[0] < 1:
        raise ValueError(f"x0 must hold at least one row, got shape {tuple(x0.shape)}")
    check_rows_finite("x0", x0)
    if isinstance(exact_score, GaussianMixture):
        exact_score = exact_score.score(sde)
    for name, fn in (("score", score), ("exact_score", exact_score)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable as {name}(x, t), got {_short(fn)}")
    check_generator(generator, x0.device, drawn="the times and noise")

    B = x0.shape[0]
    rows = x0.repeat_interleave(n_t, dim=0)  # row b's n_t copies are adjacent
    j = torch.arange(n_t, device=x0.device, dtype=x0.dtype).repeat(B)
    u = torch.rand(B * n_t, generator=generator, device=x0.device, dtype=x0.dtype)
    t = (eps + (sde.T - eps) * (j + u) / n_t).clamp_(eps, sde.T)
    z = torch.randn(rows.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    terms = []
    with torch.no_grad():
        for i in range(0, B * n_t, batch_size):
            ti = t[i : i + batch_size]
            _mark_checked(ti, sde.T)
            m, std = sde.marginal_coeffs(ti)
            xt = tm.bcast(m, rows[i : i + batch_size]) * rows[i : i + batch_size]
            xt = xt + tm.bcast(std, xt) * z[i : i + batch_size]
            diff = check_like("score", score(xt, ti), xt) - check_like(
                "exact_score", exact_score(xt, ti), xt
            )
            sq = diff.reshape(diff.shape[0], -1).pow(2).sum(-1)
            terms.append(_weight(sde, weighting, ti, std) * sq)
    per_row = torch.cat(terms).reshape(B, n_t).mean(1).to(torch.float64)
    mean = per_row.mean()
    sd = per_row.std() if B > 1 else torch.full_like(mean, math.nan)
    value, se = torch.stack([mean, sd / math.sqrt(B)]).tolist()
    return FisherDivergence(value, se, B * n_t, weighting)
