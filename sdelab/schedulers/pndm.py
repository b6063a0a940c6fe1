r"""diffusers' PNDM scheduler as a thin adapter over `sdelab.PNDM` on
`sdelab.DiscreteVPSDE.from_diffusers(config)` (see `sdelab.schedulers._discrete`).

| class | sdelab solver |
|---|---|
| `PNDMScheduler` | `sdelab.PNDM` (PRK warm-up, or ``skip_prk_steps``: the Heun warm-up; then PLMS) |
| `IPNDMScheduler` | `sdelab.IPNDM`'s step on diffusers' own VP levels |
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._checks import _short, check_int
from ..solvers._exp import Coeffs
from ..solvers.grid import Step
from ..solvers.pndm import IPNDM, PNDM
from ._config import ConfigMixin
from ._discrete import AlphaBarScheduler
from ._outputs import SchedulerOutput
from .sigma import KARRAS_COMPATIBLES

__all__ = ["IPNDMScheduler", "PNDMScheduler"]


class PNDMScheduler(AlphaBarScheduler):
    r"""Pseudo numerical methods (Liu et al. 2022) on `sdelab.DiscreteVPSDE`, stepped by
    `sdelab.PNDM`: the transfer (the DDIM step) $\phi(x, e, t, t') = \frac{m'}{m}x +
    (\sigma' - \frac{m'\sigma}{m})e$ along a combination $e$ of noise predictions,

    * **PRK** (the first three steps, four ``step`` calls each, as diffusers'): $e =
      \tfrac16(e_1 + 2e_2 + 2e_3 + e_4)$ with the stages at the step's midpoint and end;
      each call returns the next stage's input;
    * ``skip_prk_steps=True``: the pseudo Heun step (two calls), then PLMS;
    * **PLMS** (one call): $e = \tfrac1{24}(55\epsilon_k - 59\epsilon_{k-1} + 37\epsilon_{k-2}
      - 9\epsilon_{k-3})$ (lower Adams-Bashforth orders while the history fills), from the
      listed $\tau$ to $\tau - \lfloor N/n\rfloor$ (diffusers' rule; $\bar\alpha_0$ below 0).

    Refused: ``timestep_spacing="linspace"`` (diffusers' warm-up steps then do not join up:
    no single method), ``set_alpha_to_one=True`` (a multistep step to $\sigma = 0$, outside
    the SDE's times). With an odd $\lfloor N/n\rfloor$ and the PRK warm-up diffusers rounds the
    midpoint down for the sample and up for the model; sdelab takes the exact midpoint.
    ``prediction_type="v_prediction"``: diffusers converts every warm-up stage's output with
    the step's *start* level and sample, sdelab at the stage's own input (they differ on the
    warm-up; equal on the PLMS steps)."""

    _compatibles = KARRAS_COMPATIBLES
    _allowed: ClassVar[dict[str, tuple]] = {
        "prediction_type": ("epsilon", "v_prediction"),
        "timestep_spacing": ("leading", "trailing"),
        "set_alpha_to_one": (False,),
    }
    pndm_order = 4

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        skip_prk_steps: bool = False,
        set_alpha_to_one: bool = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()
        self.solver = PNDM(skip_prk=bool(skip_prk_steps))
        self.final_alpha_cumprod = self.alphas_cumprod[0].clone()
        self.timesteps = None  # as diffusers, until set_timesteps

    def _plan(self, n: int):
        cfg = self._config
        n_train = cfg["num_train_timesteps"]
        ratio = n_train // n
        if cfg["timestep_spacing"] == "leading":
            base = (np.arange(0, n) * ratio).round().astype(np.int64) + cfg["steps_offset"]
        else:
            base = np.round(np.arange(n_train, 0, -n_train / n))[::-1].astype(np.int64) - 1
        down = base[::-1].tolist()  # decreasing levels
        lvl = self._at
        tim = self._time_of_step
        steps: list[tuple[float, float, int]] = []  # (from, to, calls) per solver step
        if cfg["skip_prk_steps"]:
            timesteps = np.concatenate([base[:-1], base[-2:-1], base[-1:]])[::-1]
            steps.append((down[0], down[0] - ratio, 2))
            rest = down[1:]
        else:
            if n < 4:
                raise ValueError(
                    "num_inference_steps must be at least 4 with skip_prk_steps=False (three "
                    f"Runge-Kutta steps and one PLMS step), got {n}"
                )
            half = ratio // 2
            prk = []
            for j in range(3):
                a, b = down[j], down[j + 1]
                prk += [a, b + half, b + half, b]
                steps.append((a, b, 4))
            timesteps = np.array(prk + down[3:], dtype=np.int64)
            rest = down[3:]
        steps += [(t, t - ratio, 1) for t in rest]
        calls, self._stage_of, self._step_of = [], [], []
        for j, (a, b, k) in enumerate(steps):
            c = lvl(tim(a))
            nx = lvl(tim(b)) if b >= 0 else lvl(0.0)
            for s in range(k):
                calls.append((c, nx))
                self._stage_of.append(s)
                self._step_of.append(Step(j, len(steps), c.t, nx.t, c.t - nx.t))
        return torch.from_numpy(np.asarray(timesteps).astype(np.int64)), calls

    def _advance(self, k, out, sample, generator):
        return self._advance_staged(k, out, sample, None, self._step_of[k])

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One PRK stage or PLMS step (see the class docs)."""
        return self._step(model_output, timestep, sample, None, return_dict)


class _VFromLevels:
    r"""The score of a v-prediction at a level $(m, \sigma)$: $\hat\epsilon = \sigma x + m v$,
    $\nabla\log p = -\hat\epsilon/\sigma$ (one call)."""

    __slots__ = ("c", "v")

    def __init__(self, v: Tensor, c: Coeffs) -> None:
        self.v, self.c = v, c

    def __call__(self, x: Tensor, t: float) -> Tensor:
        c = self.c
        return torch.add(x, self.v, alpha=c.m / c.sigma).neg_()


class IPNDMScheduler(ConfigMixin):
    r"""Improved PNDM (Zhang & Chen 2023) as diffusers' ``IPNDMScheduler``: `sdelab.IPNDM`'s
    step (Adams-Bashforth of order $\min(k + 1, 4)$ on the noise predictions, then the DDIM
    transfer) on diffusers' own VP levels, not on a training table:

    $$ \sigma_k = \sin^2\!\big(\tfrac\pi2 u_k\big),\ u_k = 1 - k/n \ (\text{or ``trained\_betas``}),
       \qquad m_k = \sqrt{1 - \sigma_k^2}, \qquad
       x_{k+1} = \frac{m_{k+1}}{m_k}x_k + \Big(\sigma_{k+1} - \frac{m_{k+1}\sigma_k}{m_k}\Big)e_k, $$

    with the model a v-prediction at the angle ``timestep`` $= \tfrac2\pi\operatorname{atan2}
    (\sigma_k, m_k)$, so $\hat\epsilon_k = \sigma_k x + m_k v$. The levels run from $\sigma = 1$
    ($m = 0$, no finite log-SNR) to $\sigma = 0$, so they are `sdelab.solvers._exp.Coeffs`
    taken from the table (no SDE time); the first step from $m = 0$, where $\hat\epsilon = x$
    exactly, is the transfer's limit $x_1 = \sigma_1 x$ (diffusers clamps $m$ to $10^{-8}$ and
    gets the same)."""

    order = 1
    init_noise_sigma = 1.0
    pndm_order = 4
    _compatibles: ClassVar[list[str]] = []

    def __init__(self, num_train_timesteps: int = 1000, trained_betas: Any = None) -> None:
        self._register_config(num_train_timesteps=num_train_timesteps, trained_betas=trained_betas)
        self.solver = IPNDM(order=4)
        self._build(num_train_timesteps, None, check=False)
        self.num_inference_steps = None  # as diffusers: set_timesteps not yet called by the user
        self._levels_set = False

    def set_timesteps(
        self, num_inference_steps: int | None = None, device: str | torch.device | None = None
    ) -> None:
        """diffusers' levels for ``num_inference_steps`` steps (equal ``timesteps``)."""
        self._build(check_int("num_inference_steps", num_inference_steps), device, check=True)

    def _build(self, n: int, device: str | torch.device | None, check: bool) -> None:
        self.num_inference_steps = n
        steps = torch.linspace(1, 0, n + 1)[:-1]
        steps = torch.cat([steps, torch.tensor([0.0])])
        trained = self._config["trained_betas"]
        if trained is not None:
            self.betas = torch.tensor(trained, dtype=torch.float32)
            if check and (self.betas.ndim != 1 or self.betas.numel() != n + 1):
                raise ValueError(
                    f"trained_betas must hold num_inference_steps + 1 = {n + 1} levels, got "
                    f"shape {tuple(self.betas.shape)}"
                )
        else:
            self.betas = torch.sin(steps * math.pi / 2) ** 2
        self.alphas = (1.0 - self.betas**2) ** 0.5
        self.timesteps = (torch.atan2(self.betas, self.alphas) / math.pi * 2)[:-1].to(device)
        sig, m = self.betas.tolist(), self.alphas.tolist()
        self._coeffs = [
            Coeffs(float(k), mk, sk, math.log(mk / sk) if mk > 0 and sk > 0 else math.nan)
            for k, (mk, sk) in enumerate(zip(m, sig, strict=True))
        ]
        self._values = [float(v) for v in self.timesteps.tolist()]
        self._history: tuple[Tensor, ...] = ()
        self._step_index: int | None = None
        self._begin_index: int | None = None
        self._levels_set = True

    @property
    def step_index(self) -> int | None:
        """The number of ``step`` calls since `set_timesteps` (``None`` before the first)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first index, when a pipeline set it with `set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]``."""
        self._begin_index = check_int("begin_index", begin_index, minimum=0)

    def scale_model_input(self, sample: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """The identity (the model sees the VP state)."""
        return sample

    def __len__(self) -> int:
        return self._config["num_train_timesteps"]

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One IPNDM step (see the class docs) on the v-prediction ``model_output``."""
        if not self._levels_set:
            raise RuntimeError("IPNDMScheduler: call set_timesteps(num_inference_steps) first")
        AlphaBarScheduler._check(self, model_output, sample)  # type: ignore[arg-type]
        k = self._step_index
        if k is None:
            if self._begin_index is not None:
                k = self._begin_index
            else:
                v = float(timestep) if not isinstance(timestep, Tensor) else None
                if v is None and timestep.device.type == "cpu":
                    v = float(timestep)
                if v is None:
                    v = float(timestep.cpu())
                if v not in self._values:
                    raise ValueError(
                        f"timestep must be one of scheduler.timesteps {self._values}, got "
                        f"{_short(timestep)}"
                    )
                k = self._values.index(v)
        if k >= len(self._values):
            raise ValueError(
                f"step was called {k + 1} times after set_timesteps({self.num_inference_steps}); "
                f"the grid has {len(self._values)} calls"
            )
        c, nx = self._coeffs[k], self._coeffs[k + 1]
        if c.m == 0.0:  # sigma = 1: the noise prediction is x itself; the transfer's limit
            eps = sample * c.sigma
            self._history = (*self._history, eps)[-4:]
            prev = eps * nx.sigma
        else:
            step = Step(k, len(self._values), c.t, nx.t, 1.0)
            prev, self._history = self.solver.advance(
                None, _VFromLevels(model_output, c), sample, step.index, c, nx, self._history
            )
        self._step_index = k + 1
        out = SchedulerOutput(prev)
        return out if return_dict else out.to_tuple()
