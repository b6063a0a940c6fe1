r"""UniPC: the unified predictor (UniP) and corrector (UniC) of Zhao et al. 2023."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..sde.base import SDE
from ._exp import (
    Coeffs,
    coeffs,
    data_prediction,
    multistep_order,
    noise_prediction,
    push,
    require_linear,
)
from .grid import GridSolver, Step

__all__ = ["UniPC"]

_VARIANTS = ("bh1", "bh2")
_PREDICTS = ("data", "noise")


class _State(NamedTuple):
    history: tuple[tuple[Coeffs, Tensor], ...]  # (coefficients, model output), oldest first
    x_prev: Tensor | None  # the state the last UniP step started from
    prev_order: int  # the order of the last UniP step
    correct: bool  # whether UniC corrects the last UniP step (False after a corrector moved x)


def _phi_moments(hh: float, n: int) -> list[float]:
    r"""$g_i = i!\,\hat h\,\varphi_{i+1}(\hat h)$ for $i = 1, \dots, n$, by the recursion
    $\hat h\,\varphi_{k+1}(\hat h) = \varphi_k(\hat h) - 1/k!$, $\varphi_1(z) = (e^z - 1)/z$."""
    out, c, fact = [], math.expm1(hh) / hh - 1.0, 1.0
    for i in range(1, n + 1):
        out.append(fact * c)
        fact *= i + 1
        c = c / hh - 1.0 / fact
    return out


@dataclass(frozen=True)
class UniPC(GridSolver):
    r"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
    Sampling of Diffusion Models", NeurIPS), multistep, on the probability-flow ODE of any
    linear SDE, as diffusers' ``UniPCMultistepScheduler``.

    With the data prediction $D$ (``predict="data"``, the default, diffusers' ``predict_x0``)
    and the half log-SNR $\lambda$, a step from $s_0$ to $t$ with $h = \lambda_t - \lambda_{s_0}$,
    $\hat h = -h$, and the earlier model outputs $D_{s_k}$ at $r_k = (\lambda_{s_k} -
    \lambda_{s_0})/h$ is (Zhao et al. 2023, Alg. 2, the "B(h)" form)

    $$ \tilde x_t = \frac{\sigma_t}{\sigma_{s_0}}\,x_{s_0} - m_t\,(e^{\hat h} - 1)\,D_{s_0}
       - m_t\,B(h) \sum_{k=1}^{p-1} a_k\,\frac{D_{s_k} - D_{s_0}}{r_k}
       \qquad \text{(UniP-}p\text{)}, $$

    $$ x^c_t = \frac{\sigma_t}{\sigma_{s_0}}\,x^c_{s_0} - m_t\,(e^{\hat h} - 1)\,D_{s_0}
       - m_t\,B(h) \Big(\sum_{k=1}^{p-1} a^c_k\,\frac{D_{s_k} - D_{s_0}}{r_k}
       + a^c_p\,\big(D(\tilde x_t, t) - D_{s_0}\big)\Big) \qquad \text{(UniC-}p\text{)}, $$

    with $B(h) = \hat h$ (``"bh1"``) or $e^{\hat h} - 1$ (``"bh2"``) and the weights solving
    $\sum_k a_k r_k^{i-1} = i!\,\hat h\,\varphi_{i+1}(\hat h)/B(h)$, $i = 1, \dots$
    (UniP: $p - 1$ equations in $r_1..r_{p-1}$; UniC: $p$ equations with $r_p = 1$). A single
    weight is set to its $h \to 0$ limit $1/2$ (UniP-2 and UniC-1), as in the paper's code and
    diffusers; UniP-2 with ``"bh2"`` is then DPM-Solver++(2M). ``predict="noise"`` is the same
    with the noise prediction $\hat\epsilon$, $\hat h = h$, $m_t/m_{s_0}$ in place of
    $\sigma_t/\sigma_{s_0}$ and $\sigma_t$ in place of $m_t$ (diffusers' ``predict_x0=False``).

    **The loop.** Each step evaluates the model once, at the predictor's output $\tilde x_t$;
    that evaluation feeds UniC (which replaces $\tilde x_t$ by $x^c_t$, with the order $p$ of
    the UniP step it corrects) and is the newest history point of the next UniP step, which
    starts from $x^c_t$. So UniC corrects every step but the last (no extra evaluation: the
    last UniP output is returned as is), and the history holds model outputs at the
    uncorrected states, as in the paper. Orders: warm-up $p = 1, 2, \dots$ up to ``order``; with
    ``lower_order_final`` (diffusers' default, on every grid length) $p \le$ the steps left,
    so 1 on the last step, 2 on the one before. ``disable_corrector`` lists step indices
    whose UniP result is not corrected (diffusers' ``disable_corrector``).

    **Accuracy.** UniP-$p$ has order $p$; UniC raises it by one (Zhao et al. 2023,
    Theorem 3.3): `effective_order` is ``order + 1`` (the field ``order`` is the UniP order,
    diffusers' ``solver_order``). See `effective_order` for the lower-order end steps.

    **With a corrector** (`PC`): a corrector that moved $x$ replaces UniC for that step (UniC
    would overwrite the moved state by a recomputation from the previous one); the history is
    kept and the next step evaluates the model at the moved state.

    **diffusers' ``final_sigmas_type="zero"``** is sdelab's ``denoise=True``: its last step is
    first order to $\sigma = 0$, i.e. $D(x, t)$. diffusers counts it in its lower-order final
    steps; ``final_denoise=True`` does the same (the final orders end one step later).

    Args:
        order: the UniP order $p_{\max}$, 1, 2 or 3 (diffusers' ``solver_order``).
        variant: ``"bh1"`` or ``"bh2"`` (diffusers' ``solver_type``).
        predict: ``"data"`` ($D$, default) or ``"noise"`` ($\hat\epsilon$).
        lower_order_final: lower the order on the last steps (default True).
        disable_corrector: indices of steps whose result UniC does not correct.
        final_denoise: the run ends with ``denoise=True`` and the final orders count that step.
    """

    order: int = 2
    variant: str = "bh2"
    predict: str = "data"
    lower_order_final: bool = True
    disable_corrector: tuple[int, ...] = ()
    final_denoise: bool = False
    stochastic = False
    nfe_per_step = 1

    def __post_init__(self) -> None:
        if isinstance(self.order, bool) or self.order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got order={self.order!r}")
        if self.variant not in _VARIANTS:
            raise ValueError(f"UniPC variant must be one of {_VARIANTS}, got {self.variant!r}")
        if self.predict not in _PREDICTS:
            raise ValueError(f"UniPC predict must be one of {_PREDICTS}, got {self.predict!r}")
        for name in ("lower_order_final", "final_denoise"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"UniPC {name} must be a bool, got {getattr(self, name)!r}")
        try:
            steps = tuple(self.disable_corrector)
        except TypeError:
            steps = (self.disable_corrector,)
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in steps):
            raise ValueError(
                "UniPC disable_corrector must be a sequence of step indices (integers >= 0), "
                f"got {self.disable_corrector!r}"
            )
        object.__setattr__(self, "disable_corrector", steps)

    @property
    def effective_order(self) -> int:
        """The order of accuracy with UniC, ``order + 1`` (Zhao et al. 2023, Theorem 3.3).

        Measured on the oracle (VP, log-SNR grid, 160-640 steps, ``lower_order_final=False``):
        2.0, 3.0 and 4.0 for orders 1, 2, 3. The lower-order first and last steps (UniP-1 with
        UniC-1 at $T$; the uncorrected last step, UniP-1 with ``lower_order_final``) act where
        $D$ barely moves along a VP path, so they show only for very many steps; strictly
        asymptotically they cap the order at 3, and at 2 with ``lower_order_final``."""
        return self.order + 1

    @property
    def convergence_order(self) -> int:
        """What the pathwise error falls with: `effective_order`, capped at 3 with
        ``lower_order_final`` (its uncorrected first-order last step; measured on the oracle,
        VP, log-SNR grid, 80-640 steps: 2.0, 3.0, 3.1 for orders 1, 2, 3,
        tests/test_fast_orders.py)."""
        return min(self.effective_order, 3) if self.lower_order_final else self.effective_order

    def init(self, sde: SDE, x: Tensor, times: list[float]) -> _State:
        require_linear(sde, "UniPC")
        return _State((), None, 0, False)

    def step(
        self,
        sde: SDE,
        score,
        x: Tensor,
        step: Step,
        state: _State,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, _State]:
        c = coeffs(sde, step.t)
        model = data_prediction if self.predict == "data" else noise_prediction
        out = model(score, x, c)
        if state.correct and step.index - 1 not in self.disable_corrector:
            nodes = state.history[-state.prev_order :]
            x = self._update(state.x_prev, nodes, c, out)  # UniC
        history = push(state.history, (c, out), self.order)
        remaining = step.remaining + self.final_denoise if self.lower_order_final else None
        p = multistep_order(self.order, len(history), remaining)
        x_next = self._update(x, history[-p:], coeffs(sde, step.t_next), None)  # UniP
        return x_next, _State(history, x, p, True)

    def after_correction(self, state: _State) -> _State:
        return state._replace(correct=False)

    def _update(
        self, x: Tensor, nodes: tuple[tuple[Coeffs, Tensor], ...], ct: Coeffs, new: Tensor | None
    ) -> Tensor:
        """UniP (``new`` is None) or UniC (``new``: the model output at ``ct``) from the newest
        node to ``ct``, with the earlier nodes as history."""
        c0, m0 = nodes[-1]
        h = ct.lam - c0.lam
        if self.predict == "data":
            hh, ratio, scale = -h, ct.sigma / c0.sigma, ct.m
        else:
            hh, ratio, scale = h, ct.m / c0.m, ct.sigma
        rs = [(ck.lam - c0.lam) / h for ck, _ in reversed(nodes[:-1])]
        diffs = [(mk - m0) / r for (_, mk), r in zip(reversed(nodes[:-1]), rs, strict=True)]
        if new is not None:
            rs.append(1.0)
            diffs.append(new - m0)
        h_phi_1 = math.expm1(hh)
        x_next = ratio * x - (scale * h_phi_1) * m0
        if not diffs:
            return x_next
        b_h = hh if self.variant == "bh1" else h_phi_1
        if len(rs) == 1:
            weights = [0.5]
        else:
            g = [gi / b_h for gi in _phi_moments(hh, len(rs))]
            vandermonde = np.vander(np.array(rs), increasing=True).T  # row i: r_k^i
            weights = np.linalg.solve(vandermonde, np.array(g)).tolist()
        correction = sum(w * d for w, d in zip(weights, diffs, strict=True))
        return x_next - (scale * b_h) * correction
