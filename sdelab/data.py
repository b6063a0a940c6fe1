r"""Data sets that ship offline: 2-D toy sets, the built-in Gaussian mixtures, scikit-learn's
8x8 digits and ``.npy`` files, all through `load`.

Nothing is downloaded. The toy sets are generated here from a fixed seed; the mixtures are
the compare benchmark's (`sdelab.experiments.config.problems`), so their exact score is
known (`Dataset.mixture`); the digits come inside scikit-learn, an optional dependency
(``pip install "sdelab[data]"``), imported only when they are asked for.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ._checks import _short, check_dtype, check_int, check_rows_finite
from .analytic import GaussianMixture

__all__ = ["DATASETS", "SPLITS", "Dataset", "load"]

#: the built-in data sets (name -> description); any path ending in ``.npy`` loads too
DATASETS: dict[str, str] = {
    "moons": "2-D, two interleaving half circles (noise 0.1), centred",
    "swissroll": "2-D, a spiral t (cos t, sin t) / 5, t in [1.5 pi, 4.5 pi], noise 0.05",
    "checkerboard": "2-D, uniform on the 8 dark squares of a 4x4 board on [-2, 2]^2",
    "gmm2d": "2-D, the compare benchmark's mixture: 6 anisotropic components on a ring",
    "gmm16": "16-D, the compare benchmark's mixture: 8 anisotropic components",
    "digits": "scikit-learn's 8x8 digits: 1797 images of 17 grey levels, in [-1, 1]",
}
SPLITS = ("train", "validation", "test")

#: generated sets: points per split when ``n`` is not given
_DEFAULT_N = 10_000
#: the digits' fixed split (of a permutation seeded with 0): train, validation, test sizes
DIGITS_SPLIT = {"train": 1297, "validation": 200, "test": 300}
_DIGITS_LEVELS = 17


@dataclass(eq=False)
class Dataset(torch.utils.data.Dataset):
    r"""A data set held in memory as one tensor ``data`` of shape (n, \*sample_shape).

    It is a ``torch.utils.data.Dataset`` (``ds[i]`` is the tensor ``data[i]``, so a
    ``DataLoader`` yields batches of shape (B, \*sample_shape)) that also says what the values
    are:

    Attributes:
        data: the samples, shape (n, \*sample_shape).
        name: the data set's name (or the file's path).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        levels: the number of grey levels of quantised data (17 for the digits), ``None`` for
            continuous data.
        value_range: ``(lo, hi)``, the interval the values lie in (for quantised data, the
            interval the ``levels`` bins tile), or ``None`` when unbounded.
        image_shape: ``(C, H, W)`` for images, else ``None``.
        labels: class labels, shape (n,), where the data set has them (the digits), else
            ``None``.
        mixture: the `GaussianMixture` the samples were drawn from ("gmm2d", "gmm16"), whose
            exact score is known; else ``None``.

    Quantised data hold the bin centres: level $k \in \{0, \dots, L-1\}$ is stored as
    $x = lo + (k + \tfrac12)\Delta$, $\Delta = (hi - lo)/L$ (`bin_width`); `dequantize` adds
    uniform noise within the bin, $x + (u - \tfrac12)\Delta$, which is the uniform
    dequantisation $lo + (k + u)\Delta$ of Theis et al. 2016 (see `sdelab.dequantize`). Its
    log-likelihood in bits per dimension is $-(\log p(x) + D\log\Delta)/(D\ln 2)$.
    """

    data: Tensor
    name: str
    split: str = "train"
    levels: int | None = None
    value_range: tuple[float, float] | None = None
    image_shape: tuple[int, ...] | None = None
    labels: Tensor | None = None
    mixture: GaussianMixture | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index):
        return self.data[index]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(self.data.shape[1:])

    @property
    def dim(self) -> int:
        """$D$, the entries of one sample."""
        return math.prod(self.sample_shape)

    @property
    def bin_width(self) -> float | None:
        r"""$\Delta = (hi - lo)/L$ for quantised data, else ``None``."""
        if self.levels is None or self.value_range is None:
            return None
        lo, hi = self.value_range
        return (hi - lo) / self.levels

    def dequantize(self, x: Tensor | None = None, *, generator: torch.Generator | None = None):
        r"""$x + (u - \tfrac12)\Delta$, $u \sim \mathcal U[0, 1)$: uniform dequantisation of
        ``x`` (default: all of `data`), bin centres of this data set. Raises ``ValueError`` for
        continuous data."""
        width = self.bin_width
        if width is None:
            raise ValueError(f"dequantize needs quantised data, but {self.name!r} is continuous")
        x = self.data if x is None else x
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + (u - 0.5) * width

    def __repr__(self) -> str:
        extra = f", levels={self.levels}" if self.levels is not None else ""
        return (
            f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, "
            f"sample_shape={self.sample_shape}, dtype={self.data.dtype}{extra})"
        )


# --- the toy generators (float64 numpy, then cast) ----------------------------------------
def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Half the points on the upper unit half circle, half on the lower one shifted by
    (1, 0.5), noise N(0, 0.1^2), centred by the fixed shift (0.5, 0.25)."""
    upper = rng.random(n) < 0.5
    theta = math.pi * rng.random(n)
    x = np.where(upper, np.cos(theta), 1.0 - np.cos(theta))
    y = np.where(upper, np.sin(theta), 0.5 - np.sin(theta))
    pts = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return pts - np.array([0.5, 0.25])


def _swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    r"""$t \sim \mathcal U(1.5\pi, 4.5\pi)$, $(t\cos t, t\sin t)/5$, noise N(0, 0.05^2)."""
    t = 1.5 * math.pi * (1.0 + 2.0 * rng.random(n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0
    return pts + 0.05 * rng.standard_normal((n, 2))


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    r"""$x_1 \sim \mathcal U(-2, 2)$; $x_2$ uniform on the two unit intervals of $[-2, 2]$
    whose squares with $x_1$'s column are dark ($\lfloor x_1\rfloor + \lfloor x_2\rfloor$
    even)."""
    x1 = 4.0 * rng.random(n) - 2.0
    x2 = rng.random(n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1)


_GENERATORS = {"moons": _moons, "swissroll": _swissroll, "checkerboard": _checkerboard}
_RANGES = {"checkerboard": (-2.0, 2.0)}


def _split_seed(seed: int, split: str) -> int:
    """A distinct seed per (seed, split): the three splits are independent draws."""
    return 3 * seed + SPLITS.index(split)


# --- load ---------------------------------------------------------------------------------
def load(
    name: str,
    *,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    r"""Load a data set that ships with sdelab (or a ``.npy`` file) as a `Dataset`.

    * ``"moons"``, ``"swissroll"``, ``"checkerboard"``: 2-D points generated here (numpy's
      PCG64 seeded per ``(seed, split)``, so each split is an independent draw); ``n``
      defaults to 10,000.
    * ``"gmm2d"``, ``"gmm16"``: samples of the compare benchmark's mixtures (torch generator
      seeded per ``(seed, split)``), with `Dataset.mixture` set; ``n`` defaults to 10,000.
    * ``"digits"``: scikit-learn's 8x8 digits (``load_digits``, 1797 images, 17 grey levels
      0..16), shape (1, 8, 8), the levels tiling $[-1, 1)$ (bin centres, see `Dataset`),
      with ``labels``. The split is FIXED (a permutation seeded with 0, whatever ``seed``):
      1297 train, 200 validation, 300 test images. ``n`` takes the first ``n`` of the split
      in an order seeded by ``seed``. Needs scikit-learn (``pip install "sdelab[data]"``).
    * a path ending in ``.npy``: a numeric array of shape (n, ...) (1-D: n scalars, shape
      (n, 1)), at least one row, all finite; the file is one split and is returned whole for
      any ``split``; ``n`` subsamples as for the digits. Arrays of shape (n, C, H, W) are
      images (``image_shape`` set).

    Args:
        name: one of `DATASETS` or a path ending in ``.npy``.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        n: number of samples (``None``: the default or all).
        seed: the seed of the generated sets and of subsampling.
        dtype: a floating dtype for ``data``.

    Raises:
        ValueError: an unknown name or split, ``n`` < 1 or larger than the data, a file that
            is empty, not numeric or holds NaN/inf (naming the first bad row).
        ImportError: ``"digits"`` without scikit-learn.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    if n is not None:
        n = check_int("n", n, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if check_dtype("dtype", dtype) is None:
        raise TypeError("dtype must be a floating torch.dtype, got None")
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"name must be a data set name or a .npy path, got {_short(name)}")
    if name.endswith(".npy"):
        return _from_file(name, split, n, seed, dtype)
    if name in _GENERATORS:
        rng = np.random.default_rng(_split_seed(seed, split))
        pts = _GENERATORS[name](_DEFAULT_N if n is None else n, rng)
        return Dataset(torch.from_numpy(pts).to(dtype), name, split, value_range=_RANGES.get(name))
    if name in ("gmm2d", "gmm16"):
        from .experiments.config.problems import builtin_mixture

        mix = builtin_mixture(name).to(dtype=torch.float64)
        g = torch.Generator().manual_seed(_split_seed(seed, split))
        x = mix.sample(_DEFAULT_N if n is None else n, generator=g)
        return Dataset(x.to(dtype), name, split, mixture=mix.to(dtype=dtype))
    if name == "digits":
        return _digits(split, n, seed, dtype)
    raise ValueError(
        f"name must be one of {', '.join(map(repr, DATASETS))} or a path ending in .npy, got "
        f"{name!r}"
    )


def _take(x: Tensor, n: int | None, seed: int, what: str, *rest: Tensor | None):
    """The first ``n`` rows of ``x`` (and of each tensor in ``rest``) in an order seeded by
    ``seed``; all rows, in order, when ``n`` is None."""
    if n is None:
        return (x, *rest)
    if n > x.shape[0]:
        raise ValueError(f"n must be at most the {x.shape[0]} samples of {what}, got {n}")
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return (x[idx], *(r[idx] if r is not None else None for r in rest))


def _digits(split: str, n: int | None, seed: int, dtype: torch.dtype) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            'load("digits") needs scikit-learn, which ships the 8x8 digits: '
            'pip install "sdelab[data]" (or pip install scikit-learn)'
        ) from err
    bunch = load_digits()
    levels = torch.from_numpy(bunch.images.astype(np.int64))  # (1797, 8, 8), 0..16
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.randperm(levels.shape[0], generator=torch.Generator().manual_seed(0))
    start = 0
    for s in SPLITS[: SPLITS.index(split)]:
        start += DIGITS_SPLIT[s]
    idx = perm[start : start + DIGITS_SPLIT[split]]
    k, labels = levels[idx], labels[idx]
    k, labels = _take(k, n, seed, f"the digits' {split} split", labels)
    width = 2.0 / _DIGITS_LEVELS
    x = (-1.0 + (k.to(torch.float64) + 0.5) * width).to(dtype)[:, None]
    return Dataset(
        x, "digits", split, levels=_DIGITS_LEVELS, value_range=(-1.0, 1.0),
        image_shape=(1, 8, 8), labels=labels,
    )  # fmt: skip


def _from_file(path: str, split: str, n: int | None, seed: int, dtype: torch.dtype) -> Dataset:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"name {path!r}: cannot read a .npy array ({err})") from None
    if not isinstance(arr, np.ndarray) or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{path!r} must hold a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] < 1 or arr.size == 0:
        raise ValueError(
            f"{path!r} must hold an array of shape (n, ...) with n >= 1 and non-empty rows, "
            f"got shape {arr.shape}"
        )
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float64)
    if x.ndim == 1:
        x = x[:, None]
    check_rows_finite(f"the array in {path!r}", x)
    (x,) = _take(x, n, seed, repr(path))
    image_shape = tuple(x.shape[1:]) if x.ndim == 4 else None
    return Dataset(x.to(dtype), path, split, image_shape=image_shape)
