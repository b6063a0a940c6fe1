"""The equality table of issue 14 for the sigma family, KarrasVe and RePaint (run by hand).

    PYTHONPATH=. python benchmarks/scheduler_equality_table.py

For every class and option set of the equality tests (tests/test_scheduler_classes_sigma.py,
tests/test_scheduler_karras_repaint.py), the same loop runs with the diffusers class and the
sdelab class (same start, same generator); printed: max |sdelab - diffusers| / max |diffusers|
over the final samples, at 10 and 50 steps, in float32 units (eps32 = 1.19e-7).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
warnings.filterwarnings("ignore")


def main() -> None:
    import diffusers
    import test_scheduler_classes_sigma as T
    import test_scheduler_karras_repaint as K

    import sdelab.schedulers as S

    eps = float(torch.finfo(torch.float32).eps)
    print(f"{'class':34s} {'options':58s} {'10 steps':>9s} {'50 steps':>9s}  (units of eps32)")
    for name, opts in T.CASES:
        rels = []
        for steps in (10, 50):
            ref = T.run_loop(getattr(diffusers, name)(**opts), steps, seed=3)
            got = T.run_loop(getattr(S, name)(**opts), steps, seed=3)
            rels.append(float((got - ref).abs().max() / ref.abs().max()) / eps)
        label = ",".join(f"{k}={v}" for k, v in opts.items()) or "default"
        print(f"{name:34s} {label:58s} {rels[0]:9.1f} {rels[1]:9.1f}")
    for opts in K.KARRAS_OPTS:
        rels = []
        for steps in (10, 50):
            ref, _ = K.karras_ve_loop(K._diffusers_karras_ve()(**opts), steps)
            got, _ = K.karras_ve_loop(S.KarrasVeScheduler(**opts), steps)
            rels.append(float((got - ref).abs().max() / ref.abs().max()) / eps)
        label = ",".join(f"{k}={v}" for k, v in opts.items()) or "default"
        print(f"{'KarrasVeScheduler':34s} {label:58s} {rels[0]:9.1f} {rels[1]:9.1f}")
    for steps, length, repeats, eta, opts in K.REPAINT_CASES:
        ref, _ = K.repaint_loop(diffusers.RePaintScheduler(**opts), steps, length, repeats, eta)
        got, _ = K.repaint_loop(S.RePaintScheduler(**opts), steps, length, repeats, eta)
        rel = float((got - ref).abs().max() / ref.abs().max()) / eps
        label = f"n={steps},jump={length}x{repeats},eta={eta}" + "".join(
            f",{k}={v}" for k, v in opts.items()
        )
        print(f"{'RePaintScheduler':34s} {label:58s} {rel:9.1f}")


if __name__ == "__main__":
    main()
