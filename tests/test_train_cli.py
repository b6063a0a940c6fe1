"""``sdelab train`` / ``sample`` / ``likelihood``: kill-and-resume, output files, bits/dim."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sdelab.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [
    "train", "--data", "gmm2d", "--sde", "vp", "--hidden", "32", "--batch-size", "32",
    "--checkpoint-every", "10", "--threads", "1", "--no-progress",
]  # fmt: skip


def _weights(directory: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = load_file(directory / f"step-{step:08d}.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema.", "optim."))}


def _steps(directory: Path) -> list[int]:
    return sorted(
        int(m.group(1))
        for p in directory.glob("step-*.json")
        if (m := re.match(r"step-(\d+)", p.name))
    )


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    steps = 400
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*TRAIN, "--steps", str(steps), "--out", str(whole)]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "sdelab.cli", *TRAIN, "--steps", str(steps), "--out", str(killed)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _steps(killed) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _steps(killed)
    assert done and max(done) < steps, f"the run was not interrupted mid-way: {done}"
    assert proc.returncode == -signal.SIGKILL
    assert main([*TRAIN, "--steps", str(steps), "--out", str(killed)]) == 0
    a, b = _weights(whole, steps), _weights(killed, steps)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    pytest.importorskip("sklearn")
    out = tmp_path_factory.mktemp("digits")
    args = ["train", "--data", "digits", "--steps", "6", "--hidden", "64", "--batch-size", "8",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return out


def test_images_default_to_a_unet(digits_checkpoint):
    # the image defaults: a UNet (hidden 64 -> 8 base channels), likelihood weighting, noise
    config = json.loads(sorted(digits_checkpoint.glob("step-*.json"))[-1].read_text())
    assert config["network"]["class"] == "UNet" and config["network"]["base"] == 8
    assert (config["weighting"], config["parametrization"]) == ("likelihood", "noise")
    assert config["optimizer"]["lr"] == 2e-3


def test_sample_writes_npy_and_png(digits_checkpoint, tmp_path, capsys):
    npy, png = tmp_path / "s.npy", tmp_path / "grid.png"
    base = ["sample", "--checkpoint", str(digits_checkpoint), "--steps", "3", "--n", "4"]
    assert main([*base, "--out", str(npy), "--no-progress"]) == 0
    x = np.load(npy)
    assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all()
    assert main([*base, "--out", str(png), "--solver", "reverse_diffusion", "--no-progress"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*base, "--out", str(tmp_path / "s.txt")]) == 2
    assert "--out must end in .npy or .png" in capsys.readouterr().err
    assert main([*base, "--out", str(npy), "--solver", "nope"]) == 2
    assert "--solver must be one of" in capsys.readouterr().err


def test_likelihood_prints_bits_per_dim(digits_checkpoint, capsys):
    args = ["likelihood", "--checkpoint", str(digits_checkpoint), "--data", "digits", "--n", "3",
            "--rtol", "1e-2", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    nats = float(re.search(r"log-likelihood: (\S+) nats", out).group(1))
    bpd = float(re.search(r"bits/dim: +(\S+)", out).group(1))
    assert "17 levels" in out
    # bits/dim = -(logp + D log(bin width)) / (D ln 2), D = 64, width = 2/17
    expected = -(nats + 64 * np.log(2 / 17)) / (64 * np.log(2))
    assert abs(bpd - expected) < 1e-3 * max(1.0, abs(expected))


def test_train_usage_errors(tmp_path, capsys):
    assert main([*TRAIN, "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "steps must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main([*TRAIN, "--steps", "5", "--net", "unet", "--out", str(tmp_path)]) == 2
    assert "--net unet needs images" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "none"), "--out", "x.npy"]) == 2
    assert "checkpoint directory" in capsys.readouterr().err


def test_compare_runs_a_checkpoint_on_its_mixture(tmp_path, capsys):
    """``compare(score=DIR)``: the checkpoint's SDE and mixture replace the grid's, the truth is
    the exact mixture (its metrics are there), and the trained score is what is sampled."""
    import sdelab
    import sdelab.data
    from sdelab.experiments import compare
    from sdelab.nets import MLPScore
    from sdelab.training import train

    ck = tmp_path / "ck"
    torch.manual_seed(0)
    net = MLPScore(2, hidden=32, depth=2, embed_dim=16)
    sde = sdelab.VESDE(sigma_max=10.0)
    train(sde, net, "gmm2d", steps=30, batch_size=32, out=ck, progress=False)
    grid = {"datasets": ["gmm16"], "sdes": ["vp"], "n_samples": 100, "seeds": [0],
            "projections": 8, "solvers": [{"kind": "euler_maruyama", "steps": [5]}]}  # fmt: skip
    res = compare(grid, tmp_path / "out", score=str(ck), progress=False, plots=False)
    (rec,) = res.records
    assert rec["dataset"] == "gmm2d-trained" and rec["sde"] == "VE" and rec["status"] == "ok"
    assert rec["config"]["sde"]["sigma_max"] == 10.0
    exact = compare(grid | {"datasets": ["gmm2d"], "sdes": [{"kind": "ve", "sigma_max": 10.0}]},
                    tmp_path / "exact", progress=False, plots=False).records[0]  # fmt: skip
    assert rec["metrics"].keys() == exact["metrics"].keys()
    assert rec["floor"] == exact["floor"]  # the same truth and noise floor
    assert rec["metrics"] != exact["metrics"]  # another score
    # load_checkpoint's score object goes in directly (with a data sample, as a user's score)
    from sdelab.training import load_checkpoint

    _, score = load_checkpoint(ck)
    data = sdelab.data.load("gmm2d", n=400).data
    user = compare(grid | {"sdes": [{"kind": "ve", "sigma_max": 10.0}]}, tmp_path / "obj",
                   score=score, data=data, progress=False, plots=False).records[0]  # fmt: skip
    assert user["status"] == "ok" and user["sde"] == "VE"
    # the command line: a checkpoint needs neither --sde nor --data
    out = tmp_path / "cli"
    args = ["compare", "--score", str(ck), "--config", str(tmp_path / "g.json"), "--out", str(out),
            "--no-plots", "--no-progress"]  # fmt: skip
    (tmp_path / "g.json").write_text(__import__("json").dumps(grid))
    assert main(args) == 0
    assert "gmm2d-trained" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"built-in mixture .*got data 'moons'"):
        moons = tmp_path / "moons"
        train(sde, net, "moons", steps=2, batch_size=8, out=moons, progress=False)
        compare(grid, tmp_path / "o2", score=str(moons), progress=False, plots=False)
