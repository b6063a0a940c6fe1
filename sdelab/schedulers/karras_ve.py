r"""`KarrasVeScheduler`: diffusers' (deprecated) stochastic Karras sampler on a VE model, as a
thin adapter over `sdelab.EDMStochastic` (Karras et al. 2022, Algorithm 2).

The pipeline's loop calls, per level $s_i$ of the schedule ($s_{i+1} < s_i$):

1. `KarrasVeScheduler.add_noise_to_input`: the churn $\hat s_i = (1 + \gamma_i)s_i$,
   $\hat x_i = x_i + \sqrt{\hat s_i^2 - s_i^2}\,S_{\mathrm{noise}}\,z$ (`EDMStochastic.gamma`,
   `EDMStochastic.churn_std`);
2. `KarrasVeScheduler.step`: Heun's predictor $x' = \hat x_i + (s_{i+1} - \hat s_i)\,d_i$ with
   $d_i = (\hat x_i - D_i)/\hat s_i$ (`sdelab.solvers.karras.heun_predict`);
3. `KarrasVeScheduler.step_correct` (where $s_{i+1} > 0$): Heun's corrector
   $x_{i+1} = \hat x_i + (s_{i+1} - \hat s_i)\tfrac12(d_i + d')$
   (`sdelab.solvers.karras.heun_correct`),

the very functions `EDMStochastic`'s step is made of, called one model output at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._checks import _short, check_int, check_positive
from ..sde.ve import VESDE
from ..solvers.edm import EDMStochastic
from ..solvers.karras import heun_correct, heun_predict
from ._config import ConfigMixin
from ._outputs import BaseOutput
from ._random import Generator, check_generator, randn

__all__ = ["KarrasVeOutput", "KarrasVeScheduler"]


@dataclass
class KarrasVeOutput(BaseOutput):
    """What `KarrasVeScheduler.step` and `KarrasVeScheduler.step_correct` return.

    Attributes:
        prev_sample: the sample at the next level.
        derivative: the slope $d_i = (\\hat x_i - D_i)/\\hat s_i$ at the churned point (the
            first stage's, from both methods, as diffusers).
        pred_original_sample: the data prediction $D$ of this call's model output.
    """

    prev_sample: Tensor
    derivative: Tensor
    pred_original_sample: Tensor | None = None


def _level(name: str, value: float | Tensor) -> float:
    """A noise level given as a number or a one-element tensor, as a Python float."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a one-element tensor, got {_short(value)}"
            )
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    return float(value)


class KarrasVeScheduler(ConfigMixin):
    r"""Karras et al. 2022's stochastic sampler (Algorithm 2) in diffusers'
    ``KarrasVeScheduler`` form: churn, then a Heun step, on a variance-exploding model whose
    ``model_output`` is $(D - x)/\sigma$ (the pipeline scales the network's output by
    $\sigma/2$).

    **The levels.** As diffusers computes them, ``schedule[k]`` $= \sigma_{\max}^2
    (\sigma_{\min}^2/\sigma_{\max}^2)^{1 - k/(n-1)}$: the *squares* of the config's sigmas
    (diffusers' formula, kept for equal numbers), i.e. $\sigma(k/(n-1))$ of
    ``self.sde`` $=$ `sdelab.VESDE` with $\sigma(t) = \sigma_{\min}^2(\sigma_{\max}^2/
    \sigma_{\min}^2)^t$. The sampler reads them as the noise levels $s$ of the scaled state
    ($m = 1$). ``init_noise_sigma`` is the config's ``sigma_max`` (as diffusers, although the
    first level is $\sigma_{\max}^2$).

    **The noise.** `add_noise_to_input` draws $z$ from ``generator`` on every call, also where
    $\gamma_i = 0$ (diffusers scales that draw by 0), so a seeded generator gives diffusers'
    numbers; `sdelab.EDMStochastic` inside `sdelab.sample` draws only where $\gamma_i > 0$.

    Args:
        sigma_min: $\sigma_{\min} > 0$ of the schedule (default 0.02).
        sigma_max: $\sigma_{\max} > \sigma_{\min}$ (default 100).
        s_noise: $S_{\mathrm{noise}} > 0$, the churn noise's scale (default 1.007).
        s_churn: $S_{\mathrm{churn}} \ge 0$, the total churn (default 80).
        s_min: $S_{t\min}$, the lowest level that is churned (default 0.05).
        s_max: $S_{t\max} \ge S_{t\min}$, the highest (default 50).
    """

    order = 2
    _compatibles: tuple[str, ...] = ()

    def __init__(
        self,
        sigma_min: float = 0.02,
        sigma_max: float = 100,
        s_noise: float = 1.007,
        s_churn: float = 80,
        s_min: float = 0.05,
        s_max: float = 50,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        lo, hi = check_positive("sigma_min", sigma_min), check_positive("sigma_max", sigma_max)
        if not hi > lo:
            raise ValueError(f"sigma_max must be > sigma_min = {sigma_min!r}, got {sigma_max!r}")
        self.solver = EDMStochastic(
            s_churn=float(s_churn), s_tmin=float(s_min), s_tmax=float(s_max), s_noise=float(s_noise)
        )
        self.sde = VESDE(sigma_min=lo * lo, sigma_max=hi * hi)
        self.init_noise_sigma = sigma_max
        self.num_inference_steps: int | None = None
        self.timesteps: Tensor | None = None
        self.schedule: Tensor | None = None

    def scale_model_input(self, sample: Tensor, timestep: int | None = None) -> Tensor:
        """The sample itself (the VE model takes $x$ unscaled)."""
        return sample

    def set_timesteps(
        self, num_inference_steps: int, device: str | torch.device | None = None
    ) -> None:
        r"""``timesteps`` $= n-1, \dots, 0$ and ``schedule[k]`` $= \sigma(k/(n-1))$ of
        ``self.sde`` (float32), the level of timestep $k$."""
        n = check_int("num_inference_steps", num_inference_steps, minimum=2)
        self.num_inference_steps = n
        steps = torch.from_numpy(np.arange(0, n)[::-1].copy())
        self.timesteps = steps.to(device)
        lo, hi = self._config["sigma_min"], self._config["sigma_max"]
        # sigma(k / (n - 1)) of self.sde, with diffusers' float32 exponents (equal tables)
        levels = [hi**2 * (lo**2 / hi**2) ** (i / (n - 1)) for i in steps]
        self.schedule = torch.tensor(levels, dtype=torch.float32, device=device)

    def _require_grid(self) -> int:
        if self.num_inference_steps is None:
            raise RuntimeError(
                "KarrasVeScheduler: call set_timesteps(num_inference_steps) before "
                "add_noise_to_input / step"
            )
        return self.num_inference_steps

    def add_noise_to_input(
        self, sample: Tensor, sigma: float | Tensor, generator: Generator = None
    ) -> tuple[Tensor, float]:
        r"""The churn of Algorithm 2 (lines 4-6): $\hat s = (1 + \gamma)s$ with
        $\gamma = \min(S_{\mathrm{churn}}/n, \sqrt2 - 1)$ for $s \in [S_{t\min}, S_{t\max}]$
        (else 0) and $\hat x = x + \sqrt{\hat s^2 - s^2}\,S_{\mathrm{noise}}\,z$; returns
        $(\hat x, \hat s)$ with $\hat s$ a Python float."""
        n = self._require_grid()
        if not isinstance(sample, Tensor) or not sample.is_floating_point():
            raise TypeError(f"sample must be a floating-point tensor, got {_short(sample)}")
        s = _level("sigma", sigma)
        check_generator(generator, sample.shape[0] if sample.ndim else 1)
        z = randn(sample.shape, generator, sample.device, sample.dtype)  # drawn as diffusers
        s_hat = s + self.solver.gamma(s, n) * s
        if s_hat == s:
            return sample, s
        return torch.add(sample, z, alpha=self.solver.churn_std(s, s_hat)), s_hat

    def _check(self, model_output: Tensor, sample: Tensor, name: str) -> None:
        if not isinstance(sample, Tensor) or not sample.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {_short(sample)}")
        if not isinstance(model_output, Tensor) or model_output.shape != sample.shape:
            got = (
                tuple(model_output.shape)
                if isinstance(model_output, Tensor)
                else _short(model_output)
            )
            raise ValueError(
                f"model_output must be a tensor shaped like {name} {tuple(sample.shape)}, got {got}"
            )
        if model_output.dtype != sample.dtype:
            raise TypeError(
                f"model_output must have {name}'s dtype {sample.dtype}, got {model_output.dtype}"
            )

    def step(
        self,
        model_output: Tensor,
        sigma_hat: float | Tensor,
        sigma_prev: float | Tensor,
        sample_hat: Tensor,
        return_dict: bool = True,
    ) -> KarrasVeOutput | tuple[Tensor, Tensor]:
        r"""Heun's predictor from $\hat s$ to $s_{\mathrm{prev}}$: $D = \hat x + \hat s\,
        \texttt{model\_output}$, $d = (\hat x - D)/\hat s$, $x' = \hat x + (s_{\mathrm{prev}}
        - \hat s)\,d$ (`heun_predict`; for $s_{\mathrm{prev}} = 0$ this is $D$, the last step)."""
        self._check(model_output, sample_hat, "sample_hat")
        s, sp = _level("sigma_hat", sigma_hat), _level("sigma_prev", sigma_prev)
        pred = torch.add(sample_hat, model_output, alpha=s)
        d = (sample_hat - pred) / s
        prev = heun_predict(sample_hat, d, sp - s)
        if not return_dict:
            return prev, d
        return KarrasVeOutput(prev_sample=prev, derivative=d, pred_original_sample=pred)

    def step_correct(
        self,
        model_output: Tensor,
        sigma_hat: float | Tensor,
        sigma_prev: float | Tensor,
        sample_hat: Tensor,
        sample_prev: Tensor,
        derivative: Tensor,
        return_dict: bool = True,
    ) -> KarrasVeOutput | tuple[Tensor, Tensor]:
        r"""Heun's corrector: $D' = x' + s_{\mathrm{prev}}\,\texttt{model\_output}$ at the
        predictor $x'$ (``sample_prev``), $d' = (x' - D')/s_{\mathrm{prev}}$ and
        $x_{\mathrm{prev}} = \hat x + (s_{\mathrm{prev}} - \hat s)\,\tfrac12(d + d')$
        (`heun_correct`); ``sigma_prev`` must be > 0."""
        self._check(model_output, sample_prev, "sample_prev")
        s, sp = _level("sigma_hat", sigma_hat), _level("sigma_prev", sigma_prev)
        if not sp > 0:
            raise ValueError(f"sigma_prev must be > 0 for the correction, got {sp!r}")
        pred = torch.add(sample_prev, model_output, alpha=sp)
        d2 = (sample_prev - pred) / sp
        prev = heun_correct(sample_hat, derivative, d2, sp - s)
        if not return_dict:
            return prev, derivative
        return KarrasVeOutput(prev_sample=prev, derivative=derivative, pred_original_sample=pred)

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """Not defined for this scheduler (NotImplementedError, as diffusers)."""
        raise NotImplementedError(
            "KarrasVeScheduler has no add_noise (as diffusers); use add_noise_to_input"
        )
