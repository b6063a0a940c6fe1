r"""The native path: a diffusers-style model as an sdelab score ``score(x, t)``.

With it the same model runs through `sdelab.sample` with any sdelab solver (predictor-corrector,
probability-flow ODE, torchsde, ...) and through `sdelab.log_likelihood`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from .._checks import Time, check_positive, check_time_like
from ..scores import score_from_noise, time_batch
from ..sde.base import SDE
from ..sde.discrete import DiscreteVPSDE
from ..sde.ve import VESDE
from .pipelines import call_model

__all__ = ["DiffusersModelScore", "score_from_diffusers_model"]

_PREDICTIONS = ("score", "noise")


class DiffusersModelScore:
    r"""The score of a diffusers-style model under an SDE; made by `score_from_diffusers_model`."""

    def __init__(
        self, unet: Callable[..., Any], sde: SDE, prediction: str, time_scale: float
    ) -> None:
        self.unet = unet
        self.sde = sde
        self.prediction = prediction
        self.time_scale = time_scale
        self._by_sigma = isinstance(sde, VESDE)
        self._noise_score = score_from_noise(sde, self._model) if prediction == "noise" else None

    def condition(self, x: Tensor, t: Time) -> Tensor:
        r"""What the model is called with, shape (B,): $\sigma(t)$ (`VESDE.sigma`) for VE,
        ``time_scale`` $\cdot\, t$ otherwise."""
        tb = time_batch(x, t)
        return self.sde.sigma(tb) if self._by_sigma else tb * self.time_scale

    def _model(self, x: Tensor, t: Tensor) -> Tensor:
        return call_model(self.unet, x, self.condition(x, t))

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        t = check_time_like(x, t, self.sde.T)
        if self._noise_score is not None:
            return self._noise_score(x, t)
        return self._model(x, t)

    def __repr__(self) -> str:
        return f"<{self.prediction} model {type(self.unet).__name__} as a score under {self.sde!r}>"


def score_from_diffusers_model(
    unet: Callable[..., Any],
    sde: SDE,
    *,
    prediction: str | None = None,
    time_scale: float | None = None,
) -> DiffusersModelScore:
    r"""Wrap a diffusers-style model (a ``UNet2DModel`` or any ``unet(sample, c)`` returning a
    tensor or an object with ``.sample``) as an sdelab score $s(x, t)$.

    * VE (`sdelab.VESDE`), the default ``prediction="score"``: the model is a score network
      conditioned on the noise level, $s(x, t) = s_\theta(x, \sigma(t))$ with
      $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$ (`VESDE.sigma`), exactly how
      `ScoreSdeVePipeline` calls it.
    * VP / sub-VP, the default ``prediction="noise"``: the model predicts the noise,
      $s(x, t) = -\hat\epsilon_\theta(x, c\,t)/\sigma(t)$ with $c$ = ``time_scale`` and
      $\sigma(t)$ the SDE's marginal std (`sdelab.score_from_noise`), how
      `ScoreSdeVpPipeline` calls it.

    * `sdelab.DiscreteVPSDE` (a diffusers-trained DDPM-style model), ``prediction="noise"``
      and ``time_scale`` defaulting to $N - 1$: the model sees its training step
      $\tau = t\,(N-1)$ (fractional between steps).

    ``prediction`` can be set explicitly (``"score"`` or ``"noise"``) for other models.
    ``time_scale`` defaults to 1 (to $N - 1$ for a `DiscreteVPSDE`).
    The model is called with a tensor of shape (B,) in ``x``'s dtype and device.

    Example:
        ```python
        sde = pipe.scheduler.sde
        score = sdelab.score_from_diffusers_model(pipe.unet, sde)
        x = sdelab.sample(sde, score, sdelab.EulerMaruyama(), (4, 3, 32, 32), steps=500).x
        ```
    """
    if not callable(unet):
        raise TypeError(f"unet must be callable as unet(sample, t), got {type(unet).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdelab SDE, got {type(sde).__name__}")
    if prediction is None:
        prediction = "score" if isinstance(sde, VESDE) else "noise"
    if prediction not in _PREDICTIONS:
        raise ValueError(f"prediction must be one of {_PREDICTIONS}, got {prediction!r}")
    if time_scale is None:
        time_scale = float(sde.num_train_timesteps - 1) if isinstance(sde, DiscreteVPSDE) else 1.0
    time_scale = check_positive("time_scale", time_scale)
    return DiffusersModelScore(unet, sde, prediction, time_scale)
