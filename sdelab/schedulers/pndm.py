r"""diffusers' PNDM scheduler as a thin adapter over `sdelab.PNDM` on
`sdelab.DiscreteVPSDE.from_diffusers(config)` (see `sdelab.schedulers._discrete`).

| class | sdelab solver |
|---|---|
| `PNDMScheduler` | `sdelab.PNDM` (PRK warm-up, or ``skip_prk_steps``: the Heun warm-up; then PLMS) |
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..solvers.grid import Step
from ..solvers.pndm import PNDM
from ._discrete import AlphaBarScheduler
from .sigma import KARRAS_COMPATIBLES

__all__ = ["PNDMScheduler"]


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
