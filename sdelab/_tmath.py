"""Elementary functions that accept a Python float or a tensor and keep the input's kind.

Time coefficients (beta(t), sigma(t), the marginal std, ...) are written once with these, so a
fixed-grid sampler can pass a Python float ``t`` (no tensor is allocated, no device is touched)
while a batch of times ``t`` of shape (B,) gives tensors of shape (B,).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Num = float | Tensor


def exp(v: Num) -> Num:
    return torch.exp(v) if isinstance(v, Tensor) else math.exp(v)


def expm1(v: Num) -> Num:
    return torch.expm1(v) if isinstance(v, Tensor) else math.expm1(v)


def log(v: Num) -> Num:
    return torch.log(v) if isinstance(v, Tensor) else math.log(v)


def log1p(v: Num) -> Num:
    return torch.log1p(v) if isinstance(v, Tensor) else math.log1p(v)


def softplus(v: Num) -> Num:
    r"""$\log(1 + e^v)$, without overflow for large $v$."""
    if isinstance(v, Tensor):
        return torch.nn.functional.softplus(v)
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def sqrt(v: Num) -> Num:
    return torch.sqrt(v) if isinstance(v, Tensor) else math.sqrt(v)


def clamp_min(v: Num, lo: float) -> Num:
    return torch.clamp_min(v, lo) if isinstance(v, Tensor) else max(v, lo)


def like_time(value: float, t: Num) -> Num:
    """The constant ``value`` with the kind and shape of ``t``."""
    return torch.full_like(t, value) if isinstance(t, Tensor) else value


def bcast(c: Num, x: Tensor) -> Num:
    """View a per-sample coefficient of shape (B,) as (B, 1, ..., 1) so it broadcasts over x.

    Python floats and 0-d tensors are returned unchanged (they broadcast already).
    """
    if isinstance(c, Tensor) and c.ndim == 1:
        return c.reshape(c.shape[0], *([1] * (x.ndim - 1)))
    return c
