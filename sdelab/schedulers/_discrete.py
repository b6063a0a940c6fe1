r"""The shared base of diffusers' alpha-bar schedulers (DDIM, DDPM, DPM-Solver, UniPC, DEIS,
PNDM): the configuration checks, the time grid, diffusers' step indexing and the mapping of
each ``step`` call onto one step of an sdelab `GridSolver` on
`DiscreteVPSDE.from_diffusers(config)`.

These schedulers keep the sample in the **VP state** $x_t = m_t x_0 + \sigma_t \epsilon$ with
$m_t^2 = \bar\alpha_t$, so ``scale_model_input`` is the identity and ``init_noise_sigma`` is 1.
A training step $\tau$ (or a noise-to-signal level $s$ of the DPM-Solver family) is sdelab's time
$t = \tau/(N - 1)$ (or ``sde.t_from_log_snr(-log s)``), and a model output becomes the score the
solver asks for in one place, `AlphaBarScheduler._score`:

$$ \nabla\log p = -\frac{\hat\epsilon}{\sigma}\ (\text{epsilon}), \qquad
   -x - \frac{m}{\sigma}\,v\ (\text{v\_prediction}), \qquad
   \frac{m\,D - x}{\sigma^2}\ (\text{sample, or any clipped / thresholded } D). $$

The step to $\bar\alpha = 1$ ($\sigma = 0$, no sdelab time) is Tweedie's formula $D$ (sdelab's
``denoise=True``), the first-order step every one of these methods takes there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._checks import _short, check_int
from ..sde.discrete import DiscreteVPSDE
from ..solvers._exp import Coeffs, coeffs, data_prediction
from ..solvers.grid import GridSolver, Step
from ._config import ConfigMixin
from ._outputs import BaseOutput, SchedulerOutput
from ._random import check_generator
from ._sigmas import _ModelOutputs, _Probe

__all__ = ["AlphaBarScheduler", "DDIMSchedulerOutput", "alpha_bar_timesteps"]

_SPACINGS = ("linspace", "leading", "trailing")


@dataclass
class DDIMSchedulerOutput(BaseOutput):
    """What DDIM's and DDPM's ``step`` return (diffusers' ``DDIMSchedulerOutput`` /
    ``DDPMSchedulerOutput``).

    Attributes:
        prev_sample: the sample at the next level.
        pred_original_sample: the data prediction $D$ of this call's model output (clipped or
            thresholded when configured).
    """

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


def alpha_bar_timesteps(
    spacing: str, n: int, num_train: int, steps_offset: int, extra: int = 0
) -> np.ndarray:
    r"""diffusers' decreasing integer training steps (int64) for ``n`` inference steps:
    ``"linspace"`` $\mathrm{round}(\mathrm{linspace}(0, N-1, n + e))$, ``"leading"``
    $k\lfloor N/(n + e)\rfloor + \mathrm{offset}$, ``"trailing"`` $\mathrm{round}(N - kN/n) - 1$,
    with ``extra`` $e = 1$ for the DPM-Solver family (one more point, the lowest dropped)."""
    if spacing == "linspace":
        ts = np.linspace(0, num_train - 1, n + extra).round()[::-1]
        return ts[:n].copy().astype(np.int64)
    if spacing == "leading":
        ratio = num_train // (n + extra)
        ts = (np.arange(0, n + extra) * ratio).round()[::-1][:n].copy().astype(np.int64)
        return ts + steps_offset
    ratio = num_train / n
    return np.round(np.arange(num_train, 0, -ratio)).astype(np.int64) - 1


def threshold(d: Tensor, ratio: float, max_value: float) -> Tensor:
    r"""Dynamic thresholding (Saharia et al. 2022, Sec. 2.3): per sample, $q$ = the ``ratio``
    quantile of $|D|$ clamped to $[1, \texttt{max\_value}]$, then $D \leftarrow
    \mathrm{clamp}(D, -q, q)/q$."""
    dtype = d.dtype
    flat = d.reshape(d.shape[0], -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # quantile needs float32 / float64
    q = torch.quantile(flat.abs(), ratio, dim=1).clamp(1.0, max_value).unsqueeze(1)
    return (torch.minimum(torch.maximum(flat, -q), q) / q).reshape(d.shape).to(dtype)


class AlphaBarScheduler(ConfigMixin):
    r"""Shared by the alpha-bar adapters (see the module docs).

    A subclass sets ``solver`` (or overrides `_solver_for`), lists its config checks in
    ``_allowed``, and builds the call plan in `_plan`: per ``step`` call the coefficients of
    the sample's level and of the level the call steps to (``None``: $\sigma = 0$).
    """

    order = 1
    init_noise_sigma = 1.0
    solver: GridSolver
    _allowed: ClassVar[dict[str, tuple]] = {}
    _by_value = False  # DDIM / DDPM: the timestep itself picks the step (diffusers' rule)
    _output_cls: type = SchedulerOutput
    _extra_point = 0

    # --- construction -------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self._config
        allowed = {
            "prediction_type": ("epsilon", "sample", "v_prediction"),
            "timestep_spacing": _SPACINGS,
            "rescale_betas_zero_snr": (False,),
            "thresholding": (False, True),
            "clip_sample": (False, True),
            "variance_type": (None,),
            "use_flow_sigmas": (False,),
            "use_lu_lambdas": (False,),
            "use_dynamic_shifting": (False,),
            "final_sigmas_type": ("zero", "sigma_min"),
            **self._allowed,
        }
        for key, values in allowed.items():
            if key in cfg and cfg[key] not in values:
                raise ValueError(
                    f"{key} must be one of {values} for sdelab's {type(self).__name__}, got "
                    f"{cfg[key]!r}"
                )
        if cfg.get("lambda_min_clipped", -math.inf) != -math.inf:
            raise ValueError(
                "lambda_min_clipped must be -inf for sdelab's "
                f"{type(self).__name__} (clipping the grid is not supported), got "
                f"{cfg['lambda_min_clipped']!r}"
            )
        ramps = [
            k
            for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
            if cfg.get(k)
        ]
        if len(ramps) > 1:
            raise ValueError(
                "at most one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas may "
                f"be True, got {ramps}"
            )
        self._ramp = ramps[0][4:-7] if ramps else None
        self.sde = DiscreteVPSDE.from_diffusers(cfg)
        self.alphas_cumprod = self.sde.alphas_cumprod.to(torch.float32)
        ac = self.alphas_cumprod
        self.alphas = torch.cat([ac[:1], ac[1:] / ac[:-1]])
        self.betas = 1.0 - self.alphas
        n_train = cfg["num_train_timesteps"]
        self.num_inference_steps: int | None = None
        self.timesteps = torch.from_numpy(np.arange(0, n_train)[::-1].copy())
        self._calls: list | None = None
        self._counter: int | None = None
        self._begin_index: int | None = None
        self._state: Any = None

    def _clip(self) -> bool:
        return bool(self._config.get("thresholding") or self._config.get("clip_sample"))

    # --- the grid -----------------------------------------------------------------------
    def _time_of_step(self, tau: float) -> float:
        """sdelab's time of the training step ``tau``: $\\tau/(N - 1)$."""
        return min(max(tau / (self.sde.num_train_timesteps - 1), 0.0), self.sde.T)

    def _time_of_sigma(self, s: float) -> float:
        """sdelab's time whose noise-to-signal ratio is ``s``, clamped to [0, T]."""
        return min(max(float(self.sde.t_from_log_snr(-math.log(s))), 0.0), self.sde.T)

    def _at(self, t: float) -> Coeffs:
        c = self._cache.get(t)
        if c is None:
            c = self._cache[t] = coeffs(self.sde, t)
        return c

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the grid of ``num_inference_steps`` steps: diffusers' ``timesteps`` (equal
        values) and, per ``step`` call, the sdelab solver step it is.

        Custom ``timesteps=`` / ``sigmas=`` lists and ``mu=`` are not supported (ValueError)."""
        for k, v in kwargs.items():
            if v is not None:
                raise ValueError(
                    f"{k}= is not supported by sdelab's {type(self).__name__}; pass "
                    f"num_inference_steps, got {k}={_short(v)}"
                )
        n = check_int("num_inference_steps", num_inference_steps)
        n_train = self._config["num_train_timesteps"]
        if n > n_train:
            raise ValueError(
                f"num_inference_steps must be at most num_train_timesteps={n_train}, got {n}"
            )
        self.num_inference_steps = n
        self._cache: dict[float, Coeffs] = {}
        timesteps, calls = self._plan(n)
        self.timesteps = torch.as_tensor(timesteps).to(device)
        self._values = [float(v) for v in np.asarray(timesteps).tolist()]
        self._where: dict[float, int] = {}
        for i, v in enumerate(self._values):
            self._where.setdefault(v, i)
        count = sum(1 for c, nx in calls if nx is not None and c is not None)
        self._calls = []
        j = 0
        for c, nx in calls:
            step = None
            if nx is not None and c is not None:
                step = Step(j, count, c.t, nx.t, c.t - nx.t)
                j += 1
            self._calls.append((c, nx, step))
        self._counter = None
        self._begin_index = None
        self._state = None
        self._started = False
        self._pending: list[Tensor] = []

    def _plan(self, n: int) -> tuple[np.ndarray, list[tuple[Coeffs, Coeffs | None]]]:
        """``(timesteps, calls)``: per call the coefficients of its level and the next level."""
        raise NotImplementedError

    # --- diffusers' indexing ------------------------------------------------------------
    @property
    def step_index(self) -> int | None:
        """The number of ``step`` calls since `set_timesteps` (``None`` before the first)."""
        return self._counter

    @property
    def begin_index(self) -> int | None:
        """The first index, when a pipeline set it with `set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]`` (image-to-image pipelines)."""
        self._begin_index = check_int("begin_index", begin_index, minimum=0)

    def _value(self, timestep: float | Tensor) -> float | None:
        """The timestep as a float, or ``None`` where reading it would sync a device."""
        if isinstance(timestep, Tensor):
            if timestep.numel() != 1:
                raise ValueError(
                    f"timestep must be a single value (one of scheduler.timesteps), got "
                    f"{_short(timestep)}"
                )
            if timestep.device.type != "cpu":
                return None
            return float(timestep)
        if isinstance(timestep, bool) or not isinstance(timestep, int | float | np.number):
            raise TypeError(
                f"timestep must be a number or a 0-d tensor, got {type(timestep).__name__}"
            )
        return float(timestep)

    def _lookup(self, v: float | None, timestep) -> int:
        if v is None:  # first call on a device tensor: one read, as diffusers
            v = float(timestep.cpu())
        k = self._where.get(v)
        if k is None:
            raise ValueError(
                f"timestep must be one of scheduler.timesteps {self._values}, got "
                f"{_short(timestep)}"
            )
        return k

    def _index(self, timestep: float | Tensor) -> int:
        v = self._value(timestep)
        k = self._counter
        if k is None:
            k = self._begin_index if self._begin_index is not None else self._lookup(v, timestep)
        elif self._by_value and v is not None:
            k = self._lookup(v, timestep)
        elif v is not None and k < len(self._values) and v != self._values[k]:
            raise ValueError(
                f"timestep must be scheduler.timesteps[{k}] = {self._values[k]!r} at call {k + 1} "
                f"after set_timesteps, got {_short(timestep)}"
            )
        if k >= len(self._calls):
            raise ValueError(
                f"step was called {k + 1} times after set_timesteps({self.num_inference_steps}); "
                f"the grid has {len(self._calls)} calls"
            )
        return k

    def __len__(self) -> int:
        return self._config["num_train_timesteps"]

    # --- the model's input and output ---------------------------------------------------
    def scale_model_input(self, sample: Tensor, timestep: float | Tensor | None = None) -> Tensor:
        """The identity: these schedulers hand the model the VP state itself."""
        return sample

    def _data(self, out: Tensor, x: Tensor, c: Coeffs) -> Tensor:
        r"""The data prediction $D$ of a model output at the VP state ``x``: $(x - \sigma
        \hat\epsilon)/m$, $m x - \sigma v$ or the output itself, then clipped to
        ``clip_sample_range`` or dynamically thresholded where configured."""
        return self._clip_data(self._raw_data(out, x, c))

    def _raw_data(self, out: Tensor, x: Tensor, c: Coeffs) -> Tensor:
        """$D$ before clipping / thresholding."""
        kind = self._config["prediction_type"]
        if kind == "epsilon":
            return torch.add(x, out, alpha=-c.sigma).div_(c.m)
        if kind == "v_prediction":
            return torch.add(c.m * x, out, alpha=-c.sigma)
        return out

    def _clip_data(self, d: Tensor) -> Tensor:
        """``thresholding`` or ``clip_sample`` applied to $D$ (the identity without them)."""
        cfg = self._config
        if cfg.get("thresholding"):
            return threshold(d, cfg["dynamic_thresholding_ratio"], cfg["sample_max_value"])
        if cfg.get("clip_sample"):
            r = cfg["clip_sample_range"]
            return d.clamp(-r, r)
        return d

    def _score(self, out: Tensor, x: Tensor, c: Coeffs) -> Tensor:
        r"""The score at the VP state ``x`` from a model output (module docs), the one place
        where ``prediction_type``, ``clip_sample`` and ``thresholding`` act."""
        kind = self._config["prediction_type"]
        if not self._clip():
            if kind == "epsilon":
                return out * (-1.0 / c.sigma)
            if kind == "v_prediction":
                return torch.add(x, out, alpha=c.m / c.sigma).neg_()
        d = self._d = self._data(out, x, c)  # kept for pred_original_sample
        return torch.add(x, d, alpha=-c.m).div_(-c.sigma * c.sigma)

    # --- step ---------------------------------------------------------------------------
    def _require_grid(self) -> None:
        if self._calls is None:
            raise RuntimeError(
                f"{type(self).__name__}: call set_timesteps(num_inference_steps) before step"
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

    def _solver_for(self, k: int) -> GridSolver:
        """The sdelab solver of call ``k`` (default: ``solver`` on every call)."""
        return self.solver

    def _step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        return_dict: bool = True,
    ):
        r"""One diffusers ``step`` call: the sdelab solver's step from this call's level to the
        next on the VP state (or Tweedie's $D$ where the next level is $\sigma = 0$)."""
        self._require_grid()
        self._check(model_output, sample)
        if generator is not None:
            check_generator(generator, sample.shape[0])
            if isinstance(generator, torch.Generator) and generator.device != sample.device:
                raise ValueError(
                    f"generator must be on sample's device {sample.device}, got a generator on "
                    f"{generator.device}"
                )
            if isinstance(generator, list | tuple):
                raise ValueError(
                    "generator must be a single torch.Generator for sdelab's "
                    f"{type(self).__name__}, got a list of {len(generator)}"
                )
        k = self._index(timestep)
        if self._pending and sample.shape != self._pending_shape:
            raise ValueError(
                f"sample must keep the shape {self._pending_shape} within a step, got "
                f"{tuple(sample.shape)}"
            )
        self._d = None
        prev = self._advance(k, model_output, sample, generator)
        self._counter = k + 1
        if self._output_cls is SchedulerOutput:
            out = SchedulerOutput(prev)
        else:
            d = self._d
            if d is None:
                d = self._data(model_output, sample, self._calls[k][0])
            out = self._output_cls(prev, d)
        return out if return_dict else out.to_tuple()

    def _advance(self, k: int, out: Tensor, sample: Tensor, generator) -> Tensor:
        c, n, step = self._calls[k]
        score = _ModelOutputs(self, [out])
        if n is None:
            return data_prediction(score, sample, c)
        solver = self._solver_for(k)
        if not self._started:
            self._state = solver.init(self.sde, sample, [cc.t for cc, _, _ in self._calls])
            self._started = True
        x_next, self._state = solver.step(self.sde, score, sample, step, self._state, generator)
        return x_next

    def _advance_staged(
        self, k: int, out: Tensor, sample: Tensor, generator, step: Step | None = None
    ) -> Tensor:
        """Several diffusers calls per solver step (PNDM's Runge-Kutta warm-up): each call
        reruns the step with the outputs so far until the solver asks for the next one
        (`_Probe`: that request's input is the sample the call returns)."""
        if step is None:
            step = self._calls[k][2]
        if self._stage_of[k] == 0:
            self._pending = [out]
            self._pending_shape = tuple(sample.shape)
            self._x = sample
        else:
            self._pending.append(out)
        if not self._started:
            self._state = self.solver.init(self.sde, sample, [])
            self._started = True
        try:
            x_next, state = self.solver.step(
                self.sde, _ModelOutputs(self, self._pending), self._x, step, self._state, generator
            )
        except _Probe as p:
            return p.x
        self._state = state
        self._pending = []
        return x_next

    # --- add_noise ----------------------------------------------------------------------
    def add_noise(
        self, original_samples: Tensor, noise: Tensor, timesteps: Tensor | Sequence[int]
    ) -> Tensor:
        r"""The forward process at the training steps ``timesteps`` (one per sample):
        $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$."""
        if not isinstance(noise, Tensor) or noise.shape != original_samples.shape:
            raise ValueError(
                f"noise must be a tensor shaped like original_samples "
                f"{tuple(original_samples.shape)}, got {_short(noise)}"
            )
        ac = self.alphas_cumprod.to(device=original_samples.device, dtype=original_samples.dtype)
        idx = torch.as_tensor(timesteps, device=original_samples.device).reshape(-1).long()
        a = ac[idx].reshape(-1, *([1] * (original_samples.ndim - 1)))
        return a.sqrt() * original_samples + (1 - a).sqrt() * noise
