r"""Adaptive ODE integration for the probability-flow ODE: one machinery, two backends.

Both `sdelab.ProbabilityFlowODE` (sampling) and `sdelab.log_likelihood` / `sdelab.encode` /
`sdelab.decode` integrate an ODE $\mathrm{d}y/\mathrm{d}t = F(t, y)$ whose right-hand side is a
torch function (the probability-flow drift, possibly augmented with its divergence). `odeint`
integrates it from ``t0`` to ``t1`` (either direction) with one of two backends:

* ``"scipy"``: the integrators of `scipy.integrate.solve_ivp` (``RK45``, ``RK23``, ``DOP853``,
  ``Radau``, ``BDF``, ``LSODA`` or an ``OdeSolver`` subclass), stepped one accepted step at a
  time on a flattened float64 numpy state. The state crosses to the host once per evaluation
  of $F$ -- by design, this is the one place in sdelab that does so. $F$ itself runs on the
  input's device in the input's (the model's) dtype.
* ``"torch"``: `dopri5`, a Dormand-Prince 5(4) integrator written here in torch (Dormand &
  Prince 1980; Hairer, Nørsett & Wanner, *Solving ODEs I*, Sec. II.4-5). The state never
  leaves its device; each step reads one scalar (the error norm) on the host to accept or
  reject it. It follows the rules of scipy's ``RK45`` (initial step of Hairer II.4, standard
  step-size control with safety 0.9 and factors in [0.2, 10]), so with the same error norm
  both backends take the same steps and give the same answer.

**Error norm of a batch** (``error_norm``). The state is a batch of $B$ independent samples
sharing one step size. scipy's norm is the RMS over the whole flattened state (``"batch"``),
so one sample's local error may exceed the tolerance by up to $\sqrt B$ while the others are
accurate, and a sample's answer depends on the rest of its batch. The default, ``"sample"``,
holds every sample to the tolerance as if it were solved alone: `dopri5` takes the largest
per-sample RMS; on scipy, whose norm cannot be changed, the tolerances handed to it are divided
by $\sqrt B$, which implies the same bound (conservatively: scipy then takes a few more steps,
about $B^{1/10}$ times as many).

Neither backend evaluates $F$ outside the closed span $[\min(t_0,t_1), \max(t_0,t_1)]$: the
last step is shortened to end exactly on ``t1`` and, against rounding in $t + c_i h$, the time
handed to $F$ is clamped into the span.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._checks import check_positive

__all__ = [
    "SCIPY_METHODS",
    "TORCH_METHODS",
    "ODEOptions",
    "OdeSolution",
    "dopri5",
    "odeint",
    "solve",
]

OdeFunc = Callable[[float, Tensor], Tensor]

#: the method names `scipy.integrate.solve_ivp` accepts (an ``OdeSolver`` subclass works too)
SCIPY_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
#: the torch backend's one method, Dormand-Prince 5(4); "RK45" is scipy's name for the same
TORCH_METHODS = ("RK45", "dopri5")
BACKENDS = ("scipy", "torch")
ERROR_NORMS = ("sample", "batch")


@dataclass
class OdeSolution:
    """What `odeint` returns.

    Attributes:
        y: the state at ``t1``, in ``y0``'s shape, dtype and device.
        nfev: the number of evaluations of the right-hand side (initial-step probe included).
        steps: the number of accepted steps.
        times: the accepted times, ``t0`` first, ``t1`` last (only with
            ``return_trajectory=True``, else ``None``).
        trajectory: the states at ``times`` stacked on a new first dimension, in ``y0``'s dtype
            and device (or ``None``).
    """

    y: Tensor
    nfev: int
    steps: int
    times: list[float] | None = None
    trajectory: Tensor | None = None


@dataclass(frozen=True)
class ODEOptions:
    r"""The integrator options, checked once, here: every entry point (`odeint`,
    `sdelab.ProbabilityFlowODE`, `sdelab.solvers.ode.integrate_probability_flow`,
    `sdelab.log_likelihood`, `sdelab.encode`, `sdelab.decode`) takes them as keyword arguments
    and gathers them into one of these.

    Attributes:
        backend: ``"scipy"`` or ``"torch"`` (see the module docs).
        method: a `solve_ivp` method for scipy (``"RK45"``, ``"RK23"``, ``"DOP853"``,
            ``"Radau"``, ``"BDF"``, ``"LSODA"`` or an ``OdeSolver`` subclass); ``"RK45"``
            (= ``"dopri5"``) for torch.
        rtol: relative tolerance, $> 0$ (stored as a float).
        atol: absolute tolerance, $> 0$. A step is accepted when
            $\operatorname{RMS}\big(e_i / (\mathrm{atol} + \mathrm{rtol}\max(|y_i|, |y^{new}_i|))\big) < 1$
            (the RMS over each sample or over the batch, see ``error_norm``).
        ode_dtype: the dtype the integrator holds the state in. scipy: float64 only (the
            default). torch: defaults to the state's dtype; ``torch.float64`` is an option.
        error_norm: ``"sample"`` (every sample meets the tolerance) or ``"batch"`` (scipy's
            RMS over the whole state); see the module docs.

    Raises:
        ValueError: an unknown backend, method or error norm, a tolerance that is not a
            finite number > 0, or a dtype other than float64 for scipy (the message names
            the argument and the value).
        TypeError: a non-number tolerance or an ``ode_dtype`` that is not a floating
            ``torch.dtype``.
    """

    backend: str = "scipy"
    method: str | type = "RK45"
    rtol: float = 1e-5
    atol: float = 1e-5
    ode_dtype: torch.dtype | None = None
    error_norm: str = "sample"

    def __post_init__(self) -> None:
        backend, method, ode_dtype = self.backend, self.method, self.ode_dtype
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "scipy":
            from scipy.integrate import OdeSolver

            is_solver = isinstance(method, type) and issubclass(method, OdeSolver)
            if not is_solver and method not in SCIPY_METHODS:
                raise ValueError(
                    f"method must be one of scipy's solve_ivp methods {SCIPY_METHODS} or an "
                    f"OdeSolver subclass, got {method!r}"
                )
            if ode_dtype not in (None, torch.float64):
                raise ValueError(
                    f"the scipy backend integrates in float64, got ode_dtype={ode_dtype}"
                )
        else:
            if method not in TORCH_METHODS:
                raise ValueError(
                    f"method must be one of {TORCH_METHODS} for backend='torch' (its own "
                    f"Dormand-Prince 5(4) integrator), got {method!r}; use backend='scipy' for "
                    "other methods"
                )
            if ode_dtype is not None and not (
                isinstance(ode_dtype, torch.dtype) and ode_dtype.is_floating_point
            ):
                raise TypeError(
                    f"ode_dtype must be a floating torch.dtype or None, got {ode_dtype!r}"
                )
        if self.error_norm not in ERROR_NORMS:
            raise ValueError(f"error_norm must be one of {ERROR_NORMS}, got {self.error_norm!r}")
        object.__setattr__(self, "rtol", check_positive("rtol", self.rtol))
        object.__setattr__(self, "atol", check_positive("atol", self.atol))


def odeint(
    func: OdeFunc,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    backend: str = "scipy",
    method: str | type = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    ode_dtype: torch.dtype | None = None,
    error_norm: str = "sample",
    return_trajectory: bool = False,
    progress: bool = False,
    desc: str = "ODE",
) -> OdeSolution:
    r"""Integrate $\mathrm{d}y/\mathrm{d}t = F(t, y)$ from ``t0`` to ``t1`` (either direction).

    Args:
        func: ``func(t, y) -> dy/dt`` with ``t`` a Python float inside the span and ``y`` a
            tensor shaped like ``y0`` in ``y0``'s dtype and device; it must return a tensor of
            that shape (any floating dtype). It is called under ``torch.no_grad()``.
        y0: the initial state, shape (B, ...): a batch sharing one step size.
        t0: the start of the span (a Python float).
        t1: its end (``t1 != t0``; smaller than ``t0`` integrates backwards).
        backend: the integrator options ``backend``, ``method``, ``rtol``, ``atol``,
            ``ode_dtype`` and ``error_norm``: see `ODEOptions`.
        return_trajectory: also return the states at every accepted step.
        progress: show a tqdm bar over the time span.
        desc: the bar's label.

    Raises:
        RuntimeError: the integrator failed (scipy's status message, or step size underflow).
        FloatingPointError: ``func`` returned NaN or inf and the integrator could not recover.
    """
    options = ODEOptions(backend, method, rtol, atol, ode_dtype, error_norm)
    return solve(
        func, y0, t0, t1, options, return_trajectory=return_trajectory, progress=progress, desc=desc
    )


def solve(
    func: OdeFunc,
    y0: Tensor,
    t0: float,
    t1: float,
    options: ODEOptions,
    *,
    return_trajectory: bool = False,
    progress: bool = False,
    desc: str = "ODE",
) -> OdeSolution:
    """`odeint` with its integrator options already gathered (and checked) in ``options``."""
    if not isinstance(options, ODEOptions):
        raise TypeError(f"options must be an ODEOptions, got {type(options).__name__}")
    t0, t1 = float(t0), float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"the time span must be finite with t0 != t1, got t0={t0}, t1={t1}")
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        raise TypeError("y0 must be a floating-point torch.Tensor")

    lo, hi = min(t0, t1), max(t0, t1)
    rtol, atol, error_norm = options.rtol, options.atol, options.error_norm

    def clamped(t: float, y: Tensor) -> Tensor:
        if math.isnan(t):  # a step size computed from NaN derivatives
            raise FloatingPointError(
                "the ODE right-hand side returned NaN/inf: the integrator's step became NaN"
            )
        out = func(min(max(t, lo), hi), y)
        if not isinstance(out, Tensor) or out.shape != y.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"the ODE right-hand side must return a tensor of shape {tuple(y.shape)}, got {got}"
            )
        return out

    bar = _progress_bar(progress, abs(t1 - t0), desc)
    try:
        with torch.no_grad():
            if options.backend == "scipy":
                if error_norm == "sample" and y0.ndim > 0:  # max_b RMS_b <= sqrt(B) RMS
                    rtol, atol = rtol / math.sqrt(y0.shape[0]), atol / math.sqrt(y0.shape[0])
                return _scipy(
                    clamped, y0, t0, t1, options.method, rtol, atol, return_trajectory, bar
                )
            dtype = options.ode_dtype or y0.dtype

            def in_eval_dtype(t: float, y: Tensor) -> Tensor:
                return clamped(t, y.to(y0.dtype)).to(dtype)

            sol = dopri5(
                in_eval_dtype,
                y0.to(dtype),
                t0,
                t1,
                rtol=rtol,
                atol=atol,
                per_sample=error_norm == "sample",
                return_trajectory=return_trajectory,
                bar=bar,
            )
            sol.y = sol.y.to(y0.dtype)
            if sol.trajectory is not None:
                sol.trajectory = sol.trajectory.to(y0.dtype)
            return sol
    finally:
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------------------------
# scipy backend
# --------------------------------------------------------------------------------------------
def _scipy(func, y0, t0, t1, method, rtol, atol, return_trajectory, bar) -> OdeSolution:
    import scipy.integrate as si

    shape, device, dtype = y0.shape, y0.device, y0.dtype
    nfev = 0
    first_bad: list[float] = []

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfev
        nfev += 1
        yt = torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        out = func(float(t), yt).to(torch.float64).reshape(-1).cpu().numpy()
        if not first_bad and not np.isfinite(out).all():
            first_bad.append(float(t))
        return out

    cls = getattr(si, method) if isinstance(method, str) else method
    y_np = y0.detach().to(torch.float64).reshape(-1).cpu().numpy().copy()
    solver = cls(fun, t0, y_np, t1, rtol=rtol, atol=atol)
    times, states = ([t0], [y_np.copy()]) if return_trajectory else (None, None)
    steps = 0
    while solver.status == "running":
        message = solver.step()
        if solver.status == "failed":
            text = f"scipy {getattr(cls, '__name__', cls)} failed at t={solver.t:.6g}: {message}"
            if first_bad:
                where = f" (the right-hand side was NaN/inf first at t={first_bad[0]:.6g})"
                raise FloatingPointError(text + where)
            raise RuntimeError(text)
        steps += 1
        if return_trajectory:
            times.append(float(solver.t))
            states.append(solver.y.copy())
        _advance(bar, abs(solver.t - t0))
    y = solver.y
    if not np.isfinite(y).all():
        raise FloatingPointError(f"the ODE solution is NaN/inf at t={t1}")
    out = torch.from_numpy(y.copy()).to(device=device, dtype=dtype).reshape(shape)
    traj = None
    if return_trajectory:
        traj = torch.from_numpy(np.stack(states)).to(device=device, dtype=dtype)
        traj = traj.reshape(len(states), *shape)
    return OdeSolution(y=out, nfev=nfev, steps=steps, times=times, trajectory=traj)


# --------------------------------------------------------------------------------------------
# torch backend: Dormand-Prince 5(4)
# --------------------------------------------------------------------------------------------
# Butcher tableau of Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae".
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)  # 5th order, also row 7 of A
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
# error weights: 5th- minus 4th-order solution, over the 7 stages (the 7th is f at the new point)
_E = tuple(b - b4 for b, b4 in zip((*_B, 0.0), _B4, strict=True))

_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1.0 / 5.0  # the embedded error estimate is of order 4: err ~ h^5


def _rms(v: Tensor, per_sample: bool) -> float:
    """The error norm, read on the host (the one scalar a step needs): the RMS over all
    entries, or the largest over the batch (first dimension) of the per-sample RMS."""
    if not per_sample or v.ndim == 0:
        return float(torch.linalg.vector_norm(v) / math.sqrt(v.numel()))
    return math.sqrt(float(v.reshape(v.shape[0], -1).pow(2).mean(1).max()))


def _combine(y: Tensor, h: float, coeffs, ks) -> Tensor:
    """$y + h \\sum_i c_i k_i$ (skipping zero coefficients)."""
    out = y.clone()
    for c, k in zip(coeffs, ks, strict=False):
        if c != 0.0:
            out.add_(k, alpha=h * c)
    return out


def _initial_step(func, t0, y0, f0, t1, rtol, atol, per_sample) -> float:
    """Hairer, Nørsett & Wanner, Solving ODEs I, Sec. II.4 (the rule scipy uses)."""
    direction = 1.0 if t1 > t0 else -1.0
    length = abs(t1 - t0)
    scale = atol + y0.abs() * rtol
    d0, d1 = _rms(y0 / scale, per_sample), _rms(f0 / scale, per_sample)
    if not (math.isfinite(d0) and math.isfinite(d1)):
        raise FloatingPointError(
            f"dopri5: the ODE state or right-hand side is NaN/inf at t={t0:.6g}"
        )
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, length)
    f1 = func(t0 + direction * h0, y0 + direction * h0 * f0)
    d2 = _rms((f1 - f0) / scale, per_sample) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / 5.0)
    return min(100 * h0, h1, length)


def dopri5(
    func: OdeFunc,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float,
    atol: float,
    per_sample: bool = True,
    return_trajectory: bool = False,
    bar=None,
) -> OdeSolution:
    r"""Dormand-Prince 5(4) with standard step-size control, entirely on ``y0``'s device.

    One step from $(t, y)$ with step $h$ evaluates the seven stages
    $k_i = F\big(t + c_i h,\ y + h\sum_{j<i} a_{ij} k_j\big)$ (the seventh at the new point,
    reused as the next step's first: "first same as last"), advances with the 5th-order
    weights $y_{new} = y + h\sum_i b_i k_i$ and estimates the local error with the embedded
    4th-order solution, $e = h\sum_i (b_i - b^*_i) k_i$. With
    $\mathrm{err} = \max_b \operatorname{RMS}\big(e_b / (\mathrm{atol} + \mathrm{rtol}\max(|y_b|, |y_{b,new}|))\big)$
    (``per_sample=True``: the RMS over each sample $b$ of the batch, the worst sample counts;
    ``False``: the RMS over all entries, as scipy) the step is accepted when $\mathrm{err} < 1$, and the next step is
    $h \leftarrow h \cdot \min\big(10, \max(0.2, 0.9\,\mathrm{err}^{-1/5})\big)$ (no growth
    right after a rejection). A non-finite error rejects the step like a large one; when the
    step shrinks below ten ulps of $t$, the solve fails. ``func`` receives and returns tensors
    in ``y0``'s dtype; ``t`` never leaves $[t_0, t_1]$ and the last step ends exactly on $t_1$.
    """
    direction = 1.0 if t1 > t0 else -1.0
    t, y = t0, y0
    f = func(t, y)
    nfev = 1
    h_abs = _initial_step(func, t0, y0, f, t1, rtol, atol, per_sample)
    nfev += 1
    # no copies: every state is a fresh tensor that is never written to, and stack copies
    times, states = ([t0], [y0]) if return_trajectory else (None, None)
    steps = 0
    while direction * (t1 - t) > 0:
        min_step = 10 * abs(math.nextafter(t, direction * math.inf) - t)
        h_abs = max(h_abs, min_step)
        rejected, err = False, 0.0
        while True:
            if h_abs < min_step:
                if not math.isfinite(err):
                    raise FloatingPointError(
                        f"dopri5: the ODE right-hand side is NaN/inf near t={t:.6g}"
                    )
                raise RuntimeError(
                    f"dopri5 failed at t={t:.6g}: required step size is less than spacing "
                    f"between numbers"
                )
            t_new = t + direction * h_abs
            if direction * (t_new - t1) >= 0:
                t_new = t1
            h = t_new - t
            ks = [f]
            for i in range(1, 6):
                ks.append(func(t + _C[i] * h, _combine(y, h, _A[i], ks)))
            y_new = _combine(y, h, _B, ks)
            f_new = func(t_new, y_new)
            ks.append(f_new)
            nfev += 6
            scale = torch.maximum(y.abs(), y_new.abs()).mul_(rtol).add_(atol)
            err = _rms(_combine(torch.zeros_like(y), h, _E, ks).div_(scale), per_sample)
            if err < 1.0:
                factor = (
                    _MAX_FACTOR if err == 0 else min(_MAX_FACTOR, _SAFETY * err**_ERROR_EXPONENT)
                )
                if rejected:
                    factor = min(1.0, factor)
                h_abs = abs(h) * factor
                break
            h_abs = abs(h) * (
                max(_MIN_FACTOR, _SAFETY * err**_ERROR_EXPONENT)
                if math.isfinite(err)
                else _MIN_FACTOR
            )
            rejected = True
        _advance(bar, abs(t_new - t0))
        t, y, f = t_new, y_new, f_new
        steps += 1
        if return_trajectory:
            times.append(t)
            states.append(y)
    traj = torch.stack(states) if return_trajectory else None
    return OdeSolution(y=y, nfev=nfev, steps=steps, times=times, trajectory=traj)


def _progress_bar(progress: bool, total: float, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="t", bar_format="{l_bar}{bar}| t {n:.3g}/{total:.3g}")


def _advance(bar, done: float) -> None:
    """Move the bar to ``done`` = $|t - t_0|$. Set, not summed: a running sum of the steps
    overshoots the total by rounding, and tqdm warns when it does."""
    if bar is not None:
        bar.n = done
        bar.update(0)  # displays, throttled like any update
