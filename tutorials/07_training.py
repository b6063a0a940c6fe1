# %% [markdown]
# # Training a score model
#
# Every earlier tutorial ran on the exact score of a Gaussian mixture. Here we train one: a
# small network $s_\theta(x, t)$ fitted by denoising score matching (Vincent 2011; Song et al.
# 2021, eq. 7),
#
# $$ \mathcal L(\theta) = \mathbb E_{t}\,\lambda(t)\,\mathbb E_{x_0, z}\big\lVert
#    s_\theta(m(t)x_0 + \sigma(t)z,\ t) + z/\sigma(t)\big\rVert^2 , $$
#
# which needs only samples $x_0$ of the data. We
#
# 1. train on the two moons in a few seconds and sample the trained model;
# 2. look at the learned vector field beside the exact one on a mixture, where the oracle
#    knows the truth, and measure the gap (the weighted Fisher divergence);
# 3. train a network on scikit-learn's 8x8 digits, draw a grid of samples and compute the
#    test set's bits per dimension through the probability-flow ODE.
#
# The functions are on the [Training](../../api/training/) page and the measured tables on
# [Training against ground truth](../../concepts/training/). Set
# `SDELAB_TUTORIAL_SIZE=small` for the quick version the docs build runs (fewer steps: the
# pictures are rougher, the code is the same).

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import torch

import sdelab
from sdelab.data import load
from sdelab.nets import MLPScore, UNet
from sdelab.training import fisher_divergence, train

SIZE = os.environ.get("SDELAB_TUTORIAL_SIZE", "full")
if SIZE not in ("small", "full"):
    raise ValueError(f"SDELAB_TUTORIAL_SIZE must be 'small' or 'full', got {SIZE!r}")
SMALL = SIZE == "small"
MOONS_STEPS = 400 if SMALL else 3000
GMM_STEPS = 400 if SMALL else 4000
DIGITS_STEPS = 30 if SMALL else 6000  # the command line's default: 8 minutes on one core
N_TEST = 16 if SMALL else 300  # test images whose likelihood we compute
torch.set_num_threads(1)  # one thread: small batches, and a busy machine
plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
torch.manual_seed(0)  # the networks' initial weights; train draws from its own seeded generator
sde = sdelab.VPSDE()

# %% [markdown]
# ## 1. Two moons in a few seconds
#
# `sdelab.data.load("moons")` generates 10,000 points offline. `train` runs AdamW with a
# short warm-up, gradient clipping and an EMA of the weights; its `.score` is the EMA network
# as a score callable that `sample` takes directly. Its defaults (lr $2\cdot10^{-3}$, EMA
# 0.995) are tuned for these small problems, not the paper's week-long image runs.

# %%
moons = load("moons")
t0 = time.perf_counter()
fit = train(sde, MLPScore(2), moons, steps=MOONS_STEPS, progress=False)
print(f"trained {MOONS_STEPS} steps in {time.perf_counter() - t0:.1f} s; "
      f"loss {sum(fit.losses[:100]) / 100:.3f} -> {sum(fit.losses[-100:]) / 100:.3f}")  # fmt: skip

gen = torch.Generator().manual_seed(1)
samples = sdelab.sample(sde, fit.score, sdelab.DPMSolver(), (2000, 2), steps=50, generator=gen).x
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharex=True, sharey=True)
axes[0].scatter(*moons.data[:2000].T, s=2, alpha=0.5)
axes[0].set_title("data (2000 of 10,000)")
axes[1].scatter(*samples.T, s=2, alpha=0.5, color="C1")
axes[1].set_title("trained model, DPM-Solver++ 2M, 50 steps")
for ax in axes:
    ax.set_aspect("equal")
fig.tight_layout()
# alt: Two scatter plots side by side: the two interleaving half circles of the moons data,
#   and 2000 samples of the trained score model, which fall on the same two half circles.
plt.show()

# %% [markdown]
# ## 2. The learned vector field against the exact one
#
# On the built-in mixture `gmm2d` (six narrow components on a ring) the oracle gives the exact
# score $\nabla\log p_t$ at every $t$, so the trained score can be compared with the truth
# itself instead of through its loss (which never reaches zero: its minimum is an unknown
# constant). Below, both fields at two times, on the same grid.

# %%
gmm = load("gmm2d")
mix = gmm.mixture
fit2 = train(sde, MLPScore(2), gmm, steps=GMM_STEPS, progress=False)
exact = mix.score(sde)

side = torch.linspace(-4.5, 4.5, 21)
grid = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
fig, axes = plt.subplots(2, 2, figsize=(8, 8), sharex=True, sharey=True)
for col, t in enumerate((0.05, 0.3)):
    tt = torch.full((grid.shape[0],), t)
    with torch.no_grad():
        fields = {"exact score": exact(grid, tt), "trained score": fit2.score(grid, tt)}
    for row, (name, v) in enumerate(fields.items()):
        ax = axes[row, col]
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12) ** 0.5  # shrink long arrows
        ax.quiver(grid[:, 0], grid[:, 1], v[:, 0], v[:, 1], color=f"C{row}", angles="xy")
        ax.scatter(*mix.means.T, marker="x", color="k", s=30)
        ax.set_title(f"{name}, t = {t}")
        ax.set_aspect("equal")
fig.tight_layout()
# alt: A 2 by 2 grid of arrow plots on the square from -4.5 to 4.5. Top row: the exact score of
#   the six-component ring mixture at t = 0.05 and t = 0.3, arrows pointing into the six
#   component means marked by crosses. Bottom row: the trained network's score at the same
#   times, which points the same way near the ring and differs mostly far from the data.
plt.show()

# %% [markdown]
# The weighted Fisher divergence puts one number on the gap, with its standard error:
#
# $$ \mathcal D_{\sigma^2} = \mathbb E_{t}\,\sigma(t)^2\,\mathbb E_{x_t\sim p_t}\big\lVert
#    s_\theta(x_t, t) - \nabla\log p_t(x_t)\big\rVert^2 . $$
#
# `fisher_divergence` draws $x_t$ by perturbing held-out data rows with the SDE's kernel, so
# it measures the score where the sampler will use it. The exact score scores zero; an
# untrained network (one step) scores of the order of the dimension, since
# $\sigma\nabla\log p_t$ has a norm of about $\sqrt d$.

# %%
held_out = load("gmm2d", split="validation", n=2000).data
g = torch.Generator().manual_seed(2)
for name, s in (("untrained", train(sde, MLPScore(2), gmm, steps=1, progress=False).score),
                (f"{GMM_STEPS} steps", fit2.score), ("exact", exact)):  # fmt: skip
    fd = fisher_divergence(sde, s, mix, held_out, generator=g)
    print(f"{name:>12}: D_sigma2 = {fd}")

# %% [markdown]
# ## 3. Digits: samples and bits per dimension
#
# `load("digits")` is scikit-learn's 8x8 digits (1797 images, 17 grey levels) with a fixed
# train / validation / test split of 1297 / 200 / 300, stored as bin centres in $[-1, 1]$.
# `train` dequantises each batch uniformly within the bins. The network is a small
# `sdelab.nets.UNet` (16 base channels, 8 in the small version): convolutions share weights
# across the image, and on the digits it beats an MLP on the 64 pixels by a full bit per
# dimension, although a step costs about five times as much on a CPU (an MLP of width 512
# memorises the 1,297 training images after about 8,000 steps).

# %%
digits = load("digits")
print(digits, f"bin width {digits.bin_width:.4f}")
t0 = time.perf_counter()
net = UNet(channels=1, base=8 if SMALL else 16)
fit3 = train(sde, net, digits, steps=DIGITS_STEPS, batch_size=128, lr=2e-3, ema=0.999,
             weighting="likelihood", parametrization="noise", progress=False)  # fmt: skip
print(f"UNet ({net.parameter_count:,} parameters): {DIGITS_STEPS} steps in "
      f"{time.perf_counter() - t0:.0f} s")  # fmt: skip

gen = torch.Generator().manual_seed(3)
imgs = sdelab.sample(
    sde, fit3.score, sdelab.DPMSolver(), (64, 1, 8, 8), steps=30, generator=gen
).x.clamp(-1, 1)
fig, axes = plt.subplots(2, 1, figsize=(8, 8.5))
for ax, batch, title in ((axes[0], digits.data[:64], "training images"),
                         (axes[1], imgs, "samples of the trained model")):  # fmt: skip
    tiles = batch.reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    ax.imshow(tiles, cmap="gray_r", vmin=-1, vmax=1)
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
# alt: Two 8 by 8 grids of 8x8 grey-scale images. Top: 64 handwritten digits from the training
#   split. Bottom: 64 samples of the trained network; at the full size most look like digits,
#   at the small size of the docs build they are still mostly blurred strokes.
plt.show()

# %% [markdown]
# **Bits per dimension.** A test image has levels $k \in \{0, \dots, 16\}^{64}$ stored at
# $x = -1 + (k + \tfrac12)\Delta$, $\Delta = 2/17$. Dequantised, $x = -1 + (k + u)\Delta$ with
# $u\sim\mathcal U[0,1)^{64}$, and the model's density $p_x$ (from `log_likelihood`, the
# probability-flow ODE) turns into a bound on the discrete likelihood by the change of
# variables $v = k + u$, $p_v = p_x\Delta^{64}$ (Theis et al. 2016):
#
# $$ \mathrm{bpd} = \frac{-\log p_x(x) - D\log\Delta}{D\ln 2}, \qquad D = 64 , $$
#
# so the uniform density on $[-1, 1]^{64}$ scores $\log_2 17 = 4.09$. (`sdelab.bits_per_dim`
# does the same for $2^n$ levels; 17 is not a power of two.)

# %%
test = load("digits", split="test", n=N_TEST)
x = test.dequantize(generator=torch.Generator().manual_seed(4))
t0 = time.perf_counter()
ll = sdelab.log_likelihood(sde, fit3.score, x, rtol=1e-3 if SMALL else 1e-5,
                           atol=1e-3 if SMALL else 1e-5, generator=torch.Generator().manual_seed(5))  # fmt: skip
bpd = (-ll.logp - x[0].numel() * math.log(test.bin_width)) / (x[0].numel() * math.log(2))
print(f"test bits/dim over {N_TEST} images: {bpd.mean():.3f} +- "
      f"{bpd.std() / math.sqrt(N_TEST):.3f}  ({ll.nfe} NFE, {time.perf_counter() - t0:.0f} s)")  # fmt: skip

# %% [markdown]
# For scale, on the same split and dequantisation (`benchmarks/digits_bpd.py`): a
# full-covariance Gaussian mixture fitted by scikit-learn scores 2.70 bits/dim, a Gaussian KDE
# 3.19, the uniform density 4.09, and this network trained for 6,000 steps (what
# `sdelab train --data digits` does) 1.86; trained for 12,000 it reaches 1.80. The numbers
# and the commands are on the [Training against ground truth](../../concepts/training/) page.
