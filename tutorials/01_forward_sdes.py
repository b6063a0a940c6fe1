# %% [markdown]
# # Forward SDEs: VP, sub-VP and VE side by side
#
# A score-based generative model starts by *destroying* data: a forward SDE
#
# $$ \mathrm{d}x = f(x, t)\,\mathrm{d}t + g(t)\,\mathrm{d}w, \qquad t \in [0, 1], $$
#
# turns samples of the data distribution $p_0$ into (nearly) Gaussian noise at $t = 1$. Song
# et al. (2021) use three such SDEs, all *linear*: $f(x, t) = a(t)\,x$ and $g$ depends on $t$
# only. This tutorial puts them side by side:
#
# 1. their mean coefficient $m(t)$ and standard deviation $\sigma(t)$ over time,
# 2. simulated forward paths against the exact perturbation kernel
#    $p_{0t}(x_t \mid x_0) = \mathcal N(m(t)\,x_0, \sigma(t)^2 I)$,
# 3. simulated data against the exact perturbed density $p_t$ of a Gaussian mixture,
# 4. the exact density $p_t$ of a 2-D mixture at a few times, as images.
#
# The formulas are on the [Forward SDEs](../../concepts/forward_sdes/) page; the exact
# densities come from the [Gaussian-mixture oracle](../../concepts/oracle/).
#
# This page is an executed notebook. Its source, [01_forward_sdes.py](01_forward_sdes.py),
# is a plain Python script (run it with `python`, or open it in Jupyter via jupytext). The
# environment variable `SDELAB_TUTORIAL_SIZE` picks the size: `small` (what CI and the docs
# build run, a few seconds) or `full` (the default, more paths and finer grids).

# %%
import os

import matplotlib.pyplot as plt
import torch

import sdelab
from sdelab.sde import simulate

SIZE = os.environ.get("SDELAB_TUTORIAL_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"SDELAB_TUTORIAL_SIZE must be 'small' or 'full', got {SIZE!r}")
SMALL = SIZE == "small"
N_PATHS = 4_000 if SMALL else 100_000  # Monte-Carlo sample size for the statistics
STEPS = 500 if SMALL else 1_000  # Euler-Maruyama steps per unit time
GRID = 100 if SMALL else 240  # pixels per side of the density images

DTYPE = torch.float64
gen = torch.Generator().manual_seed(0)
plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})

sdes = {"VP": sdelab.VPSDE(), "sub-VP": sdelab.SubVPSDE(), "VE": sdelab.VESDE()}
colors = {"VP": "C0", "sub-VP": "C1", "VE": "C2"}
for name, sde in sdes.items():
    print(f"{name:7s} {sde!r}")
print(f"size={SIZE}: {N_PATHS} paths, {STEPS} steps per unit time, {GRID}x{GRID} images")

# %% [markdown]
# ## 1. Mean coefficient and standard deviation
#
# With the paper's defaults ($\beta_{\min} = 0.1$, $\beta_{\max} = 20$,
# $\sigma_{\min} = 0.01$, $\sigma_{\max} = 50$):
#
# | SDE | $a(t)$ | $g(t)$ | $m(t)$ | $\sigma(t)$ | prior |
# | --- | --- | --- | --- | --- | --- |
# | VP | $-\tfrac12\beta(t)$ | $\sqrt{\beta(t)}$ | $e^{-\frac12\int_0^t\beta}$ | $\sqrt{1 - m^2}$ | $\mathcal N(0, I)$ |
# | sub-VP | $-\tfrac12\beta(t)$ | $\sqrt{\beta(t)(1 - m^4)}$ | $e^{-\frac12\int_0^t\beta}$ | $1 - m^2$ | $\mathcal N(0, I)$ |
# | VE | $0$ | $\sigma_{\rm VE}(t)\sqrt{2\log(\sigma_{\max}/\sigma_{\min})}$ | $1$ | $\sqrt{\sigma_{\rm VE}(t)^2 - \sigma_{\min}^2}$ | $\mathcal N(0, \sigma_{\max}^2 I)$ |
#
# with $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$ and
# $\sigma_{\rm VE}(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$. Every coefficient
# accepts a Python float or a tensor of times and answers in kind.

# %%
t = torch.linspace(0.0, 1.0, 401, dtype=DTYPE)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for name, sde in sdes.items():
    axes[0].plot(t, sde.mean_coeff(t), color=colors[name], label=name)
    axes[1].plot(t, sde.std(t), color=colors[name], label=name)
    axes[2].plot(t[1:], sde.diffusion(t[1:]), color=colors[name], label=name)
axes[1].plot(t, sdes["VE"].sigma(t), "k:", lw=1, label=r"VE, paper's $\sigma(t)$")
axes[0].set(title=r"mean coefficient $m(t)$", xlabel="t")
axes[1].set(
    title=r"std $\sigma(t)$ of $x_t$ given $x_0$", xlabel="t", yscale="log", ylim=(1e-3, 80)
)
axes[2].set(title=r"diffusion $g(t)$", xlabel="t", yscale="log")
axes[1].legend()
fig.tight_layout()
# alt: Three line plots against t from 0 to 1 for VP, sub-VP and VE. The mean coefficient
#   m(t) falls from 1 to nearly 0 for VP and sub-VP and stays at 1 for VE; the kernel std
#   sigma(t), log scale, rises to 1 for VP and sub-VP and to 50 for VE, with the paper's VE
#   sigma(t) dotted beside it; the diffusion g(t), log scale, grows with t for all three.
plt.show()

# %% [markdown]
# VP keeps the variance of unit-variance data at one ($m^2 + \sigma^2 = 1$), sub-VP adds less
# noise at every $t$ ($\sigma_{\rm sub\text{-}VP} = \sigma_{\rm VP}^2 \le \sigma_{\rm VP}$), and
# VE never shrinks the data but buries it under noise of standard deviation up to 50.
#
# The dotted line is the noise level $\sigma_{\rm VE}(t)$ that the paper uses as VE's kernel
# std. The exact law of the SDE started at $x_0$ has variance
# $\sigma_{\rm VE}(t)^2 - \sigma_{\min}^2$, which sdelab uses; the two differ only for
# $t \lesssim 0.2$, where $\sigma_{\rm VE}(t)$ is within a factor of a few of $\sigma_{\min}$.
#
# The coefficients are not arbitrary: for a linear SDE the mean and variance of $x_t$ given
# $x_0$ obey the moment ODEs $m' = a\,m$ and $v' = 2a\,v + g^2$ with $v = \sigma^2$. Autograd
# checks them:

# %%
tt = torch.linspace(0.01, 1.0, 200, dtype=DTYPE, requires_grad=True)


def ddt(q):
    """dq/dt by autograd (q = q(tt) elementwise); a constant (VE's m = 1) has derivative 0."""
    return torch.autograd.grad(q.sum(), tt)[0] if q.requires_grad else torch.zeros_like(q)


for name, sde in sdes.items():
    m, v = sde.mean_coeff(tt), sde.std(tt) ** 2
    dm, dv = ddt(m), ddt(v)
    a, g = sde.drift_coeff(tt), sde.diffusion(tt)
    res_m = (dm - a * m).abs().max().item()
    res_v = ((dv - (2 * a * v + g**2)) / (g**2)).abs().max().item()
    print(f"{name:7s} max |m' - a m| = {res_m:.1e}   max |v' - 2 a v - g^2| / g^2 = {res_v:.1e}")

vp, subvp = sdes["VP"], sdes["sub-VP"]
print(
    f"VP: max |m^2 + sigma^2 - 1| = {(vp.mean_coeff(t) ** 2 + vp.std(t) ** 2 - 1).abs().max():.1e}"
)
print(f"sub-VP std <= VP std everywhere: {bool((subvp.std(t) <= vp.std(t)).all())}")

# %% [markdown]
# ## 2. Simulated paths against the exact perturbation kernel
#
# `sdelab.sde.simulate` integrates the forward SDE with Euler-Maruyama,
# $x \leftarrow x + f(x, t)\,\Delta t + g(t)\,\Delta W$. Start every path at the point
# $x_0 = 1$: the exact law of $x_t$ is then $\mathcal N(m(t), \sigma(t)^2)$, the
# perturbation kernel returned by `sde.marginal`. Below, 30 paths and the exact band
# $m(t) \pm 2\sigma(t)$; the error bars are the mean $\pm$ 2 std of `N_PATHS` simulated paths
# at a few times.

# %%
CHECK_TIMES = [0.05, 0.2, 0.5, 1.0]


def simulate_to(sde, x0, times, generator):
    """Euler-Maruyama from t = 0 through each of `times` (STEPS steps per unit time)."""
    out, x, t_prev = [], x0, 0.0
    for t_next in times:
        x = simulate(
            sde, x, round((t_next - t_prev) * STEPS), t0=t_prev, t1=t_next, generator=generator
        )
        out.append(x)
        t_prev = t_next
    return out


def em_chain_std(sde, times):
    """Std at each of `times` of the Euler-Maruyama chain x <- (1 + a dt) x + g sqrt(dt) z
    started at a point, from its variance recursion v <- (1 + a dt)^2 v + g^2 dt (no sampling)."""
    v, k, out = 0.0, 0, []
    dt = 1.0 / STEPS
    for t_next in times:
        while k < round(t_next * STEPS):
            s = k * dt
            v = (1 + sde.drift_coeff(s) * dt) ** 2 * v + sde.diffusion(s) ** 2 * dt
            k += 1
        out.append(v**0.5)
    return out


x0 = torch.ones(N_PATHS, 1, dtype=DTYPE)
ones = torch.ones(len(t), 1, dtype=DTYPE)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
rows = []
for ax, (name, sde) in zip(axes, sdes.items(), strict=True):
    paths = simulate(sde, x0[:30], STEPS, generator=gen, return_path=True)[:, :, 0]
    mean, std = sde.marginal(ones, t)
    mean = mean[:, 0]
    ax.fill_between(
        t,
        mean - 2 * std,
        mean + 2 * std,
        color=colors[name],
        alpha=0.25,
        label=r"exact $m \pm 2\sigma$",
    )
    ax.plot(torch.linspace(0, 1, STEPS + 1), paths, color="k", lw=0.4, alpha=0.5)
    xs = simulate_to(sde, x0, CHECK_TIMES, gen)
    emp_mean = torch.stack([x.mean() for x in xs])
    emp_std = torch.stack([x.std() for x in xs])
    ax.errorbar(
        CHECK_TIMES,
        emp_mean,
        yerr=2 * emp_std,
        fmt="o",
        color="crimson",
        capsize=4,
        label=f"{N_PATHS} paths: mean ± 2 std",
    )
    ax.set(title=name, xlabel="t")
    ax.legend(loc="upper left", fontsize=8)
    for tc, x, s_em in zip(CHECK_TIMES, xs, em_chain_std(sde, CHECK_TIMES), strict=True):
        rows.append(
            (name, tc, sde.std(tc), s_em, x.std().item(), sde.std(tc) / (2 * N_PATHS) ** 0.5)
        )
fig.tight_layout()
# alt: Three panels, VP, sub-VP and VE: thirty simulated paths from x0 = 1 against t stay
#   inside the shaded exact band m(t) plus or minus 2 sigma(t), and red error bars, the mean
#   plus or minus 2 std of the simulated paths at four check times, sit on the band.
plt.show()

# %% [markdown]
# How close is close? A sample std of $n$ draws scatters around the true one by about
# $\sigma / \sqrt{2n}$, the Monte-Carlo *noise floor*. Euler-Maruyama also has a
# discretisation bias (weak order 1): its chain has its own law, which for a linear SDE follows
# from the recursion $m \leftarrow (1 + a\Delta t)\,m$,
# $v \leftarrow (1 + a\Delta t)^2 v + g^2 \Delta t$. The simulation should match the chain's
# std to within a few noise floors, and the chain should approach the exact std as
# $\Delta t \to 0$:

# %%
print(
    f"{'SDE':7s} {'t':>5s} {'exact std':>11s} {'EM-chain std':>13s} {'simulated':>11s} {'(sim - chain)/floor':>20s} {'(chain - exact)/exact':>22s}"
)
for name, tc, s_exact, s_em, s_sim, floor in rows:
    print(
        f"{name:7s} {tc:5.2f} {s_exact:11.5g} {s_em:13.5g} {s_sim:11.5g} {(s_sim - s_em) / floor:20.2f} {(s_em - s_exact) / s_exact:22.2e}"
    )

# %% [markdown]
# ## 3. Simulated data against the exact marginal density
#
# Now start from data instead of a point: a 1-D mixture of two Gaussians. Under a linear SDE
# the perturbed marginal $p_t$ is again a Gaussian mixture (means $m(t)\mu_k$, variances
# $m(t)^2 s_k^2 + \sigma(t)^2$), so `GaussianMixture.marginal_log_prob` gives its exact
# density. The histograms are simulated paths; the curves are exact. The panel titles give the
# Kolmogorov-Smirnov distance between the two beside its 95% level $1.36/\sqrt n$ (the
# distance a sample of the exact law would exceed one time in twenty).

# %%
data_1d = sdelab.GaussianMixture(means=[[-2.0], [1.5]], stds=[0.3, 0.6], weights=[0.35, 0.65]).to(
    dtype=DTYPE
)
x0 = data_1d.sample(N_PATHS, generator=gen)
ks_level = 1.36 / N_PATHS**0.5

fig, axes = plt.subplots(3, len(CHECK_TIMES), figsize=(13, 7.5))
for row, (name, sde) in zip(axes, sdes.items(), strict=True):
    for ax, tc, x in zip(row, CHECK_TIMES, simulate_to(sde, x0, CHECK_TIMES, gen), strict=True):
        pt = data_1d.at(sde, tc)  # the exact p_t as a GaussianMixture
        lo = (pt.means - 4 * pt.stds).min().item()
        hi = (pt.means + 4 * pt.stds).max().item()
        grid = torch.linspace(lo, hi, 400, dtype=DTYPE)[:, None]
        ax.hist(x[:, 0], bins=60, range=(lo, hi), density=True, color=colors[name], alpha=0.5)
        ax.plot(grid[:, 0], data_1d.marginal_log_prob(sde, grid, tc).exp(), "k", lw=1.2)
        # KS distance against the exact CDF, a weighted sum of normal CDFs
        xs = x[:, 0].sort().values
        cdf = (pt.weights * torch.special.ndtr((xs[:, None] - pt.means[:, 0]) / pt.stds[:, 0])).sum(
            -1
        )
        k = torch.arange(1, N_PATHS + 1, dtype=DTYPE) / N_PATHS
        ks = torch.maximum(k - cdf, cdf - (k - 1 / N_PATHS)).max().item()
        ax.set_title(f"{name}, t = {tc}: KS {ks:.3f} (95%: {ks_level:.3f})", fontsize=9)
        ax.grid(False)
fig.tight_layout()
# alt: A grid of histograms of simulated x_t for bimodal 1-D data, one row per SDE (VP,
#   sub-VP, VE) and one column per check time, each under the exact density p_t drawn as a
#   black curve; the titles give the Kolmogorov-Smirnov distance beside its 95% level.
plt.show()

# %% [markdown]
# The bimodal data survive early on; by $t = 1$ VP and sub-VP have turned them into a standard
# normal and VE into a normal of std $\approx 50$, the priors from which sampling starts. At
# $t = 0.05$ the VE histogram is still two narrow spikes: VE adds very little noise early.
# The leftover KS distance is Euler-Maruyama's discretisation bias plus Monte-Carlo noise.
#
# ## 4. The oracle's density as images
#
# The same computation in 2-D, with diagonal covariances: $p_t$ of a three-component mixture
# on $[-4, 4]^2$, each panel scaled to its own maximum. White dots are exact draws from $p_t$
# (`sde.perturb` applied to data samples).

# %%
data_2d = sdelab.GaussianMixture(
    means=[[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]],
    stds=[[0.3, 0.7], [0.7, 0.3], [0.4, 0.4]],
    weights=[0.3, 0.3, 0.4],
).to(dtype=DTYPE)
IMAGE_TIMES = [0.0, 0.1, 0.3, 0.6, 1.0]
u = torch.linspace(-4, 4, GRID, dtype=DTYPE)
pts = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
x0 = data_2d.sample(200, generator=gen)

fig, axes = plt.subplots(3, len(IMAGE_TIMES), figsize=(13, 8))
for row, (name, sde) in zip(axes, sdes.items(), strict=True):
    for ax, tc in zip(row, IMAGE_TIMES, strict=True):
        dens = data_2d.marginal_log_prob(sde, pts, tc).exp().reshape(GRID, GRID)
        ax.imshow(dens, origin="lower", extent=(-4, 4, -4, 4), cmap="magma", vmin=0)
        xt, _ = sde.perturb(x0, tc, generator=gen)
        ax.scatter(xt[:, 0], xt[:, 1], s=1.5, c="w", alpha=0.6)
        ax.set(xlim=(-4, 4), ylim=(-4, 4), xticks=[], yticks=[])
        ax.grid(False)
        ax.set_title(f"{name}, t = {tc}, σ = {sde.std(tc):.2g}", fontsize=9)
fig.tight_layout()
# alt: A grid of density images of p_t for a three-component 2-D mixture, rows VP, sub-VP
#   and VE, columns t = 0, 0.1, 0.3, 0.6 and 1, with exact draws as white dots. VP and sub-VP
#   merge the three blobs into one standard normal; VE keeps them apart up to t = 0.3, then
#   spreads them far beyond the frame.
plt.show()

# %% [markdown]
# VP and sub-VP pull the modes towards the origin while blurring them (sub-VP more slowly);
# VE leaves them in place and blurs them until, at $t = 1$, the window shows a nearly flat
# patch of $\mathcal N(0, 50^2 I)$ and the draws have left the picture.
#
# ## Where next
#
# * The formulas and conventions: [Forward SDEs](../../concepts/forward_sdes/),
#   [the Gaussian-mixture oracle](../../concepts/oracle/),
#   [design decisions](../../decisions/).
# * The reference: [SDEs](../../api/sde/), [oracle](../../api/oracle/).
