"""Benchmark: ``sdelab compare --quick`` over 2 gloo ranks (1 thread each) vs 1 rank (1 thread).

    PYTHONPATH=. python benchmarks/bench_distributed.py [--repeats 5]

Part 1 (the bar, issue 12: at most 0.6x): the wall time of the whole command,
``torchrun --nproc-per-node K -m sdelab.cli compare --quick --threads 1`` for K = 1 and 2,
and the plain single process ``python -m sdelab.cli compare --quick --threads 1`` (no
torchrun), each in a fresh output folder, run alternately, median over the repeats.

Part 2 (what is sharded): the cells phase alone (`run_grid_sharded` on the quick grid, timed
on rank 0 from a common start after the rendezvous), K = 1 and 2 under torchrun. The rest of
the command (starting Python and torch, torchrun's agent, the report and the plots on rank 0)
is serial; the gap between the two parts is that serial share.

The machine is shared (2 cores, several users): the load average is printed with the
figures, and 2 ranks only gain when 2 cores are free.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _torchrun(k: int, port: int) -> list[str]:
    run = Path(sys.executable).with_name("torchrun")
    return [str(run), "--nproc-per-node", str(k), "--master-port", str(port)]


def whole(kind: str, out: Path, port: int) -> float:
    args = ["-m", "sdelab.cli", "compare", "--quick", "--threads", "1", "--no-progress"]
    args += ["--out", str(out)]
    if kind == "plain":
        cmd = [sys.executable, *args]
    else:
        cmd = [*_torchrun(int(kind), port), *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - t0


def cells_phase(k: int, out: Path, port: int) -> float:
    cmd = [*_torchrun(k, port), str(Path(__file__).resolve()), "--worker", str(out)]
    res = subprocess.run(cmd, env=_env(), check=True, capture_output=True, text=True)
    line = [x for x in res.stdout.splitlines() if x.startswith("CELLS ")][-1]
    return float(line.split()[1])


def worker(out: str) -> None:
    """One rank of part 2: time `run_grid_sharded` on the quick grid."""
    import torch

    import sdelab.distributed as sd
    from sdelab.experiments.config import preset
    from sdelab.experiments.sharded import run_grid_sharded

    torch.set_num_threads(1)
    sd.init_from_env()
    sd.check_same("start")  # a common start: every rank has joined and imported
    t0 = time.perf_counter()
    run_grid_sharded(preset("quick"), out, progress=False)
    if sd.rank() == 0:
        print(f"CELLS {time.perf_counter() - t0:.3f}", flush=True)
    sd.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker)
        return
    load0 = os.getloadavg()
    port = 29700
    times: dict[str, list[float]] = {"plain": [], "1": [], "2": []}
    phase: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for kind in times:
                port += 1
                times[kind].append(whole(kind, Path(tmp) / f"w{kind}-{i}", port))
            for k in phase:
                port += 1
                phase[k].append(cells_phase(k, Path(tmp) / f"c{k}-{i}", port))
    med = {k: statistics.median(v) for k, v in times.items()}
    cm = {k: statistics.median(v) for k, v in phase.items()}
    print(f"sdelab compare --quick, 1 thread per rank, median of {a.repeats} runs")
    print(f"load average before: {load0[0]:.2f}, after: {os.getloadavg()[0]:.2f} (2 cores)")
    print("whole command (wall s):")
    print(f"  plain python, 1 process   {med['plain']:6.2f}   runs {fmt(times['plain'])}")
    print(f"  torchrun, 1 rank          {med['1']:6.2f}   runs {fmt(times['1'])}")
    print(f"  torchrun, 2 ranks         {med['2']:6.2f}   runs {fmt(times['2'])}")
    paired = statistics.median(b / a for a, b in zip(times["1"], times["2"], strict=True))
    plain = statistics.median(b / a for a, b in zip(times["plain"], times["2"], strict=True))
    print(f"  ratio 2 ranks / 1 rank (torchrun)   {med['2'] / med['1']:.2f} of the medians, "
          f"{paired:.2f} median of the rounds' ratios  (bar <= 0.60)")  # fmt: skip
    print(
        f"  ratio 2 ranks / plain process       {med['2'] / med['plain']:.2f}, rounds {plain:.2f}"
    )
    print("cells phase only (run_grid_sharded, wall s on rank 0):")
    print(f"  1 rank {cm[1]:6.2f}   runs {fmt(phase[1])}")
    print(f"  2 ranks {cm[2]:5.2f}   runs {fmt(phase[2])}")
    rounds = statistics.median(b / a for a, b in zip(phase[1], phase[2], strict=True))
    print(f"  ratio {cm[2] / cm[1]:.2f} of the medians, {rounds:.2f} median of the rounds' ratios")


def fmt(v: list[float]) -> str:
    return " ".join(f"{x:.2f}" for x in v)


if __name__ == "__main__":
    main()
