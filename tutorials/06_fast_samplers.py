# %% [markdown]
# # Fast samplers are ODE integrators
#
# DDIM, DPM-Solver++, UniPC, DEIS, "Euler", "Heun", "LMS", PLMS: the schedulers of diffusers
# and the samplers of k-diffusion and A1111 look like a zoo of unrelated recipes. They are
# all numerical integrators of **one** ordinary differential equation, the probability-flow
# ODE of the forward SDE (Song et al. 2021, eq. 13), each on its own grid of times. This
# tutorial shows it with numbers:
#
# 1. DDIM is the exponential Euler method of that ODE, and probability-flow Euler in $t$
#    (EM-PF) is another, worse, discretisation of the same ODE;
# 2. what the data prediction of DPM-Solver++ changes against the noise prediction of
#    DPM-Solver;
# 3. the orders of convergence, measured against the exact flow;
# 4. the time grid matters as much as the method;
# 5. the field's sampler names on one plot.
#
# The data is a Gaussian mixture, whose score is exact (the
# [oracle](../../concepts/oracle/)), so the exact flow map $x_T \mapsto x_\varepsilon$ can be
# computed to $10^{-10}$ by an adaptive high-order solver (scipy's DOP853 through
# `sdelab.ProbabilityFlowODE`). Every sampler starts from the *same* $x_T$ (the same
# generator seed), so its **pathwise error** $\big(\tfrac1B\sum_b |x_b - x^\star_b|^2\big)^{1/2}$
# against that map is its discretisation error alone: no Monte-Carlo noise floor. The
# update rules are on the [Sampling](../../concepts/sampling/) page, the grids on
# [Time grids and discrete-time models](../../concepts/time_grids/). Set
# `SDELAB_TUTORIAL_SIZE=small` for the quick version the docs build runs.

# %%
import itertools
import math
import os

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import NullLocator

import sdelab
from sdelab._convergence import exact_flow_solver, fit_order, flow_error
from sdelab.experiments.config import build_mixture, preset

SIZE = os.environ.get("SDELAB_TUTORIAL_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"SDELAB_TUTORIAL_SIZE must be 'small' or 'full', got {SIZE!r}")
SMALL = SIZE == "small"
B = 128  # prior draws per run: every solver maps the same ones (both sizes)
F64 = torch.float64  # pathwise errors go down to 1e-7: float32 rounding would hide them
torch.set_num_threads(1)  # small batches: one thread is fastest
plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})

sde = sdelab.VPSDE()
EPS = 1e-3
# a smooth mixture (wide components: the flow is smooth down to eps) for the orders, and the
# built-in benchmark of `sdelab compare` (six narrow modes on a ring) for the rest
smooth = sdelab.GaussianMixture(
    [[-1.0, 0.5], [1.0, -0.5]], [[0.8, 1.0], [1.0, 0.7]], [0.4, 0.6]
).to(dtype=F64)
bench = build_mixture(preset("quick").datasets[0]).to(dtype=F64)


def run(score, solver, steps=None, schedule="uniform"):
    """One `sdelab.sample` run in float64 from the same prior draws (seed 0)."""
    return sdelab.sample(
        sde,
        score,
        solver,
        (B, 2),
        steps=steps,
        schedule=schedule,
        eps=EPS,
        generator=torch.Generator().manual_seed(0),
        dtype=F64,
    )


def error(score, exact, solver, steps, schedule="uniform"):
    """Pathwise error against the exact flow map, and the score evaluations it took."""
    res = run(score, solver, steps, schedule)
    return flow_error(res.x, exact), res.nfe


def log_axes(ax, ticks, xlabel):
    """Log-log axes with one labelled tick per measured x value and no minor labels."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(xlabel)


score_smooth = smooth.score(sde)
score_bench = bench.score(sde)
exact_smooth = run(score_smooth, exact_flow_solver()).x  # DOP853, rtol = atol = 1e-10
exact_bench = run(score_bench, exact_flow_solver()).x
em_pf = sdelab.EulerMaruyama(probability_flow=True)  # EM-PF: Euler in t on the same ODE

# %% [markdown]
# ## 1. DDIM is exponential Euler
#
# A linear SDE has Gaussian marginals $x_t = m_t x_0 + \sigma_t z$. Write its
# probability-flow ODE $\mathrm dx/\mathrm dt = f(t)x - \tfrac12 g(t)^2 \nabla\log p_t(x)$
# with the **data prediction** (Tweedie's formula) $D(x, t) = (x + \sigma_t^2\nabla\log
# p_t(x))/m_t$ and the half log-SNR $\lambda_t = \log(m_t/\sigma_t)$. Using
# $f = m'/m$ and $g^2 = (\sigma^2)' - 2(m'/m)\sigma^2$ it becomes
#
# $$ \frac{\mathrm dx}{\mathrm dt} = \frac{\sigma_t'}{\sigma_t}\,x + \lambda_t'\,m_t\,D(x, t), $$
#
# a linear term plus a nonlinear one. The linear part is solved exactly by variation of
# constants, $\mathrm d(x/\sigma)/\mathrm dt = \lambda' e^{\lambda} D$, so from $s$ to $t$
#
# $$ x_t = \frac{\sigma_t}{\sigma_s}\,x_s + \sigma_t\int_{\lambda_s}^{\lambda_t} e^{\lambda}
#    D(x_\lambda, \lambda)\,\mathrm d\lambda \qquad\text{(exact)}. $$
#
# Every exponential integrator approximates only that integral. Freezing $D$ at its value at
# the start of the step, $D(x_s, s)$, gives, with $h = \lambda_t - \lambda_s$,
#
# $$ x_t = \frac{\sigma_t}{\sigma_s}\,x_s + m_t\,(1 - e^{-h})\,D(x_s, s)
#        = m_t\,D + \sigma_t\,\frac{x_s - m_s D}{\sigma_s}, $$
#
# which is DDIM's deterministic update ($\eta = 0$, Song, Meng & Ermon 2021, eq. 12: "predict
# $x_0$, re-noise it with the predicted noise"). Written out by hand it is three lines;
# on the same grid and the same $x_T$ it reproduces `sdelab.DDIM()` to rounding:


# %%
def exponential_euler(x, s, t, score):
    d = (x + sde.std(s) ** 2 * score(x, s)) / sde.mean_coeff(s)  # D(x_s, s), one score call
    h = sde.log_snr(t) - sde.log_snr(s)
    return sde.std(t) / sde.std(s) * x - sde.mean_coeff(t) * math.expm1(-h) * d


ts = sdelab.time_grid(sde, 10, "logsnr", EPS)
x = sde.prior_sample((B, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
for s, t in itertools.pairwise(ts):
    x = exponential_euler(x, s, t, score_smooth)

ddim = run(score_smooth, sdelab.DDIM(), 10, "logsnr")
euler_s = run(score_smooth, sdelab.Euler(), 10, "logsnr")
print(
    f"hand-written exponential Euler vs sdelab.DDIM():  max |diff| = {(x - ddim.x).abs().max():.1e}"
)
print(
    f"k-diffusion's Euler (in s = sigma/m) vs DDIM():   max |diff| = {(euler_s.x - ddim.x).abs().max():.1e}"
)
print(f"DDIM's own error against the exact flow (10 steps): {flow_error(ddim.x, exact_smooth):.2e}")

# %% [markdown]
# The second line is a bonus: k-diffusion's "Euler" sampler, Euler's method on
# $\mathrm d(x/m)/\mathrm ds = (x/m - D)/s$ in the noise-to-signal ratio $s = \sigma/m =
# e^{-\lambda}$ (Karras et al. 2022), is the *same* update: in the variables $(x/m, s)$ the
# linear part disappears and Euler's step is exact for constant $D$.
#
# The sampler sdelab has always had, probability-flow Euler in $t$ (`EulerMaruyama(
# probability_flow=True)`, EM-PF), applies Euler's method to the ODE as written in $t$, linear
# part included. Both are first order, yet they are different integrators, exact for
# different data. DDIM is exact when $D$ is constant along the path: data concentrated at a
# point, relative to the noise. EM-PF is exact when the data is $\mathcal N(0, I)$, the VP
# prior: then $p_t = \mathcal N(0, I)$ for all $t$, the score is $-x$ and the drift
# $f x - \tfrac12 g^2 \nabla\log p_t = -\tfrac12\beta x + \tfrac12\beta x$ vanishes, while the
# exponential split writes that zero as two large terms and freezing $D = m_s x_s$ breaks their
# cancellation. Gaussian data $\mathcal N(0, c^2 I)$ of every scale $c$ in between, on the
# uniform grid:

# %%
scales = [1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 3.0]
few = [10, 40]
scale_errors = {(name, n): [] for name in ("DDIM", "EM-PF") for n in few}
for c in scales:
    gauss = sdelab.GaussianMixture([[0.0, 0.0]], [[c, c]], [1.0]).to(dtype=F64)
    score_c = gauss.score(sde)
    exact_c = run(score_c, exact_flow_solver()).x
    for name, solver in (("DDIM", sdelab.DDIM()), ("EM-PF", em_pf)):
        for n in few:
            scale_errors[name, n].append(error(score_c, exact_c, solver, n)[0])
fig, ax = plt.subplots(figsize=(7, 4.5))
for (name, n), errs in scale_errors.items():
    ax.plot(scales, errs, "o-" if name == "DDIM" else "s--", color="C0" if name == "DDIM" else "C3",
            alpha=1.0 if n == few[0] else 0.5, label=f"{name}, {n} steps")  # fmt: skip
ax.axvline(1.0, color="0.5", lw=1, ls=":")
ax.annotate("data = prior: EM-PF exact", (1.0, 1e-12), xytext=(4, 0), textcoords="offset points",
            fontsize=8, color="0.3")  # fmt: skip
log_axes(ax, scales, "data scale c (Gaussian data N(0, c² I))")
ax.set_xticks(scales, [f"{c:g}" for c in scales])
ax.set_ylabel("pathwise error against the exact flow")
ax.set_title("DDIM (exponential Euler) against EM-PF (Euler in t), VP, uniform grid")
ax.legend(fontsize=8)
fig.tight_layout()
# alt: Log-log plot of the pathwise error against the data scale c from 0.001 to 3 for DDIM
#   and EM-PF at 10 and 40 steps. DDIM's error grows with c from about 1e-4 and is orders of
#   magnitude below EM-PF's for small c; EM-PF's error stays near 1e-2 to 5e-2 and drops to
#   rounding at c = 1, where the data equals the prior; above c = 1 both grow.
plt.show()

# %% [markdown]
# For concentrated data DDIM is nearly exact and EM-PF's error does not shrink with the
# data: Euler in $t$ spends its error on the linear coefficient $\sigma'/\sigma$, which grows
# like $1/(2t)$ as $t \to 0$ (the ODE is stiff near the data) and which DDIM solves exactly.
# Real data sit in between and mostly on the concentrated side: images occupy a thin set,
# with a tiny variance in most directions. Multi-modal data too, such as the benchmark
# mixture below (six narrow modes on a ring of radius 3), where DDIM is ahead at the step
# counts one samples with; the smooth mixture of wide, unit-scale components is close to the
# prior, and there EM-PF wins:

# %%
steps_list = [5, 10, 20, 40] if SMALL else [5, 10, 20, 40, 80, 160]
print(f"{'':5s}  {'smooth mixture':^27s}  {'benchmark mixture':^27s}")
print(
    f"{'steps':>5s}  {'DDIM':>8s} {'EM-PF':>8s} {'EM/DDIM':>8s}  {'DDIM':>8s} {'EM-PF':>8s} {'EM/DDIM':>8s}"
)
for n in steps_list:
    row = []
    for score, exact in ((score_smooth, exact_smooth), (score_bench, exact_bench)):
        e_ddim, _ = error(score, exact, sdelab.DDIM(), n)
        e_em, _ = error(score, exact, em_pf, n)
        row.append(f"{e_ddim:8.2e} {e_em:8.2e} {e_em / e_ddim:8.2f}")
    print(f"{n:5d}  " + "  ".join(row))

# %% [markdown]
# ## 2. Why data prediction?
#
# The same exact solution can be written with the **noise prediction**
# $\hat\epsilon = (x - m D)/\sigma$ instead:
# $x_t = \frac{m_t}{m_s}x_s - m_t\int_{\lambda_s}^{\lambda_t} e^{-\lambda}\hat\epsilon\,
# \mathrm d\lambda$. Freezing $\hat\epsilon$ gives DDIM again (the first-order methods are
# identical). Higher-order methods approximate the integrand by a polynomial in $\lambda$
# through previous model outputs: DPM-Solver (Lu et al. 2022a) extrapolates $\hat\epsilon$,
# DPM-Solver++ (Lu et al. 2022b) extrapolates $D$. Lu et al. argue for $D$: it stays in the
# range of the data (so it can be clipped or thresholded), and in guided sampling, where the
# model output is amplified by the guidance weight $w$, their high-order noise-prediction
# solvers became unstable at large $w$.
#
# Below: DPM-Solver (`predict="noise"`) against DPM-Solver++ (`predict="data"`), 2M and 3M,
# on the benchmark mixture, at low NFE. Besides the exact score we try a **guided** score
# $(1 - w)\,\nabla\log p_t + w\,\nabla\log p_t(\cdot\mid c)$ with $w = 5$, where the
# "condition" $c$ keeps the first mode of the ring (classifier-free guidance with exact
# scores). It is no longer the score of a diffusion, but its probability-flow ODE is still an
# ODE of the same form, and DOP853 still gives its exact flow.

# %%
condition = sdelab.GaussianMixture(bench.means[:1], bench.stds[:1], [1.0])
score_cond = condition.score(sde)
W = 5.0


def score_guided(x, t):
    s_uncond = score_bench(x, t)
    return s_uncond + W * (score_cond(x, t) - s_uncond)


exact_guided = run(score_guided, exact_flow_solver()).x
nfes = [5, 8, 10, 15, 20] if SMALL else [5, 8, 10, 15, 20, 30, 50]
cases = [
    ("exact score, log-SNR grid", score_bench, exact_bench, "logsnr"),
    ("exact score, uniform grid", score_bench, exact_bench, "uniform"),
    (f"guided (w = {W:g}), uniform grid", score_guided, exact_guided, "uniform"),
]
fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
for ax, (title, score, exact, schedule) in zip(axes, cases, strict=True):
    for order, color in ((2, "C0"), (3, "C3")):
        for predict, style in (("data", "o-"), ("noise", "s--")):
            solver = sdelab.DPMSolver(order, predict=predict)
            errs = [error(score, exact, solver, n, schedule)[0] for n in nfes]
            name = ("DPM-Solver++" if predict == "data" else "DPM-Solver") + f" {order}M"
            ax.plot(
                nfes,
                errs,
                style,
                color=color,
                label=name,
                mfc="none" if predict == "noise" else color,
            )
            print(f"{title:34s} {name:17s} " + " ".join(f"{e:8.2e}" for e in errs))
    log_axes(ax, nfes, "NFE (= steps)")
    ax.set_title(title, fontsize=10)
axes[0].set_ylabel("pathwise error against the exact flow")
axes[0].legend(fontsize=8)
fig.suptitle("Data prediction (DPM-Solver++) against noise prediction (DPM-Solver), VP, float64")
fig.tight_layout()
# alt: Three log-log panels of pathwise error against NFE from 5 to 50 for DPM-Solver++ and
#   DPM-Solver, 2M and 3M: exact score on the log-SNR grid, exact score on the uniform grid,
#   and a guided score on the uniform grid. Data and noise prediction stay within a small
#   factor of each other, with neither ahead everywhere.
plt.show()

# %% [markdown]
# What the oracle says is more nuanced than "data prediction is better". Measured by the
# pathwise error against the exact flow, the two are mostly within a factor of two of each
# other, and at these NFE the noise prediction is as accurate or more in most cells (the
# printed table has the numbers). On the uniform grid 3M with data prediction is markedly
# *worse* from 15 steps on: diffusers' rule (which sdelab follows) lowers the order of the
# last steps only on grids of fewer than 15 steps, and the uniform grid's last step is long
# in $\lambda$ (from $\lambda \approx 1.5$ to $4.6$), where extrapolating $D$ to third order
# overshoots. The guided flow, whose model output is $w$ times larger, does not make the
# noise prediction unstable here.
#
# So the case for DPM-Solver++ is not pathwise accuracy at a fixed NFE on an exact score.
# It is the one Lu et al. make: a bounded output that can be thresholded (pixel models) and
# robustness of a *learned* model at large guidance, where the model's own errors are
# amplified; sample quality (FID), not the distance to the exact ODE solution, is what
# their experiments measure. That is why diffusers' default `algorithm_type` is
# `"dpmsolver++"` and why `sdelab.DPMSolver` defaults to `predict="data"`.
#
# ## 3. Orders, measured on the oracle
#
# An integrator of order $p$ has a pathwise error $\propto N^{-p}$ for $N$ steps once $N$ is
# large enough. On the smooth mixture, the log-SNR grid and a ladder of steps, each solver's
# fitted log-log slope sits beside its declared order (`solver.convergence_order`; UniPC's
# `order` option is its predictor's order, and the UniC corrector adds one).

# %%
ladder = [10, 20, 40, 80, 160] if SMALL else [10, 20, 40, 80, 160, 320, 640]
FIT = 4  # the slope is fitted over the last FIT rungs, where the errors are asymptotic
order_solvers = {
    "EM-PF (Euler in t)": em_pf,
    "DDIM": sdelab.DDIM(),
    "DPM++ 2M": sdelab.DPMSolver(2),
    "DPM++ 3M": sdelab.DPMSolver(3),
    "UniPC (bh2, UniP-2 + UniC)": sdelab.UniPC(),
    "DEIS (tAB3)": sdelab.DEIS(order=3),
    "Heun": sdelab.Heun(),
    "LMS (4 points)": sdelab.LMS(order=4),
}
fig, ax = plt.subplots(figsize=(7.5, 5))
print(f"{'solver':28s} {'declared':>8s} {'measured':>8s}   errors at {ladder} steps")
for i, (name, solver) in enumerate(order_solvers.items()):
    errs = [error(score_smooth, exact_smooth, solver, n, "logsnr")[0] for n in ladder]
    slope = fit_order([1 / n for n in ladder[-FIT:]], errs[-FIT:])
    declared = solver.convergence_order
    ax.plot(ladder, errs, "o-", color=f"C{i}", label=f"{name}: {slope:.2f} (declared {declared:g})")
    print(f"{name:28s} {declared:8g} {slope:8.2f}   " + " ".join(f"{e:.1e}" for e in errs))
for p, y0 in ((1, 3e-1), (2, 1e-1), (3, 3e-2), (4, 1e-2)):  # guide slopes through (10, y0)
    ax.plot(ladder, [y0 * (ladder[0] / n) ** p for n in ladder], ":", color="0.6", lw=1)
    ax.annotate(f"$N^{{-{p}}}$", (ladder[-1], y0 * (ladder[0] / ladder[-1]) ** p), fontsize=8,
                color="0.4", xytext=(3, 0), textcoords="offset points", va="center")  # fmt: skip
log_axes(ax, ladder, "steps N (Heun: 2 score evaluations per step)")
ax.set_ylabel("pathwise error against the exact flow")
ax.set_title(f"Smooth mixture, VP, log-SNR grid: slopes fitted over the last {FIT} rungs")
ax.legend(fontsize=7.5, loc="lower left")
fig.tight_layout()
# alt: Log-log plot of pathwise error against the number of steps (10 up to 160 or 640) for
#   EM-PF, DDIM, DPM++ 2M and 3M, UniPC, DEIS, Heun and LMS on a smooth mixture, with dotted
#   guide lines of slopes 1 to 4. Each solver's line is straight with a slope close to its
#   declared order, shown in the legend beside the fitted slope.
plt.show()

# %% [markdown]
# Where the errors are asymptotic the fitted slopes match the declared orders to a few
# tenths (`tests/test_fast_orders.py` measures every deterministic solver of sdelab this way).
# Two need more steps than the small build's ladder (20-160 fitted): DEIS-3 comes down to 3
# from above and LMS's 4-point formula approaches 4 only slowly, because their lower-order
# warm-up steps (LMS starts with Euler) still weigh in; the full build fits 80-640 steps.
#
# **Orders are asymptotic statements.** At the tens of steps one samples with, on a mixture
# with narrow modes, the same methods are *pre-asymptotic*: the error is dominated by the
# few steps where the flow bends sharply towards a mode, and the slope between 10 and 40
# steps says little about the order:

# %%
pre = [10, 20, 40]
for name in ("DDIM", "DPM++ 2M", "DPM++ 3M"):
    errs = [error(score_bench, exact_bench, order_solvers[name], n, "logsnr")[0] for n in pre]
    slope = fit_order([1 / n for n in pre], errs)
    print(f"benchmark mixture, {name:9s}: slope {slope:5.2f} over {pre} steps (declared "
          f"{order_solvers[name].convergence_order})")  # fmt: skip

# %% [markdown]
# ## 4. The schedule matters
#
# The same method on another grid is another integrator. DPM-Solver++ 2M on the benchmark
# mixture at low NFE, on the four built-in grids (`sdelab.time_grid`): equal steps in $t$
# (`"uniform"`, diffusers' default `timestep_spacing`), in $\lambda$ (`"logsnr"`, DPM-Solver's
# own), in $s^{1/\rho}$ (`"karras"`, $\rho = 7$) and in $\sqrt t$ (`"quadratic"`), against
# EM-PF on the uniform grid. Left: where each 10-step grid puts its times, in $\lambda$.

# %%
schedules = ["uniform", "logsnr", "karras", "quadratic"]
nfe_sched = [10, 15, 20] if SMALL else [5, 10, 15, 20, 30, 50]
dpm2m = sdelab.DPMSolver(2)
fig, (ax_grid, ax) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.4]})
for i, name in enumerate(schedules):
    lam = [sde.log_snr(t) for t in sdelab.time_grid(sde, 10, name, EPS)]
    ax_grid.plot(lam, [i] * len(lam), "|", ms=14, mew=2, color=f"C{i}")
    errs = [error(score_bench, exact_bench, dpm2m, n, name)[0] for n in nfe_sched]
    ax.plot(nfe_sched, errs, "o-", color=f"C{i}", label=f"DPM++ 2M, {name}")
    print(f"DPM++ 2M {name:10s} " + " ".join(f"{e:8.2e}" for e in errs))
errs = [error(score_bench, exact_bench, em_pf, n)[0] for n in nfe_sched]
ax.plot(nfe_sched, errs, "k^--", label="EM-PF, uniform")
print(f"EM-PF    {'uniform':10s} " + " ".join(f"{e:8.2e}" for e in errs))
ax_grid.set_yticks(range(len(schedules)), schedules)
ax_grid.set_xlabel(r"half log-SNR $\lambda(t_i)$ (T on the left, $\varepsilon$ on the right)")
ax_grid.set_title("10-step grids", fontsize=10)
ax_grid.grid(axis="y", visible=False)
log_axes(ax, nfe_sched, "NFE (= steps)")
ax.set_ylabel("pathwise error against the exact flow")
ax.set_title("Benchmark mixture, VP, float64", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
# alt: Left: the 10-step uniform, log-SNR, Karras and quadratic grids drawn as tick marks on
#   the half log-SNR axis; the uniform grid leaves a long last step near the data, the
#   log-SNR grid is evenly spaced, Karras crowds its times near the data. Right: log-log plot
#   of the pathwise error of DPM++ 2M against NFE on each grid, with EM-PF on the uniform grid
#   as a dashed black line.
plt.show()

# %% [markdown]
# At the same NFE the grids differ by factors of several, comparable to the gap between
# solvers of different orders. The uniform grid takes its last step, to $\varepsilon$, in one
# long jump in $\lambda$ (the left panel): with its lower-order final steps (below 15 steps)
# it is competitive at 10 NFE, and it suffers once the full order reaches that step. The
# quadratic grid, denser near the data than the uniform one but not as extreme as Karras',
# is the best compromise on this mixture. The right grid depends on where the data's
# structure lives in $\lambda$: that is why DPM-Solver offers several, and why the
# k-diffusion names come with and without "Karras".
#
# ## 5. The field's names on one plot
#
# Every deterministic sampler name of diffusers and A1111 / k-diffusion is an sdelab solver
# plus a schedule. Here they are on the benchmark mixture, with the NFE counted by the
# sampling loop (`result.nfe`: the second-order Karras samplers take two score evaluations a
# step, PLMS one extra on its first step). The uniform grid stands for the default spacing
# of diffusers' schedulers and A1111 (timesteps evenly spaced in the training steps); the
# "Karras" names use `sdelab.Karras()` between $s(T)$ and $s(\varepsilon)$.

# %%
field = {  # name: (solver, schedule)
    "DDIM": (sdelab.DDIM(), "uniform"),
    "PLMS (PNDM, skip_prk)": (sdelab.PNDM(skip_prk=True), "uniform"),
    "iPNDM": (sdelab.IPNDM(), "uniform"),
    "DPM++ 2M": (sdelab.DPMSolver(2), "uniform"),
    "DPM++ 2M Karras": (sdelab.DPMSolver(2), sdelab.Karras()),
    "UniPC (bh2)": (sdelab.UniPC(), "uniform"),
    "DEIS (diffusers: order 2)": (sdelab.DEIS(order=2), "uniform"),
    "Euler": (sdelab.Euler(), "uniform"),
    "Heun": (sdelab.Heun(), "uniform"),
    "DPM2": (sdelab.DPM2(), "uniform"),
    "LMS": (sdelab.LMS(), "uniform"),
    "LMS Karras": (sdelab.LMS(), sdelab.Karras()),
}
nfe_field = [5, 10, 20, 40] if SMALL else [5, 8, 10, 15, 20, 30, 50]
markers = "osD^v<>ph*XP"
table = {}
fig, ax = plt.subplots(figsize=(8.5, 5.5))
for i, (name, (solver, schedule)) in enumerate(field.items()):
    per_step = getattr(solver, "nfe_per_step", 1)
    points = [
        error(score_bench, exact_bench, solver, max(1, n // per_step), schedule) for n in nfe_field
    ]
    table[name] = points
    print(f"{name:26s} " + "  ".join(f"{e:8.2e} ({k:2d})" for e, k in points))
    errs, used = zip(*points, strict=True)
    style = "--" if name == "Euler" else "-"  # Euler is DDIM (section 1): the lines coincide
    ax.plot(used, errs, style, marker=markers[i], color=plt.cm.tab20(i), label=name, ms=5,
            mfc="none" if name == "Euler" else None)  # fmt: skip
points = [error(score_bench, exact_bench, em_pf, n) for n in nfe_field]
table["EM-PF (uniform)"] = points
print(f"{'EM-PF (uniform)':26s} " + "  ".join(f"{e:8.2e} ({k:2d})" for e, k in points))
errs, used = zip(*points, strict=True)
ax.plot(used, errs, "k^--", lw=2, label="EM-PF (uniform), sdelab's first sampler")
log_axes(ax, nfe_field, "NFE (score evaluations, result.nfe)")
ax.set_ylabel("pathwise error against the exact flow")
ax.set_title("The field's samplers as integrators of one ODE: benchmark mixture, VP", fontsize=10)
ax.legend(fontsize=7, ncol=2, loc="lower left")
fig.tight_layout()
# alt: Log-log plot of the pathwise error against the number of score evaluations for the
#   named samplers DDIM, PLMS, iPNDM, DPM++ 2M, DPM++ 2M Karras, UniPC, DEIS, Euler, Heun,
#   DPM2, LMS and LMS Karras, each an sdelab solver on a uniform or Karras grid, with EM-PF on
#   the uniform grid as a thick dashed black line. Euler's line lies on DDIM's.
plt.show()

# %%
print("best sampler per NFE budget (pathwise error; EM-PF on the uniform grid for scale):")
for j, n in enumerate(nfe_field):
    runs = {name: pts[j] for name, pts in table.items() if pts[j][1] <= n}
    best = min((name for name in runs if not name.startswith("EM-PF")), key=lambda k: runs[k][0])
    em = table["EM-PF (uniform)"][j][0]
    print(f"  NFE <= {n:3d}: {best:26s} {runs[best][0]:.2e}   EM-PF {em:.2e}  "
          f"({em / runs[best][0]:.1f}x better)")  # fmt: skip

# %% [markdown]
# Read the plot as a map, not a ranking: every line is the same ODE, and the spread between
# them is the spread between numerical methods and grids. The multistep methods (DEIS, UniPC,
# LMS, PLMS / iPNDM, DPM++ 2M) get the most out of each score evaluation; the
# two-evaluation Karras samplers (Heun, DPM2) pay twice per step for an order they cash in
# only with many steps (at 4 NFE, two Heun steps are far off); the Karras grid, tuned for
# images, does not suit this mixture at low NFE; and EM-PF is behind the best sampler at
# every budget, by a growing factor. The stochastic samplers of the same family
# (Euler a, DPM++ 2M SDE, DDIM with $\eta > 0$) have no pathwise error against the ODE;
# their accuracy is a weak error, measured against the exact marginal in
# [Comparing solvers](../05_compare_solvers/).
