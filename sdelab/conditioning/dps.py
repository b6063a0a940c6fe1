r"""Diffusion posterior sampling (Chung, Kim, McCann, Klasky, Ye, "Diffusion Posterior Sampling
for General Noisy Inverse Problems", ICLR 2023, Algorithm 1) for a linear observation
$y = A x_0 + n$, $n \sim \mathcal N(0, \sigma_y^2 I)$.

After the solver's step from $x_t$ to $x'_{t_{i+1}}$ the state moves along the gradient of the
data misfit of Tweedie's denoised estimate at the step's *start*,

$$ x_{t_{i+1}} = x'_{t_{i+1}} - \frac{\zeta}{\lVert y - A\,\hat x_0(x_t)\rVert}\,
   \nabla_{x_t} \lVert y - A\,\hat x_0(x_t)\rVert_2^2, \qquad
   \hat x_0(x_t) = \frac{x_t + \sigma(t)^2\,s(x_t, t)}{m(t)}, $$

with $\zeta$ = ``scale``. The step size $\zeta_i = \zeta / \lVert y - A\hat x_0\rVert$ is the
paper's choice for its experiments (Sec. 4 and App. C: "$\zeta_i = \zeta' / \lVert y -
\mathcal A(\hat x_0(x_i))\rVert$"), per sample; the gradient reaches $x_t$ through the score
by autograd. The noise level $\sigma_y$ enters only through $\zeta$ (the paper's
$1/\sigma_y^2$ is absorbed in it).

Cost per step: one extra score evaluation with autograd (counted in the NFE) and its
backward pass, about 2-3 times an unconditional step of a one-evaluation solver.
DPS is an approximation (it replaces $p_t(y \mid x_t)$ by $p(y \mid x_0 = \hat x_0)$); see
the bias table in the docs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _tmath as tm
from ..sde.base import SDE
from ..solvers._exp import coeffs, data_prediction, require_linear
from ..solvers.grid import Step
from .base import Bound

__all__ = ["DPS"]


class DPS(Bound):
    """The DPS hook for ``A`` (m, d) and ``y`` (1 or B, m) in the samples' dtype."""

    def __init__(self, sde: SDE, score, A: Tensor, y: Tensor, scale: float) -> None:
        super().__init__(score)
        require_linear(sde, "DPS")
        self.A, self.y, self.scale = A, y, scale

    def after_step(
        self, sde: SDE, score, x: Tensor, x_next: Tensor, step: Step, generator
    ) -> Tensor:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = data_prediction(score, xg, coeffs(sde, step.t))
            misfit = (self.y - x0.reshape(x.shape[0], -1) @ self.A.T).square().sum(1)
            (grad,) = torch.autograd.grad(misfit.sum(), xg)
        norm = misfit.detach().sqrt().clamp_min(torch.finfo(x.dtype).tiny)
        return x_next - grad * tm.bcast(self.scale / norm, grad)
