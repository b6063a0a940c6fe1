r"""Solver comparison experiments: the engine of ``sdelab compare``.

* `compare`: run a grid and write results, tables and plots (the Python face of the CLI).
* `sdelab.experiments.config`: grids (`CompareConfig`, `load_config`, presets).
* `sdelab.experiments.metrics`: distances to the truth, each beside its noise floor.
* `sdelab.experiments.pathwise`: a deterministic solver's distance to the exact
  probability-flow map of the same prior draws (no noise floor).
* `sdelab.experiments.runner`: cells, resumable JSON-lines results, score timing.
* `sdelab.experiments.report`: tables (best solver per NFE budget, Table-1 layout) and plots.
"""

from .compare import CompareResult, compare, load_data, load_score
from .config import CompareConfig, ConfigError, config_from_dict, load_config, preset
from .metrics import (
    Reference,
    covariance_error,
    energy_distance,
    mean_error,
    mean_log_density,
    mode_weight_error,
    sliced_wasserstein2,
)
from .report import aggregate, plot_error_vs_nfe, plot_error_vs_time, summary_table, table1
from .runner import load_results, run

__all__ = [
    "CompareConfig",
    "CompareResult",
    "ConfigError",
    "Reference",
    "aggregate",
    "compare",
    "config_from_dict",
    "covariance_error",
    "energy_distance",
    "load_config",
    "load_data",
    "load_results",
    "load_score",
    "mean_error",
    "mean_log_density",
    "mode_weight_error",
    "plot_error_vs_nfe",
    "plot_error_vs_time",
    "preset",
    "run",
    "sliced_wasserstein2",
    "summary_table",
    "table1",
]
