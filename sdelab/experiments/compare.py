r"""`compare`: run a grid, then write the tables and plots (what ``sdelab compare`` does)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import CompareConfig, config_from_dict, load_config, preset
from .report import (
    aggregate,
    flag_outliers,
    legend,
    pathwise_summary,
    plot_error_vs_nfe,
    plot_error_vs_time,
    results_table,
    score_share,
    summary_table,
    table1,
)
from .runner import UserProblem, results_lock, run_grid

__all__ = ["CompareResult", "compare", "load_data", "load_score"]


@dataclass
class CompareResult:
    """What `compare` returns.

    Attributes:
        records: one dict per cell of the grid (see `sdelab.experiments.run`).
        summary: the printed summary (best solver per NFE budget, or the Table-1 layout).
        files: paths written in the output folder, by role.
        wall_s: this call's total wall time.
        sampling_s: the sampling wall time summed over the cells this call computed.
        score_share: the share of ``sampling_s`` spent inside the score function.
        computed: how many cells this call computed (the others were resumed from
            ``results.jsonl``).
        resumed: how many cells came from an earlier run.
        failed: how many of the grid's cells failed (``error`` or ``diverged``).
        flagged: how many configurations were flagged as outliers (`flag_outliers`).
        notes: lines for the user (plots skipped, ...).
    """

    records: list[dict]
    summary: str
    files: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0
    sampling_s: float = 0.0
    score_share: float = 0.0
    computed: int = 0
    resumed: int = 0
    failed: int = 0
    flagged: int = 0
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """The one-paragraph account of this run printed after the summary."""
        lines = [
            f"{len(self.records)} cells: {self.computed} computed in this run "
            f"(sampling {self.sampling_s:.1f} s, "
            + (
                f"{100 * self.score_share:.0f}% of it inside the score function)"
                if self.computed
                else "nothing to do)"
            )
            + f", {self.resumed} resumed from {self.files.get('results', 'results.jsonl')}; "
            f"wall time {self.wall_s:.1f} s"
        ]
        if self.failed:
            lines.append(f"{self.failed} cell(s) failed: see {self.files.get('table')}")
        if self.flagged:
            lines.append(f"{self.flagged} configuration(s) flagged as outliers (marked !)")
        return "\n".join(lines + self.notes)


def _resolve_config(config) -> CompareConfig:
    if isinstance(config, CompareConfig):
        return config
    if isinstance(config, dict):
        return config_from_dict(config)
    if isinstance(config, str) and not config.endswith((".toml", ".json")):
        return preset(config)
    return load_config(config)


def load_score(target: str) -> Callable:
    r"""Import a user's score model given as ``"module:attr"`` or ``"path/to/file.py:attr"``.

    The attribute is either

    * a **score**, ``score(x, t) -> tensor like x`` (two parameters; a ``torch.nn.Module``
      whose ``forward`` takes ``(x, t)`` counts), with $t$ a Python float or a tensor of
      shape (B,), approximating $\nabla_x \log p_t(x)$ of the data under the chosen SDE; or
    * a **factory** taking the SDE, ``make(sde) -> score`` (one parameter), or nothing,
      ``make() -> score`` (no parameter).

    The module is imported with the current directory on ``sys.path``. Returns
    ``make_score(sde) -> score``. A noise-prediction network becomes a score with
    `sdelab.score_from_noise` inside a factory.
    """
    if ":" not in target:
        raise ValueError(
            f"--score must look like module:callable or file.py:callable, got {target!r}"
        )
    mod_name, _, attr = target.rpartition(":")
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise ValueError(f"--score: file {mod_name!r} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(
                f"--score {target!r}: running {mod_name!r} failed: {type(e).__name__}: {e}"
            ) from None
    else:
        # like ``python -m``: the current directory is importable (a console script's
        # sys.path starts with its own folder instead)
        added = os.getcwd() not in sys.path
        if added:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(
                f"--score {target!r}: cannot import module {mod_name!r} ({e}); expected an "
                f"importable module (the current directory is on the path) or a .py file"
            ) from None
        except Exception as e:
            raise ValueError(
                f"--score {target!r}: importing {mod_name!r} failed: {type(e).__name__}: {e}"
            ) from None
        finally:
            if added:
                sys.path.remove(os.getcwd())
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--score: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--score: {target!r} is not callable (got {type(obj).__name__})")
    fn = obj.forward if isinstance(obj, torch.nn.Module) else obj
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        n = len(params)
    except (TypeError, ValueError):
        n = 2
    if n >= 2:
        return lambda sde: obj
    if n == 1:
        return obj
    return lambda sde: obj()


def load_data(path: str | Path) -> torch.Tensor:
    """A data sample from a ``.npy`` (numpy) or ``.pt`` (a saved tensor) file, shape (N, ...)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--data: file {str(p)!r} does not exist")
    if p.suffix == ".npy":
        import numpy as np

        x = torch.from_numpy(np.load(p, allow_pickle=False))
    elif p.suffix == ".pt":
        x = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"--data: {str(p)!r} must hold a single tensor, got {type(x).__name__}"
            )
    else:
        raise ValueError(f"--data must be a .npy or .pt file, got {str(p)!r}")
    if x.ndim < 2 or not (
        x.is_floating_point() or x.dtype in (torch.uint8, torch.int64, torch.int32)
    ):
        raise ValueError(
            f"--data must hold a numeric array of shape (N, ...), got {tuple(x.shape)} {x.dtype}"
        )
    return x.to(torch.float64)


def _is_trained_score(score: object) -> bool:
    from ..training.checkpoint import TrainedScore

    return isinstance(score, TrainedScore)


def is_checkpoint(score: object) -> bool:
    """Whether ``score`` names a training checkpoint: a directory, or a ``step-*.json`` file."""
    if not isinstance(score, str | os.PathLike):
        return False
    p = Path(score)
    return p.is_dir() or (p.suffix == ".json" and p.is_file())


def checkpoint_problem(cfg: CompareConfig, path: str | os.PathLike, device) -> tuple:
    """``(grid, problem)`` for a training checkpoint's score on the mixture it was trained on.

    The grid keeps its solvers, steps, seeds and metrics; its datasets become the checkpoint's
    built-in mixture (named ``"<name>-trained"``, whose truth and noise floor are the exact
    mixture's, so every metric of the exact-score run is there, side by side) and its SDEs the
    checkpoint's SDE. Resume keys carry the checkpoint's weights hash.
    """
    from ..training.checkpoint import load_checkpoint, read_config
    from .config.problems import SDE_KINDS

    ck = read_config(path)
    name = ck.get("data")
    if name not in ("gmm2d", "gmm16"):
        raise ValueError(
            f"--score {str(path)!r}: a checkpoint without --data must be trained on a built-in "
            f"mixture ('gmm2d' or 'gmm16'), got data {name!r}; pass --data FILE.npy for others"
        )
    sde_cfg = dict(ck["sde"])
    cls = sde_cfg.pop("class")
    kind = next((k for k, (c, _, _) in SDE_KINDS.items() if c == cls), None)
    if kind is None:
        raise ValueError(f"--score {str(path)!r}: compare runs VP, sub-VP and VE, got {cls}")
    grid = cfg.to_dict()
    grid["datasets"] = [name]
    grid["sdes"] = [{"kind": kind, **sde_cfg}]
    cfg = config_from_dict(grid)
    _, trained = load_checkpoint(path, device=device)
    ident = f"checkpoint {Path(path).resolve()} step {ck['step']} sha256 {ck['sha256'][:16]}"
    return cfg, UserProblem(f"{name}-trained", lambda sde: trained, None, ident)


def compare(
    config: CompareConfig | dict | str = "default",
    out: str | Path = "sdelab-results",
    *,
    device: str | torch.device = "cpu",
    score: str | Callable | None = None,
    data: str | Path | torch.Tensor | None = None,
    progress: bool = True,
    plots: bool = True,
    threads: int | None = 1,
    echo: bool = False,
    retry_failed: bool = False,
) -> CompareResult:
    """Run a solver comparison and write its results, tables and plots to ``out``.

    Args:
        config: a preset name (``"default"``, ``"quick"``, ``"fast"``, ``"table1"``), a ``.toml``/``.json``
            grid file, a dict or a `CompareConfig` (see `sdelab.experiments.config`).
        out: output folder. ``results.jsonl`` there is appended as each cell finishes;
            cells already in it are skipped (resume).
        device: where to sample.
        score: a user's score model (``"module:callable"``, see `load_score`, or a factory
            ``make(sde) -> score``) to run in place of the exact mixture scores; needs
            ``data`` (`sdelab.load_checkpoint`'s score is taken as a score, not a factory).
            Or a training checkpoint directory (`sdelab.train`'s ``out``) of a
            built-in mixture ("gmm2d", "gmm16"): without ``data`` its trained score replaces
            the exact one on the mixture and SDE it was trained on (see
            `checkpoint_problem`); with ``data`` it is a user's score like any other.
        data: a data sample (file, see `load_data`, or tensor) defining the truth for a
            user's ``score``; the mixture-only metrics are omitted.
        progress: show a tqdm progress bar over cells.
        plots: write ``error_vs_nfe.png`` and ``error_vs_time.png``.
        threads: torch's CPU threads during the run (restored afterwards); the default 1 is
            fastest for the benchmark's small batches, whose ops are too small to split
            (on a busy machine several threads can be ten times slower). ``None`` keeps
            torch's setting.
        echo: print the summary table.
        retry_failed: compute failed cells again (a rerun keeps them otherwise: sampling is
            deterministic given the seed, so they would fail the same way).

    Files written: ``results.jsonl``, ``config.json`` (the grid), ``summary.md`` (best
    solver per NFE budget by the grid's metric and, for deterministic solvers, by the
    pathwise error; or the Table-1 layout), ``results.md`` (every configuration), the plots
    and ``pathwise/`` (the exact flow maps the pathwise errors are measured against).
    """
    t0 = time.perf_counter()
    cfg = _resolve_config(config)
    user = None
    if score is not None and data is None and is_checkpoint(score):
        cfg, user = checkpoint_problem(cfg, score, device)
    elif (score is None) != (data is None):
        raise ValueError("score and data go together: a user's score model needs a data sample")
    elif score is not None:
        if is_checkpoint(score):  # a checkpoint with a data sample: its score as a user's
            from ..training.checkpoint import load_checkpoint

            trained = load_checkpoint(score, device=device)[1]
            score = str(score)

            def make(sde):
                return trained
        elif isinstance(score, str):
            make = load_score(score)
        elif _is_trained_score(score):  # load_checkpoint's score(x, t), not a factory

            def make(sde, trained=score):
                return trained
        else:
            make = score
        x = data if isinstance(data, torch.Tensor) else load_data(data)
        ident = score if isinstance(score, str) else getattr(score, "__qualname__", repr(score))
        name = Path(str(data)).stem if not isinstance(data, torch.Tensor) else "data"
        user = UserProblem(
            name, make, x, f"{ident} | {data if not isinstance(data, torch.Tensor) else 'tensor'}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with results_lock(out):
        return _compare_locked(
            cfg, out, device, user, progress, plots, threads, echo, retry_failed, t0
        )


def _compare_locked(cfg, out, device, user, progress, plots, threads, echo, retry_failed, t0):
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        outcome = run_grid(
            cfg, out, device=device, user=user, progress=progress, retry_failed=retry_failed
        )
    finally:
        torch.set_num_threads(old_threads)
    records = outcome.records
    rows = aggregate(records)
    metric = cfg.metric if any(cfg.metric in r.floor for r in rows) else "sw2"
    flagged = flag_outliers(rows, metric)
    sampling, share = score_share(outcome.computed) if outcome.computed else (0.0, 0.0)
    if cfg.report == "table1":
        summary, md = table1(records, metric), table1(records, metric, markdown=True)
    else:
        kw = {} if cfg.budgets is None else {"budgets": cfg.budgets}
        summary, md = (
            summary_table(rows, metric, **kw),
            summary_table(rows, metric, markdown=True, **kw),
        )
        path, path_md = pathwise_summary(rows, **kw), pathwise_summary(rows, markdown=True, **kw)
        if path:
            summary, md = f"{summary}\n\n{path}", f"{md}\n\n{path_md}"
    summary += "\n\n" + legend(rows)
    md += "\n\n" + legend(rows, markdown=True)
    files = {"results": out / "results.jsonl", "config": out / "config.json"}
    files["summary"] = out / "summary.md"
    files["summary"].write_text(md + "\n")
    files["table"] = out / "results.md"
    files["table"].write_text(
        results_table(rows, markdown=True) + "\n\n" + legend(rows, markdown=True) + "\n"
    )
    notes = []
    if plots and importlib.util.find_spec("matplotlib") is None:
        plots = False
        notes.append('plots skipped: matplotlib is not installed (pip install -e ".[plot]")')
    if plots:
        files["nfe_plot"] = out / "error_vs_nfe.png"
        files["time_plot"] = out / "error_vs_time.png"
        plot_error_vs_nfe(rows, files["nfe_plot"], metric)
        plot_error_vs_time(rows, files["time_plot"], metric)
    res = CompareResult(
        records,
        summary,
        files,
        time.perf_counter() - t0,
        sampling,
        share,
        computed=len(outcome.computed),
        resumed=outcome.resumed,
        failed=sum(r["status"] != "ok" for r in records),
        flagged=len(flagged),
        notes=notes,
    )
    if echo:
        print(summary)
        print("\n" + res.report(), file=sys.stdout)
    return res
