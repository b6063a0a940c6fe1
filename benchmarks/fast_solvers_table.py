"""Pathwise error of every deterministic fast solver x time schedule at a budget of score
evaluations, on the built-in benchmark mixtures under VP, against the probability-flow Euler
(EM-PF, ``EulerMaruyama(probability_flow=True)``) on the uniform grid.

Run by hand (minutes on one core; the reference solves take most of it):

    PYTHONPATH=$PWD python benchmarks/fast_solvers_table.py --out fast_solvers.md

The error is the root-mean-square distance to the exact probability-flow map of the same x_T
(`sdelab._convergence.flow_error`; DOP853 at rtol = atol = 1e-10, float64). The solvers are
every deterministic `GridSolver` exported by `sdelab` at the time of the run
(`sdelab._convergence.deterministic_grid_solvers`) plus the variants in `VARIANTS` that
exist. For each NFE budget a solver gets the largest number of steps whose counted NFE
(``SampleResult.nfe``) fits the budget (so a 2-evaluation step gets the floor of half of it;
PNDM's Runge-Kutta warm-up costs 12); a cell is "-" when even one step costs more. The issue's
bar: the best fast solver beats EM-PF by at least 2x at 20 NFE.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import torch

import sdelab
from sdelab._convergence import deterministic_grid_solvers, exact_flow_solver, flow_error
from sdelab.experiments.config import BUILTIN_DATASETS, builtin_mixture

SCHEDULES = ("uniform", "logsnr", "karras", "quadratic")
BUDGETS = (5, 8, 10, 15, 20, 30, 50)
#: variants beyond the default instances, used where the class is exported: (name, options)
VARIANTS = [
    ("DPMSolver", {"order": 3}),
    ("DPMSolver", {"order": 2, "multistep": False}),
    ("UniPC", {"order": 3}),
    ("PNDM", {"skip_prk": True}),
]


def solvers() -> list:
    found = deterministic_grid_solvers()
    for name, options in VARIANTS:
        cls = getattr(sdelab, name, None)
        if cls is not None:
            found.append(cls(**options))
    seen: set[str] = set()
    return [s for s in found if not (repr(s) in seen or seen.add(repr(s)))]


def steps_for_budget(sde, score, solver, budget: int, dim: int) -> int | None:
    """The largest number of steps whose counted NFE is at most ``budget`` (one-sample dry
    runs; NFE grows with the steps), or ``None`` if one step already costs more."""

    @functools.cache
    def nfe(steps: int) -> int:
        return sdelab.sample(sde, score, solver, (1, dim), steps=steps, dtype=torch.float64).nfe

    best = None
    for steps in range(1, budget + 1):
        if nfe(steps) > budget:
            break
        best = steps
    return best


def table(name: str, n: int, seed: int) -> tuple[str, str]:
    mix = builtin_mixture(name)
    sde = sdelab.VPSDE()
    score = mix.score(sde)
    dim = mix.means.shape[-1]
    shape = (n, dim)

    def run(solver, steps=None, schedule="uniform"):
        g = torch.Generator().manual_seed(seed)
        kw = {} if steps is None else {"steps": steps, "schedule": schedule}
        return sdelab.sample(sde, score, solver, shape, generator=g, dtype=torch.float64, **kw)

    t0 = time.perf_counter()
    exact = run(exact_flow_solver()).x
    ref_s = time.perf_counter() - t0

    def row(solver, schedule):
        cells = []
        errors = {}
        for budget in BUDGETS:
            steps = steps_for_budget(sde, score, solver, budget, dim)
            if steps is None:
                cells.append("-")
                continue
            res = run(solver, steps, schedule)
            errors[budget] = flow_error(res.x, exact)
            cells.append(f"{errors[budget]:.2e} ({res.nfe})")
        return cells, errors

    baseline = sdelab.EulerMaruyama(probability_flow=True)
    base_cells, base_err = row(baseline, "uniform")
    header = "| solver | schedule | " + " | ".join(f"NFE {b}" for b in BUDGETS) + " |"
    lines = [header, "|" + " --- |" * (len(BUDGETS) + 2)]
    lines.append(f"| {baseline!r} (EM-PF) | uniform | " + " | ".join(base_cells) + " |")
    best = (float("inf"), None)
    for solver in solvers():
        for schedule in SCHEDULES:
            cells, errors = row(solver, schedule)
            lines.append(f"| {solver!r} | {schedule} | " + " | ".join(cells) + " |")
            if 20 in errors and errors[20] < best[0]:
                best = (errors[20], f"{solver!r} on {schedule}")
    ratio = base_err[20] / best[0]
    verdict = "meets" if ratio >= 2 else "misses"
    summary = (
        f"{name} (VP, n = {n}, float64; reference {ref_s:.0f} s): at 20 NFE the best is "
        f"{best[1]} with {best[0]:.2e}, EM-PF on the uniform grid {base_err[20]:.2e}: "
        f"{ratio:.1f}x better ({verdict} the 2x bar). Cells: error (NFE used)."
    )
    return "\n".join(lines), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=sorted(BUILTIN_DATASETS))
    ap.add_argument("--n", type=int, default=500, help="samples per dataset (default 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = ap.parse_args()
    parts = []
    for name in args.datasets:
        lines, summary = table(name, args.n, args.seed)
        parts.append(f"### {name}\n\n{summary}\n\n{lines}\n")
        print(parts[-1], flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(parts))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
