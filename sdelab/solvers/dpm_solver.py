r"""DPM-Solver and DPM-Solver++: exponential integrators of the probability-flow ODE, singlestep
(Runge-Kutta-like) and multistep (Adams-like), and SDE-DPM-Solver++: the 2M SDE and the
singlestep DPM++ SDE (Lu et al. 2022a,b).

Both integrate the probability-flow ODE exactly in its linear part and approximate the model
output by a Taylor polynomial in the half log-SNR $\lambda = \log(m/\sigma)$ (`_exp`). From
$s$ to $t$, $h = \lambda_t - \lambda_s$:

* data prediction $Y = D$ (DPM-Solver++, Lu et al. 2022b, eq. 9):
  $x_t = \frac{\sigma_t}{\sigma_s}x_s + \sigma_t\int_{\lambda_s}^{\lambda_t}e^{\lambda}D\,\mathrm d\lambda$;
* noise prediction $Y = \hat\epsilon = -\sigma s$ (DPM-Solver, Lu et al. 2022a, eq. 3.4):
  $x_t = \frac{m_t}{m_s}x_s - m_t\int_{\lambda_s}^{\lambda_t}e^{-\lambda}\hat\epsilon\,\mathrm d\lambda$.

With $Y(\lambda_s + v) = Y_0 + \frac{v}{h}\,D_1 + \frac{v^2}{2h^2}\,D_2 + O(h^3)$ both become

$$ x_t = a\,x_s + b_0\,Y_0 + b_1\,D_1 + b_2\,D_2, \qquad
   b_0 = -c\,(e^{u} - 1), \quad b_1 = -c\,\big(\varphi_1(u) - 1\big), \quad
   b_2 = -c\,\Big(\frac{\varphi_1(u) - 1}{u} - \frac12\Big), \quad \varphi_1(u) = \frac{e^u - 1}{u}, $$

with $(a, c, u) = (\sigma_t/\sigma_s,\ m_t,\ -h)$ for data and $(m_t/m_s,\ \sigma_t,\ h)$ for
noise prediction (`_poly_coeffs`). The "midpoint" solver type replaces $b_1$ by $b_0/2$ (the
papers' DPM-Solver-2 and DPM-Solver++(2M)); "heun" keeps the Taylor coefficient (diffusers'
``solver_type``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..sde.base import SDE
from ._exp import Coeffs, coeffs, data_prediction, require_linear
from .grid import GridSolver, Step
from .pc import gaussian_noise

__all__ = ["DPMSolver"]

_PREDICTS = ("data", "noise")
_SOLVER_TYPES = ("midpoint", "heun")
#: diffusers' rule: lower-order final steps only on grids with fewer steps than this
LOWER_ORDER_FINAL_BELOW = 15


def _phi1(u: float) -> float:
    return math.expm1(u) / u


def _poly_coeffs(c: float, u: float, solver_type: str) -> tuple[float, float, float]:
    r"""$(b_0, b_1, b_2)$ of the module docs for the scale $c$ and exponent $u$."""
    b0 = -c * math.expm1(u)
    phi = _phi1(u)
    b1 = 0.5 * b0 if solver_type == "midpoint" else -c * (phi - 1.0)
    b2 = -c * ((phi - 1.0) / u - 0.5)
    return b0, b1, b2


def _sde_std(c: Coeffs, n: Coeffs) -> float:
    r"""The noise std $\sigma_t\sqrt{1 - e^{-2h}}$ of an SDE-DPM-Solver++ step from ``c`` to ``n``."""
    return n.sigma * math.sqrt(-math.expm1(-2.0 * (n.lam - c.lam)))


def _brownian_split(c: Coeffs, u: Coeffs, n: Coeffs) -> tuple[float, float]:
    r"""$(w_1, w_2)$ with $w_1^2 = (s_c - s_u)/(s_c - s_n)$, $w_1^2 + w_2^2 = 1$, in the
    noise-to-signal ratio $s = e^{-\lambda}$: the whole-step Brownian increment
    $w_1 z_1 + w_2 z_2$ (normalised) from the increments over $[s_c, s_u]$ and $[s_u, s_n]$
    (normalised, independent), computed from $\lambda$ differences without cancellation."""
    whole = math.expm1(c.lam - n.lam)
    w1 = math.expm1(c.lam - u.lam) / whole
    w2 = math.exp(c.lam - u.lam) * math.expm1(u.lam - n.lam) / whole
    return math.sqrt(w1), math.sqrt(w2)


@dataclass(frozen=True)
class DPMSolver(GridSolver):
    r"""DPM-Solver (``predict="noise"``, Lu et al. 2022a) and DPM-Solver++ (``predict="data"``,
    Lu et al. 2022b) of order 1-3, singlestep or multistep, and the DPM-Solver++ 2M SDE.
    The update of each variant, in the notation of the module docs ($Y_0 = Y(x_s, s)$,
    $h = \lambda_t - \lambda_s$):

    * **order 1** (DDIM, `sdelab.DDIM`): $x_t = a\,x_s + b_0 Y_0$.
    * **2M** (multistep; Lu et al. 2022b, Alg. 2): with the previous output $Y_{-1}$ at
      $\lambda_{-1}$ and $r_0 = (\lambda_s - \lambda_{-1})/h$,
      $D_1 = (Y_0 - Y_{-1})/r_0$, $x_t = a x_s + b_0 Y_0 + b_1 D_1$.
    * **3M** (multistep; Lu et al. 2022b, App.): with $r_1 = (\lambda_{-1} - \lambda_{-2})/h$,
      $D_{1,0} = (Y_0 - Y_{-1})/r_0$, $D_{1,1} = (Y_{-1} - Y_{-2})/r_1$,
      $D_1 = D_{1,0} + \frac{r_0}{r_0 + r_1}(D_{1,0} - D_{1,1})$,
      $D_2 = \frac{2}{r_0 + r_1}(D_{1,0} - D_{1,1})$, $x_t = a x_s + b_0 Y_0 + b_1^{\rm heun}
      D_1 + b_2 D_2$. (diffusers' ``DPMSolverMultistepScheduler`` and the reference code
      use $D_2/2$, i.e. half the $\lambda$-second-derivative term: the local error is then
      $O(h^3)$ and the method second order; sdelab keeps the factor 2 and is third order,
      measured on the oracle.)
    * **2S** (singlestep; Lu et al. 2022a, Alg. 1; 2022b, Alg. 1): $u$ by an order-1 step to
      $\lambda_s + r_1 h$, then $x_t = a x_s + b_0 Y_0 + b_1 (Y(u) - Y_0)/r_1$ (2 evaluations).
    * **3S** (singlestep; Lu et al. 2022a, Alg. 2): $u_1$ by an order-1 step to
      $\lambda_s + r_1 h$, $u_2$ by a 2S-type step to $\lambda_s + r_2 h$ with the Taylor
      coefficient, then with "midpoint" $x_t = a x_s + b_0 Y_0 + b_1^{\rm heun}(Y(u_2) -
      Y_0)/r_2$ (the paper), with "heun" the full Taylor formula from $D_{1,0} = (Y(u_1) -
      Y_0)/r_1$, $D_{1,1} = (Y(u_2) - Y_0)/r_2$, $D_1 = (r_2 D_{1,0} - r_1 D_{1,1})/(r_2 -
      r_1)$, $D_2 = 2(D_{1,1} - D_{1,0})/(r_2 - r_1)$ (3 evaluations). (diffusers' midpoint 3S
      takes $u_2$ with the midpoint coefficient; both are third order.)
    * **2M SDE** (``stochastic=True``; Lu et al. 2022b, App. B, diffusers'
      ``algorithm_type="sde-dpmsolver++"``): $a = e^{-h}\sigma_t/\sigma_s$, $c = m_t$,
      $u = -2h$, the same $D_1$, plus $\sigma_t\sqrt{1 - e^{-2h}}\,z$,
      $z \sim \mathcal N(0, I)$. Its order 1 is `sdelab.DDIM` with ``eta=1``.
    * **DPM++ SDE** (``stochastic=True, multistep=False, order=2``): the singlestep
      SDE-DPM-Solver++ 2S (Lu et al. 2022b, App. B) with the ancestral split of the noise of
      Karras et al. 2022 (k-diffusion's ``sample_dpmpp_sde``, A1111's "DPM++ SDE", diffusers'
      ``DPMSolverSDEScheduler``, all at $\eta = 1$, $r = r_1 = 1/2$, ``s_noise`` 1). With
      $\lambda_u = \lambda_s + r_1 h$, a first SDE-DPM-Solver++(1) stage to $u$ and the
      second stage over the whole step from the data prediction there:

      $$ x_u = \frac{\sigma_u}{\sigma_s}e^{-r_1 h}x_s + m_u\big(1 - e^{-2r_1 h}\big)D_0
         + \sigma_u\sqrt{1 - e^{-2 r_1 h}}\;z_1, $$
      $$ x_t = \frac{\sigma_t}{\sigma_s}e^{-h}x_s + m_t\big(1 - e^{-2h}\big)
         \Big[\big(1 - \tfrac{1}{2r_1}\big)D_0 + \tfrac{1}{2r_1}D(x_u, u)\Big]
         + \sigma_t\sqrt{1 - e^{-2h}}\;\zeta, $$

      i.e. $a x_s + b_0 D_0 + b_1 (D(x_u) - D_0)/r_1$ with the 2M SDE's $(a, b_0, b_1)$
      (``solver_type="heun"`` takes the Taylor $b_1$ instead). In k-diffusion's variables
      ($x/m$ and $s = \sigma/m$) each stage is DPM-Solver++(1) down to
      $s_\downarrow = s_{\rm to}^2/s_{\rm from}$ plus $s_\uparrow z$,
      $s_\uparrow^2 = s_{\rm to}^2 - s_\downarrow^2$: the same two lines.
      **The two noises.** k-diffusion and diffusers draw them from one torchsde Brownian tree
      $W$ in the time variable $s$ (``BrownianTreeNoiseSampler``, identity transform), each
      normalised by the square root of its interval: $z_1 \propto W(s_u) - W(s_s)$ and
      $\zeta \propto W(s_t) - W(s_s)$, which contains the first. sdelab draws the same law
      exactly, without a tree: independent $z_1, z_2 \sim \mathcal N(0, I)$ (the normalised
      increments over $[s_s, s_u]$ and $[s_u, s_t]$, in that order from the generator) and
      $\zeta = w_1 z_1 + w_2 z_2$, $w_1^2 = (s_s - s_u)/(s_s - s_t)$,
      $w_2^2 = (s_u - s_t)/(s_s - s_t)$. Weak order 1, 2 evaluations per step.

    **Warm-up and final steps.** A multistep method starts at order 1 and raises its order by
    one per step while its history fills (the papers, diffusers). With ``lower_order_final``
    on a grid of fewer than 15 steps, step $i$ uses at most order $N - i$: the last step is
    first order, the one before at most second (diffusers with ``final_sigmas_type=
    "sigma_min"``; diffusers' ``"zero"`` is ``sample(..., denoise=True)``, whose Tweedie step
    is the first-order step to $\sigma = 0$). Singlestep methods use their full order on every
    step (``lower_order_final`` is for multistep methods).

    **State.** ``(history, coefficients at the step's end)``: the multistep history holds the
    previous outputs $Y$ and their $\lambda$ (at most ``order - 1``); the coefficients are
    reused as the next step's start. A corrector that moves $x$ keeps it: the outputs belong
    to the earlier grid times (`GridSolver.after_correction`).

    Runs on every `LinearSDE` (`require_linear`), in either direction of time (inversion,
    `sdelab.invert`).

    Args:
        order: 1, 2 or 3 (``stochastic=True``: 1 or 2).
        multistep: multistep (1 evaluation per step) or singlestep (``order`` per step).
        predict: ``"data"`` (DPM-Solver++) or ``"noise"`` (DPM-Solver).
        stochastic: SDE-DPM-Solver++ (needs ``predict="data"``): the 2M SDE with
            ``multistep=True``, the DPM++ SDE with ``multistep=False``.
        solver_type: ``"midpoint"`` (the papers) or ``"heun"`` (the Taylor coefficient).
        lower_order_final: lower-order final steps on grids of fewer than 15 steps (multistep).
        r1: the first intermediate point of a singlestep method, in units of $h$ (default
            1/2 for 2S, 1/3 for 3S, the papers' choice).
        r2: the second intermediate point of 3S (default 2/3).
    """

    order: int = 2
    multistep: bool = True
    predict: str = "data"
    stochastic: bool = False
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    r1: float | None = None
    r2: float | None = None

    def __post_init__(self) -> None:
        for name in ("multistep", "stochastic", "lower_order_final"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if isinstance(self.order, bool) or self.order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {self.order!r}")
        if self.predict not in _PREDICTS:
            raise ValueError(f"predict must be one of {_PREDICTS}, got {self.predict!r}")
        if self.solver_type not in _SOLVER_TYPES:
            raise ValueError(
                f"solver_type must be one of {_SOLVER_TYPES}, got {self.solver_type!r}"
            )
        if self.stochastic:
            if self.order == 3:
                raise ValueError(
                    "order must be 1 or 2 with stochastic=True (the DPM-Solver++ 2M SDE or the "
                    "singlestep DPM++ SDE), got 3"
                )
            if self.predict != "data":
                raise ValueError(
                    "stochastic=True needs predict='data' (SDE-DPM-Solver++), got "
                    f"predict={self.predict!r}"
                )
        r1, r2 = self.ratios
        for name, given in (("r1", self.r1), ("r2", self.r2)):
            if given is not None and self.multistep:
                raise ValueError(
                    f"{name} applies to singlestep methods (multistep=False), got {name}={given!r}"
                )
        if self.r2 is not None and self.order != 3:
            raise ValueError(f"r2 applies to order 3, got r2={self.r2!r} with order={self.order!r}")
        if not (self.multistep or self.order == 1):
            if not 0 < r1 < 1 or (self.order == 3 and not r1 < r2 < 1):
                raise ValueError(
                    f"the intermediate points must satisfy 0 < r1 < 1 (and r1 < r2 < 1 for 3S), "
                    f"got r1={r1!r}, r2={r2!r}"
                )

    # --- declared properties ------------------------------------------------------------------
    @property
    def ratios(self) -> tuple[float, float]:
        """$(r_1, r_2)$ of a singlestep method (the papers' defaults where not given)."""
        if self.order == 3:
            return (1 / 3 if self.r1 is None else self.r1), (2 / 3 if self.r2 is None else self.r2)
        return (0.5 if self.r1 is None else self.r1), 1.0

    @property
    def weak_order(self) -> float | None:  # type: ignore[override]
        return 1.0 if self.stochastic else float(self.order)

    @property
    def nfe_per_step(self) -> int:
        return 1 if self.multistep else self.order

    # --- one step -----------------------------------------------------------------------------
    def _output(self, score, x: Tensor, c: Coeffs) -> Tensor:
        """$Y(x, t)$: the data prediction $D$ or the noise prediction $\\hat\\epsilon = -\\sigma s$."""
        if self.predict == "data":
            return data_prediction(score, x, c)
        return (-c.sigma) * score(x, c.t)

    def _affine(self, c: Coeffs, n: Coeffs, solver_type: str) -> tuple[float, float, float, float]:
        """$(a, b_0, b_1, b_2)$ of a step from ``c`` to ``n`` (module docs; SDE: App. B)."""
        h = n.lam - c.lam
        if self.stochastic:
            return (n.sigma / c.sigma) * math.exp(-h), *_poly_coeffs(n.m, -2.0 * h, solver_type)
        if self.predict == "data":
            return n.sigma / c.sigma, *_poly_coeffs(n.m, -h, solver_type)
        return n.m / c.m, *_poly_coeffs(n.sigma, h, solver_type)

    def _at(self, sde, c: Coeffs, dlam: float) -> Coeffs:
        """The coefficients at $\\lambda_s + \\Delta\\lambda$ (a singlestep intermediate point)."""
        return coeffs(sde, float(sde.t_from_log_snr(c.lam + dlam)))

    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: Any,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Any]:
        require_linear(sde, "DPMSolver")
        history, c = state if state is not None else ((), None)
        if c is None or c.t != step.t:  # the previous step's end is this step's start
            c = coeffs(sde, step.t)
        n = coeffs(sde, step.t_next)
        y0 = self._output(score, x, c)
        if not self.multistep and self.order > 1:
            return self._singlestep(sde, score, x, y0, c, n, generator), ((), n)
        k = min(self.order, len(history) + 1)
        if self.lower_order_final and step.count < LOWER_ORDER_FINAL_BELOW:
            k = min(k, step.remaining + 1)
        x_next = self._multistep(x, y0, c, n, history[len(history) - (k - 1) :] if k > 1 else ())
        if self.stochastic:
            x_next = x_next + gaussian_noise(x, generator, _sde_std(c, n))
        if self.order == 1:
            return x_next, ((), n)
        return x_next, ((*history, (c.lam, y0))[-(self.order - 1) :], n)

    def _multistep(self, x, y0, c: Coeffs, n: Coeffs, past) -> Tensor:
        """The order-``len(past) + 1`` Adams-type update from the outputs at earlier times."""
        a, b0, b1, b2 = self._affine(c, n, self.solver_type if len(past) < 2 else "heun")
        out = torch.add(a * x, y0, alpha=b0)  # a x + b0 y0, fused: one kernel fewer
        if not past:
            return out
        h = n.lam - c.lam
        lam1, y1 = past[-1]
        r0 = (c.lam - lam1) / h
        if len(past) == 1:
            return out.add_(y0 - y1, alpha=b1 / r0)
        d10 = (y0 - y1) / r0
        lam2, y2 = past[-2]
        r1 = (lam1 - lam2) / h
        d11 = (y1 - y2) / r1
        d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11)
        d2 = (2.0 / (r0 + r1)) * (d10 - d11)
        return out + b1 * d1 + b2 * d2

    def _singlestep(self, sde, score, x, y0, c: Coeffs, n: Coeffs, generator) -> Tensor:
        """2S / 3S: intermediate points at $\\lambda_s + r_1 h$ (and $r_2 h$), then the step;
        the DPM++ SDE adds the correlated pair of noises of the class docs to 2S."""
        h = n.lam - c.lam
        r1, r2 = self.ratios
        u1 = self._at(sde, c, r1 * h)
        a, b0, _, _ = self._affine(c, u1, "midpoint")
        x1 = a * x + b0 * y0
        if self.stochastic:
            z1, z2 = gaussian_noise(x, generator), gaussian_noise(x, generator)
            x1 = x1 + _sde_std(c, u1) * z1
        y1 = self._output(score, x1, u1)
        d10 = (y1 - y0) / r1
        if self.order == 2:
            a, b0, b1, _ = self._affine(c, n, self.solver_type)
            x_next = a * x + b0 * y0 + b1 * d10
            if self.stochastic:
                w1, w2 = _brownian_split(c, u1, n)
                std = _sde_std(c, n)
                x_next = x_next + (std * w1) * z1 + (std * w2) * z2
            return x_next
        u2 = self._at(sde, c, r2 * h)
        a, b0, b1, _ = self._affine(c, u2, "heun")
        y2 = self._output(score, a * x + b0 * y0 + b1 * (y1 - y0) / (r1 / r2), u2)
        d11 = (y2 - y0) / r2
        a, b0, b1, b2 = self._affine(c, n, "heun")
        if self.solver_type == "midpoint":
            return a * x + b0 * y0 + b1 * d11
        d1 = (r2 * d10 - r1 * d11) / (r2 - r1)
        d2 = (2.0 / (r2 - r1)) * (d11 - d10)
        return a * x + b0 * y0 + b1 * d1 + b2 * d2
