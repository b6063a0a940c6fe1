"""Time inside the scheduler calls of KarrasVeScheduler and RePaintScheduler, sdelab against
diffusers 0.42.1, in their pipelines' loops (run by hand).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_scheduler_karras_repaint.py
        [--rounds 5] [--steps 20] [--shape 4 4 64 64]

Karras VE: ``add_noise_to_input``, ``step`` and ``step_correct`` of diffusers'
KarrasVePipeline loop; RePaint: ``step`` on the down moves and ``undo_step`` on the up moves of
the RePaintPipeline loop (jump length 5, 2 resamplings). Only the scheduler calls are timed
(the stand-in model is computed outside); both classes see the same inputs and the same
generator seeds. Rounds alternate sdelab and diffusers; the table gives the median over the
rounds of the ratio sdelab / diffusers (the issue's bar: at most 1.1).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch


def karras_loop(sched, steps: int, shape) -> float:
    gen = torch.Generator().manual_seed(0)
    sched.set_timesteps(steps)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(42)) * sched.init_noise_sigma
    spent = 0.0
    for t in sched.timesteps:
        sigma = sched.schedule[t]
        sigma_prev = sched.schedule[t - 1] if t > 0 else 0
        t0 = time.perf_counter()
        x_hat, sigma_hat = sched.add_noise_to_input(x, sigma, generator=gen)
        spent += time.perf_counter() - t0
        model = (torch.tanh(x_hat) * 0.8 - x_hat) / float(sigma_hat)
        t0 = time.perf_counter()
        out = sched.step(model, sigma_hat, sigma_prev, x_hat)
        spent += time.perf_counter() - t0
        if sigma_prev != 0:
            model = (torch.tanh(out.prev_sample) * 0.8 - out.prev_sample) / float(sigma_prev)
            t0 = time.perf_counter()
            out = sched.step_correct(
                model, sigma_hat, sigma_prev, x_hat, out.prev_sample, out.derivative
            )
            spent += time.perf_counter() - t0
        x = out.prev_sample
    return spent


def repaint_loop(sched, steps: int, shape) -> float:
    gen = torch.Generator().manual_seed(0)
    g0 = torch.Generator().manual_seed(7)
    original = torch.rand(shape, generator=g0) * 2 - 1
    mask = (torch.rand(shape, generator=g0) > 0.5).float()
    x = torch.randn(shape, generator=gen)
    sched.set_timesteps(steps, 5, 2)
    sched.eta = 0.0
    t_last = sched.timesteps[0] + 1
    spent = 0.0
    for t in sched.timesteps:
        if t < t_last:
            model = 0.1 * x
            t0 = time.perf_counter()
            x = sched.step(model, t, x, original, mask, gen).prev_sample
        else:
            t0 = time.perf_counter()
            x = sched.undo_step(x, t_last, gen)
        spent += time.perf_counter() - t0
        t_last = t
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--shape", type=int, nargs="+", default=[4, 4, 64, 64])
    args = p.parse_args()
    torch.set_num_threads(1)
    import diffusers

    import sdelab.schedulers as S

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers.schedulers.deprecated.scheduling_karras_ve import KarrasVeScheduler

    cases = {
        "KarrasVeScheduler": (S.KarrasVeScheduler, KarrasVeScheduler, karras_loop),
        "RePaintScheduler": (S.RePaintScheduler, diffusers.RePaintScheduler, repaint_loop),
    }
    shape = tuple(args.shape)
    print(f"shape {shape}, {args.steps} steps, {args.rounds} rounds, device cpu")
    print(
        f"{'class':20s} {'ratio (median)':>15s} {'range':>13s} {'sdelab ms':>10s} {'diffusers ms':>13s}"
    )
    for name, (ours, theirs, loop) in cases.items():
        a, b = ours(), theirs()
        loop(a, args.steps, shape), loop(b, args.steps, shape)  # warm-up
        ta, tb = [], []
        for _ in range(args.rounds):
            ta.append(loop(a, args.steps, shape))
            tb.append(loop(b, args.steps, shape))
        ratios = [x / y for x, y in zip(ta, tb, strict=True)]
        print(
            f"{name:20s} {statistics.median(ratios):15.3f} "
            f"{min(ratios):6.3f}-{max(ratios):.3f} {statistics.median(ta) * 1e3:10.1f} "
            f"{statistics.median(tb) * 1e3:13.1f}"
        )


if __name__ == "__main__":
    main()
