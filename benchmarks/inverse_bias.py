"""Benchmark: the bias of each conditional sampler against the exact posterior, and the cost of
imputation.

    PYTHONPATH=. python benchmarks/inverse_bias.py [--quick] [--n 1000] [--repeats 5]

On the built-in 16-D mixture of ``sdelab compare`` (``gmm16``: 8 anisotropic components) half of
the coordinates (a seeded random mask) of one draw are observed exactly. Each method of
`sdelab.sample(..., condition=...)` -- imputation (Song et al. 2021, App. I.2), RePaint
(Lugmayr et al. 2022), DPS (Chung et al. 2023) -- and the exact reference (the exact posterior
mixture's own score, `sdelab.GaussianMixture.condition`, through the same solver) draws ``--n``
samples with Euler-Maruyama on the VP SDE at 100 and 1000 steps; the table gives each one's
energy distance to ``--n`` exact posterior draws beside the noise floor (the same distance for
further exact draws: mean ± sd) and the posterior mode-weight error. This is the grid of
``sdelab compare --preset inverse`` restricted to that one problem
(`sdelab.experiments.inverse`).

The last line is the overhead of imputation: the same Euler-Maruyama run (1000 steps, ``--n``
samples, one thread) with and without ``condition=Inpaint(...)``, timed alternately
``--repeats`` times by this thread's CPU time; the median ratio (conditioned / unconditioned)
should be at most 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

import sdelab
from sdelab.experiments.config import builtin_mixture
from sdelab.experiments.inverse import INVERSE_PRESETS, observe, run_inverse


def overhead(n: int, steps: int, repeats: int) -> tuple[float, float, float]:
    """Median CPU seconds of the unconditioned and the imputed run, and their median ratio."""
    prior = builtin_mixture("gmm16").to(dtype=torch.float32)
    obs = observe(builtin_mixture("gmm16"), "mask", 0)
    y = torch.zeros(prior.dim)
    y[obs.mask] = obs.y.float()
    cond = sdelab.Inpaint(y, obs.mask, method="imputation")
    sde, score, solver = sdelab.VPSDE(), prior.score(sdelab.VPSDE()), sdelab.EulerMaruyama()

    def run(condition) -> float:
        kw = {} if condition is None else {"condition": condition}
        g = torch.Generator().manual_seed(0)
        t0 = time.thread_time()
        sdelab.sample(sde, score, solver, (n, prior.dim), steps=steps, generator=g, **kw)
        return time.thread_time() - t0

    run(None), run(cond)  # warm-up
    plain, imputed, ratios = [], [], []
    for i in range(repeats):
        if i % 2:
            b, a = run(cond), run(None)
        else:
            a, b = run(None), run(cond)
        plain.append(a)
        imputed.append(b)
        ratios.append(b / a)
    return statistics.median(plain), statistics.median(imputed), statistics.median(ratios)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="500 samples, 20/100 steps, 3 repeats")
    p.add_argument("--n", type=int, default=1000, help="samples per method (and exact draws)")
    p.add_argument("--repeats", type=int, default=5, help="alternating timings of the overhead")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    steps = [20, 100] if args.quick else [100, 1000]
    n = 500 if args.quick else args.n
    cfg = replace(
        INVERSE_PRESETS["inverse"],
        datasets=["gmm16"],
        observations=["mask"],
        methods=["exact", "imputation", "repaint", "dps"],
        solvers=["euler_maruyama"],
        steps=steps,
        n_samples=n,
    )
    t0 = time.perf_counter()
    res = run_inverse(cfg, "inverse-bias-results")
    print(res.summary)
    for r in res.records:
        if r["status"] != "ok":
            print(f"  {r['method']} at {r['steps']} steps: {r['status']} {r.get('error', '')}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    a, b, ratio = overhead(n, steps[-1], 3 if args.quick else args.repeats)
    print(
        f"imputation overhead at {steps[-1]} steps, n = {n}: {b:.3f} s conditioned vs "
        f"{a:.3f} s unconditioned (medians), ratio {ratio:.3f} (bar <= 1.10)"
    )


if __name__ == "__main__":
    main()
