"""Speed of `sdelab.sample` against a hand-written minimal torch loop (run by hand).

    PYTHONPATH=. python benchmarks/bench_sampling.py [--device cpu|cuda] [--repeats 15]

1. Overhead: `sample` with `EulerMaruyama` on VP (500 steps, B = 4096, d = 2, the closed-form
   score of a single Gaussian) alternated with a minimal loop doing the same update with the
   same score, in one process; prints the median time ratio (target <= 1.15).
2. Scaling: time against batch size and against steps (should grow linearly).
3. Memory: peak memory against steps, with and without the trajectory (flat without it).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import sdelab


class GaussianScore:
    r"""Exact score of $p_t$ when $p_0 = \mathcal N(\mu, s_0^2 I)$ under a linear SDE:
    $-(x - m(t)\mu)/(m(t)^2 s_0^2 + \sigma(t)^2)$ (two tensor ops for a float t)."""

    def __init__(self, sde, mu: torch.Tensor, s0: float) -> None:
        self.sde, self.mu, self.s0 = sde, mu, s0

    def __call__(self, x, t):
        m = self.sde.mean_coeff(t)
        var = m * m * self.s0**2 + self.sde.std(t) ** 2
        return (m * self.mu - x) / var


def minimal_loop(sde, score, shape, steps, eps, generator, device):
    """What a user would write by hand: Euler-Maruyama on the reverse VP SDE."""
    x = torch.randn(shape, generator=generator, device=device)
    dt = (sde.T - eps) / steps
    for i in range(steps):
        t = sde.T - i * dt
        beta = sde.beta_min + t * (sde.beta_max - sde.beta_min)
        drift = -0.5 * beta * x - beta * score(x, t)
        x = (
            x
            - drift * dt
            + math.sqrt(beta * dt) * torch.randn(shape, generator=generator, device=device)
        )
    return x


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    dev = args.device
    torch.set_num_threads(1)
    sde = sdelab.VPSDE()
    score = GaussianScore(sde, torch.tensor([1.0, -0.5], device=dev), 0.5)
    shape, steps, eps = (args.batch, 2), args.steps, 1e-3
    solver = sdelab.EulerMaruyama()

    def ours():
        g = torch.Generator(dev).manual_seed(0)
        return sdelab.sample(sde, score, solver, shape, steps=steps, eps=eps, generator=g).x

    def hand():
        g = torch.Generator(dev).manual_seed(0)
        return minimal_loop(sde, score, shape, steps, eps, g, dev)

    # same numbers: both draw the prior then one normal per step from the same generator
    a, b = ours(), hand()
    print(f"max |sample - minimal loop| = {(a - b).abs().max().item():.2e} (same seed)")
    for _ in range(2):
        ours(), hand()
    t_ours, t_hand, ratios = [], [], []
    for _ in range(args.repeats):
        a, b = timed(ours, dev), timed(hand, dev)
        t_ours.append(a)
        t_hand.append(b)
        ratios.append(a / b)
    print(
        f"\n[1] EM on VP, {steps} steps, B={shape[0]}, d=2, {dev}: sample "
        f"{statistics.median(t_ours) * 1e3:.1f} ms, minimal loop "
        f"{statistics.median(t_hand) * 1e3:.1f} ms, median ratio {statistics.median(ratios):.3f} "
        f"(target <= 1.15; ratios min {min(ratios):.3f} max {max(ratios):.3f})"
    )

    def t_sample(batch, n_steps, reps=5):
        def run():
            g = torch.Generator(dev).manual_seed(0)
            sdelab.sample(sde, score, solver, (batch, 2), steps=n_steps, generator=g)

        run()
        return statistics.median(timed(run, dev) for _ in range(reps))

    print("\n[2] scaling (median of 5)")
    base = t_sample(4096, 200)
    for n in (100, 200, 400, 800):
        t = t_sample(4096, n)
        print(
            f"  steps={n:5d} B=4096:  {t * 1e3:8.1f} ms  time/steps ratio vs 200: "
            f"{(t / n) / (base / 200):.2f}"
        )
    base = t_sample(4096, 200)
    for B in (4096, 16384, 65536, 262144):
        t = t_sample(B, 200)
        print(
            f"  B={B:7d} steps=200: {t * 1e3:8.1f} ms  time/B ratio vs 4096: "
            f"{(t / B) / (base / 4096):.2f}"
        )

    print("\n[3] peak memory against steps (B=16384, d=2: the state is 128 KiB)")
    for traj in (False, True):
        for n in (200, 800, 3200):
            peak = peak_memory(dev, n, traj)
            print(f"  return_trajectory={traj!s:5} steps={n:5d}: peak +{peak / 2**20:8.2f} MiB")


def _memory_child(dev: str, steps: int, traj: bool) -> int:
    """Peak memory added by one `sample` call, in bytes (run in a fresh process on CPU)."""
    sde = sdelab.VPSDE()
    score = GaussianScore(sde, torch.tensor([1.0, -0.5], device=dev), 0.5)
    shape = (16384, 2)

    def run(n, trajectory):
        g = torch.Generator(dev).manual_seed(0)
        return sdelab.sample(
            sde,
            score,
            sdelab.EulerMaruyama(),
            shape,
            steps=n,
            generator=g,
            return_trajectory=trajectory,
        )

    # warm up past the first 256 score calls (CountingScore's first fold), without a
    # trajectory: ru_maxrss is a high-water mark, and first use of a kernel pages in code
    run(300, False)
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run(steps, traj)
        return torch.cuda.max_memory_allocated() - base
    before = _peak_rss()
    run(steps, traj)
    return _peak_rss() - before


def _peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM of /proc/self/status on Linux
    (ru_maxrss there survives exec, so a child would inherit its parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory(dev: str, steps: int, traj: bool) -> int:
    """`_memory_child` in a fresh interpreter, so earlier runs do not set the peak."""
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bench_sampling as b; "
        "print(b._memory_child(sys.argv[2], int(sys.argv[3]), sys.argv[4] == 'True'))"
    )
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    out = subprocess.run(
        [sys.executable, "-c", code, here, dev, str(steps), str(traj)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.split()[-1])


if __name__ == "__main__":
    main()
