r"""The validated grid (`CompareConfig`) and reading it from a dict or a TOML/JSON file."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .problems import check_dataset, check_sde
from .schema import ConfigError, Table, float_list, int_list, table_list
from .solvers import check_solver

__all__ = ["METRIC_KEYS", "CompareConfig", "config_from_dict", "load_config"]

#: metrics that may be chosen as the primary one (plots, summary)
METRIC_KEYS = ("sw2", "energy", "mean_err", "cov_err", "mode_tv", "logp_gap")


@dataclass
class CompareConfig:
    """A validated comparison grid (see the module docstring for the file format).

    Every list entry is normalised to a plain dict (JSON-serialisable), so a cell's full
    configuration can be written next to its results and used as its resume key.
    """

    datasets: list[dict] = field(default_factory=list)
    sdes: list[dict] = field(default_factory=list)
    solvers: list[dict] = field(default_factory=list)
    steps: list[int] = field(default_factory=lambda: [10, 20, 50, 100, 200, 500, 1000])
    tolerances: list[float] = field(default_factory=lambda: [1e-2, 1e-3, 1e-4, 1e-5])
    n_samples: int = 2000
    seeds: list[int] = field(default_factory=lambda: [0])
    eps: float = 1e-3
    dtype: str = "float32"
    projections: int = 128
    metric: str = "sw2"
    report: str = "summary"
    name: str = "compare"
    #: NFE budgets of the summary's rows (``None``: 10, 20, 50, ..., 5000)
    budgets: list[int] | None = None

    def to_dict(self) -> dict:
        """The grid as a plain dict (what `load_config` accepts)."""
        return asdict(self)


def config_from_dict(data: dict) -> CompareConfig:
    """Check a grid given as a dict (the parsed TOML/JSON) and return a `CompareConfig`."""
    t = Table(copy.deepcopy(data), "")
    d = CompareConfig()
    cfg = CompareConfig(
        name=t.get("name", str, d.name),
        n_samples=t.get("n_samples", int, d.n_samples),
        eps=t.get("eps", float, d.eps),
        dtype=t.get("dtype", str, d.dtype),
        projections=t.get("projections", int, d.projections),
        metric=t.get("metric", str, d.metric),
        report=t.get("report", str, d.report),
    )
    if cfg.n_samples < 2:
        raise ConfigError(f"n_samples must be an integer >= 2, got {cfg.n_samples!r}")
    if not 0 < cfg.eps < 1:
        raise ConfigError(f"eps must lie in (0, T) = (0, 1), got {cfg.eps!r}")
    if cfg.dtype not in ("float32", "float64"):
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {cfg.dtype!r}")
    if cfg.projections < 1:
        raise ConfigError(f"projections must be an integer >= 1, got {cfg.projections!r}")
    if cfg.metric not in METRIC_KEYS:
        raise ConfigError(f"metric must be one of {', '.join(METRIC_KEYS)}, got {cfg.metric!r}")
    if cfg.report not in ("summary", "table1"):
        raise ConfigError(f"report must be 'summary' or 'table1', got {cfg.report!r}")
    for k, minimum in (("seeds", 0), ("steps", 1), ("budgets", 1)):
        t.used.add(k)
        if k in t.data and not (k == "budgets" and t.data[k] is None):  # None: the default
            setattr(cfg, k, int_list(t.data[k], k, minimum))
    if "tolerances" in t.data:
        t.used.add("tolerances")
        cfg.tolerances = float_list(t.data["tolerances"], "tolerances")
    for k, check, default in (
        ("datasets", check_dataset, ["gmm2d"]),
        ("sdes", check_sde, ["vp"]),
        ("solvers", check_solver, None),
    ):
        t.used.add(k)
        if k not in t.data and default is None:
            raise ConfigError(f"{k} is required (a non-empty list)")
        items = table_list(t.data.get(k, default), k)
        setattr(cfg, k, [check(v, f"{k}[{i}]") for i, v in enumerate(items)])
    t.done(tuple(f for f in CompareConfig.__dataclass_fields__))
    for k in ("datasets", "sdes"):
        names = [s["name"] for s in getattr(cfg, k)]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"{k} has two entries named {dup!r}; give each a unique name")
    return cfg


def load_config(path: str | Path) -> CompareConfig:
    """Read and check a grid from a ``.toml`` or ``.json`` file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file must end in .toml or .json, got {str(p)!r}")
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"cannot parse {str(p)!r}: {e}") from None
    return config_from_dict(data)
