r"""diffusers' DPM-Solver schedulers as thin adapters over `sdelab.DPMSolver` on
`sdelab.DiscreteVPSDE.from_diffusers(config)` (see `sdelab.schedulers._discrete`).

| class | sdelab solver |
|---|---|
| `DPMSolverMultistepScheduler` | `sdelab.DPMSolver` (multistep; ``dpmsolver++``: data prediction, ``dpmsolver``: noise prediction, ``sde-dpmsolver++``: the 2M SDE) |
| `DPMSolverSinglestepScheduler` | `sdelab.DPMSolver` (``multistep=False``; its stages on diffusers' grid points) |

The noise levels are diffusers' $s_k = \sqrt{(1 - \bar\alpha_k)/\bar\alpha_k}$ at the listed training
steps (or a Karras / exponential / beta ramp), each at the sdelab time of that noise-to-signal
ratio; the step to $s = 0$ (``final_sigmas_type="zero"``) is Tweedie's $D$, the first-order step
diffusers takes there.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._checks import _short
from ..solvers.dpm_solver import DPMSolver
from ._discrete import AlphaBarScheduler, alpha_bar_timesteps
from ._sigmas import inference_sigmas, training_sigmas
from .sigma import KARRAS_COMPATIBLES

__all__ = [
    "DPMSolverMultistepInverseScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
]

_ALGORITHMS = {"dpmsolver++": ("data", False), "dpmsolver": ("noise", False)}
_ALGORITHMS["sde-dpmsolver++"] = ("data", True)


def _dpm_config(cfg: dict[str, Any]) -> None:
    """diffusers' renames when a DEIS / UniPC config is loaded into a DPM-Solver class."""
    if cfg.get("algorithm_type") == "deis":
        cfg["algorithm_type"] = "dpmsolver++"
    if cfg.get("solver_type") in ("logrho", "bh1", "bh2"):
        cfg["solver_type"] = "midpoint"


class _SigmaGrid(AlphaBarScheduler):
    """The noise-level grid of the DPM-Solver / UniPC / DEIS family: ``timesteps`` (int64) and
    ``sigmas`` as diffusers lays them out, each level at sdelab's time of that level."""

    _extra_point = 1
    _round_karras = False  # DPMSolverSinglestep: Karras timesteps rounded on every schedule
    _repeat_last = False  # DEIS / UniPC: a ramp's last level repeated as the final sigma

    def _setup(self) -> None:
        super()._setup()
        n_train = self._config["num_train_timesteps"]
        # before set_timesteps, as diffusers: the training table and the float32 steps
        self.sigmas = torch.from_numpy(training_sigmas(self.alphas_cumprod).copy())
        self.timesteps = torch.from_numpy(
            np.linspace(0, n_train - 1, n_train, dtype=np.float32)[::-1].copy()
        )

    def add_noise(
        self, original_samples: Tensor, noise: Tensor, timesteps: Tensor | Sequence[int]
    ) -> Tensor:
        r"""The forward process at the levels $s$ of ``timesteps`` in the current schedule (as
        diffusers: ``begin_index`` / the current step where a pipeline set them):
        $x = m\,x_0 + \sigma\,\epsilon$, $m = (1 + s^2)^{-1/2}$, $\sigma = s\,m$. A timestep
        not in ``timesteps`` raises (diffusers takes the last level)."""
        if not isinstance(noise, Tensor) or noise.shape != original_samples.shape:
            raise ValueError(
                f"noise must be a tensor shaped like original_samples "
                f"{tuple(original_samples.shape)}, got {_short(noise)}"
            )
        device = original_samples.device
        sigmas = self.sigmas.to(device=device, dtype=original_samples.dtype)
        schedule = self.timesteps.to(device)
        timesteps = torch.as_tensor(timesteps).to(device).reshape(-1)
        if self._begin_index is None:
            idx = []
            for t in timesteps:
                hits = (schedule == t).nonzero()
                if len(hits) == 0:
                    raise ValueError(f"timesteps must be in scheduler.timesteps, got {_short(t)}")
                idx.append(int(hits[1 if len(hits) > 1 else 0]))
        else:
            first = self._counter if self._counter is not None else self._begin_index
            idx = [first] * timesteps.shape[0]
        s = sigmas[idx].reshape(-1, *([1] * (original_samples.ndim - 1)))
        m = 1.0 / (s**2 + 1) ** 0.5
        return m * original_samples + (s * m) * noise

    def _levels(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self._config
        n_train = cfg["num_train_timesteps"]
        ts = alpha_bar_timesteps(
            cfg.get("timestep_spacing", "linspace"),
            n,
            n_train,
            cfg.get("steps_offset", 0),
            extra=self._extra_point,
        )
        table = training_sigmas(self.alphas_cumprod)
        if self._ramp is None:
            sigmas = np.interp(ts, np.arange(0, len(table)), table)
            last = float(table[0]) if cfg.get("final_sigmas_type") == "sigma_min" else 0.0
        else:
            lo, hi = cfg.get("sigma_min"), cfg.get("sigma_max")
            sigmas, ts = inference_sigmas(
                table,
                ts.astype(np.float64),
                self._ramp,
                float(table[0]) if lo is None else lo,
                float(table[-1]) if hi is None else hi,
            )
            if self._ramp == "karras" and (
                cfg["beta_schedule"] != "squaredcos_cap_v2" or self._round_karras
            ):
                ts = ts.round()
            last = 0.0
            if cfg.get("final_sigmas_type") == "sigma_min":
                last = float(sigmas[-1]) if self._repeat_last else float(table[0])
        if cfg.get("final_sigmas_type") is None:  # DEIS: no option, diffusers' own rule
            last = float(sigmas[-1]) if self._ramp is not None else float(table[0])
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [last]]).astype(np.float32))
        return ts, self.sigmas.numpy()

    def _plan(self, n: int):
        ts, sigmas = self._levels(n)
        levels = [
            None if s == 0.0 else self._at(self._time_of_sigma(float(s))) for s in sigmas.tolist()
        ]
        timesteps = torch.from_numpy(np.asarray(ts)).to(torch.int64)
        return timesteps, list(itertools.pairwise(levels))


class DPMSolverMultistepScheduler(_SigmaGrid):
    r"""DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022a,b) on `sdelab.DiscreteVPSDE`,
    stepped by `sdelab.DPMSolver` (``multistep=True``). With the half log-SNR
    $\lambda = -\log s$, $h = \lambda_t - \lambda_s$ and the data prediction $D$
    (``dpmsolver++``), 2M is

    $$ x_t = \frac{\sigma_t}{\sigma_s}x_s - m_t(e^{-h} - 1)\,D_s
       - \tfrac12 m_t (e^{-h} - 1)\,\frac{D_s - D_{s'}}{r_0}, \qquad r_0 = \frac{\lambda_s -
       \lambda_{s'}}{h}, $$

    (``solver_type="heun"``: the Taylor coefficient $m_t(1 - (1 - e^{-h})/h)$ in place of the
    half); ``dpmsolver`` is the same with the noise prediction; ``sde-dpmsolver++`` the 2M SDE
    ($e^{-h}\sigma_t/\sigma_s$, $u = -2h$, plus $\sigma_t\sqrt{1 - e^{-2h}}\,z$ from
    ``generator``). Warm-up and ``lower_order_final`` as diffusers; ``euler_at_final`` makes
    the last step first order.

    **Order 3.** sdelab's 3M keeps the factor 2 of the second divided difference that
    diffusers' (and the reference code's) 3M drops (see `sdelab.DPMSolver`): it is third
    order; diffusers' is second. ``solver_order=3`` therefore agrees with diffusers on the
    order-1 and order-2 warm-up steps and differs from the first third-order step on.

    Refused: ``sde-dpmsolver`` (no sdelab solver), ``use_lu_lambdas``, ``use_flow_sigmas``,
    ``variance_type`` learned, ``lambda_min_clipped``, dynamic shifting, custom timesteps."""

    _compatibles = KARRAS_COMPATIBLES
    _allowed: ClassVar[dict[str, tuple]] = {
        "algorithm_type": tuple(_ALGORITHMS),
        "solver_type": ("midpoint", "heun"),
        "solver_order": (1, 2, 3),
    }

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = True,
        euler_at_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_lu_lambdas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        cfg = {k: v for k, v in locals().items() if k != "self"}
        _dpm_config(cfg)
        self._register_config(**cfg)
        self._setup()
        self._build_solvers()

    def _build_solvers(self) -> None:
        cfg = self._config
        if cfg["algorithm_type"] == "dpmsolver" and cfg.get("final_sigmas_type") == "zero":
            raise ValueError(
                "final_sigmas_type='zero' is not supported with algorithm_type='dpmsolver' (as "
                "diffusers); use final_sigmas_type='sigma_min'"
            )
        predict, stochastic = _ALGORITHMS[cfg["algorithm_type"]]
        order = cfg["solver_order"]
        if stochastic and order == 3:
            raise ValueError(
                "solver_order must be 1 or 2 with algorithm_type='sde-dpmsolver++' for sdelab's "
                f"{type(self).__name__} (the 2M SDE), got 3"
            )
        self.stochastic = stochastic
        lof = bool(cfg["lower_order_final"]) and cfg.get("final_sigmas_type") != "zero"
        self.solver = DPMSolver(order, True, predict, stochastic, cfg["solver_type"], lof)
        self._first_order = DPMSolver(1, True, predict, stochastic, cfg["solver_type"], lof)

    def _solver_for(self, k: int) -> DPMSolver:
        if self._config["euler_at_final"] and k == len(self._calls) - 1:
            return self._first_order
        return self.solver

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        generator: torch.Generator | None = None,
        variance_noise: Tensor | None = None,
        return_dict: bool = True,
    ):
        """One multistep step (see the class docs); ``variance_noise`` is not supported."""
        if variance_noise is not None:
            raise ValueError(
                f"variance_noise is not supported by sdelab's {type(self).__name__} (pass "
                "generator)"
            )
        return self._step(model_output, timestep, sample, generator, return_dict)


class DPMSolverMultistepInverseScheduler(DPMSolverMultistepScheduler):
    r"""DPM-Solver inversion: `sdelab.DPMSolver` (multistep) run *upwards* on
    `sdelab.DiscreteVPSDE`, from the least noisy listed level to
    $s_{\max} = s_{N-1}$, the same update as `DPMSolverMultistepScheduler` with $h < 0$
    (``sdelab.invert``). Refused besides the forward class's: the sigma ramps and
    ``sde-dpmsolver++`` (an SDE has no deterministic inverse)."""

    _compatibles = KARRAS_COMPATIBLES
    _allowed: ClassVar[dict[str, tuple]] = {
        "algorithm_type": ("dpmsolver++", "dpmsolver"),
        "solver_type": ("midpoint", "heun"),
        "solver_order": (1, 2, 3),
        "use_karras_sigmas": (False,),
        "use_exponential_sigmas": (False,),
        "use_beta_sigmas": (False,),
    }

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = True,
        euler_at_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        cfg = {k: v for k, v in locals().items() if k != "self"}
        _dpm_config(cfg)
        self._register_config(**cfg)
        self._setup()
        self._build_solvers()
        self.timesteps = self.timesteps.flip(0)  # increasing before set_timesteps, as diffusers

    def _levels(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self._config
        n_train = cfg["num_train_timesteps"]
        top = n_train - 1
        spacing = cfg["timestep_spacing"]
        if spacing == "linspace":
            ts = np.linspace(0, top, n + 1).round()[:-1].copy().astype(np.int64)
        elif spacing == "leading":
            ratio = (top + 1) // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[:-1].copy().astype(np.int64)
            ts += cfg["steps_offset"]
        else:
            ratio = n_train / n
            ts = np.arange(top + 1, 0, -ratio).round()[::-1].copy().astype(np.int64) - 1
        table = training_sigmas(self.alphas_cumprod)
        sigmas = np.interp(ts, np.arange(0, len(table)), table)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [table[top]]]).astype(np.float32))
        _, first = np.unique(ts, return_index=True)
        keep = np.sort(first)
        if len(keep) != len(ts):
            raise ValueError(
                f"num_inference_steps={n} repeats training steps on this grid; use fewer steps"
            )
        return ts, self.sigmas.numpy()

    def _advance(self, k, out, sample, generator):
        c, n, _ = self._calls[k]
        if n is not None and n.t == c.t:  # "trailing" ends at s_max: a step of length 0
            return sample.clone()
        return super()._advance(k, out, sample, generator)


class DPMSolverSinglestepScheduler(_SigmaGrid):
    r"""DPM-Solver / DPM-Solver++ singlestep (Lu et al. 2022a, Alg. 1-2) on
    `sdelab.DiscreteVPSDE`, stepped by `sdelab.DPMSolver` (``multistep=False``). diffusers
    spends ``solver_order`` of its grid points on one singlestep step (its ``order_list``):
    the step from $s$ to $t$ takes its intermediate points at the listed levels between, i.e.
    sdelab's 2S / 3S with $r_1 = (\lambda_{s_1} - \lambda_s)/h$ (and $r_2$). Each ``step``
    call hands the solver the model output of one stage and returns the next stage's input
    (the order-1 step to the intermediate level, as diffusers), the last call of the group
    the step's result:

    $$ x_t = \frac{\sigma_t}{\sigma_s}x_s - m_t(e^{-h} - 1)D_s
       - \tfrac{1}{2r_1} m_t(e^{-h} - 1)\,\big(D(x_{s_1}) - D_s\big) \quad (\text{2S, midpoint}). $$

    3S with ``solver_type="midpoint"`` differs from diffusers (sdelab follows Lu et al. 2022a,
    Alg. 2 with the Taylor coefficient at the second stage; see `sdelab.DPMSolver`).
    Refused as in `DPMSolverMultistepScheduler`."""

    _compatibles = KARRAS_COMPATIBLES
    _allowed: ClassVar[dict[str, tuple]] = {
        "algorithm_type": ("dpmsolver++", "dpmsolver"),
        "solver_type": ("midpoint", "heun"),
        "solver_order": (1, 2, 3),
    }
    _round_karras = True

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "dpmsolver++",
        solver_type: str = "midpoint",
        lower_order_final: bool = False,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        final_sigmas_type: str = "zero",
        lambda_min_clipped: float = -float("inf"),
        variance_type: str | None = None,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        cfg = {k: v for k, v in locals().items() if k != "self"}
        _dpm_config(cfg)
        self._register_config(**cfg)
        self._setup()
        if algorithm_type == "dpmsolver" and final_sigmas_type == "zero":
            raise ValueError(
                "final_sigmas_type='zero' is not supported with algorithm_type='dpmsolver' (as "
                "diffusers); use final_sigmas_type='sigma_min'"
            )
        self._predict = _ALGORITHMS[cfg["algorithm_type"]][0]

    def get_order_list(self, num_inference_steps: int) -> list[int]:
        """diffusers' orders of the grid points: ``solver_order`` points per step, the
        remainder (and, with ``lower_order_final``, the last step) at lower order."""
        steps = num_inference_steps
        order = self._config["solver_order"]
        if order > 3:
            raise ValueError(f"solver_order must be 1, 2 or 3, got {order}")
        if self._config["lower_order_final"]:
            if order == 3:
                if steps % 3 == 0:
                    orders = [1, 2, 3] * (steps // 3 - 1) + [1, 2] + [1]
                elif steps % 3 == 1:
                    orders = [1, 2, 3] * (steps // 3) + [1]
                else:
                    orders = [1, 2, 3] * (steps // 3) + [1, 2]
            elif order == 2:
                if steps % 2 == 0:
                    orders = [1, 2] * (steps // 2 - 1) + [1, 1]
                else:
                    orders = [1, 2] * (steps // 2) + [1]
            else:
                orders = [1] * steps
        else:
            orders = {3: [1, 2, 3], 2: [1, 2], 1: [1]}[order] * (steps // order)
        if self._config["final_sigmas_type"] == "zero":
            orders[-1] = 1
        return orders

    def _plan(self, n: int):
        cfg = self._config
        if not cfg["lower_order_final"] and cfg["final_sigmas_type"] == "zero":
            cfg["lower_order_final"] = True  # as diffusers (its logger says so on every call)
        if not cfg["lower_order_final"] and n % cfg["solver_order"] != 0:
            warnings.warn(
                f"{type(self).__name__}: lower_order_final is set to True, as diffusers does, "
                f"for num_inference_steps={n} not divisible by solver_order="
                f"{cfg['solver_order']}",
                UserWarning,
                stacklevel=3,
            )
            cfg["lower_order_final"] = True
        timesteps, calls = super()._plan(n)
        self.order_list = self.get_order_list(n)
        self._groups: list[tuple[int, int]] = []  # per call: (first call of its step, stage)
        i = 0
        while i < n:
            k = 1
            while i + k < n and k < len(self.order_list) and self.order_list[i + k] == k + 1:
                k += 1
            self._groups.extend((i, s) for s in range(k))
            i += k
        return timesteps, calls

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> None:
        """diffusers' grid; each group of ``order_list`` points is one sdelab singlestep step."""
        super().set_timesteps(num_inference_steps, device, **kwargs)
        from ..solvers.grid import Step

        self._steps: dict[int, tuple[DPMSolver, Step, Any, Any]] = {}
        firsts = sorted({g for g, _ in self._groups})
        for j, g in enumerate(firsts):
            size = sum(1 for gg, _ in self._groups if gg == g)
            c, end = self._calls[g][0], self._calls[g + size - 1][1]
            if end is None:
                self._steps[g] = (None, None, c, size)
                continue
            h = end.lam - c.lam
            rs = [(self._calls[g + s][0].lam - c.lam) / h for s in range(1, size)]
            solver = DPMSolver(
                size,
                multistep=False,
                predict=self._predict,
                solver_type=self._config["solver_type"],
                r1=rs[0] if rs else None,
                r2=rs[1] if len(rs) > 1 else None,
            )
            self._steps[g] = (solver, Step(j, len(firsts), c.t, end.t, c.t - end.t), c, size)
        self._stage_of = [s for _, s in self._groups]

    def _advance(self, k, out, sample, generator):
        g = self._groups[k][0]
        solver, step = self._steps[g][:2]
        if solver is None:  # a first-order step to s = 0: Tweedie's D
            return super()._advance(k, out, sample, generator)
        self.solver = solver
        self._started = True
        return self._advance_staged(k, out, sample, generator, step)

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        """One stage of a singlestep step (see the class docs)."""
        return self._step(model_output, timestep, sample, generator, return_dict)
