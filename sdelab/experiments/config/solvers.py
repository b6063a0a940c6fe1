r"""Solvers in a grid: a registry from kind names to solver classes, whose options are read
off the classes themselves.

A solver class is a frozen dataclass; its grid options are its dataclass fields, typed by
their annotations (``bool``, ``int``, ``float``, ``str``, ``typing.Literal[...]``, any of them
``| None``, or another solver type such as ``Predictor | None`` for a nested solver table) with
the field defaults as defaults. Range checks are the class's own ``__post_init__``: a
``ValueError`` or ``TypeError`` raised there becomes a `ConfigError` naming the key. Fields of
other types (``ode_dtype: torch.dtype | None``) cannot be set from a grid.

Adding a solver: one line, ``SOLVERS.add("ddim", "DDIM", "DDIM")``, below. A solver class
exported from `sdelab` and not registered is picked up automatically under its snake-case
class name (``DPMSolver`` -> ``dpm_solver``) with its class name as its label.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from .schema import ConfigError, float_list, int_list, kind_table, typed

__all__ = [
    "SOLVERS",
    "SOLVER_KINDS",
    "SolverKind",
    "build_solver",
    "check_solver",
    "is_adaptive",
    "solver_call",
    "solver_label",
    "solver_legend",
]

#: keys of a top-level solver entry that are not solver options
GRID_KEYS = ("label", "steps", "tolerances")


@dataclass(frozen=True)
class Option:
    """One grid option of a solver: a dataclass field of the class."""

    name: str
    kind: type  # bool, int, float, str, object (Literal: see ``choices``) or a solver type
    default: Any
    optional: bool = False  # ``| None``
    choices: tuple | None = None  # ``Literal[...]``
    nested: bool = False  # ``kind`` is a solver type: the value is a solver table

    def check(self, v: Any, key: str) -> Any:
        if v is None and self.optional:
            return None
        if self.choices is not None:
            if v not in self.choices:
                raise ConfigError(f"{key} must be one of {list(self.choices)}, got {v!r}")
            return v
        return typed(v, self.kind, key)


_SIMPLE = (bool, int, float, str)


def _option(f: dataclasses.Field, hint: Any) -> Option | None:
    """The `Option` of a dataclass field, or ``None`` when its type cannot come from a grid."""
    from ...solvers import Solver

    default = f.default if f.default is not dataclasses.MISSING else None
    args = typing.get_args(hint)
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        if len(rest) != 1:
            return None
        hint = rest[0]
    if typing.get_origin(hint) is typing.Literal:
        return Option(f.name, object, default, optional, choices=typing.get_args(hint))
    if hint in _SIMPLE:
        return Option(f.name, hint, default, optional)
    if inspect.isclass(hint) and issubclass(hint, Solver):
        return Option(f.name, hint, default, optional, nested=True)
    return None


@dataclass(frozen=True)
class SolverKind:
    """A registered solver: its kind name, class, short label and grid options.

    Attributes:
        kind: the name used in grids (``"reverse_diffusion"``).
        cls: the solver class.
        label: short display name in tables (``"RD"``).
        required: options a grid must give (``PC``'s predictor and corrector).
        label_options: options whose value, when given, is appended to the label
            (``torchsde-srk``).
    """

    kind: str
    cls: type
    label: str
    required: tuple[str, ...] = ()
    label_options: tuple[str, ...] = ()

    @property
    def options(self) -> dict[str, Option]:
        hints = typing.get_type_hints(self.cls)
        out = {}
        for f in dataclasses.fields(self.cls):
            if f.init and not f.name.startswith("_"):
                opt = _option(f, hints.get(f.name))
                if opt is not None:
                    out[f.name] = opt
        return out

    @property
    def adaptive(self) -> bool:
        from ...solvers import AdaptiveSolver

        return issubclass(self.cls, AdaptiveSolver)


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", s).lower()


class SolverRegistry:
    """Kind name -> `SolverKind`. Classes are given by their name in `sdelab` and resolved
    on first use (the package imports this module lazily, so there is no import cycle)."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, str | type, str, dict]] = []
        self._kinds: dict[str, SolverKind] | None = None

    def add(self, kind: str, cls: str | type, label: str, **kw) -> None:
        """Register a solver class (or the name of one exported by `sdelab`) under ``kind``
        with a short label; ``kw``: the other fields of `SolverKind`."""
        self._lines.append((kind, cls, label, kw))
        self._kinds = None

    def _build(self) -> dict[str, SolverKind]:
        import sdelab
        from sdelab.solvers import Solver

        kinds = {}
        for kind, cls, label, kw in self._lines:
            kinds[kind] = SolverKind(
                kind, getattr(sdelab, cls) if isinstance(cls, str) else cls, label, **kw
            )
        known = {k.cls for k in kinds.values()}
        for name in sdelab.__all__:  # exported solvers nobody registered: their snake name
            cls = getattr(sdelab, name, None)
            if (
                inspect.isclass(cls)
                and issubclass(cls, Solver)
                and dataclasses.is_dataclass(cls)
                and not inspect.isabstract(cls)
                and cls not in known
                and _snake(name) not in kinds
            ):
                kinds[_snake(name)] = SolverKind(_snake(name), cls, name)
        return kinds

    @property
    def kinds(self) -> dict[str, SolverKind]:
        if self._kinds is None:
            self._kinds = self._build()
        return self._kinds

    def __getitem__(self, kind: str) -> SolverKind:
        return self.kinds[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self.kinds

    def __iter__(self):
        return iter(self.kinds)


#: every solver a grid can name (one line per solver)
SOLVERS = SolverRegistry()
SOLVERS.add("euler_maruyama", "EulerMaruyama", "EM")
SOLVERS.add("reverse_diffusion", "ReverseDiffusion", "RD")
SOLVERS.add("ancestral", "AncestralSampling", "AS")
SOLVERS.add("langevin", "Langevin", "L")
SOLVERS.add("annealed_langevin", "AnnealedLangevin", "AL")
SOLVERS.add("pc", "PC", "PC", required=("predictor", "corrector"))
SOLVERS.add("probability_flow_ode", "ProbabilityFlowODE", "PF-ODE", label_options=("backend",))
SOLVERS.add("torchsde", "TorchSDE", "torchsde", label_options=("method",))

#: the registry under its older name (kind -> `SolverKind`)
SOLVER_KINDS = SOLVERS


def _own_message(e: Exception, opt: str, key: str) -> str:
    """The class's error message with the option's name replaced by its full grid key."""
    msg = str(e)
    return key + msg[len(opt) :] if msg.startswith(opt + " ") else f"{key}: {msg}"


def _roles() -> dict[type, str]:
    from ...solvers.grid import GridSolver
    from ...solvers.pc import Corrector

    return {GridSolver: "predictor (a fixed-grid solver)", Corrector: "corrector"}


_ROLES = _roles()


def check_solver(v: Any, key: str, *, within: type | None = None) -> dict:
    """A solver entry of a grid as a plain dict; ``within`` is the solver type a nested
    entry must have (``Predictor`` for ``PC``'s predictor)."""
    t, kind = kind_table(v, key, SOLVERS)
    sk = SOLVERS[kind]
    if within is not None and not issubclass(sk.cls, within):
        role = _ROLES.get(within, within.__name__.lower())
        raise ConfigError(f"{t.key('kind')} = {kind!r} is not a {role}")
    options = sk.options
    spec: dict = {"kind": kind}
    for name, opt in options.items():
        if name not in t.data:
            continue
        t.used.add(name)
        if opt.nested:
            spec[name] = check_solver(t.data[name], t.key(name), within=opt.kind)
            continue
        spec[name] = val = opt.check(t.data[name], t.key(name))
        try:  # the class's own check of this one option, the others at their defaults
            sk.cls(**{name: val})
        except (ValueError, TypeError) as e:
            raise ConfigError(_own_message(e, name, t.key(name))) from None
    allowed = ("kind", *options)
    if within is None:
        allowed = (*allowed, *GRID_KEYS)
        if "label" in t.data:
            spec["label"] = t.get("label", str)
        if "steps" in t.data:
            t.used.add("steps")
            spec["steps"] = int_list(t.data["steps"], t.key("steps"), 1)
        if "tolerances" in t.data:
            t.used.add("tolerances")
            spec["tolerances"] = float_list(t.data["tolerances"], t.key("tolerances"))
    for name in sk.required:
        if name not in spec:
            raise ConfigError(f"{t.key(name)} is required for kind = {kind!r}")
    t.done(allowed)
    if within is None:
        try:
            for tol in (None, *spec.get("tolerances", [1e-3])):
                build_solver(spec, tol=tol if is_adaptive(spec) else None)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{key}: {e}") from None
    return spec


def is_adaptive(spec: dict) -> bool:
    """Whether a solver spec runs on a tolerance ladder (adaptive step size) instead of the
    steps ladder: an `sdelab.AdaptiveSolver`, unless its ``adaptive`` option is false
    (``TorchSDE(adaptive=False)``)."""
    sk = SOLVERS[spec["kind"]]
    if not sk.adaptive:
        return False
    opt = sk.options.get("adaptive")
    return bool(spec.get("adaptive", True if opt is None else opt.default))


def solver_label(spec: dict) -> str:
    """A short display name: the spec's ``label``, else e.g. ``RD``, ``EM-PF``, ``RD+L``."""
    if "label" in spec:
        return spec["label"]
    sk = SOLVERS[spec["kind"]]
    nested = [n for n, o in sk.options.items() if o.nested and spec.get(n) is not None]
    if nested:
        return "+".join(solver_label(spec[n]) for n in nested)
    base = sk.label
    if spec.get("probability_flow"):
        base += "-PF"
    for name in sk.label_options:
        if name in spec:
            base += f"-{spec[name]}"
    return base


def solver_call(spec: dict) -> str:
    """The solver a spec builds, as a call with the options it sets, e.g.
    ``PC(predictor=ReverseDiffusion(), corrector=Langevin(snr=0.16))``."""
    sk = SOLVERS[spec["kind"]]
    args = []
    for name, opt in sk.options.items():
        if name in spec:
            v = spec[name]
            args.append(f"{name}={solver_call(v) if opt.nested else repr(v)}")
    return f"{sk.cls.__name__}({', '.join(args)})"


def solver_legend(specs: list[dict]) -> list[tuple[str, str, str]]:
    """(label, solver call, knob) for each distinct label of ``specs``; the knob says whether
    the label's ``N=`` is a number of grid steps or its ``tol=`` a tolerance."""
    out: dict[str, tuple[str, str, str]] = {}
    for spec in specs:
        lab = solver_label(spec)
        if lab not in out:
            knob = "tol=: rtol = atol, adaptive steps" if is_adaptive(spec) else "N=: grid steps"
            out[lab] = (lab, solver_call(spec), knob)
    return list(out.values())


def build_solver(spec: dict, *, tol: float | None = None):
    """The solver object of a solver spec; ``tol`` sets ``rtol = atol`` of an adaptive solver
    (unless the spec fixes them)."""
    sk = SOLVERS[spec["kind"]]
    options = sk.options
    kwargs = {}
    for name, opt in options.items():
        if name in spec:
            v = spec[name]
            kwargs[name] = build_solver(v) if opt.nested and v is not None else v
    if tol is not None:
        for name in ("rtol", "atol"):
            if name in options:
                kwargs.setdefault(name, tol)
    return sk.cls(**kwargs)
