"""``sdelab compare --preset inverse``: the conditional samplers against the exact posterior."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sdelab.experiments.config import builtin_mixture
from sdelab.experiments.inverse import INVERSE_PRESETS, METHODS_FOR, _variants, observe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inverse")
    cmd = [sys.executable, "-m", "sdelab.cli", "compare", "--preset", "inverse", "--quick"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "inverse.jsonl").read_text().splitlines()]
    return proc.stdout, records, wall, out


def test_quick_inverse_runs_well_under_a_minute(quick_run):
    stdout, records, wall, out = quick_run
    assert wall < 45, f"--preset inverse --quick took {wall:.0f} s"
    assert (out / "inverse.md").is_file()
    cfg = INVERSE_PRESETS["inverse-quick"]
    rows = [(k, v) for k in cfg.observations for v in _variants(cfg) if v[1] in METHODS_FOR[k]]
    assert len(records) == len(rows) * len(cfg.steps)
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    for steps in cfg.steps:
        assert f"least biased at {steps} steps" in stdout


def _energy(records, kind, method, steps):
    (r,) = [r for r in records if (r["kind"], r["method"], r["steps"]) == (kind, method, steps)]
    return r["energy"], r["energy_floor"], r["energy_floor_sd"]


def test_exact_reference_sits_in_the_floor_band_and_the_methods_show_bias(quick_run):
    """The posterior's own score at the most steps is within 5 floor standard deviations of
    the floor; imputation of a mask is far above it (the bias the table must show)."""
    _, records, _, _ = quick_run
    steps = max(INVERSE_PRESETS["inverse-quick"].steps)
    for kind in ("mask", "linear", "class"):
        e, floor, sd = _energy(records, kind, "exact", steps)
        assert e <= floor + 5 * sd, (kind, e, floor, sd)
    e, floor, sd = _energy(records, "mask", "imputation", steps)
    assert e > floor + 5 * sd


def test_guidance_with_the_exact_classifier_is_the_exact_component_score(quick_run):
    """grad log p_t(x) + grad log p_t(k | x) = grad log p_t(x | k): with the same seed the
    guided run and the component's own score give the same sample up to rounding."""
    _, records, _, _ = quick_run
    for steps in INVERSE_PRESETS["inverse-quick"].steps:
        e_guided, floor, _ = _energy(records, "class", "guidance", steps)
        e_exact, _, _ = _energy(records, "class", "exact", steps)
        assert abs(e_guided - e_exact) <= 0.05 * floor


@pytest.mark.parametrize("name", ["gmm2d", "gmm16"])
def test_observations_are_seeded_and_consistent(name):
    prior = builtin_mixture(name)
    d = prior.dim
    mask_obs = observe(prior, "mask", 3)
    assert int(mask_obs.mask.sum()) == max(1, d // 2)
    x = mask_obs.posterior.sample_x(50, torch.Generator().manual_seed(0))
    assert (x[:, mask_obs.mask] == mask_obs.y).all()
    again = observe(prior, "mask", 3)
    assert torch.equal(again.y, mask_obs.y) and torch.equal(again.mask, mask_obs.mask)
    lin = observe(prior, "linear", 3, noise_std=0.2)
    assert lin.A.shape == (max(1, d // 2), d) and lin.posterior.dim == d
    cls = observe(prior, "class", 3)
    assert cls.posterior.weights[cls.label] == 1 and cls.posterior.weights.sum() == 1


def test_quick_with_another_preset_is_refused():
    cmd = [sys.executable, "-m", "sdelab.cli", "compare", "--quick", "--preset", "fast"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=60
    )
    assert proc.returncode == 2
    assert "--quick goes alone or with --preset inverse, got it with --preset fast" in proc.stderr
