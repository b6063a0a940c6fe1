r"""The analytic oracle: Gaussian mixtures, whose perturbed marginals, scores and posteriors are
exact.

Under a linear SDE $\mathrm{d}x = a(t)\,x\,\mathrm{d}t + g(t)\,\mathrm{d}w$ the perturbation
kernel is $\mathcal N(m(t)\,x_0, \sigma(t)^2 I)$ (`sdelab.sde.LinearSDE`). Convolving a mixture
$p_0 = \sum_k w_k\,\mathcal N(\mu_k, C_k)$ with it gives again a mixture,

$$ p_t(x) = \sum_k w_k\,\mathcal N\big(x;\ m(t)\,\mu_k,\ m(t)^2 C_k + \sigma(t)^2 I\big), $$

so the score $\nabla_x \log p_t$ is known in closed form:

$$ \nabla_x \log p_t(x) = -\sum_k r_k(x)\,\big(m^2 C_k + \sigma^2 I\big)^{-1}(x - m\mu_k),
   \qquad r_k(x) = \operatorname{softmax}_k\big(\log w_k + \log \mathcal N_k(x)\big). $$

For diagonal $C_k = \operatorname{diag} s_k^2$ the inverse is a division. For full $C_k$ each
covariance is diagonalised once, $C_k = U_k \operatorname{diag}(\lambda_k) U_k^\top$, so that
$m^2 C_k + \sigma^2 I = U_k \operatorname{diag}(m^2\lambda_k + \sigma^2) U_k^\top$ at every
$t$: the log-determinant is $\sum_i \log(m^2\lambda_{ki} + \sigma^2)$ and the solve a rotation
and a division (no inverse is formed, and $m^2\lambda + \sigma^2 \ge \sigma^2$ stays
well-conditioned as $t$ grows). Everything is evaluated with log-sum-exp / softmax, so it stays
finite in float32 for far-away ``x`` and for $t \to 0$.

`GaussianMixture.condition` gives the exact posterior of a linear observation and
`GaussianMixture.class_log_prob` the exact time-dependent classifier of the component labels:
the references of the conditional samplers (Song et al. 2021, Sec. 5 and App. I).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import Time, check_batched, check_int, check_time_like
from .sde.base import SDE, check_linear_sde

__all__ = ["ClassLogProb", "GaussianMixture", "MixtureScore", "PosteriorMixture"]

_LOG_2PI = math.log(2.0 * math.pi)


class _Params(NamedTuple):
    means: Tensor  # mu_k, (K, 1, d)
    var0: Tensor  # s_k^2: (K, 1) isotropic, (K, 1, d) diagonal; eigenvalues lambda_k if full
    logw: Tensor  # log w_k, (K, 1)
    rot: Tensor | None  # eigenvectors U_k, (K, d, d), for full covariances; else None


def _check_not_nan(name: str, x: Tensor) -> Tensor:
    """Raise unless ``x`` is free of NaN (one host synchronisation; not for sampling steps)."""
    if bool(torch.isnan(x).any()):
        bad = int(torch.isnan(x).sum())
        raise ValueError(
            f"{name} must not contain NaN, but {bad} of its {x.numel()} entries are NaN"
        )
    return x


def _as_float_tensor(name: str, value, like: Tensor) -> Tensor:
    """``value`` as a tensor in ``like``'s dtype and on its device."""
    try:
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor or a nested sequence of numbers: {e}") from None


def _spd_eigh(covs: Tensor) -> tuple[Tensor, Tensor]:
    r"""The eigendecomposition $C_k = U_k \operatorname{diag}(\lambda_k) U_k^\top$ (in float64)
    of symmetric positive-definite ``covs`` (K, d, d), raising ``ValueError`` naming the first
    component that is not symmetric, or whose smallest eigenvalue is not above round-off."""
    d = covs.shape[-1]
    c64 = covs.to(torch.float64)
    scale = c64.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(torch.float64).tiny)
    asym = (c64 - c64.mT).abs().amax(dim=(-2, -1)) / scale
    tol_sym = 64 * torch.finfo(covs.dtype).eps
    if bool((asym > tol_sym).any()):
        k = int(torch.nonzero(asym > tol_sym)[0, 0])
        raise ValueError(
            f"covs must be symmetric, but covs[{k}] differs from its transpose by "
            f"{float(asym[k]):.3g} relative to its largest entry"
        )
    evals, evecs = torch.linalg.eigh(0.5 * (c64 + c64.mT))
    floor = d * torch.finfo(covs.dtype).eps * evals[:, -1].abs()
    bad = ~(evals[:, 0] > floor)  # also catches NaN
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"covs must be positive definite, but covs[{k}] (component {k}) has smallest "
            f"eigenvalue {float(evals[k, 0]):.6g} (largest {float(evals[k, -1]):.6g}; "
            f"expected > {float(floor[k]):.3g}, d * eps of {covs.dtype} times the largest): it "
            f"is singular or not positive definite"
        )
    return evals, evecs


class GaussianMixture:
    r"""A mixture of Gaussians,
    $p(x) = \sum_k w_k\,\mathcal N(x; \mu_k, C_k)$, with isotropic, diagonal
    ($C_k = \operatorname{diag}(s_k^2)$) or full covariance matrices.

    Args:
        means: component means $\mu_k$, shape (K, d).
        stds: component standard deviations $s_k > 0$, shape (K,) (isotropic) or (K, d)
            (diagonal). Give either ``stds`` or ``covs``.
        weights: mixture weights $w_k \ge 0$, shape (K,); normalised to sum to one.
            Default: uniform.
        covs: full covariance matrices $C_k$, shape (K, d, d), symmetric positive definite
            (keyword only). A singular or indefinite one raises ``ValueError`` naming the
            component and its smallest eigenvalue. Diagonal covariances are faster given as
            ``stds``.

    The parameters keep the dtype and device of ``means`` (a list becomes a tensor of torch's
    default dtype). Evaluations (`log_prob`, `score`, ...) follow the dtype and device of their
    input ``x``: the parameters are cast to it. Inputs ``x`` have shape (B, d) or (B, ...) with
    d entries per sample (small images, say); scores come back in ``x``'s shape.

    With full covariances ``stds`` is ``None``; `covs` is defined for every mixture.
    """

    def __init__(
        self,
        means: Tensor | Sequence[Sequence[float]],
        stds: Tensor | Sequence[float] | Sequence[Sequence[float]] | None = None,
        weights: Tensor | Sequence[float] | None = None,
        *,
        covs: Tensor | Sequence[Sequence[Sequence[float]]] | None = None,
    ) -> None:
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.to(torch.get_default_dtype())
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        K, d = means.shape
        if (stds is None) == (covs is None):
            raise ValueError(
                "give exactly one of stds (shape (K,) or (K, d)) and covs (shape (K, d, d)), "
                f"got {'neither' if stds is None else 'both'}"
            )
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite")
        self._full = covs is not None
        if stds is not None:
            stds = _as_float_tensor("stds", stds, means)
            if stds.shape == (K,):
                stds = stds[:, None].expand(K, d)
            elif stds.shape != (K, d):
                raise ValueError(
                    f"stds must have shape (K,) = ({K},) or (K, d) = ({K}, {d}), got "
                    f"{tuple(stds.shape)}"
                )
            if not bool(torch.isfinite(stds).all() and (stds > 0).all()):
                raise ValueError(f"stds must be finite and > 0, got {stds.tolist()}")
            self.stds: Tensor | None = stds.contiguous()
            self._covs = None
        else:
            covs = _as_float_tensor("covs", covs, means)
            if covs.shape != (K, d, d):
                raise ValueError(
                    f"covs must have shape (K, d, d) = ({K}, {d}, {d}), got {tuple(covs.shape)}"
                )
            if not bool(torch.isfinite(covs).all()):
                raise ValueError("covs must be finite")
            self._evals, self._evecs = _spd_eigh(covs)
            self._covs = (0.5 * (covs + covs.mT)).contiguous()
            self._chol = torch.linalg.cholesky(self._covs.to(torch.float64)).to(covs.dtype)
            self.stds = None
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=means.dtype, device=means.device)
        weights = _as_float_tensor("weights", weights, means)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape (K,) = ({K},), got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()}")
        self.means = means
        self.weights = weights / weights.sum()
        # isotropic: one variance per component, so the (B, K, d) work of `score` halves
        self._isotropic = not self._full and bool((self.stds == self.stds[:, :1]).all())
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

    @property
    def covs(self) -> Tensor:
        r"""The covariance matrices $C_k$, shape (K, d, d) (built from ``stds`` for a diagonal
        mixture)."""
        if self._full:
            return self._covs
        return torch.diag_embed(self.stds**2)

    def to(self, device=None, dtype=None) -> GaussianMixture:
        """A copy with parameters on ``device`` / in ``dtype``."""
        return GaussianMixture(**self._moved(device, dtype))

    def _moved(self, device, dtype) -> dict:
        """The constructor's arguments, on ``device`` / in ``dtype``."""
        kw = {
            "means": self.means.to(device=device, dtype=dtype),
            "weights": self.weights.to(device=device, dtype=dtype),
        }
        if self._full:
            kw["covs"] = self._covs.to(device=device, dtype=dtype)
        else:
            kw["stds"] = self.stds.to(device=device, dtype=dtype)
        return kw

    def mean(self) -> Tensor:
        r"""$\mathbb E[x] = \sum_k w_k \mu_k$, shape (d,)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        r"""$\operatorname{Cov}[x] = \sum_k w_k(C_k + \mu_k\mu_k^\top)
        - \mathbb E[x]\,\mathbb E[x]^\top$, shape (d, d)."""
        mu = self.mean()
        if self._full:
            within = torch.einsum("k,kij->ij", self.weights, self._covs)
        else:
            within = torch.diag(self.weights @ self.stds**2)
        second = within + (self.means.T * self.weights) @ self.means
        return second - torch.outer(mu, mu)

    # --- sampling ---------------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_labels: bool = False
    ):
        r"""Draw ``n`` samples, shape (n, d), on the mixture's device: pick
        $k \sim \operatorname{Cat}(w)$, then $x = \mu_k + L_k z$ with $z \sim \mathcal N(0, I)$
        and $L_k$ the Cholesky factor of $C_k$ ($s_k \odot z$ for diagonal covariances).

        With ``return_labels=True`` also returns the component index of each draw.
        """
        n = check_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.dim), generator=generator, device=self.device, dtype=self.dtype)
        if self._full:
            x = self.means[k] + (self._chol[k] @ z[:, :, None])[:, :, 0]
        else:
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
        r"""The perturbed marginal $p_t$ as a `GaussianMixture`: means $m(t)\mu_k$, covariances
        $m(t)^2 C_k + \sigma(t)^2 I$ (stds $\sqrt{m(t)^2 s_k^2 + \sigma(t)^2}$ for diagonal
        ones; ``t`` a Python float)."""
        m, std = self._coeffs(sde, self.means, float(t))
        if self._full:
            eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
            covs = m**2 * self._covs + std**2 * eye
            return GaussianMixture(m * self.means, weights=self.weights, covs=covs)
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

        With $V_k = m^2 C_k + \sigma^2 I$ and $r = \operatorname{softmax}_k(\log w_k +
        \log\mathcal N_k(x))$ this is $-\sum_k r_k\,V_k^{-1}(x - m\mu_k)$ (for full $C_k$:
        $-\sum_k U_k\, r_k\, U_k^\top(x - m\mu_k) / (m^2\lambda_k + \sigma^2)$). No host
        synchronisation beyond the SDE's own checks of a tensor ``t``."""
        xf = self._flat(x)
        m, std = self._coeffs(sde, xf, t)
        log_joint, diff, var, scaled = self._log_joint(xf, m, std)
        r = log_joint.softmax(0)  # (K, B)
        if scaled is None:  # isotropic: (x - m mu_k) / v_k with v_k one number per component
            r, scaled = r / var, diff
        weighted = r[:, :, None] * scaled
        if self._full:  # back from each component's eigenbasis: U_k (r_k V_k^-1 U_k^T diff)
            weighted = weighted @ self._params(xf).rot.mT
        score = weighted.sum(0).neg_()
        return score.reshape(x.shape)

    def score(self, sde: SDE) -> MixtureScore:
        r"""The exact score $s(x, t) = \nabla_x \log p_t(x)$ of this mixture under ``sde``, as a
        callable ``score(x, t)`` for `sdelab.sample` and `sdelab.log_likelihood`."""
        check_linear_sde(sde, "the mixture oracle", "Gaussian perturbation kernel")
        return MixtureScore(self, sde)

    def class_log_prob(self, sde: SDE) -> ClassLogProb:
        r"""The exact time-dependent classifier of the component labels under ``sde``,
        $\log p_t(k \mid x) = \log w_k + \log \mathcal N(x; m\mu_k, m^2 C_k + \sigma^2 I)
        - \log p_t(x)$, as a callable ``log_prob(x, t, y=None)``: shape (B, K), or (B,) for
        labels ``y``. ``.for_class(k)`` binds one label: ``log_prob(x, t) -> (B,)``, the
        classifier of class-guided sampling (Song et al. 2021, Sec. 5, App. I.1)."""
        check_linear_sde(sde, "the mixture oracle", "Gaussian perturbation kernel")
        return ClassLogProb(self, sde)

    # --- conditioning -------------------------------------------------------------------------
    def condition(self, A: Tensor, y: Tensor, noise_std: float = 0.0) -> PosteriorMixture:
        r"""The exact posterior of $x \sim p_0$ given one observation $y = A x + n$,
        $n \sim \mathcal N(0, \varsigma^2 I)$ with $\varsigma$ = ``noise_std``.

        Each component conditions by the Gaussian formulas (Bishop 2006, Sec. 2.3.3), with
        $S_k = A C_k A^\top + \varsigma^2 I$ (Cholesky-factored, never inverted) and
        $G_k = C_k A^\top S_k^{-1}$:

        $$ \tilde w_k \propto w_k\,\mathcal N(y; A\mu_k, S_k), \qquad
           \tilde\mu_k = \mu_k + G_k (y - A\mu_k), \qquad
           \tilde C_k = C_k - G_k A C_k. $$

        Args:
            A: the observation matrix, shape (p, d) with p >= 1. A mask ``m`` of observed
                coordinates is ``A = torch.eye(d)[m]``; the grey-scale projection of
                colorization is a row of channel weights per pixel.
            y: one observation, shape (p,). A batch of observations is not supported (each
                has its own posterior mixture): call ``condition`` once per observation.
            noise_std: $\varsigma \ge 0$.

        Returns:
            A `PosteriorMixture`. For $\varsigma > 0$ it is a mixture on $\mathbb R^d$ (its
            ``embed`` is the identity). For $\varsigma = 0$ ($A$ must then have full row rank
            $p < d$) the posterior lies on the affine subspace $\{x : A x = y\}$, where
            $\tilde C_k$ is singular: the mixture is returned on coordinates $z \in
            \mathbb R^{d - p}$ of that subspace, $x = x_0 + N z$ (`PosteriorMixture.embed`),
            with $x_0 = A^+ y$ and $N$ an orthonormal basis of the null space of $A$ (for a
            coordinate mask: the unobserved coordinates themselves, so $z$ is
            ``x[:, ~mask]``). Samples, scores and samplers then run on $z$ with positive
            definite covariances, and embed back exactly: the observed part is exactly $y$.

        When every $\tilde C_k$ is diagonal (a mask on a diagonal mixture) the posterior has
        ``stds``, the fast path. The computation runs in float64 and the result is cast to
        the mixture's dtype.
        """
        A, y, s = self._check_observation(A, y, noise_std)
        p = A.shape[0]
        f64 = torch.float64
        A64, y64 = A.to(f64), y.to(f64)
        mu, C = self.means.to(f64), self.covs.to(f64)
        basis = None
        if s == 0.0:
            basis = self._null_basis(A64)
        AC = A64 @ C  # (K, p, d)
        S = AC @ A64.T + s**2 * torch.eye(p, dtype=f64, device=A.device)  # (K, p, p)
        L = torch.linalg.cholesky(0.5 * (S + S.mT))
        resid = y64 - mu @ A64.T  # (K, p)
        white = torch.linalg.solve_triangular(L, resid[:, :, None], upper=False)  # L^-1 r
        half = torch.linalg.solve_triangular(L, AC, upper=False)  # L^-1 A C, (K, p, d)
        log_n = -0.5 * (
            white.square().sum((-2, -1))
            + 2 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
            + p * _LOG_2PI
        )
        logw = self.weights.to(f64).log() + log_n
        post_means = mu + (half.mT @ white)[:, :, 0]  # mu + C A^T S^-1 r
        post_covs = C - half.mT @ half  # C - C A^T S^-1 A C
        offset = None
        if basis is not None:  # coordinates of the subspace {A x = y}
            gram = torch.linalg.cholesky(A64 @ A64.T)  # A A^T, p x p: A has full row rank
            offset = A64.T @ torch.cholesky_solve(y64[:, None], gram)[:, 0]  # A^+ y
            post_means = post_means @ basis
            post_covs = basis.T @ post_covs @ basis
        post_covs = 0.5 * (post_covs + post_covs.mT)
        dt = self.dtype
        weights = torch.softmax(logw, 0)
        q = post_covs.shape[-1]
        off_diag = post_covs * (1 - torch.eye(q, dtype=f64, device=A.device))
        if not self._full and bool((off_diag == 0).all()):
            cov_kw = {"stds": torch.diagonal(post_covs, dim1=-2, dim2=-1).sqrt().to(dt)}
        else:
            cov_kw = {"covs": post_covs.to(dt)}
        return PosteriorMixture(
            post_means.to(dt),
            weights=weights.to(dt),
            offset=None if offset is None else offset.to(dt),
            basis=None if basis is None else basis.to(dt),
            **cov_kw,
        )

    def _check_observation(self, A, y, noise_std) -> tuple[Tensor, Tensor, float]:
        """``A`` (p, d), ``y`` (p,) as float tensors on the mixture's device, ``noise_std``
        as a float >= 0 (``ValueError`` naming the argument otherwise)."""
        d = self.dim
        A = _as_float_tensor("A", A, self.means)
        if A.ndim != 2 or A.shape[1] != d or A.shape[0] < 1:
            raise ValueError(
                f"A must have shape (p, d) = (p, {d}) with p >= 1 (the mixture has d = {d}), "
                f"got shape {tuple(A.shape)}"
            )
        if not bool(torch.isfinite(A).all()):
            raise ValueError("A must be finite")
        p = A.shape[0]
        y = _as_float_tensor("y", y, self.means)
        if y.shape != (p,):
            hint = " (one observation; call condition once per observation)" if y.ndim > 1 else ""
            raise ValueError(
                f"y must have shape (p,) = ({p},), A's number of rows{hint}, got shape "
                f"{tuple(y.shape)}"
            )
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"y must be finite, got {y.tolist()}")
        if isinstance(noise_std, Tensor):
            if noise_std.numel() != 1:
                raise ValueError(
                    f"noise_std must be a number >= 0, got a tensor of shape "
                    f"{tuple(noise_std.shape)}"
                )
            noise_std = noise_std.item()
        if isinstance(noise_std, bool) or not isinstance(noise_std, int | float):
            raise TypeError(f"noise_std must be a number >= 0, got {noise_std!r}")
        s = float(noise_std)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}")
        return A, y, s

    @staticmethod
    def _null_basis(A: Tensor) -> Tensor:
        r"""An orthonormal basis $N$ (d, d - p) of the null space of ``A`` (p, d), which must
        have full row rank p < d: the unobserved coordinates' unit vectors when ``A`` selects
        coordinates, else the trailing right singular vectors."""
        p, d = A.shape
        if p >= d:
            raise ValueError(
                f"with noise_std = 0, A must have fewer rows than d = {d} (the posterior is "
                f"then a point mass), got shape {tuple(A.shape)}; give noise_std > 0"
            )
        ones = A == 1
        is_mask = bool(((A == 0) | ones).all() and (ones.sum(1) == 1).all())
        if is_mask:
            cols = ones.nonzero()[:, 1]
            if cols.unique().numel() == p:
                free = torch.ones(d, dtype=torch.bool, device=A.device)
                free[cols] = False
                return torch.eye(d, dtype=A.dtype, device=A.device)[:, free]
        _, sv, vh = torch.linalg.svd(A, full_matrices=True)
        if not bool(sv[-1] > max(p, d) * torch.finfo(A.dtype).eps * sv[0]):
            raise ValueError(
                f"with noise_std = 0, A must have full row rank p = {p}, but its smallest "
                f"singular value is {float(sv[-1]):.3g} (largest {float(sv[0]):.3g}); give "
                f"noise_std > 0 or drop dependent rows"
            )
        return vh[p:].T

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
            rot = None
            if self._full:
                var0, rot = self._evals[:, None, :], self._evecs.to(x.device, x.dtype)
            elif self._isotropic:
                var0 = self.stds[:, :1].square()
            else:
                var0 = self.stds[:, None, :].square()
            p = _Params(
                self.means.to(device=x.device, dtype=x.dtype)[:, None, :],
                var0.to(device=x.device, dtype=x.dtype),
                self.weights.to(device=x.device, dtype=x.dtype).log()[:, None],
                rot,
            )
            self._cache[key] = p
        return p

    def _log_joint(self, x: Tensor, m: Time, std: Time):
        r"""$\log w_k + \log\mathcal N(x_b; m\mu_k, V_k)$, $V_k = m^2 C_k + \sigma^2 I$, shape
        (K, B), and what the score reuses: ``diff`` $= x_b - m\mu_k$ (K, B, d; for full
        covariances rotated into each eigenbasis, $U_k^\top(x_b - m\mu_k)$), ``var`` the
        diagonal of $V_k$ (of $U_k^\top V_k U_k$ for full ones) and ``scaled`` $=$
        ``diff / var`` (``None`` for isotropic stds, whose variance is one number per
        component: shape (K, 1), or (K, B) for per-sample times).

        Components come first: torch's softmax and sums over a leading dimension are several
        times faster on the CPU than over a short last one. The (K, B, d) work is one
        subtraction (plus, for diagonal stds, one division; for full covariances, one batched
        rotation) and two reductions; everything else stays (K, B) or smaller."""
        means, var0, logw, rot = self._params(x)
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
        if rot is not None:
            diff = diff @ rot  # U_k^T (x - m mu_k), as rows
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
        kind = "full" if self._full else "isotropic" if self._isotropic else "diagonal"
        return (
            f"{type(self).__name__}(K={self.n_components}, d={self.dim}, covariances={kind}, "
            f"dtype={self.dtype})"
        )


class PosteriorMixture(GaussianMixture):
    r"""The exact posterior of a linear observation (`GaussianMixture.condition`): a
    `GaussianMixture` on coordinates $z$, with $x = x_0 + N z$.

    For a noisy observation $N = I$, $x_0 = 0$ (``basis`` and ``offset`` are ``None``): $z$ is
    $x$. For an exact one ($\varsigma = 0$) $z \in \mathbb R^{d-p}$ are coordinates of the
    subspace $\{x : A x = y\}$ (``basis`` $N$, (d, d - p), orthonormal columns; ``offset``
    $x_0 = A^+ y$, (d,)). Every `GaussianMixture` method (``sample``, ``score``, ``at``,
    ...) works on $z$; `embed` maps to $x$ and `project` back. The ideal conditional sampler
    is ``embed(sample(sde, posterior.score(sde), solver, (n, posterior.dim)).x)``.
    """

    def __init__(
        self,
        means: Tensor,
        stds: Tensor | None = None,
        weights: Tensor | None = None,
        *,
        covs: Tensor | None = None,
        offset: Tensor | None = None,
        basis: Tensor | None = None,
    ) -> None:
        super().__init__(means, stds, weights, covs=covs)
        if (offset is None) != (basis is None):
            raise ValueError("give both offset and basis, or neither")
        if basis is not None and (
            basis.ndim != 2 or basis.shape[1] != self.dim or offset.shape != (basis.shape[0],)
        ):
            raise ValueError(
                f"basis must have shape (D, {self.dim}) and offset (D,), got "
                f"{tuple(basis.shape)} and {tuple(offset.shape)}"
            )
        self.offset, self.basis = offset, basis

    @property
    def ambient_dim(self) -> int:
        """d, the dimension of $x$ (``dim`` is that of $z$)."""
        return self.dim if self.basis is None else self.basis.shape[0]

    def embed(self, z: Tensor) -> Tensor:
        r"""$x = x_0 + N z$: samples (B, dim) of this mixture as points (B, d) of the original
        space (``z`` itself for a noisy observation)."""
        if self.basis is None:
            return z
        b = self.basis.to(device=z.device, dtype=z.dtype)
        return torch.addmm(self.offset.to(device=z.device, dtype=z.dtype), z, b.T)

    def project(self, x: Tensor) -> Tensor:
        r"""$z = N^\top (x - x_0)$, the coordinates (B, dim) of points ``x`` (B, d) (their
        component off the subspace is dropped)."""
        if self.basis is None:
            return x
        b = self.basis.to(device=x.device, dtype=x.dtype)
        return (x - self.offset.to(device=x.device, dtype=x.dtype)) @ b

    def sample_x(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact posterior draws in the original space, shape (n, d)."""
        return self.embed(self.sample(n, generator))

    def to(self, device=None, dtype=None) -> PosteriorMixture:
        moved = None if self.basis is None else (self.offset, self.basis)
        if moved is not None:
            moved = tuple(v.to(device=device, dtype=dtype) for v in moved)
        return PosteriorMixture(
            **self._moved(device, dtype),
            offset=None if moved is None else moved[0],
            basis=None if moved is None else moved[1],
        )


class MixtureScore:
    r"""The exact score $\nabla_x \log p_t(x)$ of a `GaussianMixture` under an SDE."""

    def __init__(self, mixture: GaussianMixture, sde: SDE) -> None:
        self.mixture = mixture
        self.sde = sde

    def __call__(self, x: Tensor, t: Time) -> Tensor:
        return self.mixture.marginal_score(self.sde, x, t)

    def __repr__(self) -> str:
        return f"<exact score of {self.mixture!r} under {self.sde!r}>"


class ClassLogProb:
    r"""The exact classifier $\log p_t(k \mid x)$ of a `GaussianMixture`'s component labels
    under an SDE (`GaussianMixture.class_log_prob`).

    ``log_prob(x, t)`` is (B, K); ``log_prob(x, t, y)`` picks label ``y`` (an int, or a
    (B,) integer tensor, one label per sample): (B,). ``for_class(k)`` is the callable
    ``log_prob(x, t) -> (B,)`` of one label, for `ClassGuidance`. Differentiable in ``x``
    (guidance takes $\nabla_x \log p_t(y \mid x)$ by autograd); no host synchronisation
    beyond the SDE's checks of a tensor ``t``.
    """

    def __init__(self, mixture: GaussianMixture, sde: SDE, label: int | None = None) -> None:
        self.mixture, self.sde, self.label = mixture, sde, label

    def __call__(self, x: Tensor, t: Time, y: int | Tensor | None = None) -> Tensor:
        if y is None:
            y = self.label
        mix = self.mixture
        xf = mix._flat(x)
        m, std = mix._coeffs(self.sde, xf, t)
        log_post = mix._log_joint(xf, m, std)[0].log_softmax(0).T  # (B, K)
        if y is None:
            return log_post
        if isinstance(y, Tensor):
            if y.shape != (xf.shape[0],) or y.is_floating_point():
                raise ValueError(
                    f"y must be an int or an integer tensor of shape (B,) = ({xf.shape[0]},), "
                    f"got dtype {y.dtype}, shape {tuple(y.shape)}"
                )
            return log_post.gather(1, y.to(log_post.device, torch.long)[:, None])[:, 0]
        return log_post[:, y]

    def for_class(self, k: int) -> ClassLogProb:
        """The classifier of label ``k``: ``log_prob(x, t) -> (B,)``."""
        K = self.mixture.n_components
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < K:
            raise ValueError(f"k must be a component index in [0, {K}), got {k!r}")
        return ClassLogProb(self.mixture, self.sde, k)

    def __repr__(self) -> str:
        label = "" if self.label is None else f" of class {self.label}"
        return f"<exact classifier{label} of {self.mixture!r} under {self.sde!r}>"
