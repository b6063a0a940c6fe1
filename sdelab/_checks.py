"""Validation at the boundary: every check names the argument, the value and what was expected.

These helpers are cheap for Python numbers. A check on the *values* of a tensor (for example
``t`` inside ``[0, T]``) needs one host synchronisation; samplers avoid it by passing Python
floats for times on their fixed grids.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

Time = float | Tensor


def _short(value: object) -> str:
    if isinstance(value, Tensor):
        if value.numel() <= 6:
            return f"tensor({value.detach().cpu().tolist()}, dtype={value.dtype}, device={value.device})"
        return f"tensor of shape {tuple(value.shape)}, dtype={value.dtype}, device={value.device}"
    return repr(value)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is finite and > 0 (>= 0)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    v = float(value)
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


def check_int(name: str, value: int, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, raising unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | torch.SymInt):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_order(lo_name: str, lo: float, hi_name: str, hi: float) -> None:
    """Raise unless ``lo < hi``."""
    if not lo < hi:
        raise ValueError(
            f"{lo_name} must be smaller than {hi_name}, got {lo_name}={lo!r} >= {hi_name}={hi!r}"
        )


def check_time(t: Time, T: float, *, name: str = "t") -> Time:
    """Check that ``t`` (a Python number or a floating tensor) lies in ``[0, T]``.

    Python numbers are returned as ``float``. A tensor must be floating point, 0-d or 1-d, and
    its values are checked (one host synchronisation).
    """
    if type(t) is float:  # the fixed-grid samplers' case: keep it cheap
        if not 0.0 <= t <= T:  # also rejects NaN
            raise ValueError(f"{name} must lie in [0, T] = [0, {T}], got {t!r}")
        return t
    if isinstance(t, Tensor):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.ndim > 1:
            raise ValueError(
                f"{name} must be a float, a 0-d tensor or a tensor of shape (B,), got shape "
                f"{tuple(t.shape)}"
            )
        if _checked_before(t, T):
            return t
        if t.numel() and not bool(((t >= 0) & (t <= T)).all()):
            raise ValueError(f"{name} must lie in [0, T] = [0, {T}], got {_short(t)}")
        _mark_checked(t, T)
        return t
    if isinstance(t, bool) or not isinstance(t, Real):
        raise TypeError(f"{name} must be a float or a floating-point tensor, got {_short(t)}")
    tf = float(t)
    if not 0.0 <= tf <= T:  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, T] = [0, {T}], got {t!r}")
    return tf


def _checked_before(t: Tensor, T: float) -> bool:
    """Whether this very tensor was found inside ``[0, T]`` and not modified since: the
    coefficients of one call (m(t), sigma(t), ...) each check the same ``t``, and only the first
    check reads its values (a host synchronisation on a GPU)."""
    mark = getattr(t, "_sdelab_time_ok", None)
    if mark is None:
        return False
    try:
        return mark == (T, t._version)  # an in-place change bumps the version
    except RuntimeError:  # inference tensors have no version counter
        return False


def _mark_checked(t: Tensor, T: float) -> None:
    try:
        t._sdelab_time_ok = (T, t._version)
    except (RuntimeError, AttributeError):
        pass


def check_time_like(x: Tensor, t: Time, T: float, *, name: str = "t") -> Time:
    """``check_time`` plus agreement of a tensor ``t`` with ``x``: batch size, device, dtype.

    Device, dtype and shape are checked before the values, so a mismatch never syncs.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(t, Tensor):
        if t.device != x.device:
            raise ValueError(f"{name} is on device {t.device} but x is on device {x.device}")
        if t.is_floating_point() and t.dtype != x.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but x has dtype {x.dtype}; pass t in x's dtype "
                f"(or a Python float)"
            )
        if t.ndim == 1 and (x.ndim == 0 or t.shape[0] != x.shape[0]):
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not match the batch of x with shape "
                f"{tuple(x.shape)}; expected shape ({x.shape[0] if x.ndim else 1},) or a scalar"
            )
    return check_time(t, T, name=name)


def check_batched(name: str, x: Tensor) -> Tensor:
    """Raise unless ``x`` is a floating tensor with a batch dimension."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension (shape (B, ...)), got shape ()")
    return x


def check_finite(name: str, x: Tensor) -> Tensor:
    """Raise unless every entry of ``x`` is finite (one host synchronisation)."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = ~finite
        first = tuple(int(i) for i in bad.nonzero()[0])
        at = ", ".join(map(str, first))
        raise ValueError(
            f"{name} must be finite, but {int(bad.sum())} of its {x.numel()} entries are NaN/inf "
            f"(the first, {name}[{at}], is {x[first].item()})"
        )
    return x


def check_rows_finite(name: str, x: Tensor) -> Tensor:
    """Raise ``ValueError`` unless every row ``x[i]`` of a data set or batch is finite, naming
    the first bad row (one host synchronisation)."""
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero()[:, 0]
        i = int(rows[0])
        raise ValueError(
            f"{name} must be finite, but {rows.numel()} of its {x.shape[0]} rows hold NaN or "
            f"inf; the first is row {i}: {name}[{i}] = {_short(x[i])}"
        )
    return x


def check_like(name: str, out: object, x: Tensor) -> Tensor:
    """Raise unless a model's output ``out`` (named ``name``) is a tensor like ``x``: the same
    shape (``ValueError``), device (``ValueError``) and dtype (``TypeError``).

    Only tensor attributes are compared, so the check never synchronises with the device. A
    float64 output for float32 ``x`` would otherwise silently promote the samples to float64,
    and an integer or float16 one silently lose precision.
    """
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{name} must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    if out.device != x.device:
        raise ValueError(
            f"{name} must return a tensor on x's device {x.device}, got device {out.device}"
        )
    if out.dtype != x.dtype:
        raise TypeError(
            f"{name} must return a tensor of x's dtype {x.dtype}, got dtype {out.dtype} "
            f"(cast inside the model, e.g. .to(x.dtype))"
        )
    return out


def check_dtype(name: str, dtype: object) -> torch.dtype | None:
    """Return ``dtype``, raising ``TypeError`` unless it is ``None`` or a floating
    ``torch.dtype``."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(
            f"{name} must be a floating torch.dtype (torch.float32, torch.float64, ...) or None, "
            f"got {dtype!r}"
        )
    return dtype


def check_device(name: str, device: object) -> torch.device | None:
    """Return ``device`` as a ``torch.device`` (``None`` stays ``None``), raising ``TypeError``
    or ``ValueError`` with the argument's name instead of torch's parser error."""
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, str | int) or isinstance(device, bool):
        raise TypeError(
            f"{name} must be a torch.device, a string such as 'cpu' or 'cuda:0', or None, got "
            f"{_short(device)}"
        )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"{name} must name a torch device such as 'cpu' or 'cuda:0', got {device!r} ({err})"
        ) from None


def check_generator(
    generator: object, device: torch.device | None, *, drawn: str = "the samples"
) -> torch.Generator | None:
    """Return ``generator``, raising unless it is ``None`` or a ``torch.Generator`` whose device
    type is that of ``device`` (where ``drawn`` are drawn; ``None`` means any)."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or "
            f"None, got {_short(generator)}"
        )
    if device is not None and generator.device.type != device.type:
        raise ValueError(
            f"generator is on device {generator.device} but {drawn} are drawn on device "
            f"{device}; create the generator there: torch.Generator(device={str(device)!r})"
        )
    return generator


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ints ``(B, ...)`` with every size >= 1 (an int ``B``
    means ``(B,)``), raising unless it is one."""
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(operator.index(s) for s in shape)  # ints only: no silent int(2.7) or int("3")
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, got {shape!r}") from None
    if len(shape) < 1 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (B, ...) with every size >= 1, got {shape!r}")
    return shape
