r"""``sdelab compare`` over the ranks of ``torchrun`` (`sdelab.distributed`).

**Work stealing.** The cells still to run (the grid's cells whose keys are not in
``results.jsonl``) are numbered in grid order; each rank takes the next number from a
counter in the rendezvous store (an atomic ``add``), runs that cell and takes the next,
until the numbers run out. Every cell is taken exactly once, a slow cell does not hold up
the others, and a rank that finds no cell left (more ranks than cells) waits for the
others and exits cleanly. A cell's seeds come from the cell alone, never from the rank,
so every record's metrics equal those of a single-process run.

**Files.** Rank $r$ appends each finished cell to its own ``results.rank{r}.jsonl`` (one
JSON line, flushed and ``fsync``-ed, as in `sdelab.experiments.runner`), so no two
processes write one file. Rank 0 holds the folder's lock (`results_lock`) for the run; at
the start it folds every ``results.rank*.jsonl`` left by an interrupted run (whatever its
number of ranks) into ``results.jsonl``, and at the end it folds this run's files the same
way (old records first, then the new ones in grid order; the rank files are deleted once
``results.jsonl`` has been replaced atomically) and writes the tables and plots
(`sdelab.experiments.compare`). Resuming with any number of ranks therefore loses no
finished cell.

**Stopping.** A rank that raises publishes its error in the store; the others raise
`sdelab.distributed.RankFailed` naming it before their next cell (or while waiting at the
end). A rank that dies silently makes the others fail at the final wait after
``op_timeout`` (torchrun stops them at once).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import torch

from .. import distributed as dist
from .compare import CompareResult, compare
from .config import CompareConfig, build_mixture, build_sde, build_solver
from .pathwise import REFERENCE_FOLDER, FlowReferences
from .report import score_share
from .runner import (
    RESULTS_FILE,
    Problems,
    RunOutcome,
    UserProblem,
    _read_results,
    _repair_results,
    cell_record,
    cells,
    provenance,
    results_lock,
    run_cell,
    user_datasets,
)

__all__ = ["compare_sharded", "merge_rank_files", "rank_file", "run_grid_sharded"]

_RANK_FILE = re.compile(r"^results\.rank(\d+)\.jsonl$")


def rank_file(out: str | Path, r: int) -> Path:
    """Rank ``r``'s results file, ``OUT/results.rank{r}.jsonl``."""
    return Path(out) / f"results.rank{r}.jsonl"


def _rank_files(out: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _RANK_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def merge_rank_files(out: str | Path, order: list[str] | None = None) -> list[dict]:
    """Fold every ``OUT/results.rank*.jsonl`` into ``OUT/results.jsonl`` (one process: rank 0,
    holding the folder's lock). The records already in ``results.jsonl`` keep their order;
    the new ones follow, sorted by their position in ``order`` (resume keys; records not in
    it last, by file); a key seen twice keeps its first record. ``results.jsonl`` is
    replaced atomically, then the rank files are deleted. Returns all records."""
    out = Path(out)
    path = out / RESULTS_FILE
    records = _repair_results(path)
    files = _rank_files(out)
    if not files:
        return records
    seen = {r["key"] for r in records}
    new = []
    for f in files:
        recs, _bad, _torn = _read_results(f)  # a torn last line: that cell is rerun
        for r in recs:
            if r["key"] not in seen:
                seen.add(r["key"])
                new.append(r)
    if order is not None:
        pos = {k: i for i, k in enumerate(order)}
        new.sort(key=lambda r: pos.get(r["key"], len(pos)))
    merged = records + new
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in merged:
            fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    for f in files:
        f.unlink()
    return merged


def _append(path: Path, record: dict) -> None:
    from .runner import _append as append

    append(path, record)


def run_grid_sharded(
    config: CompareConfig,
    out: str | Path,
    *,
    device: str | torch.device = "cpu",
    user: UserProblem | None = None,
    progress: bool = True,
    retry_failed: bool = False,
) -> RunOutcome | None:
    """`sdelab.experiments.runner.run_grid` with the cells shared by the ranks (work
    stealing, see the module). Called by every rank; rank 0 returns the `RunOutcome` (all
    records of the grid in grid order, ``computed`` those computed by any rank in this
    call), the others ``None``. With one process it is `run_grid`."""
    from .runner import run_grid

    if not dist.is_distributed():
        return run_grid(
            config, out, device=device, user=user, progress=progress, retry_failed=retry_failed
        )

    out = Path(out)
    dev = torch.device(device)
    r = dist.rank()
    grid = cells(config, user_datasets(config, user))
    keys = [c.key(dev.type) for c in grid]
    with ExitStack() as stack:
        with dist.stop_together():  # rank 0 takes the folder, folds an interrupted run's files
            if r == 0:
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(results_lock(out))  # re-entrant (compare_sharded holds it)
                merge_rank_files(out, keys)
        return _run_shards(config, out, dev, user, progress, retry_failed, grid, keys)


def _run_shards(config, out: Path, dev, user, progress, retry_failed, grid, keys):
    from .runner import FAILED

    r = dist.rank()
    existing = {rec["key"]: rec for rec in _read_results(out / RESULTS_FILE)[0]}
    if retry_failed:
        existing = {k: v for k, v in existing.items() if v.get("status") not in FAILED}
    todo = [(c, k) for c, k in zip(grid, keys, strict=True) if k not in existing]
    st = dist.store()
    s = dist._next_call()
    counter, finished, done = s.key("next"), s.key("finished"), s.key("done")
    mine = rank_file(out, r)
    prov = provenance(dev)
    flows = FlowReferences(out / REFERENCE_FOLDER)
    with dist.stop_together():  # the exact flow maps, dealt over the ranks before the cells
        for cell in dist.shard(_needed_flows(todo, dev, user)):
            mixture = build_mixture(cell.dataset)
            shape = (cell.n_samples, mixture.dim)
            flows.get(cell, build_sde(cell.sde), mixture, shape, dev)
    problems = Problems(dev, user, flows)
    bar = None
    if progress and r == 0:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(grid),
            initial=len(grid) - len(todo),
            desc=f"sdelab compare ({dist.world_size()} ranks)",
            unit="cell",
            dynamic_ncols=True,
        )
    try:
        while True:
            dist.raise_if_failed()
            i = st.add(counter, 1) - 1
            if i >= len(todo):
                break
            cell, key = todo[i]
            rec = run_cell(cell, problems.get(cell), dev)
            _append(mine, cell_record(cell, key, rec, prov, rank=r))
            n = st.add(finished, 1)
            if bar is not None:
                bar.n = len(grid) - len(todo) + n
                bar.set_postfix_str(cell.describe(), refresh=False)
                bar.refresh()
        st.add(done, 1)
        deadline = time.monotonic() + s.op_timeout
        while st.add(done, 0) < s.world_size:  # the others' last cells
            dist.raise_if_failed()
            if time.monotonic() > deadline:
                raise dist.RankFailed(
                    -1,
                    f"timed out after {s.op_timeout:g} s waiting for "
                    f"{s.world_size - st.add(done, 0)} rank(s) to finish their cells "
                    f"(a rank stopped); rerun to resume",
                )
            time.sleep(0.02)
            if bar is not None:
                bar.n = len(grid) - len(todo) + st.add(finished, 0)
                bar.refresh()
    except dist.RankFailed:
        raise
    except BaseException as e:
        dist.report_error(e)
        raise
    finally:
        if bar is not None:
            bar.close()
    if r != 0:
        return None
    merged = {rec["key"]: rec for rec in merge_rank_files(out, keys)}
    todo_keys = {k for _, k in todo}
    computed = [merged[k] for k in keys if k in todo_keys and k in merged]
    missing = [k for k in keys if k not in merged]
    if missing:  # pragma: no cover - every claimed cell was finished or a rank raised
        raise RuntimeError(f"{len(missing)} cell(s) of the grid have no record after the run")
    return RunOutcome([merged[k] for k in keys], computed, len(grid) - len(todo))


def _needed_flows(todo, dev, user) -> list:
    """One cell per exact flow map the deterministic cells of ``todo`` need (in grid
    order); none for a user's problem (its score is not exact)."""
    if user is not None:
        return []
    seen, out = set(), []
    for cell, _ in todo:
        if build_solver(cell.solver, tol=cell.tol).stochastic is not False:
            continue
        key = FlowReferences.key(cell, dev)
        if key not in seen:
            seen.add(key)
            out.append(cell)
    return out


def compare_sharded(
    config: CompareConfig | dict | str = "default",
    out: str | Path = "sdelab-results",
    *,
    device: str | torch.device = "cpu",
    score: str | Callable | None = None,
    data: str | Path | torch.Tensor | None = None,
    progress: bool = True,
    plots: bool = True,
    threads: int | None = 1,
    retry_failed: bool = False,
) -> CompareResult | None:
    """`sdelab.experiments.compare` over the ranks (called by every rank, after
    `sdelab.distributed.init_from_env`): the ranks check that their configurations agree
    (`sdelab.distributed.check_same`), share the cells (`run_grid_sharded`), and rank 0
    writes the merged results, tables and plots and returns the `CompareResult`; the other
    ranks return ``None``. With one process it is `compare`.

    Args:
        config: as for `compare`.
        out: the output folder, the same (shared) folder for every rank.
        device: where to sample; ``"cuda"`` means each rank's own GPU (``cuda:LOCAL_RANK``).
        score: as for `compare`.
        data: as for `compare`.
        progress: a progress bar on rank 0 (over every rank's cells).
        plots: write the plots (rank 0).
        threads: torch's CPU threads on each rank during the run.
        retry_failed: compute failed cells again.
    """
    from .compare import _resolve_config, load_data, load_score

    kw = dict(progress=progress, plots=plots, threads=threads, retry_failed=retry_failed)
    if not dist.is_distributed():
        return compare(config, out, device=device, score=score, data=data, **kw)
    t0 = time.perf_counter()
    cfg = _resolve_config(config)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist._SESSION.local_rank)
    user = None
    if (score is None) != (data is None):
        raise ValueError("score and data go together: a user's score model needs a data sample")
    if score is not None:
        make = load_score(score) if isinstance(score, str) else score
        x = data if isinstance(data, torch.Tensor) else load_data(data)
        ident = score if isinstance(score, str) else getattr(score, "__qualname__", repr(score))
        name = Path(str(data)).stem if not isinstance(data, torch.Tensor) else "data"
        user = UserProblem(
            name, make, x, f"{ident} | {data if not isinstance(data, torch.Tensor) else 'tensor'}"
        )
    out = Path(out)
    dist.check_same(
        {
            "grid": cfg.to_dict(),
            "out": str(out),
            "device": dev.type,
            "user": None if user is None else [user.ident, dist._tensor_digest(user.data)],
            "retry_failed": retry_failed,
            "torch": torch.__version__,
        },
        "compare configuration",
    )
    with ExitStack() as stack:
        with dist.stop_together():  # rank 0 takes the folder (ResultsBusy stops every rank)
            if dist.rank() == 0:
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(results_lock(out))
        old = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            outcome = run_grid_sharded(
                cfg, out, device=dev, user=user, progress=progress, retry_failed=retry_failed
            )
        finally:
            torch.set_num_threads(old)
        if outcome is None:
            return None
        # every cell is in results.jsonl now: compare() resumes them all and writes the report
        res = compare(cfg, out, device=dev.type, score=score, data=data, **kw)
    sampling, share = score_share(outcome.computed) if outcome.computed else (0.0, 0.0)
    return replace(
        res,
        wall_s=time.perf_counter() - t0,
        sampling_s=sampling,
        score_share=share,
        computed=len(outcome.computed),
        resumed=outcome.resumed,
        notes=[*res.notes, f"cells shared by {dist.world_size()} ranks (torch.distributed)"],
    )
