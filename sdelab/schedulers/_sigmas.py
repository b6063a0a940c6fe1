r"""The sigma side of diffusers' Karras-style schedulers (Euler, Heun, LMS, KDPM2, ...).

These schedulers keep their sample in the **scaled state** of the VE view of a discrete VP
model: with the training table $\bar\alpha_k$ and its noise-to-signal ratios

$$ s_k = \sqrt{(1 - \bar\alpha_k)/\bar\alpha_k}, \qquad
   x_\sigma = \frac{x_{\mathrm{vp}}}{m} = x_{\mathrm{vp}}\sqrt{s^2 + 1}, $$

(Karras et al. 2022, eq. 4 with $s(t) = \sigma/m$), so ``scale_model_input`` divides by
$\sqrt{s^2 + 1}$ to hand the model its VP input back and ``init_noise_sigma`` is $s_{\max}$.
sdelab's solvers run on the VP state of a `sdelab.DiscreteVPSDE` at the time
$t = $ ``sde.t_from_log_snr(-log s)`` whose noise-to-signal ratio is that $s$; this module holds
the diffusers-format pieces around them:

* the level table diffusers computes (`inference_sigmas`): the training steps of
  ``timestep_spacing`` with ``steps_offset``, $s$ interpolated linearly in the training step
  (``interpolation_type="linear"``), optionally replaced by Karras's $\rho = 7$ ramp
  (Karras et al. 2022, eq. 5), a geometric ramp (``use_exponential_sigmas``) or the
  Beta(0.6, 0.6) quantile ramp of Lee et al. 2024 (``use_beta_sigmas``), with the
  timesteps of those levels from the log-linear inverse of the table (`sigma_to_timestep`);
* `SigmaScheduler`: the stateful adapter that maps diffusers' ``step`` calls onto the stages
  of one sdelab solver step (`sdelab.solvers.karras.StepPlan`, precomputed in
  ``set_timesteps``), including the two-calls-per-step protocol of the second-order classes
  (see `SigmaScheduler.step`).

All tables are computed as diffusers computes them (float32 values, the same formulas), so
``timesteps`` and ``sigmas`` are equal to diffusers'.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import _short, check_int
from ..sde.discrete import DiscreteVPSDE
from ..solvers._exp import Coeffs, coeffs, data_prediction
from ..solvers.grid import GridSolver, Step
from ..solvers.karras import KarrasSolver
from ._config import ConfigMixin
from ._outputs import BaseOutput
from ._random import check_generator, randn

__all__ = [
    "SigmaScheduler",
    "inference_sigmas",
    "sigma_to_timestep",
    "spacing_timesteps",
    "training_sigmas",
]

_SPACINGS = ("linspace", "leading", "trailing")


# --- the tables -----------------------------------------------------------------------------
def training_sigmas(alphas_cumprod: Tensor) -> np.ndarray:
    r"""$s_k = \sqrt{(1 - \bar\alpha_k)/\bar\alpha_k}$ in the table's float32 arithmetic."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).numpy()


def spacing_timesteps(
    spacing: str, n: int, num_train: int, steps_offset: int, dtype: type = np.float32
) -> np.ndarray:
    r"""diffusers' decreasing training steps for ``n`` inference steps (float32):
    ``"linspace"`` $\mathrm{linspace}(0, N-1, n)$; ``"leading"``
    $k\lfloor N/n\rfloor + \mathrm{offset}$; ``"trailing"`` $\mathrm{round}(N - kN/n) - 1$
    (Lin et al. 2024, Table 2), in ``dtype`` (float64 for `DPMSolverSDEScheduler`)."""
    if spacing == "linspace":
        return np.linspace(0, num_train - 1, n, dtype=dtype)[::-1].copy()
    if spacing == "leading":
        ratio = num_train // n
        ts = (np.arange(0, n) * ratio).round()[::-1].copy().astype(dtype)
        return ts + steps_offset
    ratio = num_train / n
    return np.arange(num_train, 0, -ratio).round().copy().astype(dtype) - 1


def sigma_to_timestep(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    r"""The fractional training step of the levels ``sigma``: $\log s$ interpolated linearly
    between the table's $\log s_k$ (the inverse of `DiscreteVPSDE.log_nsr` on diffusers'
    float32 table), $k + w$ with $w = (\log s_k - \log\sigma)/(\log s_k - \log s_{k+1})$
    clipped to $[0, 1]$."""
    sigma = np.asarray(sigma)  # in its own precision, as diffusers (float32 for tensors)
    ls = np.log(np.maximum(sigma, 1e-10))
    low = np.clip(np.searchsorted(log_sigmas, ls, side="right") - 1, 0, log_sigmas.shape[0] - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = np.clip((lo - ls) / (lo - hi), 0, 1)
    if ls.dtype == np.float32:  # diffusers' tensor path: float32 throughout
        low = low.astype(np.float32)
    return (1 - w) * low + w * (low + 1)


def karras_ramp(s_min: float, s_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    r"""Karras et al. 2022, eq. 5: $\big(s_{\max}^{1/\rho} + \tfrac{i}{n-1}(s_{\min}^{1/\rho}
    - s_{\max}^{1/\rho})\big)^\rho$ (`sdelab.Karras`)."""
    ramp = np.linspace(0, 1, n)
    return (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho


def inference_sigmas(
    table: np.ndarray,
    timesteps: np.ndarray,
    ramp: str | None,
    s_min: float | None = None,
    s_max: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""``(sigmas, timesteps)`` of diffusers' ``set_timesteps`` before the final level: the
    table interpolated linearly at ``timesteps``, or a ``ramp`` (``"karras"``,
    ``"exponential"``: $\exp(\mathrm{linspace}(\log s_{\max}, \log s_{\min}))$ as
    `sdelab.UniformLogSNR`, ``"beta"``: $s_{\min} + F^{-1}_{B(0.6, 0.6)}(1 - u)(s_{\max} -
    s_{\min})$) between ``s_min`` / ``s_max`` (default: the interpolated ends) with the
    timesteps of its levels (`sigma_to_timestep`)."""
    sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
    if ramp is None:
        return sigmas, timesteps
    n = len(timesteps)
    lo = float(sigmas[-1]) if s_min is None else s_min
    hi = float(sigmas[0]) if s_max is None else s_max
    if ramp == "karras":
        sigmas = karras_ramp(lo, hi, n)
    elif ramp == "exponential":
        sigmas = np.exp(np.linspace(math.log(hi), math.log(lo), n))
    else:
        import scipy.stats

        ppf = scipy.stats.beta.ppf(1 - np.linspace(0, 1, n), 0.6, 0.6)
        sigmas = np.array([lo + p * (hi - lo) for p in ppf])
    return sigmas, sigma_to_timestep(sigmas, np.log(table))


# --- the adapter ----------------------------------------------------------------------------
class _Probe(Exception):
    """Raised by `_ModelOutputs` when the solver asks for a model output this call lacks."""

    def __init__(self, x: Tensor, t: float) -> None:
        self.x, self.t = x, t


class _ModelOutputs:
    """The score callable handed to the solver: the model outputs of this diffusers step (its
    stages so far), converted to scores at the point the solver asks about; a request beyond
    them raises `_Probe` with the point (the next stage's input)."""

    __slots__ = ("k", "outputs", "owner")

    def __init__(self, owner: SigmaScheduler, outputs: list[Tensor]) -> None:
        self.owner, self.outputs, self.k = owner, outputs, 0

    def __call__(self, x: Tensor, t: float) -> Tensor:
        if self.k == len(self.outputs):
            raise _Probe(x, t)
        out = self.outputs[self.k]
        self.k += 1
        return self.owner._score(out, x, self.owner._at(t))


class SigmaScheduler(ConfigMixin):
    r"""Shared by the sigma-family adapters: the configuration checks, the level table, the
    model input scaling, diffusers' step indexing and the mapping of ``step`` calls onto the
    stages of one sdelab solver step on `DiscreteVPSDE.from_diffusers(config)`.

    A subclass sets ``solver`` (the sdelab solver), ``stages`` (diffusers ``step`` calls per
    level: 1, or 2 for the second-order classes) and lays the tables out in `_layout`.
    """

    order = 1
    stages = 1
    _prediction_types: tuple[str, ...] = ("epsilon", "sample", "v_prediction")
    solver: GridSolver
    _timestep_dtype: type = np.float32

    # --- construction -------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self._config
        for key, allowed in (
            ("prediction_type", self._prediction_types),
            ("timestep_spacing", _SPACINGS),
            ("interpolation_type", ("linear",)),
            ("timestep_type", ("discrete", "continuous")),
            ("final_sigmas_type", ("zero", "sigma_min")),
            ("rescale_betas_zero_snr", (False,)),
            ("clip_sample", (False, True)),
        ):
            if key in cfg and cfg[key] not in allowed:
                raise ValueError(
                    f"{key} must be one of {allowed} for sdelab's {type(self).__name__}, got "
                    f"{cfg[key]!r}"
                    + (
                        " (log-linear interpolation is not implemented)"
                        if key == "interpolation_type"
                        else ""
                    )
                )
        ramps = [
            k
            for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
            if cfg.get(k)
        ]
        if len(ramps) > 1:
            raise ValueError(
                f"at most one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas may be True, got {ramps}"
            )
        self._ramp = ramps[0][4:-7] if ramps else None
        self.sde = DiscreteVPSDE.from_diffusers(cfg)
        self.alphas_cumprod = self.sde.alphas_cumprod.to(torch.float32)
        self._table = training_sigmas(self.alphas_cumprod)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.from_numpy(np.arange(len(self._table))[::-1].astype(np.float32))
        self.sigmas = torch.from_numpy(
            np.concatenate([self._table[::-1], [0.0]]).astype(np.float32)
        )
        self._levels: list[float] | None = None
        self._plans: list | None = None
        self._open: Tensor | None = None
        kind = cfg.get("prediction_type", "epsilon")
        self._eps_slope = kind == "epsilon" and not cfg.get("clip_sample")
        self._step_index: int | None = None
        self._begin_index: int | None = None

    # --- diffusers' indexing ------------------------------------------------------------
    @property
    def step_index(self) -> int | None:
        """The number of ``step`` calls since `set_timesteps` (``None`` before the first)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first index, when a pipeline set it with `set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]`` (image-to-image pipelines)."""
        self._begin_index = check_int("begin_index", begin_index, minimum=0)

    @property
    def init_noise_sigma(self) -> Tensor:
        r"""The std of the starting sample: $s_{\max}$, or $\sqrt{s_{\max}^2 + 1}$ for
        ``timestep_spacing="leading"`` (as diffusers)."""
        top = self.sigmas.max()
        if self._config["timestep_spacing"] in ("linspace", "trailing"):
            return top
        return (top**2 + 1) ** 0.5

    def index_for_timestep(
        self, timestep: float | Tensor, schedule_timesteps: Tensor | None = None
    ) -> int:
        """The index of ``timestep`` in ``timesteps`` (the second of repeated ones, as
        diffusers); a timestep not on the grid raises."""
        schedule = self.timesteps if schedule_timesteps is None else schedule_timesteps
        hits = (schedule == timestep).nonzero()
        if len(hits) == 0:
            raise ValueError(
                f"timestep must be one of scheduler.timesteps {schedule.tolist()}, got "
                f"{_short(timestep)}"
            )
        return int(hits[1 if len(hits) > 1 else 0])

    def _init_step_index(self, timestep: float | Tensor) -> None:
        if self._begin_index is None:
            if isinstance(timestep, Tensor):
                timestep = timestep.to(self.timesteps.device)
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    def __len__(self) -> int:
        return self._config["num_train_timesteps"]

    # --- set_timesteps ------------------------------------------------------------------
    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the grid of ``num_inference_steps`` levels (diffusers' tables, equal values).

        Custom ``timesteps=`` / ``sigmas=`` lists are not supported (ValueError)."""
        for k, v in kwargs.items():
            if v is not None:
                raise ValueError(
                    f"{k}= (a custom schedule) is not supported by sdelab's "
                    f"{type(self).__name__}; pass num_inference_steps, got {k}={_short(v)}"
                )
        cfg = self._config
        n = check_int("num_inference_steps", num_inference_steps)
        self.num_inference_steps = n
        ts = spacing_timesteps(
            cfg["timestep_spacing"],
            n,
            cfg["num_train_timesteps"],
            cfg["steps_offset"],
            self._timestep_dtype,
        )
        sigmas, ts = inference_sigmas(
            self._table, ts, self._ramp, cfg.get("sigma_min"), cfg.get("sigma_max")
        )
        last = 0.0
        if cfg.get("final_sigmas_type", "zero") == "sigma_min":
            last = float(self._table[0])
        self._raw_sigmas = sigmas
        sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
        levels = [float(v) for v in sigmas]
        top, bottom = float(self._table[-1]), float(self._table[0])
        if not levels[0] <= top * (1 + 1e-6) or not min(v for v in levels if v > 0) >= bottom * (
            1 - 1e-6
        ):
            raise ValueError(
                f"sigma_min / sigma_max must lie within the model's noise levels [{bottom!r}, {top!r}], "
                f"got levels from {min(levels)!r} to {levels[0]!r}"
            )
        self._levels = levels
        self._times = [self._time_of(v) for v in levels if v > 0]
        self._coeffs = [coeffs(self.sde, t) for t in self._times]
        self._cache: dict[float, Coeffs] = {c.t: c for c in self._coeffs}
        self._layout(torch.from_numpy(sigmas), np.asarray(ts), device)
        self._input_levels = self._input_sigmas.tolist()
        # sqrt(s^2 + 1) of every call, in float32 as diffusers computes it (equal inputs)
        self._input_div = ((self._input_sigmas**2 + 1) ** 0.5).tolist()
        count = len(self._times) - 1
        self._plans = None
        if isinstance(self.solver, KarrasSolver):  # the solver's floats of every step, once
            self._plans = [
                self.solver.plan(
                    self.sde,
                    c,
                    cn,
                    Step(j, count, c.t, cn.t, c.t - cn.t),
                )
                for j, (c, cn) in enumerate(zip(self._coeffs[:-1], self._coeffs[1:], strict=True))
            ]
        self._open = None
        self._step_index = None
        self._begin_index = None
        self._state: Any = None
        self._started = False
        self._pending: list[Tensor] = []

    def _time_of(self, s: float) -> float:
        """sdelab's time whose noise-to-signal ratio is ``s``, clamped to [0, T]."""
        return min(max(float(self.sde.t_from_log_snr(-math.log(s))), 0.0), self.sde.T)

    def _at(self, t: float) -> Coeffs:
        c = self._cache.get(t)
        if c is None:
            c = self._cache[t] = coeffs(self.sde, t)
        return c

    def _layout(self, sigmas: Tensor, timesteps: np.ndarray, device) -> None:
        """Lay the tables out as diffusers does: one call per level (the default)."""
        self.sigmas = sigmas
        self.timesteps = self._reported(
            torch.from_numpy(timesteps.astype(np.float32)), sigmas, device
        )
        self._input_sigmas = sigmas[:-1]

    def _reported(self, timesteps: Tensor, sigmas: Tensor, device) -> Tensor:
        if (
            self._config.get("timestep_type") == "continuous"
            and self._config["prediction_type"] == "v_prediction"
        ):
            timesteps = torch.Tensor([0.25 * s.log() for s in sigmas[:-1]])
        return timesteps.to(device=device)

    # --- the model's input and output ---------------------------------------------------
    def scale_model_input(self, sample: Tensor, timestep: float | Tensor) -> Tensor:
        r"""$x_\sigma / \sqrt{s^2 + 1}$: the model's (VP) input at the current level."""
        self._require_grid()
        if self._step_index is None:
            self._init_step_index(timestep)
        return sample / self._input_div[self._step_index]

    def _score(self, out: Tensor, x: Tensor, c: Coeffs) -> Tensor:
        r"""The score at the VP state ``x`` from a model output: $-\hat\epsilon/\sigma$,
        $-x - (m/\sigma)v$ (v-prediction) or $(m D - x)/\sigma^2$ (sample), with $D$ clamped
        for ``clip_sample``."""
        kind = self._config["prediction_type"]
        if kind == "epsilon" and not self._config.get("clip_sample"):
            return out * (-1.0 / c.sigma)
        if kind == "v_prediction":
            if not self._config.get("clip_sample"):
                return torch.add(x, out, alpha=c.m / c.sigma).neg_()
            d = torch.add(c.m * x, out, alpha=-c.sigma)
        elif kind == "epsilon":
            d = (x - c.sigma * out) / c.m
        else:
            d = out
        if self._config.get("clip_sample"):
            r = self._config["clip_sample_range"]
            d = d.clamp(-r, r)
        return (c.m * d - x) / (c.sigma * c.sigma)

    def _pred_original(self, out: Tensor, sample: Tensor, s: float) -> Tensor:
        """diffusers' ``pred_original_sample`` at the level ``s`` of this call."""
        kind = self._config["prediction_type"]
        if kind == "epsilon":
            d = torch.add(sample, out, alpha=-s)
        elif kind == "v_prediction":
            d = out * (-s / (s * s + 1) ** 0.5) + sample / (s * s + 1)
        else:
            d = out
        if self._config.get("clip_sample"):
            r = self._config["clip_sample_range"]
            d = d.clamp(-r, r)
        return d

    # --- step ---------------------------------------------------------------------------
    def _require_grid(self) -> None:
        if self._levels is None:
            raise RuntimeError(
                f"{type(self).__name__}: call set_timesteps(num_inference_steps) before "
                "scale_model_input / step"
            )

    def _check(self, model_output: Tensor, sample: Tensor) -> None:
        if not isinstance(sample, Tensor) or not sample.is_floating_point():
            raise TypeError(f"sample must be a floating-point tensor, got {_short(sample)}")
        if not isinstance(model_output, Tensor) or model_output.shape != sample.shape:
            got = (
                tuple(model_output.shape)
                if isinstance(model_output, Tensor)
                else type(model_output).__name__
            )
            raise ValueError(
                f"model_output must be a tensor shaped like sample {tuple(sample.shape)}, got {got}"
            )
        if model_output.dtype != sample.dtype:
            raise TypeError(
                f"model_output must have sample's dtype {sample.dtype}, got {model_output.dtype}"
            )
        if self._open is not None and sample.shape != self._open.shape:
            raise ValueError(
                f"sample must keep the shape {tuple(self._open.shape)} within a step, got "
                f"{tuple(sample.shape)}"
            )

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        r"""One diffusers ``step``: the sdelab solver's step from the current level to the
        next, on the VP state $x = x_\sigma/\sqrt{s^2 + 1}$.

        For the Karras-family solvers (`sdelab.solvers.karras.KarrasSolver`) `set_timesteps`
        computes every step's `StepPlan` once (the solver's own levels and weights, Python
        floats); a call then converts the model output into the slope
        $d = (\tilde x - D)/s$ (`_slope`) and hands it to the solver's
        `KarrasSolver.stage_input` (the next evaluation's input: diffusers' first-order
        prediction on the first of the two calls of a second-order class) or
        `KarrasSolver.finish` (the step's end, with its fresh noise drawn from ``generator``
        after the model calls). No tensor is read on the host and nothing is allocated beyond
        the update's own arithmetic. `LMSDiscreteScheduler` calls `sdelab.solvers.lms.lms_update`
        likewise. `DPMSolverSDEScheduler` replays `DPMSolver.step` with the model outputs it has
        (`_replay`; its noise generator is rewound between the two calls). The step to $s = 0$
        (``final_sigmas_type="zero"``) is the first-order step diffusers takes there: the data
        prediction $D$ (Tweedie's formula; sdelab's ``denoise=True``)."""
        self._require_grid()
        self._check(model_output, sample)
        check_generator(generator, sample.shape[0])
        if self._step_index is None:
            self._init_step_index(timestep)
        k = self._step_index
        if k >= len(self._input_sigmas):
            raise ValueError(
                f"step was called {k + 1} times after set_timesteps({self.num_inference_steps}); "
                f"the grid has {len(self._input_sigmas)} calls"
            )
        j, stage = divmod(k, self.stages)
        s = self._input_levels[k]
        pred = self._pred_original(model_output, sample, s)
        prev = self._advance(j, stage, model_output, sample, generator, pred, s)
        self._step_index = k + 1
        out = _SigmaOutput(prev, pred)
        return out if return_dict else out.to_tuple()

    def _slope(self, out: Tensor, sample: Tensor, pred: Tensor, s: float) -> Tensor:
        r"""The slope $d = (\tilde x - D)/s$ of the probability-flow ODE in $s$ at this call's
        input (`sdelab.solvers.karras.karras_derivative`) from the model output: for a noise
        prediction without clipping $D = \tilde x - s\hat\epsilon$, so $d = \hat\epsilon$ is
        the output itself; otherwise from this call's data prediction ``pred``."""
        if self._eps_slope:
            return out
        return (sample - pred) / s

    def _advance(
        self,
        j: int,
        stage: int,
        out: Tensor,
        sample: Tensor,
        generator,
        pred: Tensor,
        s: float,
    ) -> Tensor:
        r"""The scaled sample after call ``stage`` of level ``j``'s step. On the solver's
        `StepPlan` (precomputed floats): the next stage's input (`KarrasSolver.stage_input`)
        while slopes are missing, else the step's end (`KarrasSolver.finish`, with its fresh
        noise). The step to $s = 0$ is Tweedie's $D$ = ``pred`` (see `step`)."""
        if self._plans is None:
            return self._replay(j, stage, out, sample, generator)
        if self._levels[j + 1] == 0.0:
            return pred
        d = self._slope(out, sample, pred, s)
        plan = self._plans[j]
        if stage == 0:
            self._xs, self._slopes = sample, [d]
        else:
            self._slopes.append(d)
        if len(self._slopes) < len(plan.levels):
            self._open = sample
            return self.solver.stage_input(plan, self._xs, self._slopes)
        self._open = None
        if plan.std == 0.0:
            return self.solver.finish(plan, self._xs, self._slopes, None)
        # the fresh noise by diffusers' rules: on the generator's device, one draw per batch
        # element for a list of generators (sdelab._random.randn), then moved to the sample's
        z = randn(sample.shape, generator, sample.device, sample.dtype)
        return self.solver.finish(plan, self._xs, self._slopes, None, noise=z)

    def _replay(self, j: int, stage: int, out: Tensor, sample: Tensor, generator) -> Tensor:
        """The scaled sample after call ``stage`` of level ``j``'s step, for solvers without a
        `StepPlan` (`DPMSolverSDEScheduler`): the solver's step runs with the model outputs of
        this level so far and, when it asks for one more, returns that evaluation's input."""
        c = self._coeffs[j]
        if stage == 0:
            self._pending = [out]
            self._x = sample * c.m
        else:
            self._pending.append(out)
        self._open = sample
        if not self._started:
            self._state, self._started = self._init_state(), True
        if self._levels[j + 1] == 0.0:  # the last step, to s = 0
            return self._final_step(j, out, c)
        cn = self._coeffs[j + 1]
        step = Step(j, len(self._times) - 1, c.t, cn.t, c.t - cn.t)
        gen = self._generator(generator, stage)
        try:
            x_next, state = self.solver.step(
                self.sde, _ModelOutputs(self, self._pending), self._x, step, self._state, gen
            )
        except _Probe as p:
            return p.x / self._at(p.t).m
        self._state = state
        self._pending = []
        self._open = None
        return x_next / cn.m

    def _init_state(self) -> Any:
        return self.solver.init(self.sde, self._x, self._times)

    def _final_step(self, j: int, out: Tensor, c: Coeffs) -> Tensor:
        r"""The step from the last nonzero level to $s = 0$: the first-order (Euler) step there,
        $\tilde x - s\,(\tilde x - D)/s = D$, Tweedie's formula (sdelab's ``denoise=True``)."""
        return data_prediction(_ModelOutputs(self, [out]), self._x, c)

    def _generator(self, generator, stage: int):
        return generator

    # --- add_noise ----------------------------------------------------------------------
    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        r"""$x_0 + s\,z$ at the levels of ``timesteps`` (the scaled state's forward process)."""
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        schedule = self.timesteps.to(original_samples.device)
        timesteps = torch.as_tensor(timesteps).to(original_samples.device).reshape(-1)
        if self._begin_index is None:
            idx = [self.index_for_timestep(t, schedule) for t in timesteps]
        else:
            idx = [
                self._step_index if self._step_index is not None else self._begin_index
            ] * timesteps.shape[0]
        sigma = sigmas[idx].reshape(-1, *([1] * (original_samples.ndim - 1)))
        return original_samples + noise * sigma


from dataclasses import dataclass  # noqa: E402


@dataclass
class _SigmaOutput(BaseOutput):
    """What the sigma-family ``step`` returns (diffusers' ``EulerDiscreteSchedulerOutput`` and
    friends).

    Attributes:
        prev_sample: the sample at the next level (diffusers' scaled state).
        pred_original_sample: the data prediction $D$ of this call's model output.
    """

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None
