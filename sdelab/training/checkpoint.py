r"""Training checkpoints: safetensors weights + a JSON config, written atomically.

A checkpoint directory holds pairs ``step-00000100.safetensors`` / ``step-00000100.json``. The
weights file holds the model's and the EMA model's ``state_dict`` (``model.*``, ``ema.*``), the
AdamW state tensors (``optim.<i>.<name>``) and the per-step losses so far (``losses``). The
JSON file holds what is needed to rebuild and resume: the SDE (class and parameters), the
network's `sdelab.nets` config, the parametrization, weighting, optimizer hyper-parameters,
EMA decay, data name, step, the state of the training's random generator and the sha256 of the
weights file.

Each file is written to a temporary name in the same directory, flushed with ``fsync`` and
renamed over its final name (an atomic replace on POSIX and Windows); the weights go first and
the JSON last, so a JSON file only ever names complete weights. The two newest pairs are kept:
when the newest is truncated or corrupted (its sha256 or JSON does not check out), loading
warns, names the bad file and falls back to the previous pair, which is left intact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..sde.base import LinearSDE
from .loss import check_parametrization, to_score

__all__ = ["CheckpointError", "TrainedScore", "load_checkpoint", "sde_config", "sde_from_config"]

FORMAT = "sdelab-checkpoint-1"
_PAIR = re.compile(r"^step-(\d+)\.json$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, truncated, corrupted or not matching."""


# --- the SDE as JSON --------------------------------------------------------------------------
_SDE_PARAMS = {
    "VPSDE": ("beta_min", "beta_max", "N"),
    "SubVPSDE": ("beta_min", "beta_max", "N"),
    "VESDE": ("sigma_min", "sigma_max", "N"),
    "OrnsteinUhlenbeck": ("theta", "sigma", "N"),
}


def sde_config(sde: LinearSDE) -> dict[str, Any]:
    """``{"class": name, **parameters}`` of a built-in linear SDE (JSON-serialisable)."""
    name = type(sde).__name__
    if name in _SDE_PARAMS:
        return {"class": name, **{k: getattr(sde, k) for k in _SDE_PARAMS[name]}}
    if name == "DiscreteVPSDE":
        return {"class": name, "alphas_cumprod": sde.alphas_cumprod.tolist(), "N": sde.N}
    raise TypeError(
        f"sde must be one of {', '.join(sorted(_SDE_PARAMS))} or DiscreteVPSDE to be saved in a "
        f"checkpoint, got {name}"
    )


def sde_from_config(config: Mapping[str, Any]) -> LinearSDE:
    """Rebuild the SDE of `sde_config`."""
    from .. import sde as sde_module

    kwargs = dict(config)
    name = kwargs.pop("class", None)
    if name not in _SDE_PARAMS and name != "DiscreteVPSDE":
        raise CheckpointError(f"the checkpoint's sde class must be a built-in SDE, got {name!r}")
    return getattr(sde_module, name)(**kwargs)


# --- the score of a trained network ---------------------------------------------------------
class TrainedScore:
    r"""A trained network as a score callable, $s(x, t) = $ `to_score` of ``model(x, t)``.

    The network predicts its ``parametrization`` (score, noise, data or v); this turns it into
    the score that `sample`, `log_likelihood` and the compare runner take. Device and dtype
    follow the input: the network is moved to ``x``'s device on the first call with another
    device (a one-off copy), and ``x`` is cast to the network's dtype and the result back to
    ``x``'s (so a float32 network serves a float64 likelihood). The network's parameters do
    not require gradients; gradients with respect to ``x`` (Hutchinson, exact divergence) flow.

    Args:
        sde: the SDE the network was trained for.
        model: the network, ``model(x, t) -> tensor shaped like x``.
        parametrization: what the network predicts (see `sdelab.training.to_score`).
    """

    def __init__(self, sde: LinearSDE, model: nn.Module, parametrization: str = "score") -> None:
        self.sde = sde
        self.model = model
        self.parametrization = check_parametrization(parametrization)

    def _param(self) -> Tensor | None:
        return next(iter(self.model.parameters()), None)

    def __call__(self, x: Tensor, t: Tensor | float) -> Tensor:
        """$s(x, t)$, shaped like ``x``."""
        p = self._param()
        if p is not None and p.device != x.device:
            self.model.to(x.device)
            p = self._param()
        dtype = p.dtype if p is not None else x.dtype
        xin = x.to(dtype)
        tin = t.to(dtype) if isinstance(t, Tensor) else t
        out = to_score(self.sde, self.parametrization, self.model(xin, tin), xin, tin)
        return out.to(x.dtype)

    def __repr__(self) -> str:
        return (
            f"TrainedScore({type(self.model).__name__}, sde={type(self.sde).__name__}, "
            f"parametrization={self.parametrization!r})"
        )


# --- atomic files -----------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, fsync,
    rename over ``path``, fsync of the directory (where the OS allows)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pairs(directory: Path) -> list[tuple[int, Path]]:
    """``(step, json path)`` of the checkpoints in ``directory``, newest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _PAIR.match(p.name))]
    return sorted(found, reverse=True)


def _weights_path(json_path: Path) -> Path:
    return json_path.with_suffix(".safetensors")


def save(
    directory: str | os.PathLike,
    config: Mapping[str, Any],
    tensors: Mapping[str, Tensor],
    *,
    keep: int = 2,
) -> Path:
    """Write one checkpoint pair for ``config["step"]`` atomically and delete all but the
    ``keep`` newest pairs; returns the JSON path."""
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    step = int(config["step"])
    json_path = directory / f"step-{step:08d}.json"
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = st_save(cpu, metadata={"format": FORMAT, "step": str(step)})
    weights = _weights_path(json_path)
    _atomic_write(weights, blob)
    meta = {**config, "format": FORMAT, "weights": weights.name, "sha256": _sha256(blob)}
    _atomic_write(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    for _, old in _pairs(directory)[keep:]:
        for p in (old, _weights_path(old)):
            p.unlink(missing_ok=True)
    for stale in directory.glob(".step-*.tmp"):  # left by a run killed while writing
        stale.unlink(missing_ok=True)
    return json_path


def remove_all(directory: str | os.PathLike) -> None:
    """Delete every checkpoint pair in ``directory`` (for a run that starts over there)."""
    for _, json_path in _pairs(Path(directory)):
        json_path.unlink(missing_ok=True)
        _weights_path(json_path).unlink(missing_ok=True)


def _read_pair(json_path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read and verify one pair; raises `CheckpointError` naming the bad file and why."""
    from safetensors.torch import load as st_load

    try:
        config = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"checkpoint config {str(json_path)!r} is unreadable ({err})"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or "sha256" not in config:
        raise CheckpointError(
            f"checkpoint config {str(json_path)!r} must be an sdelab checkpoint ({FORMAT!r} "
            f"with a sha256), got {str(config)[:80]!r}"
        )
    weights = json_path.parent / str(config.get("weights", _weights_path(json_path).name))
    try:
        blob = weights.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint weights {str(weights)!r} are missing ({err})") from None
    digest = _sha256(blob)
    if digest != config["sha256"]:
        raise CheckpointError(
            f"checkpoint weights {str(weights)!r} are truncated or corrupted: sha256 {digest[:12]}"
            f"... ({len(blob)} bytes), expected {str(config['sha256'])[:12]}... from "
            f"{json_path.name}"
        )
    try:
        tensors = st_load(blob)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint weights {str(weights)!r} are unreadable ({err})"
        ) from None
    return config, tensors


def latest(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Tensor]] | None:
    """The newest valid checkpoint in ``directory`` as ``(config, tensors)``, or ``None`` when it
    holds none. A newer pair that fails verification is skipped with a ``UserWarning`` naming it
    (and left on disk for inspection); when every pair fails, `CheckpointError` names them all."""
    pairs = _pairs(Path(directory))
    errors = []
    for _, json_path in pairs:
        try:
            result = _read_pair(json_path)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        for message in errors:
            warnings.warn(
                f"{message}; falling back to the previous checkpoint {json_path.name} (step "
                f"{result[0]['step']})",
                stacklevel=3,
            )
        return result
    if errors:
        raise CheckpointError(f"no usable checkpoint in {str(directory)!r}: " + "; ".join(errors))
    return None


def encode_rng(state: Tensor) -> str:
    """A generator state (a uint8 tensor) as base64 text for the JSON config."""
    return base64.b64encode(bytes(state.to("cpu").tolist())).decode()


def decode_rng(text: str) -> Tensor:
    """The inverse of `encode_rng`."""
    return torch.tensor(list(base64.b64decode(text)), dtype=torch.uint8)


def split_state(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``tensors`` under ``prefix + "."``, prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON config of the checkpoint `load_checkpoint` would load from ``path``."""
    p = Path(path)
    if p.is_file():
        return _read_pair(p)[0]
    found = latest(p) if p.is_dir() else None
    if found is None:
        raise CheckpointError(
            f"path must be a checkpoint directory or step-*.json file, got {str(path)!r}"
        )
    return found[0]


# --- the public loader -----------------------------------------------------------------------
def load_checkpoint(
    path: str | os.PathLike, *, device: str | torch.device | None = None, ema: bool = True
) -> tuple[LinearSDE, TrainedScore]:
    r"""Load a training checkpoint as ``(sde, score)``.

    ``score`` is a `TrainedScore`: $s(x, t)$ of the EMA network (or the raw one with
    ``ema=False``) through `sdelab.training.to_score`, ready for `sdelab.sample`,
    `sdelab.log_likelihood` and ``sdelab compare --score DIR``. It moves to the device of its
    input when that differs from ``device``.

    Args:
        path: a checkpoint directory (its newest valid pair; a corrupted newest one is skipped
            with a warning) or one ``step-*.json`` file (that pair only).
        device: where to put the network (default: the CPU).
        ema: the EMA weights (default) or the last optimizer iterate.

    Raises:
        CheckpointError: (a ``ValueError``) no checkpoint at ``path``, a truncated or corrupted
            file (naming it), or a network that `sdelab.nets.from_config` cannot rebuild.
    """
    from ..nets import from_config

    p = Path(path)
    if p.is_file():
        found = _read_pair(p)
    elif p.is_dir():
        found = latest(p)
        if found is None:
            raise CheckpointError(f"path {str(path)!r} holds no checkpoint (step-*.json files)")
    else:
        raise CheckpointError(
            f"path must be a checkpoint directory or step-*.json file, got {str(path)!r}"
        )
    config, tensors = found
    if config.get("network") is None:
        raise CheckpointError(
            f"the checkpoint at {str(path)!r} has no network config: it was trained with a "
            "network outside sdelab.nets; rebuild it and load the 'ema.*' weights yourself"
        )
    sde = sde_from_config(config["sde"])
    model = from_config(config["network"])
    model.load_state_dict(split_state(tensors, "ema" if ema else "model"))
    model.requires_grad_(False).eval()
    model.to(torch.device("cpu") if device is None else torch.device(device))
    return sde, TrainedScore(sde, model, config["parametrization"])
