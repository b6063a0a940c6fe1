r"""Running a comparison grid cell by cell, with results that survive interruption.

A **cell** is one (dataset, SDE, solver, steps or tolerance, seed). Each finished cell is
appended to ``results.jsonl`` in the output folder and flushed at once, so a run killed
midway loses no finished cell; running again with the same folder skips every cell whose key
(a hash of its full configuration) is already there and computes only the rest.

A deterministic solver's cell on a built-in mixture also gets its pathwise error against the
exact probability-flow map of the same prior draws (`sdelab.experiments.pathwise`); the
reference maps are kept in ``OUT/pathwise/`` and reused by later runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import Tensor

from ..analytic import GaussianMixture
from .config import (
    CompareConfig,
    build_mixture,
    build_schedule,
    build_sde,
    build_solver,
    is_adaptive,
    solver_label,
)
from .metrics import Reference
from .pathwise import PATHWISE, REFERENCE_FOLDER, FlowReferences, pathwise_error

__all__ = [
    "RESULTS_FILE",
    "Cell",
    "ResultsBusy",
    "ResultsWarning",
    "RunOutcome",
    "TimedScore",
    "UserProblem",
    "cells",
    "load_results",
    "results_lock",
    "run",
    "run_grid",
]

RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class Cell:
    """One point of the grid. ``steps`` is set for fixed-grid solvers, ``tol`` for adaptive
    ones (then ``steps`` is ``None``)."""

    dataset: dict
    sde: dict
    solver: dict
    steps: int | None
    tol: float | None
    seed: int
    n_samples: int
    eps: float
    dtype: str
    projections: int

    def config(self) -> dict:
        """The cell's full configuration (JSON-serialisable)."""
        return {
            "dataset": self.dataset,
            "sde": self.sde,
            "solver": self.solver,
            "steps": self.steps,
            "tol": self.tol,
            "seed": self.seed,
            "n_samples": self.n_samples,
            "eps": self.eps,
            "dtype": self.dtype,
            "projections": self.projections,
        }

    def key(self, device: str) -> str:
        """Resume key: SHA-1 of the canonical JSON of `config` plus the device type."""
        blob = json.dumps({**self.config(), "device": device}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()

    @property
    def label(self) -> str:
        return solver_label(self.solver)

    def describe(self) -> str:
        knob = f"tol={self.tol:g}" if self.tol is not None else f"steps={self.steps}"
        return f"{self.dataset['name']} {self.sde['name']} {self.label} {knob} seed={self.seed}"


def cells(config: CompareConfig, datasets: list[dict] | None = None) -> list[Cell]:
    """All cells of a grid, in run order (dataset, SDE, solver, steps/tolerance, seed);
    ``datasets`` replaces the grid's datasets (a user's data)."""
    out = []
    for ds in config.datasets if datasets is None else datasets:
        for sde in config.sdes:
            for sol in config.solvers:
                spec = {k: v for k, v in sol.items() if k not in ("steps", "tolerances", "nfe")}
                if is_adaptive(sol):
                    knobs = [(None, tol) for tol in sol.get("tolerances", config.tolerances)]
                else:
                    knobs = [(s, None) for s in sol.get("steps", config.steps)]
                for steps, tol in knobs:
                    for seed in config.seeds:
                        out.append(
                            Cell(
                                ds,
                                sde,
                                spec,
                                steps,
                                tol,
                                seed,
                                config.n_samples,
                                config.eps,
                                config.dtype,
                                config.projections,
                            )
                        )
    return out


class TimedScore:
    r"""Wraps a score ``s(x, t)`` and accumulates the wall time spent inside it (``seconds``).

    On CUDA it synchronises the device around each call so the time is the score's own
    (a measurement cost accepted by the benchmark; the samplers themselves never sync).
    """

    def __init__(self, score: Callable[[Tensor, object], Tensor]) -> None:
        self.score = score
        self.seconds = 0.0

    def __call__(self, x: Tensor, t):
        cuda = x.is_cuda
        if cuda:
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        s = self.score(x, t)
        if cuda:
            torch.cuda.synchronize(x.device)
        self.seconds += time.perf_counter() - t0
        return s


@dataclass
class UserProblem:
    """A user's score model and data sample in place of the built-in mixtures.

    Attributes:
        name: the dataset name shown in tables.
        make_score: ``make_score(sde) -> score(x, t)``.
        data: the data sample, shape (N, ...); two disjoint halves of it are the truth and
            the noise-floor reference. ``None``: the grid's own mixtures are the truth (a
            score trained on them, e.g. ``sdelab compare --score CHECKPOINT``).
        ident: a string identifying score and data in resume keys.
    """

    name: str
    make_score: Callable
    data: Tensor | None
    ident: str


class ResultsWarning(UserWarning):
    """``results.jsonl`` held lines that are not records (moved aside, their cells rerun)."""


class ResultsBusy(RuntimeError):
    """Another ``sdelab compare`` holds the output folder's lock."""


def _read_results(path: Path) -> tuple[list[dict], list[tuple[int, str]], bool]:
    """(records, bad lines as (1-based line number, text), whether the last bad line is a
    torn write: the file's final line, without its newline)."""
    if not path.is_file():
        return [], [], False
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.split("\n")
    complete = lines[-1] == ""
    if complete:
        lines.pop()
    records, bad = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("key"), str):
            records.append(rec)
        else:
            bad.append((i, line))
    torn = bool(bad) and not complete and bad[-1][0] == len(lines)
    return records, bad, torn


def _bad_lines_message(path: Path, bad: list[tuple[int, str]], torn: bool, action: str) -> str:
    middle = [i for i, _ in (bad[:-1] if torn else bad)]
    parts = []
    if middle:
        shown = ", ".join(map(str, middle[:10])) + (", ..." if len(middle) > 10 else "")
        parts.append(f"line(s) {shown} of {path} are not valid records (corrupted)")
    if torn:
        parts.append(f"the last line ({bad[-1][0]}) of {path} is half-written (an interrupted run)")
    return "; ".join(parts) + f"; {action}"


def load_results(out: str | Path) -> list[dict]:
    """Every record in ``out/results.jsonl``. Lines that are not records (a torn last line
    from a killed run, or corruption) are skipped with a `ResultsWarning` naming them;
    `run` moves them to ``results.jsonl.corrupt`` and recomputes their cells."""
    path = Path(out) / RESULTS_FILE
    records, bad, torn = _read_results(path)
    if bad:
        warnings.warn(_bad_lines_message(path, bad, torn, "skipped"), ResultsWarning, stacklevel=2)
    return records


def _repair_results(path: Path) -> list[dict]:
    """Read ``path``; if it holds bad lines, append them to ``<path>.corrupt``, rewrite the
    file atomically without them and warn. Returns the records."""
    records, bad, torn = _read_results(path)
    if not bad:
        return records
    corrupt = path.with_name(path.name + ".corrupt")
    with open(corrupt, "a", encoding="utf-8") as f:
        for i, line in bad:
            f.write(f"# {path.name} line {i}, moved {datetime.now(UTC).isoformat()}\n{line}\n")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    warnings.warn(
        _bad_lines_message(path, bad, torn, f"moved to {corrupt}; their cells are computed again"),
        ResultsWarning,
        stacklevel=3,
    )
    return records


LOCK_FILE = ".sdelab-compare.lock"
_HELD: dict[str, tuple[int, object]] = {}  # lock path -> (depth, open file) in this process


@contextmanager
def results_lock(out: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of an output folder (``fcntl.flock`` on ``OUT/.sdelab-compare.lock``,
    non-blocking, re-entrant within a process); raises `ResultsBusy` naming the folder and
    the holder's PID when another process holds it. Without ``fcntl`` (Windows) no lock."""
    path = Path(out) / LOCK_FILE
    name = str(path.resolve())
    if name in _HELD:
        depth, f = _HELD[name]
        _HELD[name] = (depth + 1, f)
        try:
            yield
        finally:
            depth, f = _HELD[name]
            _HELD[name] = (depth - 1, f)
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        pid = f.read().strip()
        f.close()
        holder = f" (PID {pid})" if pid.isdigit() else ""
        raise ResultsBusy(
            f"--out {str(Path(out))!r} is in use by another sdelab compare run{holder}; "
            f"wait for it to finish or choose another --out"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _HELD[name] = (1, f)
    try:
        yield
    finally:
        depth, _ = _HELD.pop(name)
        f.seek(0)
        f.truncate()
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def _append(path: Path, record: dict) -> None:
    """Append one JSON line and flush it to disk (a torn previous line is terminated first)."""
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def _truth_seed(seed: int) -> int:
    """Seed of the truth and noise-floor samples of a cell seed, distinct from the seed of
    the sampler itself."""
    return 1_000_003 * (seed + 1) + 7919


FLOOR_DRAWS = 8


class _Problem:
    """The reference, noise floor and score of one (dataset, seed) on a device.

    The floor is the mean (and standard deviation) of each metric over `FLOOR_DRAWS`
    independent true samples of the cell's size scored against the same truth: a single
    draw of the floor is itself as noisy as the solver's own error.
    """

    def __init__(
        self, cell: Cell, device, user: UserProblem | None, flows: FlowReferences | None = None
    ) -> None:
        self.flows = FlowReferences() if flows is None else flows
        dtype = getattr(torch, cell.dtype)
        n = cell.n_samples
        if user is None or user.data is None:
            self.mixture: GaussianMixture | None = build_mixture(cell.dataset)
            g = torch.Generator().manual_seed(_truth_seed(cell.seed))
            draw = [self.mixture.sample(n, g) for _ in range(1 + FLOOR_DRAWS)]
            self.shape = (n, self.mixture.dim)
            mixture = self.mixture.to(device=device, dtype=dtype)
        else:
            self.mixture = mixture = None
            data = user.data.reshape(user.data.shape[0], -1)
            g = torch.Generator().manual_seed(_truth_seed(cell.seed))
            perm = torch.randperm(data.shape[0], generator=g)
            rest = perm[n:]  # floor references never share a row with the truth
            draw = [data[perm[:n]]] + [
                data[rest[torch.randperm(rest.shape[0], generator=g)[:n]]]
                for _ in range(FLOOR_DRAWS)
            ]
            self.shape = (n, *user.data.shape[1:])
        truth = draw[0].to(device=device, dtype=dtype)
        self.ref = Reference(truth, mixture, n_projections=cell.projections, seed=0)
        floors = [self.ref.evaluate(d.to(device=device, dtype=dtype)) for d in draw[1:]]
        self.floor, self.floor_sd = {}, {}
        for k in self.ref.metric_names:
            vals = torch.tensor([abs(f[k]) for f in floors], dtype=torch.float64)
            self.floor[k] = float(vals.mean())
            self.floor_sd[k] = float(vals.std())
        self.user = user
        self.device_mixture = mixture

    def score(self, sde):
        if self.user is not None:
            return self.user.make_score(sde)
        return self.device_mixture.score(sde)

    def flow_map(self, cell: Cell, sde, device) -> Tensor | None:
        """The exact probability-flow map of the cell's prior draw (float64), or ``None`` for
        a user's problem (whose score is not exact)."""
        if self.mixture is None:
            return None
        return self.flows.get(cell, sde, self.mixture, self.shape, device)


#: what a cell's sampler may raise on a numerical failure (a NaN score, a step size that
#: underflows, torchsde's internal asserts): the cell is recorded as failed and the run goes on
NUMERICAL_FAILURES = (ArithmeticError, AssertionError, RuntimeError, ValueError)

#: statuses of a cell that did not give a finite sample (kept on resume unless retried)
FAILED = ("error", "diverged")


def run_cell(cell: Cell, problem: _Problem, device) -> dict:
    """Sample one cell with `sdelab.sample`, time it, and score it against the truth."""
    from .. import sample

    sde = build_sde(cell.sde)
    solver = build_solver(cell.solver, tol=cell.tol)
    score = TimedScore(problem.score(sde))
    dtype = getattr(torch, cell.dtype)
    gen = torch.Generator(device=device).manual_seed(cell.seed)
    rec: dict = {"status": "ok"}
    sync = torch.device(device).type == "cuda"
    t0 = time.perf_counter()
    try:
        res = sample(
            sde,
            score,
            solver,
            problem.shape,
            steps=cell.steps,
            schedule=build_schedule(cell.solver),
            eps=cell.eps,
            generator=gen,
            device=device,
            dtype=dtype,
            progress=False,
        )
        if sync:
            torch.cuda.synchronize(device)
    except NUMERICAL_FAILURES as e:
        rec.update(status="error", error=f"{type(e).__name__}: {e}".strip())
        res = None
    wall = time.perf_counter() - t0
    rec.update(wall_s=wall, score_s=score.seconds)
    if res is None:
        rec.update(nfe=None, solver_steps=None, metrics=dict.fromkeys(problem.ref.metric_names))
    else:
        metrics = problem.ref.evaluate(res.x)
        if any(v is None for v in metrics.values()):
            rec["status"] = "diverged"
        rec.update(nfe=int(res.nfe), solver_steps=_int_or_none(res.steps), metrics=metrics)
    rec[PATHWISE] = None
    if res is not None and solver.stochastic is False and rec["status"] == "ok":
        exact = problem.flow_map(cell, sde, device)
        if exact is not None:
            rec[PATHWISE] = pathwise_error(res.x, exact)
    rec["floor"] = problem.floor
    rec["floor_sd"] = problem.floor_sd
    rec["solver_repr"] = repr(solver)
    return rec


def _int_or_none(v) -> int | None:
    return None if v is None else int(v)


def _iter_todo(
    todo: list[tuple[Cell, str]], progress: bool, total: int, done: int
) -> Iterator[tuple[tuple[Cell, str], object]]:
    """The cells to run with their keys, and the progress bar (``None`` without one)."""
    if not progress:
        for item in todo:
            yield item, None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, desc="sdelab compare", unit="cell", dynamic_ncols=True)
    try:
        for item in todo:
            bar.set_postfix_str(item[0].describe(), refresh=False)
            yield item, bar
            bar.update(1)
    finally:
        bar.close()


@dataclass
class RunOutcome:
    """What `run_grid` did: ``records`` of every cell of the grid in grid order,
    ``computed`` the records this call computed, ``resumed`` how many came from the file."""

    records: list[dict]
    computed: list[dict] = field(default_factory=list)
    resumed: int = 0


def run(
    config: CompareConfig,
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    user: UserProblem | None = None,
    progress: bool = True,
    retry_failed: bool = False,
) -> list[dict]:
    """Run every cell of ``config`` not yet in ``out/results.jsonl``, appending each result
    as it finishes; returns the records of all cells of ``config`` (old and new), in grid
    order.

    Each record holds the cell's ``config`` and ``key``, display fields (``dataset``, ``sde``,
    ``solver``, ``steps``, ``tol``, ``seed``), ``nfe`` (score evaluations), ``solver_steps``,
    ``wall_s`` (sampling time), ``score_s`` (time inside the score), ``metrics`` and their
    noise ``floor`` (`sdelab.experiments.metrics.Reference`), ``pathwise`` (the RMS distance
    to the exact probability-flow map of the same prior draws, `sdelab.experiments.pathwise`,
    for a deterministic solver on a built-in mixture; else ``None``), ``status`` (``ok``,
    ``diverged`` or ``error`` with ``error``) and provenance (versions, device, time).

    A cell whose sampler fails numerically (`NUMERICAL_FAILURES`: ``FloatingPointError`` for
    a NaN score, torchsde's ``AssertionError``, ...) is recorded with ``status = "error"``
    and the run goes on. Sampling is deterministic given the seed, so a rerun keeps failed
    cells as they are; ``retry_failed=True`` computes them again (``--retry-failed``).

    The output folder is locked for the run (`results_lock`); lines of ``results.jsonl`` that
    are not records are moved to ``results.jsonl.corrupt`` with a warning and their cells
    recomputed.
    """
    return run_grid(
        config, out, device=device, user=user, progress=progress, retry_failed=retry_failed
    ).records


def run_grid(
    config: CompareConfig,
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    user: UserProblem | None = None,
    progress: bool = True,
    retry_failed: bool = False,
) -> RunOutcome:
    """`run`, returning a `RunOutcome` (which cells this call computed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with results_lock(out):
        return _run_locked(config, out, torch.device(device), user, progress, retry_failed)


def _run_locked(config, out: Path, dev, user, progress: bool, retry_failed: bool) -> RunOutcome:
    from .sharded import merge_rank_files

    path = out / RESULTS_FILE

    grid = cells(config, user_datasets(config, user))
    keys = [c.key(dev.type) for c in grid]
    # results.jsonl, with the rank files of an interrupted torchrun run folded in first
    existing = {r["key"]: r for r in merge_rank_files(out, keys)}
    if retry_failed:
        existing = {k: r for k, r in existing.items() if r.get("status") not in FAILED}
    todo = [(c, k) for c, k in zip(grid, keys, strict=True) if k not in existing]
    outcome = RunOutcome([], resumed=len(grid) - len(todo))
    problems = Problems(dev, user, FlowReferences(out / REFERENCE_FOLDER))
    prov = provenance(dev)
    for (cell, key), bar in _iter_todo(todo, progress, len(grid), len(grid) - len(todo)):
        rec = run_cell(cell, problems.get(cell), dev)
        record = cell_record(cell, key, rec, prov)
        _append(path, record)
        existing[key] = record
        outcome.computed.append(record)
        if rec["status"] != "ok":
            msg = f"  {cell.describe()}: {rec['status']} {rec.get('error', '')}".rstrip()
            if bar is not None:
                bar.write(msg)
    outcome.records = [existing[k] for k in keys]
    return outcome


def user_datasets(config: CompareConfig, user: UserProblem | None) -> list[dict] | None:
    """The datasets of the grid for a user's problem (``None``: the config's own): a trained
    score runs on the config's mixtures under the user's name; a data sample is one dataset,
    which must hold ``2 n_samples`` rows (the truth and a noise-floor reference)."""
    if user is None:
        return None
    if user.data is None:  # a trained score on the grid's mixtures
        return [{**ds, "name": user.name, "user": user.ident} for ds in config.datasets]
    n_max = user.data.shape[0] // 2
    if config.n_samples > n_max:
        raise ValueError(
            f"n_samples = {config.n_samples} needs a data sample of at least "
            f"{2 * config.n_samples} rows (truth + noise floor), got {user.data.shape[0]}; "
            f"pass --n-samples {n_max} or fewer"
        )
    return [{"name": user.name, "user": user.ident}]


class Problems:
    """The `_Problem` of each cell's (dataset, seed), built once: one dataset's truth samples
    are kept at a time (cells come dataset by dataset, seeds varying fastest)."""

    def __init__(self, device, user: UserProblem | None, flows: FlowReferences) -> None:
        self.device, self.user, self.flows = device, user, flows
        self._dataset: str | None = None
        self._by_seed: dict[int, _Problem] = {}

    def get(self, cell: Cell) -> _Problem:
        dkey = json.dumps(cell.dataset, sort_keys=True)
        if dkey != self._dataset:
            self._dataset, self._by_seed = dkey, {}
        if cell.seed not in self._by_seed:
            self._by_seed[cell.seed] = _Problem(cell, self.device, self.user, self.flows)
        return self._by_seed[cell.seed]


def provenance(device) -> dict:
    """What every record says about the software and the machine that computed it."""
    import sdelab

    return {
        "sdelab": sdelab.__version__,
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def cell_record(cell: Cell, key: str, rec: dict, provenance: dict, **extra) -> dict:
    """The JSON-safe results line of a finished cell (``extra``: e.g. the rank)."""
    return _json_safe(
        {
            "key": key,
            "dataset": cell.dataset["name"],
            "sde": cell.sde["name"],
            "solver": cell.label,
            "steps": cell.steps,
            "tol": cell.tol,
            "seed": cell.seed,
            **rec,
            "config": cell.config(),
            **provenance,
            **extra,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v
