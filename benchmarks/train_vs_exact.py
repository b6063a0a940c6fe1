r"""A trained score measured against the exact one, on the built-in mixtures (VP SDE).

Run by hand (the default takes tens of minutes on a busy 2-core machine; ``--quick`` < 1 min):

    PYTHONPATH=$PWD python benchmarks/train_vs_exact.py --out train-vs-exact
    PYTHONPATH=$PWD python benchmarks/train_vs_exact.py --quick --out /tmp/tve

For each of ``gmm2d`` and ``gmm16`` an `sdelab.nets.MLPScore` is trained with
`sdelab.training.train` on the data set's train split, in chunks of ``--every`` steps (each
chunk resumes from the last checkpoint; the first starts over), and after each chunk the weighted Fisher divergence
of the EMA score to the exact score,

$$ \mathcal D_{\sigma^2} = \mathbb E_t\,\sigma(t)^2\,\mathbb E_{x_t}\lVert s_\theta(x_t, t)
   - \nabla\log p_t(x_t)\rVert^2 \quad (\text{`sdelab.training.fisher_divergence`}), $$

is recorded on held-out rows (the validation split) with its standard error; the curve is
plotted to ``fisher_vs_step.png``.

Then the trained model is sampled with the probability-flow ODE (scipy RK45, rtol = atol =
1e-5) and its energy distance to an exact sample of the same size is reported as a multiple
of the noise floor (the mean energy distance between pairs of exact samples of that size).

Last, the same solver x steps grid is run twice through `sdelab.experiments.compare` with the
same data sample as truth: once with the trained score, once with the exact score. The energy
distance with the exact score is solver error only; the excess with the trained score is
score error. Markdown tables are printed and written to ``tables.md``; ``results.json`` holds
every number.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import sdelab
from sdelab.data import load
from sdelab.experiments import compare, energy_distance
from sdelab.nets import MLPScore
from sdelab.training import fisher_divergence, train

#: the side-by-side grid: the paper's samplers, a corrector, and a fast solver
GRID_SOLVERS = [
    "euler_maruyama",
    {"kind": "reverse_diffusion", "probability_flow": True},
    {"kind": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"},
    {"kind": "dpm_solver", "schedule": "logsnr"},
]
SIZES = {
    "default": {"steps": 20000, "every": 1000, "n_fisher": 2000, "n_energy": 4000,
                "grid_steps": [10, 20, 50, 200], "grid_n": 2000, "grid_seeds": [0, 1, 2],
                "hidden": 256},
    "quick": {"steps": 300, "every": 100, "n_fisher": 500, "n_energy": 500,
              "grid_steps": [10, 50], "grid_n": 300, "grid_seeds": [0], "hidden": 64},
}  # fmt: skip


def fisher_curve(sde, data, mixture, held_out, size, out: Path, seed: int, log) -> dict:
    """Train in chunks of ``size["every"]`` steps; the Fisher divergence after each chunk."""
    model = MLPScore(data.dim, hidden=size["hidden"])
    curve, t_train, result = [], 0.0, None
    for step in range(size["every"], size["steps"] + 1, size["every"]):
        t0 = time.perf_counter()
        result = train(
            sde, model, data, steps=step, out=out, resume=step > size["every"], seed=seed,
            progress=False,
        )  # fmt: skip
        t_train += time.perf_counter() - t0
        fd = fisher_divergence(
            sde, result.score, mixture, held_out, n_t=4, generator=torch.Generator().manual_seed(1)
        )
        curve.append({"step": step, "fisher": fd.value, "stderr": fd.stderr})
        log(f"  step {step:6d}  Fisher {fd}  (train {t_train:.0f} s)")
    return {"curve": curve, "train_s": t_train, "score": result.score}


def energy_vs_floor(sde, score, mixture, n: int, seed: int, draws: int = 4) -> dict:
    """Energy distance of probability-flow samples of ``score`` to an exact sample, and the
    floor: the mean energy distance between ``draws`` pairs of exact samples of size ``n``."""
    g = torch.Generator().manual_seed(10_000 + seed)
    truth = mixture.sample(n, generator=g)
    floors = [float(energy_distance(mixture.sample(n, generator=g), truth)) for _ in range(draws)]
    solver = sdelab.ProbabilityFlowODE(rtol=1e-5, atol=1e-5)
    res = sdelab.sample(
        sde,
        score,
        solver,
        (n, mixture.dim),
        eps=1e-3,
        generator=torch.Generator().manual_seed(seed),
    )
    e = float(energy_distance(res.x.to(truth.dtype), truth))
    floor = sum(floors) / draws
    sd = (sum((f - floor) ** 2 for f in floors) / (draws - 1)) ** 0.5
    return {"energy": e, "floor": floor, "floor_sd": sd, "multiple": e / floor, "nfe": res.nfe}


def side_by_side(sde_name, trained, mixture, size, out: Path, seed: int) -> list[dict]:
    """The same grid with the trained and the exact score and the same truth sample; the
    energy distances and floors are averaged over the grid's seeds."""
    data = mixture.sample(2 * size["grid_n"] + 16, generator=torch.Generator().manual_seed(seed))
    grid = {
        "name": "train_vs_exact",
        "sdes": [sde_name],
        "solvers": GRID_SOLVERS,
        "steps": size["grid_steps"],
        "n_samples": size["grid_n"],
        "seeds": size["grid_seeds"],
        "metric": "energy",
    }
    runs = {}
    for which, make in (("trained", lambda sde: trained), ("exact", mixture.score)):
        res = compare(grid, out / which, score=make, data=data, progress=False, plots=False)
        cells: dict = {}
        for r in res.records:
            cells.setdefault((r["solver"], r["steps"]), []).append(r)
        runs[which] = cells
    rows = []
    for key, recs in runs["trained"].items():
        trained_e, exact_e = (_mean(runs[w][key], "energy") for w in ("trained", "exact"))
        floor = sum(r["floor"]["energy"] for r in recs) / len(recs)
        rows.append({
            "solver": key[0], "steps": key[1], "nfe": recs[0]["nfe"], "trained": trained_e,
            "exact": exact_e, "floor": floor, "seeds": len(recs),
        })  # fmt: skip
    return rows


def _mean(records: list[dict], metric: str) -> float | None:
    """The mean of ``metric`` over the records (seeds), ``None`` if any cell failed."""
    vals = [r["metrics"].get(metric) for r in records]
    return None if any(v is None for v in vals) else sum(vals) / len(vals)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2e}"


def tables(results: dict) -> str:
    lines = []
    for name, r in results["datasets"].items():
        lines += [f"### {name} (VP, MLPScore, {r['params']:,} parameters, train {r['train_s']:.0f} s)",
                  "", "| step | Fisher divergence (sigma^2) | std. error |", "|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {c['step']} | {c['fisher']:.4g} | {c['stderr']:.2g} |" for c in r["curve"]]
        e = r["energy"]
        lines += ["", "| score | energy distance | noise floor | multiple of floor | NFE |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for which in ("trained", "exact"):
            v = e[which]
            lines.append(
                f"| {which} | {_fmt(v['energy'])} | {_fmt(v['floor'])} +- {_fmt(v['floor_sd'])} "
                f"| {v['multiple']:.2f} | {v['nfe']} |"
            )
        seeds = r["grid"][0]["seeds"] if r["grid"] else 0
        lines += ["", f"Same grid, same truth sample, mean over {seeds} sampler seed(s):", "",
                  "| solver | steps | NFE | energy, trained score | energy, exact score | "
                  "score error (difference) | floor |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in r["grid"]:
            diff = (
                None if row["trained"] is None or row["exact"] is None
                else row["trained"] - row["exact"]
            )  # fmt: skip
            lines.append(
                f"| {row['solver']} | {row['steps']} | {row['nfe']} | {_fmt(row['trained'])} | "
                f"{_fmt(row['exact'])} | {_fmt(diff)} | {_fmt(row['floor'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results["datasets"].items():
        steps = [c["step"] for c in r["curve"]]
        ax.errorbar(steps, [c["fisher"] for c in r["curve"]],
                    yerr=[2 * c["stderr"] for c in r["curve"]], marker="o", capsize=3, label=name)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(r"$E_t\,\sigma^2 E\,|s_\theta - \nabla\log p_t|^2$")
    ax.set_title("Fisher divergence of the trained score to the exact score (VP)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="train-vs-exact", help="output folder")
    p.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    p.add_argument("--datasets", nargs="+", default=["gmm2d", "gmm16"])
    p.add_argument("--steps", type=int, help="training steps (default: by size)")
    p.add_argument("--every", type=int, help="steps between Fisher evaluations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "default"])
    for k in ("steps", "every"):
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sde = sdelab.VPSDE()
    results = {"size": size, "seed": args.seed, "datasets": {}}
    t_all = time.perf_counter()
    for name in args.datasets:
        print(f"{name}:", flush=True)
        data = load(name, seed=args.seed)
        mixture = data.mixture.to(dtype=torch.float32)
        held_out = load(name, split="validation", n=size["n_fisher"], seed=args.seed).data
        fc = fisher_curve(sde, data, mixture, held_out, size, out / name / "checkpoint",
                          args.seed, lambda s: print(s, flush=True))  # fmt: skip
        score = fc.pop("score")
        energy = {
            "trained": energy_vs_floor(sde, score, mixture, size["n_energy"], args.seed),
            "exact": energy_vs_floor(sde, mixture.score(sde), mixture, size["n_energy"], args.seed),
        }
        grid = side_by_side("vp", score, mixture, size, out / name / "compare", args.seed)
        params = MLPScore(data.dim, hidden=size["hidden"]).parameter_count
        results["datasets"][name] = {**fc, "energy": energy, "grid": grid, "params": params}
    results["wall_s"] = time.perf_counter() - t_all
    md = tables(results)
    print("\n" + md)
    (out / "tables.md").write_text(md + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    try:
        plot(results, out / "fisher_vs_step.png")
    except ImportError:
        print("plot skipped: matplotlib is not installed")
    print(f"wall time {results['wall_s']:.0f} s; wrote {out}/results.json, tables.md, "
          "fisher_vs_step.png")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
