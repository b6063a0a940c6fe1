"""`sdelab.train`: reproducibility, learning, bad input and the NaN stop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sdelab
from sdelab.data import load
from sdelab.nets import MLPScore
from sdelab.training import TrainResult, load_checkpoint, train


def _net(seed: int = 0, dim: int = 2, hidden: int = 32) -> MLPScore:
    torch.manual_seed(seed)
    return MLPScore(dim, hidden=hidden, depth=2, embed_dim=16)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [v.clone() for v in model.state_dict().values()]


SDE = sdelab.VPSDE()
DATA = load("gmm2d", n=512)


def test_same_seed_same_weights_bit_for_bit():
    a = train(SDE, _net(), DATA, steps=20, batch_size=32, seed=3, progress=False)
    b = train(SDE, _net(), DATA, steps=20, batch_size=32, seed=3, progress=False)
    c = train(SDE, _net(), DATA, steps=20, batch_size=32, seed=4, progress=False)
    assert isinstance(a, TrainResult) and a.steps == 20 and a.checkpoint is None
    assert all(torch.equal(p, q) for p, q in zip(_weights(a.model), _weights(b.model), strict=True))
    assert all(
        torch.equal(p, q) for p, q in zip(_weights(a.ema_model), _weights(b.ema_model), strict=True)
    )
    assert a.losses == b.losses and len(a.losses) == 20
    # another seed draws other batches: other weights
    assert not all(
        torch.equal(p, q) for p, q in zip(_weights(a.model), _weights(c.model), strict=True)
    )


def test_global_rng_untouched():
    """Batches, times and noise come from the run's own generator: torch's global one is
    left where it was."""
    net = _net()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(SDE, net, DATA, steps=3, batch_size=16, progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_loss_decreases_on_gmm2d():
    """The mean loss of the last 50 of 300 steps is below that of the first 20 by more than
    their combined noise (per-step losses vary; 5 standard errors)."""
    res = train(
        SDE, _net(hidden=64), DATA, steps=300, batch_size=128, seed=0, progress=False,
        parametrization="noise",
    )  # fmt: skip
    first, last = torch.tensor(res.losses[:20]), torch.tensor(res.losses[-50:])
    se = math.sqrt(first.var() / first.numel() + last.var() / last.numel())
    assert first.mean() - last.mean() > 5 * se, (first.mean(), last.mean(), se)


def test_ema_follows_the_recursion():
    """With ema = 0 the EMA model is the last iterate; with ema = 0.5 and lr tiny it stays
    between the initial and the final weights."""
    r0 = train(SDE, _net(), DATA, steps=5, batch_size=16, ema=0.0, progress=False)
    assert all(
        torch.equal(p, q) for p, q in zip(_weights(r0.model), _weights(r0.ema_model), strict=True)
    )
    init = _weights(_net())
    r1 = train(SDE, _net(), DATA, steps=1, batch_size=16, ema=0.9, warmup=0, progress=False)
    for p0, p1, e in zip(init, _weights(r1.model), _weights(r1.ema_model), strict=True):
        torch.testing.assert_close(e, 0.9 * p0 + 0.1 * p1, rtol=1e-5, atol=1e-7)


def test_score_is_the_ema_network_through_to_score():
    res = train(SDE, _net(), DATA, steps=3, batch_size=16, parametrization="noise", progress=False)
    x = torch.randn(7, 2)
    t = torch.full((7,), 0.4)
    expected = -res.ema_model(x, t) / SDE.marginal_coeffs(t)[1][:, None]
    torch.testing.assert_close(res.score(x, t), expected)
    # a float64 input is served by the float32 network and comes back float64
    assert res.score(x.double(), t.double()).dtype == torch.float64


def test_data_forms():
    """A Dataset, its name and its tensor train the same way."""
    ds = load("moons", n=200)
    a = train(SDE, _net(), ds, steps=4, batch_size=16, progress=False)
    b = train(SDE, _net(), ds.data, steps=4, batch_size=16, progress=False)
    assert a.losses == b.losses
    c = train(SDE, _net(), "moons", steps=2, batch_size=16, progress=False)
    assert len(c.losses) == 2


class _WrongShape(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x, t):
        return self.lin(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, r"steps must be an integer >= 1, got 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"batch_size": 513}, r"batch_size must be at most the 512 samples .* got 513"),
        ({"lr": 0.0}, r"lr must be a finite number > 0, got 0.0"),
        ({"lr": -1e-3}, r"lr must be .* got -0.001"),
        ({"ema": 1.0}, r"ema must lie in \[0, 1\), got 1.0"),
        ({"ema": -0.1}, r"ema must lie in \[0, 1\), got -0.1"),
        ({"weighting": "l2"}, r"weighting must be one of .*got 'l2'"),
        ({"parametrization": "eps"}, r"parametrization must be one of .*got 'eps'"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"steps": 2, "batch_size": 8, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(SDE, _net(), DATA, **args)


def test_bad_data():
    x = torch.randn(50, 2)
    x[17, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data must be finite.*row 17"):
        train(SDE, _net(), x, steps=2, batch_size=8, progress=False)
    x[17, 1] = float("inf")
    with pytest.raises(ValueError, match=r"row 17"):
        train(SDE, _net(), x, steps=2, batch_size=8, progress=False)
    with pytest.raises(ValueError, match=r"data must hold at least one sample"):
        train(SDE, _net(), torch.empty(0, 2), steps=2, batch_size=1, progress=False)
    with pytest.raises(ValueError, match=r"name must be one of"):
        train(SDE, _net(), "no-such-set", steps=2, progress=False)


def test_bad_model_output_shape(tmp_path):
    with pytest.raises(
        ValueError, match=r"model must return a tensor shaped like its input .*\(2, 3\)"
    ):
        train(SDE, _WrongShape(), DATA, steps=2, batch_size=8, progress=False, out=tmp_path)
    assert not list(tmp_path.iterdir())  # refused before any checkpoint


class _NaNAfter(MLPScore):
    """An MLPScore whose output turns NaN after ``k`` forward calls (its checkpoints load as a
    plain MLPScore)."""

    def __init__(self, k: int) -> None:
        torch.manual_seed(0)
        super().__init__(2, hidden=32, depth=2, embed_dim=16)
        self.k = k
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        out = super().forward(x, t)
        return out * float("nan") if self.calls > self.k else out

    def config(self):
        return {**super().config(), "class": "MLPScore"}


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    # forward call 1 is the shape probe; steps 1..29 are finite, step 30 is NaN
    model = _NaNAfter(30)
    with pytest.raises(FloatingPointError, match=r"became nan at step 30.*step-00000020\.json"):
        train(
            SDE, model, DATA, steps=100, batch_size=8, out=tmp_path, checkpoint_every=10,
            progress=False,
        )  # fmt: skip
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "step-00000010.json", "step-00000010.safetensors",
        "step-00000020.json", "step-00000020.safetensors",
    ]  # fmt: skip
    _, score = load_checkpoint(tmp_path)
    x = torch.randn(4, 2)
    assert torch.isfinite(score(x, 0.5)).all()


def test_no_host_read_per_step():
    """The loop reads the device only once per chunk of 50 losses (plus checks at the start):
    110 steps read it at most a few more times than 10 steps, not 100 more."""
    from test_host_sync import count_host_reads

    counts = []
    for steps in (10, 110):
        net = _net()
        with count_host_reads() as stats:
            train(SDE, net, DATA, steps=steps, batch_size=16, progress=False)
        counts.append(stats["reads"])
    assert counts[1] - counts[0] <= 3 * 2, counts


def test_progress_bar_shows_the_running_loss(capsys):
    res = train(SDE, _net(), DATA, steps=60, batch_size=16, progress=True)
    err = capsys.readouterr().err
    assert "60/60" in err and "loss=" in err
    assert len(res.losses) == 60
