r"""Scaling out on ``torch.distributed``: the same results for any number of ranks.

Launch any script (or ``sdelab compare``) with ``torchrun --nproc-per-node K``; call
`init_from_env` once; then

* `sample_sharded` and `log_likelihood_sharded` split a batch / a data set into fixed-size
  **blocks**, deal the blocks to the ranks round-robin (block $b$ goes to rank
  $b \bmod K$) and gather the results in block order on every rank. Block $b$'s random
  numbers come from a generator seeded with `block_seed` ``(seed, b)``, never from the
  rank, so the result for a seed is the same for every $K$ (bit for bit on CPU).
* `shard` deals any list the same way, `collect` gathers per-block tensors in order.
* `stop_together` (after each unit of work) makes every rank stop with one rank's error
  instead of hanging in the next collective; `check_same` refuses ranks whose
  configurations differ.

Control traffic (errors, configuration hashes, work counters) goes through the rendezvous
store with timeouts; tensors go through the process group (gloo for CPU tensors, NCCL for
CUDA tensors when CUDA is available). Without ``WORLD_SIZE`` > 1 in the environment every
function is the single-process identity.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

__all__ = [
    "ConfigMismatch",
    "RankFailed",
    "RendezvousError",
    "Session",
    "block_seed",
    "blocks",
    "check_same",
    "close",
    "collect",
    "config_hash",
    "init_from_env",
    "is_distributed",
    "log_likelihood_sharded",
    "raise_if_failed",
    "rank",
    "report_error",
    "sample_sharded",
    "shard",
    "stop_together",
    "store",
    "world_size",
]

if TYPE_CHECKING:
    from .likelihood import LikelihoodResult
    from .sampling import SampleResult
    from .sde.base import SDE
    from .sde.reverse import Score
    from .solvers.base import Solver

T = TypeVar("T")

#: environment variables of the ``env://`` rendezvous (set by torchrun, or by hand / srun)
ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class RendezvousError(RuntimeError):
    """The ranks could not meet: a missing variable, an unreachable or incomplete rendezvous."""


class RankFailed(RuntimeError):
    """Another rank raised; this rank stops with its error (``rank`` and ``error`` hold them)."""

    def __init__(self, failed_rank: int, error: str) -> None:
        who = f"rank {failed_rank} failed: " if failed_rank >= 0 else ""
        super().__init__(f"{who}{error}; all ranks stopped")
        self.rank = failed_rank
        self.error = error


class ConfigMismatch(ValueError):
    """The ranks were started with different configurations."""


@dataclass
class Session:
    """The process group this process joined (`init_from_env`)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device | None = None
    timeout: float = 60.0
    op_timeout: float = 1800.0
    _store: Any = None
    _calls: int = 0

    def key(self, name: str) -> str:
        """A store key unique to the current collective call (every rank makes the same
        calls in the same order, so every rank computes the same key)."""
        return f"{self._calls}/{name}"


_SESSION = Session()


# --------------------------------------------------------------------------------------------
# joining
# --------------------------------------------------------------------------------------------
def _env_int(name: str, env: Mapping[str, str]) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        raise RendezvousError(
            f"environment variable {name} is not set; expected torchrun (or srun with "
            f"{', '.join(ENV_VARS)}) to set it"
        )
    try:
        return int(raw)
    except ValueError:
        raise RendezvousError(f"environment variable {name}={raw!r} is not an integer") from None


def init_from_env(
    timeout: float = 60.0,
    *,
    backend: str | None = None,
    op_timeout: float = 1800.0,
) -> Session:
    r"""Join the process group described by torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``) with the ``env://``
    rendezvous; returns the `Session`.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) this is a no-op: one process, rank 0.
    Calling it again after a successful join returns the same session.

    The backend is ``"cpu:gloo,cuda:nccl"`` when CUDA is available (CPU tensors over gloo,
    CUDA tensors over NCCL; each rank's device is ``cuda:LOCAL_RANK``), else ``"gloo"``.

    Args:
        timeout: seconds to wait for the rendezvous (rank 0 for the others, the others for
            rank 0's store); past it a `RendezvousError` says which address was tried.
        backend: a ``torch.distributed`` backend string in place of the default.
        op_timeout: seconds a collective may wait for a slow rank before failing (it must
            exceed the longest unit of work between two collectives).

    Raises:
        RendezvousError: a variable is missing or not an integer, RANK is outside
            [0, WORLD_SIZE), or the rendezvous was not reached within ``timeout``.
    """
    import torch.distributed as dist

    global _SESSION
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if _SESSION.world_size > 1 and dist.is_initialized():
        return _SESSION
    env = os.environ
    if env.get("WORLD_SIZE") in (None, "", "1"):
        _SESSION = Session(timeout=float(timeout))
        return _SESSION
    world = _env_int("WORLD_SIZE", env)
    r = _env_int("RANK", env)
    if world < 1 or not 0 <= r < world:
        raise RendezvousError(
            f"RANK={r} and WORLD_SIZE={world}: expected WORLD_SIZE >= 1 and 0 <= RANK < WORLD_SIZE"
        )
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise RendezvousError(
                f"environment variable {name} is not set (WORLD_SIZE={world}); expected the "
                f"address of rank 0 (torchrun sets it; with srun export it)"
            )
    _env_int("MASTER_PORT", env)
    local = int(env.get("LOCAL_RANK", "0") or 0)
    cuda = torch.cuda.is_available()
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    where = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    t0 = time.monotonic()
    try:
        st, r, world = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout)))
    except Exception as e:  # DistStoreError, DistNetworkError, TimeoutError, ...
        waited = time.monotonic() - t0
        what = (
            "not all ranks joined rank 0's store"
            if r == 0
            else "could not reach rank 0's store (is rank 0 started? MASTER_ADDR/MASTER_PORT right?)"
        )
        raise RendezvousError(
            f"rendezvous at {where} failed after {waited:.1f} s (timeout {timeout:g} s) for "
            f"rank {r} of WORLD_SIZE={world}: {what} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    st.set_timeout(timedelta(seconds=timeout))
    device = None
    if cuda and "nccl" in backend:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    dist.init_process_group(
        backend,
        store=dist.PrefixStore("pg", st),
        rank=r,
        world_size=world,
        timeout=timedelta(seconds=op_timeout),
    )
    # leave the group before the interpreter exits: a gloo group torn down by the
    # interpreter's shutdown instead can abort the process ("terminate called without an
    # active exception") when a peer has already gone
    if not _CLOSE_AT_EXIT:
        atexit.register(close)
        _CLOSE_AT_EXIT.append(True)
    restart = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    _SESSION = Session(
        r,
        world,
        local,
        backend,
        device,
        float(timeout),
        float(op_timeout),
        dist.PrefixStore(f"sdelab/{restart}", st),
    )
    return _SESSION


_CLOSE_AT_EXIT: list[bool] = []


def close() -> None:
    """Leave the process group (`init_from_env`); a no-op in a single process.

    Outside torchrun rank 0 hosts the rendezvous store: it waits (a few seconds at most) until
    the other ranks have left before it lets its store go, since a rank whose store vanishes
    under it can abort at exit."""
    import torch.distributed as dist

    global _SESSION
    s = _SESSION
    if dist.is_initialized():
        dist.destroy_process_group()
    st = s._store
    if st is not None and s.world_size > 1:
        try:
            st.add("closed", 1)
            if s.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
                deadline = time.monotonic() + min(s.timeout, 5.0)
                while st.add("closed", 0) < s.world_size and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.05)  # the last rank's client disconnects
        except Exception:  # a store already gone (a rank died): nothing left to wait for
            pass
    _SESSION = Session()


def is_distributed() -> bool:
    """Whether this process is one of several ranks (`init_from_env` joined a group)."""
    return _SESSION.world_size > 1


def rank() -> int:
    """This process's rank $r \\in [0, K)$ (0 in a single process)."""
    return _SESSION.rank


def world_size() -> int:
    """The number of ranks $K$ (1 in a single process)."""
    return _SESSION.world_size


def store() -> Any:
    """The rendezvous store shared by the ranks (``None`` in a single process): a
    ``torch.distributed.Store`` with the session's timeout, under this package's prefix."""
    return _SESSION._store


def _next_call() -> Session:
    _SESSION._calls += 1
    return _SESSION


# --------------------------------------------------------------------------------------------
# dealing work
# --------------------------------------------------------------------------------------------
def shard(items: Sequence[T], *, of: int | None = None, index: int | None = None) -> list[T]:
    r"""The items of this rank: ``items[r::K]`` (item $i$ goes to rank $i \bmod K$), so every
    item goes to exactly one rank and a rank's items keep their order.

    Args:
        items: the work, the same sequence on every rank.
        of: the number of ranks $K$ (default `world_size`).
        index: the rank $r$ (default `rank`).
    """
    k = world_size() if of is None else of
    r = rank() if index is None else index
    if not (isinstance(k, int) and k >= 1 and isinstance(r, int) and 0 <= r < k):
        raise ValueError(f"shard: expected 0 <= index < of, got index={r!r}, of={k!r}")
    return list(items[r::k])


def blocks(n: int, block_size: int) -> list[tuple[int, int]]:
    r"""The fixed-size blocks of $n$ items: ``(start, stop)`` of block
    $b = 0, \dots, \lceil n/s \rceil - 1$, $[b s, \min((b+1)s, n))$ with $s$ = ``block_size``.
    They depend on $n$ and $s$ only, never on the number of ranks."""
    from ._checks import check_int

    n = check_int("n", n, minimum=1)
    s = check_int("block_size", block_size, minimum=1)
    return [(a, min(a + s, n)) for a in range(0, n, s)]


def block_seed(seed: int, block: int) -> int:
    r"""The seed of block ``block``'s generator: the first 63 bits of
    $\mathrm{SHA256}(\texttt{"sdelab-block:seed:block"})$, a function of the seed and the
    block index only (never the rank), distinct for distinct pairs with overwhelming
    probability and far from the small seeds users pick."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 0:
        raise ValueError(f"block must be an integer >= 0, got {block!r}")
    digest = hashlib.sha256(f"sdelab-block:{seed}:{block}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# --------------------------------------------------------------------------------------------
# agreeing
# --------------------------------------------------------------------------------------------
def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON of ``config`` (non-JSON values by their ``repr``)."""
    blob = json.dumps(config, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_same(config: Any, what: str = "config") -> None:
    """Refuse ranks started with different configurations: every rank publishes the hash
    of its ``config`` (`config_hash`) and compares it with every other rank's.

    Raises:
        ConfigMismatch: on every rank when any hash differs from rank 0's (naming the ranks).
        RankFailed: a rank did not publish its hash within the session's timeout.
    """
    s = _next_call()
    if s.world_size == 1:
        return
    h = config_hash(config)
    st = s._store
    st.set(s.key(f"hash/{s.rank}"), h)
    keys = [s.key(f"hash/{r}") for r in range(s.world_size)]
    _wait(st, keys, s, f"the {what} hashes of all ranks")
    hashes = [st.get(k).decode() for k in keys]
    differ = [r for r, x in enumerate(hashes) if x != hashes[0]]
    if differ:
        raise ConfigMismatch(
            f"ranks {differ} were started with a different {what} from rank 0's "
            f"(hashes {', '.join(f'rank {r}: {x[:12]}' for r, x in enumerate(hashes))}); "
            f"expected the same {what} (arguments, files, versions) on every rank"
        )


def _wait(st, keys: list[str], s: Session, what: str, timeout: float | None = None) -> None:
    """Wait for store keys within ``timeout`` (default the session's), failing early if a
    rank failed."""
    timeout = s.timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        if st.check(keys):  # first: keys all there means the wait succeeded, even if a rank
            return  # failed later (it may have moved on past this point already)
        if st.check([_ERROR_KEY]):
            _raise_failed(st)
        if time.monotonic() > deadline:
            missing = [k for k in keys if not st.check([k])]
            raise RankFailed(
                -1,
                f"timed out after {timeout:g} s waiting for {what} (missing {missing}); "
                f"a rank stopped or hangs",
            )
        time.sleep(0.01)


_ERROR_KEY = "error"


def _raise_failed(st) -> None:
    msg = st.get(_ERROR_KEY).decode()
    r, _, text = msg.partition("|")
    st.add(_SEEN_KEY, 1)
    raise RankFailed(int(r), text)


_SEEN_KEY = "error-seen"


def _let_others_read(st) -> None:
    """Rank 0 hosts the store (outside torchrun's agent): before it exits with its error it
    waits (at most the session's timeout, 10 s at most) until the other ranks have read it."""
    if rank() != 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return
    deadline = time.monotonic() + min(_SESSION.timeout, 10.0)
    while st.add(_SEEN_KEY, 0) < world_size() - 1 and time.monotonic() < deadline:
        time.sleep(0.01)


def report_error(error: BaseException, *, wait: bool = True) -> None:
    """Publish this rank's error for the others (the first error wins); they raise
    `RankFailed` at their next `stop_together` / `raise_if_failed`. With ``wait`` rank 0
    (which hosts the store outside torchrun) waits a little for them to read it."""
    st = store()
    if st is None:
        return
    text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    # compare_set with expected "" only writes when the key does not exist yet
    first = st.compare_set(_ERROR_KEY, "", f"{rank()}|{text}").decode()
    if wait and first.partition("|")[0] == str(rank()):
        _let_others_read(st)


def raise_if_failed() -> None:
    """Raise `RankFailed` if another rank published an error (one non-blocking store read)."""
    st = store()
    if st is not None and st.check([_ERROR_KEY]):
        _raise_failed(st)


def _flag_device() -> torch.device:
    s = _SESSION
    return torch.device("cpu") if s.backend is None or "gloo" in s.backend else s.device


@contextmanager
def stop_together() -> Iterator[None]:
    """Run one unit of work so that all ranks stop together when any rank raises.

    Every rank enters it the same number of times (a collective). On exit the ranks
    all-reduce a status flag (max over ranks): if the body raised on some rank, that rank
    re-raises its own exception and every other rank raises `RankFailed` naming it and its
    error (published in the store first). A rank that dies without raising makes the others
    fail at the all-reduce after ``op_timeout`` (`init_from_env`); torchrun stops them at once.
    """
    import torch.distributed as dist

    s = _next_call()
    if s.world_size == 1:
        yield
        return
    error: BaseException | None = None
    try:
        yield
    except BaseException as e:  # re-raised below on this rank
        error = e
        report_error(e, wait=False)
    flag = torch.tensor([0 if error is None else 1], dtype=torch.int32, device=_flag_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if error is not None:
        _let_others_read(s._store)
        raise error
    if bool(flag):
        raise_if_failed()
        raise RankFailed(-1, "an unknown rank failed")


# --------------------------------------------------------------------------------------------
# gathering
# --------------------------------------------------------------------------------------------
def collect(parts: Mapping[int, Tensor], n_parts: int) -> list[Tensor]:
    r"""Gather every rank's parts onto every rank, in part order.

    Rank $r$ holds ``parts`` = {part index: tensor} for its share of the indices
    $0, \dots, P-1$ (each index on exactly one rank, as dealt by `shard`); every tensor has
    the same trailing shape and dtype, any number of rows. Returns the $P$ tensors in index
    order, on this rank's device of the parts. One small ``all_gather_object`` of the row
    counts, then one ``all_gather`` of the rows padded to the largest rank's.

    Raises:
        ValueError: an index is outside $[0, P)$, held by two ranks or by none.
    """
    import torch.distributed as dist

    s = _next_call()
    for i in parts:
        if not (isinstance(i, int) and 0 <= i < n_parts):
            raise ValueError(f"collect: part index {i!r} is outside [0, n_parts={n_parts})")
    if s.world_size == 1:
        missing = [i for i in range(n_parts) if i not in parts]
        if missing:
            raise ValueError(f"collect: parts {missing} of {n_parts} are missing")
        return [parts[i] for i in range(n_parts)]
    order = sorted(parts)
    local = [parts[i] for i in order]
    meta = {
        "rows": [(i, int(t.shape[0])) for i, t in zip(order, local, strict=True)],
        "trail": tuple(local[0].shape[1:]) if local else None,
        "dtype": str(local[0].dtype) if local else None,
    }
    metas: list = [None] * s.world_size
    dist.all_gather_object(metas, meta)
    owners: dict[int, tuple[int, int, int]] = {}  # index -> (rank, offset, rows)
    totals = []
    for r, m in enumerate(metas):
        off = 0
        for i, n in m["rows"]:
            if i in owners:
                raise ValueError(f"collect: part {i} is held by ranks {owners[i][0]} and {r}")
            owners[i] = (r, off, n)
            off += n
        totals.append(off)
    missing = [i for i in range(n_parts) if i not in owners]
    if missing:
        raise ValueError(f"collect: parts {missing} of {n_parts} are held by no rank")
    ref = next(m for m in metas if m["trail"] is not None)
    trail, dtype = ref["trail"], getattr(torch, ref["dtype"].removeprefix("torch."))
    device = local[0].device if local else (s.device or torch.device("cpu"))
    comm = device
    if device.type != "cpu" and "nccl" not in (s.backend or ""):
        comm = torch.device("cpu")  # gloo alone: gather on the host, hand back on the device
    width = max(totals)
    mine = torch.zeros((width, *trail), dtype=dtype, device=comm)
    if local:
        flat = torch.cat(local).to(comm)
        mine[: flat.shape[0]] = flat
    bufs = [torch.empty_like(mine) for _ in range(s.world_size)]
    dist.all_gather(bufs, mine)
    out = []
    for i in range(n_parts):
        r, off, n = owners[i]
        out.append(bufs[r][off : off + n].to(device))
    return out


# --------------------------------------------------------------------------------------------
# sharded sampling and likelihoods
# --------------------------------------------------------------------------------------------
def _check_block_size(block_size: int) -> int:
    from ._checks import check_int

    return check_int("block_size", block_size, minimum=1)


def _run_blocks(
    n: int, block_size: int, work: Callable[[int, int, int], T], config: dict
) -> tuple[list[int], dict[int, T]]:
    """Deal the blocks of ``n`` items round-robin, run ``work(b, start, stop)`` on this rank's
    blocks with `stop_together` around each round; returns (all block indices, {b: result})."""
    check_same(config, "configuration")
    bl = blocks(n, block_size)
    idx = list(range(len(bl)))
    mine = shard(idx)
    rounds = math.ceil(len(bl) / world_size())
    done: dict[int, T] = {}
    for j in range(rounds):
        with stop_together():
            if j < len(mine):
                b = mine[j]
                done[b] = work(b, *bl[b])
    return idx, done


def sample_sharded(
    sde: SDE,
    score: Score,
    solver: Solver,
    shape: Sequence[int],
    *,
    seed: int,
    block_size: int = 256,
    **options: Any,
) -> SampleResult:
    r"""`sdelab.sample` of ``shape[0]`` samples split into blocks over the ranks.

    The batch is cut into blocks of ``block_size`` rows (`blocks`); block $b$ is sampled by
    rank $b \bmod K$ as one call of `sdelab.sample` with the generator
    ``torch.Generator(device).manual_seed(block_seed(seed, b))``, and the blocks are gathered
    in order on every rank (`collect`). The samples for a ``seed`` and ``block_size`` are
    therefore the same for every number of ranks $K$ (including one process), bit for bit
    on CPU.

    Args:
        sde: the forward SDE (as for `sdelab.sample`).
        score: ``score(x, t)``.
        solver: any solver `sdelab.sample` accepts.
        shape: ``(B, ...)``, the whole batch.
        seed: the seed of the whole batch.
        block_size: rows per block, $\ge 1$ (part of the result's identity: the same
            ``block_size`` gives the same samples).
        **options: further keyword arguments of `sdelab.sample` (``steps``, ``schedule``,
            ``eps``, ``denoise``, ``device``, ``dtype``, ``condition``); not ``generator``.

    Returns:
        a `sdelab.SampleResult` with ``x`` of shape ``shape`` on every rank, ``nfe`` the
        score evaluations of all blocks summed over ranks, ``steps`` the largest block's.
    """
    from . import sample
    from ._checks import check_shape
    from .sampling import SampleResult

    shape = check_shape(shape)
    block_size = _check_block_size(block_size)
    if "generator" in options:
        raise TypeError("sample_sharded: pass seed=..., not generator (each block seeds its own)")
    device = torch.device(options.get("device") or _SESSION.device or "cpu")
    options["device"] = device
    config = {
        "what": "sample_sharded",
        "sde": repr(sde),
        "solver": repr(solver),
        "shape": list(shape),
        "seed": seed,
        "block_size": block_size,
        "options": {k: repr(v) for k, v in options.items() if k not in ("device", "progress")},
    }

    def work(b: int, a: int, z: int):
        g = torch.Generator(device=device).manual_seed(block_seed(seed, b))
        res = sample(sde, score, solver, (z - a, *shape[1:]), generator=g, **options)
        stats = torch.tensor([res.nfe, res.steps], dtype=torch.float64, device=res.x.device)
        return res.x, stats

    idx, done = _run_blocks(shape[0], block_size, work, config)
    xs = collect({b: v[0] for b, v in done.items()}, len(idx))
    stats = collect({b: v[1][None] for b, v in done.items()}, len(idx))
    st = torch.cat(stats)
    return SampleResult(
        x=torch.cat(xs), nfe=int(st[:, 0].sum()), steps=int(st[:, 1].max())
    )  # one host read at the end


def log_likelihood_sharded(
    sde: SDE,
    score: Score,
    x: Tensor,
    *,
    seed: int = 0,
    block_size: int = 256,
    **options: Any,
) -> LikelihoodResult:
    r"""`sdelab.log_likelihood` of a data set split into blocks over the ranks.

    Rows $[b s, (b+1) s)$ of ``x`` form block $b$ (`blocks`), computed by rank $b \bmod K$
    with the Hutchinson probes drawn from a generator seeded with `block_seed` ``(seed, b)``
    on ``x``'s device; the per-sample results are gathered in order on every rank. Every
    rank passes the same ``x`` (load it the same way on each).

    Args:
        sde: the forward SDE.
        score: ``score(x, t)``.
        x: the whole data set, shape (N, ...).
        seed: seeds the probes of every block.
        block_size: rows per block, $\ge 1$.
        **options: further keyword arguments of `sdelab.log_likelihood` (``divergence``,
            ``n_probes``, ``rtol``, ``atol``, ``eps``, ``backend``, ...); not ``generator``.

    Returns:
        a `sdelab.LikelihoodResult` for all N rows (``nfe`` summed over blocks, ``steps``
        the largest block's).
    """
    from .likelihood import LikelihoodResult, log_likelihood

    if not isinstance(x, Tensor) or x.ndim < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (N, ...) with N >= 1, got {got}")
    block_size = _check_block_size(block_size)
    if "generator" in options:
        raise TypeError(
            "log_likelihood_sharded: pass seed=..., not generator (each block seeds its own)"
        )
    config = {
        "what": "log_likelihood_sharded",
        "sde": repr(sde),
        "shape": list(x.shape),
        "data": _tensor_digest(x),
        "seed": seed,
        "block_size": block_size,
        "options": {k: repr(v) for k, v in options.items() if k != "progress"},
    }

    def work(b: int, a: int, z: int):
        g = torch.Generator(device=x.device).manual_seed(block_seed(seed, b))
        res = log_likelihood(sde, score, x[a:z], generator=g, **options)
        stats = torch.tensor([res.nfe, res.steps], dtype=torch.float64, device=x.device)
        per = torch.stack([res.logp, res.prior_logp, res.delta_logp], dim=1)
        return per, res.z, stats

    idx, done = _run_blocks(x.shape[0], block_size, work, config)
    per = torch.cat(collect({b: v[0] for b, v in done.items()}, len(idx)))
    z = torch.cat(collect({b: v[1] for b, v in done.items()}, len(idx)))
    st = torch.cat(collect({b: v[2][None] for b, v in done.items()}, len(idx)))
    return LikelihoodResult(
        logp=per[:, 0],
        prior_logp=per[:, 1],
        delta_logp=per[:, 2],
        z=z,
        nfe=int(st[:, 0].sum()),
        steps=int(st[:, 1].max()),
    )


def _tensor_digest(x: Tensor) -> str:
    """SHA-1 of a tensor's bytes (host copy once, at the boundary)."""
    return hashlib.sha1(
        x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    ).hexdigest()
