"""The equality table of the alpha-bar scheduler classes against diffusers (run by hand).

    PYTHONPATH=. python benchmarks/scheduler_classes_table.py

For every (class, options) row of tests/test_scheduler_classes.py (``ROWS``, plus the rows
where sdelab's method is documented to differ), the loop of that test at 10 and 50 steps: the
largest relative difference ``max|sdelab - diffusers| / max|diffusers|`` of the final sample,
and the test's bound ``8 * calls * eps32``. Prints a Markdown table.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path


def main() -> None:
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import diffusers
    import test_scheduler_classes as T

    import sdelab.schedulers as S

    differs = [
        ("DPMSolverMultistepScheduler", {"solver_order": 3}, {}),
        ("DPMSolverSinglestepScheduler", {"solver_order": 3}, {}),
        ("DPMSolverMultistepInverseScheduler", {"solver_order": 3}, {}),
        ("PNDMScheduler", {"prediction_type": "v_prediction"}, {}),
    ]
    print("| class | options | max rel. diff, 10 steps | 50 steps | bound (50) |")
    print("|---|---|---|---|---|")
    worst: dict[str, float] = {}
    for name, opts, kw in [*T.ROWS, *differs]:
        cells = []
        for steps in (10, 50):
            ref, _ = T.run_loop(getattr(diffusers, name)(**opts), steps, seed=3, step_kw=kw)
            ours = getattr(S, name)(**opts)
            got, _ = T.run_loop(ours, steps, seed=3, step_kw=kw)
            cells.append(T.rel(got, ref))
        bound = 8 * len(ours.timesteps) * T.EPS32
        args = ", ".join(f"{k}={v}" for k, v in {**opts, **kw}.items()) or "defaults"
        mark = "" if (name, opts, kw) not in differs else " (documented difference)"
        print(f"| {name} | {args}{mark} | {cells[0]:.1e} | {cells[1]:.1e} | {bound:.1e} |")
        if (name, opts, kw) not in differs:
            worst[name] = max(worst.get(name, 0.0), *cells)
    print()
    print("| class | worst over its rows |")
    print("|---|---|")
    for name, v in worst.items():
        print(f"| {name} | {v:.1e} |")


if __name__ == "__main__":
    main()
