r"""`train`: denoising score matching with AdamW, warm-up, gradient clipping and EMA weights.

One step draws a batch (with replacement) and the loss's times and noise from the run's own
``torch.Generator`` (seeded by ``seed``, never torch's global generator), so a CPU run is
bit-reproducible and a resumed run continues the same random stream. With ``out`` set, a
checkpoint (`sdelab.training.checkpoint`) is written every ``checkpoint_every`` steps and at
the end, and ``resume=True`` continues from the newest one: no step is lost or repeated.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import _short, check_int, check_positive, check_rows_finite
from ..sde.base import LinearSDE
from . import checkpoint as ckpt
from .checkpoint import CheckpointError, TrainedScore
from .loss import _check_eps, _check_sde, _dsm_loss, check_parametrization, check_weighting

__all__ = ["TrainResult", "train"]

#: losses are read from the device once per this many steps (and at checkpoints and the end)
_CHUNK = 50


@dataclass(eq=False)
class TrainResult:
    """What `train` returns.

    Attributes:
        score: the EMA network as a score callable ``score(x, t)`` (a `TrainedScore`).
        model: the trained network (the last optimizer iterate).
        ema_model: the network with the EMA weights.
        losses: the loss of every step, from step 1 (including steps run before a resume).
        checkpoint: the path of the last checkpoint written (a ``step-*.json`` file), or
            ``None`` without ``out``.
        steps: the number of steps trained in total.
    """

    score: TrainedScore
    model: nn.Module
    ema_model: nn.Module
    losses: list[float] = field(repr=False)
    checkpoint: Path | None
    steps: int


def _as_data(data: object) -> tuple[Tensor, str | None, float | None, dict[str, Any]]:
    """``(tensor, name, bin_width, description)`` of a `Dataset`, a data set name / ``.npy``
    path or a tensor."""
    from ..data import Dataset, load

    if isinstance(data, str | os.PathLike):
        data = load(os.fspath(data))
    if isinstance(data, Dataset):
        info = {"levels": data.levels, "value_range": data.value_range}
        return data.data, data.name, data.bin_width, info
    if isinstance(data, Tensor):
        if not data.is_floating_point() or data.ndim < 2:
            raise ValueError(
                f"data must be a floating tensor of shape (n, ...) with n >= 1, got {_short(data)}"
            )
        return data, None, None, {"levels": None, "value_range": None}
    raise TypeError(
        f"data must be a sdelab.data.Dataset, a data set name, a .npy path or a tensor, got "
        f"{type(data).__name__}"
    )


def _check_unit_interval(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number in [0, 1), got {_short(value)}")
    v = float(value)
    if not (0.0 <= v < 1.0):
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return v


def _state_tensors(
    model: nn.Module, ema_model: nn.Module, opt: torch.optim.Optimizer, losses: Tensor
) -> dict[str, Tensor]:
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in ema_model.state_dict().items()})
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            if isinstance(v, Tensor):
                out[f"optim.{i}.{k}"] = v
    out["losses"] = losses
    return {k: v.detach().clone() for k, v in out.items()}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in ckpt.split_state(tensors, "optim").items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _mismatch(what: str, saved: object, asked: object, out: Path) -> CheckpointError:
    return CheckpointError(
        f"out {str(out)!r} holds a checkpoint of a different {what}: it has {saved!r}, but "
        f"train was asked for {asked!r} (use another out, or resume=False to start over there)"
    )


def _adamw(params: list[Tensor], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, the fused implementation where torch has one for these parameters (one kernel
    per step instead of a loop over tensors: about half the optimizer's time on the CPU),
    else the default one."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def train(
    sde: LinearSDE,
    model: nn.Module,
    data: Any,
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 2e-3,
    ema: float = 0.995,
    weighting: str = "sigma2",
    parametrization: str = "score",
    out: str | os.PathLike | None = None,
    resume: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    checkpoint_every: int = 1000,
    warmup: int = 100,
    grad_clip: float | None = 1.0,
    weight_decay: float = 0.0,
    eps: float = 1e-5,
) -> TrainResult:
    r"""Train ``model`` by denoising score matching (`dsm_loss`, Song et al. 2021, eq. 7).

    Step $k = 1, \dots,$ ``steps``: draw a batch of ``batch_size`` rows of ``data`` uniformly
    with replacement (quantised data such as the digits are dequantised uniformly within their
    bin, $x + (u - \tfrac12)\Delta$), take the loss $\mathcal L_k$ of `dsm_loss`, clip the
    gradient to norm ``grad_clip``, and take an AdamW step with the linear warm-up
    $\eta_k = \eta\,\min(1, k/\text{warmup})$. The EMA weights follow

    $$ \bar\theta_k = \text{ema}\;\bar\theta_{k-1} + (1 - \text{ema})\,\theta_k,
       \qquad \bar\theta_0 = \theta_0 . $$

    Batches, times and noise come from one ``torch.Generator`` on ``device`` seeded with
    ``seed`` (the global generator is never used), so a CPU run is bit-reproducible; the network's
    initial weights are the caller's. Losses stay on the device and are read back every 50
    steps; a NaN or inf loss stops training with a ``FloatingPointError`` naming the step, and
    no checkpoint is written after it (the last good one stays).

    Args:
        sde: a `LinearSDE` (VP, sub-VP, VE, OU, `DiscreteVPSDE`).
        model: the network ``model(x, t)``, shaped like ``x`` (e.g. `sdelab.nets.MLPScore`);
            trained in place and moved to ``device``.
        data: a `sdelab.data.Dataset`, a name for `sdelab.data.load` (or a ``.npy`` path), or
            a floating tensor of shape (n, ...).
        steps: the total number of optimizer steps (a resumed run trains the remaining ones).
        batch_size: rows per step, in [1, n].
        lr: the AdamW learning rate $\eta > 0$.
        ema: the EMA decay, in [0, 1).
        weighting: ``"sigma2"``, ``"likelihood"`` or ``"none"`` (see `dsm_loss`).
        parametrization: what the network predicts (see `to_score`).
        out: a checkpoint directory, or ``None`` for none.
        resume: continue from the newest checkpoint in ``out`` (it must hold the same SDE and
            network), else start over (the checkpoints there are deleted when this run
            writes its first one).
        seed: the seed of the run's generator.
        device: where to train (default: the device of ``model``'s parameters).
        progress: show a tqdm bar with the running loss.
        checkpoint_every: steps between checkpoints (with ``out``).
        warmup: steps of linear learning-rate warm-up (0: none).
        grad_clip: the maximal gradient norm, or ``None`` for no clipping.
        weight_decay: AdamW's decoupled weight decay.
        eps: the smallest training time (see `dsm_loss`).

    Returns:
        A `TrainResult` (``.score`` is the EMA network as a score).

    Raises:
        ValueError: data with NaN or inf (naming the first bad row), empty data, ``batch_size``
            outside [1, n], ``steps`` < 1, ``lr`` <= 0, ``ema`` outside [0, 1), an unknown
            weighting or parametrization, a network whose output is not shaped like its input;
            `CheckpointError` (a ``ValueError``) on resume into a directory holding another
            SDE or network, or whose checkpoints are all unusable.
        FloatingPointError: the loss became NaN or inf (the step is named).
    """
    sde = _check_sde(sde)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    steps = check_int("steps", steps, minimum=1)
    lr = check_positive("lr", lr)
    ema = _check_unit_interval("ema", ema)
    weighting = check_weighting(weighting)
    parametrization = check_parametrization(parametrization)
    seed = check_int("seed", seed, minimum=0)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    if grad_clip is not None:
        grad_clip = check_positive("grad_clip", grad_clip)
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    eps = _check_eps(sde, eps)

    x, data_name, bin_width, data_info = _as_data(data)
    if x.shape[0] < 1:
        raise ValueError(f"data must hold at least one sample, got shape {tuple(x.shape)}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if batch_size > x.shape[0]:
        raise ValueError(
            f"batch_size must be at most the {x.shape[0]} samples of the data, got {batch_size}"
        )
    check_rows_finite("data", x)

    param = next(iter(model.parameters()), None)
    if device is None:
        device = param.device if param is not None else x.device
    device = torch.device(device)
    model.to(device)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    x = x.to(device=device, dtype=dtype)

    with torch.no_grad():  # the output's shape, before any checkpoint is touched
        probe = x[:2]
        got = model(probe, torch.full((probe.shape[0],), 0.5, device=device, dtype=dtype))
        if not isinstance(got, Tensor) or got.shape != probe.shape:
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise ValueError(
                f"model must return a tensor shaped like its input {tuple(probe.shape)}, got "
                f"{shape}"
            )

    ema_model = copy.deepcopy(model).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    ema_params = [
        q
        for p, q in zip(model.parameters(), ema_model.parameters(), strict=True)
        if p.requires_grad
    ]
    opt = _adamw(params, lr, weight_decay)
    gen = torch.Generator(device=device).manual_seed(seed)

    net_config = model.config() if callable(getattr(model, "config", None)) else None
    config = {
        "sde": ckpt.sde_config(sde) if out is not None else None,
        "network": net_config,
        "parametrization": parametrization,
        "weighting": weighting,
        "eps": eps,
        "optimizer": {
            "class": "AdamW",
            "fused": bool(opt.defaults.get("fused")),
            "lr": lr,
            "betas": list(opt.defaults["betas"]),
            "eps": opt.defaults["eps"],
            "weight_decay": weight_decay,
            "warmup": warmup,
            "grad_clip": grad_clip,
        },
        "ema": ema,
        "data": data_name,
        "sample_shape": list(x.shape[1:]),
        **data_info,
        "batch_size": batch_size,
        "seed": seed,
        "steps": steps,
    }

    start = 0
    losses_all = torch.empty(0, dtype=torch.float32)
    last_ckpt: Path | None = None
    out_dir = Path(out) if out is not None else None
    if out_dir is not None and resume:
        found = ckpt.latest(out_dir)
        if found is not None:
            saved, tensors = found
            if saved["sde"] != config["sde"]:
                raise _mismatch("SDE", saved["sde"], config["sde"], out_dir)
            if saved["network"] != net_config:
                raise _mismatch("network", saved["network"], net_config, out_dir)
            if saved["parametrization"] != parametrization:
                raise _mismatch(
                    "parametrization", saved["parametrization"], parametrization, out_dir
                )
            try:
                model.load_state_dict(ckpt.split_state(tensors, "model"))
                ema_model.load_state_dict(ckpt.split_state(tensors, "ema"))
            except RuntimeError as err:
                raise _mismatch("network", "other weights", str(err)[:200], out_dir) from None
            _load_optimizer(opt, tensors)
            gen.set_state(ckpt.decode_rng(saved["rng_state"]).to(gen.get_state().device))
            start = int(saved["step"])
            losses_all = tensors["losses"].to(torch.float32)
            last_ckpt = out_dir / f"step-{start:08d}.json"

    fresh = [out_dir is not None and not resume]

    def save(step: int, losses: Tensor) -> Path:
        if fresh[0]:  # resume=False: the first checkpoint of this run replaces the old ones
            ckpt.remove_all(out_dir)
            fresh[0] = False
        meta = {**config, "step": step, "rng_state": ckpt.encode_rng(gen.get_state())}
        return ckpt.save(out_dir, meta, _state_tensors(model, ema_model, opt, losses))

    bar = None
    if progress and start < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc="train", unit="step", dynamic_ncols=True)

    chunks: list[Tensor] = [losses_all]
    buf = torch.empty(_CHUNK, device=device, dtype=torch.float32)
    n_buf = 0
    n = x.shape[0]
    model.train()

    def flush(step: int) -> None:
        """Read the buffered losses from the device; raise at the first non-finite one."""
        nonlocal n_buf
        if n_buf == 0:
            return
        host = buf[:n_buf].to("cpu", copy=True)
        finite = torch.isfinite(host)
        if not bool(finite.all()):
            bad = step - n_buf + 1 + int((~finite).nonzero()[0, 0])
            where = f"; the last good checkpoint is {str(last_ckpt)!r}" if last_ckpt else ""
            if bar is not None:
                bar.close()
            raise FloatingPointError(
                f"the training loss became {float(host[~finite][0])} at step {bad} (lr={lr}, "
                f"batch_size={batch_size}); training stopped{where}"
            )
        chunks.append(host)
        if bar is not None:
            bar.update(n_buf)
            bar.set_postfix(loss=f"{float(host.mean()):.4g}")
        n_buf = 0

    for step in range(start + 1, steps + 1):
        idx = torch.randint(n, (batch_size,), generator=gen, device=device)
        x0 = x[idx]
        if bin_width is not None:
            u = torch.rand(x0.shape, generator=gen, device=device, dtype=dtype)
            x0 = x0 + (u - 0.5) * bin_width
        loss = _dsm_loss(sde, model, x0, weighting, parametrization, eps, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        if warmup:
            rate = lr * min(1.0, step / warmup)
            for group in opt.param_groups:
                group["lr"] = rate
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - ema)
        buf[n_buf] = loss.detach()
        n_buf += 1
        at_ckpt = out_dir is not None and (step % checkpoint_every == 0 or step == steps)
        if n_buf == _CHUNK or at_ckpt or step == steps:
            flush(step)
        if at_ckpt:
            last_ckpt = save(step, torch.cat(chunks))
    if bar is not None:
        bar.close()

    model.eval()
    ema_model.eval()
    losses = torch.cat(chunks).tolist()
    return TrainResult(
        score=TrainedScore(sde, ema_model, parametrization),
        model=model,
        ema_model=ema_model,
        losses=losses,
        checkpoint=last_ckpt,
        steps=max(steps, start),
    )
