"""sdelab.data.load: the generated sets have their geometry, the mixtures are the benchmark's,
the digits have a fixed split and 17 levels, .npy files are validated."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from sdelab.data import DATASETS, DIGITS_SPLIT, SPLITS, Dataset, load
from sdelab.experiments.config.problems import builtin_mixture


@pytest.mark.parametrize("name", ["moons", "swissroll", "checkerboard", "gmm2d", "gmm16"])
def test_generated_sets_are_seeded_and_splits_independent(name):
    a = load(name, n=500)
    assert isinstance(a, Dataset) and isinstance(a, torch.utils.data.Dataset)
    assert a.data.shape == (500, 16 if name == "gmm16" else 2) and a.data.dtype == torch.float32
    assert len(a) == 500 and torch.equal(a[3], a.data[3]) and a.levels is None
    assert torch.equal(load(name, n=500).data, a.data)  # reproducible
    assert not torch.equal(load(name, n=500, seed=1).data, a.data)
    assert not torch.equal(load(name, n=500, split="test").data, a.data)
    b = load(name, n=500, dtype=torch.float64)
    assert b.data.dtype == torch.float64
    torch.testing.assert_close(b.data.float(), a.data)
    assert len(load(name)) == 10_000
    batch = next(iter(torch.utils.data.DataLoader(a, batch_size=7)))
    assert batch.shape == (7, *a.sample_shape)


def test_moons_lie_on_two_half_circles():
    x = load("moons", n=20_000).data.double() + torch.tensor([0.5, 0.25], dtype=torch.float64)
    d_upper = (x.norm(dim=1) - 1).abs()
    d_lower = ((x - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1).abs()
    upper = d_upper < d_lower
    # noise N(0, 0.1^2 I): the radial distance to the nearest circle has mean <= 0.1 sqrt(2/pi)
    assert torch.minimum(d_upper, d_lower).mean() < 0.1 * math.sqrt(2 / math.pi)
    frac, n = upper.double().mean(), x.shape[0]
    assert abs(frac - 0.5) < 5 * math.sqrt(0.25 / n)
    assert x[upper, 1].mean() > 0.5 > x[~upper, 1].mean()  # the upper one above, the lower below


def test_swissroll_radius_follows_its_angle():
    x = load("swissroll", n=20_000).data.double() * 5.0
    r = x.norm(dim=1)
    assert (r > 1.5 * math.pi - 2.0).all() and (r < 4.5 * math.pi + 2.0).all()
    # t uniform on [1.5 pi, 4.5 pi]: mean radius 3 pi, within 5 standard errors
    se = (3 * math.pi / math.sqrt(3)) / math.sqrt(r.numel())
    assert abs(r.mean() - 3 * math.pi) < 5 * se + 0.01


def test_checkerboard_is_uniform_on_the_dark_squares():
    ds = load("checkerboard", n=40_000, dtype=torch.float64)
    x = ds.data
    lo, hi = ds.value_range
    assert ((x >= lo) & (x <= hi)).all()
    assert ((x.floor().sum(1) % 2) == 0).all()  # only dark squares
    cells = (x.floor() + 2).long()
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).double()
    dark = counts[counts > 0]
    assert dark.numel() == 8
    p = 1 / 8
    assert ((dark / x.shape[0] - p).abs() < 5 * math.sqrt(p * (1 - p) / x.shape[0])).all()


@pytest.mark.parametrize("name", ["gmm2d", "gmm16"])
def test_mixtures_are_the_benchmarks(name):
    ds = load(name, n=20_000, dtype=torch.float64)
    ref = builtin_mixture(name)
    torch.testing.assert_close(ds.mixture.means, ref.means.double())
    torch.testing.assert_close(ds.mixture.weights, ref.weights.double())
    se = ds.mixture.covariance().diagonal().sqrt() / math.sqrt(len(ds))
    assert ((ds.data.mean(0) - ds.mixture.mean()).abs() < 5 * se).all()


def test_digits_fixed_split_levels_and_dequantisation():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    full = torch.from_numpy(sklearn_datasets.load_digits().images).double()
    parts = {s: load("digits", split=s, dtype=torch.float64) for s in SPLITS}
    assert {s: len(d) for s, d in parts.items()} == DIGITS_SPLIT
    assert sum(DIGITS_SPLIT.values()) == 1797
    for d in parts.values():
        assert d.sample_shape == (1, 8, 8) == d.image_shape and d.levels == 17
        assert d.value_range == (-1.0, 1.0) and d.labels.shape == (len(d),)
    # the splits partition the 1797 images: compare sorted rows of the level values
    k = torch.cat([(d.data + 1) / d.bin_width - 0.5 for d in parts.values()])
    torch.testing.assert_close(k, k.round(), rtol=0, atol=1e-9)
    k = k.round()
    assert k.min() == 0 and k.max() == 16
    key = lambda a: sorted(map(tuple, a.reshape(a.shape[0], -1).round().long().tolist()))  # noqa: E731
    assert key(k) == key(full)
    # fixed whatever the seed; n subsamples the split
    assert torch.equal(load("digits", seed=5).data, load("digits").data)
    sub = load("digits", split="test", n=50, seed=2)
    assert len(sub) == 50 and len(sub.labels) == 50
    # dequantisation stays inside each bin
    train = parts["train"]
    u = train.dequantize(generator=torch.Generator().manual_seed(0))
    assert ((u - train.data).abs() <= train.bin_width / 2).all()
    assert (u >= -1).all() and (u < 1).all()


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "sdelab\[data\]"'):
        load("digits")


def test_importing_sdelab_does_not_import_sklearn():
    code = "import sys, sdelab, sdelab.data, sdelab.nets, sdelab.training; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_npy_files(tmp_path):
    x = np.random.default_rng(0).standard_normal((20, 3))
    np.save(tmp_path / "x.npy", x)
    ds = load(str(tmp_path / "x.npy"), dtype=torch.float64)
    assert torch.equal(ds.data, torch.from_numpy(x)) and ds.image_shape is None
    assert len(load(tmp_path / "x.npy", n=5)) == 5  # a Path works too
    np.save(tmp_path / "v.npy", np.arange(4))
    assert load(str(tmp_path / "v.npy")).data.shape == (4, 1)
    np.save(tmp_path / "img.npy", np.zeros((3, 1, 4, 4), dtype=np.float32))
    assert load(str(tmp_path / "img.npy")).image_shape == (1, 4, 4)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_npy_with_non_finite_rows_names_the_first(tmp_path, bad):
    x = np.zeros((6, 2))
    x[3, 1] = x[5, 0] = bad
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(
        ValueError, match=r"the array in .*x.npy' must be finite, but 2 of its 6 rows .*row 3"
    ):
        load(str(tmp_path / "x.npy"))


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((0, 2)), r"shape \(n, \.\.\.\) with n >= 1.*got shape \(0, 2\)"),
        (np.array(3.0), r"got shape \(\)"),
        (np.array(["a", "b"]), "must hold a numeric array, got dtype <U1"),
    ],
)
def test_bad_npy_files(tmp_path, array, match):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(ValueError, match=match):
        load(str(tmp_path / "x.npy"))


def test_unreadable_npy(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="cannot read a .npy array"):
        load(str(tmp_path / "x.npy"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"name": "mnist"},
            "name must be one of 'moons', .* or a path ending in .npy, got 'mnist'",
        ),
        (
            {"name": "moons", "split": "val"},
            "split must be one of 'train', 'validation', 'test', got 'val'",
        ),
        ({"name": "moons", "n": 0}, "n must be an integer >= 1, got 0"),
        (
            {"name": "digits", "split": "test", "n": 301},
            "n must be at most the 300 samples of the digits' test split, got 301",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load(**kwargs)


def test_every_listed_name_loads():
    pytest.importorskip("sklearn")
    for name in DATASETS:
        assert len(load(name, n=10)) == 10
