r"""The built-in grids: ``default`` (the benchmark of ``sdelab compare``), ``quick``, ``fast``
(the fast samplers at 5-50 score evaluations) and ``table1`` (the structure of Song et al.
2021, Table 1)."""

from __future__ import annotations

from .grid import CompareConfig, config_from_dict
from .schema import ConfigError

__all__ = ["PRESETS", "preset"]

_ALL_SOLVERS: list = [
    "euler_maruyama",
    {"kind": "euler_maruyama", "probability_flow": True},
    "reverse_diffusion",
    {"kind": "reverse_diffusion", "probability_flow": True},
    "ancestral",
    {"kind": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"},
    {"kind": "pc", "predictor": "reverse_diffusion", "corrector": "annealed_langevin"},
    {"kind": "langevin", "steps": [100, 200, 500, 1000]},
    {"kind": "probability_flow_ode", "tolerances": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
    {"kind": "probability_flow_ode", "backend": "torch", "tolerances": [1e-1, 1e-2, 1e-3, 1e-4]},
    {"kind": "torchsde", "method": "srk", "tolerances": [1e-1, 3e-2, 1e-2]},
    {"kind": "torchsde", "method": "euler", "adaptive": False, "steps": [10, 50, 200]},
    # the best fast samplers of the ``fast`` preset (docs/concepts/compare.md, "Fast
    # samplers"): UniPC-3 has the lowest pathwise error at 20-50 NFE on most panels,
    # DPM++ 2M on Karras' levels is the field's default and the best 2M schedule on 3 of 4,
    # its SDE variant the stochastic sampler closest to the energy floor at 15-20 NFE
    {"kind": "unipc", "order": 3, "schedule": "logsnr", "nfe": [5, 10, 20, 50]},
    {"kind": "dpm_solver", "schedule": "karras", "nfe": [5, 10, 20, 50]},
    {"kind": "dpm_solver", "stochastic": True, "schedule": "logsnr", "nfe": [5, 10, 20, 50]},
]

_TABLE1_PREDICTORS = [
    ("ancestral", "ancestral"),
    ("reverse_diffusion", "reverse_diffusion"),
    ({"kind": "reverse_diffusion", "probability_flow": True}, "probability flow"),
]


def _table1_solvers() -> list:
    solvers: list = []
    for pred, _ in _TABLE1_PREDICTORS:
        p = {"kind": pred} if isinstance(pred, str) else dict(pred)
        solvers.append({**p, "steps": [1000, 2000]})  # P1000, P2000
        solvers.append(
            {"kind": "pc", "predictor": p, "corrector": "langevin", "steps": [1000]}
        )  # PC1000
    solvers.append({"kind": "langevin", "steps": [2000]})  # C2000
    return solvers


#: NFE budgets of the ``fast`` preset (each solver gets the most steps that fit each one)
FAST_BUDGETS = [5, 8, 10, 15, 20, 30, 50]


def _fast(kind: str, schedule: str | None, **options) -> dict:
    """A fast-preset entry: ``kind`` with ``options`` on ``schedule``, on the NFE ladder."""
    entry: dict = {"kind": kind, **options, "nfe": FAST_BUDGETS}
    if schedule is not None:
        entry["schedule"] = schedule
    return entry


#: every fast sampler on the grid its paper (or the field's default) uses: the exponential
#: integrators and pseudo-numerical methods on equal steps in log-SNR (DPM-Solver, UniPC,
#: DEIS), DPM-Solver++ 2M also on the time-quadratic grid (DPM-Solver++'s choice for guided
#: sampling) and Karras' levels (A1111's "DPM++ 2M Karras"); the Karras family on Karras'
#: levels (rho = 7); the probability-flow Euler (EM-PF) on the uniform grid as the baseline.
#: EDM's churn is its VP setting (Karras et al. 2022, Table 5) with S_noise = 1 (the score is
#: exact).
_FAST_SOLVERS: list = [
    {"kind": "euler_maruyama", "probability_flow": True, "nfe": FAST_BUDGETS},
    _fast("ddim", "logsnr"),
    _fast("dpm_solver", "logsnr"),
    _fast("dpm_solver", "quadratic"),
    _fast("dpm_solver", "karras"),
    _fast("dpm_solver", "logsnr", order=3),
    _fast("dpm_solver", "logsnr", multistep=False),
    _fast("dpm_solver", "logsnr", order=3, multistep=False, predict="noise"),
    _fast("unipc", "logsnr"),
    _fast("unipc", "logsnr", order=3),
    _fast("deis", "logsnr"),
    _fast("pndm", "logsnr"),
    _fast("pndm", "logsnr", skip_prk=True),
    _fast("ipndm", "logsnr"),
    _fast("euler", "karras"),
    _fast("heun", "karras"),
    _fast("dpm2", "karras"),
    _fast("lms", "karras"),
    # stochastic: ranked by the distributional metric only
    _fast("ddim", "logsnr", eta=1.0),
    _fast("dpm_solver", "logsnr", stochastic=True),
    _fast("dpm_solver", "karras", stochastic=True, multistep=False),  # A1111's DPM++ SDE Karras
    _fast("euler_ancestral", "karras"),
    _fast("dpm2_ancestral", "karras"),
    _fast("dpmpp_2s_ancestral", "karras"),
    _fast("edm_stochastic", "karras", s_churn=30.0, s_tmin=0.01, s_tmax=1.0),
]

#: primary metric of the ``default``, ``quick`` and ``fast`` presets. The energy distance's noise floor
#: falls like 1/n while a fixed error stays, so at the same cost it separates solvers from
#: exact sampling better than ``sw2``, whose floor on multi-modal data falls like n^(-1/4)
#: (measured on the default grid at n = 1000, 3 seeds: 33/34/31 of 68 gmm2d configurations
#: inside the floor band against 48/44/34 with ``sw2``).
_PRESET_METRIC = "energy"

PRESETS: dict[str, dict] = {
    "default": {
        "name": "default",
        "datasets": ["gmm2d", "gmm16"],
        "sdes": ["vp", "subvp", "ve"],
        "solvers": _ALL_SOLVERS,
        "steps": [10, 20, 50, 100, 200, 500, 1000],
        "tolerances": [1e-2, 1e-3, 1e-4, 1e-5],
        "n_samples": 1000,
        "seeds": [0, 1, 2],
        "metric": _PRESET_METRIC,
    },
    "quick": {
        "name": "quick",
        "datasets": ["gmm2d"],
        "sdes": ["vp", "ve"],
        "solvers": [
            "euler_maruyama",
            "reverse_diffusion",
            "ancestral",
            {"kind": "reverse_diffusion", "probability_flow": True},
            {"kind": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"},
            {"kind": "probability_flow_ode", "tolerances": [1e-2, 1e-4]},
        ],
        "steps": [10, 30, 100, 300],
        "n_samples": 1000,
        "seeds": [0],
        "metric": _PRESET_METRIC,
    },
    "fast": {
        "name": "fast",
        "datasets": ["gmm2d", "gmm16"],
        "sdes": ["vp", "ve"],
        "solvers": _FAST_SOLVERS,
        "n_samples": 1000,
        "seeds": [0, 1, 2],
        "metric": _PRESET_METRIC,
        "budgets": FAST_BUDGETS,
    },
    "table1": {
        "name": "table1",
        "datasets": ["gmm2d"],
        "sdes": ["ve", "vp"],
        "solvers": _table1_solvers(),
        "n_samples": 2000,
        "seeds": [0, 1, 2],
        "report": "table1",
    },
}


def preset(name: str) -> CompareConfig:
    """A built-in grid: ``default`` (the full benchmark), ``quick`` (< 30 s), ``fast`` (every
    fast sampler at 5-50 NFE, with the pathwise error of the deterministic ones), all ranked
    by the energy distance, or ``table1`` (the structure of Song et al. 2021, Table 1, ranked by
    ``sw2`` in place of FID)."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return config_from_dict(PRESETS[name])
