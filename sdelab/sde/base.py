r"""Abstract forward SDEs.

Every process here is an Itô SDE with diagonal noise,

$$ \mathrm{d}x = f(x, t)\,\mathrm{d}t + G(x, t)\,\mathrm{d}w, $$

(Song et al. 2021, eq. 5). The score-model SDEs (`VPSDE`, `SubVPSDE`, `VESDE`) are *linear*:
$f(x, t) = a(t)\,x$ and $G = g(t)$ depends on time only, so their transition laws are Gaussian
and known in closed form; `LinearSDE` holds everything that follows from that.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import (
    Time,
    check_batched,
    check_device,
    check_dtype,
    check_generator,
    check_int,
    check_positive,
    check_shape,
    check_time,
    check_time_like,
)
from .reverse import ReverseSDE

__all__ = ["SDE", "ItoSDE", "LinearSDE", "check_linear_sde", "check_sde"]


class ItoSDE(abc.ABC):
    r"""An Itô SDE $\mathrm{d}x = f(x,t)\,\mathrm{d}t + G(x,t)\,\mathrm{d}w$ with diagonal noise.

    The minimal interface that forward simulation (`sdelab.sde.simulate`) needs: `drift` and
    `noise`, both shaped like ``x``. Geometric Brownian motion, whose noise depends on the
    state, is an `ItoSDE` but not an `SDE`.
    """

    T: float = 1.0

    @abc.abstractmethod
    def drift(self, x: Tensor, t: Time) -> Tensor:
        r"""The drift $f(x, t)$, shaped like ``x``."""

    @abc.abstractmethod
    def noise(self, x: Tensor, t: Time) -> Tensor:
        r"""The diagonal noise coefficient $G(x, t)$, shaped like ``x`` (or broadcastable)."""


class SDE(ItoSDE):
    r"""A forward noising SDE $\mathrm{d}x = f(x,t)\,\mathrm{d}t + g(t)\,\mathrm{d}w$ on $[0, T]$.

    Subclasses define the drift $f$, the diffusion $g(t)$, the perturbation kernel
    $p_{0t}(x_t \mid x_0)$ (`marginal`), the prior $p_T$ and a one-step discretisation.

    Time arguments ``t`` are a Python float, a 0-d tensor or a tensor of shape (B,) matching
    the batch of ``x``; a tensor ``t`` must have ``x``'s device and dtype. Coefficients
    (`diffusion`, the marginal std, ...) come back with ``t``'s shape: a Python float for a
    Python float ``t``, which is what fixed-grid samplers pass because it is cheapest.

    Args:
        N: the default number of discretisation steps (used by `discretize` when ``dt`` is not
            given, and by samplers when ``steps`` is not given).
    """

    T: float = 1.0

    def __init__(self, N: int = 1000) -> None:
        self.N = check_int("N", N, minimum=1)

    # --- the SDE itself -------------------------------------------------------------------
    @abc.abstractmethod
    def drift(self, x: Tensor, t: Time) -> Tensor:
        r"""The drift $f(x, t)$, shaped like ``x``."""

    @abc.abstractmethod
    def diffusion(self, t: Time) -> Time:
        r"""The diffusion coefficient $g(t)$, with ``t``'s shape."""

    def noise(self, x: Tensor, t: Time) -> Tensor | float:
        r"""$G(x, t) = g(t)$ broadcast over ``x``'s trailing dimensions."""
        t = check_time_like(x, t, self.T)
        return tm.bcast(self.diffusion(t), x)

    # --- transition law and prior ---------------------------------------------------------
    @abc.abstractmethod
    def marginal(self, x0: Tensor, t: Time) -> tuple[Tensor, Time]:
        r"""Mean and std of the perturbation kernel $p_{0t}(x_t \mid x_0)$."""

    def perturb(
        self,
        x0: Tensor,
        t: Time,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Draw $x_t = \mu_t(x_0) + \sigma_t z$ with $z \sim \mathcal N(0, I)$ from `marginal`.

        Returns ``(x_t, z)``; pass ``noise`` to reuse a draw, ``generator`` to seed a new one.
        """
        mean, std = self.marginal(x0, t)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(
                f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}"
            )
        return mean + tm.bcast(std, x0) * noise, noise

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        r"""Standard deviation $\sigma_p$ of the prior $\mathcal N(0, \sigma_p^2 I)$."""

    def prior_sample(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        r"""Draw from the prior $p_T = \mathcal N(0, \sigma_p^2 I)$.

        ``device`` defaults to the generator's device (else the default device), ``dtype`` to
        torch's default dtype. Every sampler draws its prior here, so this is where
        ``generator`` (a ``torch.Generator`` on ``device``, or ``None``), ``device`` and
        ``dtype`` (floating) are checked.
        """
        shape = check_shape(shape)
        dtype = check_dtype("dtype", dtype)
        device = check_device("device", device)
        check_generator(generator, device)
        if device is None and generator is not None:
            device = generator.device
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return z * self.prior_std if self.prior_std != 1.0 else z

    def prior_logp(self, z: Tensor) -> Tensor:
        r"""$\log \mathcal N(z; 0, \sigma_p^2 I) = -\tfrac D2 \log(2\pi\sigma_p^2)
        - \lVert z\rVert^2 / (2\sigma_p^2)$ per sample, shape (B,)."""
        check_batched("z", z)
        s2 = self.prior_std**2
        d = z[0].numel()
        sq = z.reshape(z.shape[0], -1).pow(2).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * s2) - sq / (2 * s2)

    # --- discretisation and reversal ------------------------------------------------------
    def discretize(self, x: Tensor, t: Time, dt: float | None = None) -> tuple[Tensor, Time]:
        r"""One step $x_t = x_{t-\Delta t} + f_i + G_i z$ of size ``dt`` ending at ``t``.

        The base rule is Euler-Maruyama: $f_i = f(x, t)\,\Delta t$,
        $G_i = g(t)\sqrt{\Delta t}$. ``dt`` defaults to $T/N$.
        """
        dt = self._check_dt(t, dt)
        return self.drift(x, t) * dt, tm.sqrt(dt) * self.diffusion(t)

    def reverse(self, score, probability_flow: bool = False):
        r"""The reverse-time SDE (eq. 6) or the probability-flow ODE (eq. 13) for ``score``.

        See `sdelab.sde.ReverseSDE`.
        """
        return ReverseSDE(self, score, probability_flow=probability_flow)

    # --- helpers --------------------------------------------------------------------------
    def _check_dt(self, t: Time, dt: float | None) -> float:
        if dt is None:
            dt = self.T / self.N
        dt = check_positive("dt", dt)
        if dt > self.T:
            raise ValueError(f"dt must be at most T = {self.T}, got {dt!r}")
        check_time(t, self.T)
        return dt

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict:
        return {"N": self.N}


class LinearSDE(SDE):
    r"""An SDE with linear drift and state-independent diffusion,

    $$ \mathrm{d}x = a(t)\,x\,\mathrm{d}t + g(t)\,\mathrm{d}w. $$

    Its perturbation kernel is Gaussian (Särkkä & Solin 2019, Sec. 6.1;
    Song et al. 2021, App. B, eq. 29):
    $p_{0t}(x_t \mid x_0) = \mathcal N(m(t)\,x_0, \sigma(t)^2 I)$ with

    $$ m(t) = \exp\Big(\int_0^t a(s)\,\mathrm{d}s\Big), \qquad
       \sigma(t)^2 = \int_0^t \frac{m(t)^2}{m(s)^2}\, g(s)^2\, \mathrm{d}s, $$

    i.e. $m' = a\,m$ and $(\sigma^2)' = 2a\,\sigma^2 + g^2$ with $m(0) = 1$, $\sigma(0) = 0$.
    Subclasses give $a$ (`drift_coeff`), $g$ (`diffusion`), $m$ (`mean_coeff`) and
    $\sigma$ (`std`).
    """

    @abc.abstractmethod
    def drift_coeff(self, t: Time) -> Time:
        r"""$a(t)$ in $f(x, t) = a(t)\,x$."""

    @abc.abstractmethod
    def mean_coeff(self, t: Time) -> Time:
        r"""$m(t) = \exp\int_0^t a(s)\,\mathrm{d}s$, the scale of $x_0$ in $x_t$."""

    @abc.abstractmethod
    def std(self, t: Time) -> Time:
        r"""$\sigma(t)$, the standard deviation of $x_t$ given $x_0$."""

    def marginal_coeffs(self, t: Time) -> tuple[Time, Time]:
        r"""$(m(t), \sigma(t))$ together: what the perturbation kernel needs, computed with
        shared intermediate results where a subclass can (VP, sub-VP)."""
        return self.mean_coeff(t), self.std(t)

    def grid_coeffs(self, t: float) -> tuple[float, float, float]:
        r"""$(m(t), \sigma(t), \lambda(t))$ at a Python-float time, as Python floats: what a
        fast sampler needs at each grid time (`sdelab.solvers._exp.coeffs`). Subclasses
        compute the three from one shared quantity where they can (`DiscreteVPSDE`: one table
        interpolation)."""
        m, sigma = self.marginal_coeffs(t)
        return float(m), float(sigma), float(self.log_snr(t))

    def log_snr(self, t: Time) -> Time:
        r"""The half log signal-to-noise ratio $\lambda(t) = \log\big(m(t)/\sigma(t)\big)$.

        Strictly decreasing in $t$ for every SDE here, $+\infty$ at $t = 0$. It is the time
        variable of the exponential integrators (DPM-Solver, Lu et al. 2022, eq. 3.2; DDIM)
        and $e^{-\lambda}$ is the noise-to-signal ratio $\sigma/m$ of Karras et al. 2022.
        Subclasses give closed forms; this default is $\log m(t) - \log \sigma(t)$.
        """
        return tm.log(self.mean_coeff(t)) - tm.log(self.std(t))

    def t_from_log_snr(self, lam: Time) -> Time:
        r"""The inverse of `log_snr`: the time $t$ with $\lambda(t) = $ ``lam``, in closed form.

        Values of ``lam`` below $\lambda(T)$ give times beyond $T$ (they are not clamped).
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form inverse of its log-SNR "
            "(t_from_log_snr): define t_from_log_snr(lam) to use log-SNR or Karras time grids"
        )

    def drift(self, x: Tensor, t: Time) -> Tensor:
        r"""$f(x, t) = a(t)\,x$."""
        t = check_time_like(x, t, self.T)
        return tm.bcast(self.drift_coeff(t), x) * x

    def marginal(self, x0: Tensor, t: Time) -> tuple[Tensor, Time]:
        r"""$p_{0t}(x_t \mid x_0) = \mathcal N(m(t)\,x_0,\ \sigma(t)^2 I)$: returns
        ``(m(t) * x0, sigma(t))``; the std has ``t``'s shape."""
        t = check_time_like(x0, t, self.T)
        return tm.bcast(self.mean_coeff(t), x0) * x0, self.std(t)

    def transition(self, t: Time, dt: float) -> tuple[Time, Time]:
        r"""The exact one-step law $x_t \mid x_s \sim \mathcal N(\alpha\,x_s, v\,I)$, $s = t - \Delta t$:

        $$ \alpha = m(t)/m(s), \qquad v = \sigma(t)^2 - \alpha^2 \sigma(s)^2. $$

        For VP this is DDPM's step ($\alpha = \sqrt{1-\beta_i}$, $v = \beta_i$), for VE the
        SMLD step ($\alpha = 1$, $v = \sigma_i^2 - \sigma_{i-1}^2$). Returns ``(alpha, v)``.
        """
        t = check_time(t, self.T)
        dt = check_positive("dt", dt)
        s = tm.clamp_min(t - dt, 0.0)
        alpha = self.mean_coeff(t) / self.mean_coeff(s)
        v = tm.clamp_min(self.std(t) ** 2 - alpha**2 * self.std(s) ** 2, 0.0)
        return alpha, v

    def discretize(self, x: Tensor, t: Time, dt: float | None = None) -> tuple[Tensor, Time]:
        r"""The exact Gaussian step of size ``dt`` ending at ``t``:
        $x_t = x_s + f_i + G_i z$ with $f_i = (\alpha - 1)\,x$, $G_i = \sqrt v$ (see
        `transition`).

        This is the paper's DDPM discretisation for VP (Song et al. 2021, eq. 10,
        with $\beta_i = 1 - m(t)^2/m(t-\Delta t)^2 \approx \beta(t)\,\Delta t$) and the SMLD
        one for VE (eq. 8), written for any step size so that a sampler on a coarse grid
        stays valid; for sub-VP it is the same exact step of that SDE. ``dt`` defaults to $T/N$.
        """
        dt = self._check_dt(t, dt)
        t = check_time_like(x, t, self.T)
        alpha, v = self.transition(t, dt)
        return tm.bcast(alpha - 1.0, x) * x, tm.sqrt(v)


def check_sde(sde: object, name: str = "sde") -> SDE:
    """Raise unless ``sde`` is a forward `SDE`; a reverse-time SDE or ODE gets its own message."""
    if isinstance(sde, SDE):
        return sde
    if isinstance(sde, ReverseSDE):
        kind = "probability-flow ODE" if sde.probability_flow else "stochastic reverse-time SDE"
        raise TypeError(
            f"{name} must be the forward SDE (VPSDE, SubVPSDE, VESDE, ...), got the {kind} "
            f"{sde!r}; samplers and the ODE solvers build the reverse process from the forward "
            "SDE and the score themselves"
        )
    raise TypeError(
        f"{name} must be a forward sdelab SDE (VPSDE, SubVPSDE, VESDE, ...), got "
        f"{type(sde).__name__}"
    )


def check_linear_sde(sde: object, who: str, uses: str) -> LinearSDE:
    """Raise unless ``sde`` is a `LinearSDE`; ``who`` names what needs it and ``uses`` what
    it takes from it (the message names both and the type that was given)."""
    if not isinstance(sde, LinearSDE):
        raise TypeError(
            f"{who} needs a linear SDE (LinearSDE: VPSDE, SubVPSDE, VESDE, OrnsteinUhlenbeck) "
            f"for its {uses}, got {type(sde).__name__}"
        )
    return sde
