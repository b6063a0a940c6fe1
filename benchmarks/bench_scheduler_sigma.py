"""Overhead of the sigma-family scheduler classes: sdelab's ``step`` vs diffusers' (run by hand).

    PYTHONPATH=. python benchmarks/bench_scheduler_sigma.py [--quick] [--shape 4 4 64 64]
        [--device cpu|cuda] [--steps 20] [--rounds 15] [--threads 1]
        [--only EulerDiscreteScheduler ...]

The loop and the table of ``benchmarks/bench_scheduler_classes.py`` (its docs say what is
timed) on the sigma family, with default options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scheduler_classes import run  # the sibling script, found by the path above

CLASSES = [
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DPMSolverSDEScheduler",
]


def main(argv=None) -> None:
    run([(name, {}, {}) for name in CLASSES], argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
