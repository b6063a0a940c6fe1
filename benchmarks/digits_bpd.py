r"""Test-set bits/dim on scikit-learn's 8x8 digits: a trained score model through the
probability-flow ODE against two classical density estimators, all on the same split and the
same uniform dequantisation.

Run by hand (the default trains a UNet for 12,000 steps, about 16 minutes on one core of the
2-core development machine, about 22 minutes in all with the baselines and the validation
checks; ``--quick`` is a smoke run):

    PYTHONPATH=$PWD python benchmarks/digits_bpd.py --out digits-bpd
    PYTHONPATH=$PWD python benchmarks/digits_bpd.py --quick --out /tmp/digits

**Data.** `sdelab.data.load("digits")`: 1797 images of 8x8 = 64 pixels with $L = 17$ grey
levels $k$, split 1297 / 200 / 300 (train / validation / test), stored as bin centres in
$[-1, 1]$: $x = -1 + (k + \tfrac12)\Delta$, $\Delta = 2/17$ (`Dataset.bin_width`). Every model
is a density $p_x$ on $\mathbb R^{64}$ fitted to dequantised data $x = -1 + (k + u)\Delta$,
$u \sim \mathcal U[0, 1)^{64}$ (`Dataset.dequantize`). The test images are dequantised once,
with a fixed seed, and the same tensor is scored by all three models.

**Bits/dim.** With $v = k + u \in [0, L)^D$ the dequantised levels and $x = -1 + \Delta v$,
the change of variables gives $p_v(v) = p_x(x)\,\Delta^D$, and Jensen's inequality bounds the
discrete model, $-\log P(k) \le \mathbb E_u[-\log p_v(k + u)]$ (Theis et al. 2016). So

$$ \mathrm{bpd} = \frac{-\log p_x(x) - D\log\Delta}{D\ln 2}
   = \frac{\mathrm{nll}_x}{D\ln 2} + \log_2\frac{L}{2}, \qquad D = 64,\ L = 17, $$

about $\mathrm{nll}_x/(64\ln 2) + 3.087$; the uniform density on $[-1, 1]^{64}$ scores
$\log_2 17 = 4.09$ (checked when the script runs). The same formula is applied to every
model; none sees the test set before it is scored.

**Baselines** (scikit-learn, float64, fitted on one dequantised draw of the train split,
chosen by the mean log-likelihood of one dequantised draw of the validation split):
`sklearn.mixture.GaussianMixture` with full covariances (``n_components`` and ``reg_covar``
from a small grid) and `sklearn.neighbors.KernelDensity` with a Gaussian kernel (bandwidth
from a grid).

**The score model.** An `sdelab.nets.UNet` (16 base channels, lr 2e-3; ``--net mlp`` for an
`sdelab.nets.MLPScore` of hidden width 512 and depth 4 at lr 1e-3, the earlier default, which
memorises the 1297 training images after about 8000 steps) trained with
`sdelab.training.train` under the VP SDE (the likelihood weighting of Song, Durkan, Murray &
Ermon 2021, noise parametrisation; `train` dequantises each batch afresh), in ``chunks`` equal
chunks (each resumes from the last checkpoint); after each chunk the EMA score's validation
bits/dim is measured, and the best chunk is kept (early stopping). It is scored with
`sdelab.log_likelihood` (probability-flow ODE, RK45, Hutchinson trace estimator) at
$\varepsilon = 10^{-5}$: the density $p_\varepsilon$ of the model's flow, a proper density on
$\mathbb R^{64}$.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import sdelab
from sdelab.data import load
from sdelab.nets import MLPScore, UNet
from sdelab.training import train

GMM_COMPONENTS = (1, 2, 4, 8, 16)
GMM_REG = (1e-4, 1e-3)
KDE_BANDWIDTHS = (0.1, 0.13, 0.16, 0.2, 0.25, 0.32, 0.4)
#: the AdamW learning rate of each network (its best on validation)
LR = {"unet": 2e-3, "mlp": 1e-3}
SIZES = {
    "default": {
        "steps": 12000,
        "chunks": 6,
        "batch_size": 128,
        "width": {"unet": 16, "mlp": 512},
        "n_test": 300,
        "rtol": 1e-5,
        "rtol_val": 1e-4,
    },
    "quick": {
        "steps": 60,
        "chunks": 2,
        "batch_size": 64,
        "width": {"unet": 8, "mlp": 64},
        "n_test": 40,
        "rtol": 1e-3,
        "rtol_val": 1e-3,
    },
}


def bits_per_dim(logp: np.ndarray | torch.Tensor, dim: int, bin_width: float) -> float:
    r"""Mean bits/dim of dequantised data from log-densities $\log p_x$ (nats) on the scaled
    data: $\mathrm{bpd} = (-\log p_x - D\log\Delta)/(D\ln 2)$ (see the module docs)."""
    nll = -float(np.mean(np.asarray(logp, dtype=np.float64)))
    return (nll - dim * math.log(bin_width)) / (dim * math.log(2.0))


def _median_bpd(logp, dim: int, bin_width: float) -> float:
    """The median over the test images of each image's bits/dim (robust to a few outliers)."""
    return bits_per_dim(np.median(np.asarray(logp, dtype=np.float64)), dim, bin_width)


def _stderr_bpd(logp, dim: int) -> float:
    """Standard error of the mean bpd over the test images: std(log p) / (sqrt(n) D ln 2)."""
    a = np.asarray(logp, dtype=np.float64)
    return float(a.std(ddof=1) / math.sqrt(a.size) / (dim * math.log(2.0)))


def fit_gmm(xtr, xva, dim, width, log) -> dict:
    from sklearn.mixture import GaussianMixture

    best = None
    for k in GMM_COMPONENTS:
        for reg in GMM_REG:
            m = GaussianMixture(k, covariance_type="full", reg_covar=reg, random_state=0)
            m.fit(xtr)
            va = bits_per_dim(m.score_samples(xva), dim, width)
            log(f"  GMM k={k:2d} reg_covar={reg:g}: validation {va:.4f} bpd")
            if best is None or va < best[0]:
                best = (va, m, {"n_components": k, "reg_covar": reg})
    return {"model": best[1], "chosen": best[2], "validation_bpd": best[0]}


def fit_kde(xtr, xva, dim, width, log) -> dict:
    from sklearn.neighbors import KernelDensity

    best = None
    for bw in KDE_BANDWIDTHS:
        m = KernelDensity(kernel="gaussian", bandwidth=bw).fit(xtr)
        va = bits_per_dim(m.score_samples(xva), dim, width)
        log(f"  KDE bandwidth={bw:g}: validation {va:.4f} bpd")
        if best is None or va < best[0]:
            best = (va, m, {"bandwidth": bw})
    return {"model": best[1], "chosen": best[2], "validation_bpd": best[0]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="digits-bpd", help="output folder")
    p.add_argument("--quick", action="store_true", help="a smoke run (a minute)")
    p.add_argument("--steps", type=int, help="training steps (default: by size)")
    p.add_argument("--net", choices=("unet", "mlp"), default="unet", help="the network")
    p.add_argument("--width", type=int, help="UNet base channels (16) or MLP hidden width (512)")
    p.add_argument("--chunks", type=int, help="validation checks (early stopping) per run")
    p.add_argument("--weighting", default="likelihood")
    p.add_argument("--parametrization", default="noise")
    p.add_argument("--lr", type=float, help="AdamW learning rate (2e-3 UNet, 1e-3 MLP)")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "default"])
    size["width"] = size["width"][args.net]
    if args.lr is None:
        args.lr = LR[args.net]
    for k in ("steps", "width", "chunks"):
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(s: str) -> None:
        print(s, flush=True)

    tr, va, te = (load("digits", split=s, dtype=torch.float64) for s in sdelab.data.SPLITS)
    width, dim = tr.bin_width, tr.dim
    assert abs(bits_per_dim(np.full(3, -dim * math.log(2.0)), dim, width) - math.log2(17)) < 1e-12
    g = torch.Generator().manual_seed(1000 + args.seed)
    xtr, xva = (d.dequantize(generator=g).reshape(len(d), -1).numpy() for d in (tr, va))
    x_test = te.dequantize(generator=torch.Generator().manual_seed(2000 + args.seed))
    x_test = x_test[: size["n_test"]]
    xte = x_test.reshape(x_test.shape[0], -1).numpy()

    results: dict = {"size": size, "args": vars(args), "models": {}}
    log("baselines (fitted on the dequantised train split, chosen on validation):")
    for name, fit in (("GaussianMixture (full)", fit_gmm), ("Gaussian KDE", fit_kde)):
        t0 = time.perf_counter()
        fitted = fit(xtr, xva, dim, width, log)
        lp = fitted["model"].score_samples(xte)
        results["models"][name] = {
            "test_bpd": bits_per_dim(lp, dim, width), "stderr": _stderr_bpd(lp, dim),
            "median_bpd": _median_bpd(lp, dim, width),
            "validation_bpd": fitted["validation_bpd"], "chosen": fitted["chosen"],
            "fit_s": time.perf_counter() - t0,
        }  # fmt: skip

    sde = sdelab.VPSDE()
    torch.manual_seed(args.seed)
    if args.net == "mlp":
        net, label = MLPScore(dim, hidden=size["width"], depth=4), f"MLP {size['width']}x4"
    else:
        net, label = UNet(channels=1, base=size["width"]), f"UNet base {size['width']}"
    log(f"score model: {label}, {size['steps']} steps of train in {size['chunks']} chunks ...")
    x_val = torch.from_numpy(xva).float().reshape(-1, *tr.sample_shape)
    train_s, best = 0.0, None
    for i in range(1, size["chunks"] + 1):
        step = size["steps"] * i // size["chunks"]
        t0 = time.perf_counter()
        res = train(
            sde, net, load("digits"), steps=step, batch_size=size["batch_size"], lr=args.lr,
            ema=args.ema, weighting=args.weighting, parametrization=args.parametrization,
            out=out / "checkpoint", resume=i > 1, seed=args.seed, progress=False,
        )  # fmt: skip
        train_s += time.perf_counter() - t0
        val = sdelab.log_likelihood(
            sde, res.score, x_val, rtol=size["rtol_val"], atol=size["rtol_val"], eps=1e-5,
            generator=torch.Generator().manual_seed(4),
        )  # fmt: skip
        v = bits_per_dim(val.logp.double().numpy(), dim, width)
        log(f"  step {step:6d}: validation {v:.4f} bpd (train {train_s:.0f} s)")
        if best is None or v < best[0]:
            best = (v, step, copy.deepcopy(res.score))
    best_val, best_step, score = best
    log(f"  chosen on validation: step {best_step}; log-likelihood of {x_test.shape[0]} test "
        "images ...")  # fmt: skip
    t0 = time.perf_counter()
    ll = sdelab.log_likelihood(
        sde, score, x_test.to(torch.float32), rtol=size["rtol"], atol=size["rtol"],
        eps=1e-5, generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    lp = ll.logp.double().numpy()
    results["models"][f"score model ({label}, {net.parameter_count:,} parameters)"] = {
        "test_bpd": bits_per_dim(lp, dim, width), "stderr": _stderr_bpd(lp, dim),
        "median_bpd": _median_bpd(lp, dim, width), "train_s": train_s,
        "likelihood_s": time.perf_counter() - t0, "nfe": int(ll.nfe),
        "steps": size["steps"], "final_loss": float(np.mean(res.losses[-200:])),
        "chosen": {"step": best_step}, "validation_bpd": best_val,
    }  # fmt: skip

    lines = [
        "| model | test bits/dim | std. error | median | chosen on validation | time |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, r in results["models"].items():
        chosen = ", ".join(f"{k}={v:g}" for k, v in r.get("chosen", {}).items()) or "-"
        secs = r.get("fit_s", r.get("train_s", 0.0))
        when = f"fit {secs:.0f} s" if "fit_s" in r else f"train {secs:.0f} s (all steps)"
        if "likelihood_s" in r:
            when += f" + likelihood {r['likelihood_s']:.0f} s ({r['nfe']} NFE)"
        lines.append(
            f"| {name} | {r['test_bpd']:.3f} | {r['stderr']:.3f} | {r['median_bpd']:.3f} | "
            f"{chosen} | {when} |"
        )
    md = "\n".join(lines)
    bl = min(r["test_bpd"] for n, r in results["models"].items() if "score model" not in n)
    sm = next(r["test_bpd"] for n, r in results["models"].items() if "score model" in n)
    verdict = (
        f"the score model {'beats' if sm < bl else 'does NOT beat'} the best baseline "
        f"({sm:.3f} vs {bl:.3f} bits/dim)"
    )
    print("\n" + md + "\n\n" + verdict)
    (out / "table.md").write_text(md + "\n\n" + verdict + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
