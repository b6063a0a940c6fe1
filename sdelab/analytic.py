r"""The analytic oracle: Gaussian mixtures, whose perturbed marginals and scores are exact.

Under a linear SDE $\mathrm{d}x = a(t)\,x\,\mathrm{d}t + g(t)\,\mathrm{d}w$ the perturbation
kernel is $\mathcal N(m(t)\,x_0, \sigma(t)^2 I)$ (`sdelab.sde.LinearSDE`). Convolving a mixture
$p_0 = \sum_k w_k\,\mathcal N(\mu_k, \operatorname{diag} s_k^2)$ with it gives again a mixture,

$$ p_t(x) = \sum_k w_k\,\mathcal N\big(x;\ m(t)\,\mu_k,\ \operatorname{diag}(m(t)^2 s_k^2
   + \sigma(t)^2)\big), $$

so the score $\nabla_x \log p_t$ is known in closed form:

$$ \nabla_x \log p_t(x) = -\sum_k r_k(x)\,\frac{x - m(t)\mu_k}{m(t)^2 s_k^2 + \sigma(t)^2},
   \qquad r_k(x) = \operatorname{softmax}_k\big(\log w_k + \log \mathcal N_k(x)\big). $$

Both are evaluated with log-sum-exp / softmax, so they stay finite in float32 for far-away
``x`` and for $t \to 0$.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import Time, check_batched, check_int, check_time_like
from .sde.base import SDE, check_linear_sde

__all__ = ["GaussianMixture", "MixtureScore"]

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianMixture:
    r"""A mixture of Gaussians with diagonal covariances,
    $p(x) = \sum_k w_k\,\mathcal N(x; \mu_k, \operatorname{diag}(s_k^2))$.

    Args:
        means: component means $\mu_k$, shape (K, d).
        stds: component standard deviations $s_k > 0$, shape (K,) (isotropic) or (K, d)
            (diagonal).
        weights: mixture weights $w_k \ge 0$, shape (K,); normalised to sum to one.
            Default: uniform.

    The parameters keep the dtype and device of ``means`` (a list becomes a tensor of torch's
    default dtype). Evaluations (`log_prob`, `score`, ...) follow the dtype and device of their
    input ``x``: the parameters are cast to it. Inputs ``x`` have shape (B, d) or (B, ...) with
    d entries per sample (small images, say); scores come back in ``x``'s shape.
    """

    def __init__(
        self,
        means: Tensor | Sequence[Sequence[float]],
        stds: Tensor | Sequence[float] | Sequence[Sequence[float]],
        weights: Tensor | Sequence[float] | None = None,
    ) -> None:
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.to(torch.get_default_dtype())
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        stds = torch.as_tensor(stds, dtype=means.dtype, device=means.device)
        if stds.shape == (K,):
            stds = stds[:, None].expand(K, d)
        elif stds.shape != (K, d):
            raise ValueError(
                f"stds must have shape (K,) = ({K},) or (K, d) = ({K}, {d}), got "
                f"{tuple(stds.shape)}"
            )
        if not bool(torch.isfinite(stds).all() and (stds > 0).all()):
            raise ValueError(f"stds must be finite and > 0, got {stds.tolist()}")
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite")
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=means.dtype, device=means.device)
        weights = torch.as_tensor(weights, dtype=means.dtype, device=means.device)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape (K,) = ({K},), got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
        self.means = means
        self.stds = stds.contiguous()
        self.weights = weights / weights.sum()

    # --- basic properties -----------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """d, the dimension of one sample."""
        return self.means.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        return self.means.device

    def to(self, device=None, dtype=None) -> GaussianMixture:
        """A copy with parameters on ``device`` / in ``dtype``."""
        return GaussianMixture(
            self.means.to(device=device, dtype=dtype),
            self.stds.to(device=device, dtype=dtype),
            self.weights.to(device=device, dtype=dtype),
        )

    def mean(self) -> Tensor:
        r"""$\mathbb E[x] = \sum_k w_k \mu_k$, shape (d,)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        r"""$\operatorname{Cov}[x] = \sum_k w_k(\operatorname{diag}s_k^2 + \mu_k\mu_k^\top)
        - \mathbb E[x]\,\mathbb E[x]^\top$, shape (d, d)."""
        mu = self.mean()
        second = (
            torch.diag(self.weights @ self.stds**2) + (self.means.T * self.weights) @ self.means
        )
        return second - torch.outer(mu, mu)

    # --- sampling ---------------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_labels: bool = False
    ):
        r"""Draw ``n`` samples, shape (n, d), on the mixture's device: pick
        $k \sim \operatorname{Cat}(w)$, then $x = \mu_k + s_k \odot z$.

        With ``return_labels=True`` also returns the component index of each draw.
        """
        n = check_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.dim), generator=generator, device=self.device, dtype=self.dtype)
        x = self.means[k] + self.stds[k] * z
        return (x, k) if return_labels else x

    # --- densities and scores ---------------------------------------------------------------
    def log_prob(self, x: Tensor) -> Tensor:
        r"""$\log p_0(x)$, shape (B,)."""
        return self._log_joint(self._flat(x), 1.0, 0.0).logsumexp(-1)

    def component_posterior(self, x: Tensor) -> Tensor:
        r"""$r_k(x) = p(k \mid x)$ under $p_0$, shape (B, K) (mode weights of a sample)."""
        return self._log_joint(self._flat(x), 1.0, 0.0).softmax(-1)

    def at(self, sde: SDE, t: float) -> GaussianMixture:
        r"""The perturbed marginal $p_t$ as a `GaussianMixture`: means $m(t)\mu_k$, stds
        $\sqrt{m(t)^2 s_k^2 + \sigma(t)^2}$ (``t`` a Python float)."""
        m, std = self._coeffs(sde, self.means, float(t))
        return GaussianMixture(
            m * self.means, torch.sqrt(m**2 * self.stds**2 + std**2), self.weights
        )

    def marginal_log_prob(self, sde: SDE, x: Tensor, t: Time) -> Tensor:
        r"""$\log p_t(x)$ of the mixture perturbed by ``sde`` up to time ``t``, shape (B,)."""
        xf = self._flat(x)
        m, std = self._coeffs(sde, xf, t)
        return self._log_joint(xf, m, std).logsumexp(-1)

    def marginal_score(self, sde: SDE, x: Tensor, t: Time) -> Tensor:
        r"""$\nabla_x \log p_t(x)$, shaped like ``x``."""
        xf = self._flat(x)
        m, std = self._coeffs(sde, xf, t)
        mu, var = self._moments(xf, m, std)
        diff = xf[:, None, :] - mu
        log_joint = self._log_joint(xf, m, std, diff=diff, var=var)
        r = log_joint.softmax(-1)  # (B, K)
        score = -(r[:, :, None] * diff / var).sum(1)
        return score.reshape(x.shape)

    def score(self, sde: SDE) -> MixtureScore:
        r"""The exact score $s(x, t) = \nabla_x \log p_t(x)$ of this mixture under ``sde``, as a
        callable ``score(x, t)`` for `sdelab.sample` and `sdelab.log_likelihood`."""
        check_linear_sde(sde, "the mixture oracle", "Gaussian perturbation kernel")
        return MixtureScore(self, sde)

    # --- internals ----------------------------------------------------------------------------
    def _flat(self, x: Tensor) -> Tensor:
        check_batched("x", x)
        xf = x.reshape(x.shape[0], -1)
        if xf.shape[1] != self.dim:
            raise ValueError(
                f"x must have {self.dim} entries per sample (shape (B, {self.dim}) or (B, ...)), "
                f"got shape {tuple(x.shape)}"
            )
        return xf

    def _coeffs(self, sde: SDE, x: Tensor, t: Time):
        check_linear_sde(sde, "the mixture oracle", "Gaussian perturbation kernel")
        t = check_time_like(x, t, sde.T)
        m, std = sde.mean_coeff(t), sde.std(t)
        if isinstance(t, Tensor) and t.ndim == 1:  # per-sample times: (B, 1, 1)
            m, std = m[:, None, None], std[:, None, None]
        return m, std

    def _moments(self, x: Tensor, m, std):
        means = self.means.to(device=x.device, dtype=x.dtype)
        stds = self.stds.to(device=x.device, dtype=x.dtype)
        return m * means, (m * stds) ** 2 + std**2  # (K, d) or (B, K, d)

    def _log_joint(self, x: Tensor, m, std, *, diff=None, var=None) -> Tensor:
        """log w_k + log N(x; m mu_k, m^2 s_k^2 + std^2), shape (B, K)."""
        if var is None:
            mu, var = self._moments(x, m, std)
            diff = x[:, None, :] - mu
        logw = self.weights.to(device=x.device, dtype=x.dtype).log()
        logn = -0.5 * (diff**2 / var + torch.log(var) + _LOG_2PI).sum(-1)
        return logw + logn

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, dtype={self.dtype})"


class MixtureScore:
    r"""The exact score $\nabla_x \log p_t(x)$ of a `GaussianMixture` under an SDE."""

    def __init__(self, mixture: GaussianMixture, sde: SDE) -> None:
        self.mixture = mixture
        self.sde = sde

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        return self.mixture.marginal_score(self.sde, x, t)

    def __repr__(self) -> str:
        return f"<exact score of {self.mixture!r} under {self.sde!r}>"
