"""``sdelab compare`` under bad conditions: corrupted results, two runs on one folder, bad
command-line values, failing cells, outliers; and the solver registry read off the solver
dataclasses."""

from __future__ import annotations

import fcntl
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

import sdelab
from sdelab.cli import main
from sdelab.experiments import compare, config_from_dict, load_results
from sdelab.experiments import runner as runner_mod
from sdelab.experiments.config import SOLVERS, ConfigError, solver_label
from sdelab.experiments.report import Row, flag_outliers, results_table, summary_table

ROOT = Path(__file__).resolve().parents[1]

SMALL = {
    "name": "small",
    "datasets": ["gmm2d"],
    "sdes": ["vp"],
    "solvers": ["euler_maruyama"],
    "steps": [3, 6, 9],
    "n_samples": 200,
    "seeds": [0],
    "projections": 16,
}


def _count_cells(monkeypatch) -> list:
    calls: list = []
    real = runner_mod.run_cell
    monkeypatch.setattr(runner_mod, "run_cell", lambda *a: (calls.append(a[0]), real(*a))[1])
    return calls


# --- results.jsonl corrupted in the middle -------------------------------------------------


def test_corrupted_lines_are_moved_aside_and_only_their_cells_rerun(tmp_path, monkeypatch):
    out = tmp_path / "res"
    compare(SMALL, out, progress=False, plots=False)
    path = out / "results.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    lines[1] = lines[1][: len(lines[1]) // 2] + "\x00garbage"  # line 2 destroyed
    path.write_text("\n".join([*lines, '{"no key": 1}']) + "\n")  # line 4 not a record
    calls = _count_cells(monkeypatch)
    with pytest.warns(runner_mod.ResultsWarning) as w:
        res = compare(SMALL, out, progress=False, plots=False)
    msg = str(w[0].message)
    assert str(path) in msg and "line(s) 2, 4" in msg and ".corrupt" in msg
    assert [c.steps for c in calls] == [6]  # only the destroyed cell is computed again
    assert res.computed == 1 and res.resumed == 2
    kept = path.read_text().splitlines()
    assert len(kept) == 3 and all("key" in json.loads(ln) for ln in kept)
    corrupt = (out / "results.jsonl.corrupt").read_text()
    assert "garbage" in corrupt and '{"no key": 1}' in corrupt
    calls.clear()
    compare(SMALL, out, progress=False, plots=False)  # clean now: no warning, no work
    assert calls == []


# --- two runs on one --out ------------------------------------------------------------------


def test_second_run_on_a_locked_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    # another process's lock: a separate open file description holding flock
    with open(out / runner_mod.LOCK_FILE, "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        grid = tmp_path / "g.json"
        grid.write_text(json.dumps(SMALL))
        argv = ["compare", "--config", str(grid), "--out", str(out), "--no-progress"]
        assert main([*argv, "--no-plots"]) == 1
        err = capsys.readouterr().err
        assert str(out) in err and "PID 4242" in err and "Traceback" not in err
        with pytest.raises(runner_mod.ResultsBusy):
            compare(SMALL, out, progress=False, plots=False)
    assert not (out / "results.jsonl").exists()  # nothing was duplicated or written
    res = compare(SMALL, out, progress=False, plots=False)  # released: runs
    assert res.computed == 3


# --- one-line CLI errors --------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path) -> Path:
    p = tmp_path / "data.npy"
    np.save(p, np.random.default_rng(0).normal(size=(400, 2)))
    return p


def _cli_cases(tmp_path: Path, data_file: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["--threads", "-1"], "--threads must be an integer >= 0"),
        (["--device", "bogus"], "--device 'bogus' is not a torch device"),
        (["--out", str(a_file)], f"--out {str(a_file)!r} exists and is not a directory"),
        (["--out", str(a_file / "sub")], "is not a directory"),
        (
            ["--score", "nomodule_h13:fn", "--data", str(data_file), "--sde", "vp"],
            "--score 'nomodule_h13:fn': cannot import module 'nomodule_h13'",
        ),
    ]
    if Path("/proc").is_dir():  # exists, but nothing can be created in it, even by root
        cases.append((["--out", "/proc/sdelab-h13/x"], "expected a writable folder"))
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device 'cuda': CUDA is not available"))
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        cases.append((["--out", str(ro / "x")], "cannot be created in"))
    return cases


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, data_file, capsys):
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps(SMALL))
    for extra, message in _cli_cases(tmp_path, data_file):
        argv = ["compare", "--config", str(grid), "--no-progress", "--no-plots"]
        if "--out" not in extra:
            argv += ["--out", str(tmp_path / "never")]
        assert main(argv + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err, (extra, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_cli_error_from_the_console_has_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "sdelab.cli", "compare", "--quick", "--threads", "-1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "sdelab compare: --threads must be an integer >= 0 (0 = torch's default), got -1"
    )


# --- failing cells --------------------------------------------------------------------------


def _nan_score(sde):
    return lambda x, t: torch.full_like(x, math.nan)


def test_numerical_failures_are_failed_cells_and_not_retried(tmp_path, monkeypatch):
    grid = {
        **SMALL,
        "steps": [4],
        "solvers": ["euler_maruyama", {"kind": "torchsde", "method": "srk", "tolerances": [0.1]}],
    }
    data = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "res"
    res = compare(grid, out, score=_nan_score, data=data, progress=False, plots=False)
    assert res.failed == 2 and [r["status"] for r in res.records] == ["error", "error"]
    errors = [r["error"] for r in res.records]
    assert all(e for e in errors)
    assert any(e.startswith(("FloatingPointError", "AssertionError")) for e in errors)
    table = (out / "results.md").read_text()
    assert table.count("| error |") >= 2 and "FloatingPointError" in table
    assert "failed" in res.summary and "failed" in res.report()
    calls = _count_cells(monkeypatch)
    compare(grid, out, score=_nan_score, data=data, progress=False, plots=False)
    assert calls == []  # deterministic failures are kept, not retried forever
    compare(grid, out, score=_nan_score, data=data, progress=False, plots=False, retry_failed=True)
    assert len(calls) == 2
    assert len(load_results(out)) == 4  # the retried records are appended, the last one wins


# --- the report: ranking, outliers, resume line --------------------------------------------


def _row(solver, steps, mean, sd, nfe, *, seeds=3, floor=0.01, floor_sd=0.002) -> Row:
    r = Row("d", "VP", solver, steps, None, {"kind": "euler_maruyama"})
    r.seeds = list(range(seeds))
    r.nfe, r.wall_s, r.score_s = float(nfe), 1.0, 0.5
    r.metrics = {"energy": (mean, sd)}
    r.floor, r.floor_sd = {"energy": floor}, {"energy": floor_sd}
    return r


def test_best_per_budget_is_the_cheapest_entry_tied_with_the_lowest_mean():
    # 30 configurations with the same true error 0.05; each mean over 3 seeds carries the
    # noise of its standard error (sd 0.006 / sqrt 3). The lowest mean is luck: the entry is
    # the cheapest configuration within 2 SE (of the difference) of it
    g = np.random.default_rng(1)
    se = 0.006 / math.sqrt(3)
    rows = [
        _row(f"S{i}", 10 + i, 0.05 + se * g.standard_normal(), 0.006, 10 + i) for i in range(30)
    ]
    low = min(r.metrics["energy"][0] for r in rows)
    tied = [r for r in rows if r.metrics["energy"][0] - low <= 2 * math.sqrt(2) * se]
    body = summary_table(rows, "energy", budgets=(100,)).splitlines()[3]
    assert f"{tied[0].name} " in body and f"(={len(tied)})" in body
    assert len(tied) >= 10  # most of them cannot be told apart
    assert tied[0].metrics["energy"][0] > low  # not the lucky minimum
    # a clear winner far below the rest (> 5 SE) is reported alone
    rows.append(_row("WIN", 50, 0.02, 0.003, 60))
    body = summary_table(rows, "energy", budgets=(100,)).splitlines()[3]
    assert "WIN N=50" in body and "(=1)" in body


def test_outliers_are_flagged_against_peers_at_the_same_cost():
    rows = [_row(s, 10, 0.1, 0.01, 10) for s in ("A", "B", "C")]
    rows += [_row("D", 10, 300.0, 10.0, 12)]  # finite garbage: 3000x its peers
    rows += [_row("A", 1000, 0.01, 0.001, 1000)]  # a long run of A: no peers, not flagged
    assert flag_outliers(rows, "energy") == [rows[3]]
    assert "1 flagged as outliers" in summary_table(rows, "energy")
    assert "VP D N=10" in summary_table(rows, "energy")
    assert "300 ± 10 !" in results_table(rows)


def test_resume_line_separates_this_runs_work(tmp_path):
    out = tmp_path / "res"
    compare({**SMALL, "steps": [3, 6]}, out, progress=False, plots=False)
    res = compare(SMALL, out, progress=False, plots=False)
    assert (res.computed, res.resumed) == (1, 2)
    assert "3 cells: 1 computed in this run" in res.report()
    assert "2 resumed from" in res.report()
    assert res.sampling_s == pytest.approx(res.records[-1]["wall_s"])


def test_without_matplotlib_the_plots_are_skipped_with_a_note(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    res = compare({**SMALL, "steps": [3]}, tmp_path / "r", progress=False)
    assert "nfe_plot" not in res.files and not list((tmp_path / "r").glob("*.png"))
    assert 'pip install -e ".[plot]"' in res.report()


# --- the solver registry --------------------------------------------------------------------


@dataclass(frozen=True)
class Damped(sdelab.EulerMaruyama):
    """A test solver: Euler-Maruyama with two extra options."""

    gain: float = 1.0
    mode: Literal["plain", "fancy"] = "plain"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gain > 0:
            raise ValueError(f"gain must be > 0, got {self.gain!r}")


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(SOLVERS, "_lines", list(SOLVERS._lines))
    monkeypatch.setattr(SOLVERS, "_kinds", None)
    yield SOLVERS
    SOLVERS._kinds = None


def test_a_registered_solver_is_usable_in_grids(registry, tmp_path):
    registry.add("damped", Damped, "DMP")
    cfg = config_from_dict({**SMALL, "solvers": [{"kind": "damped", "gain": 2}], "steps": [3]})
    assert cfg.solvers == [{"kind": "damped", "gain": 2.0}]
    assert solver_label(cfg.solvers[0]) == "DMP"
    bad = [
        ({"gain": -1.0}, "solvers[0].gain must be > 0, got -1.0"),  # the class's own check
        ({"gain": "x"}, "solvers[0].gain must be a finite number"),
        ({"mode": "odd"}, "solvers[0].mode must be one of ['plain', 'fancy']"),
        ({"probability_flow": 1}, "solvers[0].probability_flow must be true or false"),
        ({"gian": 1.0}, "unknown key solvers[0].gian"),
    ]
    for patch, message in bad:
        with pytest.raises(ConfigError) as e:
            config_from_dict({**SMALL, "solvers": [{"kind": "damped", **patch}]})
        assert message in str(e.value)
    res = compare(cfg, tmp_path / "r", progress=False, plots=False)
    assert res.records[0]["status"] == "ok" and res.records[0]["solver"] == "DMP"
    assert "DMP = Damped(gain=2.0)" in res.summary


def test_an_exported_unregistered_solver_is_found_under_its_snake_name(registry, monkeypatch):
    monkeypatch.setattr(sdelab, "DampedDPMStep", Damped, raising=False)
    monkeypatch.setattr(sdelab, "__all__", [*sdelab.__all__, "DampedDPMStep"])
    cfg = config_from_dict({**SMALL, "solvers": [{"kind": "damped_dpm_step", "mode": "fancy"}]})
    assert solver_label(cfg.solvers[0]) == "DampedDPMStep"
    with pytest.raises(ConfigError, match=r"solvers\[0\].gain must be > 0"):
        config_from_dict({**SMALL, "solvers": [{"kind": "damped_dpm_step", "gain": 0}]})
