r"""The discrete-time VP model of DDPM / diffusers as a continuous-time linear SDE.

A model trained with $N$ discrete noise levels $\bar\alpha_0 > \dots > \bar\alpha_{N-1}$
(diffusers' ``alphas_cumprod``) defines the marginals at the training steps only. sdelab maps
$t \in [0, 1]$ to the (fractional) training step $\tau = t\,(N - 1)$ and interpolates the log
noise-to-signal ratio linearly in $\tau$ between steps (as k-diffusion's discrete schedules do),

$$ s(t) = \sigma(t)/m(t), \qquad \log s(\tau) \text{ piecewise linear}, \qquad
   s_k = \sqrt{(1 - \bar\alpha_k)/\bar\alpha_k}, $$

and takes the VP process with these marginals: $m = 1/\sqrt{1 + s^2}$, $\sigma = s/\sqrt{1+s^2}$
(so $m^2 + \sigma^2 = 1$ and $m(t_k)^2 = \bar\alpha_k$ exactly at every training step). Its SDE
is $\mathrm{d}x = a(t)\,x\,\mathrm{d}t + \sqrt{-2a(t)}\,\mathrm{d}w$ with
$a = \mathrm{d}\log m/\mathrm{d}t$, piecewise smooth. Every sdelab solver runs on it, and
``score_from_noise`` / ``score_from_diffusers_model`` turn a diffusers noise model into its score.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import Time, check_int, check_time
from .base import LinearSDE

__all__ = ["DiscreteVPSDE", "diffusers_betas"]

_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def diffusers_betas(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
    beta_schedule: str = "linear",
) -> Tensor:
    r"""The float32 $\beta$ table of a diffusers ``beta_schedule`` (the same numbers):

    * ``"linear"`` (Ho et al. 2020): $N$ values evenly spaced from ``beta_start`` to ``beta_end``;
    * ``"scaled_linear"`` (latent diffusion): $\beta_k = \big(\sqrt{\beta_s} + \tfrac{k}{N-1}
      (\sqrt{\beta_e} - \sqrt{\beta_s})\big)^2$;
    * ``"squaredcos_cap_v2"`` (Nichol & Dhariwal 2021, eq. 17):
      $\beta_k = \min\big(1 - \bar\alpha((k+1)/N)/\bar\alpha(k/N),\ 0.999\big)$ with
      $\bar\alpha(u) = \cos^2\big(\tfrac{u + 0.008}{1.008}\tfrac\pi2\big)$.
    """
    n = check_int("num_train_timesteps", num_train_timesteps, minimum=2)
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":

        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - abar((k + 1) / n) / abar(k / n), 0.999) for k in range(n)]
        return torch.tensor(betas, dtype=torch.float32)
    raise ValueError(f"beta_schedule must be one of {_BETA_SCHEDULES}, got {beta_schedule!r}")


class DiscreteVPSDE(LinearSDE):
    r"""The VP SDE of a discrete-time diffusion model given by its $\bar\alpha$ table
    (see the module docs for the interpolation):

    $$ \tau = t\,(N-1), \quad \log s(\tau) = (1 - w)\log s_k + w \log s_{k+1},\ k = \lfloor\tau\rfloor,
       \ w = \tau - k, \qquad m = (1 + s^2)^{-1/2}, \quad \sigma = s\,m. $$

    At $t_k = k/(N-1)$ the marginal is exactly DDPM's $\mathcal N(\sqrt{\bar\alpha_k}\,x_0,
    (1 - \bar\alpha_k) I)$. Note $\sigma(0) = \sqrt{1 - \bar\alpha_0} > 0$: the first training
    step already carries a little noise, and samplers stop at ``eps`` above it anyway. The
    log-SNR $\lambda = -\log s$ is piecewise linear in $t$, so `t_from_log_snr` is exact.

    Args:
        alphas_cumprod: $\bar\alpha_k$, $N \ge 2$ values in (0, 1), strictly decreasing
            (a sequence, a numpy array or a tensor; kept in float64).
        N: default number of sampling steps (default: the table's length).
    """

    prior_std = 1.0

    def __init__(self, alphas_cumprod: Sequence[float] | Tensor, N: int | None = None) -> None:
        try:
            ac = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                "alphas_cumprod must be a 1-d sequence or tensor of numbers, got "
                f"{type(alphas_cumprod).__name__}"
            ) from None
        if ac.ndim != 1 or ac.numel() < 2:
            raise ValueError(
                f"alphas_cumprod must be 1-d with at least 2 entries, got shape {tuple(ac.shape)}"
            )
        if not bool(((ac > 0) & (ac < 1)).all()):
            bad = ac[~((ac > 0) & (ac < 1))][0].item()
            raise ValueError(
                f"alphas_cumprod must lie in (0, 1) (a zero terminal SNR has no finite "
                f"log-SNR), got the value {bad!r}"
            )
        if not bool((ac[1:] < ac[:-1]).all()):
            k = int(torch.nonzero(ac[1:] >= ac[:-1])[0])
            raise ValueError(
                "alphas_cumprod must be strictly decreasing, got "
                f"alphas_cumprod[{k}]={ac[k].item()!r} <= alphas_cumprod[{k + 1}]={ac[k + 1].item()!r}"
            )
        n = ac.numel()
        super().__init__(n if N is None else N)
        self.alphas_cumprod = ac
        self.num_train_timesteps = n
        log_s = 0.5 * (torch.log1p(-ac) - torch.log(ac))
        self._log_s = log_s.tolist()  # the Python-float path: no tensor touched per step
        self._log_s_table = log_s
        self._tables: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas: Sequence[float] | Tensor, N: int | None = None) -> DiscreteVPSDE:
        r"""From DDPM's $\beta_k$: $\bar\alpha_k = \prod_{j \le k} (1 - \beta_j)$, the product
        taken in the table's own precision (a float32 tensor gives diffusers' float32
        ``alphas_cumprod`` bit for bit)."""
        b = torch.as_tensor(betas)
        if not b.is_floating_point():
            b = b.to(torch.float64)
        if b.ndim != 1 or b.numel() < 2:
            raise ValueError(
                f"betas must be 1-d with at least 2 entries, got shape {tuple(b.shape)}"
            )
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        return cls(torch.cumprod(1.0 - b, dim=0), N=N)

    @classmethod
    def from_diffusers(cls, config: Mapping[str, Any] | Any, N: int | None = None) -> DiscreteVPSDE:
        """From a diffusers scheduler config (a dict, a ``FrozenDict``, or a scheduler with
        ``.config``): ``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule``
        ("linear", "scaled_linear", "squaredcos_cap_v2") or ``trained_betas``, with diffusers'
        defaults for missing keys. ``rescale_betas_zero_snr=True`` is refused (zero terminal
        SNR has no finite log-SNR)."""
        if not isinstance(config, Mapping):
            config = getattr(config, "config", None)
            if not isinstance(config, Mapping):
                raise TypeError(
                    "config must be a diffusers scheduler config (a mapping) or a scheduler "
                    f"with .config, got {type(config).__name__}"
                )
        if config.get("rescale_betas_zero_snr", False):
            raise ValueError(
                "rescale_betas_zero_snr=True is not supported: alphas_cumprod[-1] = 0 has no "
                "finite log-SNR"
            )
        trained = config.get("trained_betas")
        if trained is not None:
            return cls.from_betas(torch.as_tensor(trained, dtype=torch.float32), N=N)
        betas = diffusers_betas(
            int(config.get("num_train_timesteps", 1000)),
            float(config.get("beta_start", 0.0001)),
            float(config.get("beta_end", 0.02)),
            str(config.get("beta_schedule", "linear")),
        )
        return cls.from_betas(betas, N=N)

    # --- the interpolated log noise-to-signal ratio -----------------------------------------
    def _table(self, like: Tensor) -> Tensor:
        key = (like.device, like.dtype)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self._log_s_table.to(like.device, like.dtype)
        return table

    def _interp(self, t: Time) -> tuple[Time, Time]:
        """``(log s(t), d log s / dt)`` at ``t`` (the right derivative at a training step)."""
        n = self.num_train_timesteps
        if isinstance(t, Tensor):
            table = self._table(t)
            tau = t * (n - 1)
            k = tau.floor().clamp(0, n - 2)
            w = tau - k
            k = k.long()
            lo, hi = table[k], table[k + 1]
            return lo + w * (hi - lo), (hi - lo) * (n - 1)
        tau = t * (n - 1)
        k = min(int(tau), n - 2)
        w = tau - k
        lo, hi = self._log_s[k], self._log_s[k + 1]
        return lo + w * (hi - lo), (hi - lo) * (n - 1)

    def log_nsr(self, t: Time) -> Time:
        r"""$\log s(t) = \log(\sigma(t)/m(t))$, the interpolated log noise-to-signal ratio."""
        return self._interp(check_time(t, self.T))[0]

    def timestep(self, t: Time) -> Time:
        r"""The fractional training step $\tau = t\,(N - 1)$ of time ``t``."""
        return check_time(t, self.T) * (self.num_train_timesteps - 1)

    def log_mean_coeff(self, t: Time) -> Time:
        r"""$\log m = -\tfrac12\log(1 + s^2)$."""
        return -0.5 * tm.softplus(2.0 * self.log_nsr(t))

    def mean_coeff(self, t: Time) -> Time:
        r"""$m(t) = (1 + s(t)^2)^{-1/2}$; $m(t_k)^2 = \bar\alpha_k$."""
        return tm.exp(self.log_mean_coeff(t))

    def std(self, t: Time) -> Time:
        r"""$\sigma(t) = s(t)\,m(t)$; $\sigma(t_k)^2 = 1 - \bar\alpha_k$."""
        ls = self.log_nsr(t)
        return tm.exp(ls - 0.5 * tm.softplus(2.0 * ls))

    def drift_coeff(self, t: Time) -> Time:
        r"""$a(t) = \frac{\mathrm{d}\log m}{\mathrm{d}t} = -\frac{s^2}{1 + s^2}\,\frac{\mathrm{d}\log s}{\mathrm{d}t}$."""
        ls, dls = self._interp(check_time(t, self.T))
        w = 1.0 / (1.0 + tm.exp(-2.0 * ls))  # s^2 / (1 + s^2)
        return -w * dls

    def diffusion(self, t: Time) -> Time:
        r"""$g(t) = \sqrt{-2a(t)}$ (VP: $(\sigma^2)' = 2a\sigma^2 + g^2$ with $\sigma^2 = 1 - m^2$)."""
        return tm.sqrt(-2.0 * self.drift_coeff(t))

    def grid_coeffs(self, t: float) -> tuple[float, float, float]:
        r"""$(m, \sigma, \lambda) = \big((1 + s^2)^{-1/2},\ s\,m,\ -\log s\big)$ from one
        interpolation of $\log s(t)$."""
        ls = self._interp(check_time(t, self.T))[0]
        lm = -0.5 * tm.softplus(2.0 * ls)
        return math.exp(lm), math.exp(ls + lm), -ls

    def log_snr(self, t: Time) -> Time:
        r"""$\lambda(t) = -\log s(t)$, piecewise linear in $t$."""
        return -self.log_nsr(t)

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""Inverse of `log_snr`: the piecewise-linear inverse (extrapolated linearly outside
        $[\lambda(1), \lambda(0)]$)."""
        n = self.num_train_timesteps
        if isinstance(lam, Tensor):
            table = self._table(lam)
            target = -lam
            k = (torch.searchsorted(table, target.contiguous()) - 1).clamp(0, n - 2)
            lo, hi = table[k], table[k + 1]
            return (k + (target - lo) / (hi - lo)) / (n - 1)
        target = -lam
        k = min(max(bisect.bisect_left(self._log_s, target) - 1, 0), n - 2)
        lo, hi = self._log_s[k], self._log_s[k + 1]
        return (k + (target - lo) / (hi - lo)) / (n - 1)

    def _params(self) -> dict:
        return {"num_train_timesteps": self.num_train_timesteps, "N": self.N}

    def __repr__(self) -> str:
        ac = self.alphas_cumprod
        return (
            f"DiscreteVPSDE(alphas_cumprod=<{ac.numel()} values from {ac[0].item():.6g} to "
            f"{ac[-1].item():.6g}>, N={self.N})"
        )
