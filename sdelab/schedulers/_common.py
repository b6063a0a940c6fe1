"""Pieces shared by the two diffusers-compatible schedulers: the time grid and input checks."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import _short, check_int, check_positive


def time_grid(n: int, eps: float, device: torch.device | str | None) -> Tensor:
    r"""diffusers' sampling grid: $t_i = 1 - i\,(1 - \epsilon)/(n - 1)$, $i = 0, \dots, n-1$,
    i.e. ``torch.linspace(1, eps, n)`` (decreasing, from $T = 1$ to $\epsilon$)."""
    n = check_int("num_inference_steps", n)
    return torch.linspace(1.0, eps, n, device=device)


def check_eps(name: str, eps: float) -> float:
    """``sampling_eps`` must lie in (0, 1)."""
    v = check_positive(name, eps)
    if not v < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {eps!r}")
    return v


def check_model_output(name: str, out: Tensor, sample: Tensor, sample_name: str) -> Tensor:
    """``out`` must be a tensor of exactly ``sample``'s shape (diffusers broadcasts silently)."""
    if not isinstance(out, Tensor) or out.shape != sample.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"{name} must be a tensor shaped like {sample_name} {tuple(sample.shape)}, got {got}"
        )
    return out


def check_per_sample(name: str, t: Tensor, batch: int) -> Tensor:
    """A 0-d tensor or one of shape (B,)."""
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
        raise ValueError(
            f"{name} must be a scalar or a tensor of shape ({batch},) (one per sample), got "
            f"{_short(t)}"
        )
    return t
