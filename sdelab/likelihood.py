r"""Exact log-likelihoods through the probability-flow ODE; bits/dim; encode and decode.

Along a trajectory of the probability-flow ODE $\mathrm{d}x/\mathrm{d}t = \tilde f(x, t)$,
$\tilde f = f - \tfrac12 g^2 s$, the log-density obeys the instantaneous change of variables
(Chen et al. 2018, "Neural ODEs", Thm. 1; Song et al. 2021, eq. 39 and App. D.2)

$$ \frac{\mathrm{d}}{\mathrm{d}t}\log p_t(x(t)) = -\nabla\!\cdot \tilde f(x(t), t), $$

so integrating the augmented ODE $[x, \delta]$ with $\dot\delta = \nabla\!\cdot\tilde f$ from
$t = \varepsilon$ (the data point) to $T$ (its latent $z = x(T)$) gives

$$ \log p_\varepsilon(x) = \log p_T(z) + \int_\varepsilon^T \nabla\!\cdot \tilde f(x(t), t)\,\mathrm{d}t . $$

The divergence is computed exactly by autograd or estimated by Hutchinson-Skilling's trace
estimator (`exact_divergence`, `hutchinson_divergence`). See the "Likelihood" concept page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_batched, check_finite, check_generator, check_int, check_positive
from ._ode import ODEOptions, solve
from .sde.base import SDE, check_sde
from .sde.reverse import Score
from .solvers.base import CountingScore
from .solvers.ode import solve_probability_flow

__all__ = [
    "LikelihoodResult",
    "bits_per_dim",
    "decode",
    "dequantize",
    "encode",
    "exact_divergence",
    "hutchinson_divergence",
    "log_likelihood",
]

DIVERGENCES = ("hutchinson", "exact")
NOISES = ("rademacher", "gaussian")
_LN2 = math.log(2.0)


@dataclass
class LikelihoodResult:
    r"""What `log_likelihood` returns (all per sample, shape (B,), in nats).

    Attributes:
        logp: $\log p_\varepsilon(x) = $ ``prior_logp + delta_logp``, the log-density of the
            data perturbed up to time $\varepsilon$ under the model's probability flow.
        prior_logp: $\log p_T(z)$ of the latent under the prior used (``sde.prior_logp`` or
            the caller's ``prior_logp``).
        delta_logp: $\int_\varepsilon^T \nabla\!\cdot\tilde f\,\mathrm{d}t$, the change of
            log-density along the flow (an unbiased estimate with Hutchinson's estimator).
        z: the latent $z = x(T)$, shaped like ``x``.
        nfe: the number of score evaluations (counted; with exact divergence each also costs
            $D$ backward passes, with Hutchinson ``n_probes``).
        steps: the number of accepted integrator steps.
    """

    logp: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    z: Tensor
    nfe: int
    steps: int


# --------------------------------------------------------------------------------------------
# the divergence of a vector field
# --------------------------------------------------------------------------------------------
def exact_divergence(fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    r"""The value $v = F(x)$ and the exact divergence
    $\nabla\!\cdot F(x) = \sum_{i=1}^{D} \partial F_i / \partial x_i$ per sample.

    One reverse-mode pass per dimension $i$: the gradient of $\sum_b F_i(x_b)$ with respect to
    ``x`` holds, in sample $b$, the $i$-th row of that sample's Jacobian, so its $i$-th entry
    is $\partial F_i/\partial x_i$ for every sample at once. This assumes ``fn`` treats the
    samples of a batch independently (no batch-norm in training mode). Cost: one forward and
    $D$ backward passes. Returns ``(v, div)``: ``v`` like ``x`` (detached), ``div`` shape (B,).
    """
    B, D = x.shape[0], x[0].numel()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = fn(xg)
        if not v.requires_grad:  # F does not depend on x
            return v.detach(), torch.zeros(B, dtype=v.dtype, device=v.device)
        vf = v.reshape(B, D)
        div = torch.zeros(B, dtype=v.dtype, device=v.device)
        for i in range(D):
            (g,) = torch.autograd.grad(vf[:, i].sum(), xg, retain_graph=i < D - 1)
            div = div + g.reshape(B, D)[:, i]
    return v.detach(), div


def hutchinson_divergence(
    fn: Callable[[Tensor], Tensor], x: Tensor, probes: Tensor
) -> tuple[Tensor, Tensor]:
    r"""The value $v = F(x)$ and the Hutchinson-Skilling estimate of its divergence,

    $$ \nabla\!\cdot F(x) = \operatorname{tr} J_F(x)
       \approx \frac1K\sum_{k=1}^K \epsilon_k^\top J_F(x)\,\epsilon_k,
       \qquad \mathbb E[\epsilon\epsilon^\top] = I $$

    (Hutchinson 1990; Skilling 1989; Grathwohl et al. 2019, FFJORD; Song et al. 2021,
    eq. 40). Each term is one vector-Jacobian product: the gradient of $\epsilon_k^\top F(x)$
    is $J_F^\top \epsilon_k$. ``probes`` has shape (K, B, ...) (K probes per sample, shaped
    like ``x``). Returns ``(v, div)``: ``v`` like ``x`` (detached), ``div`` shape (B,).
    """
    B = x.shape[0]
    K = probes.shape[0]
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        v = fn(xg)
        if not v.requires_grad:
            return v.detach(), torch.zeros(B, dtype=v.dtype, device=v.device)
        est = torch.zeros(B, dtype=v.dtype, device=v.device)
        for k in range(K):
            (g,) = torch.autograd.grad((v * probes[k]).sum(), xg, retain_graph=k < K - 1)
            est = est + (g * probes[k]).reshape(B, -1).sum(1)
    return v.detach(), est / K


def _draw_probes(x: Tensor, n: int, noise: str, generator) -> Tensor:
    """``n`` probes per sample, shape (n, *x.shape): Rademacher (+-1) or standard normal."""
    shape = (n, *x.shape)
    if noise == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    r = torch.randint(0, 2, shape, generator=generator, device=x.device)
    return r.to(x.dtype).mul_(2).sub_(1)


# --------------------------------------------------------------------------------------------
# log_likelihood
# --------------------------------------------------------------------------------------------
def log_likelihood(
    sde: SDE,
    score: Score,
    x: Tensor,
    *,
    divergence: str = "hutchinson",
    noise: str = "rademacher",
    n_probes: int = 1,
    backend: str = "scipy",
    method: str | type = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    prior_logp: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    ode_dtype: torch.dtype | None = None,
    error_norm: str = "sample",
) -> LikelihoodResult:
    r"""The log-likelihood $\log p_\varepsilon(x)$ of data ``x`` under the probability-flow
    ODE of ``sde`` with ``score`` (Song et al. 2021, Sec. 4.3, eq. 39, App. D.2).

    Integrates the augmented ODE from $t = \varepsilon$ to $T$,

    $$ \frac{\mathrm{d}}{\mathrm{d}t}\begin{bmatrix} x \\ \delta \end{bmatrix}
       = \begin{bmatrix} \tilde f(x, t) \\ \nabla\!\cdot\tilde f(x, t) \end{bmatrix},
       \qquad \tilde f = f(x,t) - \tfrac12 g(t)^2 s(x, t),
       \qquad x(\varepsilon) = x,\ \delta(\varepsilon) = 0, $$

    and returns $\log p_\varepsilon(x) = \log p_T(x(T)) + \delta(T)$.

    **Which density.** ``logp`` is the density at time $\varepsilon$ of the model's flow, i.e.
    of the data convolved with the SDE's kernel up to $\varepsilon$ -- not $p_0$. For exact
    scores and the exact prior it equals ``mixture.marginal_log_prob(sde, x, eps)``; as
    $\varepsilon \to 0$ it tends to $\log p_0(x)$ for smooth $p_0$ (the gap is
    $O(\sigma(\varepsilon)^2)$ times the density's curvature). The default prior is
    ``sde.prior_logp`` ($\mathcal N(0, I)$ or $\mathcal N(0, \sigma_{\max}^2 I)$), which is
    not exactly $p_T$: pass ``prior_logp`` (for example
    ``lambda z: mixture.marginal_log_prob(sde, z, sde.T)``) to remove that mismatch.

    Args:
        sde: the forward SDE.
        score: ``score(x, t)``, called with a Python float ``t`` in ``x``'s dtype and device.
        x: data, shape (B, ...) with at least one data dimension (use ``x[:, None]`` for 1-D
            data); finite.
        divergence: ``"exact"`` ($D$ backward passes per evaluation; exact; for per-sample
            log-likelihoods the better choice at every $D$ measured, up to 64; for data-set
            averages worth it up to $D \approx 8$-$16$, see the concept page) or ``"hutchinson"`` (``n_probes``
            backward passes; unbiased, with variance falling as $1/$``n_probes``).
        noise: Hutchinson probes, ``"rademacher"`` ($\pm1$, lowest variance) or
            ``"gaussian"``. Drawn once per solve from ``generator`` and held fixed along the
            path (a fresh probe per step would make the integrand noisy and break the solver).
        n_probes: probes per sample, averaged ($\ge 1$).
        backend: ``"scipy"`` (`solve_ivp`'s integrators on a float64 host copy of the state)
            or ``"torch"`` (sdelab's Dormand-Prince on ``x``'s device; the state never leaves
            it). Both give the same answer within the tolerances.
        method: the integrator (see `sdelab.ProbabilityFlowODE`).
        rtol: relative tolerance of the integrator, $> 0$, held by every sample (see
            ``error_norm``).
        atol: absolute tolerance, $> 0$.
        eps: the start time $\varepsilon \in (0, T)$.
        prior_logp: ``prior_logp(z) -> (B,)``, the log-density at $T$; default
            ``sde.prior_logp``.
        generator: seeds the Hutchinson probes (on ``x``'s device).
        progress: show a tqdm bar.
        ode_dtype: the torch backend's state dtype (default ``x``'s; ``torch.float64`` is an
            option); scipy always integrates in float64.
        error_norm: the batch shares one step size. ``"sample"`` (default) holds every sample
            to the tolerance as if it were solved alone, so a sample's ``logp`` does not
            depend on its batch; ``"batch"`` is scipy's RMS over the whole batch (the paper's
            code), cheaper, but one sample's error may be up to $\sqrt B$ times larger.

    Returns:
        A `LikelihoodResult`: ``logp``, ``prior_logp``, ``delta_logp`` (shape (B,), nats per
        sample, ``x``'s dtype), ``z``, ``nfe`` and ``steps``. Convert with `bits_per_dim`.
    """
    check_sde(sde)
    x = _check_data(x)
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    n_probes = check_int("n_probes", n_probes, minimum=1)
    options = ODEOptions(backend, method, rtol, atol, ode_dtype, error_norm)  # before the probes
    eps = _check_eps(eps, sde)
    if prior_logp is not None and not callable(prior_logp):
        raise TypeError(f"prior_logp must be callable as prior_logp(z), got {prior_logp!r}")
    _check_generator(generator, x)

    counting = CountingScore(score)
    drift = sde.reverse(counting, probability_flow=True).drift
    B, D = x.shape[0], x[0].numel()
    probes = None
    if divergence == "hutchinson":
        probes = _draw_probes(x, n_probes, noise, generator)

    def augmented(t: float, y: Tensor) -> Tensor:
        xt = y[:, :D].reshape(x.shape)
        fn = lambda v: drift(v, t)  # noqa: E731
        if probes is None:
            v, div = exact_divergence(fn, xt)
        else:
            v, div = hutchinson_divergence(fn, xt, probes)
        return torch.cat([v.reshape(B, D), div.to(v.dtype)[:, None]], dim=1)

    y0 = torch.cat([x.reshape(B, D), x.new_zeros(B, 1)], dim=1)
    sol = solve(
        augmented, y0, eps, sde.T, options, progress=progress, desc=f"log-likelihood ({divergence})"
    )
    counting.check()
    z = sol.y[:, :D].reshape(x.shape)
    delta = sol.y[:, D]
    prior = _prior(sde, prior_logp, z)
    return LikelihoodResult(
        logp=prior + delta,
        prior_logp=prior,
        delta_logp=delta,
        z=z,
        nfe=counting.nfe,
        steps=sol.steps,
    )


# --------------------------------------------------------------------------------------------
# encode / decode
# --------------------------------------------------------------------------------------------
def encode(
    sde: SDE,
    score: Score,
    x: Tensor,
    *,
    eps: float = 1e-5,
    backend: str = "scipy",
    method: str | type = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    progress: bool = False,
    ode_dtype: torch.dtype | None = None,
    error_norm: str = "sample",
) -> Tensor:
    r"""The latent code $z = x(T)$ of data $x = x(\varepsilon)$: the probability-flow ODE
    (Song et al. 2021, eq. 13, Sec. 4.3 "uniquely identifiable encoding") integrated forward
    from $\varepsilon$ to $T$. The inverse of `decode` up to the integrator's tolerance.
    Arguments as in `log_likelihood`.
    """
    options = ODEOptions(backend, method, rtol, atol, ode_dtype, error_norm)
    return _flow(sde, score, x, "x", eps, True, options, progress)


def decode(
    sde: SDE,
    score: Score,
    z: Tensor,
    *,
    eps: float = 1e-5,
    backend: str = "scipy",
    method: str | type = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    progress: bool = False,
    ode_dtype: torch.dtype | None = None,
    error_norm: str = "sample",
) -> Tensor:
    r"""The data $x = x(\varepsilon)$ of a latent $z = x(T)$: the probability-flow ODE
    (Song et al. 2021, eq. 13) integrated backward from $T$ to $\varepsilon$. With
    $z \sim p_T$ this samples $p_\varepsilon$ (it is `sdelab.ProbabilityFlowODE`). Arguments as
    in `log_likelihood`.
    """
    options = ODEOptions(backend, method, rtol, atol, ode_dtype, error_norm)
    return _flow(sde, score, z, "z", eps, False, options, progress)


def _flow(sde, score, x, name, eps, forward, options: ODEOptions, progress):
    check_sde(sde)
    x = _check_data(x, name)
    eps = _check_eps(eps, sde)
    counting = CountingScore(score)
    t0, t1 = (eps, sde.T) if forward else (sde.T, eps)
    sol = solve_probability_flow(
        sde, counting, x, t0, t1, options, progress=progress, desc="encode" if forward else "decode"
    )
    counting.check()
    return sol.y


# --------------------------------------------------------------------------------------------
# bits per dimension
# --------------------------------------------------------------------------------------------
def _check_range(data_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a pair (low, high), got {data_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be finite with low < high, got {data_range!r}")
    return lo, hi


def _check_in_range(x: Tensor, lo: float, hi: float) -> None:
    r"""Raise unless ``x`` lies in ``data_range`` ``[lo, hi]`` (one host sync): outside it the
    offset $n - \log_2(b - a)$ of `bits_per_dim` does not apply. A few ulps of ``x``'s dtype
    are allowed for the rounding in `dequantize`."""
    x_lo, x_hi = (float(v) for v in torch.aminmax(x.detach()))
    slack = 4 * torch.finfo(x.dtype).eps * max(abs(lo), abs(hi), hi - lo)
    if x_lo < lo - slack or x_hi > hi + slack:
        raise ValueError(
            f"x must lie in data_range [{lo}, {hi}] (the dequantised data), got values in "
            f"[{x_lo:.6g}, {x_hi:.6g}]; pass the data_range the levels were spread over"
        )


def dequantize(
    k: Tensor,
    *,
    n_bits: int = 8,
    data_range: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Uniform dequantisation of integer data $k \in \{0, \dots, 2^n - 1\}$ into
    ``data_range`` $= [a, b)$: $x = a + (b - a)\,(k + u)/2^n$, $u \sim \mathcal U[0, 1)^D$.

    The $2^n$ levels tile $[a, b)$ with bins of width $\Delta = (b - a)/2^n$; this is the
    convention `bits_per_dim` assumes (Theis et al. 2016; Ho et al. 2019, Flow++; the paper's
    code uses $a, b = 0, 1$, $n = 8$). ``dtype`` defaults to torch's default dtype.
    """
    n_bits = check_int("n_bits", n_bits, minimum=1)
    lo, hi = _check_range(data_range)
    if not isinstance(k, Tensor):
        raise TypeError(f"k must be a tensor of integer levels, got {type(k).__name__}")
    levels = 2**n_bits
    if k.numel() and not bool(((k >= 0) & (k < levels) & (k == k.round())).all()):
        raise ValueError(f"k must hold integers in [0, {levels - 1}] for n_bits={n_bits}")
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(k.shape, generator=generator, device=k.device, dtype=dtype)
    return lo + (hi - lo) * (k.to(dtype) + u) / levels


def bits_per_dim(
    logp: Tensor | LikelihoodResult,
    x: Tensor,
    *,
    n_bits: int = 8,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    r"""Bits per dimension of discrete data from the continuous log-density of its uniformly
    dequantised version (see `dequantize`).

    Let the data have $D$ dimensions of $2^n$ levels $k$, dequantised to
    $v = k + u \in [0, 2^n)^D$ and then mapped affinely to the model's range
    $x = a + \Delta\,v$, $\Delta = (b - a)/2^n$. By the change of variables
    $\log p_v(v) = \log p_x(x) + D \log\Delta$, and by Jensen's inequality the discrete
    probability is bounded by $\log P(k) \ge \mathbb E_u[\log p_v(k + u)]$ (Theis et al. 2016).
    So the bits per dimension are

    $$ \mathrm{bpd} = -\frac{\log p_x(x) + D\log\Delta}{D \ln 2}
       = -\frac{\log p_x(x)}{D\ln 2} + n - \log_2(b - a) , $$

    an upper bound on $-\log_2 P(k)/D$ in expectation over $u$. For 8-bit data in $[0, 1]$ the
    offset is $8$, in $[-1, 1]$ it is $7$ -- the constants the paper's code hard-codes.

    Args:
        logp: per-sample $\log p_x(x)$ in nats, shape (B,), or a `LikelihoodResult`.
        x: the dequantised data (its shape gives $D$ = entries per sample).
        n_bits: bits per dimension of the original data, $\ge 1$.
        data_range: $(a, b)$, the interval the $2^n$ levels were spread over.

    Returns:
        bpd per sample, shape (B,).
    """
    if isinstance(logp, LikelihoodResult):
        logp = logp.logp
    x = _check_data(x)
    n_bits = check_int("n_bits", n_bits, minimum=1)
    lo, hi = _check_range(data_range)
    if not isinstance(logp, Tensor) or logp.shape != (x.shape[0],):
        got = tuple(logp.shape) if isinstance(logp, Tensor) else type(logp).__name__
        raise ValueError(f"logp must have shape (B,) = ({x.shape[0]},) like x's batch, got {got}")
    check_finite("logp", logp)  # NaN/inf log-likelihoods would give NaN/inf bpd
    _check_in_range(x, lo, hi)
    D = x[0].numel()
    log_delta = math.log(hi - lo) - n_bits * _LN2
    return -(logp + D * log_delta) / (D * _LN2)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _check_data(x: Tensor, name: str = "x") -> Tensor:
    check_batched(name, x)
    if x.ndim < 2 or x.shape[0] < 1 or x[0].numel() < 1:
        hint = f"; for one-dimensional data use {name}[:, None]" if x.ndim == 1 else ""
        raise ValueError(
            f"{name} must have shape (B, ...) with B >= 1 and at least one data dimension, got "
            f"shape {tuple(x.shape)}{hint}"
        )
    return check_finite(name, x)


def _check_eps(eps: float, sde: SDE) -> float:
    eps = check_positive("eps", eps)
    if not eps < sde.T:
        raise ValueError(f"eps must lie in (0, T) = (0, {sde.T}), got {eps!r}")
    return eps


def _check_generator(generator, x: Tensor) -> None:
    check_generator(generator, x.device, drawn="the Hutchinson probes (on x's device)")


def _prior(sde: SDE, prior_logp, z: Tensor) -> Tensor:
    p = sde.prior_logp(z) if prior_logp is None else prior_logp(z)
    if not isinstance(p, Tensor) or p.shape != (z.shape[0],):
        got = tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__
        raise ValueError(
            f"prior_logp(z) must return a tensor of shape (B,) = ({z.shape[0]},), got {got}"
        )
    return p.to(z.dtype)
