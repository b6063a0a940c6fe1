# %% [markdown]
# # Comparing solvers against the truth
#
# Which sampler, how many steps, for which SDE? With the exact score of a Gaussian mixture
# (the [oracle](../../concepts/oracle/)) the only errors left are the solvers', and we can
# measure them against samples of the true data. This tutorial
#
# 1. shows why every error needs a **noise floor** (two exact samples already differ),
# 2. runs a small comparison grid with `sdelab.experiments.compare` (the engine of
#    `sdelab compare`) and reads its table and plot,
# 3. looks at what a coarse and a fine sampler actually produce,
# 4. shows how the command line does the same, resumably, on your own grid or model.
#
# The reference is the [Solver comparison](../../concepts/compare/) page. Its source,
# [05_compare_solvers.py](05_compare_solvers.py), is a plain Python script;
# `SDELAB_TUTORIAL_SIZE=small` (CI, the docs build) runs a reduced version in seconds.

# %%
import os
import tempfile

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, display

import sdelab
from sdelab.experiments import Reference, compare, sliced_wasserstein2
from sdelab.experiments.config import build_mixture, preset

SIZE = os.environ.get("SDELAB_TUTORIAL_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"SDELAB_TUTORIAL_SIZE must be 'small' or 'full', got {SIZE!r}")
SMALL = SIZE == "small"
N = 600 if SMALL else 2000  # samples per cell
torch.set_num_threads(1)  # small batches: one thread is fastest
plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})

# the built-in 2-D benchmark: six anisotropic modes on a ring, unequal weights
gmm = build_mixture(preset("quick").datasets[0]).to(dtype=torch.float32)
print(gmm, "weights", [round(w, 2) for w in gmm.weights.tolist()])

# %% [markdown]
# ## 1. The noise floor
#
# Draw a "truth" sample and several more exact samples of the same size. Their sliced
# Wasserstein-2 distances to the truth are not zero: that spread is what a *perfect*
# sampler would score. sdelab calls its mean the noise floor, and reports every error
# beside it. It shrinks with the sample size, but slowly on multi-modal data (the number of
# points per mode fluctuates like $\sqrt n$).

# %%
gen = torch.Generator().manual_seed(0)
sizes = [250, 1000, 4000] if SMALL else [250, 1000, 4000, 16000]
for n in sizes:
    truth = gmm.sample(n, gen)
    d = torch.stack([sliced_wasserstein2(gmm.sample(n, gen), truth) for _ in range(8)])
    shifted = sliced_wasserstein2(gmm.sample(n, gen) + torch.tensor([0.3, 0.0]), truth)
    print(
        f"n={n:6d}  exact samples: SW2 = {d.mean():.3f} ± {d.std():.3f}   "
        f"shifted by 0.3: {shifted:.3f}"
    )

# %% [markdown]
# A shift of 0.3 (half a component's long axis) is hidden in the noise at $n = 250$ and
# obvious at $n = 4000$: how small an error you can resolve depends on the sample size.
# `Reference` computes all metrics at once: the sliced Wasserstein distance, the energy
# distance, the mean and covariance errors, the mode-weight error (total variation between
# the mixture weights and the samples' average mode posterior) and the log-density gap
# (mean $\log p_0$ of the samples minus that of the truth). A sample squeezed towards the
# origin and a sample that under-fills the heaviest mode (the one at $(3, 0)$) show up in
# different metrics:

# %%
n = 4000
ref = Reference(gmm.sample(n, gen), gmm)
x = gmm.sample(2 * n, gen)
rest = x[n // 2 :]
rows = {
    "exact sample": gmm.sample(n, gen),
    "scaled by 0.9": 0.9 * gmm.sample(n, gen),
    # half exact, half drawn without the mode at (3, 0): its weight drops from 0.3 to 0.15
    "mode 0 half-empty": torch.cat([x[: n // 2], rest[rest[:, 0] < 2.0]])[:n],
}
print(f"{'':18s}" + "".join(f"{k:>10s}" for k in ref.metric_names))
for name, x in rows.items():
    print(f"{name:18s}" + "".join(f"{v:10.4f}" for v in ref.evaluate(x).values()))

# %% [markdown]
# ## 2. A comparison grid
#
# A grid is a dict (or a TOML/JSON file): data, SDEs, solvers, a ladder of steps (and of
# tolerances for adaptive solvers), sample size and seeds. `compare` runs every cell, appends
# each result to `results.jsonl` in the output folder as soon as it is done, then writes the
# tables and plots. Here: VP and VE, Euler-Maruyama, the reverse-diffusion predictor with a
# Langevin corrector, ancestral sampling, and the probability-flow ODE (scipy's RK45).

# %%
grid = {
    "datasets": ["gmm2d"],
    "sdes": ["vp", "ve"],
    "solvers": [
        "euler_maruyama",
        "ancestral",
        {"kind": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"},
        {
            "kind": "probability_flow_ode",
            "tolerances": [1e-2, 1e-4] if SMALL else [1e-2, 1e-3, 1e-4],
        },
    ],
    "steps": [5, 20, 80] if SMALL else [5, 10, 20, 50, 100, 200, 500],
    "n_samples": N,
    "seeds": [0] if SMALL else [0, 1, 2],
}
out = tempfile.mkdtemp(prefix="sdelab-compare-")
res = compare(grid, out, progress=False)
print(res.summary)
print(
    f"\n{len(res.records)} cells, sampling {res.sampling_s:.1f} s, "
    f"{100 * res.score_share:.0f}% of it inside the score function"
)

# %% [markdown]
# The table gives, for each NFE budget (score evaluations), the configuration with the
# smallest error, e.g. `RD+L@20` is the predictor-corrector sampler at 20 grid steps (40
# score evaluations). The plot shows every curve; the dotted line is the noise floor and the
# shaded band floor ± 2 sd: a curve inside the band is as good as exact sampling at this
# sample size.

# %%
# alt: The error against score evaluations (NFE), log-log, for gmm2d on VP and on VE: one
#   curve per solver, the noise floor dotted and the band floor plus or minus 2 sd shaded.
display(Image(filename=str(res.files["nfe_plot"])))

# %% [markdown]
# Each record keeps everything about its cell, including the metrics we did not plot:

# %%
r = next(r for r in res.records if r["solver"] == "AS" and r["sde"] == "VE")
print({k: r[k] for k in ("sde", "solver", "steps", "seed", "nfe", "wall_s", "score_s")})
print("metrics:", {k: round(v, 4) for k, v in r["metrics"].items()})
print("floor:  ", {k: round(v, 4) for k, v in r["floor"].items()})

# %% [markdown]
# ## 3. What the numbers mean in samples
#
# Five Euler-Maruyama steps on VE leave samples far too spread (the reverse SDE starts from
# $\mathcal N(0, 50^2 I)$ and the first steps are huge); the predictor-corrector sampler at
# 80 steps is close to the truth.

# %%
sde = sdelab.VESDE()
score = gmm.score(sde)
fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
panels = [
    ("truth", gmm.sample(N, gen)),
    (
        "EM, 5 steps",
        sdelab.sample(sde, score, sdelab.EulerMaruyama(), (N, 2), steps=5, generator=gen).x,
    ),
    (
        "RD + Langevin, 80 steps",
        sdelab.sample(
            sde,
            score,
            sdelab.PC(sdelab.ReverseDiffusion(), sdelab.Langevin()),
            (N, 2),
            steps=80,
            generator=gen,
        ).x,
    ),
]
for ax, (title, x) in zip(axes, panels, strict=True):
    sw = sliced_wasserstein2(x, ref.truth)
    ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.5)
    ax.set_title(f"{title}  (SW2 {sw:.2f})")
    ax.set_xlim(-6, 6)
    ax.set_ylim(-6, 6)
plt.tight_layout()
# alt: Three scatter plots of 2-D samples on the square from -6 to 6: the truth, six
#   elongated clusters; five Euler-Maruyama steps on VE, an empty frame because the samples
#   lie far outside it; and RD + Langevin at 80 steps, close to the truth.
plt.show()

# %% [markdown]
# ## 4. The command line
#
# `sdelab compare` runs the same machinery:
#
# ```bash
# sdelab compare --quick                        # a first look, < 30 s
# sdelab compare                                # the built-in benchmark, a few minutes
# sdelab compare --config examples/compare.toml --out my-results --seeds 0 1 2
# sdelab compare --preset table1                # the structure of the paper's Table 1
# sdelab compare --score mymodel:make --data data.npy --sde vp   # your own model
# ```
#
# Kill it at any time: rerunning with the same `--out` skips the finished cells. Running
# `compare` again on our folder computes nothing new:

# %%
again = compare(grid, out, progress=False, plots=False)
print(f"second run: {again.wall_s:.2f} s for {len(again.records)} cells (all resumed)")
