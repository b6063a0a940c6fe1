"""Speed of DPM-Solver++ 2M through `sdelab.sample` (run by hand).

    PYTHONPATH=. python benchmarks/bench_dpm_solver.py [--quick] [--device cpu|cuda]

On diffusers' own grid (DPMSolverMultistepScheduler, 20 "linspace" steps, final sigma 0,
scaled-linear betas) and the same noise model (the exact noise prediction of a 3-D Gaussian
mixture under the matching `DiscreteVPSDE`, B = 4096), three loops that compute the same
samples are timed alternately in one process:

1. ``sample(sde, score, DPMSolver(2, lower_order_final=False), schedule=Times(ts),
   denoise=True)`` (equal to diffusers to 1e-8, see tests/test_dpm_solver.py);
2. a hand-written minimal loop of the same update with precomputed Python-float coefficients;
3. diffusers' loop (``set_timesteps``, ``scale_model_input``, ``step``).

Each loop draws its own x_T ~ N(0, I) from the same seed, as `sample` does (so the three
compute the same samples from a seed, and the ~60 us draw is in every timing).

Each round times every loop ``inner`` times in a row (10; 2 with ``--quick``), in an order
rotated from round to round. It prints the median and the range of the per-round ratios
sample/minimal (target <= 1.10) and sample/diffusers (target <= 1.0), and the ratio of the
fastest rounds (the least disturbed by other work on a shared machine).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import sdelab
from sdelab import DiscreteVPSDE, DPMSolver, GaussianMixture, Times


def setup(device: str, batch: int):
    import diffusers

    sched = diffusers.DPMSolverMultistepScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        timestep_spacing="linspace",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    sde = DiscreteVPSDE.from_diffusers(sched.config)
    g = torch.Generator().manual_seed(0)
    mix = GaussianMixture(torch.randn(4, 3, generator=g), 0.2 + 0.3 * torch.rand(4, 3, generator=g))
    mix = mix.to(device)
    score = mix.score(sde)

    def eps_model(x, timestep):  # diffusers' model: the noise prediction -sigma(t) s(x, t)
        t = float(timestep) / (sde.num_train_timesteps - 1)
        return -float(sde.std(t)) * score(x, t)

    return sched, sde, score, eps_model


def minimal_loop(sde, score, shape, ts, seed, device):
    """DPM-Solver++ 2M by hand (Lu et al. 2022b, Alg. 2) with the final Tweedie step, from
    x_T ~ N(0, I) drawn with the seed (as `sample` draws it)."""
    x = torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)
    m = [float(sde.mean_coeff(t)) for t in ts]
    s = [float(sde.std(t)) for t in ts]
    lam = [math.log(a / b) for a, b in zip(m, s, strict=True)]
    prev = None
    for i in range(len(ts) - 1):
        d = (x + s[i] ** 2 * score(x, ts[i])) / m[i]
        h = lam[i + 1] - lam[i]
        b0 = -m[i + 1] * math.expm1(-h)
        if prev is None:
            x = (s[i + 1] / s[i]) * x + b0 * d
        else:
            r0 = (lam[i] - lam[i - 1]) / h
            x = (s[i + 1] / s[i]) * x + b0 * d + (0.5 * b0 / r0) * (d - prev)
        prev = d
    return (x + s[-1] ** 2 * score(x, ts[-1])) / m[-1]


def diffusers_loop(sched, eps_model, shape, steps, seed, device):
    x = torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)
    sched.set_timesteps(steps, device=x.device)
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(eps_model(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer rounds and a smaller batch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    rounds, batch = (5, 1024) if args.quick else (21, 4096)
    inner = 2 if args.quick else 10
    torch.set_num_threads(1)
    sched, sde, score, eps_model = setup(args.device, batch)
    sched.set_timesteps(args.steps)
    ts = [int(t) / (sde.num_train_timesteps - 1) for t in sched.timesteps]
    solver = DPMSolver(2, lower_order_final=False)  # diffusers' "zero" final: see the tests

    schedule = Times(ts)  # built once, as a user would

    def run_sample():
        g = torch.Generator(args.device).manual_seed(1)
        return sdelab.sample(
            sde,
            score,
            solver,
            (batch, 3),
            schedule=schedule,
            eps=ts[-1],
            denoise=True,
            generator=g,
            device=args.device,
        ).x

    runs = {
        "sample": run_sample,
        "minimal": lambda: minimal_loop(sde, score, (batch, 3), ts, 1, args.device),
        "diffusers": lambda: diffusers_loop(
            sched, eps_model, (batch, 3), args.steps, 1, args.device
        ),
    }
    outs = {k: f() for k, f in runs.items()}  # warm-up, and the three agree
    ref = outs["minimal"].abs().max()
    for k in ("sample", "diffusers"):
        print(
            f"max |{k} - minimal| / max |minimal| = {float((outs[k] - outs['minimal']).abs().max() / ref):.2e}"
        )
    times = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        # each round times every loop `inner` times in a row, in an order rotated per round
        for k in names[r % len(names) :] + names[: r % len(names)]:
            f = runs[k]
            if args.device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            if args.device != "cpu":
                torch.cuda.synchronize()
            times[k].append((time.perf_counter() - t0) / inner)
    for other, target in (("minimal", 1.10), ("diffusers", 1.0)):
        ratios = [a / b for a, b in zip(times["sample"], times[other], strict=True)]
        print(
            f"sample / {other}: median {statistics.median(ratios):.3f}, range "
            f"{min(ratios):.3f}-{max(ratios):.3f} over {rounds} rounds; ratio of the fastest "
            f"rounds {min(times['sample']) / min(times[other]):.3f} (target <= {target})"
        )
    for k, v in times.items():
        print(f"  {k}: median {statistics.median(v) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
