"""Checkpoints: round trip, atomic writes, corrupted files, resume and its mismatch errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

import sdelab
from sdelab.data import load
from sdelab.nets import MLPScore
from sdelab.training import CheckpointError, load_checkpoint, train
from sdelab.training import checkpoint as ckpt

SDE = sdelab.VPSDE(beta_max=15.0)
DATA = load("gmm2d", n=256)


def _net(hidden: int = 32) -> MLPScore:
    torch.manual_seed(0)
    return MLPScore(2, hidden=hidden, depth=2, embed_dim=16)


def _train(out, steps=20, **kw):
    args = {"batch_size": 16, "checkpoint_every": 10, "progress": False, "out": out, **kw}
    return train(SDE, _net(), DATA, steps=steps, **args)


def test_round_trip(tmp_path):
    res = train(
        SDE, _net(), DATA, steps=20, batch_size=16, out=tmp_path, checkpoint_every=10,
        parametrization="v", progress=False,
    )  # fmt: skip
    assert res.checkpoint == tmp_path / "step-00000020.json"
    sde, score = load_checkpoint(tmp_path)
    assert type(sde) is sdelab.VPSDE and sde.beta_max == 15.0 and sde.N == SDE.N
    x, t = torch.randn(9, 2), torch.rand(9) * 0.9 + 0.05
    torch.testing.assert_close(score(x, t), res.score(x, t), rtol=0, atol=0)
    # the raw iterate too, and a float time
    _, raw = load_checkpoint(res.checkpoint, ema=False)
    torch.testing.assert_close(raw(x, 0.3), ckpt.TrainedScore(SDE, res.model, "v")(x, 0.3))
    config = json.loads(res.checkpoint.read_text())
    for key in ("sde", "network", "parametrization", "weighting", "optimizer", "ema", "data"):
        assert key in config
    assert config["step"] == 20 and config["data"] == "gmm2d" and config["ema"] == 0.995
    assert config["optimizer"]["lr"] == 2e-3 and config["network"]["class"] == "MLPScore"
    # sample accepts the loaded score directly
    out = sdelab.sample(sde, score, sdelab.EulerMaruyama(), (5, 2), steps=5)
    assert out.x.shape == (5, 2) and torch.isfinite(out.x).all()


def test_keeps_two_newest_pairs(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".step-00000010.json.abc.tmp").write_bytes(b"half")  # a killed write
    _train(tmp_path, steps=40)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "step-00000030.json", "step-00000030.safetensors",
        "step-00000040.json", "step-00000040.safetensors",
    ]  # fmt: skip


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt._atomic_write(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.bin"]  # no temporary left behind


@pytest.mark.parametrize("damage", ["truncate", "flip", "json"])
def test_corrupted_latest_falls_back(tmp_path, damage):
    _train(tmp_path, steps=20)
    weights = tmp_path / "step-00000020.safetensors"
    meta = tmp_path / "step-00000020.json"
    prev = tmp_path / "step-00000010.safetensors"
    prev_bytes = prev.read_bytes()
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "flip":
        blob = bytearray(weights.read_bytes())
        blob[-5] ^= 0xFF
        weights.write_bytes(bytes(blob))
    else:
        meta.write_text(meta.read_text()[:50])
    with pytest.warns(UserWarning, match=r"step-00000020.* falling back .*step-00000010"):
        _, score = load_checkpoint(tmp_path)
    assert prev.read_bytes() == prev_bytes  # the previous pair is intact
    assert torch.isfinite(score(torch.randn(3, 2), 0.5)).all()
    # the damaged pair named on its own: a clear error
    expected = r"unreadable" if damage == "json" else r"truncated or corrupted"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(meta)


def test_resume_after_corruption_continues_from_previous(tmp_path):
    full = train(SDE, _net(), DATA, steps=30, batch_size=16, progress=False, seed=1)
    _train(tmp_path, steps=20, seed=1)
    (tmp_path / "step-00000020.safetensors").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="falling back"):
        res = _train(tmp_path, steps=30, seed=1)
    assert res.losses == full.losses
    for p, q in zip(
        res.ema_model.state_dict().values(), full.ema_model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q)


def test_all_corrupted_is_an_error(tmp_path):
    _train(tmp_path, steps=20)
    for p in tmp_path.glob("*.safetensors"):
        p.write_bytes(b"x")
    with pytest.raises(
        CheckpointError, match=r"no usable checkpoint .*step-00000020.*step-00000010"
    ):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint"):
        _train(tmp_path, steps=30)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"holds no checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"path must be a checkpoint directory"):
        load_checkpoint(tmp_path / "nope")


def test_resume_no_step_lost_or_repeated(tmp_path):
    full = train(SDE, _net(), DATA, steps=25, batch_size=16, progress=False)
    _train(tmp_path, steps=13)  # checkpoints at 10 and 13
    res = _train(tmp_path, steps=25)
    assert len(res.losses) == 25 and res.losses == full.losses and res.steps == 25
    for p, q in zip(res.model.state_dict().values(), full.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    # resume=False starts over from the given weights
    again = _train(tmp_path, steps=25, resume=False)
    assert again.losses == full.losses
    short = _train(tmp_path, steps=10, resume=False)  # fewer steps than the old run's 25
    assert short.checkpoint.name == "step-00000010.json"
    assert ckpt.read_config(tmp_path)["step"] == 10
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["step-00000010.json"]


def test_resume_mismatch_names_both(tmp_path):
    _train(tmp_path, steps=10)
    with pytest.raises(CheckpointError, match=r"different SDE: it has .*VPSDE.*asked for .*VESDE"):
        train(sdelab.VESDE(), _net(), DATA, steps=20, batch_size=16, out=tmp_path, progress=False)
    with pytest.raises(
        CheckpointError, match=r"different network: it has .*'hidden': 32.*'hidden': 48"
    ):
        train(SDE, _net(48), DATA, steps=20, batch_size=16, out=tmp_path, progress=False)
    with pytest.raises(
        CheckpointError, match=r"different parametrization: it has 'score'.*'noise'"
    ):
        train(
            SDE,
            _net(),
            DATA,
            steps=20,
            batch_size=16,
            out=tmp_path,
            progress=False,
            parametrization="noise",
        )


def test_score_follows_input_device_and_dtype(tmp_path):
    _train(tmp_path, steps=10)
    _, score = load_checkpoint(tmp_path, device="cpu")
    x = torch.randn(4, 2, dtype=torch.float64)
    s = score(x, torch.full((4,), 0.5, dtype=torch.float64))
    assert s.dtype == torch.float64 and s.device == x.device
    # log_likelihood accepts it (gradients flow to x, not to the frozen weights)
    res = sdelab.log_likelihood(sdelab.VPSDE(beta_max=15.0), score, x, rtol=1e-3, atol=1e-3)
    assert torch.isfinite(res.logp).all()
    assert not any(p.requires_grad for p in score.model.parameters())
