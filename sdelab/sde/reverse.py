r"""The reverse-time SDE and the probability-flow ODE of a forward SDE.

This module imports nothing from ``sdelab.sde.base``: the forward `SDE` builds its reversal
(`SDE.reverse`) from here, so the dependency runs one way, base -> reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import Time, check_like, check_time_like

if TYPE_CHECKING:
    from .base import SDE

__all__ = ["ReverseSDE", "Score", "reverse_drift"]

Score = Callable[[Tensor, Time], Tensor]


def reverse_drift(
    sde: SDE, x: Tensor, t: Time, score: Tensor, probability_flow: bool = False
) -> Tensor:
    r"""The drift of the reverse-time SDE (eq. 6) or the probability-flow ODE (eq. 13) in
    forward-time form, for a score value ``score`` $= s(x, t)$ already evaluated:

    $$ f(x,t) - c\,g(t)^2\,s(x,t), \qquad c = 1 \text{ (SDE)}, \quad c = \tfrac12 \text{ (ODE)}. $$

    The one place the formula is written: `ReverseSDE.drift` and the Euler-Maruyama predictor
    call it (the predictor per step, without building a `ReverseSDE`).
    """
    g2 = sde.diffusion(t) ** 2
    c = 0.5 if probability_flow else 1.0
    if isinstance(g2, Tensor):
        return sde.drift(x, t) - tm.bcast(c * g2, x) * score
    return torch.sub(sde.drift(x, t), score, alpha=c * g2)  # one kernel for float t


class ReverseSDE:
    r"""The reverse-time SDE (Song et al. 2021, eq. 6)

    $$ \mathrm{d}x = \big[f(x,t) - g(t)^2\,\nabla_x \log p_t(x)\big]\,\mathrm{d}t
       + g(t)\,\mathrm{d}\bar w, $$

    or, with ``probability_flow=True``, the probability-flow ODE (eq. 13)

    $$ \mathrm{d}x = \big[f(x,t) - \tfrac12 g(t)^2\,\nabla_x \log p_t(x)\big]\,\mathrm{d}t, $$

    with the score $\nabla_x \log p_t$ replaced by ``score(x, t)``. Both run from $t = T$ down
    to 0: the `drift` is written in forward-time form, so a step of size $\Delta t > 0$
    *backwards* is $x \leftarrow x - \text{drift}\,\Delta t + \text{diffusion}\,\sqrt{\Delta t}\,z$.
    It has the same ``drift``/``diffusion`` interface as the forward `SDE`.
    """

    def __init__(self, sde: SDE, score: Score, probability_flow: bool = False) -> None:
        if isinstance(sde, ReverseSDE) or not all(
            callable(getattr(sde, name, None)) for name in ("drift", "diffusion")
        ):  # the forward interface, checked without importing SDE (see the module docs)
            raise TypeError(
                f"sde must be a forward sdelab SDE (drift(x, t), diffusion(t)), got "
                f"{type(sde).__name__}"
            )
        if not callable(score):
            raise TypeError(f"score must be callable as score(x, t), got {type(score).__name__}")
        self.sde = sde
        self.score = score
        self.probability_flow = bool(probability_flow)
        self.T = sde.T
        self.N = sde.N

    def score_at(self, x: Tensor, t: Time) -> Tensor:
        """Evaluate the score and check that it is shaped like ``x``."""
        s = self.score(x, t)
        check_like("score(x, t)", s, x)
        return s

    def drift(self, x: Tensor, t: Time, score: Tensor | None = None) -> Tensor:
        r"""$f(x,t) - c\,g(t)^2\,s(x,t)$ with $c = 1$ (SDE) or $c = \tfrac12$ (ODE).

        Pass a precomputed ``score`` to avoid evaluating the model again.
        """
        t = check_time_like(x, t, self.T)
        if score is None:
            score = self.score_at(x, t)
        return reverse_drift(self.sde, x, t, score, self.probability_flow)

    def diffusion(self, t: Time) -> Time:
        r"""$g(t)$ for the SDE, $0$ for the probability-flow ODE."""
        g = self.sde.diffusion(t)
        return g * 0.0 if self.probability_flow else g

    def noise(self, x: Tensor, t: Time) -> Tensor | float:
        r"""$g(t)$ broadcast over ``x`` (0 for the ODE)."""
        return tm.bcast(self.diffusion(check_time_like(x, t, self.T)), x)

    def __repr__(self) -> str:
        kind = "probability-flow ODE" if self.probability_flow else "reverse SDE"
        return f"<{kind} of {self.sde!r}>"
