"""Where each solver stops giving usable samples on coarse grids (run by hand, about 1 minute).

    PYTHONPATH=. python benchmarks/stability_limits.py [--n 2000] [--sdes vp ve]

For VP and VE (the paper's parameters) and the 2-D three-mode Gaussian mixture of the tests,
every solver samples with the exact score at a range of step counts (adaptive solvers at a
range of tolerances). The error is the sliced 2-Wasserstein distance to an exact sample of the
target $p_\\varepsilon$ in units of the target's RMS std (noise floor about 0.03 at n = 2000);
``inf`` marks non-finite samples, ``ERR`` an exception. The "Stability" paragraphs of the
solver docstrings quote these tables.
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch

from sdelab import (
    PC,
    VESDE,
    VPSDE,
    AncestralSampling,
    AnnealedLangevin,
    EulerMaruyama,
    GaussianMixture,
    Langevin,
    ProbabilityFlowODE,
    ReverseDiffusion,
    TorchSDE,
    sample,
)

EPS = 1e-3
STEPS = (2, 3, 5, 7, 10, 15, 20, 30, 50, 100, 200, 1000)
TOLS = (1e-1, 1e-2, 1e-3)
FIXED = {
    "EulerMaruyama": EulerMaruyama(),
    "EulerMaruyama(flow)": EulerMaruyama(probability_flow=True),
    "ReverseDiffusion": ReverseDiffusion(),
    "AncestralSampling": AncestralSampling(),
    "Langevin(snr=0.16)": Langevin(),
    "AnnealedLangevin(snr=0.16)": AnnealedLangevin(),
    "PC(RD, Langevin)": PC(ReverseDiffusion(), Langevin()),
    "PC(RD, AnnealedLangevin)": PC(ReverseDiffusion(), AnnealedLangevin()),
    "TorchSDE(srk, fixed)": TorchSDE("srk", adaptive=False),
    "TorchSDE(euler, fixed)": TorchSDE("euler", adaptive=False),
}
ADAPTIVE = {
    "ProbabilityFlowODE": lambda tol: ProbabilityFlowODE(rtol=tol, atol=tol),
    "TorchSDE(srk, adaptive)": lambda tol: TorchSDE("srk", rtol=tol, atol=tol),
}


def mixture() -> GaussianMixture:
    """The tests' 2-D mixture (tests/_oracle.py, mixture_2d)."""
    return GaussianMixture(
        [[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        [[0.3, 0.6], [0.5, 0.2], [0.4, 0.4]],
        [0.5, 0.3, 0.2],
    )


def error(x: torch.Tensor, exact: torch.Tensor, proj: torch.Tensor, scale: float) -> float:
    """Sliced W2 between equal-size samples, in units of ``scale``; inf if not finite."""
    if not bool(torch.isfinite(x).all()):
        return math.inf
    pa, pb = (x @ proj).sort(0).values, (exact @ proj).sort(0).values
    return float((pa - pb).pow(2).mean().sqrt()) / scale


def run(sde, mix, n: int) -> None:
    g = torch.Generator().manual_seed(0)
    target = mix.at(sde, EPS)
    exact = target.sample(n, g)
    scale = float(target.covariance().diagonal().mean().sqrt())
    proj = torch.randn(2, 64, generator=g)
    proj /= proj.norm(dim=0)
    floor = error(target.sample(n, g), exact, proj, scale)
    score = mix.score(sde)
    print(f"\n## {type(sde).__name__}  (n = {n}; noise floor {floor:.3f})")
    print("| solver | " + " | ".join(str(s) for s in STEPS) + " |")
    print("| --- " * (len(STEPS) + 1) + "|")
    for name, solver in FIXED.items():
        row = []
        for steps in STEPS:
            gen = torch.Generator().manual_seed(1)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    x = sample(sde, score, solver, (n, 2), steps=steps, eps=EPS, generator=gen).x
                row.append(f"{error(x, exact, proj, scale):.3g}")
            except FloatingPointError:
                row.append("inf")
            except Exception as err:  # a table cell, not a failure
                row.append(f"ERR {type(err).__name__}")
        print(f"| {name} | " + " | ".join(row) + " |")
    print("\n| solver (rtol = atol) | " + " | ".join(f"{t:g}" for t in TOLS) + " |")
    print("| --- " * (len(TOLS) + 1) + "|")
    for name, make in ADAPTIVE.items():
        row = []
        for tol in TOLS:
            gen = torch.Generator().manual_seed(1)
            res = sample(sde, score, make(tol), (n, 2), eps=EPS, generator=gen)
            row.append(f"{error(res.x, exact, proj, scale):.3g} ({res.nfe} NFE)")
        print(f"| {name} | " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--sdes", nargs="+", default=["vp", "ve"], choices=["vp", "ve"])
    args = parser.parse_args()
    torch.manual_seed(0)
    sdes = {"vp": VPSDE(), "ve": VESDE()}
    for key in args.sdes:
        run(sdes[key], mixture(), args.n)


if __name__ == "__main__":
    main()
