r"""RePaint (Lugmayr, Danelljan, Romero, Yu, Timofte, Van Gool, "RePaint: Inpainting using
Denoising Diffusion Probabilistic Models", CVPR 2022, Algorithm 1 and Sec. 4.2): imputation
(the known part redrawn from $p_{0t}(\cdot \mid y)$ after every step) plus *resampling*:
after some steps the whole state is diffused forward again by ``jump_length`` grid steps and
denoised once more, so the unknown part can harmonise with the known one.

**The time schedule** is diffusers' ``RePaintScheduler.set_timesteps(N, jump_length,
jump_n_sample)``: with $L$ = ``jump_length`` and $R$ = ``jump_n_sample``, after reaching the
grid point of diffusers' timestep $j \in \{0, L, 2L, \dots\}$, $j < N - L$ (grid point
$N - j$ of sdelab's grid $t_0 = T > \dots > t_N = \epsilon$), the run jumps $L$ points back up
and comes down again, $R - 1$ times (`repaint_path` lists the grid points visited; the last
jump follows the final step).

**The jump** uses the SDE's exact forward transition between grid times, one grid step at a
time (`sdelab.LinearSDE.transition`): from $t$ to $t' > t$,

$$ x_{t'} = \frac{m(t')}{m(t)}\,x_t + \sqrt{\sigma(t')^2 - \frac{m(t')^2}{m(t)^2}\sigma(t)^2}\;z,
   \qquad z \sim \mathcal N(0, I), $$

DDPM's $x_t = \sqrt{1 - \beta_t}\,x_{t-1} + \sqrt{\beta_t}\,z$ for a VP SDE (exact for every
linear SDE: it maps $p_t$ to $p_{t'}$).

**Solvers with memory.** A jump invalidates a multistep history (its model outputs belong to
a path that no longer exists): after each jump the solver is restarted on the rest of the
grid as if the run began at the jump's top (its warm-up steps run again; `ConditionedSolver`).

Cost: each of the $\lfloor (N - 1)/L \rfloor$ jump points adds $(R - 1) L$ steps, so about
$R$ times the unconditional run's NFE for $L \ll N$ (diffusers' default $L = R = 10$).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..sde.base import SDE
from ..solvers.grid import Step
from ..solvers.pc import gaussian_noise
from .base import ConditionedSolver
from .imputation import Imputation

__all__ = ["RePaint", "jump_points", "repaint_path"]


def jump_points(steps: int, jump_length: int) -> frozenset[int]:
    """The grid step indices after which RePaint jumps: step $N - 1 - j$ for diffusers'
    timesteps $j = 0, L, 2L, \\dots < N - L$."""
    return frozenset(steps - 1 - j for j in range(0, steps - jump_length, jump_length))


def repaint_path(steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The grid points RePaint visits, from 0 ($T$) to ``steps`` ($\\epsilon$), each move
    one grid step down (a solver step) or up (a forward jump). Diffusers' ``timesteps`` (in
    units of ``num_train_timesteps // steps``) are ``[steps - p for p in path[1:]]``."""
    jumps, path = jump_points(steps, jump_length), [0]
    for i in range(steps):
        path.append(i + 1)
        if i in jumps:
            for _ in range(jump_n_sample - 1):
                path += list(range(i, i - jump_length, -1))
                path += list(range(i + 2 - jump_length, i + 2))
    return path


class RePaint(Imputation):
    """Imputation with RePaint's resampling jumps (module docs)."""

    def __init__(self, sde: SDE, score, known, jump_length: int, jump_n_sample: int) -> None:
        super().__init__(sde, score, known)
        self.jump_length, self.jump_n_sample = jump_length, jump_n_sample
        self._jumps: frozenset[int] | None = None

    def resample(
        self, solver: ConditionedSolver, sde: SDE, score, x: Tensor, step: Step, state, generator
    ):
        if self._jumps is None:
            self._jumps = jump_points(step.count, self.jump_length)
        if step.index not in self._jumps:
            return x, state
        top = step.index + 1 - self.jump_length
        for _ in range(self.jump_n_sample - 1):
            for p in range(step.index + 1, top, -1):  # forward, t_p -> t_{p-1}
                x = forward_jump(sde, x, solver.times[p], solver.times[p - 1], generator)
            inner, offset = solver.restart(sde, x, top)
            for j in range(top, step.index + 1):
                x, inner = solver.advance(
                    sde, score, x, solver.step_at(j), inner, offset, generator
                )
            state = (inner, offset)
        return x, state


def forward_jump(
    sde: SDE, x: Tensor, t: float, t_later: float, generator, noise: Tensor | None = None
) -> Tensor:
    r"""A draw of $x_{t'} \mid x_t$ under the forward SDE (module docs), ``t_later`` $> t$;
    ``noise``, a standard normal draw shaped like ``x``, replaces the draw from ``generator``."""
    alpha, v = sde.transition(t_later, t_later - t)
    if noise is not None:
        return torch.add(noise * math.sqrt(v), x, alpha=alpha)
    return gaussian_noise(x, generator, math.sqrt(v)).add_(x, alpha=alpha)
