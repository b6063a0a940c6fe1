r"""Distances between a generated sample and the truth, each with its noise floor.

A sample of $n$ points never matches its distribution exactly: even a perfect sampler shows a
distance of order $n^{-1/2}$ to a finite true sample. So every metric here is reported beside
its **noise floor**: the same metric computed for a second, independent true sample of the
same size. A solver whose error sits at the floor is indistinguishable from exact sampling at
that sample size; only the part above the floor is the solver's error.

All functions are pure torch and follow the device and dtype of their inputs. Samples have
shape (n, ...) and are flattened to (n, d).

| key | metric | needs |
| --- | --- | --- |
| ``sw2`` | sliced Wasserstein-2 distance (`sliced_wasserstein2`) | a true sample |
| ``energy`` | energy distance (`energy_distance`) | a true sample |
| ``mean_err`` | $\lVert \hat\mu - \mu\rVert_2$ (`mean_error`) | true mean (exact or sample) |
| ``cov_err`` | $\lVert \hat\Sigma - \Sigma\rVert_F$ (`covariance_error`) | true covariance |
| ``mode_tv`` | total variation of mode weights (`mode_weight_error`) | the mixture |
| ``logp_gap`` | mean $\log p_0$ of the sample minus that of the truth (`mean_log_density`) | the mixture |
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_batched, check_int
from ..analytic import GaussianMixture

__all__ = [
    "METRICS",
    "Reference",
    "covariance_error",
    "energy_distance",
    "mean_error",
    "mean_log_density",
    "mode_weight_error",
    "sliced_wasserstein2",
]

#: metric keys in report order, with a short description
METRICS: dict[str, str] = {
    "sw2": "sliced Wasserstein-2 distance to the true sample",
    "energy": "energy distance to the true sample",
    "mean_err": "norm of the mean error",
    "cov_err": "Frobenius norm of the covariance error",
    "mode_tv": "total variation between mode weights and the sample's mean mode posterior",
    "logp_gap": "mean log p0 of the sample minus mean log p0 of the true sample",
}


def _flat(name: str, x: Tensor) -> Tensor:
    check_batched(name, x)
    return x.reshape(x.shape[0], -1)


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    xf, yf = _flat("x", x), _flat("y", y)
    if xf.shape[1] != yf.shape[1]:
        raise ValueError(
            f"x and y must have the same number of entries per sample, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    return xf, yf.to(device=xf.device, dtype=xf.dtype)


def projections(d: int, n_projections: int = 128, *, seed: int = 0, device=None, dtype=None):
    r"""``n_projections`` fixed random unit directions in $\mathbb R^d$, shape (d, P), drawn
    from a CPU generator seeded with ``seed`` (so every device sees the same directions)."""
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(d, n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    return theta.to(device=device, dtype=dtype)


def _w2_sq_sorted(a: Tensor, b: Tensor) -> Tensor:
    r"""$W_2^2$ between the 1-D empirical laws of the columns of sorted ``a`` (n, P) and ``b``
    (m, P): $\int_0^1 (F_a^{-1}(u) - F_b^{-1}(u))^2\,\mathrm du$, exact for $n \ne m$ too (the
    quantile functions are step functions with breaks at $i/n$ and $j/m$)."""
    n, m = a.shape[0], b.shape[0]
    if n == m:
        return (a - b).pow(2).mean(0)
    dev = a.device
    u = torch.cat(
        [torch.arange(1, n + 1, device=dev) / n, torch.arange(1, m + 1, device=dev) / m]
    ).to(torch.float64)
    u, _ = u.sort()
    w = torch.diff(u, prepend=u.new_zeros(1))
    mid = u - w / 2  # a level inside each piece where both quantile functions are constant
    ia = (mid * n).floor().long().clamp_(0, n - 1)
    ib = (mid * m).floor().long().clamp_(0, m - 1)
    return ((a[ia] - b[ib]).pow(2) * w.to(a.dtype)[:, None]).sum(0)


def sliced_wasserstein2(x: Tensor, y: Tensor, *, n_projections: int = 128, seed: int = 0) -> Tensor:
    r"""Sliced Wasserstein-2 distance between the empirical laws of ``x`` and ``y``,

    $$ \mathrm{SW}_2(x, y) = \Big(\frac1P \sum_{p=1}^P W_2^2\big(\theta_p^\top x,\
       \theta_p^\top y\big)\Big)^{1/2}, $$

    with $P$ fixed unit directions $\theta_p$ (`projections`, seeded by ``seed`` so repeated
    calls use the same slices) and the exact 1-D $W_2$ from sorted projections
    (Rabin et al. 2011; Bonneel et al. 2015). Shapes (n, ...) and (m, ...); returns a 0-d
    tensor, in the units of the data.
    """
    xf, yf = _pair(x, y)
    n_projections = check_int("n_projections", n_projections)
    theta = projections(xf.shape[1], n_projections, seed=seed, device=xf.device, dtype=xf.dtype)
    return _sw2_sorted(_sorted_projections(xf, theta), _sorted_projections(yf, theta))


def _sorted_projections(x: Tensor, theta: Tensor) -> Tensor:
    """The projections $\theta_p^\top x_i$, each column sorted, shape (n, P)."""
    return (x @ theta).sort(0).values


def _sw2_sorted(a: Tensor, b: Tensor) -> Tensor:
    """`sliced_wasserstein2` from the sorted projections of both samples."""
    return _w2_sq_sorted(a, b).mean().sqrt()


def _mean_pairwise_distance(x: Tensor, y: Tensor, chunk: int = 2048) -> Tensor:
    """$\\frac{1}{nm}\\sum_{i,j}\\lVert x_i - y_j\\rVert$, in row chunks to bound memory."""
    total = x.new_zeros(())
    for i in range(0, x.shape[0], chunk):
        total = total + torch.cdist(x[i : i + chunk], y).sum()
    return total / (x.shape[0] * y.shape[0])


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    r"""Energy distance between the empirical laws of ``x`` and ``y`` (Székely & Rizzo 2013),

    $$ \mathcal E(x, y) = 2\,\overline{\lVert x_i - y_j\rVert}
       - \overline{\lVert x_i - x_{i'}\rVert} - \overline{\lVert y_j - y_{j'}\rVert}, $$

    with plain averages over all pairs (the V-statistic, which is the energy distance of the
    two empirical measures, hence $\ge 0$; its noise floor is of order $1/n$). Returns a 0-d
    tensor, in the units of the data.
    """
    xf, yf = _pair(x, y)
    return _energy(xf, yf, _mean_pairwise_distance(yf, yf))


def _energy(x: Tensor, y: Tensor, eyy: Tensor) -> Tensor:
    """`energy_distance` of flat ``x`` and ``y`` given ``eyy``, the mean distance within ``y``."""
    exy = _mean_pairwise_distance(x, y)
    exx = _mean_pairwise_distance(x, x)
    return (2 * exy - exx - eyy).clamp_min(0.0)


def _cov(x: Tensor) -> Tensor:
    xc = x - x.mean(0)
    return xc.T @ xc / (x.shape[0] - 1)


def mean_error(x: Tensor, mean: Tensor) -> Tensor:
    r"""$\lVert \hat\mu(x) - \mu\rVert_2$ with $\hat\mu$ the sample mean; ``mean`` shape (d,)."""
    xf = _flat("x", x)
    return (xf.mean(0) - mean.to(xf)).norm()


def covariance_error(x: Tensor, covariance: Tensor) -> Tensor:
    r"""$\lVert \hat\Sigma(x) - \Sigma\rVert_F$ with $\hat\Sigma$ the unbiased sample
    covariance; ``covariance`` shape (d, d)."""
    xf = _flat("x", x)
    return (_cov(xf) - covariance.to(xf)).norm()


def mode_weight_error(x: Tensor, mixture: GaussianMixture) -> Tensor:
    r"""Total variation between the mixture weights $w$ and the sample's mean mode posterior,

    $$ \tfrac12 \sum_k \Big| w_k - \frac1n \sum_i p(k \mid x_i) \Big|, $$

    with $p(k \mid x)$ from `sdelab.GaussianMixture.component_posterior`. It is 0 in
    expectation for exact samples and grows when a sampler over- or under-fills modes.
    """
    r = mixture.component_posterior(x).mean(0)
    return 0.5 * (r - mixture.weights.to(r)).abs().sum()


def mean_log_density(x: Tensor, mixture: GaussianMixture) -> Tensor:
    r"""$\frac1n\sum_i \log p_0(x_i)$: the average true log-density of the sample.

    For exact samples it estimates $-H(p_0)$ (minus the entropy). Samples in low-density
    regions lower it; samples collapsed onto the modes raise it above the data's own value,
    so compare it with the true sample's value (``logp_gap``) rather than maximising it.
    """
    return mixture.log_prob(x).mean()


class Reference:
    r"""The truth a generated sample is scored against.

    Args:
        truth: a true sample, shape (n, ...), the reference of ``sw2``, ``energy`` and
            ``logp_gap``.
        mixture: the `sdelab.GaussianMixture` the truth came from, if known. With it the mean
            and covariance errors use the exact moments and the mixture-only metrics
            (``mode_tv``, ``logp_gap``) are computed; without it (a data file) the moments
            come from ``truth`` and those two are omitted.
        n_projections: slices of `sliced_wasserstein2`.
        seed: seed of the slices.

    The noise floor is ``reference.evaluate(truth2)`` for a second, independent true sample
    ``truth2`` of the generated sample's size: the same metrics, with no solver error.
    """

    def __init__(
        self,
        truth: Tensor,
        mixture: GaussianMixture | None = None,
        *,
        n_projections: int = 128,
        seed: int = 0,
    ) -> None:
        self.truth = _flat("truth", truth)
        self.mixture = mixture
        self.n_projections = check_int("n_projections", n_projections)
        self.seed = seed
        # what `evaluate` needs of the truth, computed once rather than per sample scored
        d = self.truth.shape[1]
        t = self.truth
        self._theta = projections(d, self.n_projections, seed=seed, device=t.device, dtype=t.dtype)
        self._truth_sorted = _sorted_projections(t, self._theta)
        self._truth_eyy = _mean_pairwise_distance(t, t)
        if mixture is not None:
            self.mean = mixture.mean().to(self.truth)
            self.covariance = mixture.covariance().to(self.truth)
            self.truth_logp = mean_log_density(self.truth, mixture)
        else:
            self.mean = self.truth.mean(0)
            self.covariance = _cov(self.truth)
            self.truth_logp = None

    @property
    def metric_names(self) -> list[str]:
        """The metrics `evaluate` returns, in report order."""
        names = ["sw2", "energy", "mean_err", "cov_err"]
        return [*names, "mode_tv", "logp_gap"] if self.mixture is not None else names

    def evaluate(self, x: Tensor) -> dict[str, float | None]:
        """All metrics of the sample ``x`` against this reference, as Python floats (one host
        transfer); a non-finite sample gives ``None`` for every metric."""
        xf = _flat("x", x).to(self.truth)
        if not bool(torch.isfinite(xf).all()):
            return dict.fromkeys(self.metric_names)
        vals = [
            _sw2_sorted(_sorted_projections(xf, self._theta), self._truth_sorted),
            _energy(xf, self.truth, self._truth_eyy),
            mean_error(xf, self.mean),
            covariance_error(xf, self.covariance),
        ]
        if self.mixture is not None:
            vals.append(mode_weight_error(xf, self.mixture))
            vals.append(mean_log_density(xf, self.mixture) - self.truth_logp)
        out = torch.stack(vals).double().tolist()
        return {
            k: (v if math.isfinite(v) else None)
            for k, v in zip(self.metric_names, out, strict=True)
        }
