"""``sdelab compare`` end to end: tiny grids, resume after an interruption, config checks."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sdelab.cli import main
from sdelab.experiments import compare, config_from_dict, load_config, load_results, preset
from sdelab.experiments import runner as runner_mod
from sdelab.experiments.config import ConfigError, build_mixture

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "datasets": ["gmm2d"],
    "sdes": ["vp", "ve"],
    "solvers": [
        "euler_maruyama",
        {"kind": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"},
    ],
    "steps": [2, 60],
    "n_samples": 400,
    "seeds": [0],
    "projections": 32,
}


def _write(tmp_path: Path, data: dict, name: str = "grid.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_cli_tiny_grid_end_to_end(tmp_path, capsys):
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "res"
    assert main(["compare", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "sw2 per NFE budget" in printed and "inside the score function" in printed
    assert re.search(r"EM\s+= EulerMaruyama\(\) \(N=: grid steps\)", printed)  # legend
    for f in ("results.jsonl", "summary.md", "results.md", "error_vs_nfe.png", "config.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "error_vs_nfe.png").read_bytes()[:4] == b"\x89PNG"
    recs = load_results(out)
    assert len(recs) == 2 * 2 * 2  # sdes x solvers x steps
    for r in recs:
        assert r["status"] == "ok"
        assert r["nfe"] == r["steps"] * (2 if r["solver"] == "RD+L" else 1)
        assert 0 < r["score_s"] <= r["wall_s"]
        assert set(r["metrics"]) == set(r["floor"]) >= {"sw2", "energy", "mode_tv"}
    # a real property: two Euler steps are far from the truth, 60 steps of PC reach the
    # noise floor (the floor's spread is measured from 8 exact samples)
    by = {(r["sde"], r["solver"], r["steps"]): r for r in recs}
    for sde in ("VP", "VE"):
        coarse, fine = by[(sde, "EM", 2)], by[(sde, "RD+L", 60)]
        hi = coarse["floor"]["sw2"] + 5 * coarse["floor_sd"]["sw2"]
        assert coarse["metrics"]["sw2"] > hi
        assert fine["metrics"]["sw2"] < hi


def test_resume_after_interruption_computes_only_the_rest(tmp_path, monkeypatch):
    cfg = config_from_dict(TINY)
    out = tmp_path / "res"
    real = runner_mod.run_cell
    calls = []

    def flaky(cell, problem, device):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the fourth cell
        calls.append(cell)
        return real(cell, problem, device)

    monkeypatch.setattr(runner_mod, "run_cell", flaky)
    with pytest.raises(KeyboardInterrupt):
        compare(cfg, out, progress=False, plots=False)
    first = load_results(out)
    assert len(first) == 3
    # a torn, half-written line (a kill mid-write) must not break the resume
    with open(out / "results.jsonl", "a") as f:
        f.write('{"key": "tor')

    calls.clear()
    monkeypatch.setattr(runner_mod, "run_cell", lambda *a: (calls.append(a[0]), real(*a))[1])
    with pytest.warns(runner_mod.ResultsWarning, match=r"last line \(4\) .* half-written"):
        res = compare(cfg, out, progress=False, plots=False)
    assert len(calls) == 8 - 3  # only the missing cells ran
    assert len(res.records) == 8 and len({r["key"] for r in res.records}) == 8
    assert [r["key"] for r in res.records[:3]] == [r["key"] for r in first]
    assert len(load_results(out)) == 8

    calls.clear()  # everything done: a third run computes nothing
    compare(cfg, out, progress=False, plots=False)
    assert calls == []


def test_more_seeds_only_add_cells_and_give_error_bars(tmp_path, monkeypatch):
    base = {**TINY, "sdes": ["vp"], "solvers": ["euler_maruyama"], "steps": [30, 60]}
    out = tmp_path / "res"
    compare(base, out, progress=False, plots=False)
    built = []
    real = runner_mod._Problem
    monkeypatch.setattr(
        runner_mod, "_Problem", lambda c, *a: (built.append(c.seed), real(c, *a))[1]
    )
    res = compare({**base, "seeds": [0, 1, 2]}, out, progress=False, plots=False)
    assert [r["seed"] for r in res.records] == [0, 1, 2] * 2
    assert "±" in res.summary  # mean ± std over the three seeds
    # truth and floor samples are drawn once per (dataset, seed), not once per cell
    assert sorted(built) == [1, 2]


def test_user_score_and_data_file(tmp_path, monkeypatch, capsys):
    # a "model" module whose factory returns the exact score of a mixture, and a data file
    spec = {"name": "m", "means": [[-2.0, 0.0], [2.0, 1.0]], "stds": [0.5, 0.4]}
    gm = build_mixture(spec)
    np.save(tmp_path / "data.npy", gm.sample(1000, torch.Generator().manual_seed(9)).numpy())
    (tmp_path / "mymodel.py").write_text(
        "import torch\n"
        "from sdelab import GaussianMixture\n"
        f"GM = GaussianMixture(torch.tensor({spec['means']}), torch.tensor({spec['stds']}))\n"
        "def make(sde):\n"
        "    return GM.score(sde)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "res"
    grid = _write(tmp_path, {**TINY, "solvers": ["euler_maruyama"], "steps": [30]})
    argv = ["compare", "--score", "mymodel:make", "--data", str(tmp_path / "data.npy")]
    argv += ["--config", str(grid), "--sde", "vp", "--n-samples", "300", "--out", str(out)]
    argv += ["--no-plots", "--no-progress"]
    assert main(argv) == 0
    recs = load_results(out)
    assert recs and all(r["dataset"] == "data" and r["status"] == "ok" for r in recs)
    assert set(recs[0]["metrics"]) == {"sw2", "energy", "mean_err", "cov_err"}
    # too small a data file for the sample size is refused before any work
    argv[argv.index("300")] = "800"
    assert main(argv) == 2
    assert "needs a data sample of at least 1600 rows" in capsys.readouterr().err


def test_table1_preset_structure_and_layout(tmp_path):
    cfg = preset("table1")
    assert [s["kind"] for s in cfg.sdes] == ["ve", "vp"]
    cells = runner_mod.cells(cfg)
    per_seed = [c for c in cells if c.seed == cfg.seeds[0] and c.sde["kind"] == "vp"]
    # 3 predictors x (P1000, P2000, PC1000) + C2000
    assert len(per_seed) == 10
    # the same layout from a scaled-down grid (steps 1000/2000 -> 4/8): run it for real
    small = cfg.to_dict()
    for s in small["solvers"]:
        s["steps"] = [{1000: 4, 2000: 8}[n] for n in s["steps"]]
    small.update(n_samples=200, seeds=[0], projections=16)
    res = compare(small, tmp_path / "t1", progress=False, plots=False)
    lines = res.summary.splitlines()
    header = lines[1].split()
    assert header[:5] == ["Predictor", "VE", "P4", "VE", "P8"]
    assert "VE C8" in lines[1] and "VP PC4" in lines[1]
    rows = [ln.split("  ")[0].strip() for ln in lines[3 : lines.index("")]]
    assert rows == ["ancestral sampling", "reverse diffusion", "probability flow"]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"n_sample": 10}, "unknown key n_sample"),
        ({"n_samples": "many"}, "n_samples must be an integer"),
        ({"n_samples": 1}, "n_samples must be an integer >= 2"),
        ({"eps": 1.5}, "eps must lie in (0, T)"),
        ({"steps": [10, 0]}, r"steps[1] must be an integer >= 1"),
        ({"tolerances": [1e-3, -1.0]}, r"tolerances[1] must be > 0"),
        ({"seeds": [0.5]}, r"seeds[0] must be an integer"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"datasets": ["mnist"]}, r"datasets[0] = 'mnist' is not a built-in dataset"),
        ({"datasets": [{"name": "a", "means": [[0, 0]], "stds": [-1]}]}, "datasets[0]"),
        ({"datasets": [{"name": "a", "dim": 0}]}, "datasets[0].dim must be"),
        ({"sdes": ["vp", {"kind": "ve", "sigma_max": 0.001}]}, "sdes[1]"),
        ({"sdes": [{"kind": "vp", "sigma_max": 3.0}]}, "unknown key sdes[0].sigma_max"),
        ({"sdes": ["vp", "vp"]}, "two entries named 'VP'"),
        ({"solvers": ["rk4"]}, r"solvers[0].kind = 'rk4'"),
        (
            {"solvers": [{"kind": "langevin", "snr": -0.1}]},
            "solvers[0].snr must be a finite number > 0",
        ),
        ({"solvers": [{"kind": "langevin", "snr": "hi"}]}, "solvers[0].snr must be a finite"),
        ({"solvers": [{"kind": "euler_maruyama", "probability_flow": 1}]}, "true or false"),
        ({"solvers": [{"kind": "euler_maruyama", "snr": 0.1}]}, "unknown key solvers[0].snr"),
        ({"solvers": [{"kind": "pc", "predictor": "ancestral"}]}, "solvers[0].corrector"),
        (
            {"solvers": [{"kind": "pc", "predictor": "langevin", "corrector": "langevin"}]},
            "solvers[0].predictor.kind = 'langevin' is not a predictor",
        ),
        ({"solvers": [{"kind": "ancestral", "steps": []}]}, "solvers[0].steps must be"),
        ({"metric": "fid"}, "metric must be one of"),
        ({"solvers": []}, "solvers must be a non-empty list"),
    ],
)
def test_config_errors_name_the_key(patch, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict({**TINY, **patch})
    assert message in str(e.value)


def test_config_files_and_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'steps = [10, 20]\nsolvers = ["ancestral"]\n[[sdes]]\nkind = "vp"\nbeta_mx = 3\n'
    )
    with pytest.raises(ConfigError, match=r"unknown key sdes\[0\].beta_mx"):
        load_config(bad)
    # the CLI rejects it before any work starts, with exit status 2 and nothing written
    out = tmp_path / "never"
    assert main(["compare", "--config", str(bad), "--out", str(out)]) == 2
    assert "unknown key sdes[0].beta_mx" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "broken.toml").write_text("steps = [")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(tmp_path / "broken.toml")
    with pytest.raises(ConfigError, match="must end in .toml or .json"):
        load_config(_write(tmp_path, TINY, "grid.yaml"))


def test_shipped_example_and_presets_are_valid():
    cfg = load_config(ROOT / "examples" / "compare.toml")
    assert [d["name"] for d in cfg.datasets] == ["gmm2d", "three-modes", "random8d"]
    for name in ("default", "quick", "table1"):
        p = preset(name)
        assert math.isfinite(p.eps) and runner_mod.cells(p)


def test_load_score_conventions(tmp_path):
    from sdelab.experiments import load_score

    (tmp_path / "models.py").write_text(
        "import torch\n"
        "def score(x, t):\n"
        "    return -x\n"
        "def make(sde):\n"
        "    return lambda x, t: -x * sde\n"
        "def make0():\n"
        "    return lambda x, t: -2 * x\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x, t):\n"
        "        return -3 * x\n"
        "net = Net()\n"
        "answer = 42\n"
    )
    x = torch.ones(2, 3)
    f = str(tmp_path / "models.py")
    # a score (two parameters) is used as is; a factory is called with the SDE, or nothing
    assert torch.equal(load_score(f"{f}:score")(None)(x, 0.5), -x)
    assert torch.equal(load_score(f"{f}:make")(5.0)(x, 0.5), -5 * x)
    assert torch.equal(load_score(f"{f}:make0")(None)(x, 0.5), -2 * x)
    assert torch.equal(load_score(f"{f}:net")(None)(x, 0.5), -3 * x)
    with pytest.raises(ValueError, match="not callable"):
        load_score(f"{f}:answer")
    with pytest.raises(ValueError, match="has no attribute"):
        load_score(f"{f}:missing")
    with pytest.raises(ValueError, match="module:callable"):
        load_score("no_colon")
