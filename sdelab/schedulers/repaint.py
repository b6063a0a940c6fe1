r"""`RePaintScheduler`: diffusers' RePaint inpainting scheduler (Lugmayr et al. 2022) as an
adapter over sdelab's pieces on `sdelab.DiscreteVPSDE.from_diffusers(config)`:

* the schedule of down and up moves: `sdelab.conditioning.repaint.repaint_path`;
* a down move (`RePaintScheduler.step`): the DDIM step with its ``eta`` (Song et al. 2021a,
  eq. 12 with `sdelab.solvers.ddim.ddim_noise_split`) for the unknown part and, for the known
  part, a draw from $p_{0t}(\cdot \mid y)$ (imputation), mixed by the mask;
* an up move (`RePaintScheduler.undo_step`): the forward transitions of the SDE between
  training steps (`sdelab.conditioning.repaint.forward_jump`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import _short, check_int
from ..conditioning.repaint import forward_jump, repaint_path
from ..sde.discrete import DiscreteVPSDE
from ..solvers._exp import Coeffs, coeffs
from ..solvers.ddim import ddim_noise_split
from ._config import ConfigMixin
from ._outputs import BaseOutput
from ._random import Generator, check_generator, randn

__all__ = ["RePaintScheduler", "RePaintSchedulerOutput"]


@dataclass
class RePaintSchedulerOutput(BaseOutput):
    """What `RePaintScheduler.step` returns.

    Attributes:
        prev_sample: the sample at the previous timestep (known part imputed).
        pred_original_sample: the data prediction $D$ (clipped with ``clip_sample``).
    """

    prev_sample: Tensor
    pred_original_sample: Tensor | None = None


class RePaintScheduler(ConfigMixin):
    r"""RePaint (Lugmayr et al. 2022, Algorithm 1) in diffusers' ``RePaintScheduler`` form.

    A down move from training step $t$ to $t' = t - N/n$ with the model's noise prediction
    $\hat\epsilon$, $D = (x - \sqrt{1 - \bar\alpha_t}\hat\epsilon)/\sqrt{\bar\alpha_t}$
    (clipped to $[-1, 1]$ with ``clip_sample``) and one draw $z$:

    $$ x^{\mathrm{unknown}}_{t'} = m_{t'} D + \sqrt{\sigma_{t'}^2 - \varsigma^2}\,\hat\epsilon
       + \varsigma z, \qquad x^{\mathrm{known}}_{t'} = m_{t'} y + \sigma_{t'} z, $$
    $$ x_{t'} = \mathrm{mask}\,x^{\mathrm{known}}_{t'} + (1 - \mathrm{mask})\,
       x^{\mathrm{unknown}}_{t'}, $$

    with $m^2 = \bar\alpha$, $\sigma^2 = 1 - \bar\alpha$ and DDIM's $\varsigma = \eta\,
    \sigma_{t'}\sqrt{1 - e^{-2h}}$ (`ddim_noise_split`); below step 0 the target is the clean
    level ($\bar\alpha = 1$). As diffusers, the same $z$ serves both parts, it is drawn on every
    step, and the fresh-noise term is left out on the step from $t = 0$.

    Args:
        num_train_timesteps: $N$, the length of the training table.
        beta_start: the first $\beta$ of the schedule.
        beta_end: the last $\beta$.
        beta_schedule: ``"linear"``, ``"scaled_linear"``, ``"squaredcos_cap_v2"`` or
            ``"sigmoid"`` (`sdelab.DiscreteVPSDE.from_diffusers`).
        eta: $\eta \ge 0$ (0: DDIM, 1: DDPM's ancestral step); the pipeline may set
            ``scheduler.eta``.
        trained_betas: an explicit $\beta$ table.
        clip_sample: clamp $D$ to $[-1, 1]$.
    """

    order = 1
    _compatibles: tuple[str, ...] = ()

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        eta: float = 0.0,
        trained_betas: Any = None,
        clip_sample: bool = True,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self.sde = DiscreteVPSDE.from_diffusers(self._config)
        n = self.sde.num_train_timesteps
        # the Coeffs (m, sigma, lambda) of every training step k, at t_k = k / (N - 1)
        self._levels = [coeffs(self.sde, k / (n - 1)) for k in range(n)]
        self._clean = Coeffs(0.0, 1.0, 0.0, math.inf)
        self.eta = eta
        self.init_noise_sigma = 1.0
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(n - 1, -1, -1)

    def __len__(self) -> int:
        return self._config["num_train_timesteps"]

    def scale_model_input(self, sample: Tensor, timestep: int | None = None) -> Tensor:
        """The sample itself (DDPM models take $x$ unscaled)."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int,
        jump_length: int = 10,
        jump_n_sample: int = 10,
        device: str | torch.device | None = None,
    ) -> None:
        r"""The timesteps of RePaint's path (`repaint_path`: down one grid step, or up
        ``jump_length`` steps ``jump_n_sample - 1`` times at every jump point) in training
        steps, $(n - p)\lfloor N/n\rfloor$ for the grid points $p$ visited."""
        n = min(check_int("num_inference_steps", num_inference_steps), len(self))
        length = check_int("jump_length", jump_length)
        repeats = check_int("jump_n_sample", jump_n_sample)
        self.num_inference_steps = n
        ratio = len(self) // n
        path = repaint_path(n, length, repeats)
        self.timesteps = torch.tensor([(n - p) * ratio for p in path[1:]]).to(device)

    def _ratio(self) -> int:
        if self.num_inference_steps is None:
            raise RuntimeError(
                "RePaintScheduler: call set_timesteps(num_inference_steps) before step / undo_step"
            )
        return len(self) // self.num_inference_steps

    def _timestep(self, timestep: int | Tensor) -> int:
        k = int(timestep)
        if not 0 <= k < len(self):
            raise ValueError(f"timestep must be a training step in [0, {len(self) - 1}], got {k}")
        return k

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        original_image: Tensor,
        mask: Tensor,
        generator: Generator = None,
        return_dict: bool = True,
    ) -> RePaintSchedulerOutput | tuple[Tensor, Tensor]:
        r"""One down move (class docs): the DDIM step with ``eta`` on the unknown part, the
        known part ``original_image`` noised to the new level, mixed by ``mask`` (1: known)."""
        ratio = self._ratio()
        t = self._timestep(timestep)
        if not isinstance(sample, Tensor) or not sample.is_floating_point():
            raise TypeError(f"sample must be a floating-point tensor, got {_short(sample)}")
        for name, v in (("model_output", model_output), ("original_image", original_image)):
            if not isinstance(v, Tensor) or v.shape != sample.shape:
                got = tuple(v.shape) if isinstance(v, Tensor) else _short(v)
                raise ValueError(
                    f"{name} must be a tensor shaped like sample {tuple(sample.shape)}, got {got}"
                )
        check_generator(generator, sample.shape[0])
        c = self._levels[t]
        n = self._levels[t - ratio] if t - ratio >= 0 else self._clean
        pred = torch.add(sample, model_output, alpha=-c.sigma).div_(c.m)
        if self._config["clip_sample"]:
            pred = pred.clamp_(-1, 1)
        z = randn(model_output.shape, generator, model_output.device, model_output.dtype)
        direction, std = ddim_noise_split(c, n, float(self.eta))
        if t == 0 or self.eta == 0:  # diffusers: no fresh-noise term (the split is kept)
            unknown = torch.add(pred * n.m, model_output, alpha=direction)
        else:
            unknown = torch.add(pred * n.m, model_output, alpha=direction).add_(z, alpha=std)
        known = torch.add(original_image * n.m, z, alpha=n.sigma)
        prev = torch.lerp(unknown, known, mask) if isinstance(mask, Tensor) else None
        if prev is None:
            raise TypeError(f"mask must be a tensor, got {_short(mask)}")
        if not return_dict:
            return prev, pred
        return RePaintSchedulerOutput(prev_sample=prev, pred_original_sample=pred)

    def undo_step(
        self, sample: Tensor, timestep: int | Tensor, generator: Generator = None
    ) -> Tensor:
        r"""One up move of $\lfloor N/n\rfloor$ training steps from ``timestep``: the forward
        transitions $x \leftarrow \sqrt{1 - \beta_k}\,x + \sqrt{\beta_k}\,z$,
        $k = $ ``timestep`` $+ i$ (diffusers' indices; `forward_jump` from $t_{k-1}$ to $t_k$,
        from the clean level for $k = 0$)."""
        ratio = self._ratio()
        t = self._timestep(timestep)
        if not isinstance(sample, Tensor) or not sample.is_floating_point():
            raise TypeError(f"sample must be a floating-point tensor, got {_short(sample)}")
        if t + ratio > len(self):
            raise ValueError(
                f"timestep + {ratio} must be <= {len(self)} for undo_step, got timestep={t}"
            )
        check_generator(generator, sample.shape[0])
        for k in range(t, t + ratio):
            # drawn by diffusers' rules (on the generator's device, then moved)
            z = randn(sample.shape, generator, sample.device, sample.dtype)
            if k == 0:
                c0 = self._levels[0]
                sample = torch.add(z * c0.sigma, sample, alpha=c0.m)
            else:
                lo, hi = self._levels[k - 1].t, self._levels[k].t
                sample = forward_jump(self.sde, sample, lo, hi, generator, noise=z)
        return sample

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """Not defined for this scheduler (NotImplementedError, as diffusers)."""
        raise NotImplementedError(
            "RePaintScheduler has no add_noise (as diffusers); use DDPMScheduler.add_noise to train"
        )
