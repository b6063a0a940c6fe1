r"""Forward simulation with Euler-Maruyama: the reference path for tests and tutorials."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int, check_time
from .base import ItoSDE

__all__ = ["euler_maruyama_step", "simulate"]


def euler_maruyama_step(x: Tensor, drift: Tensor, noise, dt: float, dw: Tensor) -> Tensor:
    r"""One Euler-Maruyama step $x + f\,\Delta t + G\,\Delta W$ (Kloeden & Platen 1992, 9.1).

    ``dt`` may be negative (a step backwards in time); ``dw`` is the Brownian increment, of
    variance $|\Delta t|$. This is the one place the update is written: the forward simulator
    and the reverse-time Euler-Maruyama predictor both call it.
    """
    out = torch.add(x, drift, alpha=dt)  # x + dt * drift in one kernel
    if isinstance(noise, Tensor):
        return torch.addcmul(out, noise, dw)  # out + noise * dw in one kernel
    return torch.add(out, dw, alpha=noise) if isinstance(dw, Tensor) else out + noise * dw


def simulate(
    sde: ItoSDE,
    x0: Tensor,
    steps: int,
    *,
    t0: float = 0.0,
    t1: float | None = None,
    dw: Tensor | None = None,
    generator: torch.Generator | None = None,
    return_path: bool = False,
) -> Tensor:
    r"""Integrate $\mathrm{d}x = f\,\mathrm{d}t + G\,\mathrm{d}w$ forward from ``t0`` to ``t1``
    (default $T$) with ``steps`` equal Euler-Maruyama steps.

    Args:
        dw: the Brownian increments, shape ``(steps, *x0.shape)``, each of variance
            $\Delta t$; pass them to share one Brownian path between step sizes
            (convergence-order tests). Drawn from ``generator`` if not given.
        return_path: return all ``steps + 1`` states stacked along a new first dimension.
    """
    steps = check_int("steps", steps)
    t1 = sde.T if t1 is None else t1
    t0 = check_time(t0, sde.T, name="t0")
    t1 = check_time(t1, sde.T, name="t1")
    if not t0 < t1:
        raise ValueError(f"t0 must be smaller than t1, got t0={t0!r}, t1={t1!r}")
    dt = (t1 - t0) / steps
    if dw is None:
        dw = torch.randn(
            (steps, *x0.shape), generator=generator, device=x0.device, dtype=x0.dtype
        ) * math.sqrt(dt)
    elif dw.shape != (steps, *x0.shape):
        raise ValueError(
            f"dw must have shape (steps, *x0.shape) = {(steps, *x0.shape)}, got {tuple(dw.shape)}"
        )
    x = x0
    path = [x0] if return_path else None
    for i in range(steps):
        t = min(t0 + i * dt, t1)
        x = euler_maruyama_step(x, sde.drift(x, t), sde.noise(x, t), dt, dw[i])
        if path is not None:
            path.append(x)
    return torch.stack(path) if path is not None else x
