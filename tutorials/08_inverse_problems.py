# %% [markdown]
# # Inverse problems against the exact posterior
#
# A score model of $p_0$ can also sample *conditionally*: given some coordinates of $x$
# (inpainting), a noisy linear measurement $y = A x + n$, or a class label (Song et al. 2021,
# Sec. 5 and App. I). `sdelab.sample` takes the observation as `condition=`:
#
# * `Inpaint(y, mask)` with `method="imputation"` (the paper's App. I.2: after every step
#   the known part is replaced by the observation perturbed to the current time) or
#   `"repaint"` (Lugmayr et al. 2022: the same, plus resampling jumps back in time);
# * `LinearObservation(A, y, noise_std, method="dps")`, diffusion posterior sampling (Chung
#   et al. 2023: a gradient step on the denoised estimate's data misfit);
# * `ClassGuidance(log_prob, scale)`, classifier guidance: the score plus
#   $\text{scale}\cdot\nabla_x \log p_t(k \mid x)$.
#
# All of them approximate. On a Gaussian mixture the truth is known in closed form: the
# posterior given a linear observation is again a mixture
# (`GaussianMixture.condition`), and the exact time-dependent classifier of the component
# labels is `GaussianMixture.class_log_prob`. So on a 2-D mixture we can put each method's
# samples beside samples of the exact posterior, and measure the gap with the energy
# distance beside its noise floor (the same distance between two exact samples). The
# benchmark over many problems is `sdelab compare --preset inverse`.

# %%
import matplotlib.pyplot as plt
import torch

import sdelab
from sdelab.experiments import energy_distance

torch.set_num_threads(1)
plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})

N, STEPS = 1000, 200  # samples per method, Euler-Maruyama steps
sde, solver = sdelab.VPSDE(), sdelab.EulerMaruyama()
prior = sdelab.GaussianMixture(  # three correlated components (full covariances)
    means=[[-2.0, -1.0], [1.5, -1.5], [0.5, 2.0]],
    covs=[[[0.5, 0.35], [0.35, 0.5]], [[0.3, -0.2], [-0.2, 0.4]], [[0.8, 0.0], [0.0, 0.1]]],
    weights=[0.4, 0.35, 0.25],
)
score = prior.score(sde)


def draw(condition=None, mixture=None, seed=0):
    """N samples: with ``condition`` from the prior's score, or (``mixture``) the exact
    posterior's own score through the same solver, embedded back into the plane."""
    if mixture is not None:
        z = sdelab.sample(
            sde,
            mixture.score(sde),
            solver,
            (N, mixture.dim),
            steps=STEPS,
            generator=torch.Generator().manual_seed(seed),
        ).x
        return mixture.embed(z)
    return sdelab.sample(
        sde,
        score,
        solver,
        (N, 2),
        steps=STEPS,
        condition=condition,
        generator=torch.Generator().manual_seed(seed),
    ).x


def report(post, samples, floors=5):
    """Each sample's energy distance to N exact posterior draws, beside the noise floor (the
    mean distance of ``floors`` further exact samples of size N to the same draws)."""
    g = torch.Generator().manual_seed(2)
    truth = post.sample_x(N, g)
    floor = sum(float(energy_distance(post.sample_x(N, g), truth)) for _ in range(floors))
    print(f"{'noise floor':>12}: {floor / floors:.4f}")
    for name, x in samples.items():
        print(f"{name:>12}: {float(energy_distance(x, truth)):.4f}")


grid = torch.linspace(-5, 5, 201)
xx, yy = torch.meshgrid(grid, grid, indexing="xy")
prior_density = prior.log_prob(torch.stack([xx.flatten(), yy.flatten()], -1)).exp()

# %% [markdown]
# ## 1. Inpainting: the second coordinate is seen
#
# We observe $x_2 = 0.3$ exactly. The posterior is a mixture on the line $x_2 = 0.3$: for
# an exact observation `condition` returns it on the coordinates of that line (here $x_1$),
# with `embed` to map back to the plane. Its component weights change with the observation
# by Bayes' rule: the line crosses the first component near its centre and only the edge of
# the second, so the posterior gives the second a small weight.

# %%
y2 = 0.3
mask = torch.tensor([False, True])
A = torch.tensor([[0.0, 1.0]])
post = prior.condition(A, torch.tensor([y2]))
print("posterior weights", [round(w, 3) for w in post.weights.tolist()])
samples = {
    "exact score": draw(mixture=post),
    "imputation": draw(sdelab.Inpaint(torch.tensor([0.0, y2]), mask)),
    "repaint": draw(
        sdelab.Inpaint(
            torch.tensor([0.0, y2]), mask, method="repaint", jump_length=10, jump_n_sample=3
        )
    ),
}
report(post, samples)

# %%
# alt: Left, the prior density's contours with the observed line x2 = 0.3. Right, the exact
#   posterior density of x1 on that line, a tall mode near x1 = -1 and a small one near
#   x1 = 1, with histograms of x1: the exact posterior score follows the curve, while
#   imputation and RePaint put far too much mass on the small mode near x1 = 1.
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
ax0.contour(xx, yy, prior_density.reshape(xx.shape), levels=8, cmap="Greys")
ax0.axhline(y2, color="C3", label="observed $x_2$")
ax0.set(title="prior $p_0$", xlabel="$x_1$", ylabel="$x_2$")
ax0.legend(loc="lower right")
z = torch.linspace(-5, 5, 400)[:, None]
ax1.plot(z[:, 0], post.log_prob(z).exp(), "k", lw=2, label="exact posterior")
for i, (name, x) in enumerate(samples.items()):
    ax1.hist(
        x[:, 0], bins=60, range=(-5, 5), density=True, histtype="step", color=f"C{i}", label=name
    )
ax1.set(title=f"$p(x_1 \\mid x_2 = {y2})$", xlabel="$x_1$")
ax1.legend()
plt.show()

# %% [markdown]
# Imputation replaces $x_2$ by a *forward-noised* observation, a sample of $p_t(x_2 \mid
# x_2(0) = y)$, but never lets $x_1$ feel how likely that $x_2$ was under each mode: the
# modes' weights are those of the unconditional sampler's trajectory, not the posterior's.
# That bias does not shrink with more steps. RePaint's resampling jumps let the two parts
# mix and move it toward the posterior, at several times the score evaluations. The exact
# posterior score through the same solver sits at the floor: the gap is the method's.
#
# ## 2. A noisy linear measurement: DPS
#
# Now only the sum is measured, $y = x_1 + x_2 + n$ with $n \sim \mathcal N(0, 0.3^2)$.
# The posterior is a 2-D mixture with full covariances (a thin band along $x_1 + x_2 = y$).
# DPS moves each state along the gradient of the data misfit of its denoised estimate, with
# step size `scale` per grid step: the total pull grows with the number of steps, so the
# right scale depends on the budget. Two of them:

# %%
A = torch.tensor([[1.0, 1.0]])
y = torch.tensor([0.5])
post2 = prior.condition(A, y, noise_std=0.3)
samples2 = {"exact score": draw(mixture=post2)}
for zeta in (0.05, 0.2):
    obs = sdelab.LinearObservation(A, y, noise_std=0.3, method="dps", scale=zeta)
    samples2[f"dps, scale {zeta:g}"] = draw(obs)
report(post2, samples2)

# %%
# alt: Three scatter plots over the prior's contours with the line x1 + x2 = 0.5: exact
#   posterior samples from the posterior's own score lie in a band along the line, mostly
#   in the lower-right component; DPS samples at scale 0.05 hug the line too tightly and
#   spread evenly along it; at scale 0.2 most sit in the lower-right component but spread
#   off the line, with a stray cluster near (-1.7, 2.2).
fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharex=True, sharey=True)
for ax, (name, x) in zip(axes, samples2.items(), strict=True):
    ax.contour(xx, yy, prior_density.reshape(xx.shape), levels=8, cmap="Greys")
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
    ax.plot(grid, y - grid, "C3", lw=1, label="$x_1 + x_2 = y$")
    ax.set(title=name, xlabel="$x_1$", xlim=(-5, 5), ylim=(-5, 5))
axes[0].set_ylabel("$x_2$")
axes[0].legend(loc="lower left")
plt.show()

# %% [markdown]
# ## 3. Classifier guidance with the exact classifier
#
# With the exact time-dependent classifier, $\nabla_x \log p_t(x) + \nabla_x \log p_t(k \mid
# x) = \nabla_x \log p_t(x \mid k)$: guidance at scale 1 *is* the score of the class's own
# component, so it is exact up to the solver. A larger scale sharpens the class
# (Dhariwal & Nichol 2021) and leaves the posterior.

# %%
k = 2
clf = prior.class_log_prob(sde).for_class(k)
component = sdelab.analytic.PosteriorMixture(
    prior.means[k : k + 1], weights=[1.0], covs=prior.covs[k : k + 1]
)
samples3 = {f"scale {s:g}": draw(sdelab.ClassGuidance(clf, scale=s)) for s in (1.0, 4.0)}
report(component, samples3)

# %%
# alt: Two scatter plots of class-guided samples over the prior's contours: at scale 1 they
#   fill the third component (top, centred at (0.5, 2)); at scale 4 they look much the
#   same, a little more concentrated, as this component is far from the others.
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
for ax, (name, x) in zip(axes, samples3.items(), strict=True):
    ax.contour(xx, yy, prior_density.reshape(xx.shape), levels=8, cmap="Greys")
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color="C2")
    ax.set(title=f"guidance, {name}", xlabel="$x_1$", xlim=(-5, 5), ylim=(-5, 5))
axes[0].set_ylabel("$x_2$")
plt.show()

# %% [markdown]
# The numbers for every method on the built-in 2-D and 16-D mixtures, at several step
# counts, come from `sdelab compare --preset inverse` (`--quick` for a reduced grid).


# %% [markdown]
# ## 4. Digits with a trained model
#
# On real data the score is learned (`sdelab.train`, tutorial 7) and no exact posterior
# exists, but the three conditions run unchanged. We train a score network on
# scikit-learn's 8x8 digits (ships offline; flattened to vectors of 64 grey values in
# $[-1, 1]$) and a small time-dependent classifier $\log p_t(k \mid x)$ on noised digits.
# The full size trains for a few minutes on two CPU cores; `SDELAB_TUTORIAL_SIZE=small`
# (the docs build) runs a handful of steps to check that the code works, so its pictures
# are noise.

# %%
import os

from sdelab.data import load
from sdelab.nets import GaussianFourierEmbedding, MLPScore
from sdelab.training import train

SMALL = os.environ.get("SDELAB_TUTORIAL_SIZE", "full") == "small"
TRAIN_STEPS = 30 if SMALL else 6000  # score-network training steps
D_STEPS = 20 if SMALL else 500  # sampler steps on the digits
torch.manual_seed(0)  # the networks' initial weights

digits, test = load("digits"), load("digits", split="test")
x_train = digits.data.reshape(len(digits), 64)
digit_score = train(
    sde,
    MLPScore(64, hidden=512, depth=3),
    x_train,
    steps=TRAIN_STEPS,
    batch_size=128,
    parametrization="noise",
    progress=False,
).score


def show(rows, titles):
    """A grid of 8x8 images, one row per entry of ``rows`` (tensors of shape (n, 64))."""
    n = max(len(r) for r in rows)
    _, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0), squeeze=False)
    for ax_row, imgs, title in zip(axes, rows, titles, strict=True):
        for j, ax in enumerate(ax_row):
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j].reshape(8, 8).clamp(-1, 1), cmap="gray_r", vmin=-1, vmax=1)
        ax_row[0].set_title(title, loc="left", fontsize=9)
    plt.show()


# %% [markdown]
# **Inpainting.** The top four rows of eight test digits are seen; imputation and RePaint
# fill in the bottom half. The seen half is the observation exactly.

# %%
mask = torch.zeros(8, 8, dtype=torch.bool)
mask[:4] = True
mask = mask.reshape(64)
truth = test.data[:8].reshape(8, 64)
seen = torch.where(mask, truth, torch.zeros(()))


def fill(condition, steps=D_STEPS, seed=0):
    return sdelab.sample(
        sde,
        digit_score,
        solver,
        (len(truth), 64),
        steps=steps,
        condition=condition,
        generator=torch.Generator().manual_seed(seed),
    ).x


inpainted = {
    "imputation": fill(sdelab.Inpaint(truth, mask.expand(8, 64))),
    "RePaint": fill(sdelab.Inpaint(truth, mask.expand(8, 64), method="repaint"), D_STEPS // 5),
}
assert all(torch.equal(x[:, mask], truth[:, mask]) for x in inpainted.values())

# %%
# alt: Four rows of eight 8x8 digit images: the test digits, their top halves (the bottom
#   left blank), then the imputation and RePaint completions, whose top halves equal the
#   observation and whose bottom halves are plausible strokes.
show([truth, seen, *inpainted.values()], ["truth", "seen", *inpainted])

# %% [markdown]
# **Colorization.** For colour we need colour digits: each training digit is tinted with one
# of three colours of equal brightness (reddish, greenish, bluish), giving images of
# $3 \times 8 \times 8$ values. `LinearObservation.grayscale` observes their channel mean, the
# grey image, which is the *same* for the three tints, so the exact posterior gives each
# colour probability 1/3. A second network learns these images, and imputation colorizes
# grey test digits. Count the tints it picks: the exact posterior would pick each a third
# of the time; imputation, biased as in section 1, favours some tints and mixes two in some
# digits (at full size it picked blue for most of eight digits).

# %%
palette = torch.tensor([[1.0, 0.25, 0.25], [0.25, 1.0, 0.25], [0.25, 0.25, 1.0]])


def tint(x, colours):
    """Digits in [-1, 1] (n, 64) tinted with ``colours`` (n, 3) -> (n, 3 * 64) in [-1, 1]."""
    ink = (x + 1) / 2  # 0 = paper, 1 = ink
    return (2 * ink[:, None, :] * colours[:, :, None] - 1).reshape(len(x), 3 * 64)


g = torch.Generator().manual_seed(3)
colour_train = tint(x_train, palette[torch.randint(3, (len(x_train),), generator=g)])
colour_score = train(
    sde,
    MLPScore(192, hidden=512, depth=3),
    colour_train,
    steps=TRAIN_STEPS,
    batch_size=128,
    parametrization="noise",
    progress=False,
).score
grey = tint(truth, palette[torch.randint(3, (len(truth),), generator=g)]).reshape(8, 3, 64)
grey = grey.mean(1).reshape(8, 8, 8)  # the observation: the channel mean
coloured = sdelab.sample(
    sde,
    colour_score,
    solver,
    (8, 192),
    steps=D_STEPS,
    condition=sdelab.LinearObservation.grayscale(grey, channels=3),
    generator=torch.Generator().manual_seed(4),
).x.reshape(8, 3, 64)
ink = (coloured + 1) / 2  # which tint each result took: the channel with the most ink
chosen = ink.sum(-1).argmax(1)
print("colour picked (0 red, 1 green, 2 blue):", chosen.tolist())

# %%
# alt: Two rows of eight colour digit images on black: the grey observations, then the
#   colorized samples, most drawn in one tint (mostly blue, some green), a few mixing two.
_, axes = plt.subplots(2, 8, figsize=(7.2, 2.0))
for j in range(8):
    axes[0, j].imshow(grey[j], cmap="gray", vmin=-1, vmax=1)
    rgb = ((coloured[j].reshape(3, 8, 8) + 1) / 2).clamp(0, 1).permute(1, 2, 0)
    axes[1, j].imshow(rgb)
for ax in axes.flat:
    ax.axis("off")
axes[0, 0].set_title("grey (seen)", loc="left", fontsize=9)
axes[1, 0].set_title("colorized", loc="left", fontsize=9)
plt.show()

# %% [markdown]
# **Class guidance with a trained classifier.** A time-dependent classifier
# $f_\phi(x_t, t)$ is trained by cross-entropy on digits noised to a random time by the same
# SDE (Song et al. 2021, App. I.1); `ClassGuidance` adds
# $\text{scale}\cdot\nabla_x \log \operatorname{softmax}(f_\phi(x, t))_k$ to the score. We
# check the result with the same classifier at $t = \epsilon$: the fraction of samples it
# labels $k$, for unguided samples (about 1/10) and guided ones.


# %%
class Classifier(torch.nn.Module):
    """An MLP on (x, Fourier features of t) with 10 logits."""

    def __init__(self, hidden=256):
        super().__init__()
        self.embed = GaussianFourierEmbedding(32)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64 + 32, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, 10),
        )

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype).expand(len(x))
        return self.net(torch.cat([x, self.embed(t)], -1))


clf_net = Classifier()
opt = torch.optim.AdamW(clf_net.parameters(), lr=2e-3)
labels = digits.labels
g = torch.Generator().manual_seed(5)
for _ in range(20 if SMALL else 3000):
    i = torch.randint(len(x_train), (128,), generator=g)
    t = 1e-3 + (1 - 1e-3) * torch.rand(128, generator=g)
    x_t, _ = sde.perturb(x_train[i], t, generator=g)
    loss = torch.nn.functional.cross_entropy(clf_net(x_t, t), labels[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
clf_net.requires_grad_(False)
k = 3


def log_p_k(x, t):
    return torch.log_softmax(clf_net(x, t), -1)[:, k]


n_guided = 16
guided = {
    f"scale {s:g}": sdelab.sample(
        sde,
        digit_score,
        solver,
        (n_guided, 64),
        steps=D_STEPS,
        condition=None if s == 0 else sdelab.ClassGuidance(log_p_k, scale=s),
        generator=torch.Generator().manual_seed(6),
    ).x
    for s in (0.0, 1.0, 4.0)
}
for name, x in guided.items():
    hits = (clf_net(x, 1e-3).argmax(-1) == k).float().mean()
    print(f"{name}: the classifier calls {float(hits):.0%} of the samples a {k}")

# %%
# alt: Three rows of sixteen digit images sampled with guidance towards the digit 3 at
#   scales 0 (unguided: all digits), 1 and 4 (mostly threes).
show([x for x in guided.values()], list(guided))
