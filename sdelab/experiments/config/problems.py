r"""The problems of a grid: data sets (Gaussian mixtures with an exact score) and SDEs."""

from __future__ import annotations

import math
from typing import Any

import torch

from ...analytic import GaussianMixture
from .schema import ConfigError, Table, kind_table, positive

__all__ = [
    "BUILTIN_DATASETS",
    "SDE_KINDS",
    "build_mixture",
    "build_sde",
    "check_dataset",
    "check_sde",
]

#: SDE kinds: (class name in sdelab, display name, allowed parameters)
SDE_KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "vp": ("VPSDE", "VP", ("beta_min", "beta_max", "N")),
    "subvp": ("SubVPSDE", "sub-VP", ("beta_min", "beta_max", "N")),
    "ve": ("VESDE", "VE", ("sigma_min", "sigma_max", "N")),
}


def _gmm2d() -> dict:
    """Six anisotropic components on a ring of radius 3, unequal weights (2-D)."""
    angles = [k * math.pi / 3 for k in range(6)]
    means = [[3.0 * math.cos(a), 3.0 * math.sin(a)] for a in angles]
    stds = [[0.6, 0.15] if k % 2 == 0 else [0.15, 0.5] for k in range(6)]
    weights = [0.3, 0.1, 0.2, 0.1, 0.2, 0.1]
    return {"name": "gmm2d", "means": means, "stds": stds, "weights": weights}


def _random_mixture(name: str, dim: int, components: int, seed: int, scale: float) -> dict:
    """Means ~ scale * N(0, I / 2), per-axis stds in [0.2, 1), weights in [0.5, 1.5) normalised,
    all from a CPU generator seeded with ``seed`` (reproducible on every machine)."""
    g = torch.Generator().manual_seed(seed)
    means = scale * torch.randn(components, dim, generator=g, dtype=torch.float64) / math.sqrt(2)
    stds = 0.2 + 0.8 * torch.rand(components, dim, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(components, generator=g, dtype=torch.float64)
    return {
        "name": name,
        "means": [[round(v, 6) for v in row] for row in means.tolist()],
        "stds": [[round(v, 6) for v in row] for row in stds.tolist()],
        "weights": [round(v, 6) for v in (weights / weights.sum()).tolist()],
    }


#: built-in analytic benchmarks (name -> description)
BUILTIN_DATASETS: dict[str, str] = {
    "gmm2d": "2-D, 6 anisotropic components on a ring of radius 3, weights 0.1-0.3",
    "gmm16": "16-D, 8 anisotropic components, random means (seed 0, scale 3)",
}


def _builtin(name: str) -> dict:
    if name == "gmm2d":
        return _gmm2d()
    return _random_mixture("gmm16", 16, 8, 0, 3.0)


def builtin_mixture(name: str) -> GaussianMixture:
    """The built-in benchmark mixture ``name`` (a key of `BUILTIN_DATASETS`)."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"name must be one of {sorted(BUILTIN_DATASETS)}, got {name!r}")
    return build_mixture(_builtin(name))


def check_dataset(v: Any, key: str) -> dict:
    """A dataset entry of a grid as a plain dict (``name``, ``means``, ``stds``, ``weights``)."""
    if isinstance(v, str):
        if v not in BUILTIN_DATASETS:
            raise ConfigError(
                f"{key} = {v!r} is not a built-in dataset; expected one of "
                f"{', '.join(BUILTIN_DATASETS)} or a table"
            )
        return _builtin(v)
    t = Table(v, key)
    if "means" in t.data:
        name = t.get("name", str)
        spec = {
            "name": name,
            "means": t.get("means", object),
            "stds": t.get("stds", object),
            "weights": t.get("weights", object, None),
        }
        t.done(("name", "means", "stds", "weights"))
    elif "dim" in t.data:
        name = t.get("name", str)
        dim, comps = t.get("dim", int), t.get("components", int, 4)
        if dim < 1:
            raise ConfigError(f"{t.key('dim')} must be an integer >= 1, got {dim!r}")
        if comps < 1:
            raise ConfigError(f"{t.key('components')} must be an integer >= 1, got {comps!r}")
        scale = positive(t.get("scale", float, 3.0), t.key("scale"))
        seed = t.get("seed", int, 0)
        t.done(("name", "dim", "components", "seed", "scale"))
        spec = _random_mixture(name, dim, comps, seed, scale)
    elif "builtin" in t.data:
        b = t.get("builtin", str)
        t.done(("builtin",))
        return check_dataset(b, t.key("builtin"))
    else:
        raise ConfigError(
            f"{key} must be a built-in name, a table with means/stds[/weights] or a table "
            f"with dim[/components/seed/scale], got {v!r}"
        )
    try:
        build_mixture(spec)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ConfigError(f"{key} ({spec['name']!r}) is not a valid mixture: {e}") from None
    return spec


def check_sde(v: Any, key: str) -> dict:
    """An SDE entry of a grid as a plain dict (``kind``, ``name`` and the class's parameters)."""
    t, kind = kind_table(v, key, SDE_KINDS)
    _, display, params = SDE_KINDS[kind]
    spec: dict = {"kind": kind, "name": t.get("name", str, display)}
    for p in params:
        if p in t.data:
            spec[p] = t.get(p, int if p == "N" else float)
    t.done(("kind", "name", *params))
    try:
        build_sde(spec)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {e}") from None
    return spec


def build_mixture(spec: dict) -> GaussianMixture:
    """The `sdelab.GaussianMixture` of a dataset spec, in float64 on the CPU."""
    w = spec.get("weights")
    return GaussianMixture(
        torch.tensor(spec["means"], dtype=torch.float64),
        torch.tensor(spec["stds"], dtype=torch.float64),
        None if w is None else torch.tensor(w, dtype=torch.float64),
    )


def build_sde(spec: dict):
    """The `sdelab.SDE` of an SDE spec."""
    import sdelab

    cls = getattr(sdelab, SDE_KINDS[spec["kind"]][0])
    return cls(**{k: v for k, v in spec.items() if k not in ("kind", "name")})
