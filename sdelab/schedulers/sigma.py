r"""diffusers' sigma-family schedulers as thin adapters over sdelab's Karras-family solvers.

Each class has diffusers 0.42.1's constructor arguments and defaults, equal ``timesteps`` and
``sigmas``, and steps with an sdelab solver on `sdelab.DiscreteVPSDE.from_diffusers(config)`
(see `sdelab.schedulers._sigmas` for the scaled state and the two-call protocol):

| class | sdelab solver |
|---|---|
| `EulerDiscreteScheduler` | `sdelab.Euler` |
| `EulerAncestralDiscreteScheduler` | `sdelab.EulerAncestral` (eta 1) |
| `HeunDiscreteScheduler` | `sdelab.Heun` (two calls per level) |
| `LMSDiscreteScheduler` | `sdelab.LMS` (``order`` of ``step``) |
| `KDPM2DiscreteScheduler` | `sdelab.DPM2` (two calls per level) |
| `KDPM2AncestralDiscreteScheduler` | `sdelab.DPM2Ancestral` (eta 1, two calls) |
| `DPMSolverSDEScheduler` | `sdelab.DPMSolver` (order 2, singlestep, stochastic) |
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..solvers.dpm_solver import DPMSolver
from ..solvers.karras import DPM2, DPM2Ancestral, Euler, EulerAncestral, Heun
from ..solvers.lms import LMS, LMSState, lms_coefficients, lms_update
from ._sigmas import SigmaScheduler, sigma_to_timestep

__all__ = [
    "DPMSolverSDEScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LMSDiscreteScheduler",
]

#: diffusers' ``KarrasDiffusionSchedulers``: the classes ``from_config`` may switch between
KARRAS_COMPATIBLES = [
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
    "DPMSolverSDEScheduler",
    "EDMEulerScheduler",
]


def _repeat(v: Tensor) -> Tensor:
    """diffusers' two-call layout ``[v0, v1, v1, v2, v2, ...]`` (every entry after the first twice,
    the last once more)."""
    return torch.cat([v[:1], v[1:].repeat_interleave(2), v[-1:]])


def _no_churn(s_churn: float, s_noise: float) -> None:
    if s_churn != 0.0:
        raise ValueError(
            f"s_churn must be 0 for sdelab's EulerDiscreteScheduler (churn followed by an Euler "
            f"step is not an sdelab solver; sdelab.EDMStochastic churns before a Heun step), got "
            f"{s_churn!r}"
        )


class EulerDiscreteScheduler(SigmaScheduler):
    r"""Euler's method in the noise-to-signal ratio (`sdelab.Euler`; Karras et al. 2022,
    Algorithm 1 without the correction): $\tilde x_{i+1} = \tilde x_i + (s_{i+1} - s_i)
    (\tilde x_i - D_i)/s_i$. ``interpolation_type="log_linear"`` and
    ``rescale_betas_zero_snr=True`` are refused; ``step``'s ``s_churn`` must be 0."""

    _compatibles = KARRAS_COMPATIBLES
    solver = Euler()

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        interpolation_type: str = "linear",
        use_karras_sigmas: bool | None = False,
        use_exponential_sigmas: bool | None = False,
        use_beta_sigmas: bool | None = False,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        timestep_spacing: str = "linspace",
        timestep_type: str = "discrete",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        final_sigmas_type: str = "zero",
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One Euler step (see `SigmaScheduler.step`); ``s_churn`` must be 0."""
        _no_churn(s_churn, s_noise)
        return SigmaScheduler.step(self, model_output, timestep, sample, generator, return_dict)


class EulerAncestralDiscreteScheduler(SigmaScheduler):
    r"""Euler ancestral (`sdelab.EulerAncestral`, $\eta = 1$): an Euler step down to
    $s_\downarrow$ then fresh noise of std $s_\uparrow$, drawn from ``generator`` after the
    model call, one draw per step, as diffusers draws it (the same numbers for the same
    generator). The last step, to $s = 0$, is $D$ (diffusers draws a noise there and scales it
    by 0; sdelab draws none)."""

    _compatibles = KARRAS_COMPATIBLES
    _prediction_types = ("epsilon", "v_prediction")
    solver = EulerAncestral(eta=1.0)

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()


class LMSDiscreteScheduler(SigmaScheduler):
    r"""Linear multistep in $s$ (`sdelab.LMS`): Adams-Bashforth through the latest
    $\min(i + 1, \texttt{order})$ slopes, with ``step``'s ``order`` (default 4). Unlike
    ``sdelab.sample(..., denoise=True)``, the last step to $s = 0$ is the full multistep step
    diffusers takes (the LMS weights of the grid that ends at 0)."""

    _compatibles = KARRAS_COMPATIBLES

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()
        self.solver = LMS(order=4)

    def _init_state(self) -> LMSState:
        s = self._levels
        q = self.solver.order
        table = tuple(lms_coefficients(s, i, min(i + 1, q)) for i in range(len(s) - 1))
        return LMSState(table)

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> None:
        """The grid (see `SigmaScheduler.set_timesteps`) and the LMS weights of all its steps
        (`sdelab.solvers.lms.lms_coefficients`, once)."""
        SigmaScheduler.set_timesteps(self, num_inference_steps, device, **kwargs)
        self._state, self._started = self._init_state(), True

    def _advance(self, j, stage, out, sample, generator, pred, s):
        r"""The LMS step `sdelab.solvers.lms.lms_update` with the weights of the grid (which
        ends at 0: the last step is the full multistep step) and the latest slopes."""
        st = self._state
        history = (self._slope(out, sample, pred, s), *st.history[: self.solver.order - 1])
        self._state = LMSState(st.coefficients, history)
        return lms_update(sample, st.coefficients[j], history)

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        order: int = 4,
        return_dict: bool = True,
    ):
        """One LMS step of ``order`` (1..4; see `SigmaScheduler.step`)."""
        if order != self.solver.order:
            self.solver = LMS(order=order)
            if self._started:  # new weights, the slopes kept
                history = self._state.history
                self._state = LMSState(self._init_state().coefficients, history)
        return SigmaScheduler.step(self, model_output, timestep, sample, None, return_dict)


class _TwoCall(SigmaScheduler):
    """diffusers' second-order protocol: two ``step`` calls per level (``state_in_first_order``)."""

    stages = 2
    order = 2

    @property
    def state_in_first_order(self) -> bool:
        """True when the next ``step`` call is the first of a level's two."""
        return self._step_index is None or self._step_index % 2 == 0


class HeunDiscreteScheduler(_TwoCall):
    r"""Heun's method in $s$ (`sdelab.Heun`; Karras et al. 2022, Algorithm 1), called twice per
    level as diffusers': the first call returns the Euler predictor
    $\tilde x' = \tilde x_i + (s_{i+1} - s_i) d_i$, the second the corrected
    $\tilde x_{i+1}$. ``timesteps`` repeat each level after the first. ``clip_sample`` clamps the
    data prediction before the slope is formed, as diffusers."""

    _compatibles = KARRAS_COMPATIBLES
    solver = Heun()

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        clip_sample: bool = False,
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()

    def _layout(self, sigmas: Tensor, timesteps: np.ndarray, device) -> None:
        self.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
        ts = torch.from_numpy(timesteps)
        self.timesteps = torch.cat([ts[:1], ts[1:].repeat_interleave(2)]).to(device, torch.float32)
        self._input_sigmas = self.sigmas[:-1]

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One of the two calls of a level (see `SigmaScheduler.step`)."""
        return SigmaScheduler.step(self, model_output, timestep, sample, None, return_dict)


class DPMSolverSDEScheduler(HeunDiscreteScheduler):
    r"""DPM-Solver++ SDE, singlestep (`sdelab.DPMSolver` with ``order=2, multistep=False,
    stochastic=True``; k-diffusion's ``sample_dpmpp_sde``), two calls per level as diffusers':
    the first returns the stage at the log-SNR midpoint, the second the step.

    **The noise.** diffusers draws it from a torchsde Brownian tree seeded by
    ``noise_sampler_seed``; sdelab draws the same law exactly (the two correlated increments,
    see `sdelab.DPMSolver`) from a `torch.Generator` seeded by ``noise_sampler_seed`` (a random
    seed when None) on the sample's device: equal in distribution, not draw for draw. The
    generator is rewound between the two calls of a level so both see the same noise."""

    _prediction_types = ("epsilon", "v_prediction")
    _timestep_dtype = np.float64
    solver = DPMSolver(order=2, multistep=False, stochastic=True)

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        prediction_type: str = "epsilon",
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        noise_sampler_seed: int | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()
        self._noise: torch.Generator | None = None

    def _layout(self, sigmas: Tensor, timesteps: np.ndarray, device) -> None:
        lam = -np.log(self._raw_sigmas)
        mid = np.exp(-(lam[:-1] + np.diff(lam) * 0.5))
        self.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
        ts = torch.from_numpy(timesteps)
        ts = torch.cat([ts[:1], ts[1:].repeat_interleave(2)])
        ts[1::2] = torch.from_numpy(sigma_to_timestep(mid, np.log(self._table))).to(ts)
        self.timesteps = ts.to(device)
        lam32 = sigmas.log().neg()
        mid32 = (lam32[:-1] + (lam32[1:] - lam32[:-1]) * 0.5).neg().exp()
        inputs = self.sigmas[:-1].clone()
        inputs[1::2] = mid32[: len(inputs[1::2])]
        self._input_sigmas = inputs
        self._noise = None

    def _generator(self, generator, stage: int):
        if self._noise is None or self._noise.device != self._x.device:
            seed = self._config["noise_sampler_seed"]
            self._noise = torch.Generator(device=self._x.device)
            if seed is None:
                self._noise.seed()
            else:
                self._noise.manual_seed(seed)
        if stage == 0:
            self._rewind = self._noise.get_state()
        else:
            self._noise.set_state(self._rewind)
        return self._noise

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        return_dict: bool = True,
        s_noise: float = 1.0,
    ):
        """One of the two calls of a level (see `SigmaScheduler.step`); ``s_noise`` must be 1."""
        if s_noise != 1.0:
            raise ValueError(
                f"s_noise must be 1.0 for sdelab's DPMSolverSDEScheduler, got {s_noise!r}"
            )
        return SigmaScheduler.step(self, model_output, timestep, sample, None, return_dict)


class KDPM2DiscreteScheduler(_TwoCall):
    r"""k-diffusion's DPM2 (`sdelab.DPM2`): the midpoint method with the midpoint at
    $\sqrt{s_i s_{i+1}}$, called twice per level as diffusers': the first call returns the
    Euler half step to the midpoint, the second the full step with the midpoint's slope.
    ``timesteps`` interleave the midpoints' (fractional) training steps."""

    _compatibles = KARRAS_COMPATIBLES
    _prediction_types = ("epsilon", "v_prediction")
    solver = DPM2()
    _round_karras = True

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        self._register_config(**{k: v for k, v in locals().items() if k != "self"})
        self._setup()

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One of the two calls of a level (see `SigmaScheduler.step`)."""
        return SigmaScheduler.step(self, model_output, timestep, sample, None, return_dict)

    def _midpoints(self, sigmas: Tensor) -> Tensor:
        return sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp()

    def _layout(self, sigmas: Tensor, timesteps: np.ndarray, device) -> None:
        if self._ramp == "karras" and self._round_karras:
            timesteps = timesteps.round()
        interpol = self._midpoints(sigmas)
        self.sigmas = _repeat(sigmas)
        self.sigmas_interpol = _repeat(interpol)
        ts = torch.from_numpy(timesteps)
        ti = torch.from_numpy(sigma_to_timestep(interpol.numpy(), np.log(self._table))).to(ts.dtype)
        pairs = self._pairs(ti, ts)
        self.timesteps = torch.cat([ts[:1], pairs]).to(device)
        inputs = self.sigmas[: len(self.timesteps)].clone()
        inputs[1::2] = self._stage_inputs()[: len(inputs[1::2])]
        self._input_sigmas = inputs

    def _pairs(self, ti: Tensor, ts: Tensor) -> Tensor:
        return torch.stack((ti[1:-1, None], ts[1:, None]), dim=-1).flatten()

    def _stage_inputs(self) -> Tensor:
        return self.sigmas_interpol[1::2]


class KDPM2AncestralDiscreteScheduler(KDPM2DiscreteScheduler):
    r"""DPM2 ancestral (`sdelab.DPM2Ancestral`, $\eta = 1$): the DPM2 step down to
    $s_\downarrow$ (midpoint $\sqrt{s_i s_\downarrow}$), then fresh noise of std $s_\uparrow$
    drawn from ``generator`` on the second call of each level, after both model calls, as
    diffusers draws it (the same numbers for the same generator)."""

    solver = DPM2Ancestral(eta=1.0)
    _round_karras = True

    def _midpoints(self, sigmas: Tensor) -> Tensor:
        nxt = sigmas.roll(-1)
        nxt[-1] = 0.0
        up = (nxt**2 * (sigmas**2 - nxt**2) / sigmas**2) ** 0.5
        down = (nxt**2 - up**2) ** 0.5
        down[-1] = 0.0
        interpol = sigmas.log().lerp(down.log(), 0.5).exp()
        interpol[-2:] = 0.0
        return interpol

    def _pairs(self, ti: Tensor, ts: Tensor) -> Tensor:
        return torch.stack((ti[:-2, None], ts[1:, None]), dim=-1).flatten()

    def _stage_inputs(self) -> Tensor:
        return self.sigmas_interpol[0::2]

    def step(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One of the two calls of a level (see `SigmaScheduler.step`)."""
        return SigmaScheduler.step(self, model_output, timestep, sample, generator, return_dict)
