"""Gaussian draws with diffusers' rules for generators, so seeded runs give the same numbers.

A generator decides where the draw happens: the noise is drawn on the generator's device and
then moved to ``device``, so a CPU ``torch.Generator`` gives the same numbers whatever device the
sample lives on. A list of generators (one per batch element) draws each element separately.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Generator = torch.Generator | Sequence[torch.Generator] | None


def check_generator(generator: Generator, batch_size: int) -> None:
    """Raise unless ``generator`` is None, a ``torch.Generator`` or a list of ``batch_size`` of them."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, list | tuple):
        if not all(isinstance(g, torch.Generator) for g in generator):
            raise TypeError("generator must be a torch.Generator or a list of torch.Generator")
        if len(generator) != batch_size:
            raise ValueError(
                f"a list of generators must have one per batch element: got {len(generator)} "
                f"generators for a batch of {batch_size}"
            )
        return
    raise TypeError(
        f"generator must be None, a torch.Generator or a list of them, got {type(generator).__name__}"
    )


def randn(
    shape: Sequence[int],
    generator: Generator,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> Tensor:
    """$z \\sim \\mathcal N(0, I)$ of ``shape`` on ``device`` (CPU when None), drawn on the
    generator's device; ``generator`` has passed `check_generator` for ``shape[0]``."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = tuple(shape)
    if isinstance(generator, list | tuple):
        if len(generator) == 1:
            generator = generator[0]
        else:
            parts = [
                torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=dtype)
                for g in generator
            ]
            return torch.cat([p.to(device) for p in parts], dim=0)
    draw_on = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_on, dtype=dtype).to(device)
