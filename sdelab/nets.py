r"""Small score networks in plain torch: `MLPScore` for vectors, `UNet` for small images.

Both are called as ``net(x, t)`` with ``t`` a tensor of shape (B,) (or a Python float) and
return a tensor shaped like ``x``; what the output means (score, noise, data or v) is the
``parametrization`` of `sdelab.training.dsm_loss`. Time enters through a
`GaussianFourierEmbedding` of the raw time $t \in [0, T]$ (Song et al. 2021, App. H).
`config` gives a JSON-serialisable description and `from_config` rebuilds the network from
it, so a checkpoint (config + ``state_dict``) restores it; the random Fourier frequencies are a
buffer, saved with the weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_int, check_positive

__all__ = ["GaussianFourierEmbedding", "MLPScore", "UNet", "from_config"]


def _time_batch(x: Tensor, t: Tensor | float) -> Tensor:
    """``t`` as a tensor of shape (B,) in ``x``'s dtype and device."""
    if isinstance(t, Tensor):
        t = t.to(dtype=x.dtype)
        if t.ndim == 0:
            return t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"t must have shape (B,) = ({x.shape[0]},) or be a scalar, got shape "
                f"{tuple(t.shape)}"
            )
        return t
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


class GaussianFourierEmbedding(nn.Module):
    r"""Random Fourier features of time (Tancik et al. 2020; Song et al. 2021, App. H):

    $$ \gamma(t) = \big[\sin(2\pi W t),\ \cos(2\pi W t)\big], \qquad
       W \in \mathbb R^{d/2},\ W_i \sim \mathcal N(0, s^2) \text{ fixed}. $$

    The frequencies $W$ are drawn once at construction from torch's global generator and kept
    as a buffer (saved in the ``state_dict``, not trained). The input is the raw time $t$, not
    $\log\sigma(t)$ as in the paper's VE models: the same network then serves every SDE.

    Args:
        dim: the embedding size $d$ (even).
        scale: the frequency scale $s > 0$.
    """

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        dim = check_int("embed_dim", dim, minimum=2)
        if dim % 2:
            raise ValueError(f"embed_dim must be even, got {dim!r}")
        scale = check_positive("fourier_scale", scale)
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, t: Tensor) -> Tensor:
        """``t`` of shape (B,) -> features of shape (B, dim)."""
        proj = (2.0 * math.pi) * t[:, None] * self.W.to(t.dtype)[None, :]
        return torch.cat([proj.sin(), proj.cos()], dim=-1)


class _Configurable(nn.Module):
    """``config()`` / ``from_config(dict)`` from the constructor's keyword arguments."""

    _config: dict[str, Any]

    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description: ``{"class": name, **constructor arguments}``."""
        return {"class": type(self).__name__, **self._config}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]):
        """Rebuild the network from `config` (weights not included: load the ``state_dict``)."""
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}")
        kwargs = dict(config)
        name = kwargs.pop("class", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"config['class'] must be {cls.__name__!r}, got {name!r}")
        return cls(**kwargs)

    @property
    def parameter_count(self) -> int:
        """The number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())


class MLPScore(_Configurable):
    r"""An MLP on $[x, \gamma(t)]$ for vectors $x \in \mathbb R^d$:

    $$ h_0 = [x, \gamma(t)], \quad h_{k} = \operatorname{SiLU}(A_k h_{k-1} + b_k)\
       (k = 1..\text{depth}), \quad \text{out} = A_{\text{out}} h_{\text{depth}} + b_{\text{out}}, $$

    with $\gamma$ the `GaussianFourierEmbedding` of $t$. Inputs of shape (B, d) or (B, ...)
    with d entries per sample; the output has ``x``'s shape.

    Parameter count: $(d + e)h + h + (\text{depth} - 1)(h^2 + h) + h d + d$; with the defaults
    ($h = 256$, depth 3, $e = 64$) 149,250 for $d = 2$ and 156,432 for $d = 16$.

    Args:
        dim: $d$, the entries of one sample.
        hidden: $h$, the width of the hidden layers.
        depth: the number of hidden layers.
        embed_dim: $e$, the size of the time embedding.
        fourier_scale: the scale $s$ of the Fourier frequencies.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        embed_dim: int = 64,
        fourier_scale: float = 16.0,
    ) -> None:
        super().__init__()
        dim = check_int("dim", dim)
        hidden = check_int("hidden", hidden)
        depth = check_int("depth", depth)
        self._config = {
            "dim": dim,
            "hidden": hidden,
            "depth": depth,
            "embed_dim": int(embed_dim),
            "fourier_scale": float(fourier_scale),
        }
        self.dim = dim
        self.embed = GaussianFourierEmbedding(embed_dim, fourier_scale)
        layers: list[nn.Module] = []
        width = dim + embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``x`` of shape (B, dim) or (B, ...), ``t`` of shape (B,) -> shaped like ``x``."""
        if x.ndim < 1 or x[0].numel() != self.dim:
            raise ValueError(
                f"x must have shape (B, {self.dim}) or (B, ...) with {self.dim} entries per "
                f"sample, got shape {tuple(x.shape)}"
            )
        h = torch.cat([x.reshape(x.shape[0], -1), self.embed(_time_batch(x, t))], dim=-1)
        return self.net(h).reshape(x.shape)


def _groups(channels: int) -> int:
    """The GroupNorm group count: the largest of 8, 4, 2, 1 that divides ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _ResBlock(nn.Module):
    r"""$h = \operatorname{conv}(\operatorname{SiLU}(\operatorname{GN}(x))) + A\,e$, then
    $x' = \operatorname{skip}(x) + \operatorname{conv}(\operatorname{SiLU}(\operatorname{GN}(h)))$,
    with $e$ the (activated) time embedding, added once per block."""

    def __init__(self, cin: int, cout: int, temb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.temb(emb)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(_Configurable):
    r"""A small UNet (Ronneberger et al. 2015; the DDPM layout of Ho et al. 2020 without
    attention) for images of shape (B, channels, H, W).

    One residual block per resolution on the way down and up, two in the middle, a stride-2
    convolution to go down and nearest-neighbour upsampling plus a convolution to go up, skip
    connections concatenated; GroupNorm and SiLU; the time embedding
    $e = A_2\operatorname{SiLU}(A_1\gamma(t))$ (`GaussianFourierEmbedding` $\gamma$) is added in
    every block. ``len(mults)`` resolutions: with the default (1, 2, 2) an 8x8 image runs at
    8, 4, 2 and a 28x28 image at 28, 14, 7. Sizes that are not multiples of
    $2^{\text{len(mults)} - 1}$ are zero-padded at the bottom and right, and the output cropped.

    Parameter count with the defaults (channels 1, base 32, mults (1, 2, 2), embed_dim 128):
    789,217 (it does not depend on the image size).

    Args:
        channels: image channels (input and output).
        base: channels of the first resolution; resolution $i$ has ``base * mults[i]``.
        mults: channel multipliers, one per resolution.
        embed_dim: size of the Fourier time embedding (default ``4 * base``).
        fourier_scale: the scale $s$ of the Fourier frequencies.
    """

    def __init__(
        self,
        channels: int = 1,
        base: int = 32,
        mults: tuple[int, ...] | list[int] = (1, 2, 2),
        embed_dim: int | None = None,
        fourier_scale: float = 16.0,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels)
        base = check_int("base", base)
        mults = tuple(mults)
        if not mults or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in mults):
            raise ValueError(f"mults must be a non-empty sequence of ints >= 1, got {mults!r}")
        embed_dim = 4 * base if embed_dim is None else check_int("embed_dim", embed_dim)
        self._config = {
            "channels": channels,
            "base": base,
            "mults": list(mults),
            "embed_dim": embed_dim,
            "fourier_scale": float(fourier_scale),
        }
        self.channels = channels
        temb = 4 * base
        self.embed = GaussianFourierEmbedding(embed_dim, fourier_scale)
        self.time = nn.Sequential(nn.Linear(embed_dim, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        ch, skips = base, []
        for i, mult in enumerate(mults):
            self.down.append(_ResBlock(ch, base * mult, temb))
            ch = base * mult
            skips.append(ch)
            last = i == len(mults) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, 2, 1))
        self.mid = nn.ModuleList([_ResBlock(ch, ch, temb), _ResBlock(ch, ch, temb)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(mults))):
            self.up.append(_ResBlock(ch + skips[i], base * mult, temb))
            ch = base * mult
            self.upsample.append(
                nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(ch, ch, 3, padding=1))
                if i > 0
                else nn.Identity()
            )
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)
        self._multiple = 2 ** (len(mults) - 1)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``x`` of shape (B, channels, H, W), ``t`` of shape (B,) -> shaped like ``x``."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"x must have shape (B, {self.channels}, H, W), got shape {tuple(x.shape)}"
            )
        H, W = x.shape[-2:]
        k = self._multiple
        pad_h, pad_w = -H % k, -W % k
        h = nn.functional.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        emb = nn.functional.silu(self.time(self.embed(_time_batch(x, t))))
        h = self.conv_in(h)
        skips = []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for block, up in zip(self.up, self.upsample, strict=True):
            h = up(block(torch.cat([h, skips.pop()], dim=1), emb))
        h = self.conv_out(nn.functional.silu(self.norm_out(h)))
        return h[..., :H, :W] if pad_h or pad_w else h


_NETWORKS: dict[str, type[_Configurable]] = {"MLPScore": MLPScore, "UNet": UNet}


def from_config(config: Mapping[str, Any]) -> nn.Module:
    """Rebuild any network of this module from its `config` (dispatching on ``"class"``)."""
    if not isinstance(config, Mapping) or config.get("class") not in _NETWORKS:
        got = config.get("class") if isinstance(config, Mapping) else type(config).__name__
        raise ValueError(
            f"config['class'] must be one of {', '.join(map(repr, _NETWORKS))}, got {got!r}"
        )
    return _NETWORKS[config["class"]].from_config(config)
