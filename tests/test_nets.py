"""sdelab.nets: shapes, dtypes, time dependence, config round trips, deterministic init."""

import json
import re
from pathlib import Path

import pytest
import torch

from sdelab import nets
from sdelab.nets import MLPScore, UNet

CASES = [
    (lambda: MLPScore(2, hidden=32, depth=2), (5, 2)),
    (lambda: MLPScore(16, hidden=32), (5, 16)),
    (lambda: MLPScore(64, hidden=32), (5, 1, 8, 8)),  # flattened images
    (lambda: UNet(base=8), (3, 1, 8, 8)),
    (lambda: UNet(base=8), (3, 1, 28, 28)),
    (lambda: UNet(channels=2, base=8, mults=(1, 2)), (3, 2, 13, 9)),  # padded and cropped
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("make", "shape"), CASES)
def test_shape_dtype_and_time_dependence(make, shape, dtype):
    torch.manual_seed(0)
    net = make().to(dtype)
    x = torch.randn(shape, dtype=dtype)
    t = torch.rand(shape[0], dtype=dtype)
    out = net(x, t)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    # the output changes with t (sample by sample) and with x
    assert (net(x, t + 0.3) - out).reshape(shape[0], -1).abs().amax(-1).min() > 1e-4
    assert (net(x + 0.5, t) - out).abs().max() > 1e-4
    # a Python float or a 0-d tensor t means that time for the whole batch
    torch.testing.assert_close(net(x, 0.25), net(x, torch.full((shape[0],), 0.25, dtype=dtype)))
    torch.testing.assert_close(net(x, torch.tensor(0.25, dtype=dtype)), net(x, 0.25))


@pytest.mark.parametrize(("make", "shape"), CASES)
def test_config_round_trip_gives_identical_outputs(make, shape):
    torch.manual_seed(1)
    net = make()
    config = json.loads(json.dumps(net.config()))  # JSON-serialisable
    torch.manual_seed(2)  # a different init: the weights (and Fourier buffer) must come along
    clone = nets.from_config(config)
    assert type(clone) is type(net) and clone.config() == net.config()
    clone.load_state_dict(net.state_dict())
    assert "embed.W" in net.state_dict()  # the Fourier frequencies travel with the weights
    x, t = torch.randn(shape), torch.rand(shape[0])
    assert torch.equal(clone(x, t), net(x, t))
    assert type(net).from_config(config).config() == config


@pytest.mark.parametrize(("make", "shape"), CASES[:1] + CASES[3:4])
def test_deterministic_init_under_manual_seed(make, shape):
    torch.manual_seed(3)
    a = make()
    torch.manual_seed(3)
    b = make()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    torch.manual_seed(4)
    c = make()
    assert not torch.equal(a.embed.W, c.embed.W)


def test_parameter_counts_match_the_docstrings():
    # the numbers stated in the docstrings (and the docs)
    assert MLPScore(2).parameter_count == 149_250
    assert MLPScore(16).parameter_count == 156_432
    assert UNet().parameter_count == 789_217
    # every row of the table on the docs' Training API page
    page = Path(__file__).resolve().parents[1] / "docs" / "api" / "training.md"
    rows = re.findall(
        r"^\| `((?:MLPScore|UNet)\(.*?\))` \|.*\| ([\d,]+) \|$", page.read_text(), re.M
    )
    assert len(rows) >= 5, rows
    for expr, count in rows:
        net = eval(expr, {"MLPScore": MLPScore, "UNet": UNet})  # the docs page is ours
        assert net.parameter_count == int(count.replace(",", "")), expr
    # MLPScore: (d + e) h + h + (depth - 1)(h^2 + h) + h d + d
    d, h, e, depth = 5, 24, 10, 4
    expected = (d + e) * h + h + (depth - 1) * (h * h + h) + h * d + d
    assert MLPScore(d, hidden=h, depth=depth, embed_dim=e).parameter_count == expected


def test_gradients_reach_every_parameter():
    net = UNet(base=8)
    net(torch.randn(2, 1, 8, 8), torch.rand(2)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MLPScore(3)(torch.zeros(4, 2), torch.zeros(4)), r"x must have shape \(B, 3\)"),
        (
            lambda: MLPScore(2)(torch.zeros(4, 2), torch.zeros(3)),
            r"t must have shape \(B,\) = \(4,\)",
        ),
        (lambda: UNet()(torch.zeros(4, 8, 8), torch.zeros(4)), r"x must have shape \(B, 1, H, W\)"),
        (lambda: MLPScore(2, embed_dim=7), "embed_dim must be even, got 7"),
        (lambda: MLPScore(0), "dim must be an integer >= 1, got 0"),
        (lambda: UNet(mults=()), r"mults must be a non-empty sequence of ints >= 1, got \(\)"),
        (lambda: MLPScore(2, fourier_scale=0.0), "fourier_scale must be a finite number > 0"),
        (
            lambda: nets.from_config({"class": "ResNet"}),
            "config\\['class'\\] must be one of 'MLPScore', 'UNet', got 'ResNet'",
        ),
        (
            lambda: UNet.from_config({"class": "MLPScore"}),
            "config\\['class'\\] must be 'UNet', got 'MLPScore'",
        ),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
