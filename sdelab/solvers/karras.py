r"""The Karras / k-diffusion family: Euler, Heun, DPM2 and their ancestral variants, DPM++ 2S a.

Every linear SDE (perturbation kernel $\mathcal N(m(t)\,x_0, \sigma(t)^2 I)$) becomes a VE
process in the **scaled state** $\tilde x = x/m(t)$ and the **noise-to-signal ratio**
$s = \sigma/m = e^{-\lambda}$ (EDM's $\sigma$): $\tilde x_s = x_0 + s\,\epsilon$. Its
probability-flow ODE is (Karras et al. 2022, eq. 4, with the data prediction
$D(x, t) = (x + \sigma(t)^2 s_\theta(x, t))/m(t)$)

$$ \frac{\mathrm d\tilde x}{\mathrm d s} = \frac{\tilde x - D(m\tilde x, t(s))}{s}
   = \hat\epsilon(x, t), $$

the noise prediction. The samplers of this module (k-diffusion's ``sample_euler``,
``sample_heun``, ``sample_dpm_2``, ``sample_euler_ancestral``, ``sample_dpm_2_ancestral``,
``sample_dpmpp_2s_ancestral``; diffusers' ``EulerDiscreteScheduler``, ``HeunDiscreteScheduler``,
``KDPM2DiscreteScheduler``, ``EulerAncestralDiscreteScheduler``,
``KDPM2AncestralDiscreteScheduler``) step this ODE (or its ancestral stochastic variant) in
$s$, then map back with $x = m(t_{\mathrm{next}})\,\tilde x$. For VE, $m = 1$ and
$\tilde x = x$.

**The last step.** k-diffusion's and diffusers' grids end at $s = 0$, and their step to 0 is
an Euler step, $\tilde x \leftarrow \tilde x - s\,(\tilde x - D)/s = D$: exactly Tweedie's
denoiser. sdelab's grids end at ``eps`` > 0, where every step here is a full step of its
method; ``sample(..., denoise=True)`` then adds that final Euler step to $s = 0$. So
``sample(sde, score, Heun(), ..., schedule=Times(ts), eps=ts[-1], denoise=True)`` on the
nonzero noise levels ``ts`` of a diffusers scheduler is that scheduler's whole loop.

**Stage levels outside the SDE.** A stage whose noise level lies outside the SDE's range
(above $s(T)$, or below $s(0) > 0$ of a `sdelab.DiscreteVPSDE`'s first training step, which
the ancestral methods' $s_{\downarrow}$ can reach on the last step) is evaluated at the
nearest end of the range, and the step uses that end's level (`level`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sde.base import SDE
from ._exp import Coeffs, coeffs, data_prediction, require_linear
from .grid import GridSolver, Step
from .pc import gaussian_noise

__all__ = [
    "DPM2",
    "DPM2Ancestral",
    "DPMpp2SAncestral",
    "Euler",
    "EulerAncestral",
    "Heun",
    "KarrasSolver",
    "StepPlan",
    "ancestral_split",
    "check_eta",
    "heun_correct",
    "heun_predict",
    "karras_derivative",
    "level",
]


# --- shared by the family (and by `sdelab.solvers.edm` / `sdelab.solvers.lms`) -------------
def level(sde, lam: float) -> Coeffs:
    r"""`Coeffs` at the time whose half log-SNR is ``lam`` ($s = e^{-\lambda}$), the time
    clamped to $[0, T]$ (`LinearSDE.t_from_log_snr`; Python floats only)."""
    t = float(sde.t_from_log_snr(lam))
    return coeffs(sde, min(max(t, 0.0), sde.T))


def karras_derivative(score, xs: Tensor, c: Coeffs, x: Tensor | None = None) -> Tensor:
    r"""$\mathrm d\tilde x/\mathrm ds = (\tilde x - D(m\tilde x, t))/s$ (Karras et al. 2022,
    eq. 4) at the scaled state ``xs`` $= \tilde x$: one score evaluation. ``x`` $= m\tilde x$
    may be passed when it is already at hand."""
    d = data_prediction(score, xs * c.m if x is None else x, c)
    return (xs - d) / c.nsr


def ancestral_split(s: float, s_next: float, eta: float) -> tuple[float, float]:
    r"""The ancestral step from $s$ to $s' < s$ split into a deterministic step down to
    $s_\downarrow$ and fresh noise of std $s_\uparrow$ (the DDIM posterior, Song et al. 2021a,
    eq. 16, in the VE form of Karras et al. 2022; k-diffusion's ``get_ancestral_step``):

    $$ s_\uparrow = \min\Big(s',\ \eta\, s'\sqrt{1 - s'^2/s^2}\Big), \qquad
       s_\downarrow = \sqrt{s'^2 - s_\uparrow^2}, $$

    so $s_\downarrow^2 + s_\uparrow^2 = s'^2$; $\eta = 1$ is DDPM's posterior variance,
    $\eta = 0$ the deterministic step ($s_\downarrow = s'$)."""
    if eta == 0.0:
        return s_next, 0.0
    up = min(s_next, eta * s_next * math.sqrt(max(1.0 - (s_next / s) ** 2, 0.0)))
    return math.sqrt(max(s_next * s_next - up * up, 0.0)), up


def check_eta(eta: float) -> None:
    """Raise unless ``eta`` is a finite number >= 0."""
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not eta >= 0:
        raise ValueError(
            f"eta must be a finite number >= 0 (0: deterministic, 1: ancestral), got {eta!r}"
        )
    if not math.isfinite(eta):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")


def heun_predict(xs: Tensor, d: Tensor, h: float) -> Tensor:
    r"""Heun's predictor (Karras et al. 2022, Algorithm 1, line 5): $\tilde x' = \tilde x + h\,d$,
    $h = s' - s$ (an Euler step)."""
    return xs + h * d


def heun_correct(xs: Tensor, d: Tensor, d2: Tensor, h: float) -> Tensor:
    r"""Heun's corrector (Karras et al. 2022, Algorithm 1, line 8):
    $\tilde x + h\,\tfrac12(d + d')$ with the slope $d'$ at the predictor."""
    return xs + h * ((d + d2) / 2)


def heun_step(score, xs: Tensor, c: Coeffs, cn: Coeffs, x: Tensor | None = None) -> Tensor:
    r"""Heun's method (explicit trapezoidal rule) from $s$ to $s'$ in the scaled state
    (Karras et al. 2022, Algorithm 1, lines 5-8): two score evaluations,

    $$ d = \frac{\tilde x - D(\tilde x, s)}{s}, \quad \tilde x' = \tilde x + (s' - s)\,d, \quad
       \tilde x \leftarrow \tilde x + (s' - s)\,\tfrac12\Big(d + \frac{\tilde x' - D(\tilde x', s')}{s'}\Big). $$
    """
    h = cn.nsr - c.nsr
    d = karras_derivative(score, xs, c, x)
    d2 = karras_derivative(score, heun_predict(xs, d, h), cn)
    return heun_correct(xs, d, d2, h)


@dataclass(frozen=True, slots=True)
class StepPlan:
    r"""The Python floats of one step of a Karras-family method in the scaled state, computed
    once per grid step (`KarrasSolver.plan`) and read by `KarrasSolver.stage_input` and
    `KarrasSolver.finish`: the same numbers serve `sdelab.sample` and the diffusers-style
    scheduler classes, which call the stages one model output at a time.

    Attributes:
        levels: the `Coeffs` of the score evaluations, the step's start first.
        weights: the step sizes in $s$ of the method's updates (see each method).
        std: $s_\uparrow$, the std of the fresh noise added at the end (0: none).
    """

    levels: tuple[Coeffs, ...]
    weights: tuple[float, ...]
    std: float = 0.0


class KarrasSolver(GridSolver):
    r"""A step of the family in the scaled state, as stages: `plan` fixes the levels and
    weights (floats), the slope $d_0$ at the start is evaluated, then for every further level
    `stage_input` gives the point where the next slope is evaluated, and `finish` combines the
    slopes (plus any fresh noise) into $\tilde x$ at the step's end. `scaled_step` runs the
    stages with the score; `step` does the scaling $\tilde x = x/m$ and back."""

    order: float | None = None
    stochastic = False

    def plan(self, sde: SDE, c: Coeffs, cn: Coeffs, step: Step) -> StepPlan:
        """The levels and weights of the step from ``c`` to ``cn``."""
        raise NotImplementedError

    def stage_input(self, plan: StepPlan, xs: Tensor, slopes: list[Tensor]) -> Tensor:
        r"""The input of stage ``len(slopes)``: by default the Euler step
        $\tilde x + w_{k-1} d_{k-1}$ with the latest slope."""
        return xs + plan.weights[len(slopes) - 1] * slopes[-1]

    def finish(
        self,
        plan: StepPlan,
        xs: Tensor,
        slopes: list[Tensor],
        generator: torch.Generator | None,
        noise: Tensor | None = None,
    ) -> Tensor:
        r"""$\tilde x$ at the step's end: by default $\tilde x + w_{\mathrm{last}}\,
        d_{\mathrm{last}}$, then $s_\uparrow z$ where ``plan.std`` > 0, with $z$ drawn from
        ``generator`` or given as ``noise`` (a standard normal draw shaped like ``xs``)."""
        return _add_noise(xs + plan.weights[-1] * slopes[-1], plan.std, generator, noise)

    def scaled_step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        xs: Tensor,
        c: Coeffs,
        cn: Coeffs,
        step: Step,
        generator: torch.Generator | None,
    ) -> Tensor:
        r"""$\tilde x$ at ``cn`` from ``xs`` $= \tilde x$ (and ``x`` $= m\tilde x$) at ``c``:
        the stages of `plan` with the slopes $(\tilde x - D)/s$ of ``score``."""
        plan = self.plan(sde, c, cn, step)
        slopes = [karras_derivative(score, xs, plan.levels[0], x)]
        for lv in plan.levels[1:]:
            slopes.append(karras_derivative(score, self.stage_input(plan, xs, slopes), lv))
        return self.finish(plan, xs, slopes, generator)

    def init(self, sde: SDE, x: Tensor, times: list[float]) -> None:
        require_linear(sde, type(self).__name__)

    def step(self, sde: SDE, score, x: Tensor, step: Step, state, generator):
        c, cn = coeffs(sde, step.t), coeffs(sde, step.t_next)
        xs = self.scaled_step(sde, score, x, x / c.m, c, cn, step, generator)
        return xs * cn.m, state


def _midpoint_plan(sde, c: Coeffs, s_to: float) -> tuple[tuple[Coeffs, ...], tuple[float, ...]]:
    r"""DPM2's update to $s_{\mathrm{to}}$: an Euler half step to the midpoint in $\log s$,
    $s_{\mathrm{mid}} = \sqrt{s\,s_{\mathrm{to}}}$, and the full step with the slope there:
    levels $(s, s_{\mathrm{mid}})$, weights $(s_{\mathrm{mid}} - s,\ s_{\mathrm{to}} - s)$."""
    mid = level(sde, 0.5 * (c.lam - math.log(s_to)))
    return (c, mid), (mid.nsr - c.nsr, s_to - c.nsr)


def _add_noise(xs: Tensor, std: float, generator, noise: Tensor | None = None) -> Tensor:
    if std == 0.0:
        return xs
    if noise is None:
        return xs + gaussian_noise(xs, generator, std)
    return torch.add(xs, noise, alpha=std)


@dataclass(frozen=True)
class Euler(KarrasSolver):
    r"""Euler's method on the probability-flow ODE in the noise-to-signal ratio (Karras et al.
    2022, eq. 4 and Algorithm 1 without the correction; k-diffusion's ``sample_euler``,
    diffusers' ``EulerDiscreteScheduler``):

    $$ \tilde x_{i+1} = \tilde x_i + (s_{i+1} - s_i)\,\frac{\tilde x_i - D(x_i, t_i)}{s_i},
       \qquad \tilde x = x/m(t),\ s = \sigma/m. $$

    In $\lambda$ this is exactly DDIM (eta = 0, Song et al. 2021a): $\tilde x_{i+1} = D +
    s_{i+1}\hat\epsilon$. One score evaluation per step; order 1.
    """

    order = 1.0
    nfe_per_step = 1

    def plan(self, sde, c, cn, step):
        return StepPlan((c,), (cn.nsr - c.nsr,))


@dataclass(frozen=True)
class Heun(KarrasSolver):
    r"""Heun's second-order method on the probability-flow ODE in $s$ (Karras et al. 2022,
    Algorithm 1; k-diffusion's ``sample_heun``, diffusers' ``HeunDiscreteScheduler``):

    $$ d_i = \frac{\tilde x_i - D(x_i, t_i)}{s_i}, \quad
       \tilde x' = \tilde x_i + (s_{i+1} - s_i)\,d_i, \quad
       \tilde x_{i+1} = \tilde x_i + (s_{i+1} - s_i)\,\frac{d_i + d'}{2},
       \quad d' = \frac{\tilde x' - D(m_{i+1}\tilde x', t_{i+1})}{s_{i+1}}. $$

    Algorithm 1 skips the correction only on a step to $s = 0$; sdelab's grids end at
    ``eps`` > 0, so every step here is a Heun step (2 score evaluations) and
    ``denoise=True`` adds the Euler step to 0 that diffusers takes last (see the module docs).
    Order 2.
    """

    order = 2.0
    nfe_per_step = 2

    def plan(self, sde, c, cn, step):
        return StepPlan((c, cn), (cn.nsr - c.nsr,))

    def stage_input(self, plan, xs, slopes):
        return heun_predict(xs, slopes[0], plan.weights[0])

    def finish(self, plan, xs, slopes, generator, noise=None):
        return heun_correct(xs, slopes[0], slopes[1], plan.weights[0])


@dataclass(frozen=True)
class DPM2(KarrasSolver):
    r"""k-diffusion's DPM2 (``sample_dpm_2``, diffusers' ``KDPM2DiscreteScheduler``): the
    midpoint method with the midpoint taken in $\log s$ (Karras et al. 2022, App. D.2 / Lu et
    al. 2022a, DPM-Solver-2 in the VE form):

    $$ s_{\mathrm{mid}} = \sqrt{s_i s_{i+1}}, \quad
       \tilde x' = \tilde x_i + (s_{\mathrm{mid}} - s_i)\,d_i, \quad
       \tilde x_{i+1} = \tilde x_i + (s_{i+1} - s_i)\,
       \frac{\tilde x' - D(m_{\mathrm{mid}}\tilde x', t_{\mathrm{mid}})}{s_{\mathrm{mid}}}. $$

    Two score evaluations per step, order 2 (the midpoint in $\log s$ differs from the
    midpoint in $s$ by $O(h^2)$). As for `Heun`, the step to $s = 0$ is ``denoise=True``.
    """

    order = 2.0
    nfe_per_step = 2

    def plan(self, sde, c, cn, step):
        return StepPlan(*_midpoint_plan(sde, c, cn.nsr))


@dataclass(frozen=True)
class _Ancestral(KarrasSolver):
    r"""Shared by the ancestral variants: the ``eta`` option, the split into a deterministic
    step down to $s_\downarrow$ (`down_plan`; Euler where $s_\downarrow = 0$) and fresh noise
    of std $s_\uparrow$, and the deterministic limit ``eta=0`` (order ``_order``)."""

    eta: float = 1.0
    _order = 1.0

    def __post_init__(self) -> None:
        check_eta(self.eta)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.eta > 0

    @property
    def order(self) -> float | None:  # type: ignore[override]
        return self._order if self.eta == 0 else None

    @property
    def weak_order(self) -> float | None:  # type: ignore[override]
        return 1.0 if self.eta > 0 else None

    def plan(self, sde, c, cn, step):
        down, up = ancestral_split(c.nsr, cn.nsr, self.eta)
        if down == 0.0:
            return StepPlan((c,), (down - c.nsr,), up)
        return StepPlan(*self.down_plan(sde, c, down), up)

    def down_plan(
        self, sde, c: Coeffs, down: float
    ) -> tuple[tuple[Coeffs, ...], tuple[float, ...]]:
        r"""The levels and weights of the deterministic part, down to $s_\downarrow > 0$."""
        raise NotImplementedError


@dataclass(frozen=True)
class EulerAncestral(_Ancestral):
    r"""Euler ancestral ("Euler a"; k-diffusion's ``sample_euler_ancestral``, diffusers'
    ``EulerAncestralDiscreteScheduler``): an Euler step down to $s_\downarrow$, then fresh
    noise of std $s_\uparrow$ (`ancestral_split`):

    $$ \tilde x_{i+1} = \tilde x_i + (s_\downarrow - s_i)\,\frac{\tilde x_i - D(x_i, t_i)}{s_i}
       + s_\uparrow z, \qquad z \sim \mathcal N(0, I). $$

    Since $\tilde x_i = D + s_i\hat\epsilon$ this is $D + s_\downarrow\hat\epsilon + s_\uparrow
    z$: DDIM with its $\eta$ (Song et al. 2021a, eq. 16) in the VE form, so ``eta=1`` is
    DDPM's ancestral sampler and ``eta=0`` is `Euler`. One score evaluation and one noise
    draw per step (after the evaluation); weak order 1.

    Args:
        eta: $\eta \ge 0$, the scale of the fresh noise (default 1).
    """

    nfe_per_step = 1

    def down_plan(self, sde, c, down):
        return (c,), (down - c.nsr,)


@dataclass(frozen=True)
class DPM2Ancestral(_Ancestral):
    r"""DPM2 ancestral ("DPM2 a"; k-diffusion's ``sample_dpm_2_ancestral``, diffusers'
    ``KDPM2AncestralDiscreteScheduler``): the `DPM2` step down to $s_\downarrow$ (midpoint at
    $\sqrt{s_i s_\downarrow}$), then fresh noise of std $s_\uparrow$ (`ancestral_split`):

    $$ \tilde x' = \tilde x_i + (s_{\mathrm{mid}} - s_i)\,d_i, \quad
       \tilde x_{i+1} = \tilde x_i + (s_\downarrow - s_i)\,d(\tilde x', s_{\mathrm{mid}})
       + s_\uparrow z. $$

    Two score evaluations, then one noise draw, per step; weak order 1 (the split into a
    deterministic step and fresh noise is first order in distribution). ``eta=0`` is `DPM2`.

    Args:
        eta: $\eta \ge 0$ (default 1).
    """

    nfe_per_step = 2
    _order = 2.0

    def down_plan(self, sde, c, down):
        return _midpoint_plan(sde, c, down)


@dataclass(frozen=True)
class DPMpp2SAncestral(_Ancestral):
    r"""DPM-Solver++(2S) ancestral ("DPM++ 2S a"; k-diffusion's ``sample_dpmpp_2s_ancestral``,
    no diffusers counterpart): the single-step second-order DPM-Solver++ (Lu et al. 2022b,
    Algorithm 1, $r = \tfrac12$) in data prediction down to $s_\downarrow$, then fresh noise of
    std $s_\uparrow$ (`ancestral_split`). In the VE form ($\alpha = 1$, $\sigma = s$,
    $\lambda = -\log s$), with $h = \lambda_\downarrow - \lambda_i$ and the stage at
    $\lambda_i + r h$:

    $$ u = e^{-rh}\,\tilde x_i - (e^{-rh} - 1)\,D(x_i, t_i), \qquad
       \tilde x_{i+1} = e^{-h}\,\tilde x_i - (e^{-h} - 1)\Big[\big(1 - \tfrac1{2r}\big)D(x_i, t_i)
       + \tfrac1{2r}D(u, \lambda_i + rh)\Big] + s_\uparrow z. $$

    Two score evaluations, then one noise draw, per step. ``eta=0`` is the deterministic
    DPM-Solver++(2S), order 2; with noise, weak order 1. ($r$ is $\tfrac12$ up to rounding;
    it is computed from the stage's actual level, which differs only where `level` clamps.)

    Args:
        eta: $\eta \ge 0$ (default 1).
    """

    nfe_per_step = 2
    _order = 2.0

    def scaled_step(self, sde, score, x, xs, c, cn, step, generator):
        down, up = ancestral_split(c.nsr, cn.nsr, self.eta)
        if down == 0.0:  # Euler to s = 0
            xs = xs + (down - c.nsr) * karras_derivative(score, xs, c, x)
        else:
            xs = self.down_step(sde, score, x, xs, c, down)
        return _add_noise(xs, up, generator)

    def down_step(self, sde, score, x, xs, c, down):
        r"""The DPM-Solver++(2S) step down to $s_\downarrow > 0$ (two data predictions)."""
        h = -math.log(down) - c.lam
        mid = level(sde, c.lam + 0.5 * h)
        rh = mid.lam - c.lam
        d = data_prediction(score, x, c)
        u = math.exp(-rh) * xs - math.expm1(-rh) * d
        d2 = data_prediction(score, u * mid.m, mid)
        w = h / (2.0 * rh)  # 1/(2r)
        if w != 1.0:
            d2 = (1.0 - w) * d + w * d2
        return math.exp(-h) * xs - math.expm1(-h) * d2
