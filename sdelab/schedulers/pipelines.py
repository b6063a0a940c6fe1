r"""`ScoreSdeVePipeline` and `ScoreSdeVpPipeline`: diffusers' unconditional score-SDE image
pipelines, driving any model with sdelab's schedulers.

The model ("unet") is any torch module or callable ``unet(sample, c)`` with ``c`` a tensor of
shape (B,) (the noise level $\sigma$ for VE, the time $t$ for VP) that returns a tensor shaped
like ``sample`` or an object whose ``.sample`` is one. A diffusers ``UNet2DModel`` works as is.
The image size and channels come from ``unet.config.sample_size`` / ``unet.config.in_channels``
or from the constructor (needed for plain callables); nothing assumes 3 channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._checks import _short, check_int, check_positive
from ..solvers.base import CountingScore
from ._outputs import ImagePipelineOutput
from ._random import Generator, check_generator, randn
from .ve import ScoreSdeVeScheduler
from .vp import ScoreSdeVpScheduler

__all__ = ["ScoreSdeVePipeline", "ScoreSdeVpPipeline"]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def call_model(unet: Callable, sample: Tensor, c: Tensor) -> Tensor:
    """``unet(sample, c)``, unwrapping ``.sample`` and checking the shape."""
    out = unet(sample, c)
    if not isinstance(out, Tensor) and hasattr(out, "sample"):
        out = out.sample
    if not isinstance(out, Tensor) or out.shape != sample.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"unet(sample, t) must return a tensor shaped like sample {tuple(sample.shape)} "
            f"(or an object with such a .sample), got {got}"
        )
    return out


def model_config_value(unet: Any, name: str) -> Any:
    """``unet.config.<name>`` (attribute or key), else ``None``."""
    config = getattr(unet, "config", None)
    if config is None:
        return None
    if isinstance(config, dict):
        return config.get(name)
    return getattr(config, name, None)


def to_images(x: Tensor, output_type: str):
    r"""Final samples (B, C, H, W) to the requested output type: ``"latent"`` is ``x`` itself;
    the others clamp to [0, 1]: ``"pt"`` (B, C, H, W) tensor, ``"np"`` (B, H, W, C) float32
    NumPy array, ``"pil"`` a list of PIL images ($\mathrm{round}(255 x)$ as uint8; 1 channel gives
    mode "L", 3 "RGB", 4 "RGBA")."""
    if output_type == "latent":
        return x
    x = x.clamp(0, 1)
    if output_type == "pt":
        return x
    arr = x.detach().cpu().permute(0, 2, 3, 1).float().numpy()
    if output_type == "np":
        return arr
    from PIL import Image  # only when PIL images are asked for: `import sdelab` stays light

    channels = arr.shape[-1]
    if channels not in (1, 3, 4):
        raise ValueError(
            f'output_type="pil" needs 1, 3 or 4 channels, got {channels}; use output_type="np"'
        )
    u8 = (arr * 255).round().astype("uint8")
    if channels == 1:
        return [Image.fromarray(im[..., 0], mode="L") for im in u8]
    return [Image.fromarray(im) for im in u8]


class _ScoreSdePipeline:
    """What both pipelines share: model, shape, device, progress bar, outputs."""

    _scheduler_cls: type = object

    def __init__(
        self,
        unet: Callable[[Tensor, Tensor], Any],
        scheduler: ScoreSdeVeScheduler | ScoreSdeVpScheduler,
        *,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int | None = None,
    ) -> None:
        if not callable(unet):
            raise TypeError(f"unet must be callable as unet(sample, t), got {_short(unet)}")
        if not isinstance(scheduler, self._scheduler_cls):
            raise TypeError(
                f"scheduler must be a {self._scheduler_cls.__name__}, got "
                f"{type(scheduler).__name__}"
            )
        self.unet = unet
        self.scheduler = scheduler
        self.sample_size = sample_size
        self.in_channels = in_channels
        self._device = torch.device("cpu")
        self._progress_bar_config: dict[str, Any] = {}

    # --- placement ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """The model's device (of its first parameter), else the one given to `to`."""
        if isinstance(self.unet, torch.nn.Module):
            for p in self.unet.parameters():
                return p.device
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating dtype, else torch's default dtype."""
        if isinstance(self.unet, torch.nn.Module):
            for p in self.unet.parameters():
                if p.is_floating_point():
                    return p.dtype
        return torch.get_default_dtype()

    def to(self, device: torch.device | str):
        """Move the model (if it has ``.to``) and the sampling to ``device``; returns self."""
        self._device = torch.device(device)
        if hasattr(self.unet, "to"):
            moved = self.unet.to(self._device)
            if moved is not None:
                self.unet = moved
        return self

    # --- progress bar ---------------------------------------------------------------------
    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the tqdm progress bar, e.g. ``disable=True`` (as in diffusers)."""
        self._progress_bar_config = dict(kwargs)

    def progress_bar(self, iterable):
        from tqdm.auto import tqdm

        return tqdm(iterable, **self._progress_bar_config)

    # --- shapes and checks ----------------------------------------------------------------
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) from the constructor arguments, else ``unet.config``."""
        size = self.sample_size
        if size is None:
            size = model_config_value(self.unet, "sample_size")
        channels = self.in_channels
        if channels is None:
            channels = model_config_value(self.unet, "in_channels")
        if size is None or channels is None:
            raise ValueError(
                "the image shape is unknown: the unet has no config.sample_size / "
                "config.in_channels; pass sample_size=... and in_channels=... to the pipeline"
            )
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (
            check_int("in_channels", channels),
            check_int("sample_size", h),
            check_int("sample_size", w),
        )

    def _start(self, batch_size, num_inference_steps, generator, output_type) -> Tensor:
        r"""Check the call's arguments, set the scheduler's timesteps on the model's device and
        draw the first sample from the prior $\mathcal N(0, \sigma_{\text{init}}^2 I)$ (on the
        CPU unless the generator lives elsewhere, as in diffusers)."""
        batch_size = check_int("batch_size", batch_size)
        check_int("num_inference_steps", num_inference_steps)
        check_generator(generator, batch_size)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        shape = (batch_size, *self.image_shape())
        sched, device = self.scheduler, self.device
        sample = randn(shape, generator, None, self.dtype) * sched.init_noise_sigma
        sched.set_timesteps(num_inference_steps, device=device)
        return sample.to(device)

    def _counted_model(self) -> CountingScore:
        """The model as ``unet(sample, t)`` (`call_model`), wrapped to count its calls and
        record on the device whether each output was finite (no host sync per step)."""
        return CountingScore(lambda x, c: call_model(self.unet, x, c), name="unet(sample, t)")

    def _finish(
        self,
        x_mean: Tensor,
        output_type: str,
        return_dict: bool,
        model: CountingScore,
        calls_per_step: int,
    ):
        """Check the run (one host sync) and convert the final sample to ``output_type``.

        Raises ``FloatingPointError`` naming the first model evaluation and step that returned
        NaN/inf (NaN would otherwise become NaN arrays, or black PIL images after clamping)."""
        steps = len(self.scheduler.timesteps)
        model.check(lambda k: f" (in pipeline step {(k - 1) // calls_per_step + 1} of {steps})")
        if not bool(torch.isfinite(x_mean).all()):
            raise FloatingPointError(
                "the final sample contains NaN or inf although every unet(sample, t) output was "
                "finite: the sampler diverged (try more num_inference_steps)"
            )
        images = to_images(x_mean, output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(unet={type(self.unet).__name__}, scheduler={self.scheduler!r})"
        )


class ScoreSdeVePipeline(_ScoreSdePipeline):
    r"""Unconditional image generation with a VE score model, as diffusers' ``ScoreSdeVePipeline``.

    From $x \sim \mathcal N(0, \sigma_{\max}^2 I)$, for each of the scheduler's noise levels
    $\sigma_i$ (largest first): ``correct_steps`` Langevin corrector steps, then one predictor
    step (corrector first, as in diffusers and the paper's code; the paper's Algorithm 2 runs the
    predictor first). The result is the last predictor's mean (no noise added at the end).

    Args:
        unet: the score model $s_\theta(x, \sigma) \approx \nabla_x \log p_\sigma(x)$, called as
            ``unet(sample, sigma)`` with ``sigma`` of shape (B,) (see the module docs).
        scheduler: a `ScoreSdeVeScheduler`.
        sample_size: image size (int or (H, W)); default ``unet.config.sample_size``.
        in_channels: image channels; default ``unet.config.in_channels`` (diffusers always
            uses 3).
    """

    _scheduler_cls = ScoreSdeVeScheduler

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 2000,
        generator: Generator = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generate ``batch_size`` images with ``num_inference_steps`` noise levels.

        Args:
            batch_size: number of images.
            num_inference_steps: number of noise levels (predictor steps).
            generator: a ``torch.Generator`` (or one per image) seeding every draw; the same
                seed gives the same images as diffusers' pipeline.
            output_type: ``"pil"``, ``"np"`` (B, H, W, C in [0, 1]), ``"pt"`` (B, C, H, W in
                [0, 1]) or ``"latent"`` (the final sample, unclamped).
            return_dict: return `ImagePipelineOutput` (else the tuple ``(images,)``).
        """
        sample = self._start(batch_size, num_inference_steps, generator, output_type)
        sched = self.scheduler
        sched.set_sigmas(num_inference_steps)
        ones = torch.ones(sample.shape[0], device=sample.device)
        model = self._counted_model()
        mean = sample
        for i, t in enumerate(self.progress_bar(sched.timesteps)):
            sigma = sched.sigmas[i] * ones
            for _ in range(sched.config.correct_steps):
                score = model(sample, sigma)
                sample = sched.step_correct(score, sample, generator=generator).prev_sample
            score = model(sample, sigma)
            sample, mean = sched.step_pred(score, t, sample, generator=generator, return_dict=False)
        return self._finish(mean, output_type, return_dict, model, sched.config.correct_steps + 1)


class ScoreSdeVpPipeline(_ScoreSdePipeline):
    r"""Unconditional image generation with a VP noise-prediction model (diffusers has no
    current VP pipeline; this is the VE pipeline's counterpart).

    From $x \sim \mathcal N(0, I)$, one `ScoreSdeVpScheduler.step_pred` per time of the
    scheduler's grid; the result is the last step's mean.

    Args:
        unet: the noise-prediction model $\hat\epsilon_\theta(x, t)$ (for
            $x_t = m(t)x_0 + \sigma(t)\epsilon$), called as ``unet(sample, time_scale * t)``
            with ``t`` of shape (B,) in $[\epsilon, 1]$.
        scheduler: a `ScoreSdeVpScheduler`.
        sample_size: image size (int or (H, W)); default ``unet.config.sample_size``.
        in_channels: image channels; default ``unet.config.in_channels``.
        time_scale: factor applied to $t$ before calling the model (e.g. 999 for models trained
            on DDPM's integer timesteps, as the paper's code does); default 1.
        centered: the model's data lie in $[-1, 1]$: outputs "pil"/"np"/"pt" map them to
            $[0, 1]$ with $(x + 1)/2$ before clamping ("latent" stays raw). Default: data in
            $[0, 1]$, as in the VE pipeline.
    """

    _scheduler_cls = ScoreSdeVpScheduler

    def __init__(
        self,
        unet: Callable[[Tensor, Tensor], Any],
        scheduler: ScoreSdeVpScheduler,
        *,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int | None = None,
        time_scale: float = 1.0,
        centered: bool = False,
    ) -> None:
        super().__init__(unet, scheduler, sample_size=sample_size, in_channels=in_channels)
        self.time_scale = check_positive("time_scale", time_scale)
        self.centered = bool(centered)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 2000,
        generator: Generator = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Generate ``batch_size`` images with ``num_inference_steps`` steps (arguments as for
        `ScoreSdeVePipeline.__call__`)."""
        sample = self._start(batch_size, num_inference_steps, generator, output_type)
        sched = self.scheduler
        ones = torch.ones(sample.shape[0], device=sample.device, dtype=sample.dtype)
        model = self._counted_model()
        mean = sample
        for t in self.progress_bar(sched.timesteps):
            tb = t * ones
            eps = model(sample, tb * self.time_scale)
            sample, mean = sched.step_pred(eps, sample, tb, generator=generator)
        if self.centered and output_type != "latent":
            mean = (mean + 1) / 2
        return self._finish(mean, output_type, return_dict, model, 1)
