"""Measured convergence orders and the evidence behind TorchSDE's default method.

Run by hand (about a minute on one core; the NFE table is the part that takes time):

    PYTHONPATH=$PWD python benchmarks/convergence_orders.py

Prints three Markdown tables (pasted into docs/concepts/adaptive_sde.md):

1. Euler-Maruyama (`sdelab.sde.simulate`) strong and weak orders on geometric Brownian motion
   (multiplicative noise) and the Ornstein-Uhlenbeck process (additive noise), against their
   exact pathwise solutions on shared Brownian increments.
2. `TorchSDE` strong orders per method on the reverse-time OU SDE of a 1-D mixture, against a
   fine `srk` reference on one shared `torchsde.BrownianInterval`.
3. Pathwise error against score evaluations (NFE) for fixed-step Euler, fixed-step SRK and
   adaptive SRK/Euler on the reverse VP, sub-VP and VE SDEs of a 2-D mixture.
"""

from __future__ import annotations

import argparse
import time

import torch

import sdelab
from sdelab._convergence import em_orders, reverse_path_errors, torchsde_strong_order
from sdelab.solvers.torchsde import METHODS, TorchSDE


def orders_table(paths: int) -> None:
    print("| scheme | process | strong order (declared) | weak order (declared) |")
    print("| --- | --- | --- | --- |")
    strong = em_orders("gbm", mu=0.5, sigma=1.0, paths=paths)
    weak = em_orders("gbm", mu=1.0, sigma=0.5, paths=paths)
    print(
        f"| Euler-Maruyama | GBM (strong: mu=0.5, sigma=1; weak: mu=1, sigma=0.5) | "
        f"{strong.strong_order:.3f} (0.5) | {weak.weak_order:.3f} (1.0) |"
    )
    ou = em_orders("ou", paths=paths)
    print(
        f"| Euler-Maruyama | OU (theta=1, sigma=1) | {ou.strong_order:.3f} (1.0) | "
        f"{ou.weak_order:.3f} (1.0) |"
    )
    for method in METHODS:
        r = torchsde_strong_order(method)
        print(
            f"| TorchSDE {method!r} | reverse OU, 1-D mixture | {r.strong_order:.3f} "
            f"({METHODS[method]['strong_order']}) | |"
        )


def nfe_table(paths: int) -> None:
    mix = sdelab.GaussianMixture(
        torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64),
        torch.tensor([[0.5, 0.8], [0.7, 0.4]]),
        [0.4, 0.6],
    )
    eps = 1e-3
    span = 1.0 - eps
    print()
    print("| SDE | solver | steps | NFE | RMS pathwise error |")
    print("| --- | --- | --- | --- | --- |")
    for sde in (sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE()):
        solvers = [TorchSDE("euler", adaptive=False, dt=span / n) for n in (64, 128, 256, 512)]
        solvers += [TorchSDE("srk", adaptive=False, dt=span / n) for n in (32, 64, 128, 256)]
        solvers += [
            TorchSDE(m, adaptive=True, rtol=tol, atol=tol, dt=0.01)
            for m in ("euler", "srk")
            for tol in (1e-2, 1e-3)
        ]
        errs = reverse_path_errors(sde, mix, solvers, t_end=eps, paths=paths, ref_level=12)
        for e in errs:
            s = e.solver
            name = f"{s.method}, " + (f"adaptive tol={s.rtol:g}" if s.adaptive else "fixed")
            print(f"| {type(sde).__name__} | {name} | {e.steps} | {e.nfe} | {e.error:.2e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paths", type=int, default=20_000, help="paths for the EM orders")
    p.add_argument("--nfe-paths", type=int, default=256, help="paths for the NFE table")
    args = p.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    orders_table(args.paths)
    nfe_table(args.nfe_paths)
    print(f"\n({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
