"""Benchmark: probability-flow log-likelihoods, scipy vs torch backend, exact vs Hutchinson.

    PYTHONPATH=. python benchmarks/bench_likelihood.py [--batch 512] [--dims 2 64] [--repeats 3]

Part 1 (B = 512, d = 2 and 64, rtol = atol = 1e-5, VP SDE, the exact score and prior of a
4-component anisotropic Gaussian mixture, float32 model): for both backends and both
divergences, NFE, wall time (median over repeats, backends run alternately in one process),
the torch/scipy time ratio, the largest difference between the backends' logp and the largest
error against the closed form, and the share of time spent in the score's forward passes and
in the whole right-hand side (forward + divergence backward passes); the rest is the
integrator (and, for scipy, the host round trip).

With ``--error-norm batch`` both backends use scipy's RMS over the whole batch and take the
same steps (the default, ``sample``, holds every sample to the tolerance; scipy then gets its
tolerances divided by sqrt(B) and takes more steps).

Part 2 (torch backend): exact vs Hutchinson (one Rademacher probe) time for d = 2 ... 64 and
the per-sample standard deviation of the one-probe estimate. K probes cost K backward passes,
exact costs d, so exact is the better choice whenever d <= the number of probes needed for the
precision wanted: K = (sd_1 / target)^2.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import sdelab
import sdelab.likelihood as lk
from sdelab import VPSDE, GaussianMixture, log_likelihood


def mixture(d: int, seed: int = 0) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(4, d, generator=g) / math.sqrt(max(d / 2, 1))
    stds = 0.2 + 0.6 * torch.rand(4, d, generator=g)
    return GaussianMixture(means, stds, torch.tensor([0.4, 0.3, 0.2, 0.1]))


class Timed:
    """Accumulates wall time spent inside a callable."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def run(sde, mix, x, backend, divergence, error_norm, seed=0):
    score = Timed(mix.score(sde))
    originals = lk.exact_divergence, lk.hutchinson_divergence
    rhs = {name: Timed(f) for name, f in zip(("exact", "hutchinson"), originals, strict=True)}
    lk.exact_divergence, lk.hutchinson_divergence = rhs["exact"], rhs["hutchinson"]
    try:
        t0 = time.perf_counter()
        res = log_likelihood(
            sde,
            score,
            x,
            divergence=divergence,
            backend=backend,
            rtol=1e-5,
            atol=1e-5,
            prior_logp=lambda z: mix.marginal_log_prob(sde, z, sde.T),
            generator=torch.Generator().manual_seed(seed),
            error_norm=error_norm,
        )
        wall = time.perf_counter() - t0
    finally:
        lk.exact_divergence, lk.hutchinson_divergence = originals
    return res, wall, score.seconds / wall, rhs[divergence].seconds / wall


def part1(batch: int, dims: list[int], repeats: int, error_norm: str) -> None:
    sde = VPSDE()
    print(
        f"Part 1: B = {batch}, rtol = atol = 1e-5, error_norm={error_norm!r}, VP, float32 model, "
        f"median of {repeats}"
    )
    head = (
        f"{'d':>3} {'divergence':>10} {'backend':>7} {'NFE':>5} {'time s':>8} {'score fwd':>9} "
        f"{'rhs':>6} {'max|err|':>9} {'torch/scipy':>11} {'max|t-s|':>9}"
    )
    print(head)
    for d in dims:
        mix = mixture(d)
        x = mix.sample(batch, generator=torch.Generator().manual_seed(1))
        truth = mix.marginal_log_prob(sde, x, 1e-5)
        for divergence in ("exact", "hutchinson"):
            walls = {"scipy": [], "torch": []}
            last = {}
            for _ in range(repeats):
                for backend in ("scipy", "torch"):  # alternate: same machine state for both
                    res, wall, fwd, rhs = run(sde, mix, x, backend, divergence, error_norm)
                    walls[backend].append(wall)
                    last[backend] = (res, fwd, rhs)
            ratio = statistics.median(
                t / s for t, s in zip(walls["torch"], walls["scipy"], strict=True)
            )
            diff = (last["torch"][0].logp - last["scipy"][0].logp).abs().max().item()
            for backend in ("scipy", "torch"):
                res, fwd, rhs = last[backend]
                err = (res.logp - truth).abs().max().item()
                extra = f"{ratio:>11.2f} {diff:>9.1e}" if backend == "torch" else ""
                print(
                    f"{d:>3} {divergence:>10} {backend:>7} {res.nfe:>5} "
                    f"{statistics.median(walls[backend]):>8.2f} {fwd:>9.0%} {rhs:>6.0%} "
                    f"{err:>9.1e} {extra}"
                )


def part2(batch: int, dims: list[int], target: float, error_norm: str) -> None:
    sde = VPSDE()
    print(f"\nPart 2: torch backend, B = {batch}: exact vs Hutchinson (1 Rademacher probe)")
    print(
        f"{'d':>3} {'exact s':>8} {'hutch s':>8} {'ratio':>6} {'sd_1 nats':>9} "
        f"{'probes for sd<' + str(target):>17} {'exact better?':>13}"
    )
    for d in dims:
        mix = mixture(d)
        x = mix.sample(batch, generator=torch.Generator().manual_seed(1))
        ex, t_ex, _, _ = run(sde, mix, x, "torch", "exact", error_norm)
        hu, t_hu, _, _ = run(sde, mix, x, "torch", "hutchinson", error_norm)
        sd1 = (hu.logp - ex.logp).std().item()
        k = math.ceil((sd1 / target) ** 2)
        print(
            f"{d:>3} {t_ex:>8.2f} {t_hu:>8.2f} {t_ex / t_hu:>6.1f} {sd1:>9.2f} {k:>17} "
            f"{'yes' if d <= k else 'no':>13}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    p.add_argument("--sweep", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target", type=float, default=0.1, help="per-sample sd wanted (nats)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--error-norm", choices=["sample", "batch"], default="sample")
    p.add_argument("--skip-sweep", action="store_true", help="only part 1")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"sdelab {sdelab.__version__}, torch {torch.__version__}, threads {a.threads}")
    part1(a.batch, a.dims, a.repeats, a.error_norm)
    if not a.skip_sweep:
        part2(a.batch, a.sweep, a.target, a.error_norm)


if __name__ == "__main__":
    main()
