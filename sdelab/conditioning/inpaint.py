"""`Inpaint`: some coordinates of each sample are observed exactly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import _short, check_int
from ..sde.base import SDE
from .base import Bound, Condition, as_float_tensor, sample_shape
from .imputation import Imputation, MaskedPart
from .repaint import RePaint

__all__ = ["Inpaint"]

_METHODS = ("imputation", "repaint")


@dataclass(frozen=True, eq=False)
class Inpaint(Condition):
    r"""Inpainting: the coordinates where ``mask`` is true are observed, $x_{\text{known}} = y$;
    sample the rest (Song et al. 2021, App. I.2; Lugmayr et al. 2022).

    ``method="imputation"`` replaces the known part by $y$ perturbed to the state's time after
    every step (`sdelab.conditioning.imputation`); ``"repaint"`` adds RePaint's resampling
    jumps (`sdelab.conditioning.repaint`). Either way the known coordinates of the result
    equal ``y`` exactly (set at the end, after ``denoise``).

    Args:
        y: the observation, shaped like one sample (shared by the batch) or like the batch;
            entries where ``mask`` is false are ignored.
        mask: boolean (or 0/1) tensor of ``y``'s shape, or of one sample's shape; true marks
            a known coordinate.
        method: ``"imputation"`` or ``"repaint"``.
        jump_length: RePaint's $L$, grid steps per jump (integer >= 1).
        jump_n_sample: RePaint's $R$, visits of each jump point (integer >= 1; 1 = no jumps).
    """

    y: Tensor
    mask: Tensor
    method: str = "imputation"
    jump_length: int = 10
    jump_n_sample: int = 10

    def __post_init__(self) -> None:
        y = as_float_tensor("y", self.y)
        mask = torch.as_tensor(self.mask)
        if mask.dtype != torch.bool:
            if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError(f"mask must be boolean or hold only 0 and 1, got {_short(mask)}")
            mask = mask != 0
        if mask.ndim > y.ndim or tuple(mask.shape) != tuple(y.shape[y.ndim - mask.ndim :]):
            raise ValueError(
                f"mask must have y's shape {tuple(y.shape)} or that of one sample, got "
                f"{tuple(mask.shape)}"
            )
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        check_int("jump_length", self.jump_length)
        check_int("jump_n_sample", self.jump_n_sample)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "mask", mask)

    def bind(self, sde: SDE, x: Tensor, score) -> Bound:
        event = tuple(x.shape[1:])
        mask = sample_shape("mask", self.mask, x, event).to(x.device)
        known = MaskedPart(sample_shape("y", self.y, x, event).to(x), mask)
        if self.method == "repaint":
            return RePaint(sde, score, known, self.jump_length, self.jump_n_sample)
        return Imputation(sde, score, known)
