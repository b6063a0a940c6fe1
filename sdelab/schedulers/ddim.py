r"""diffusers' DDIM, DDIM-inverse and DDPM schedulers as thin adapters over sdelab's `DDIM` and
`AncestralSampling` solvers on `sdelab.DiscreteVPSDE.from_diffusers(config)` (see
`sdelab.schedulers._discrete` for the VP state and the model-output conversion).

| class | SDE | sdelab solver |
|---|---|---|
| `DDIMScheduler` | `DiscreteVPSDE` | `sdelab.DDIM` (``eta`` of ``step``) |
| `DDIMInverseScheduler` | `DiscreteVPSDE` | `sdelab.DDIM` (``eta = 0``), run upwards |
| `DDPMScheduler` | `DiscreteVPSDE` | `sdelab.AncestralSampling` |
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._checks import _short
from ..solvers._exp import data_prediction
from ..solvers.ancestral import AncestralSampling
from ..solvers.ddim import ddim_update
from ..solvers.pc import gaussian_noise
from ._discrete import AlphaBarScheduler, DDIMSchedulerOutput, alpha_bar_timesteps
from ._sigmas import _ModelOutputs
from .sigma import KARRAS_COMPATIBLES

__all__ = ["DDIMInverseScheduler", "DDIMScheduler", "DDPMScheduler"]


class _DDIMBase(AlphaBarScheduler):
    """DDIM's step with diffusers' clipping rule (shared by the forward and inverse classes)."""

    _by_value = True
    _output_cls = DDIMSchedulerOutput

    def _ddim_step(
        self, k: int, out: Tensor, sample: Tensor, eta: float, clipped_output: bool, generator
    ) -> tuple[Tensor, Tensor]:
        r"""The DDIM step of call ``k`` (`sdelab.solvers.ddim.ddim_update`, the update of
        `sdelab.DDIM`, given the data prediction $D$ of the model output directly). With
        clipping and ``use_clipped_model_output=False`` diffusers pairs the clipped $D$ with the
        *unclipped* noise $\hat\epsilon$; that is the DDIM step from the state
        $x' = m D_{\rm clip} + \sigma\hat\epsilon = x + m(D_{\rm clip} - D)$, whose data and
        noise predictions are exactly that pair. Returns the next sample and $D$ (clipped)."""
        c, n, _ = self._calls[k]
        raw = self._raw_data(out, sample, c)
        d = self._clip_data(raw)
        x = sample
        if d is not raw and not clipped_output:
            x = torch.add(sample, d - raw, alpha=c.m)
        if n is None:  # to alpha-bar 1: Tweedie's D (DDIM's variance is 0 there)
            return d, d
        return ddim_update(x, d, c, n, eta, generator), d


class DDIMScheduler(_DDIMBase):
    r"""DDIM (Song, Meng & Ermon 2021) on the VP SDE of the training table,
    `sdelab.DiscreteVPSDE`, stepped by `sdelab.DDIM` with ``step``'s ``eta``: from the level
    $\tau$ to $\tau' = \tau - \lfloor N/n\rfloor$ (diffusers' rule; $\bar\alpha = 1$ below 0
    with ``set_alpha_to_one``, else $\bar\alpha_0$), with $D$ the data prediction and
    $\hat\epsilon = (x - m_\tau D)/\sigma_\tau$,

    $$ x_{\tau'} = m_{\tau'} D + \sqrt{\sigma_{\tau'}^2 - \varsigma^2}\,\hat\epsilon + \varsigma z,
       \qquad \varsigma = \eta\,\sigma_{\tau'}\sqrt{1 - e^{-2h}},\ h = \lambda_{\tau'} - \lambda_\tau. $$

    ``clip_sample`` / ``thresholding`` act on $D$; with ``use_clipped_model_output=False``
    (diffusers' default) the unclipped $\hat\epsilon$ is kept (the DDIM step from
    $x + m(D_{\rm clip} - D)$). ``variance_noise`` is not supported (pass ``generator``); the
    generator must live on the sample's device."""

    _compatibles = KARRAS_COMPATIBLES

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()
        self.final_alpha_cumprod = (
            torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0].clone()
        )

    def _plan(self, n: int):
        cfg = self._config
        n_train = cfg["num_train_timesteps"]
        ts = alpha_bar_timesteps(cfg["timestep_spacing"], n, n_train, cfg["steps_offset"])
        ratio = n_train // n
        calls = []
        for t in ts.tolist():
            prev = t - ratio
            c = self._at(self._time_of_step(t))
            if prev >= 0:
                nx = self._at(self._time_of_step(prev))
            else:
                nx = None if cfg["set_alpha_to_one"] else self._at(0.0)
            calls.append((c, nx))
        return torch.from_numpy(ts), calls

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = False,
        generator: torch.Generator | None = None,
        variance_noise: Tensor | None = None,
        return_dict: bool = True,
    ):
        """One DDIM step (see the class docs); returns `DDIMSchedulerOutput` (or a tuple)."""
        if variance_noise is not None:
            raise ValueError(
                "variance_noise is not supported by sdelab's DDIMScheduler (pass generator), "
                f"got {_short(variance_noise)}"
            )
        if eta < 0 or eta != eta:
            raise ValueError(f"eta must be >= 0, got {eta!r}")
        self._eta, self._clipped_output = float(eta), bool(use_clipped_model_output)
        return self._step(model_output, timestep, sample, generator, return_dict)

    def _advance(self, k, out, sample, generator):
        prev, self._d = self._ddim_step(k, out, sample, self._eta, self._clipped_output, generator)
        return prev


class DDIMInverseScheduler(_DDIMBase):
    r"""DDIM inversion: `sdelab.DDIM` (``eta = 0``) run *upwards* on `sdelab.DiscreteVPSDE`,
    from $\tau - \lfloor N/n\rfloor$ (or $\bar\alpha = 1$ / $\bar\alpha_0$ below 0, by
    ``set_alpha_to_one``) to the listed $\tau$, with the model output taken as the one at the
    step's start, as diffusers: $x_\tau = m_\tau D + \sigma_\tau\hat\epsilon$. From
    $\bar\alpha = 1$ ($\sigma = 0$, no sdelab time) that is the same formula with $D = x$
    (clipped with ``clip_sample``) and $\hat\epsilon$ the model's noise."""

    _compatibles = KARRAS_COMPATIBLES
    _allowed: ClassVar[dict[str, tuple]] = {"timestep_spacing": ("leading", "trailing")}

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "epsilon",
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "leading",
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()
        self.timesteps = torch.arange(0, num_train_timesteps)  # increasing, as diffusers
        self.initial_alpha_cumprod = (
            torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0].clone()
        )

    def _plan(self, n: int):
        cfg = self._config
        n_train = cfg["num_train_timesteps"]
        if cfg["timestep_spacing"] == "leading":
            ratio = n_train // n
            ts = (np.arange(0, n) * ratio).round().copy().astype(np.int64) + cfg["steps_offset"]
        else:
            ratio = n_train / n
            ts = np.round(np.arange(n_train, 0, -ratio)[::-1]).astype(np.int64) - 1
        ratio = n_train // n
        calls = []
        for t in ts.tolist():
            src = min(t - ratio, n_train - 1)
            if src >= 0:
                c = self._at(self._time_of_step(src))
            else:
                c = None if cfg["set_alpha_to_one"] else self._at(0.0)
            calls.append((c, self._at(self._time_of_step(t))))
        return torch.from_numpy(ts), calls

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One inversion step (see the class docs)."""
        return self._step(model_output, timestep, sample, None, return_dict)

    def _advance(self, k, out, sample, generator):
        c, n, _ = self._calls[k]
        if c is not None:
            prev, self._d = self._ddim_step(k, out, sample, 0.0, False, None)
            return prev
        kind = self._config["prediction_type"]
        if kind == "sample":
            raise ValueError(
                "prediction_type='sample' has no noise prediction at alpha-bar 1 (the first "
                "inversion step with set_alpha_to_one=True); use set_alpha_to_one=False"
            )
        d = sample
        if self._config["clip_sample"]:
            r = self._config["clip_sample_range"]
            d = d.clamp(-r, r)
        self._d = d
        return torch.add(n.m * d, out, alpha=n.sigma)  # epsilon, or v = eps at sigma 0


_DDPM_VARIANCES = {
    "fixed_small": "posterior",
    "fixed_small_log": "posterior",
    "fixed_large": "transition",
}


class DDPMScheduler(AlphaBarScheduler):
    r"""DDPM's ancestral sampler (Ho et al. 2020) on `sdelab.DiscreteVPSDE`, stepped by
    `sdelab.AncestralSampling` from the listed $\tau$ to the next listed $\tau'$:

    $$ x_{\tau'} = \frac{x + v\,\nabla\log p(x)}{\alpha} + \sqrt{\tilde v}\,z, \qquad
       \alpha = \frac{m_\tau}{m_{\tau'}}, \quad v = \sigma_\tau^2 - \alpha^2\sigma_{\tau'}^2, $$

    i.e. DDPM's posterior mean $\frac{m_{\tau'}v}{\sigma_\tau^2}D +
    \frac{\alpha\sigma_{\tau'}^2}{\sigma_\tau^2}x$ with $\tilde v = v\sigma_{\tau'}^2/\sigma_\tau^2$
    (``variance_type="fixed_small"`` / ``"fixed_small_log"``: ``variance="posterior"``) or
    $\tilde v = v$ (``"fixed_large"``: ``variance="transition"``). The last step, to
    $\bar\alpha = 1$, is $D$: the posterior variance is 0 there, the transition variance
    $v = \sigma_\tau^2$, which ``"fixed_large"`` adds when the last timestep is above 0
    (``"trailing"``, or ``"leading"`` with ``steps_offset``), as diffusers.
    ``"fixed_large_log"`` (NaN in diffusers), ``"learned"`` and ``"learned_range"``
    (two-headed models) are refused."""

    _compatibles = KARRAS_COMPATIBLES
    _by_value = True
    _output_cls = DDIMSchedulerOutput
    _allowed: ClassVar[dict[str, tuple]] = {"variance_type": tuple(_DDPM_VARIANCES)}

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()
        self.variance_type = variance_type
        self.solver = AncestralSampling(_DDPM_VARIANCES[variance_type])

    def _plan(self, n: int):
        cfg = self._config
        ts = alpha_bar_timesteps(
            cfg["timestep_spacing"], n, cfg["num_train_timesteps"], cfg["steps_offset"]
        )
        levels = [self._at(self._time_of_step(t)) for t in ts.tolist()]
        return torch.from_numpy(ts), [
            (c, nx) for c, nx in zip(levels, [*levels[1:], None], strict=True)
        ]

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One ancestral step (see the class docs); returns `DDIMSchedulerOutput` (diffusers'
        ``DDPMSchedulerOutput``: ``prev_sample``, ``pred_original_sample``)."""
        return self._step(model_output, timestep, sample, generator, return_dict)

    def _advance(self, k, out, sample, generator):
        c, n, _ = self._calls[k]
        if n is None and self.solver.variance == "transition" and c.t > 0:
            return data_prediction(_ModelOutputs(self, [out]), sample, c).add_(
                gaussian_noise(sample, generator, c.sigma)
            )
        return super()._advance(k, out, sample, generator)
