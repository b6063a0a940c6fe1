"""Benchmark: steps/s of `sdelab.train` against a hand-written minimal training loop.

    PYTHONPATH=. python benchmarks/bench_train.py [--steps 200] [--rounds 5] [--net mlp|unet]
        [--batch 256] [--threads 1] [--device cpu]

Both loops train the same network (``MLPScore(2)`` on gmm2d, or ``UNet()`` on the 8x8 digits
with ``--net unet``) with the same batch size, the same VP denoising score-matching loss
(sigma2 weighting, score parametrization) and AdamW. The minimal loop is what one writes by
hand: index a batch, draw t and z, one forward, backward and optimizer step; no warm-up,
gradient clipping, EMA, loss bookkeeping or progress bar. `train` does all of those (no
checkpoints, ``progress=False``) and uses torch's fused AdamW, which pays for the clipping and
the EMA on the CPU; the second ratio printed is against the minimal loop with that same fused
AdamW, i.e. the cost of the extras alone. Rounds alternate between the two (each round a fresh copy of
the same initial network), and the bar is the median over rounds of the time ratio
train / minimal: at most 1.10 (issue 10).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import sdelab
from sdelab.data import load
from sdelab.nets import MLPScore, UNet
from sdelab.training import train


def minimal_loop(
    sde, model, x, steps: int, batch: int, lr: float, seed: int, fused: bool = False
) -> float:
    """A hand-written DSM loop (eq. 7 of Song et al. 2021, lambda = sigma^2); returns seconds."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=fused or None)
    eps, n = 1e-5, x.shape[0]
    t0 = time.perf_counter()
    for _ in range(steps):
        x0 = x[torch.randint(n, (batch,), generator=g, device=x.device)]
        t = eps + (1 - eps) * torch.rand(batch, generator=g, device=x.device)
        z = torch.randn(x0.shape, generator=g, device=x.device)
        m, std = sde.marginal_coeffs(t)
        shape = (batch,) + (1,) * (x0.ndim - 1)
        xt = m.view(shape) * x0 + std.view(shape) * z
        loss = (std.view(shape) * model(xt, t) + z).reshape(batch, -1).pow(2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - t0


def train_loop(sde, model, x, steps: int, batch: int, lr: float, seed: int) -> float:
    t0 = time.perf_counter()
    train(sde, model, x, steps=steps, batch_size=batch, lr=lr, seed=seed, progress=False)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--net", choices=("mlp", "unet"), default="mlp")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.net == "mlp":
        x, net = load("gmm2d").data, MLPScore(2)
    else:
        x, net = load("digits").data, UNet()
    x = x.to(device)
    net.to(device)
    sde = sdelab.VPSDE()
    print(
        f"{type(net).__name__} ({net.parameter_count:,} parameters), batch {args.batch}, "
        f"{args.steps} steps per round, {args.rounds} rounds, {torch.get_num_threads()} "
        f"thread(s), {device}"
    )
    # warm-up of both paths (allocator, first-call overheads)
    minimal_loop(sde, copy.deepcopy(net), x, 5, args.batch, 2e-3, 0)
    train_loop(sde, copy.deepcopy(net), x, 5, args.batch, 2e-3, 0)
    ratios, ratios_f, t_min, t_fused, t_train = [], [], [], [], []
    for r in range(args.rounds):
        a = minimal_loop(sde, copy.deepcopy(net), x, args.steps, args.batch, 2e-3, r)
        f = minimal_loop(sde, copy.deepcopy(net), x, args.steps, args.batch, 2e-3, r, True)
        b = train_loop(sde, copy.deepcopy(net), x, args.steps, args.batch, 2e-3, r)
        t_min.append(a)
        t_fused.append(f)
        t_train.append(b)
        ratios.append(b / a)
        ratios_f.append(b / f)
        print(
            f"round {r}: minimal {args.steps / a:7.1f} steps/s  minimal+fused AdamW "
            f"{args.steps / f:7.1f}  train {args.steps / b:7.1f}  ratios {b / a:.3f} / "
            f"{b / f:.3f}"
        )
    med, med_f = statistics.median(ratios), statistics.median(ratios_f)
    print(
        f"median steps/s: minimal {args.steps / statistics.median(t_min):.1f}, minimal with "
        f"fused AdamW {args.steps / statistics.median(t_fused):.1f}, train "
        f"{args.steps / statistics.median(t_train):.1f}"
    )
    print(
        f"time ratio train/minimal {med:.3f} (bar 1.10: {'met' if med <= 1.10 else 'NOT met'}); "
        f"train/minimal with train's fused AdamW {med_f:.3f}"
    )


if __name__ == "__main__":
    main()
