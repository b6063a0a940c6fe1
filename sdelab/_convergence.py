r"""Measured convergence orders (used by ``tests/test_convergence.py`` and
``benchmarks/convergence_orders.py``; one implementation for both).

A scheme has *strong* order $p$ when $\big(\mathbb E|X^h_T - X_T|^2\big)^{1/2} \le C h^p$ for the
numerical solution $X^h$ driven by the *same* Brownian path as the exact solution $X$, and
*weak* order $q$ when $|\mathbb E\,\varphi(X^h_T) - \mathbb E\,\varphi(X_T)| \le C h^q$
(Kloeden & Platen 1992, §9.6-9.7). The order is the least-squares slope of
$\log(\text{error})$ against $\log h$ over a ladder of step sizes $h = T/n$, $n = 2^k$; every
level reuses one set of fine Brownian increments summed in blocks, so the levels differ only
in their discretisation.

Weak errors are estimated on the same paths as the exact solution,
$\widehat{e}_w = \tfrac1P \sum_p (X^h_{T,p} - X_{T,p})$: an unbiased estimate of
$\mathbb E X^h_T - \mathbb E X_T$ whose Monte-Carlo error is the strong error over $\sqrt P$
(reported as ``weak_noise``), far below the weak error itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .sde.linear import GeometricBrownianMotion, OrnsteinUhlenbeck
from .sde.simulate import simulate

__all__ = [
    "OrderResult",
    "PathError",
    "deterministic_grid_solvers",
    "em_orders",
    "exact_flow_solver",
    "fit_order",
    "flow_error",
    "reverse_path_errors",
    "torchsde_strong_order",
]


@dataclass
class OrderResult:
    """Errors over a ladder of step sizes and the fitted slopes."""

    dts: list[float]
    strong_errors: list[float]
    strong_order: float
    weak_errors: list[float] | None = None
    weak_noise: list[float] | None = None
    weak_order: float | None = None


def fit_order(dts, errors) -> float:
    r"""Least-squares slope of $\log e$ against $\log h$."""
    lx = torch.log(torch.as_tensor(dts, dtype=torch.float64))
    ly = torch.log(torch.as_tensor(errors, dtype=torch.float64))
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


def _ou_exact_increments(ou: OrnsteinUhlenbeck, h: float, n: int, paths: int, generator):
    r"""Per fine step of size $h$: the Brownian increment $\Delta W$ and the exact stochastic
    integral $J = \int_0^h e^{-\theta(h-u)}\,\mathrm dW_u$, drawn from their joint Gaussian
    $\operatorname{Var}\Delta W = h$, $\operatorname{Var} J = (1 - e^{-2\theta h})/(2\theta)$,
    $\operatorname{Cov}(\Delta W, J) = (1 - e^{-\theta h})/\theta$."""
    th = ou.theta
    z1, z2 = torch.randn((2, n, paths), generator=generator, dtype=torch.float64)
    cov = -math.expm1(-th * h) / th
    var_j = -math.expm1(-2 * th * h) / (2 * th)
    dw = math.sqrt(h) * z1
    j = cov / math.sqrt(h) * z1 + math.sqrt(max(var_j - cov * cov / h, 0.0)) * z2
    return dw, j


def em_orders(
    process: str,
    *,
    paths: int = 20_000,
    levels: tuple[int, ...] = (3, 4, 5, 6, 7, 8),
    mu: float = 0.5,
    sigma: float = 1.0,
    theta: float = 1.0,
    seed: int = 0,
) -> OrderResult:
    r"""Strong and weak orders of Euler-Maruyama (`sdelab.sde.simulate`) on a process with a
    known pathwise solution, over step counts $n = 2^k$, $k \in$ ``levels``, $T = 1$.

    * ``"gbm"``: `GeometricBrownianMotion` (``mu``, ``sigma``, $x_0 = 1$), multiplicative
      noise, exact $X_T = x_0 e^{(\mu - \sigma^2/2)T + \sigma W_T}$.
    * ``"ou"``: `OrnsteinUhlenbeck` (``theta``, ``sigma``, $x_0 = 1$), additive noise,
      exact $X_T = e^{-\theta T}x_0 + \sigma \sum_i e^{-\theta(T - t_{i+1})} J_i$ from the exact
      joint law of each fine step's $(\Delta W_i, J_i)$ (no reference discretisation).

    The weak error is that of $\mathbb E X_T$. Its Monte-Carlo noise scales with the strong
    error, i.e. with $\sigma$; for GBM the weak error of the mean is $x_0(e^{\mu T} -
    (1 + \mu h)^{T/h}) \approx x_0 e^{\mu T}\mu^2 T h/2$, independent of $\sigma$, so a weak
    measurement wants $\mu$ large against $\sigma$, a strong one the reverse (there the
    $\sqrt h$ term, $\propto \sigma^2$, must dominate the $h$ terms).
    """
    gen = torch.Generator().manual_seed(seed)
    n_fine = 2 ** max(levels)
    h = 1.0 / n_fine
    x0 = torch.ones(paths, dtype=torch.float64)
    if process == "gbm":
        sde = GeometricBrownianMotion(mu=mu, sigma=sigma)
        dw = torch.randn((n_fine, paths), generator=gen, dtype=torch.float64) * math.sqrt(h)
        exact = sde.solution(x0, 1.0, dw.sum(0))
    elif process == "ou":
        sde = OrnsteinUhlenbeck(theta=theta, sigma=sigma)
        dw, j = _ou_exact_increments(sde, h, n_fine, paths, gen)
        decay = torch.exp(-sde.theta * (1.0 - h * torch.arange(1, n_fine + 1, dtype=torch.float64)))
        exact = math.exp(-sde.theta) * x0 + sde.sigma * (decay[:, None] * j).sum(0)
    else:
        raise ValueError(f"process must be 'gbm' or 'ou', got {process!r}")

    dts, strong, weak, noise = [], [], [], []
    for k in levels:
        n = 2**k
        coarse = dw.reshape(n, n_fine // n, paths).sum(1)
        diff = simulate(sde, x0, n, dw=coarse) - exact
        dts.append(1.0 / n)
        strong.append(float(diff.pow(2).mean().sqrt()))
        weak.append(float(diff.mean().abs()))
        noise.append(float(diff.std() / math.sqrt(paths)))
    return OrderResult(dts, strong, fit_order(dts, strong), weak, noise, fit_order(dts, weak))


def _ou_mixture():
    from .analytic import GaussianMixture

    sde = OrnsteinUhlenbeck(theta=1.0, sigma=1.0)
    mix = GaussianMixture(
        torch.tensor([[-1.0], [1.5]], dtype=torch.float64), torch.tensor([0.6, 0.8]), [0.4, 0.6]
    )
    return sde, mix


@dataclass
class PathError:
    """One solver's run on the shared Brownian path: accepted steps, score calls, RMS error."""

    solver: object
    steps: int
    nfe: int
    error: float


def reverse_path_errors(
    sde,
    mixture,
    solvers,
    *,
    t_end: float = 0.0,
    paths: int = 256,
    ref_level: int = 10,
    seed: int = 0,
) -> list[PathError]:
    r"""Pathwise (strong) RMS error at ``t_end`` of each `sdelab.TorchSDE` in ``solvers`` on the
    reverse-time SDE of ``sde`` for ``mixture`` (its exact score), from $t = T$.

    Every solver and the reference (fixed-step ``srk`` with $h = 2^{-\text{ref\_level}}$)
    share one ``torchsde.BrownianInterval``, whose queries are consistent with each other, so
    they integrate the same Brownian path; solvers run before the reference, so each finer
    run only refines the path's interval tree. The reference's own error
    ($\propto h^{1.5}$) must be far below the errors measured.
    """
    import torchsde

    from .solvers.base import CountingScore
    from .solvers.torchsde import TorchSDE, _fixed_step

    gen = torch.Generator().manual_seed(seed)
    x = sde.prior_sample((paths, mixture.dim), generator=gen, dtype=torch.float64)
    bm = torchsde.BrownianInterval(
        t0=-sde.T,
        t1=-t_end,
        size=(paths, mixture.dim),
        dtype=torch.float64,
        entropy=seed,
        levy_area_approximation="space-time",
        cache_size=None,  # keep every node: the runs revisit the same path many times
    )

    def run(solver):
        score = CountingScore(mixture.score(sde))
        span = sde.T - t_end
        dt = solver.dt if solver.dt is not None else span / 100
        if not solver.adaptive:
            dt = _fixed_step(span, dt)
        res = solver._integrate(sde, score, x, sde.T, t_end, dt=dt, bm=bm)
        return res, score.nfe

    runs = [run(s) for s in solvers]
    ref, _ = run(TorchSDE(method="srk", adaptive=False, dt=2.0**-ref_level))
    return [
        PathError(s, r.steps, nfe, float((r.x - ref.x).pow(2).mean().sqrt()))
        for s, (r, nfe) in zip(solvers, runs, strict=True)
    ]


def torchsde_strong_order(
    method: str,
    *,
    paths: int = 1024,
    levels: tuple[int, ...] = (3, 4, 5, 6, 7),
    ref_level: int = 10,
    seed: int = 0,
) -> OrderResult:
    r"""Strong order of `sdelab.TorchSDE` with ``method`` (fixed step $h = 2^{-k}$) on the
    reverse-time SDE of an Ornstein-Uhlenbeck process ($\theta = 1$, $\sigma = 1$, additive
    noise) for a 1-D two-component Gaussian mixture (exact score), from $t = 1$ to $0$, against
    a fine ``srk`` reference on the same Brownian path (`reverse_path_errors`).
    """
    from .solvers.torchsde import TorchSDE

    sde, mix = _ou_mixture()
    solvers = [TorchSDE(method=method, adaptive=False, dt=2.0**-k) for k in sorted(levels)]
    errs = reverse_path_errors(sde, mix, solvers, paths=paths, ref_level=ref_level, seed=seed)
    dts = [e.solver.dt for e in errs]
    strong = [e.error for e in errs]
    return OrderResult(dts, strong, fit_order(dts, strong))


# --- the deterministic fast samplers against the exact probability-flow map ------------------
# (used by tests/test_fast_orders.py and benchmarks/fast_solvers_table.py)


def deterministic_grid_solvers() -> list:
    """The default instance of every class exported by `sdelab` that is a `GridSolver`, is
    deterministic (``stochastic == False``) and declares an ``order`` (classes that need
    arguments, such as `PC`, are left out)."""
    import sdelab

    from .solvers.grid import GridSolver

    found = []
    for name in sdelab.__all__:
        cls = getattr(sdelab, name)
        if not (isinstance(cls, type) and issubclass(cls, GridSolver)):
            continue
        try:
            solver = cls()
        except (TypeError, ValueError):
            continue
        if solver.stochastic is False and solver.order is not None:
            found.append(solver)
    return found


def flow_error(x: torch.Tensor, exact: torch.Tensor) -> float:
    r"""The pathwise error $\big(\tfrac1B\sum_b |x_b - x^\star_b|^2\big)^{1/2}$ of samples
    against the exact probability-flow map $x^\star$ of the same prior draws."""
    return float((x - exact).norm(dim=-1).pow(2).mean().sqrt())


def exact_flow_solver():
    """The float64 reference of the flow map: scipy's DOP853 at rtol = atol = 1e-10 (with the
    same generator `sdelab.sample` draws the same $x_T$ as the solver under test)."""
    from .solvers.ode import ProbabilityFlowODE

    return ProbabilityFlowODE(method="DOP853", rtol=1e-10, atol=1e-10)
