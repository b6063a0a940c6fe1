r"""The one adapter between sdelab and ``torchsde.sdeint`` (Li et al. 2020; Kidger et al. 2021).

`TorchSDE` integrates the reverse-time SDE (Song et al. 2021, eq. 6)

$$ \mathrm{d}x = \big[f(x,t) - g(t)^2\,\nabla_x \log p_t(x)\big]\,\mathrm{d}t
   + g(t)\,\mathrm{d}\bar w, \qquad t: T \to \varepsilon, $$

with torchsde's Itô solvers, fixed-step or adaptive. torchsde needs increasing time and a
2-D state, so the adapter solves in $s = -t$ (from $-T$ to $-\varepsilon$) on the state
flattened to $(B, D)$:

$$ \mathrm{d}y = -b(y, -s)\,\mathrm{d}s + g(-s)\,\mathrm{d}W_s, \qquad
   b(x, t) = f(x, t) - g(t)^2 s_\theta(x, t), $$

where $b$ is `sdelab.sde.ReverseSDE.drift` (forward-time form) and $W_s$ is a Brownian motion
in $s$. Every `sdelab.SDE` has a diffusion $g(t)$ that does not depend on $x$, so the noise is
declared *additive* to torchsde: that selects its additive-noise schemes (``srk`` is Rößler's
SRA1, strong order 1.5 with two drift evaluations per step), and it is the truthful
declaration (torchsde's adaptive Euler warns that convergence is not guaranteed for
non-additive noise; with the noise declared additive that false warning never arises).

torchsde is in maintenance mode; everything it needs stays in this module.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_int, check_positive
from ..sde.base import SDE, LinearSDE
from .base import AdaptiveResult, AdaptiveSolver, CountingScore

__all__ = ["TorchSDE"]

#: torchsde's Itô methods for additive (and diagonal) noise, with their strong order on
#: additive noise (torchsde's own declarations: Euler and Milstein coincide there, ``g'=0``)
#: and the number of drift evaluations per step after this adapter's de-duplication.
METHODS: dict[str, dict[str, float]] = {
    "euler": {"strong_order": 1.0, "nfe_per_step": 1},
    "milstein": {"strong_order": 1.0, "nfe_per_step": 1},
    "srk": {"strong_order": 1.5, "nfe_per_step": 2},
}


@dataclass(frozen=True)
class TorchSDE(AdaptiveSolver):
    r"""The reverse-time SDE (Song et al. 2021, eq. 6) solved by ``torchsde.sdeint``.

    The adapter solves $\mathrm{d}y = -b(y,-s)\,\mathrm{d}s + g(-s)\,\mathrm{d}W_s$ in
    $s = -t \in [-T, -\varepsilon]$ on the flattened state (see the module docstring), with
    the noise declared additive ($g$ depends on $t$ only, as for VP, sub-VP and VE).

    Methods (torchsde's Itô solvers for additive noise):

    | method | scheme | strong order | score calls per step |
    | --- | --- | --- | --- |
    | ``"euler"`` | Euler-Maruyama | 1.0 (additive noise) | 1 |
    | ``"milstein"`` | Milstein (equals Euler here, $g' = 0$) | 1.0 | 1 |
    | ``"srk"`` | Rößler's SRA1 (Rößler 2010) | 1.5 | 2 |

    The default is ``"srk"``, adaptive with ``rtol = atol = 1e-3``. At equal score
    evaluations SRK's pathwise error on the reverse VP, sub-VP and VE SDEs is 7-16 times
    lower than Euler's (128-512 NFE) (e.g. VP, 256 NFE: 9.6e-4 vs 1.1e-2), and adaptive Euler needs 2-6
    times more NFE than adaptive SRK for the same tolerance (measured by
    ``benchmarks/convergence_orders.py``; tables in the "Adaptive SDE solving" concept page).
    Adaptive stepping is the default because it picks the step count itself (about 50 steps,
    ~300 NFE at the default tolerance); with a fixed step SRK is about twice as accurate per
    NFE and never synchronises with the host, so pass ``adaptive=False`` and ``steps`` for
    the fastest runs.

    **Stability.** With ``adaptive=False`` a step beyond the stable one gives *finite*
    garbage: on the tests' 2-D mixture with the exact score (sliced $W_2$ in data stds; noise
    floor about 0.1; ``benchmarks/stability_limits.py``) ``"srk"`` on VE is 50-1000 stds off
    below 8 steps and 1.8 at 10, at the floor from 15; on VP 6 at 2 steps, 0.8 at 3, at the
    floor from 5; ``"euler"`` is as `sdelab.EulerMaruyama` (VE 0.6 at 10 steps). SRA1's
    noise stage amplifies the increment by about $h\lambda$, so on VE it needs more steps
    than Euler, on VP fewer. `solve` therefore warns (``RuntimeWarning``) when `std_ratio`, the
    exact std of the method on $\mathcal N(0, I)$ data on this grid over the true one, is
    outside $[1/1.5, 1.5]$ (VE with $\sigma_{\max} = 50$: ``"srk"`` below 14 steps,
    ``"euler"`` below 11; VP: below 4), naming the next step count that passes; Python
    floats only, no sync. Adaptive stepping never needs it: at ``rtol = atol`` from ``1e-1``
    to ``1e-3`` it stays at the floor (100-400 NFE).

    Args:
        method: ``"euler"``, ``"milstein"`` or ``"srk"``.
        adaptive: torchsde's adaptive stepping: each attempt is one full step and two half
            steps (three steps' score evaluations), accepted when the RMS difference is within
            ``rtol * |y| + atol``; the error estimate crosses to the host once per attempt.
        rtol: relative tolerance of the adaptive controller (> 0).
        atol: absolute tolerance of the adaptive controller (> 0).
        dt: the fixed step (or initial step when adaptive) in $t$-units. Default:
            $(T - \varepsilon)/\text{steps}$ when ``sample`` is given ``steps``, else
            $(T - \varepsilon)/N$ with the SDE's $N$.
        dt_min: the smallest step the adaptive controller may take (torchsde warns when it
            has to).

    Notes:
        * NFE is the number of score evaluations, counted by `CountingScore`. torchsde calls
          the drift several times per step and re-evaluates it at stage points it has already
          seen (SRA1 recomputes its first stage, the adaptive controller starts the full step
          and the first half step from the same state, and ``sdeint`` calls the drift once at
          the start to check shapes); the adapter remembers the last few drift evaluations by
          the identity of the state tensor and the time, so each distinct $(x, t)$ costs one
          score call. The diffusion never calls the score.
        * Output times lie on the step grid, never between steps (torchsde interpolates
          linearly there): with a fixed step the trajectory holds every step; with
          ``adaptive=True`` a requested trajectory splits the integration at ``steps``
          (default 10) equal output intervals, each integrated to its end exactly, which
          restarts the step-size controller at each output time.
        * The Brownian motion is a ``torchsde.BrownianInterval`` whose entropy is drawn from
          ``generator`` (or from torch's global generator), so the same generator gives the
          same samples.
        * ``progress=True`` shows a tqdm bar of the time integrated so far, driven by the
          Brownian-motion queries, so the numerics do not change with it.

    References:
        Song et al. 2021 (arXiv 2011.13456), eq. 6; Rößler, "Runge-Kutta methods for the
        strong approximation of solutions of stochastic differential equations", SIAM J.
        Numer. Anal. 48 (2010); Li, Wong, Chen, Duvenaud, "Scalable gradients for stochastic
        differential equations", AISTATS 2020 (torchsde).
    """

    method: str = "srk"
    adaptive: bool = True
    rtol: float = 1e-3
    atol: float = 1e-3
    dt: float | None = None
    dt_min: float = 1e-5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"method must be one of torchsde's Itô methods for additive/diagonal noise "
                f"{sorted(METHODS)}, got {self.method!r}"
            )
        if not isinstance(self.adaptive, bool):
            raise TypeError(f"adaptive must be a bool, got {self.adaptive!r}")
        object.__setattr__(self, "rtol", check_positive("rtol", self.rtol))
        object.__setattr__(self, "atol", check_positive("atol", self.atol))
        object.__setattr__(self, "dt_min", check_positive("dt_min", self.dt_min))
        if self.dt is not None:
            object.__setattr__(self, "dt", check_positive("dt", self.dt))

    @property
    def strong_order(self) -> float:
        """The method's strong order on additive noise (torchsde's declaration)."""
        return METHODS[self.method]["strong_order"]

    def solve(
        self,
        sde: SDE,
        score: CountingScore,
        x: Tensor,
        t_start: float,
        t_end: float,
        *,
        steps: int | None,
        generator: torch.Generator | None,
        progress: bool,
        return_trajectory: bool,
    ) -> AdaptiveResult:
        r"""Integrate the reverse SDE from ``x`` at ``t_start`` down to ``t_end`` with torchsde.

        ``steps`` sets the (initial) step $(t_\text{start} - t_\text{end})/\text{steps}$
        unless the solver has its own ``dt``; `AdaptiveResult.steps` is the number of
        accepted steps.
        """
        import torchsde

        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdelab SDE, got {type(sde).__name__}")
        if not t_start > t_end:
            raise ValueError(f"t_start must exceed t_end, got {t_start!r} <= {t_end!r}")
        span = float(t_start) - float(t_end)
        if steps is not None:
            steps = check_int("steps", steps)
        dt = self.dt if self.dt is not None else span / (steps if steps is not None else sde.N)
        dt = min(dt, span)
        if not self.adaptive:
            dt = _fixed_step(span, dt)
            self._warn_if_unstable(sde, float(t_start), float(t_end), dt)

        bm = torchsde.BrownianInterval(
            t0=-float(t_start),
            t1=-float(t_end),
            size=(x.shape[0], x[0].numel()),
            dtype=x.dtype,
            device=x.device,
            entropy=_entropy(generator),
            levy_area_approximation="space-time" if self.method == "srk" else "none",
            dt=None if self.adaptive else dt,
        )
        return self._integrate(
            sde,
            score,
            x,
            t_start,
            t_end,
            dt=dt,
            bm=bm,
            n_out=(steps or 10) if return_trajectory else 1,
            progress=progress,
            return_trajectory=return_trajectory,
        )

    def _integrate(
        self,
        sde: SDE,
        score,
        x: Tensor,
        t_start: float,
        t_end: float,
        *,
        dt: float,
        bm,
        n_out: int = 1,
        progress: bool = False,
        return_trajectory: bool = False,
    ) -> AdaptiveResult:
        """`solve` with a given step and Brownian motion in $s = -t$ (convergence tests
        share one ``torchsde.BrownianInterval`` between step sizes)."""
        shape = x.shape
        y0 = x.reshape(shape[0], -1)
        span = float(t_start) - float(t_end)
        s0, s_end = -float(t_start), -float(t_end)
        if self.adaptive:
            outs = [s0 + span * k / n_out for k in range(n_out)] + [s_end]
        else:
            outs = _step_grid(s0, s_end, dt) if return_trajectory else [s0, s_end]
        counting = _CountingBrownian(bm, adaptive=self.adaptive, span=span, progress=progress)
        system = _ReverseForTorchsde(sde, score, shape)
        # sdeint draws one standard normal from torch's global generator to check g_prod's
        # shape; fork the RNG so that solving does not move the user's global random state.
        devices = [y0.device] if y0.device.type == "cuda" else []
        ys = [y0]
        try:
            with torch.random.fork_rng(devices=devices):
                if self.adaptive:  # one sdeint call per output interval: outputs are exact states
                    for a, b in itertools.pairwise(outs):
                        seg = torch.tensor([a, b], dtype=torch.float64)
                        ys.append(self._sdeint(system, ys[-1], seg, counting, min(dt, b - a))[-1])
                else:
                    ts = torch.tensor(outs, dtype=torch.float64)
                    ys.extend(self._sdeint(system, y0, ts, counting, dt)[1:])
        except AssertionError as err:  # torchsde asserts on a NaN error estimate
            if "nan" not in str(err).lower():
                raise
            raise self._nonfinite(score) from err
        finally:
            counting.close()

        result = AdaptiveResult(x=ys[-1].reshape(shape), steps=counting.accepted_steps())
        if return_trajectory:
            result.times = -torch.tensor(outs, dtype=x.dtype, device=x.device)
            result.trajectory = torch.stack(ys).reshape(len(ys), *shape)
        return result

    def _warn_if_unstable(self, sde: SDE, t_start: float, t_end: float, dt: float) -> None:
        """``RuntimeWarning`` when a fixed step is beyond the stable step (`std_ratio` off by
        more than `STD_RATIO_LIMIT`); Python floats only, so it costs no host sync."""
        if not isinstance(sde, LinearSDE):
            return
        times = [-s for s in _step_grid(-t_start, -t_end, dt)]
        ratio = std_ratio(sde, times, self.method)
        if 1 / STD_RATIO_LIMIT <= ratio <= STD_RATIO_LIMIT:
            return
        n = len(times) - 1
        while n < 4096 and not _stable(sde, t_start, t_end, n, self.method):
            n = max(n + 1, int(n * 1.1))
        warnings.warn(
            f"TorchSDE(method={self.method!r}, adaptive=False): the step dt={dt:.3g} "
            f"({len(times) - 1} steps) is beyond the stable step on {sde!r}: for N(0, I) data "
            f"and the exact score, {self.method!r} on this grid ends with {ratio:.3g} times the "
            f"true std, so expect finite but wrong samples; use at least {n} steps or "
            f"adaptive=True",
            RuntimeWarning,
            stacklevel=4,  # the caller of sample()
        )

    def _nonfinite(self, score) -> FloatingPointError:
        """The error for torchsde's NaN error estimate: the score's first non-finite output
        if there was one (raised by `CountingScore.check`), else the solver diverged."""
        where = f" (in torchsde's adaptive {self.method!r} integration)"
        if isinstance(score, CountingScore):
            score.check(lambda k: where)
        return FloatingPointError(
            f"torchsde's error estimate became NaN although every score evaluation was "
            f"finite{where}: the integration diverged; try smaller rtol/atol"
        )

    def _sdeint(self, system, y0: Tensor, ts: Tensor, bm, dt: float) -> Tensor:
        import torchsde

        return torchsde.sdeint(
            system,
            y0,
            ts,
            bm=bm,
            method=self.method,
            dt=dt,
            adaptive=self.adaptive,
            rtol=self.rtol,
            atol=self.atol,
            dt_min=self.dt_min,
        )


#: a fixed-step grid is flagged when `std_ratio` leaves [1/limit, limit]
STD_RATIO_LIMIT = 1.5


def std_ratio(sde: LinearSDE, times: list[float], method: str = "euler") -> float:
    r"""The stability test of a fixed grid: the std that ``method`` ends with on
    $\mathcal N(0, I)$ data with the exact score, over the true one (Python floats only).

    For such data $p_t = \mathcal N(0, v_t I)$ with $v_t = m(t)^2 + \sigma(t)^2$ and the
    reverse drift is linear, $b(x, t) = \lambda(t)\,x$ with $\lambda = a(t) + g(t)^2/v_t$
    (the reverse-SDE analogue of Dahlquist's test equation), so each step of size $h$ from
    $t_0$ maps the variance exactly, from $V_0 = \sigma_p^2$. Euler (and Milstein, the same
    here) with $z = h\lambda(t_0)$:

    $$ V \leftarrow (1 - z)^2\,V + g(t_0)^2 h . $$

    SRA1 (``"srk"``, torchsde's tableau) with $z_0 = h\lambda(t_0)$,
    $z_1 = h\lambda(t_0 - \tfrac34 h)$, $g_0 = g(t_0)$, $g_1 = g(t_0 - h)$ and the
    space-time Lévy area ($\operatorname{Var} = h^3/3$, covariance $h^2/2$ with the increment):

    $$ V \leftarrow \big(1 - \tfrac{z_0}3 - \tfrac{2z_1}3 + \tfrac{z_0 z_1}2\big)^2 V
       + h\big(\tfrac{c^2}3 + c\,g_1 + g_1^2\big), \qquad c = g_0 - g_1 - z_1 g_1 . $$

    The result is $\sqrt{V_N / v_\varepsilon}$ for the decreasing ``times``
    $T = t_0 > \dots > t_N = \varepsilon$. It matches torchsde's sample std on such data
    to about 1% (``tests/test_bad_inputs.py``); ``benchmarks/stability_limits.py`` measures
    mixtures.
    """

    def lam(t: float) -> float:  # the reverse drift's coefficient for N(0, I) data
        return sde.drift_coeff(t) + sde.diffusion(t) ** 2 / (
            sde.mean_coeff(t) ** 2 + sde.std(t) ** 2
        )

    var = sde.prior_std**2
    for t, t_next in itertools.pairwise(times):
        h = t - t_next
        g0 = sde.diffusion(t)
        if method == "srk":
            z0, z1, g1 = h * lam(t), h * lam(t - 0.75 * h), sde.diffusion(t_next)
            c = g0 - g1 - z1 * g1
            var = (1 - z0 / 3 - 2 * z1 / 3 + z0 * z1 / 2) ** 2 * var + h * (
                c * c / 3 + c * g1 + g1 * g1
            )
        else:
            var = (1.0 - h * lam(t)) ** 2 * var + g0 * g0 * h
    end = times[-1]
    return math.sqrt(var / (sde.mean_coeff(end) ** 2 + sde.std(end) ** 2))


def _stable(sde: LinearSDE, t_start: float, t_end: float, steps: int, method: str) -> bool:
    """Whether ``steps`` equal steps pass the `std_ratio` test."""
    h = (t_start - t_end) / steps
    ratio = std_ratio(sde, [t_start - i * h for i in range(steps)] + [t_end], method)
    return 1 / STD_RATIO_LIMIT <= ratio <= STD_RATIO_LIMIT


def _fixed_step(span: float, dt: float) -> float:
    """The step handed to torchsde: ``dt``, nudged up by 1e-10 (relative) when it divides the
    span into a whole number of steps, so that rounding in torchsde's accumulated times
    ``curr + dt`` cannot leave a last sliver step of size ~1e-16 before the end."""
    n = span / dt
    if abs(n - round(n)) < 1e-6:
        return span / round(n) * (1.0 + 1e-10)
    return dt


def _step_grid(s0: float, s_end: float, dt: float) -> list[float]:
    """The times torchsde's fixed-step loop visits, ``next = min(curr + dt, s_end)``, built
    with its own arithmetic: outputs are exact solver states only if they equal these
    accumulated sums bit for bit."""
    grid = [s0]
    while grid[-1] < s_end:
        grid.append(min(grid[-1] + dt, s_end))
    return grid


def _entropy(generator: torch.Generator | None) -> int:
    """A seed for the Brownian motion drawn from ``generator`` (one read at the start)."""
    if generator is None:
        return int(torch.randint(0, 2**31 - 1, (1,)))
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))


class _ReverseForTorchsde:
    r"""The reverse SDE as a torchsde system in $s = -t$: ``f(s, y) = -b(y, -s)``,
    ``g_prod(s, y, v) = g(-s) v``, on the state flattened to (B, D).

    Times arrive as 0-d float64 CPU tensors (the adapter passes CPU ``ts``), so turning them
    into the Python floats the score and coefficients prefer costs no device synchronisation.
    """

    sde_type = "ito"
    noise_type = "additive"
    _MEMO = 4  # distinct (state, time) pairs one step revisits: SRA1 2, adaptive attempts 3

    def __init__(self, sde: SDE, score: CountingScore, shape: torch.Size) -> None:
        self.reverse = sde.reverse(score)
        self.sde = sde
        self.shape = shape
        self._memo: list[tuple[Tensor, float, Tensor]] = []

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        t = -float(s)
        for y_seen, t_seen, f_seen in self._memo:
            if y_seen is y and t_seen == t:
                return f_seen
        out = -self.reverse.drift(y.reshape(self.shape), t).reshape(y.shape)
        self._memo.append((y, t, out))  # holding y keeps its id from being reused
        if len(self._memo) > self._MEMO:
            self._memo.pop(0)
        return out

    def g_prod(self, s: Tensor, y: Tensor, v: Tensor) -> Tensor:
        return self.sde.diffusion(-float(s)) * v


class _CountingBrownian:
    """Wraps a ``torchsde.BrownianInterval``: counts accepted steps, drives the progress bar.

    Every step torchsde takes queries the increment over its interval once. With a fixed step
    each query is one step. The adaptive loop queries a full step then two half steps per
    attempt, and retries a rejected attempt from the same start, so the accepted steps are
    the distinct starts of the full-step queries.
    """

    def __init__(self, bm, *, adaptive: bool, span: float, progress: bool) -> None:
        self.bm = bm
        self.shape = bm.shape
        self.levy_area_approximation = bm.levy_area_approximation
        self.adaptive = adaptive
        self.queries: list[float] = []
        self.t0 = None
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=span, desc="torchsde", unit="t", leave=False)
        self._done = 0.0

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        a = float(ta)  # times are CPU tensors: no device synchronisation
        if self.t0 is None:
            self.t0 = a
        self.queries.append(a)
        if self.bar is not None and a - self.t0 > self._done:
            self.bar.update(a - self.t0 - self._done)
            self._done = a - self.t0
        return self.bm(ta, tb, return_U=return_U, return_A=return_A)

    def accepted_steps(self) -> int:
        if not self.adaptive:
            return len(self.queries)
        return len(set(self.queries[0::3]))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(max(self.bar.total - self._done, 0.0))
            self.bar.close()

    def __repr__(self) -> str:
        return f"<counting {self.bm!r}>"
