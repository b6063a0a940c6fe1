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
class name (``DampedStep`` -> ``damped_step``) with its class name as its label.

Besides its options, a top-level solver entry may carry the grid keys `GRID_KEYS`:

* ``label``: its display name;
* ``steps`` / ``tolerances``: its own ladder of grid steps (fixed-grid solvers) or of
  ``rtol = atol`` (adaptive ones);
* ``nfe``: a ladder of score-evaluation budgets in place of ``steps`` (fixed-grid solvers):
  each budget becomes the largest number of grid steps whose counted NFE fits it
  (`steps_for_nfe`; a Heun step costs 2, PNDM's Runge-Kutta warm-up 12);
* ``schedule``: the time grid of a fixed-grid solver, a name of `sdelab.schedules.SCHEDULES`
  (``"logsnr"``) or a table with ``kind`` and the schedule's parameters
  (``{kind = "karras", rho = 7}``). Without it the grid is uniform in time, and
  ``"uniform"`` is not written into the entry, so the cells of a grid written before
  schedules existed keep their keys (and their results resume).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .schema import ConfigError, float_list, int_list, kind_table, typed

__all__ = [
    "SOLVERS",
    "SOLVER_KINDS",
    "SolverKind",
    "build_schedule",
    "build_solver",
    "check_schedule",
    "check_solver",
    "is_adaptive",
    "solver_call",
    "solver_label",
    "solver_legend",
    "steps_for_nfe",
]

#: keys of a top-level solver entry that are not solver options
GRID_KEYS = ("label", "steps", "tolerances", "nfe", "schedule")


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
        label_options: options whose value, when given, is appended to the label: a
            string as ``-value`` (``torchsde-srk``), a number or flag as ``(name=value)``
            (``DDIM(eta=1)``).
        namer: ``namer(options) -> label`` in place of ``label``, given every option with
            the class defaults filled in (`DPMSolver`: ``DPM++2M``, ``DPM-Solver-3S``).
    """

    kind: str
    cls: type
    label: str
    required: tuple[str, ...] = ()
    label_options: tuple[str, ...] = ()
    namer: Callable[[dict], str] | None = None

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


def _dpm_solver_label(o: dict) -> str:
    """The field's names of `sdelab.DPMSolver`'s variants: ``DPM++2M`` (data prediction,
    multistep), ``DPM-Solver-3S`` (noise prediction, singlestep), ``DPM++2M-SDE`` and
    ``DPM++2S-SDE`` (A1111's "DPM++ SDE")."""
    name = "DPM++" if o["predict"] == "data" else "DPM-Solver-"
    name += f"{o['order']}{'M' if o['multistep'] else 'S'}"
    return name + ("-SDE" if o["stochastic"] else "")


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
# the fast samplers (GridSolvers with memory; "Choosing a solver" maps the field's names)
SOLVERS.add("ddim", "DDIM", "DDIM", label_options=("eta",))
_DPM_OPTIONS = ("solver_type", "lower_order_final", "r1", "r2")
SOLVERS.add("dpm_solver", "DPMSolver", "DPM", label_options=_DPM_OPTIONS, namer=_dpm_solver_label)
SOLVERS.add("unipc", "UniPC", "UniPC", label_options=("variant", "predict", "order"))
SOLVERS.add("deis", "DEIS", "DEIS", label_options=("order",))
SOLVERS.add("pndm", "PNDM", "PNDM", label_options=("skip_prk",))
SOLVERS.add("ipndm", "IPNDM", "iPNDM", label_options=("order",))
SOLVERS.add("euler", "Euler", "Euler")
SOLVERS.add("heun", "Heun", "Heun")
SOLVERS.add("dpm2", "DPM2", "DPM2")
SOLVERS.add("lms", "LMS", "LMS", label_options=("order",))
SOLVERS.add("euler_ancestral", "EulerAncestral", "Euler-a", label_options=("eta",))
SOLVERS.add("dpm2_ancestral", "DPM2Ancestral", "DPM2-a", label_options=("eta",))
SOLVERS.add("dpmpp_2s_ancestral", "DPMpp2SAncestral", "DPM++2S-a", label_options=("eta",))
SOLVERS.add("edm_stochastic", "EDMStochastic", "EDM", label_options=("s_churn",))

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
        if "schedule" in t.data:
            t.used.add("schedule")
            schedule = check_schedule(t.data["schedule"], t.key("schedule"))
            if schedule != "uniform":  # the default is never written: old keys stay valid
                spec["schedule"] = schedule
        if "nfe" in t.data:
            t.used.add("nfe")
            spec["nfe"] = int_list(t.data["nfe"], t.key("nfe"), 1)
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
        for grid_key in ("schedule", "nfe"):
            if grid_key in t.data and is_adaptive(spec):
                raise ConfigError(
                    f"{t.key(grid_key)} applies to fixed-grid solvers; kind = {kind!r} is "
                    f"adaptive (it chooses its own steps: give it tolerances)"
                )
        if "nfe" in spec:
            steps = steps_for_nfe(build_solver(spec), spec["nfe"], t.key("nfe"))
            if spec.setdefault("steps", steps) != steps:  # a checked grid's own steps are fine
                raise ConfigError(
                    f"{t.key('nfe')} and {t.key('steps')} both given; expected one ladder: "
                    f"steps (grid steps) or nfe (score-evaluation budgets)"
                )
    return spec


def check_schedule(v: Any, key: str) -> str | dict:
    """A ``schedule`` of a solver entry: a name of `sdelab.schedules.SCHEDULES`, or a table
    ``{kind = name, ...}`` with the schedule's parameters (``{kind = "karras", rho = 5}``),
    normalised to the name when the table sets no parameter."""
    from ...schedules import SCHEDULES

    expected = f"one of {', '.join(SCHEDULES)} or a table such as {{kind = 'karras', rho = 7}}"
    if isinstance(v, str):
        if v not in SCHEDULES:
            raise ConfigError(f"{key} = {v!r} is not a schedule; expected {expected}")
        return v
    if not isinstance(v, dict):
        raise ConfigError(
            f"{key} must be a schedule name or a table, got {v!r}; expected {expected}"
        )
    t, kind = kind_table(v, key, SCHEDULES)
    cls = SCHEDULES[kind]
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else ()
    spec: dict = {"kind": kind}
    for name in names:
        if name in t.data:
            spec[name] = val = t.get(name, hints.get(name, object))
            try:
                cls(**{name: val})
            except (ValueError, TypeError) as e:
                raise ConfigError(_own_message(e, name, t.key(name))) from None
    t.done(("kind", *names))
    return kind if len(spec) == 1 else spec


def build_schedule(spec: dict):
    """The `sdelab.Schedule` of a solver spec (`sdelab.UniformTime` without ``schedule``)."""
    from ...schedules import SCHEDULES, as_schedule

    s = spec.get("schedule", "uniform")
    if isinstance(s, str):
        return as_schedule(s)
    return SCHEDULES[s["kind"]](**{k: v for k, v in s.items() if k != "kind"})


def schedule_label(s: str | dict) -> str:
    """``logsnr`` or ``karras(rho=5)``."""
    if isinstance(s, str):
        return s
    return (
        s["kind"] + "(" + ", ".join(f"{k}={_short(v)}" for k, v in s.items() if k != "kind") + ")"
    )


def steps_for_nfe(solver, budgets: list[int], key: str = "nfe") -> list[int]:
    """For each score-evaluation budget, the largest number of grid steps whose counted NFE
    is at most the budget (duplicates and budgets below one step's cost dropped).

    The NFE is counted, not assumed: a dry run of ``solver`` on one scalar sample (VP with the
    score $-x$ of its stationary law; the count does not depend on the problem), starting
    from ``budget // solver.nfe_per_step`` (every step costs at least one new evaluation, so
    a count equal to the budget is the answer). Counts are cached per solver and steps.
    Raises `ConfigError` naming ``key`` when one step costs more than every budget."""

    def nfe(steps: int) -> int:
        return _dry_nfe(solver, steps)

    out: list[int] = []
    for budget in budgets:
        if nfe(1) > budget:
            continue
        n = max(1, budget // max(1, int(getattr(solver, "nfe_per_step", 1) or 1)))
        while n > 1 and nfe(n) > budget:
            n -= 1
        while nfe(n) < budget and nfe(n + 1) <= budget:
            n += 1
        if n not in out:
            out.append(n)
    if not out:
        raise ConfigError(
            f"{key} = {budgets!r}: one step of {solver!r} costs {nfe(1)} score evaluations, "
            f"more than every budget; expected budgets >= {nfe(1)}"
        )
    return out


@functools.lru_cache(maxsize=4096)
def _dry_nfe(solver, steps: int) -> int:
    """The counted NFE of ``solver`` over ``steps`` grid steps (one scalar sample)."""
    import torch

    from ... import VPSDE, sample

    res = sample(VPSDE(), lambda x, t: -x, solver, (1, 1), steps=steps, dtype=torch.float64)
    return int(res.nfe)


def is_adaptive(spec: dict) -> bool:
    """Whether a solver spec runs on a tolerance ladder (adaptive step size) instead of the
    steps ladder: an `sdelab.AdaptiveSolver`, unless its ``adaptive`` option is false
    (``TorchSDE(adaptive=False)``)."""
    sk = SOLVERS[spec["kind"]]
    if not sk.adaptive:
        return False
    opt = sk.options.get("adaptive")
    return bool(spec.get("adaptive", True if opt is None else opt.default))


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def solver_label(spec: dict) -> str:
    """A short display name: the spec's ``label``, else e.g. ``RD``, ``EM-PF``, ``RD+L``,
    ``DPM++2M``, ``DDIM(eta=1)``; a ``schedule`` is appended as ``DPM++2M/logsnr``."""
    base = _base_label(spec)
    return f"{base}/{schedule_label(spec['schedule'])}" if "schedule" in spec else base


def _base_label(spec: dict) -> str:
    if "label" in spec:
        return spec["label"]
    sk = SOLVERS[spec["kind"]]
    options = sk.options
    nested = [n for n, o in options.items() if o.nested and spec.get(n) is not None]
    if nested:
        return "+".join(solver_label(spec[n]) for n in nested)
    if sk.namer is not None:
        base = sk.namer({**{n: o.default for n, o in options.items()}, **spec})
    else:
        base = sk.label
    if spec.get("probability_flow"):
        base += "-PF"
    given = [n for n in sk.label_options if n in spec]
    base += "".join(f"-{spec[n]}" for n in given if isinstance(spec[n], str))
    rest = [f"{n}={_short(spec[n])}" for n in given if not isinstance(spec[n], str)]
    return base + (f"({', '.join(rest)})" if rest else "")


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
    the label's ``N=`` is a number of grid steps or its ``tol=`` a tolerance, and on which
    time grid."""
    out: dict[str, tuple[str, str, str]] = {}
    for spec in specs:
        lab = solver_label(spec)
        if lab not in out:
            if is_adaptive(spec):
                knob = "tol=: rtol = atol, adaptive steps"
            elif "schedule" in spec:
                knob = f"N=: grid steps of {build_schedule(spec)!r}"
            else:
                knob = "N=: grid steps"
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
