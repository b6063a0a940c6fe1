r"""Checking a grid's values: typed getters that name the offending key on error."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ConfigError",
    "Table",
    "float_list",
    "int_list",
    "kind_table",
    "positive",
    "table_list",
    "typed",
]


class ConfigError(ValueError):
    """A comparison grid that cannot run; the message names the offending key."""


MISSING = object()

BOOL, INT, FLOAT, STR, ANY = bool, int, float, str, object


class Table:
    """One table of the config being checked: typed getters that name the key on error."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'config'} must be a table, got {data!r}")
        self.data, self.path, self.used = data, path, set()

    def key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def get(self, k: str, kind: type, default: Any = MISSING) -> Any:
        self.used.add(k)
        if k not in self.data:
            if default is MISSING:
                raise ConfigError(f"{self.key(k)} is required")
            return default
        return typed(self.data[k], kind, self.key(k))

    def done(self, allowed: tuple[str, ...] | None = None) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            raise ConfigError(f"unknown key {self.key(unknown[0])!s}{hint}")


def typed(v: Any, kind: type, key: str) -> Any:
    """``v`` checked against ``kind`` (bool, int, float: finite, converted; str: non-empty;
    object: anything, checked by the caller)."""
    if kind is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{key} must be true or false, got {v!r}")
        return v
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{key} must be an integer, got {v!r}")
        return v
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{key} must be a finite number, got {v!r}")
        return float(v)
    if kind is str:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key} must be a non-empty string, got {v!r}")
        return v
    return v


def positive(v: float, key: str, *, below: float | None = None) -> float:
    if not v > 0 or (below is not None and not v < below):
        rng = f"in (0, {below})" if below is not None else "> 0"
        raise ConfigError(f"{key} must be {rng}, got {v!r}")
    return v


def int_list(v: Any, key: str, minimum: int) -> list[int]:
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{key} must be a non-empty list of integers, got {v!r}")
    out = []
    for i, e in enumerate(v):
        e = typed(e, int, f"{key}[{i}]")
        if e < minimum:
            raise ConfigError(f"{key}[{i}] must be an integer >= {minimum}, got {e!r}")
        out.append(e)
    return out


def float_list(v: Any, key: str) -> list[float]:
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{key} must be a non-empty list of numbers, got {v!r}")
    return [positive(typed(e, float, f"{key}[{i}]"), f"{key}[{i}]") for i, e in enumerate(v)]


def table_list(v: Any, key: str) -> list:
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{key} must be a non-empty list, got {v!r}")
    return v


def kind_table(v: Any, key: str, kinds) -> tuple[Table, str]:
    """A ``kind`` name or a table with a ``kind`` among ``kinds``: the table and the kind."""
    t = Table({"kind": v} if isinstance(v, str) else v, key)
    kind = t.get("kind", str)
    if kind not in kinds:
        raise ConfigError(f"{t.key('kind')} = {kind!r}; expected one of {', '.join(kinds)}")
    return t, kind
