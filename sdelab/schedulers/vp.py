r"""`ScoreSdeVpScheduler`: diffusers' VP scheduler on top of `sdelab.VPSDE`.

Same constructor, attributes, methods and numbers as diffusers'
``ScoreSdeVpScheduler`` (``diffusers.schedulers.deprecated.scheduling_sde_vp``; tested bit for
bit against diffusers 0.42.1 on CPU in float32). $\beta(t)$, $\log m(t)$, the drift and the
diffusion come from `sdelab.VPSDE` (``self.sde``) and its reverse-time SDE.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import _short, check_batched, check_int
from ..sde.reverse import ReverseSDE
from ..sde.vp import VPSDE
from ._common import check_eps, check_model_output, check_per_sample, time_grid
from ._config import ConfigMixin
from ._outputs import SdeVeOutput
from ._random import Generator, check_generator, randn

__all__ = ["ScoreSdeVpScheduler"]


def _precomputed_only(x: Tensor, t) -> Tensor:  # the scheduler always passes the score itself
    raise RuntimeError("ScoreSdeVpScheduler passes its score to the reverse SDE explicitly")


class ScoreSdeVpScheduler(ConfigMixin):
    r"""The variance-preserving SDE sampler of Song et al. 2021 in diffusers' scheduler form:
    Euler-Maruyama on the reverse-time SDE (eq. 6) of `sdelab.VPSDE` (eq. 11),

    $$ \bar x = x - \big[f(x, t) - g(t)^2 s\big]\,\Delta t, \qquad
       x' = \bar x + g(t)\sqrt{\Delta t}\; z, \qquad \Delta t = 1/n, $$

    with $f(x,t) = -\tfrac12\beta(t)x$, $g(t) = \sqrt{\beta(t)}$,
    $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$.

    Args:
        num_train_timesteps: kept in the config, returned by ``len()`` and used as
            ``self.sde.N``; sampling does not use it.
        beta_min: $\beta_{\min}$.
        beta_max: $\beta_{\max}$ (the default is the integer 20, as in diffusers).
        sampling_eps: the last time $\epsilon$ of the grid $t = 1 \to \epsilon$.

    Attributes:
        timesteps: ``None`` until `set_timesteps`, then ``torch.linspace(1, sampling_eps, n)``.
        sigmas, discrete_sigmas: always ``None`` (as in diffusers; VP has no sigma table).
        init_noise_sigma: 1.0, the prior's std (an sdelab addition: diffusers' VP scheduler has
            no such attribute).
        sde: the `sdelab.VPSDE` the coefficients come from.

    Surprises of the original, reproduced here on purpose (their numbers are the contract):

    * `step_pred`'s ``score`` argument is a **noise prediction** $\hat\epsilon(x, t)$, not a
      score: it is turned into the score $s = -\hat\epsilon / \sigma(t)$ first. Feeding a true
      score diverges.
    * The step is $\Delta t = 1/n$ while the grid spacing is $(1 - \epsilon)/(n - 1)$: the
      $n$ steps integrate over a time span of 1 although the grid covers $1 - \epsilon$. The
      error is $O(1/n)$, like the scheme's own; the native `sdelab.sample` uses its grid's
      spacing.
    * $\sigma(t)$ is computed as $\sqrt{1 - \exp(2\log m(t))}$ (``VPSDE.std`` uses
      ``expm1``, which is accurate near $t = 0$; diffusers' form loses digits there in
      float32: a relative error up to about $3\times10^{-8}/(\beta_{\min} t)$; measured
      $1.2\times10^{-4}$ at $t = 10^{-3}$ and $3\times10^{-6}$ at $t = 10^{-2}$).
    * `step_pred` returns the tuple ``(x, x_mean)`` by default, not an output record.
    """

    order = 1

    def __init__(
        self,
        num_train_timesteps: int = 2000,
        beta_min: float = 0.1,
        beta_max: float = 20,
        sampling_eps: float = 1e-3,
    ) -> None:
        check_int("num_train_timesteps", num_train_timesteps)
        check_eps("sampling_eps", sampling_eps)
        self.sde = VPSDE(beta_min, beta_max, N=num_train_timesteps)
        self._register_config(
            num_train_timesteps=num_train_timesteps,
            beta_min=beta_min,
            beta_max=beta_max,
            sampling_eps=sampling_eps,
        )
        self._reverse = ReverseSDE(self.sde, _precomputed_only)
        self.init_noise_sigma = self.sde.prior_std
        self.timesteps: Tensor | None = None
        self.sigmas = None
        self.discrete_sigmas = None

    def set_timesteps(
        self, num_inference_steps: int, device: str | torch.device | None = None
    ) -> None:
        r"""Set ``timesteps`` to $t_i = 1 - i(1 - \epsilon)/(n-1)$, $i = 0..n-1$, on
        ``device`` (the second positional argument, where the VE scheduler has
        ``sampling_eps``)."""
        if isinstance(device, Real):
            raise TypeError(
                f"device must be a device, got the number {device!r}: ScoreSdeVpScheduler's "
                "second argument is device (ScoreSdeVeScheduler's is sampling_eps); to change "
                "epsilon, build the scheduler with sampling_eps=..."
            )
        self.timesteps = time_grid(num_inference_steps, self.config.sampling_eps, device)

    def noise_std(self, t: float | Tensor) -> float | Tensor:
        r"""$\sigma(t) = \sqrt{1 - m(t)^2}$ in diffusers' rounding, $\sqrt{1 - \exp(2\log m(t))}$,
        with $\log m(t)$ from `VPSDE.log_mean_coeff`."""
        return tm.sqrt(1.0 - tm.exp(2.0 * self.sde.log_mean_coeff(t)))

    def step_pred(
        self,
        score: Tensor,
        x: Tensor,
        t: float | Tensor,
        generator: Generator = None,
        return_dict: bool = False,
    ) -> tuple[Tensor, Tensor] | SdeVeOutput:
        r"""One Euler-Maruyama step of the reverse SDE from $t$ to $t - 1/n$.

        Args:
            score: despite its name, the model's **noise prediction** $\hat\epsilon(x, t)$
                (trained on $x_t = m(t)x_0 + \sigma(t)\epsilon$), shaped like ``x``; the score
                used is $s = -\hat\epsilon/\sigma(t)$.
            x: the current sample, shape (B, ...).
            t: the current time (an entry of ``timesteps``): a float, a 0-d tensor or one per
                sample (shape (B,)). Tensors are moved to ``x``'s device and dtype (diffusers
                requires a tensor; a Python float works here, computed in double precision).
            generator: seeds $z$ (a ``torch.Generator`` or a list, one per sample), drawn on
                the generator's device.
            return_dict: return `SdeVeOutput` instead of the tuple.

        Returns:
            ``(x', x_mean)``: the new sample and the same step without noise.
        """
        if self.timesteps is None:
            raise ValueError(
                "`self.timesteps` is not set, you need to run 'set_timesteps' after creating "
                "the scheduler"
            )
        check_batched("x", x)
        check_model_output("score", score, x, "x")
        check_generator(generator, x.shape[0])
        if isinstance(t, Tensor):
            check_per_sample("t", t, x.shape[0])
            t = t.to(device=x.device, dtype=x.dtype)
        elif not isinstance(t, Real) or isinstance(t, bool):
            raise TypeError(f"t must be a float or a tensor, got {_short(t)}")
        s = -score / tm.bcast(self.noise_std(t), x)
        dt = 1.0 / len(self.timesteps)
        mean = x - self._reverse.drift(x, t, score=s) * dt
        noise = randn(x.shape, generator, x.device, x.dtype)
        new = mean + self._reverse.noise(x, t) * math.sqrt(dt) * noise
        return SdeVeOutput(new, mean) if return_dict else (new, mean)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
