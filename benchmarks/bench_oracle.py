"""Benchmark: the mixture oracle's score against a minimal hand-written torch score.

    PYTHONPATH=. python benchmarks/bench_oracle.py [--quick] [--batch 1000] [--repeats 41]

`GaussianMixture.score` is about 80 % of the sampling time of ``sdelab compare``, so it should
cost no more than the few lines anyone would write for the same mixture. The reference,
`reference_score`, is those lines: $m(t)$ and $\\sigma(t)$ (for a float t from the SDE's
public methods, which cost nothing then; for a (B,) t written inline, unchecked, as a
hand-written score would), the Gaussians' log-densities, a softmax over the components and the
weighted sum,
with an isotropic variant (one variance per component) and a diagonal one.

For every case -- d = 2 and 16, K = 8 and 25 components, isotropic and diagonal stds, the time
``t`` a Python float (the fixed-grid samplers) and a tensor of shape (B,) (per-sample times) --
the two are timed alternately in one process (the order swapped every repeat; each timing is
``--inner`` calls), and the ratio oracle / reference of each repeat is reported: median and
range over the repeats. Single-threaded by default (``--threads``), timed by this thread's
CPU time (``--clock thread``: time spent waiting for a busy machine's cores does not count;
``--clock wall`` for wall time), float32, B = 1000 (the
quick and default presets of ``sdelab compare`` draw 1000-2000 samples per cell). The two
scores are also checked to agree to float32 round-off.

The oracle checks a (B,) ``t`` once per call (one host read: it must lie in ``[0, T]``); the
reference checks nothing. The last line prices the SDE's coefficients through its public
methods against the same formulas written inline.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import Tensor

from sdelab import VPSDE, GaussianMixture

_LOG_2PI = math.log(2.0 * math.pi)


def reference_score(
    x: Tensor, m: float | Tensor, std: float | Tensor, means: Tensor, s2: Tensor, logw: Tensor
) -> Tensor:
    r"""$-\sum_k r_k (x - m\mu_k)/v_k$, $v_k = m^2 s_k^2 + \sigma^2$, written plainly.

    ``m``, ``std``: $m(t)$ and $\sigma(t)$, floats or shape (B,); ``s2`` is (K,) (isotropic) or
    (K, d) (diagonal)."""
    d = x.shape[1]
    per_sample = isinstance(m, Tensor)
    if per_sample:
        m, std = m[:, None], std[:, None]  # (B, 1)
        mu = m[:, :, None] * means  # (B, K, d)
    else:
        mu = m * means  # (K, d)
    diff = x[:, None, :] - mu
    if s2.ndim == 1:  # isotropic: v is (K,) or (B, K)
        var = m * m * s2 + std * std
        logits = logw - 0.5 * ((diff * diff).sum(-1) / var + d * var.log() + d * _LOG_2PI)
        r = logits.softmax(-1)
        return -((r / var)[:, :, None] * diff).sum(1)
    if per_sample:
        m, std = m[:, :, None], std[:, :, None]
    var = m * m * s2 + std * std  # (K, d) or (B, K, d)
    z = diff / var
    logits = logw - 0.5 * ((diff * z).sum(-1) + var.log().sum(-1) + d * _LOG_2PI)
    r = logits.softmax(-1)
    return -(r[:, :, None] * z).sum(1)


def inline_vp_coeffs(sde: VPSDE, t: Tensor) -> tuple[Tensor, Tensor]:
    r"""The VP SDE's $m(t)$ and $\sigma(t)$ for a tensor ``t``, inline and unchecked."""
    log_m = (-0.25 * (sde.beta_max - sde.beta_min) * t - 0.5 * sde.beta_min) * t
    return log_m.exp(), torch.expm1(2.0 * log_m).neg_().sqrt_()


def _time(fn, inner: int, clock) -> float:
    t0 = clock()
    for _ in range(inner):
        fn()
    return (clock() - t0) / inner


def run_case(d: int, K: int, diagonal: bool, per_sample_t: bool, args) -> dict:
    g = torch.Generator().manual_seed(d * 100 + K)
    means = 3.0 * torch.randn(K, d, generator=g)
    stds = 0.2 + 0.8 * torch.rand((K, d) if diagonal else (K,), generator=g)
    weights = 0.5 + torch.rand(K, generator=g)
    mix = GaussianMixture(means, stds, weights)
    sde = VPSDE()
    oracle = mix.score(sde)
    x = 2.0 * torch.randn(args.batch, d, generator=g)
    t = torch.rand(args.batch, generator=g) * 0.999 + 1e-3 if per_sample_t else 0.37
    s2, logw = stds**2, mix.weights.log()

    # a (B,) t is a fresh tensor at every call, as in the adaptive solvers and the likelihood
    # (so no check is skipped for having seen the same tensor before); both sides pay the copy
    fresh = (lambda: t.clone()) if per_sample_t else (lambda: t)

    def ours() -> Tensor:
        return oracle(x, fresh())

    def ref() -> Tensor:
        tt = fresh()
        m, std = inline_vp_coeffs(sde, tt) if per_sample_t else (sde.mean_coeff(t), sde.std(t))
        return reference_score(x, m, std, means, s2, logw)

    expected = ref()  # agreement to float32 round-off, relative to the score's scale
    torch.testing.assert_close(ours(), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
    for _ in range(args.warmup):
        ours(), ref()
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    ratios, t_ours, t_ref = [], [], []
    for i in range(args.repeats):
        if i % 2:
            b, a = _time(ref, args.inner, clock), _time(ours, args.inner, clock)
        else:
            a, b = _time(ours, args.inner, clock), _time(ref, args.inner, clock)
        ratios.append(a / b)
        t_ours.append(a)
        t_ref.append(b)
    return {
        "d": d,
        "K": K,
        "stds": "diagonal" if diagonal else "isotropic",
        "t": "(B,) tensor" if per_sample_t else "float",
        "oracle_us": 1e6 * statistics.median(t_ours),
        "ref_us": 1e6 * statistics.median(t_ref),
        "ratio": statistics.median(ratios),
        "lo": min(ratios),
        "hi": max(ratios),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="fewer repeats (under 10 s on an idle core)"
    )
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=41, help="alternating timings per case")
    p.add_argument("--inner", type=int, default=20, help="calls per timing")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--clock",
        choices=("thread", "wall"),
        default="thread",
        help="thread: this thread's CPU time (robust on a shared machine; needs --threads 1)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.inner, args.warmup = 11, 10, 5
    torch.set_num_threads(args.threads)
    print(
        f"GaussianMixture.score / reference_score, B = {args.batch}, float32, "
        f"{args.threads} thread(s), {args.repeats} alternating repeats of {args.inner} calls, "
        f"{args.clock} clock"
    )
    if args.clock == "thread" and args.threads != 1:
        p.error("--clock thread measures one thread: use --threads 1 or --clock wall")
    print(f"{'d':>3} {'K':>3} {'stds':>9} {'t':>11} {'oracle us':>10} {'ref us':>9}  ratio [range]")
    worst = 0.0
    for d in (2, 16):
        for K in (8, 25):
            for diagonal in (False, True):
                for per_sample_t in (False, True):
                    r = run_case(d, K, diagonal, per_sample_t, args)
                    worst = max(worst, r["ratio"])
                    print(
                        f"{r['d']:>3} {r['K']:>3} {r['stds']:>9} {r['t']:>11} "
                        f"{r['oracle_us']:>10.1f} {r['ref_us']:>9.1f}  "
                        f"{r['ratio']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
                    )
    print(f"largest median ratio: {worst:.2f}")
    sde, t = VPSDE(), torch.rand(args.batch) * 0.999 + 1e-3
    clock = time.thread_time if args.clock == "thread" else time.perf_counter

    def api_coeffs():
        return sde.marginal_coeffs(t.clone())

    api = [_time(api_coeffs, args.inner, clock) for _ in range(11)]
    inline = [_time(lambda: inline_vp_coeffs(sde, t.clone()), args.inner, clock) for _ in range(11)]
    print(
        f"the SDE's coefficients for a fresh (B,) t: "
        f"{1e6 * statistics.median(api):.1f} us via sde.marginal_coeffs (t's values checked once), "
        f"against {1e6 * statistics.median(inline):.1f} us written inline unchecked"
    )


if __name__ == "__main__":
    main()
