r"""Classifier guidance (Song et al. 2021, Sec. 5 and App. I.1, eq. 14; Dhariwal & Nichol 2021,
Sec. 4): sample $p_t(x \mid y) \propto p_t(x)\,p_t(y \mid x)^{\gamma}$ with the score

$$ \nabla_x \log p_t(x \mid y) = s(x, t) + \gamma\,\nabla_x \log p_t(y \mid x), $$

$\gamma$ = ``scale`` ($\gamma = 1$: the exact conditional score when $s$ and the time-dependent
classifier $\log p_t(y \mid x)$ are exact). The gradient comes from autograd through
``log_prob``; the wrapped score is an ordinary score, so every solver honours it, adaptive
ones included. Cost: one evaluation of ``log_prob`` and its backward pass per score call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..sde.base import SDE
from .base import Bound, Condition, check_scale

__all__ = ["ClassGuidance", "GuidedScore"]


@dataclass(frozen=True, eq=False)
class ClassGuidance(Condition):
    r"""Classifier guidance: the score $s(x, t) + \gamma\,\nabla_x \log p_t(y \mid x)$
    (module docs of `sdelab.conditioning.guidance`).

    Args:
        log_prob: ``log_prob(x, t) -> (B,)``, a time-dependent classifier's $\log p_t(y \mid x)$
            of the wanted label $y$ (e.g. one column of the oracle's exact classifier),
            differentiable in ``x``; ``t`` is a Python float or a (B,) tensor.
        scale: the guidance weight $\gamma$ (finite; 1 is the exact conditional).
    """

    log_prob: Callable[[Tensor, object], Tensor]
    scale: float = 1.0

    fixed_grid_only: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not callable(self.log_prob):
            raise TypeError(
                f"log_prob must be callable as log_prob(x, t) -> (B,), got "
                f"{type(self.log_prob).__name__}"
            )
        object.__setattr__(self, "scale", check_scale("scale", self.scale))

    def bind(self, sde: SDE, x: Tensor, score) -> Bound:
        return Bound(GuidedScore(score, self.log_prob, self.scale))


class GuidedScore:
    r"""$s(x, t) + \gamma\,\nabla_x \log p_t(y \mid x)$ as a score callable."""

    def __init__(self, score, log_prob, scale: float) -> None:
        self.score, self.log_prob, self.scale = score, log_prob, scale

    def __call__(self, x: Tensor, t) -> Tensor:
        s = self.score(x, t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = self.log_prob(xg, t)
            if lp.shape != (x.shape[0],):
                raise ValueError(
                    f"log_prob(x, t) must return shape (B,) = ({x.shape[0]},), one log-probability "
                    f"per sample, got {tuple(lp.shape)}"
                )
            (grad,) = torch.autograd.grad(lp.sum(), xg)
        return torch.add(s, grad, alpha=self.scale)
