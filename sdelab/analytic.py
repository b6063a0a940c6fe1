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
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import Time, check_batched, check_int, check_time_like
from .sde.base import SDE, check_linear_sde

__all__ = ["GaussianMixture", "MixtureScore"]

_LOG_2PI = math.log(2.0 * math.pi)


class _Params(NamedTuple):
    means: Tensor  # mu_k, (K, 1, d)
    var0: Tensor  # s_k^2: (K, 1) for isotropic stds, else (K, 1, d)
    logw: Tensor  # log w_k, (K, 1)


def _check_not_nan(name: str, x: Tensor) -> Tensor:
    """Raise unless ``x`` is free of NaN (one host synchronisation; not for sampling steps)."""
    if bool(torch.isnan(x).any()):
        bad = int(torch.isnan(x).sum())
        raise ValueError(
            f"{name} must not contain NaN, but {bad} of its {x.numel()} entries are NaN"
        )
    return x


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
        # isotropic: one variance per component, so the (B, K, d) work of `score` halves
        self._isotropic = bool((self.stds == self.stds[:, :1]).all())
        self._cache: dict[tuple[torch.dtype, torch.device], _Params] = {}

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
        r"""$\log p_0(x)$, shape (B,). Raises ``ValueError`` if ``x`` holds NaN."""
        xf = _check_not_nan("x", self._flat(x))
        return self._log_joint(xf, 1.0, 0.0)[0].logsumexp(0)

    def component_posterior(self, x: Tensor) -> Tensor:
        r"""$r_k(x) = p(k \mid x)$ under $p_0$, shape (B, K) (mode weights of a sample)."""
        xf = _check_not_nan("x", self._flat(x))
        return self._log_joint(xf, 1.0, 0.0)[0].softmax(0).T

    def at(self, sde: SDE, t: float) -> GaussianMixture:
        r"""The perturbed marginal $p_t$ as a `GaussianMixture`: means $m(t)\mu_k$, stds
        $\sqrt{m(t)^2 s_k^2 + \sigma(t)^2}$ (``t`` a Python float)."""
        m, std = self._coeffs(sde, self.means, float(t))
        return GaussianMixture(
            m * self.means, torch.sqrt(m**2 * self.stds**2 + std**2), self.weights
        )

    def marginal_log_prob(self, sde: SDE, x: Tensor, t: Time) -> Tensor:
        r"""$\log p_t(x)$ of the mixture perturbed by ``sde`` up to time ``t``, shape (B,).
        Raises ``ValueError`` if ``x`` holds NaN."""
        xf = _check_not_nan("x", self._flat(x))
        m, std = self._coeffs(sde, xf, t)
        return self._log_joint(xf, m, std)[0].logsumexp(0)

    def marginal_score(self, sde: SDE, x: Tensor, t: Time) -> Tensor:
        r"""$\nabla_x \log p_t(x)$, shaped like ``x``.

        With $v_k = m^2 s_k^2 + \sigma^2$ and $r = \operatorname{softmax}_k(\log w_k +
        \log\mathcal N_k(x))$ this is $-\sum_k r_k\,(x - m\mu_k)/v_k$. No host
        synchronisation beyond the SDE's own checks of a tensor ``t``."""
        xf = self._flat(x)
        m, std = self._coeffs(sde, xf, t)
        log_joint, diff, var, scaled = self._log_joint(xf, m, std)
        r = log_joint.softmax(0)  # (K, B)
        if scaled is None:  # isotropic: (x - m mu_k) / v_k with v_k one number per component
            r, scaled = r / var, diff
        score = (r[:, :, None] * scaled).sum(0).neg_()
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
        r"""$m(t)$ and $\sigma(t)$: Python floats, or shape (B,) for per-sample times."""
        check_linear_sde(sde, "the mixture oracle", "Gaussian perturbation kernel")
        t = check_time_like(x, t, sde.T)
        return sde.marginal_coeffs(t)

    def _params(self, x: Tensor) -> _Params:
        """The parameters in ``x``'s dtype and on its device, shaped to broadcast against
        (K, B, d) (components first), computed once per dtype and device."""
        key = (x.dtype, x.device)
        p = self._cache.get(key)
        if p is None:
            var0 = self.stds[:, :1] if self._isotropic else self.stds[:, None, :]
            p = _Params(
                self.means.to(device=x.device, dtype=x.dtype)[:, None, :],
                var0.to(device=x.device, dtype=x.dtype).square(),
                self.weights.to(device=x.device, dtype=x.dtype).log()[:, None],
            )
            self._cache[key] = p
        return p

    def _log_joint(self, x: Tensor, m: Time, std: Time):
        r"""$\log w_k + \log\mathcal N(x_b; m\mu_k, v_k)$, $v_k = m^2 s_k^2 + \sigma^2$, shape
        (K, B), and what the score reuses: ``diff`` $= x_b - m\mu_k$ (K, B, d), ``var``
        $v_k$ and ``scaled`` $=$ ``diff / var`` (``None`` for isotropic stds, whose $v_k$ is
        one number per component: shape (K, 1), or (K, B) for per-sample times).

        Components come first: torch's softmax and sums over a leading dimension are several
        times faster on the CPU than over a short last one. The (K, B, d) work is one
        subtraction (plus, for diagonal stds, one division) and two reductions; everything
        else stays (K, B) or smaller."""
        means, var0, logw = self._params(x)
        d = x.shape[1]
        if isinstance(m, Tensor) and m.ndim == 1:  # per-sample times: (B,) -> (B, 1)
            m, std = m[:, None], std[:, None]
            diff = torch.addcmul(x, m, means, value=-1.0)  # x - m mu_k, one pass over (K, B, d)
            if self._isotropic:
                m, std = m.T, std.T  # (1, B) against var0's (K, 1)
            var = torch.addcmul(std * std, m * m, var0)  # m^2 s_k^2 + sigma^2: (K, B[, d])
        else:
            diff = x - m * means
            var = m * m * var0 + std * std  # (K, 1[, d])
        if self._isotropic:
            scaled = None
            quad = torch.linalg.vecdot(diff, diff) / var
            logdet = d * var.log()
        else:
            scaled = diff / var
            quad = torch.linalg.vecdot(diff, scaled)
            logdet = var.log().sum(-1)
        log_joint = logw - 0.5 * (quad + logdet + d * _LOG_2PI)
        return log_joint, diff, var, scaled

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
