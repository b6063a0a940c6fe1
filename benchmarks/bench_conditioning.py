"""What each condition costs: CPU time of one conditioned run over the same unconditional run.

    PYTHONPATH=. python benchmarks/bench_conditioning.py [--steps 1000] [--n 1000] [--repeats 7]
        [--score exact|mlp]

Euler-Maruyama on the VP SDE, half of the coordinates of the built-in 16-D mixture seen;
runs alternate, one thread, the minimum of ``--repeats`` per method (the machine is shared:
minima are the least disturbed runs). ``--score exact`` (default) is the mixture's exact
score, ``--score mlp`` an (untrained) ``MLPScore(16)`` of the default size, for the cost of
a network score: the overhead of a condition is relative to what one step costs, and
imputation's own cost is one Gaussian draw for the seen coordinates per step (half as many
draws again as Euler-Maruyama's own) and one indexed copy.
"""

from __future__ import annotations

import argparse
import time

import torch

import sdelab
from sdelab.experiments.config import builtin_mixture
from sdelab.nets import MLPScore


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--score", choices=("exact", "mlp"), default="exact")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    mix = builtin_mixture("gmm16").to(dtype=torch.float32)
    sde = sdelab.VPSDE()
    mask = torch.arange(mix.dim) % 2 == 0
    y = mix.sample(1, torch.Generator().manual_seed(1))[0]
    if args.score == "exact":
        score = mix.score(sde)
    else:
        net = MLPScore(mix.dim).eval()

        @torch.no_grad()
        def score(x, t):
            return net(x, t)

    A = torch.eye(mix.dim)[mask]
    conds = {
        "none": None,
        "imputation": sdelab.Inpaint(y, mask),
        "repaint (L=R=10)": sdelab.Inpaint(y, mask, method="repaint"),
        "linear imputation": sdelab.LinearObservation(A, y[mask]),
        "dps": sdelab.LinearObservation(A, y[mask], 0.1, method="dps", scale=0.05),
        "guidance": sdelab.ClassGuidance(mix.class_log_prob(sde).for_class(0)),
    }

    def run(c) -> float:
        g = torch.Generator().manual_seed(0)
        t0 = time.thread_time()
        sdelab.sample(
            sde,
            score,
            sdelab.EulerMaruyama(),
            (args.n, mix.dim),
            steps=args.steps,
            generator=g,
            condition=c,
        )
        return time.thread_time() - t0

    times = {k: [] for k in conds}
    for _ in range(args.repeats):
        for k, c in conds.items():
            times[k].append(run(c))
    base = min(times["none"])
    for k, v in times.items():
        print(f"{k:20s} {min(v):8.3f} s  ratio {min(v) / base:6.2f}")


if __name__ == "__main__":
    main()
