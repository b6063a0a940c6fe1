r"""The grid of a solver comparison: which data, SDEs, solvers, steps, tolerances and seeds.

A grid is written as a TOML or JSON file (or a dict) and checked completely before any work
starts: an unknown key, a wrong type or an impossible value raises `ConfigError` naming the
key (``solvers[2].snr``), the value and what was expected. See ``examples/compare.toml``::

    n_samples = 2000            # sample size of every cell (and of the truth samples)
    seeds = [0, 1, 2]           # repeated seeds give error bars
    eps = 1e-3                  # sampling ends at t = eps
    steps = [10, 50, 200]       # ladder of fixed-grid steps
    tolerances = [1e-2, 1e-4]   # ladder of rtol = atol for adaptive solvers

    datasets = ["gmm2d"]        # built-in mixtures, or tables (see below)
    sdes = ["vp", { kind = "ve", sigma_max = 20.0 }]

    [[solvers]]
    kind = "pc"
    predictor = "reverse_diffusion"
    corrector = { kind = "langevin", snr = 0.16 }

Datasets are a built-in name (`BUILTIN_DATASETS`), ``{name, means, stds, weights}`` (an
explicit `sdelab.GaussianMixture`) or ``{name, dim, components, seed, scale}`` (a random
anisotropic mixture). SDEs are ``"vp"``, ``"subvp"``, ``"ve"`` or a table with ``kind`` and
the class's parameters. Solvers are a kind (`SOLVERS`) or a table with ``kind``, the
solver's options (its dataclass fields), and optional ``label``, ``steps`` and
``tolerances`` (overriding the ladders for that solver).

The package is split by job: `schema` (typed checks naming the key), `solvers` (the solver
registry, options read off the solver dataclasses), `problems` (datasets and SDEs), `grid`
(`CompareConfig`, `config_from_dict`, `load_config`) and `presets`.
"""

from .grid import METRIC_KEYS, CompareConfig, config_from_dict, load_config
from .presets import PRESETS, preset
from .problems import BUILTIN_DATASETS, SDE_KINDS, build_mixture, build_sde, builtin_mixture
from .schema import ConfigError
from .solvers import (
    SOLVER_KINDS,
    SOLVERS,
    SolverKind,
    build_solver,
    is_adaptive,
    solver_call,
    solver_label,
    solver_legend,
)

__all__ = [
    "BUILTIN_DATASETS",
    "METRIC_KEYS",
    "PRESETS",
    "SDE_KINDS",
    "SOLVERS",
    "SOLVER_KINDS",
    "CompareConfig",
    "ConfigError",
    "SolverKind",
    "build_mixture",
    "build_sde",
    "build_solver",
    "builtin_mixture",
    "config_from_dict",
    "is_adaptive",
    "load_config",
    "preset",
    "solver_call",
    "solver_label",
    "solver_legend",
]
