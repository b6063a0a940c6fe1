r"""Imputation (Song et al. 2021, App. I.2 and I.3): after every step of the reverse process,
replace the known part of the state by the observation perturbed to the state's time.

With an observation $y$ of the part $P x$ of $x$ (a mask, or an orthogonal projection onto
the row space of a linear observation $A$), step $i$ of any fixed-grid solver is followed by

$$ x_{t_{i+1}} \leftarrow (I - P)\,x_{t_{i+1}} + P\,\tilde y_{t_{i+1}}, \qquad
   \tilde y_t \sim p_{0t}(\,\cdot \mid y) = \mathcal N\big(m(t)\,y,\ \sigma(t)^2 I\big), $$

drawn afresh each step from the SDE's perturbation kernel. At the end the known part is set
to $y$ itself. The unknown part follows the unconditional score $s(x, t)$ evaluated with the
known part noised *independently of the unknown part's path*, so the method samples
$p(x_{\bar P} \mid y)$ only approximately: its bias is visible on a Gaussian mixture (see
Conditional generation in the docs). Where the paper's code perturbs to the step's start
time $t_i$, sdelab perturbs to $t_{i+1}$, the time the state is at; it replaces once per grid
step (after the corrector of a `PC`, where the paper's code replaces after the predictor and
after each corrector step).

**Colorization** (App. I.3) is the same with $P$ the projection onto the row space of $A$:
in the orthonormal basis $V_r$ of that space ($A = U_r S_r V_r^\top$, the thin SVD), the
coordinates $z = V_r^\top x$ are observed, $z_y = S_r^{-1} U_r^\top y$, and the rest is kept
(the paper's "decoupling" of the grey channel from two orthogonal colour channels).

Cost per step: a Gaussian draw for the known coordinates and one copy of the state for a
mask shared by the batch (a draw for every coordinate and a `torch.where` for per-sample
masks; two products with $V_r$ for a linear observation), no score evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sde.base import SDE, check_linear_sde
from ..solvers.grid import Step
from ..solvers.pc import gaussian_noise
from .base import Bound

__all__ = ["Imputation", "MaskedPart", "SubspacePart"]


class MaskedPart:
    """The known coordinates ``mask`` of x (shape (1 or B, ...)) with values ``y``.

    A mask shared by the batch is turned into the flat indices of its known coordinates once,
    so each step draws noise for those only and writes them with one indexed copy."""

    def __init__(self, y: Tensor, mask: Tensor) -> None:
        self.y, self.mask = y, mask
        self.index = None
        if mask.shape[0] == 1:  # shared: one host read here, none per step
            self.index = mask.reshape(-1).nonzero()[:, 0]
            self.known = y.reshape(y.shape[0], -1).index_select(1, self.index)

    def replace(self, x: Tensor, m: float, s: float, generator) -> Tensor:
        r"""$x$ with the known part replaced by $m\,y + s\,z$, $z \sim \mathcal N(0, I)$."""
        if self.index is None:
            known = gaussian_noise(x, generator).mul_(s).add_(self.y, alpha=m)
            return torch.where(self.mask, known, x)
        flat = x.reshape(x.shape[0], -1)
        # N(0, s^2) drawn directly (the scale fused into the draw), then the mean m y added
        z = flat.new_empty((flat.shape[0], self.index.shape[0]))
        z.normal_(0.0, s, generator=generator).add_(self.known, alpha=m)
        return flat.index_copy(1, self.index, z).view_as(x)

    def finish(self, x: Tensor) -> Tensor:
        return torch.where(self.mask, self.y, x)


class SubspacePart:
    r"""The coordinates $z = V^\top x$ of the flattened x in the orthonormal basis ``basis``
    $V$ (d, r), observed as ``coords`` $z_y$ (shape (1 or B, r))."""

    def __init__(self, coords: Tensor, basis: Tensor) -> None:
        self.coords, self.basis = coords, basis

    def _set(self, x: Tensor, z: Tensor) -> Tensor:
        """$x + V(z - V^\top x)$: the observed coordinates set to ``z``, the rest kept."""
        flat = x.reshape(x.shape[0], -1)
        return torch.addmm(flat, z - flat @ self.basis, self.basis.T).reshape(x.shape)

    def replace(self, x: Tensor, m: float, s: float, generator) -> Tensor:
        z = torch.empty((x.shape[0], self.basis.shape[1]), dtype=x.dtype, device=x.device).normal_(
            generator=generator
        )
        return self._set(x, z.mul_(s).add_(self.coords, alpha=m))

    def finish(self, x: Tensor) -> Tensor:
        return self._set(x, self.coords.expand(x.shape[0], -1))


class Imputation(Bound):
    """The imputation hook: after each step the known part is redrawn at ``step.t_next``."""

    def __init__(self, sde: SDE, score, known: MaskedPart | SubspacePart) -> None:
        super().__init__(score)
        check_linear_sde(sde, "imputation", "perturbation kernel p_0t(x_t | y)")
        self.known = known

    def after_step(
        self, sde: SDE, score, x: Tensor, x_next: Tensor, step: Step, generator
    ) -> Tensor:
        m, s = sde.marginal_coeffs(step.t_next)
        return self.known.replace(x_next, m, s, generator)

    def finish(self, x: Tensor) -> Tensor:
        return self.known.finish(x)
