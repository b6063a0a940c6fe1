"""Shared statistics for the sampler tests: compare samples with the Gaussian-mixture oracle.

Every tolerance is ``Z`` standard errors of the estimate for the sample size ``n`` (standard
errors estimated from a large exact sample of the truth) plus a stated allowance.
"""

from __future__ import annotations

import torch

from sdelab import GaussianMixture

Z = 5.0  # standard errors allowed
N_REF = 65536  # exact draws used to estimate standard errors
N_PROJ = 64  # sliced-Wasserstein directions


def mixture_2d() -> GaussianMixture:
    """Three modes, anisotropic, unequal weights."""
    return GaussianMixture(
        [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        [[0.3, 0.6], [0.5, 0.2], [0.4, 0.4]],
        [0.5, 0.3, 0.2],
    )


def mixture_8d() -> GaussianMixture:
    """Three modes in d = 8 with per-dimension stds in [0.3, 0.8]."""
    g = torch.Generator().manual_seed(8)
    means = 1.5 * torch.randn(3, 8, generator=g)
    stds = 0.3 + 0.5 * torch.rand(3, 8, generator=g)
    return GaussianMixture(means, stds, [0.5, 0.3, 0.2])


def sliced_w2(a: torch.Tensor, b: torch.Tensor, proj: torch.Tensor) -> float:
    """Sliced 2-Wasserstein distance between equal-size samples (RMS over directions)."""
    pa, pb = (a @ proj).sort(0).values, (b @ proj).sort(0).values
    return float((pa - pb).pow(2).mean().sqrt())


class Oracle:
    """The truth ``mix`` (a `GaussianMixture`, here the data perturbed to ``eps``) with the
    standard errors of the sample mean, covariance and mode weights for ``n`` draws, and
    the sliced-Wasserstein noise floor (the same distance between two exact samples)."""

    def __init__(self, mix: GaussianMixture, n: int, seed: int = 123) -> None:
        self.mix, self.n = mix, n
        g = torch.Generator().manual_seed(seed)
        ref = mix.sample(N_REF, g)
        self.mean, self.cov = mix.mean(), mix.covariance()
        c = ref - self.mean
        prods = c[:, :, None] * c[:, None, :]
        self.se_mean = self.cov.diagonal().sqrt() / n**0.5
        self.se_cov = prods.std(0) / n**0.5
        self.se_w = mix.component_posterior(ref).std(0) / n**0.5
        self.scale = self.cov.diagonal().sqrt()  # per-dimension std of the truth
        d = mix.dim
        self.proj = torch.randn(d, N_PROJ, generator=g)
        self.proj /= self.proj.norm(dim=0)
        self.exact = mix.sample(n, g)
        floors = [sliced_w2(mix.sample(n, g), mix.sample(n, g), self.proj) for _ in range(3)]
        self.floor = sum(floors) / len(floors)

    def errors(self, x: torch.Tensor, allowance: float) -> dict[str, tuple[float, float]]:
        """``{metric: (error, tolerance)}``; ``allowance`` is a relative bias allowance
        (in units of the truth's std for means and covariances, absolute for weights)."""
        x = x.to(torch.float64) if x.dtype == torch.float64 else x
        sd = self.scale
        err_mean = (x.mean(0) - self.mean).abs() / (Z * self.se_mean + allowance * sd)
        err_cov = (torch.cov(x.T) - self.cov).abs() / (
            Z * self.se_cov + allowance * torch.outer(sd, sd)
        )
        w = self.mix.component_posterior(x).mean(0)
        err_w = (w - self.mix.weights).abs() / (Z * self.se_w + allowance)
        sw = sliced_w2(x, self.exact, self.proj)
        sw_tol = 3.0 * self.floor + allowance * float(sd.pow(2).mean().sqrt())
        return {
            "mean": (float(err_mean.max()), 1.0),
            "cov": (float(err_cov.max()), 1.0),
            "weights": (float(err_w.max()), 1.0),
            "sliced_w2": (sw, sw_tol),
        }

    def worst(self, x: torch.Tensor, allowance: float) -> float:
        """The largest error/tolerance ratio over all metrics (> 1 means a mismatch)."""
        return max(e / t for e, t in self.errors(x, allowance).values())


class CallCounter:
    """The test's own count of score calls (independent of sdelab's CountingScore)."""

    def __init__(self, score) -> None:
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)
