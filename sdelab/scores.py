r"""Turning models into scores.

A *score* in sdelab is any callable ``score(x, t) -> tensor shaped like x`` approximating
$\nabla_x \log p_t(x)$; ``t`` is a Python float or a tensor of shape (B,).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import _tmath as tm
from ._checks import Time, check_like, check_time_like
from .sde.base import SDE, LinearSDE

__all__ = ["NoiseScore", "score_from_noise", "time_batch"]


def time_batch(x: Tensor, t: Time) -> Tensor:
    """``t`` as a tensor of shape (B,) in ``x``'s dtype and device (what networks expect)."""
    if isinstance(t, Tensor):
        return t.expand(x.shape[0]) if t.ndim == 0 else t
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


class NoiseScore:
    r"""The score of a noise-prediction model: $s(x, t) = -\hat\epsilon(x, t) / \sigma(t)$.

    Made by `score_from_noise`.
    """

    def __init__(self, sde: SDE, eps_model: Callable[[Tensor, Tensor], Tensor]) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdelab SDE, got {type(sde).__name__}")
        if not callable(eps_model):
            raise TypeError(f"eps_model must be callable, got {type(eps_model).__name__}")
        self.sde = sde
        self.eps_model = eps_model

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        t = check_time_like(x, t, self.sde.T)
        if isinstance(self.sde, LinearSDE):  # sigma(t) alone, without forming m(t) x
            std = self.sde.std(t)
        else:
            _, std = self.sde.marginal(x, t)
        eps = self.eps_model(x, time_batch(x, t))
        check_like("eps_model", eps, x)
        return -eps / tm.bcast(std, x)

    def __repr__(self) -> str:
        return f"<score from noise model {self.eps_model!r} under {self.sde!r}>"


def score_from_noise(sde: SDE, eps_model: Callable[[Tensor, Tensor], Tensor]) -> NoiseScore:
    r"""Wrap a noise-prediction network $\hat\epsilon(x, t) \approx z$ (trained on
    $x_t = m(t)x_0 + \sigma(t) z$) as a score:

    $$ s(x, t) = -\frac{\hat\epsilon(x, t)}{\sigma(t)}. $$

    The model is called as ``eps_model(x, t)`` with ``t`` a tensor of shape (B,) in ``x``'s
    dtype and device, even when the sampler passes a Python float. The score is undefined at
    $t = 0$ where $\sigma(0) = 0$; samplers stop at ``eps > 0``.
    """
    return NoiseScore(sde, eps_model)
