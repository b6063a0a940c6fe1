"""Output records of the diffusers-compatible schedulers and pipelines.

They behave like diffusers' ``BaseOutput``: fields are attributes (``out.prev_sample``), and
can also be read by position or name (``out[0]``, ``out["prev_sample"]``); ``to_tuple()``
gives the plain tuple that ``return_dict=False`` returns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["BaseOutput", "ImagePipelineOutput", "SchedulerOutput", "SdeVeOutput"]


class BaseOutput:
    """Mixin for the output dataclasses: index by position or field name, ``to_tuple()``."""

    def to_tuple(self) -> tuple:
        """The fields in declaration order."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def keys(self) -> list[str]:
        """The field names."""
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no field {key!r}; fields: {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class SchedulerOutput(BaseOutput):
    """What a corrector step returns.

    Attributes:
        prev_sample: the updated sample, shaped like the input sample.
    """

    prev_sample: Tensor


@dataclass
class SdeVeOutput(BaseOutput):
    """What a predictor step returns.

    Attributes:
        prev_sample: the sample at the next (lower) noise level, noise included.
        prev_sample_mean: the same step without the noise term (its mean); the pipelines
            return the last one of these as the final, denoised image.
    """

    prev_sample: Tensor
    prev_sample_mean: Tensor


@dataclass
class ImagePipelineOutput(BaseOutput):
    """What the pipelines return.

    Attributes:
        images: a list of ``PIL.Image.Image`` (``output_type="pil"``), a NumPy array of shape
            (B, H, W, C) with values in [0, 1] (``"np"``), a tensor (B, C, H, W) in [0, 1]
            (``"pt"``) or the raw, unclamped final sample (B, C, H, W) (``"latent"``).
    """

    images: Any
