"""``sdelab train``, ``sdelab sample`` and ``sdelab likelihood`` (registered in `sdelab.cli`).

``sdelab train --data moons --out run`` trains an `sdelab.nets.MLPScore` on the 2-D moons
(2000 steps, 10-15 s on one core); ``--data digits`` (images) an `sdelab.nets.UNet` with 16 base
channels (``--hidden 128``: a UNet gets hidden / 8) on the 8x8 digits with the likelihood
weighting, the noise parametrisation and lr 2e-3 (6000 steps of 128 images, 525 s on one core
of the 2-core development machine; 1.86 test bits/dim, against 2.70 for the best Gaussian
mixture and 3.19 for a Gaussian KDE, see ``benchmarks/digits_bpd.py``; ``--net mlp`` trains an
MLP on the 64 pixels, which memorised the 1297 training images near 2.95). Rerunning the same
command after a kill resumes from the newest checkpoint in ``--out``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

#: defaults per kind of data (vectors: about 5 ms a step on one core, 10-15 s in all; images
#: such as the digits: a UNet, 75-125 ms a step, still improving at 6000 steps, see
#: benchmarks/digits_bpd.py and the Training page of the docs)
_DEFAULTS = {
    "vector": {
        "steps": 2000, "batch_size": 256, "net": "mlp", "hidden": 256, "depth": 3,
        "lr": 2e-3, "ema": 0.995, "weighting": "sigma2", "parametrization": "score",
    },
    "image": {
        "steps": 6000, "batch_size": 128, "net": "unet", "hidden": 128, "depth": 4,
        "lr": 2e-3, "ema": 0.999, "weighting": "likelihood", "parametrization": "noise",
    },
}  # fmt: skip
_SDES = {"vp": "VPSDE", "subvp": "SubVPSDE", "ve": "VESDE"}


class _Usage(ValueError):
    """A command-line value that cannot work: one line on stderr, exit status 2."""


def _fail(cmd: str, err: Exception) -> int:
    print(f"sdelab {cmd}: {err}", file=sys.stderr)
    return 2


def _device(name: str | None):
    import torch

    if name is None:
        return None
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise _Usage(f"--device {name!r} is not a torch device; expected cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _Usage(f"--device {name!r}: CUDA is not available here; expected --device cpu")
    return dev


# --- sdelab train ---------------------------------------------------------------------------
def train_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sdelab train``."""
    p.add_argument("--data", required=True, metavar="NAME|FILE.npy", help="data set or .npy file")
    p.add_argument("--sde", choices=tuple(_SDES), default="vp", help="forward SDE (default vp)")
    v, i = _DEFAULTS["vector"], _DEFAULTS["image"]

    def both(key: str) -> str:
        return f"(default {v[key]} for vectors, {i[key]} for images such as the digits)"

    p.add_argument("--steps", type=int, help=f"optimizer steps {both('steps')}")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder (resumes)")
    p.add_argument("--batch-size", type=int, help=f"batch size {both('batch_size')}")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate {both('lr')}")
    p.add_argument("--ema", type=float, help=f"EMA decay {both('ema')}")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batches (default 0)")
    p.add_argument(
        "--net", choices=("mlp", "unet"), help="network (default mlp for vectors, unet for images)"
    )
    p.add_argument(
        "--hidden",
        type=int,
        help=f"MLP width {both('hidden')}; a UNet gets hidden / 8 base channels",
    )
    p.add_argument("--depth", type=int, help=f"MLP hidden layers {both('depth')}")
    p.add_argument(
        "--checkpoint-every", type=int, default=500, help="steps between checkpoints (500)"
    )
    p.add_argument("--parametrization", help=f"score | noise | data | v {both('parametrization')}")
    p.add_argument("--weighting", help=f"sigma2 | likelihood | none {both('weighting')}")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds one")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _network(kind: str, ds, hidden: int, depth: int):
    from ..nets import MLPScore, UNet

    if kind == "unet":
        if ds.data.ndim != 4:
            raise _Usage(
                f"--net unet needs images of shape (n, C, H, W), got data of shape "
                f"{tuple(ds.data.shape)}; use --net mlp"
            )
        return UNet(channels=ds.data.shape[1], base=max(8, hidden // 8))
    return MLPScore(ds.dim, hidden=hidden, depth=depth)


def kind(ds) -> str:
    """``"image"`` for image data (n, C, H, W), else ``"vector"``: which `_DEFAULTS` apply."""
    return "image" if ds.data.ndim == 4 else "vector"


def train_run(args: argparse.Namespace) -> int:
    """``sdelab train``: build the network (seeded), train, print where the checkpoint is."""
    import torch

    import sdelab
    from sdelab.data import load

    from .. import distributed as dist
    from .train import train

    try:
        dist.init_from_env()  # torchrun: DistributedDataParallel, rank 0 checkpoints
        device = _device(args.device)
        if (
            device is not None
            and device.type == "cuda"
            and device.index is None
            and dist.is_distributed()
        ):
            device = torch.device("cuda", torch.cuda.current_device())  # cuda:LOCAL_RANK
        ds = load(args.data)
        given = {k: getattr(args, k) for k in _DEFAULTS["vector"]}
        o = {k: d if given[k] is None else given[k] for k, d in _DEFAULTS[kind(ds)].items()}
        steps = o["steps"]
        batch = (
            o["batch_size"] if given["batch_size"] is not None else min(o["batch_size"], len(ds))
        )
        if args.threads:
            torch.set_num_threads(args.threads)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)  # the initial weights (and Fourier features)
            model = _network(o["net"], ds, o["hidden"], o["depth"])
        sde = getattr(sdelab, _SDES[args.sde])()
        res = train(
            sde, model, ds, steps=steps, batch_size=batch, lr=o["lr"], ema=o["ema"],
            weighting=o["weighting"], parametrization=o["parametrization"], out=args.out,
            resume=not args.no_resume, seed=args.seed, device=device,
            progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
        )  # fmt: skip
    except (ValueError, TypeError, ImportError) as err:
        return _fail("train", err)
    except FloatingPointError as err:
        print(f"sdelab train: {err}", file=sys.stderr)
        return 1
    except (dist.RankFailed, dist.RendezvousError) as err:
        print(f"sdelab train (rank {dist.rank()}): {err}", file=sys.stderr)
        return 1
    if dist.rank() != 0:
        return 0
    tail = res.losses[-min(100, len(res.losses)) :]
    print(
        f"trained {res.steps} steps; mean loss of the last {len(tail)}: "
        f"{sum(tail) / len(tail):.4g}; checkpoint {res.checkpoint}"
    )
    return 0


# --- sdelab sample --------------------------------------------------------------------------
def sample_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sdelab sample``."""
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="sdelab train's --out")
    p.add_argument(
        "--solver",
        default="euler_maruyama",
        help="a solver kind of sdelab compare (euler_maruyama, reverse_diffusion, pc, ddim, "
        "probability_flow_ode, ...; default euler_maruyama)",
    )
    p.add_argument("--steps", type=int, default=500, help="solver steps (default 500)")
    p.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", required=True, metavar="FILE", help=".npy array or .png picture")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _block_size_arg(p)


def _block_size_arg(p: argparse.ArgumentParser) -> None:
    # sdelab.distributed: blocks seeded by (seed, block index), so any number of torchrun ranks
    # gives the same result
    p.add_argument(
        "--block-size",
        type=int,
        default=256,
        help="samples per block, each block seeded from --seed and its index (default 256); "
        "under torchrun the blocks are shared by the ranks, same result for any number",
    )


def _solver(name: str):
    from ..experiments.config.solvers import SOLVERS, build_solver

    if name == "pc":
        from ..solvers import PC, Langevin, ReverseDiffusion

        return PC(ReverseDiffusion(), Langevin())
    if name not in SOLVERS or SOLVERS[name].required:
        raise _Usage(
            f"--solver must be one of {', '.join(k for k in SOLVERS if not SOLVERS[k].required)}"
            f", pc, got {name!r}"
        )
    return build_solver({"kind": name})


def _save_png(x, path: Path, config: dict) -> None:
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x.detach().to("cpu", dtype=torch.float64)
    if x.ndim == 4:  # an image grid
        lo, hi = config.get("value_range") or (float(x.min()), float(x.max()))
        n, c = x.shape[:2]
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                img = ((x[i] - lo) / (hi - lo)).clamp(0, 1)
                if c == 1:
                    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(img[:3].permute(1, 2, 0).numpy())
        fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0, right=1, top=1, bottom=0)
    elif x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2)
        ax.set_aspect("equal")
        ax.set_title(f"{x.shape[0]} samples")
    else:
        raise _Usage(
            f"--out .png needs images (n, C, H, W) or 2-D points, got samples of shape "
            f"{tuple(x.shape)}; use --out FILE.npy"
        )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def sample_run(args: argparse.Namespace) -> int:
    """``sdelab sample``: draw ``--n`` samples of a checkpoint's model to .npy or .png."""
    import numpy as np
    import torch

    from .. import distributed as dist
    from .checkpoint import load_checkpoint, read_config

    try:
        dist.init_from_env()  # torchrun: the ranks share the blocks (a no-op otherwise)
        out = Path(args.out)
        if out.suffix not in (".npy", ".png"):
            raise _Usage(f"--out must end in .npy or .png, got {args.out!r}")
        if args.n < 1 or args.steps < 1:
            raise _Usage(f"--n and --steps must be integers >= 1, got {args.n} and {args.steps}")
        device = _device(args.device)
        config = read_config(args.checkpoint)
        sde, score = load_checkpoint(args.checkpoint, device=device)
        solver = _solver(args.solver)
        if args.threads:
            torch.set_num_threads(args.threads)
        shape = (args.n, *config["sample_shape"])
        res = dist.sample_sharded(
            sde, score, solver, shape, seed=args.seed, block_size=args.block_size,
            steps=args.steps, device=device, progress=not args.no_progress and dist.rank() == 0,
        )  # fmt: skip
        if dist.rank() != 0:  # rank 0 writes
            return 0
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npy":
            np.save(out, res.x.detach().to("cpu").numpy())
        else:
            _save_png(res.x, out, config)
    except (ValueError, TypeError, ImportError) as err:
        return _fail("sample", err)
    except (dist.RankFailed, dist.RendezvousError) as err:
        print(f"sdelab sample (rank {dist.rank()}): {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.n} samples of shape {tuple(shape[1:])} to {out} ({res.nfe} NFE)")
    return 0


# --- sdelab likelihood ----------------------------------------------------------------------
def likelihood_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sdelab likelihood``."""
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="sdelab train's --out")
    p.add_argument("--data", required=True, metavar="NAME|FILE.npy", help="data set or .npy")
    p.add_argument("--split", default="test", help="train | validation | test (default test)")
    p.add_argument("--n", type=int, help="evaluate the first N samples of the split (default all)")
    p.add_argument("--seed", type=int, default=0, help="dequantisation / probe seed (default 0)")
    p.add_argument("--rtol", type=float, default=1e-5, help="ODE rtol = atol (default 1e-5)")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _block_size_arg(p)


def likelihood_run(args: argparse.Namespace) -> int:
    r"""``sdelab likelihood``: the mean log-likelihood in nats and bits/dim through the
    probability-flow ODE; quantised data are dequantised uniformly within their bins, so
    bits/dim $= -(\log p(x) + D\log\Delta)/(D\ln 2)$ with the data's bin width $\Delta$."""
    import torch

    from .. import distributed as dist
    from ..data import load
    from .checkpoint import load_checkpoint

    try:
        dist.init_from_env()  # torchrun: the ranks share the blocks (a no-op otherwise)
        device = _device(args.device)
        ds = load(args.data, split=args.split)
        if args.n is not None:
            if args.n < 1:
                raise _Usage(f"--n must be an integer >= 1, got {args.n}")
            ds.data = ds.data[: args.n]
        sde, score = load_checkpoint(args.checkpoint, device=device)
        gen = torch.Generator(device=device or "cpu").manual_seed(args.seed)
        x = ds.data.to(device=device or "cpu", dtype=torch.float64)
        width = ds.bin_width
        if width is not None:
            x = ds.dequantize(x, generator=gen)
        if args.threads:
            torch.set_num_threads(args.threads)
        res = dist.log_likelihood_sharded(
            sde, score, x, seed=args.seed, block_size=args.block_size, rtol=args.rtol,
            atol=args.rtol, progress=not args.no_progress and dist.rank() == 0,
        )  # fmt: skip
        if dist.rank() != 0:  # rank 0 prints
            return 0
    except (ValueError, TypeError, ImportError) as err:
        return _fail("likelihood", err)
    except (dist.RankFailed, dist.RendezvousError) as err:
        print(f"sdelab likelihood (rank {dist.rank()}): {err}", file=sys.stderr)
        return 1
    logp = res.logp.to("cpu", torch.float64)
    n, dim = x.shape[0], ds.dim
    nats = float(logp.mean())
    se = float(logp.std()) / math.sqrt(n) if n > 1 else float("nan")
    offset = dim * math.log(width) if width is not None else 0.0
    bpd = -(nats + offset) / (dim * math.log(2.0))
    what = (
        f"uniform dequantisation, {ds.levels} levels, bin width {width:.4g}"
        if width is not None
        else "continuous data: the density itself"
    )
    print(f"data {ds.name} ({args.split}), {n} samples of dimension {dim}; {res.nfe} NFE")
    print(f"log-likelihood: {nats:.4f} nats per sample (standard error {se:.2g})")
    print(f"bits/dim:       {bpd:.4f}  ({what})")
    return 0
