r"""`ScoreSdeVeScheduler`: diffusers' VE (SMLD / NCSN++) scheduler on top of `sdelab.VESDE`.

Same constructor, attributes, methods and numbers as ``diffusers.ScoreSdeVeScheduler`` (tested
bit for bit against diffusers 0.42.1 on CPU in float32). The noise levels come from
`sdelab.VESDE` (``self.sde``): $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from .. import _tmath as tm
from .._checks import _short, check_batched, check_int, check_positive, check_time
from ..sde.ve import VESDE
from ..solvers.langevin import langevin_step
from ._common import check_eps, check_model_output, check_per_sample, time_grid
from ._config import ConfigMixin
from ._outputs import SchedulerOutput, SdeVeOutput
from ._random import Generator, check_generator, randn

__all__ = ["ScoreSdeVeScheduler"]

_NOT_SET = (
    "`self.timesteps` is not set, you need to run 'set_timesteps' after creating the scheduler"
)


class ScoreSdeVeScheduler(ConfigMixin):
    r"""The variance-exploding SDE sampler of Song et al. 2021 in diffusers' scheduler form.

    The forward process is `sdelab.VESDE` (eq. 9/30), available as ``self.sde``. Sampling
    alternates a Langevin corrector (`step_correct`, Algorithm 4/5) and the reverse-diffusion
    predictor for SMLD (`step_pred`, eq. 47): with the noise table
    $\sigma_0 < \dots < \sigma_{N-1}$,

    $$ x_{i-1} = x_i + (\sigma_i^2 - \sigma_{i-1}^2)\, s(x_i, \sigma_i)
       + \sqrt{\sigma_i^2 - \sigma_{i-1}^2}\; z, \qquad \sigma_{-1} = 0. $$

    Args:
        num_train_timesteps: default number of noise levels (the table built at construction);
            also the ``N`` of ``self.sde``.
        snr: the corrector's signal-to-noise ratio $r$ (paper: 0.16; diffusers: 0.15).
        sigma_min: $\sigma_{\min} > 0$.
        sigma_max: $\sigma_{\max} > \sigma_{\min}$ (1348 for the 1024x1024 CelebA-HQ model).
        sampling_eps: the last time $\epsilon$ of the grid $t = 1 \to \epsilon$.
        correct_steps: corrector steps per noise level (read by the pipeline; 0 for none).

    Attributes:
        timesteps: the continuous times ``torch.linspace(1, sampling_eps, n)``. Unlike the VP
            scheduler (and as in diffusers) this is already set by the constructor, to a grid
            of ``num_train_timesteps`` points.
        sigmas: $\sigma(t)$ at each of ``timesteps``: the noise level the pipeline passes to
            the model. Evaluated by `VESDE.sigma` in the timesteps' dtype, one time at a time
            (as diffusers does), so equal to diffusers' bit for bit.
        discrete_sigmas: the table $\sigma_i = \sigma(i/(n-1))$, $i = 0..n-1$ (increasing),
            that `step_pred` and `add_noise` index. Equal to diffusers' bit for bit: because
            $\log\sigma(t)$ is linear in $t$ it is computed as ``exp(linspace(log sigma(0),
            log sigma(1), n))``, exactly as diffusers does.
        init_noise_sigma: the prior's standard deviation $\sigma_{\max}$
            (``sde.prior_std``): the pipeline starts from $\mathcal N(0, \sigma_{\max}^2 I)$.
        sde: the `sdelab.VESDE` these numbers come from (for the native path, see
            `sdelab.score_from_diffusers_model`).

    Conventions worth knowing (all as in diffusers):

    * ``model_output`` in `step_pred` / `step_correct` is the **score**
      $\nabla_x \log p_{\sigma}(x)$ of the data perturbed with noise level $\sigma$, what
      NCSN++ VE models output (not a noise prediction).
    * The noise level uses the paper's convention $x_\sigma = x_0 + \sigma z$ with
      $\sigma = \sigma(t) \ge \sigma_{\min}$; `sdelab.VESDE.marginal` is the exact law of
      the SDE from $x_0$, with variance $\sigma(t)^2 - \sigma_{\min}^2$ (see `sdelab.VESDE`).
    * `set_timesteps` takes ``sampling_eps`` as its *second* positional argument (the VP
      scheduler's second argument is ``device``); pass arguments by name.
    """

    order = 1

    def __init__(
        self,
        num_train_timesteps: int = 2000,
        snr: float = 0.15,
        sigma_min: float = 0.01,
        sigma_max: float = 1348.0,
        sampling_eps: float = 1e-5,
        correct_steps: int = 1,
    ) -> None:
        check_int("num_train_timesteps", num_train_timesteps)
        check_positive("snr", snr, allow_zero=True)
        check_eps("sampling_eps", sampling_eps)
        check_int("correct_steps", correct_steps, minimum=0)
        self.sde = VESDE(sigma_min, sigma_max, N=num_train_timesteps)
        self._register_config(
            num_train_timesteps=num_train_timesteps,
            snr=snr,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            sampling_eps=sampling_eps,
            correct_steps=correct_steps,
        )
        self.init_noise_sigma = self.sde.prior_std
        self.timesteps: Tensor | None = None
        self.sigmas: Tensor | None = None
        self.discrete_sigmas: Tensor | None = None
        self.set_sigmas(num_train_timesteps)

    # --- grids ----------------------------------------------------------------------------
    def scale_model_input(self, sample: Tensor, timestep: int | None = None) -> Tensor:
        """Returns ``sample`` unchanged (VE models take the unscaled sample)."""
        return sample

    def set_timesteps(
        self,
        num_inference_steps: int,
        sampling_eps: float | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        r"""Set ``timesteps`` to $t_i = 1 - i(1 - \epsilon)/(n-1)$, $i = 0..n-1$.

        Args:
            num_inference_steps: $n$, the number of noise levels.
            sampling_eps: $\epsilon$, overriding the config's (second positional argument,
                as in diffusers).
            device: where ``timesteps`` live.

        Call `set_sigmas` with the same $n$ afterwards (the pipeline does both).
        """
        eps = self.config.sampling_eps if sampling_eps is None else sampling_eps
        self.timesteps = time_grid(num_inference_steps, check_eps("sampling_eps", eps), device)

    def set_sigmas(
        self,
        num_inference_steps: int,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        sampling_eps: float | None = None,
    ) -> None:
        r"""Set ``sigmas`` ($\sigma(t)$ at each timestep, from `VESDE.sigma`) and the table
        ``discrete_sigmas`` ($\sigma(i/(n-1))$, $n$ = ``num_inference_steps``).

        ``sigma_min`` / ``sigma_max`` override the config's for these tables only (the config
        and ``self.sde`` keep theirs). ``sampling_eps`` is used only when ``timesteps`` is not
        set yet (as in diffusers); timesteps set before are kept, so call
        ``set_timesteps(n)`` first.
        """
        n = check_int("num_inference_steps", num_inference_steps)
        sde = self.sde
        if sigma_min is not None or sigma_max is not None:
            sde = VESDE(
                sde.sigma_min if sigma_min is None else sigma_min,
                sde.sigma_max if sigma_max is None else sigma_max,
                N=sde.N,
            )
        if self.timesteps is None:
            self.set_timesteps(n, sampling_eps)
        device = self.timesteps.device
        # sigma(t) is geometric in t: on the uniform grid t_i = i/(n-1) it is the exponential of
        # a uniform grid in log sigma between log sigma(0) = log sigma_min and log sigma(1).
        # Computed on the CPU in the default dtype, as diffusers does, so the table is identical.
        log_grid = torch.linspace(math.log(sde.sigma_min), math.log(sde.sigma_max), n)
        self.discrete_sigmas = torch.exp(log_grid).to(device)
        # sigma(t) in the timesteps' dtype, one time at a time on the CPU, as diffusers does: on
        # a whole vector torch's SIMD power kernel rounds ~2% of entries differently (1 ulp)
        # from the scalar power that a single time uses. Set-up only, not per step.
        times = self.timesteps.detach().cpu()
        self.sigmas = torch.stack([sde.sigma(t) for t in times]).to(device)

    def get_adjacent_sigma(self, timesteps: Tensor, t: Tensor) -> Tensor:
        r"""$\sigma_{i-1}$ from ``discrete_sigmas`` for integer indices ``timesteps`` $= i$,
        and $0$ where $i = 0$ (``t`` only supplies the dtype of that zero, as in diffusers)."""
        table = self._table()
        return torch.where(
            timesteps == 0,
            torch.zeros_like(t.to(timesteps.device)),
            table[timesteps - 1].to(timesteps.device),
        )

    # --- steps ----------------------------------------------------------------------------
    def step_pred(
        self,
        model_output: Tensor,
        timestep: float | Tensor,
        sample: Tensor,
        generator: Generator = None,
        return_dict: bool = True,
    ) -> SdeVeOutput | tuple[Tensor, Tensor]:
        r"""The reverse-diffusion predictor for SMLD (Song et al. 2021, eq. 47):

        $$ \bar x = x + (\sigma_i^2 - \sigma_{i-1}^2)\, s, \qquad
           x' = \bar x + \sqrt{\sigma_i^2 - \sigma_{i-1}^2}\; z, $$

        with $i = \lfloor t\,(n-1) \rfloor$ computed in float32 from ``timestep`` (so $t$ must
        be one of ``timesteps``), $\sigma_i$ from ``discrete_sigmas`` and $\sigma_{-1} = 0$:
        the last step (at $\epsilon$) takes $\sigma_{\min}^2 s$.

        Args:
            model_output: the score $s \approx \nabla_x \log p_{\sigma_i}(x)$, shaped like
                ``sample`` (diffusers broadcasts other shapes silently; here they raise).
            timestep: the current continuous time $t$ (an entry of ``timesteps``): a float, a
                0-d tensor or one per sample (shape (B,)).
            sample: the current $x$, shape (B, ...).
            generator: seeds $z$ (a ``torch.Generator`` or a list, one per sample). The
                noise is drawn on the generator's device, as in diffusers.
            return_dict: return `SdeVeOutput` (else the tuple ``(prev_sample,
                prev_sample_mean)``).

        Returns:
            ``prev_sample`` $x'$ and ``prev_sample_mean`` $\bar x$.
        """
        self._check_step_inputs(model_output, sample, generator)
        n = self._check_tables()
        if isinstance(timestep, Tensor):
            check_per_sample("timestep", timestep, sample.shape[0])
            timestep = timestep.to(sample.device)
        elif not isinstance(timestep, Real) or isinstance(timestep, bool):
            raise TypeError(f"timestep must be a float or a tensor, got {_short(timestep)}")
        check_time(timestep, 1.0, name="timestep")
        t = timestep * torch.ones(sample.shape[0], device=sample.device)
        idx = (t * (n - 1)).long().to(self.discrete_sigmas.device)
        sigma = self.discrete_sigmas[idx].to(sample.device)
        adjacent = self.get_adjacent_sigma(idx, t).to(sample.device)
        g = tm.bcast((sigma**2 - adjacent**2) ** 0.5, sample)  # SMLD step std
        mean = sample + g**2 * model_output
        noise = randn(sample.shape, generator, sample.device, sample.dtype)
        prev = mean + g * noise
        return SdeVeOutput(prev, mean) if return_dict else (prev, mean)

    def step_correct(
        self,
        model_output: Tensor,
        sample: Tensor,
        generator: Generator = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor]:
        r"""One Langevin corrector step (Song et al. 2021, Algorithms 4-5, with $\alpha = 1$):

        $$ \varepsilon = 2\Big(r\,\frac{\overline{\lVert z\rVert}}{\overline{\lVert s\rVert}}\Big)^2,
           \qquad x' = x + \varepsilon\, s + \sqrt{2\varepsilon}\; z, $$

        $r$ = ``config.snr``; $\overline{\lVert\cdot\rVert}$ is the per-sample Euclidean norm
        averaged over the batch (one step size for the whole batch, as in the paper's code and
        diffusers). `sdelab.Langevin` averages *squared* norms instead; the two agree for a
        batch of one. The update itself is `sdelab.solvers.langevin.langevin_step`.

        Args:
            model_output: the score $s$ at ``sample``'s noise level, shaped like ``sample``.
            sample: the current $x$, shape (B, ...).
            generator: seeds $z$ (drawn on the generator's device, else ``sample``'s;
                diffusers draws it on the CPU in float32 whatever the sample's device/dtype,
                which for float32 CPU samples is the same).
            return_dict: return `SchedulerOutput` (else the tuple ``(prev_sample,)``).
        """
        self._check_step_inputs(model_output, sample, generator)
        if self.timesteps is None:
            raise ValueError(_NOT_SET)
        noise = randn(sample.shape, generator, sample.device, sample.dtype)
        b = sample.shape[0]
        grad_norm = torch.linalg.vector_norm(model_output.reshape(b, -1), dim=-1).mean()
        noise_norm = torch.linalg.vector_norm(noise.reshape(b, -1), dim=-1).mean()
        step_size = (self.config.snr * noise_norm / grad_norm) ** 2 * 2
        prev = langevin_step(sample, model_output, noise, step_size)
        return SchedulerOutput(prev) if return_dict else (prev,)

    def add_noise(
        self, original_samples: Tensor, noise: Tensor | None, timesteps: Tensor
    ) -> Tensor:
        r"""Perturb data to noise level $\sigma_i$: $x = x_0 + \sigma_i\,z$.

        Args:
            original_samples: $x_0$, shape (B, ...) of any number of dimensions (diffusers
                assumes 4-D images and mis-broadcasts other shapes; here they work).
            noise: $z$, shaped like ``original_samples`` (else an error), or ``None`` to draw
                it with ``torch.randn_like``.
            timesteps: **integer indices** $i$ into ``discrete_sigmas`` (not continuous
                times), a 0-d tensor or shape (B,); each must lie in ``[0, n-1]``.
        """
        check_batched("original_samples", original_samples)
        if noise is None:
            noise = torch.randn_like(original_samples)
        else:
            check_model_output("noise", noise, original_samples, "original_samples")
        table = self._table()
        if not isinstance(timesteps, Tensor):
            timesteps = torch.as_tensor(timesteps)
        if timesteps.is_floating_point() or timesteps.is_complex() or timesteps.dtype == torch.bool:
            raise TypeError(
                "timesteps must be integer indices into discrete_sigmas (an integer tensor), got "
                f"{_short(timesteps)}; to perturb at continuous time t use sde.perturb"
            )
        check_per_sample("timesteps", timesteps, original_samples.shape[0])
        n = table.shape[0]
        if timesteps.numel() and not bool(((timesteps >= 0) & (timesteps < n)).all()):
            raise ValueError(f"timesteps must be indices in [0, {n - 1}], got {_short(timesteps)}")
        sigmas = table.to(original_samples.device)[timesteps.to(original_samples.device)]
        return noise * tm.bcast(sigmas, original_samples) + original_samples

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # --- checks ---------------------------------------------------------------------------
    def _table(self) -> Tensor:
        if self.discrete_sigmas is None:
            raise ValueError("discrete_sigmas is not set; call set_sigmas(num_inference_steps)")
        return self.discrete_sigmas

    def _check_tables(self) -> int:
        """Steps map t to an index with len(timesteps); the table must have that length."""
        if self.timesteps is None:
            raise ValueError(_NOT_SET)
        n, m = len(self.timesteps), len(self._table())
        if n != m:
            raise ValueError(
                f"timesteps has {n} entries but discrete_sigmas has {m}: call "
                f"set_timesteps(n) and then set_sigmas(n) with the same n (diffusers would index "
                "the wrong noise levels or fail with an index error)"
            )
        return n

    @staticmethod
    def _check_step_inputs(model_output: Tensor, sample: Tensor, generator: Generator) -> None:
        check_batched("sample", sample)
        check_model_output("model_output", model_output, sample, "sample")
        check_generator(generator, sample.shape[0])
