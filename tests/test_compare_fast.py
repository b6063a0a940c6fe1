"""``sdelab compare`` and the fast samplers: the ``schedule`` and ``nfe`` keys of a solver
entry, the pathwise error against the exact probability-flow map, the ``fast`` preset, and
the resume keys of grids written before any of this existed."""

from __future__ import annotations

import hashlib
import itertools

import pytest
import torch

import sdelab
from sdelab._convergence import exact_flow_solver, flow_error
from sdelab.experiments import compare, config_from_dict, preset
from sdelab.experiments.config import ConfigError, solver_label
from sdelab.experiments.config.presets import FAST_BUDGETS, PRESETS
from sdelab.experiments.config.problems import builtin_mixture
from sdelab.experiments.runner import cells

TINY = {
    "datasets": ["gmm2d"],
    "sdes": ["vp"],
    "n_samples": 200,
    "seeds": [0],
    "projections": 16,
}


def _grid(*solvers, **kw) -> dict:
    return {**TINY, **kw, "solvers": list(solvers)}


# --- the schedule key ------------------------------------------------------------------------


def test_schedule_names_and_tables_become_part_of_the_spec_and_label():
    cfg = config_from_dict(
        _grid(
            {"kind": "dpm_solver", "schedule": "logsnr"},
            {"kind": "heun", "schedule": {"kind": "karras", "rho": 5}},
            {"kind": "heun", "schedule": {"kind": "karras"}},
            {"kind": "ddim", "schedule": "uniform"},
            {"kind": "ddim"},
            steps=[10],
        )
    )
    specs = cfg.solvers
    assert specs[0] == {"kind": "dpm_solver", "schedule": "logsnr"}
    assert specs[1]["schedule"] == {"kind": "karras", "rho": 5.0}
    assert specs[2]["schedule"] == "karras"  # a table without parameters is its name
    assert "schedule" not in specs[3]  # uniform, the default, is never written
    assert specs[3] == specs[4]
    labels = [solver_label(s) for s in specs]
    assert labels[:3] == ["DPM++2M/logsnr", "Heun/karras(rho=5)", "Heun/karras"]
    names = {f"{c.label} N={c.steps}" for c in cells(cfg)}
    assert "DPM++2M/logsnr N=10" in names
    keys = [c.key("cpu") for c in cells(cfg)]
    assert keys[3] == keys[4] and len(set(keys)) == 4  # the schedule is in the key


@pytest.mark.parametrize(
    "schedule, message",
    [
        ("cosine", "solvers[0].schedule = 'cosine' is not a schedule; expected one of uniform"),
        (3, "solvers[0].schedule must be a schedule name or a table, got 3"),
        ({"kind": "cosine"}, "solvers[0].schedule.kind = 'cosine'; expected one of uniform"),
        ({"kind": "karras", "rho": -1}, "solvers[0].schedule.rho must be a finite number > 0"),
        ({"kind": "karras", "rho": "7"}, "solvers[0].schedule.rho must be a finite number"),
        ({"kind": "karras", "beta": 1}, "unknown key solvers[0].schedule.beta"),
        ({"rho": 7}, "solvers[0].schedule.kind is required"),
    ],
)
def test_a_bad_schedule_names_the_key_and_the_value(schedule, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(_grid({"kind": "ddim", "schedule": schedule}))
    assert message in str(e.value)


def test_schedule_and_nfe_are_refused_for_adaptive_solvers():
    for key, value in (("schedule", "logsnr"), ("nfe", [10])):
        with pytest.raises(ConfigError, match=rf"solvers\[0\]\.{key} applies to fixed-grid"):
            config_from_dict(_grid({"kind": "probability_flow_ode", key: value}))


def test_nfe_budgets_become_steps_whose_counted_nfe_fits():
    cfg = config_from_dict(
        _grid(
            {"kind": "heun", "nfe": [5, 8, 10]},  # 2 per step: floor of half
            {"kind": "pndm", "nfe": [5, 8, 10, 15]},  # Runge-Kutta warm-up: 4 per step, then 1
            {"kind": "dpm_solver", "order": 3, "multistep": False, "nfe": [2, 5, 9]},
        )
    )
    assert cfg.solvers[0]["steps"] == [2, 4, 5]
    assert cfg.solvers[1]["steps"] == [1, 2, 6]  # N <= 2: 4N; N >= 3: N + 9 (8 -> 2, 10 -> 2)
    assert cfg.solvers[2]["steps"] == [1, 3]  # budget 2 is below one step (3)
    again = config_from_dict(cfg.to_dict())  # a checked grid (config.json) reads back
    assert again.solvers == cfg.solvers
    with pytest.raises(ConfigError, match=r"solvers\[0\]\.nfe and solvers\[0\]\.steps"):
        config_from_dict(_grid({"kind": "heun", "nfe": [10], "steps": [3]}))
    with pytest.raises(ConfigError, match=r"solvers\[0\]\.nfe = \[1\]: one step of DPM2"):
        config_from_dict(_grid({"kind": "dpm2", "nfe": [1]}))


# --- the pathwise metric ---------------------------------------------------------------------


def _records(tmp_path, *solvers, **kw):
    res = compare(_grid(*solvers, **kw), tmp_path / "r", progress=False, plots=False)
    return res, res.records


def test_pathwise_is_zero_for_the_reference_itself_and_falls_with_ddim_steps(tmp_path):
    ref = {
        "kind": "probability_flow_ode",
        "method": "DOP853",
        "rtol": 1e-10,
        "atol": 1e-10,
        "tolerances": [1e-10],
    }
    ddim = {"kind": "ddim", "schedule": "logsnr", "steps": [5, 10, 20, 40]}
    res, recs = _records(tmp_path, ref, ddim, dtype="float64")
    assert recs[0]["solver"] == "PF-ODE" and recs[0]["pathwise"] < 1e-12
    errs = [r["pathwise"] for r in recs[1:]]
    assert all(e > 1e-3 for e in errs)
    assert all(a > b for a, b in itertools.pairwise(errs)), errs
    # the same number computed the documented way: sdelab.sample of the reference solver
    # with the same generator (float64: the same x_T) and of DDIM on the same grid
    mix = builtin_mixture("gmm2d")
    sde = sdelab.VPSDE()

    def run(solver, **kw):
        g = torch.Generator().manual_seed(0)
        return sdelab.sample(
            sde, mix.score(sde), solver, (200, 2), generator=g, dtype=torch.float64, **kw
        ).x

    exact = run(exact_flow_solver())
    x = run(sdelab.DDIM(), steps=10, schedule="logsnr")
    assert recs[2]["pathwise"] == pytest.approx(flow_error(x, exact), rel=1e-9)
    table = res.files["table"].read_text()
    assert "| pathwise |" in table and "Deterministic solvers by their pathwise" in res.summary


def test_float32_cells_are_measured_against_the_flow_of_their_own_prior_draw(tmp_path):
    # a float32 x_T is not the float64 draw of the same seed: the reference starts from the
    # cell's own draw, so a tight ODE solve in float32 is off by float32 rounding only
    ref = {"kind": "probability_flow_ode", "rtol": 1e-7, "atol": 1e-7, "tolerances": [1e-7]}
    _, recs = _records(tmp_path, ref)
    assert recs[0]["pathwise"] < 1e-4


def test_stochastic_solvers_have_no_pathwise_error(tmp_path):
    res, recs = _records(
        tmp_path,
        {"kind": "euler_ancestral", "schedule": "karras"},
        {"kind": "ddim", "eta": 1.0},
        "euler_maruyama",
        {"kind": "euler_maruyama", "probability_flow": True},
        steps=[6],
    )
    assert [r["pathwise"] is None for r in recs] == [True, True, True, False]
    table = res.files["table"].read_text()
    assert table.count("| — |") == 3
    pathwise = res.summary.split("Deterministic solvers by their pathwise")[1].split("Solvers (")[0]
    assert "EM-PF N=6" in pathwise and "Euler-a" not in pathwise


def test_a_resumed_run_reuses_the_reference_kept_in_the_out_folder(tmp_path, monkeypatch):
    ddim = {"kind": "ddim", "steps": [4]}
    _, first = _records(tmp_path, ddim)
    assert len(list((tmp_path / "r" / "pathwise").glob("*.pt"))) == 1
    from sdelab.experiments import pathwise

    def refuse(*a, **k):
        raise AssertionError("the reference was computed again")

    monkeypatch.setattr(pathwise, "exact_flow_map", refuse)
    _, second = _records(tmp_path, ddim, {"kind": "ddim", "steps": [8]})
    assert second[0] == first[0] and second[1]["pathwise"] < first[0]["pathwise"]


# --- the fast preset -------------------------------------------------------------------------

#: every fast sampler the preset must run
FAST_CLASSES = {
    "DDIM",
    "DPMSolver",
    "UniPC",
    "DEIS",
    "PNDM",
    "IPNDM",
    "Euler",
    "Heun",
    "EulerAncestral",
    "DPM2",
    "DPM2Ancestral",
    "DPMpp2SAncestral",
    "LMS",
    "EDMStochastic",
}


def _counted_nfe(solver, steps: int) -> int:
    mix = builtin_mixture("gmm2d")
    sde = sdelab.VPSDE()
    return sdelab.sample(sde, mix.score(sde), solver, (2, 2), steps=steps).nfe


def test_fast_preset_runs_every_fast_solver_within_each_budget(tmp_path):
    cfg = preset("fast")
    assert cfg.budgets == FAST_BUDGETS and {s["kind"] for s in cfg.solvers} >= {"euler_maruyama"}
    from sdelab.experiments.config import build_solver

    classes = {type(build_solver(s)).__name__ for s in cfg.solvers}
    assert classes >= FAST_CLASSES, FAST_CLASSES - classes
    assert len({solver_label(s) for s in cfg.solvers}) == len(cfg.solvers)
    # a tiny copy of the preset, budgets 5 and 10: every cell runs and fits its budget
    small = [{**s, "nfe": [5, 10]} for s in PRESETS["fast"]["solvers"]]
    for s in small:
        s.pop("steps", None)
    grid = _grid(*small, n_samples=64, budgets=[5, 10])
    res = compare(grid, tmp_path / "fast", progress=False, plots=False)
    assert all(r["status"] == "ok" for r in res.records)
    specs = config_from_dict(grid).solvers
    for spec in specs:
        solver = build_solver(spec)
        mine = [
            r
            for r in res.records
            if r["config"]["solver"] == {k: v for k, v in spec.items() if k not in ("steps", "nfe")}
        ]
        assert [r["steps"] for r in mine] == spec["steps"]
        for budget in (5, 10):
            fits = [r for r in mine if r["nfe"] <= budget]
            if not fits:  # one step already costs more (PNDM's warm-up: 4)
                assert _counted_nfe(solver, 1) > budget
                continue
            best = max(fits, key=lambda r: r["steps"])
            assert _counted_nfe(solver, best["steps"] + 1) > budget  # no more steps fit
        assert all((r["pathwise"] is None) == solver.stochastic for r in mine), spec
    assert "<= 5" in res.summary and "<= 8" not in res.summary


def test_the_cli_offers_the_fast_preset(capsys):
    import argparse

    from sdelab.experiments.cli import add_args

    p = argparse.ArgumentParser()
    add_args(p)
    assert p.parse_args(["--preset", "fast"]).preset == "fast"
    with pytest.raises(SystemExit):
        p.parse_args(["--preset", "fastest"])
    assert "--preset fast" in p.epilog and "fast" in capsys.readouterr().err


# --- resume keys of grids written before schedules --------------------------------------------

#: SHA-1 of the sorted resume keys (device "cpu") of every cell of the presets as sdelab
#: computed them before the fast samplers (main at 3d59fa1): a results.jsonl written then
#: still resumes
OLD_KEYS = {
    "default": (1224, "79de628eceb76a8f34753d9efe302282134c9187"),
    "quick": (44, "3f816d1af6c83eb79ee77b0b610d32437502c22c"),
    "table1": (60, "5d65b9d850c27575563361d1b8d5b6c2b360f6d0"),
}

OLD_KINDS = {
    "euler_maruyama",
    "reverse_diffusion",
    "ancestral",
    "langevin",
    "annealed_langevin",
    "pc",
    "probability_flow_ode",
    "torchsde",
}


@pytest.mark.parametrize("name", sorted(OLD_KEYS))
def test_old_cell_keys_are_unchanged(name):
    old = [c for c in cells(preset(name)) if c.solver["kind"] in OLD_KINDS]
    keys = sorted(c.key("cpu") for c in old)
    count, digest = OLD_KEYS[name]
    assert (len(keys), hashlib.sha1("\n".join(keys).encode()).hexdigest()) == (count, digest)
