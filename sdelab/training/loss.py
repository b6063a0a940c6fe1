r"""Denoising score matching (Vincent 2011; Song et al. 2021, eq. 7) for every `LinearSDE`.

The perturbation kernel of a linear SDE is $x_t = m(t)\,x_0 + \sigma(t)\,z$, $z \sim \mathcal
N(0, I)$, so its score is $\nabla_{x_t}\log p_{0t}(x_t \mid x_0) = -z/\sigma(t)$ and the
training objective is

$$ \mathcal L(\theta) = \mathbb E_{t \sim \mathcal U(\epsilon, T)}\, \lambda(t)\,
   \mathbb E_{x_0}\mathbb E_{z}\, \big\lVert s_\theta(x_t, t) + z/\sigma(t) \big\rVert_2^2 ,$$

the squared norm summed over a sample's entries and averaged over the batch (the paper's code
with ``reduce_mean=False``). A network may predict something other than the score
(``parametrization``); `to_score` turns its output into a score, and the loss is always the
score-space loss above, so every parametrization trains the same objective (see `to_score` for
what each one's loss is in its own terms).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from numbers import Real

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import Time, _mark_checked, _short, check_batched, check_like, check_rows_finite
from ..sde.base import LinearSDE
from ..sde.discrete import DiscreteVPSDE

__all__ = ["PARAMETRIZATIONS", "WEIGHTINGS", "dsm_loss", "from_score", "to_score"]

#: what a network may predict
PARAMETRIZATIONS = ("score", "noise", "data", "v")
#: the loss weightings lambda(t)
WEIGHTINGS = ("sigma2", "likelihood", "none")

Model = Callable[[Tensor, Tensor], Tensor]


# --- the parametrizations ---------------------------------------------------------------------
def check_parametrization(parametrization: object) -> str:
    """Return ``parametrization``, raising ``ValueError`` unless it is one of `PARAMETRIZATIONS`."""
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {', '.join(map(repr, PARAMETRIZATIONS))}, got "
            f"{parametrization!r}"
        )
    return parametrization  # type: ignore[return-value]


def check_weighting(weighting: object) -> str:
    """Return ``weighting``, raising ``ValueError`` unless it is one of `WEIGHTINGS`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(
            f"weighting must be one of {', '.join(map(repr, WEIGHTINGS))}, got {weighting!r}"
        )
    return weighting  # type: ignore[return-value]


def _check_sde(sde: object) -> LinearSDE:
    if not isinstance(sde, LinearSDE):
        raise TypeError(
            "sde must be a LinearSDE (VPSDE, SubVPSDE, VESDE, OrnsteinUhlenbeck, DiscreteVPSDE): "
            f"denoising score matching needs its Gaussian perturbation kernel, got "
            f"{type(sde).__name__}"
        )
    return sde


def _v_coeffs(m: Time, std: Time) -> tuple[Time, Time, Time]:
    r"""$(\bar\alpha, \bar\sigma, r)$ with $r = \sqrt{m^2 + \sigma^2}$, $\bar\alpha = m/r$,
    $\bar\sigma = \sigma/r$ (the variance-preserving coefficients; $r = 1$ for VP)."""
    r = tm.sqrt(m * m + std * std)
    return m / r, std / r, r


def to_score(sde: LinearSDE, parametrization: str, output: Tensor, x: Tensor, t: Time) -> Tensor:
    r"""The score $s(x, t)$ that a network's ``output`` at $(x, t)$ stands for.

    With $x = m x_0 + \sigma z$ (``m, sigma = sde.marginal_coeffs(t)``):

    * ``"score"``: $s = $ output.
    * ``"noise"`` (DDPM's $\hat\epsilon \approx z$): $s = -\hat\epsilon/\sigma$. Its loss term
      $\lVert\sigma s + z\rVert^2 = \lVert\hat\epsilon - z\rVert^2$ is the noise-prediction loss
      (Ho et al. 2020), the sigma2-weighted score loss.
    * ``"data"`` ($\hat x_0 \approx x_0$): $s = (m\hat x_0 - x)/\sigma^2$ (Tweedie). Then
      $\sigma s + z = (m/\sigma)(\hat x_0 - x_0)$: the score loss with weighting $\sigma^2$ is
      the data-prediction loss weighted by the signal-to-noise ratio $m^2/\sigma^2$.
    * ``"v"`` (Salimans & Ho 2022): in the variance-preserving coordinates $\tilde x = x/r =
      \bar\alpha x_0 + \bar\sigma z$, $r = \sqrt{m^2 + \sigma^2}$, $\bar\alpha = m/r$,
      $\bar\sigma = \sigma/r$, the target is $v = \bar\alpha z - \bar\sigma x_0$. For VP
      ($r = 1$) this is Salimans & Ho's $v = \alpha\epsilon - \sigma x_0$; for VE ($m = 1$) and
      OU / sub-VP it is the same rotation of $(x_0, z)$ after rescaling $x$ to unit signal plus
      noise. Since $z = \bar\sigma\tilde x + \bar\alpha v$, $s = -(\bar\sigma\tilde x +
      \bar\alpha\hat v)/\sigma$, and $\sigma s + z = \bar\alpha(v - \hat v)$: the sigma2 score
      loss is the v-loss weighted by $\bar\alpha^2 = m^2/(m^2 + \sigma^2)$.

    ``t`` is a Python float or a tensor of shape (B,); the result is shaped like ``x``. This is
    the one place that converts a parametrization to a score (the inverse is `from_score`);
    training and checkpoint loading both use it.
    """
    check_parametrization(parametrization)
    if parametrization == "score":
        return output
    m, std = sde.marginal_coeffs(t)
    if parametrization == "noise":
        return -output / tm.bcast(std, x)
    if parametrization == "data":
        return (tm.bcast(m, x) * output - x) / tm.bcast(std * std, x)
    a, s, r = _v_coeffs(m, std)
    return -(tm.bcast(s / r, x) * x + tm.bcast(a, x) * output) / tm.bcast(std, x)


def from_score(sde: LinearSDE, parametrization: str, score: Tensor, x: Tensor, t: Time) -> Tensor:
    r"""The inverse of `to_score`: what a network of ``parametrization`` outputs at $(x, t)$
    when its score is ``score``:

    $\hat\epsilon = -\sigma s$, $\hat x_0 = (x + \sigma^2 s)/m$ (Tweedie's formula),
    $\hat v = (\hat\epsilon - \bar\sigma x/r)/\bar\alpha$ (notation of `to_score`).
    """
    check_parametrization(parametrization)
    if parametrization == "score":
        return score
    m, std = sde.marginal_coeffs(t)
    eps = -tm.bcast(std, x) * score
    if parametrization == "noise":
        return eps
    if parametrization == "data":
        return (x + tm.bcast(std * std, x) * score) / tm.bcast(m, x)
    a, s, r = _v_coeffs(m, std)
    return (eps - tm.bcast(s / r, x) * x) / tm.bcast(a, x)


# --- the time distribution of each weighting ---------------------------------------------------
def _has_log_snr_inverse(sde: LinearSDE) -> bool:
    return type(sde).t_from_log_snr is not LinearSDE.t_from_log_snr


#: tabulated inverse CDFs of the likelihood-weighting time law, per SDE and eps
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TABLE_SIZE = 4097


def _inverse_cdf_table(sde: LinearSDE, eps: float, like: Tensor) -> tuple[Tensor, Tensor]:
    r"""``(F, t)``: $F(t) = -2\lambda(t)$ on a fine grid of $[\epsilon, T]$, computed once per
    SDE and ``eps`` in float64 on the CPU and cached, with a copy per device and dtype of
    ``like``."""
    per_sde = _TABLES.setdefault(sde, {})
    table = per_sde.get((eps, like.device, like.dtype))
    if table is None:
        base = per_sde.get((eps, None, None))
        if base is None:
            # geometric in t: denser near eps, where the density g^2 / sigma^2 ~ 1/t piles up
            u = torch.linspace(0.0, 1.0, _TABLE_SIZE, dtype=torch.float64)
            t = eps * (sde.T / eps) ** u if eps > 0 else u * sde.T
            t[0], t[-1] = eps, sde.T
            base = per_sde[(eps, None, None)] = (-2.0 * sde.log_snr(t), t)
        table = per_sde[(eps, like.device, like.dtype)] = tuple(v.to(like) for v in base)
    return table


def _log_snr_inverse(sde: LinearSDE, lam: Tensor, eps: float) -> Tensor:
    """``t`` with ``log_snr(t) = lam``: closed form where the SDE has one, else the table."""
    if _has_log_snr_inverse(sde):
        return sde.t_from_log_snr(lam)
    F, t = _inverse_cdf_table(sde, eps, lam)
    target = -2.0 * lam
    k = (torch.searchsorted(F, target.contiguous()) - 1).clamp(0, F.numel() - 2)
    lo, hi = F[k], F[k + 1]
    return t[k] + (target - lo) / (hi - lo) * (t[k + 1] - t[k])


def likelihood_weight(sde: LinearSDE, eps: float) -> float:
    r"""$Z/(T - \epsilon)$ with $Z = \int_\epsilon^T g^2/\sigma^2\,\mathrm dt = 2(\lambda(\epsilon)
    - \lambda(T))$: the factor that makes the importance-sampled estimator of the likelihood
    weighting unbiased for the uniform-$t$ objective (see `sample_time`)."""
    lam_lo, lam_hi = float(sde.log_snr(sde.T)), float(sde.log_snr(float(eps)))
    return 2.0 * (lam_hi - lam_lo) / (sde.T - eps)


def sample_time(
    sde: LinearSDE,
    weighting: str,
    n: int,
    *,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Draw the ``n`` training times of a weighting, shape (n,).

    ``"sigma2"`` and ``"none"``: $t \sim \mathcal U(\epsilon, T)$.

    ``"likelihood"`` ($\lambda(t) = g(t)^2$, Song, Durkan, Murray & Ermon 2021, Sec. 5): $t$ is
    importance-sampled from $q(t) \propto g(t)^2/\sigma(t)^2$, which removes the $1/\sigma^2$
    singularity of $g^2\,\lVert s + z/\sigma\rVert^2$ at small $t$. For every linear SDE
    $(\sigma^2)' = 2a\sigma^2 + g^2$ and $(\log m)' = a$ give

    $$ \frac{g^2}{\sigma^2} = \frac{\mathrm d}{\mathrm dt}\log\frac{\sigma^2}{m^2}
       = -2\,\lambda'(t), \qquad \lambda = \log(m/\sigma) \text{ (the half log-SNR)}, $$

    so the CDF of $q$ is affine in $\lambda(t)$: draw $\lambda$ uniformly on $[\lambda(T),
    \lambda(\epsilon)]$ and map it back with ``sde.t_from_log_snr`` (closed form for VP, where it
    is the paper's inverse CDF, and for sub-VP, VE, OU and `DiscreteVPSDE`). A `LinearSDE`
    without that inverse uses a tabulated inverse CDF: $-2\lambda(t)$ on a 4097-point grid of
    $[\epsilon, T]$ (geometric in $t$, float64), computed once per SDE and ``eps`` and cached,
    inverted by linear interpolation. The loss then weights each term by the constant
    $Z/(T - \epsilon)$ of `likelihood_weight`, so that its expectation is
    $\mathbb E_{t\sim\mathcal U(\epsilon, T)}\,g^2\,\mathbb E\lVert s + z/\sigma\rVert^2$.
    """
    check_weighting(weighting)
    u = torch.rand(n, generator=generator, device=device, dtype=dtype)
    T = sde.T
    if weighting != "likelihood":
        t = (eps + (T - eps) * u).clamp_(max=T)
    else:
        lam_hi, lam_lo = float(sde.log_snr(float(eps))), float(sde.log_snr(T))
        t = _log_snr_inverse(sde, lam_hi - u * (lam_hi - lam_lo), eps).clamp_(eps, T)
    _mark_checked(t, T)  # inside [0, T] by construction: the SDE need not read its values
    return t


# --- the loss ------------------------------------------------------------------------------------
def _check_eps(sde: LinearSDE, eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, Real):
        raise TypeError(f"eps must be a real number in (0, T) = (0, {sde.T}), got {_short(eps)}")
    e = float(eps)
    lo_ok = e >= 0.0 if isinstance(sde, DiscreteVPSDE) else e > 0.0
    if not (math.isfinite(e) and lo_ok and e < sde.T):
        where = f"[0, {sde.T})" if isinstance(sde, DiscreteVPSDE) else f"(0, {sde.T})"
        raise ValueError(
            f"eps must lie in {where} for {type(sde).__name__} (sigma(0) = 0 makes the loss "
            f"undefined there), got {eps!r}"
        )
    return e


def dsm_loss(
    sde: LinearSDE,
    model: Model,
    x0: Tensor,
    *,
    weighting: str = "sigma2",
    parametrization: str = "score",
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The denoising score-matching loss of ``model`` on the batch ``x0`` (Song et al. 2021,
    eq. 7), a scalar tensor:

    $$ \mathcal L = \frac1B\sum_{b=1}^B w(t_b)\,\big\lVert \sigma(t_b)\,s_\theta(x_{t_b}, t_b)
       + z_b\big\rVert_2^2, \qquad x_{t_b} = m(t_b)\,x_{0,b} + \sigma(t_b)\,z_b, $$

    an unbiased estimate of $\mathbb E_{t\sim\mathcal U(\epsilon,T)}\,\lambda(t)\,
    \mathbb E\lVert s_\theta + z/\sigma\rVert^2$, with $s_\theta$ = `to_score` of
    ``model(x_t, t)`` (``t`` of shape (B,)). Weightings:

    * ``"sigma2"`` (the paper's default): $\lambda = \sigma^2$, $t \sim \mathcal U(\epsilon, T)$,
      $w = 1$.
    * ``"none"``: $\lambda = 1$, $t \sim \mathcal U(\epsilon, T)$, $w = 1/\sigma^2$.
    * ``"likelihood"``: $\lambda = g^2$, which makes the loss an upper bound on the negative
      log-likelihood up to a constant (Song, Durkan, Murray & Ermon 2021, Thm. 1); $t$ is drawn
      with density $\propto g^2/\sigma^2$ and $w$ is the constant of `likelihood_weight` (see
      `sample_time`).

    Denoising and explicit score matching differ by a constant (Vincent 2011): $\mathbb E
    \lambda\lVert s_\theta - \nabla\log p_{0t}\rVert^2 = \mathbb E\lambda\lVert s_\theta -
    \nabla\log p_t\rVert^2 + C$, $C = \mathbb E_t\lambda(t)\big(\mathbb E\lVert\nabla\log
    p_{0t}\rVert^2 - \mathbb E\lVert\nabla\log p_t\rVert^2\big)$, so the exact score minimises it
    and its loss is $C$.

    Args:
        sde: a `LinearSDE` (VP, sub-VP, VE, OU, `DiscreteVPSDE`).
        model: ``model(x, t) -> tensor shaped like x``, the network.
        x0: a batch of data, shape (B, ...), finite.
        weighting: ``"sigma2"``, ``"likelihood"`` or ``"none"``.
        parametrization: what ``model`` predicts: ``"score"``, ``"noise"``, ``"data"`` or
            ``"v"`` (see `to_score`).
        eps: the smallest time, in $(0, T)$ ($[0, T)$ for `DiscreteVPSDE`, whose
            $\sigma(0) > 0$).
        generator: a ``torch.Generator`` on ``x0``'s device for $t$ and $z$.

    Raises:
        ValueError: an unknown weighting or parametrization, ``eps`` outside its range, ``x0``
            with NaN or inf (naming the first bad row), or a model output not shaped like
            ``x0``.
    """
    sde = _check_sde(sde)
    check_weighting(weighting)
    check_parametrization(parametrization)
    eps = _check_eps(sde, eps)
    check_batched("x0", x0)
    check_rows_finite("x0", x0)
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, t), got {type(model).__name__}")
    return _dsm_loss(sde, model, x0, weighting, parametrization, eps, generator)


def _dsm_loss(
    sde: LinearSDE,
    model: Model,
    x0: Tensor,
    weighting: str,
    parametrization: str,
    eps: float,
    generator: torch.Generator | None,
    rows: slice | None = None,
) -> Tensor:
    """`dsm_loss` without the checks of its arguments (no host synchronisation): for a training
    loop that validated its data once. With ``rows`` the times and noise are drawn for the
    whole batch and the loss is the mean over ``x0[rows]`` alone (a DistributedDataParallel
    rank's slice: every rank's generator stays in the same state)."""
    t = sample_time(
        sde, weighting, x0.shape[0], eps=eps, generator=generator, device=x0.device,
        dtype=x0.dtype,
    )  # fmt: skip
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    if rows is not None:
        x0, t, z = x0[rows], t[rows], z[rows]
    m, std = sde.marginal_coeffs(t)
    xt = tm.bcast(m, x0) * x0 + tm.bcast(std, x0) * z
    out = check_like("model", model(xt, t), x0)
    score = to_score(sde, parametrization, out, xt, t)
    per_sample = (tm.bcast(std, x0) * score + z).reshape(x0.shape[0], -1).pow(2).sum(-1)
    if weighting == "none":
        per_sample = per_sample / (std * std)
    elif weighting == "likelihood":
        per_sample = per_sample * likelihood_weight(sde, eps)
    return per_sample.mean()
