# %% [markdown]
# # Exact likelihoods through the probability-flow ODE
#
# The probability-flow ODE of a score model is a continuous normalising flow, so it assigns an
# exact log-likelihood to every data point (Song et al. 2021, Sec. 4.3):
#
# $$ \log p_\varepsilon(x) = \log p_T(z)
#    + \int_\varepsilon^T \nabla\!\cdot\tilde f(x(t), t)\,\mathrm{d}t,
#    \qquad \tilde f = f - \tfrac12 g^2\,\nabla_x\log p_t . $$
#
# With a Gaussian mixture as data the exact score and the exact density $p_t$ are known, so
# every number below is compared with its closed form. We look at
#
# 1. exact divergence vs the Hutchinson-Skilling estimator, against the closed form;
# 2. the estimator's variance against the number of probes;
# 3. encoding data to latents and decoding them back.
#
# The formulas are on the [Likelihood](../../concepts/likelihood/) page. Set
# `SDELAB_TUTORIAL_SIZE=small` for the quick version the docs build runs.

# %%
import os

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import NullLocator

import sdelab

SIZE = os.environ.get("SDELAB_TUTORIAL_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"SDELAB_TUTORIAL_SIZE must be 'small' or 'full', got {SIZE!r}")
SMALL = SIZE == "small"
N_POINTS = 200 if SMALL else 2000  # points whose likelihood we compute
N_REPEATS = 256 if SMALL else 2048  # independent Hutchinson estimates per probe count
torch.set_num_threads(1)
plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})

sde = sdelab.VPSDE()
mix = sdelab.GaussianMixture(
    torch.tensor([[1.5, 1.0], [-1.2, -0.6], [0.4, -1.8]], dtype=torch.float64),
    torch.tensor([[0.25, 0.6], [0.5, 0.2], [0.35, 0.35]], dtype=torch.float64),
    torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
)
score = mix.score(sde)
exact_prior = lambda z: mix.marginal_log_prob(sde, z, sde.T)  # noqa: E731
gen = torch.Generator().manual_seed(0)
x, labels = mix.sample(N_POINTS, generator=gen, return_labels=True)
eps = 1e-5
truth = mix.marginal_log_prob(sde, x, eps)

# %% [markdown]
# ## 1. Exact divergence vs Hutchinson, against the closed form
#
# With the exact prior passed, the exact-divergence likelihood differs from the closed form
# only by the integrator's error. Hutchinson's estimate with one Rademacher probe is unbiased
# but noisy per point; the default prior $\mathcal N(0, I)$ adds the (here tiny)
# prior-mismatch term.

# %%
exact = sdelab.log_likelihood(
    sde, score, x, divergence="exact", prior_logp=exact_prior, backend="torch"
)
hutch = sdelab.log_likelihood(
    sde, score, x, divergence="hutchinson", prior_logp=exact_prior, backend="torch", generator=gen
)
default_prior = sdelab.log_likelihood(sde, score, x, divergence="exact", backend="torch")
err_exact = (exact.logp - truth).abs()
err_hutch = hutch.logp - truth
print(f"exact divergence: max |error| = {err_exact.max():.2e} nats  (NFE {exact.nfe})")
print(
    f"Hutchinson, 1 probe: mean error {err_hutch.mean():+.3f} +- "
    f"{err_hutch.std() / N_POINTS**0.5:.3f} (s.e.), per-point sd {err_hutch.std():.2f} nats"
)
print(f"prior mismatch with N(0, I): max {(default_prior.logp - exact.logp).abs().max():.1e} nats")

fig, ax = plt.subplots(1, 2, figsize=(10, 4))
lims = [truth.min().item() - 0.5, truth.max().item() + 0.5]
ax[0].plot(lims, lims, "k--", lw=1)
ax[0].scatter(truth, hutch.logp, s=6, alpha=0.5, label="Hutchinson (1 probe)")
ax[0].scatter(truth, exact.logp, s=6, label="exact divergence")
ax[0].set(xlabel=r"closed form $\log p_\varepsilon(x)$", ylabel="probability-flow ODE", xlim=lims)
ax[0].legend()
ax[1].hist(err_hutch, bins=40, alpha=0.6, label="Hutchinson - truth")
ax[1].axvline(0, color="k", lw=1)
ax[1].set(xlabel="error (nats)", ylabel="count", title="exact: all errors < 1e-3")
ax[1].legend()
plt.tight_layout()
# alt: Left, the log-likelihood from the probability-flow ODE against the closed form: the
#   exact-divergence points lie on the dashed diagonal, the one-probe Hutchinson points
#   scatter around it. Right, a histogram of the Hutchinson errors, centred on zero.
plt.show()

# %% [markdown]
# ## 2. Variance against the number of probes
#
# The probes are drawn once per solve and held fixed along the path, so the estimate is one
# quadratic form $\frac1K\sum_k \epsilon_k^\top A\,\epsilon_k$ with $A = \int J\,\mathrm{d}t$.
# Its variance falls as $1/K$. Rademacher probes have variance
# $2(\lVert A_s\rVert_F^2 - \sum_i A_{ii}^2)$, Gaussian ones $2\lVert A_s\rVert_F^2$: never
# more. We repeat one point between the modes `N_REPEATS` times in a batch: each row gets its
# own probes, so one solve gives that many independent estimates.

# %%
point = torch.tensor([[0.1, -0.3]], dtype=torch.float64)
batch = point.expand(N_REPEATS, 2).contiguous()
ref = sdelab.log_likelihood(sde, score, point, divergence="exact", backend="torch").delta_logp
probes = [1, 2, 4, 8, 16]
variances = {}
for noise in ("rademacher", "gaussian"):
    variances[noise] = []
    for k in probes:
        r = sdelab.log_likelihood(
            sde, score, batch, noise=noise, n_probes=k, backend="torch", error_norm="batch",
            generator=gen,
        )  # fmt: skip
        variances[noise].append(r.delta_logp.var().item())
        print(f"{noise:10s} K={k:2d}: mean {r.delta_logp.mean():+.3f} (exact {ref.item():+.3f}), "
              f"variance {variances[noise][-1]:.4f}")  # fmt: skip

fig, ax = plt.subplots(figsize=(5, 4))
for noise, marker in (("rademacher", "o"), ("gaussian", "s")):
    ax.loglog(probes, variances[noise], marker, label=noise)
    ax.loglog(probes, [variances[noise][0] / k for k in probes], "k:", lw=1)
ax.set(xlabel="probes K", ylabel="variance of the estimate (nats$^2$)", title="dotted: 1/K")
ax.set_xscale("log", base=2)
ax.set_xticks(probes, [str(k) for k in probes])  # one label per K, no minor labels
ax.xaxis.set_minor_locator(NullLocator())
ax.legend()
plt.tight_layout()
# alt: Log-log plot of the variance of the Hutchinson estimate against the number of probes
#   K from 1 to 16, for Rademacher and Gaussian probes: both fall roughly like the dotted 1/K
#   lines, the Gaussian points above the Rademacher ones.
plt.show()

# %% [markdown]
# ## 3. Encoding and decoding
#
# `encode` runs the probability-flow ODE from data at $\varepsilon$ to latents at $T$;
# `decode` runs it back. The map is deterministic and invertible: the latents look like
# draws from the prior, and decoding returns the data up to the integrator's tolerance.
# Colour marks the mixture component each point came from: the flow keeps neighbourhoods
# together.

# %%
z = sdelab.encode(sde, score, x, backend="torch")
back = sdelab.decode(sde, score, z, backend="torch")
print(f"round trip: max |decode(encode(x)) - x| = {(back - x).abs().max():.1e}")
print(f"latent mean {z.mean(0).tolist()}, std {z.std(0).tolist()}")

fig, ax = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
for a, pts, title in (
    (ax[0], x, "data x"),
    (ax[1], z, "latent z = encode(x)"),
    (ax[2], back, "decode(z)"),
):
    a.scatter(pts[:, 0], pts[:, 1], c=labels, s=6, cmap="viridis")
    a.set(title=title, aspect="equal")
plt.tight_layout()
# alt: Three scatter plots coloured by mixture component: the data x; the latents
#   z = encode(x), one round cloud like a standard normal with the colours still in
#   neighbouring patches; and decode(z), the data again.
plt.show()

# %% [markdown]
# ## Bits per dimension
#
# For discrete data the meaningful number is bits/dim of dequantised data. For 8-bit data
# spread over $[a, b)$ the formula is
# $\mathrm{bpd} = -\log p(x)/(D\ln 2) + 8 - \log_2(b - a)$: the familiar offsets 8 (for
# $[0, 1]$) and 7 (for $[-1, 1]$) are the two special cases.

# %%
zero = torch.zeros(1)
for rng in ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)):
    bpd = sdelab.bits_per_dim(zero, torch.zeros(1, 3, 32, 32), n_bits=8, data_range=rng)
    print(f"data_range={rng}: offset {bpd.item():.3f} bits")
