"""Overhead of the alpha-bar scheduler classes: sdelab's ``step`` vs diffusers' (run by hand).

    PYTHONPATH=. python benchmarks/bench_scheduler_classes.py [--quick] [--shape 4 4 64 64]
        [--device cpu|cuda] [--steps 20] [--rounds 15] [--threads 1] [--only NAME ...]

For each class (and a few option sets), the same diffusers-style loop (``set_timesteps``,
``init_noise_sigma``, ``scale_model_input``, a cheap deterministic model, ``step``) runs with the
diffusers class and with the sdelab class; only the time spent inside ``step`` is summed
(``time.perf_counter`` around each call, after a device synchronisation on CUDA). Rounds
alternate the two loops, the order swapped from round to round; the table gives the median over
rounds of the per-round ratio sdelab / diffusers (the issue's bar: <= 1.10), its range, and the
median step time of each side per call.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import torch

# (class, constructor options, step keyword arguments)
CASES = [
    ("DDIMScheduler", {}, {}),
    ("DDIMScheduler", {"clip_sample": False}, {"eta": 1.0}),
    ("DDIMInverseScheduler", {}, {}),
    ("DDPMScheduler", {}, {}),
    ("DPMSolverMultistepScheduler", {}, {}),
    ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, {}),
    ("DPMSolverMultistepScheduler", {"solver_order": 3, "thresholding": True}, {}),
    ("DPMSolverMultistepInverseScheduler", {}, {}),
    ("DPMSolverSinglestepScheduler", {}, {}),
    ("UniPCMultistepScheduler", {}, {}),
    ("UniPCMultistepScheduler", {"solver_order": 3}, {}),
    ("DEISMultistepScheduler", {}, {}),
    ("PNDMScheduler", {}, {}),
    ("PNDMScheduler", {"skip_prk_steps": True}, {}),
    ("IPNDMScheduler", {}, {}),
]


def model(x: torch.Tensor, timestep) -> torch.Tensor:
    return torch.tanh(x) * 0.5


def step_time(sched, x0: torch.Tensor, steps: int, sync, step_kw: dict) -> tuple[float, int]:
    """Seconds spent in ``step`` over one loop, and the number of calls."""
    sched.set_timesteps(steps, device=x0.device)
    x = x0 * sched.init_noise_sigma
    kw = dict(step_kw)
    if "generator" in inspect.signature(sched.step).parameters:
        kw["generator"] = torch.Generator(device=x0.device).manual_seed(0)
    total, calls = 0.0, 0
    for t in sched.timesteps:
        out = model(sched.scale_model_input(x, t), t)
        sync()
        start = time.perf_counter()
        x = sched.step(out, t, x, **kw).prev_sample
        sync()
        total += time.perf_counter() - start
        calls += 1
    return total, calls


def run(cases, argv=None, *, description: str = "") -> None:
    """Time every ``(class name, constructor options, step keyword arguments)`` of ``cases``
    against diffusers' class of the same name and print the table (the module docs)."""
    import warnings

    import diffusers

    import sdelab.schedulers as S

    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--shape", type=int, nargs="+", default=[4, 4, 64, 64])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=None, help="default 15 (3 with --quick)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: less noise)")
    p.add_argument("--only", nargs="+", default=None, help="class names to time")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rounds = a.rounds or (3 if a.quick else 15)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x0 = torch.randn(a.shape, generator=torch.Generator().manual_seed(0)).to(dev)
    print(f"shape {tuple(a.shape)}, {a.steps} steps, {rounds} rounds, device {dev}")
    print(
        f"{'class and options':60s} {'ratio (median)':>14s} {'range':>15s} "
        f"{'sdelab us/call':>15s} {'diffusers us/call':>18s}"
    )
    for name, opts, kw in cases:
        if a.only and name not in a.only:
            continue
        theirs, ours = getattr(diffusers, name)(**opts), getattr(S, name)(**opts)
        step_time(theirs, x0, a.steps, sync, kw)  # warm-up
        step_time(ours, x0, a.steps, sync, kw)
        ratios, t_ours, t_theirs = [], [], []
        for r in range(rounds):
            pair = [(ours, t_ours), (theirs, t_theirs)]
            got = {}
            for sched, acc in pair if r % 2 == 0 else pair[::-1]:
                sec, calls = step_time(sched, x0, a.steps, sync, kw)
                got[id(sched)] = sec
                acc.append(sec / calls * 1e6)
            ratios.append(got[id(ours)] / got[id(theirs)])
        label = name + (" " + ",".join(f"{k}={v}" for k, v in {**opts, **kw}.items()))
        print(
            f"{label:60s} {statistics.median(ratios):14.3f} "
            f"{min(ratios):7.3f}-{max(ratios):<7.3f} {statistics.median(t_ours):15.1f} "
            f"{statistics.median(t_theirs):18.1f}"
        )


def main(argv=None) -> None:
    run(CASES, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main()
