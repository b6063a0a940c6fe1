"""`LinearObservation`: a linear measurement $y = A x + n$ of each sample (colorization)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive
from ..sde.base import SDE
from .base import Bound, Condition, as_float_tensor, check_scale, sample_shape
from .dps import DPS
from .imputation import Imputation, SubspacePart

__all__ = ["LinearObservation", "grayscale_matrix"]

_METHODS = ("imputation", "dps")


@dataclass(frozen=True, eq=False)
class LinearObservation(Condition):
    r"""A linear observation $y = A\,\mathrm{vec}(x) + n$, $n \sim \mathcal N(0, \sigma_y^2 I)$,
    of each sample $x$ (flattened to $d$ entries).

    ``method="imputation"`` (Song et al. 2021, App. I.3, colorization) works in the
    orthonormal basis of $A$'s row space: those coordinates are replaced by the observation
    perturbed to the state's time after every step, the orthogonal rest is kept, and at the
    end $A x = y$ (up to rounding; `sdelab.conditioning.imputation`). It treats $y$ as
    noise-free (the method has no noise model). ``method="dps"`` is diffusion posterior
    sampling (Chung et al. 2023; `sdelab.conditioning.dps`) with step size ``scale``.

    Colorization: `LinearObservation.grayscale` builds $A$, the channel average of Song et
    al.'s code, from a grey-scale image.

    Args:
        A: the observation matrix, shape (m, d) with $d$ the number of entries of a sample.
        y: the observation, shape (m,) (shared by the batch) or (B, m).
        noise_std: $\sigma_y \ge 0$.
        method: ``"imputation"`` or ``"dps"``.
        scale: DPS's step size $\zeta \ge 0$ (finite; unused by imputation).
    """

    A: Tensor
    y: Tensor
    noise_std: float = 0.0
    method: str = "imputation"
    scale: float = 1.0

    def __post_init__(self) -> None:
        A, y = as_float_tensor("A", self.A), as_float_tensor("y", self.y)
        if A.ndim != 2 or 0 in A.shape:
            raise ValueError(f"A must be a matrix of shape (m, d), got shape {tuple(A.shape)}")
        if y.ndim not in (1, 2) or y.shape[-1] != A.shape[0]:
            raise ValueError(
                f"y must have shape (m,) or (B, m) with m = {A.shape[0]} rows of A (shape "
                f"{tuple(A.shape)}), got {tuple(y.shape)}"
            )
        check_positive("noise_std", self.noise_std, allow_zero=True)
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        object.__setattr__(self, "scale", check_scale("scale", self.scale, allow_negative=False))
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "y", y)

    @classmethod
    def grayscale(cls, y: Tensor, channels: int = 3, **options: Any) -> LinearObservation:
        r"""Colorization: observe the grey-scale image $y = \frac1C \sum_c x_c$ of samples of
        shape (C, H, W) (the channel average, as Song et al.'s colorization code).

        Args:
            y: the grey image, shape (H, W) (shared) or (B, H, W).
            channels: $C$.
            **options: ``noise_std``, ``method``, ``scale`` as for `LinearObservation`.
        """
        y = as_float_tensor("y", y)
        if y.ndim not in (2, 3):
            raise ValueError(
                f"y must be a grey image of shape (H, W) or (B, H, W), got {tuple(y.shape)}"
            )
        pixels = y.shape[-1] * y.shape[-2]
        A = grayscale_matrix(pixels, channels, dtype=y.dtype, device=y.device)
        return cls(A, y.reshape(*y.shape[:-2], pixels), **options)

    def bind(self, sde: SDE, x: Tensor, score) -> Bound:
        d = x[0].numel()
        if self.A.shape[1] != d:
            raise ValueError(
                f"A must have d = {d} columns, one per entry of a sample of shape "
                f"{tuple(x.shape[1:])}, got shape {tuple(self.A.shape)}"
            )
        y = sample_shape("y", self.y, x, (self.A.shape[0],))
        if self.method == "dps":
            return DPS(sde, score, self.A.to(x), y.to(x), self.scale)
        return Imputation(sde, score, _row_space(self.A, y, x))


def _row_space(A: Tensor, y: Tensor, x: Tensor) -> SubspacePart:
    r"""The orthonormal basis $V_r$ of $A$'s row space and the observed coordinates
    $z_y = S_r^{-1} U_r^\top y$ (thin SVD in float64, rank by the usual tolerance)."""
    U, S, Vh = torch.linalg.svd(A.double(), full_matrices=False)
    r = int((S > S[0] * max(A.shape) * torch.finfo(torch.float64).eps).sum())
    coords = (y.double() @ U[:, :r]) / S[:r]
    return SubspacePart(coords.to(x), Vh[:r].T.contiguous().to(x))


def grayscale_matrix(pixels: int, channels: int = 3, *, dtype=None, device=None) -> Tensor:
    r"""$A = \frac1C\,[I_P\ \cdots\ I_P]$, shape (P, C P): the channel average of an image of
    shape (C, H, W) flattened channel-major, $P = HW$."""
    eye = torch.eye(pixels, dtype=dtype, device=device) / channels
    return eye.repeat(1, channels)
