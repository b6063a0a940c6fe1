"""``sdelab compare``: arguments and entry point (registered in `sdelab.cli`)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

EPILOG = """\
examples:
  sdelab compare --quick                      # reduced grid, < 30 s
  sdelab compare                              # the built-in benchmark (3 min idle, longer on a busy machine)
  sdelab compare --preset fast --out fast     # the fast samplers at 5-50 NFE, with pathwise errors
  sdelab compare --preset table1 --seeds 0 1 2
  sdelab compare --preset inverse --quick     # conditional samplers vs the exact posterior
  sdelab compare --config examples/compare.toml --out my-results
  sdelab compare --score mymodel:score --data data.npy --sde vp --n-samples 1000
  sdelab compare --quick --score run/          # a `sdelab train --data gmm2d --out run` score

A run appends to OUT/results.jsonl as each cell finishes; rerunning with the same --out
resumes and computes only the missing cells (failed cells are kept unless --retry-failed);
a second run on the same --out is refused while the first holds its lock.
"""


def add_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sdelab compare``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    grid = p.add_mutually_exclusive_group()
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced grid (< 30 s): --preset quick; with --preset inverse its reduced grid",
    )
    grid.add_argument(
        "--preset",
        choices=("default", "quick", "fast", "table1", "inverse"),
        help="built-in grid (default: 'default'); fast = the fast samplers at 5-50 NFE; "
        "table1 = the structure of the paper's Table 1; inverse = the conditional samplers "
        "against the exact posterior",
    )
    grid.add_argument("--config", metavar="FILE", help="custom grid, a .toml or .json file")
    p.add_argument(
        "--out",
        metavar="DIR",
        default="sdelab-results",
        help="output folder (default sdelab-results)",
    )
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds (override the grid's)")
    p.add_argument("--n-samples", type=int, metavar="N", help="sample size (override the grid's)")
    p.add_argument(
        "--metric",
        help="primary metric of tables and plots (default: the grid's; energy for the "
        "default and quick presets, sw2 for table1 and custom grids)",
    )
    p.add_argument(
        "--sde",
        nargs="+",
        metavar="KIND",
        help="SDE kinds vp/subvp/ve with default parameters (override the grid's; needed with --score)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch CPU threads (default 1, fastest for small batches; 0 = torch's default)",
    )
    p.add_argument(
        "--score",
        metavar="MODULE:CALLABLE",
        help="a user's score model: score(x, t), or make(sde) -> score (needs --data); or a "
        "sdelab train checkpoint DIR of gmm2d/gmm16, run on its own mixture and SDE",
    )
    p.add_argument(
        "--data", metavar="FILE", help="data sample (.npy or .pt, shape (N, ...)) for --score"
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="compute failed cells again (a rerun keeps them: sampling is deterministic)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


class UsageError(ValueError):
    """A command-line value that cannot work; printed as one line, exit status 2."""


def check_threads(n: int) -> int | None:
    """``--threads``: an integer >= 0 (0 = torch's default); returns the value for
    `compare` (``None`` for 0)."""
    if n < 0:
        raise UsageError(f"--threads must be an integer >= 0 (0 = torch's default), got {n}")
    return n or None


def check_device(name: str) -> str:
    """``--device``: a torch device that exists on this machine."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {name!r} is not a torch device; expected cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name!r}: CUDA is not available here (torch {torch.__version__}, "
                f"{'built without CUDA' if torch.version.cuda is None else 'no GPU visible'}); "
                f"expected --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name!r}: expected a GPU index below "
                f"{torch.cuda.device_count()} (the GPUs visible)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name!r}: MPS is not available here; expected --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        try:
            torch.empty(1, device=dev)
        except (RuntimeError, ValueError) as e:
            raise UsageError(f"--device {name!r} cannot be used here ({e}); expected cpu") from None
    return name


def check_out(path: str) -> Path:
    """``--out``: a writable directory, or a path that can be created as one (nothing is
    created here, so a refused grid leaves no folder behind)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {path!r} exists and is not a directory; expected a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(
            f"--out {path!r} cannot be created: {str(probe)!r} is not a directory; "
            f"expected a writable folder"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == p else f"cannot be created in {str(probe)!r}"
        raise UsageError(f"--out {path!r} {what}; expected a writable folder")
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"sdelab compare: warning: {message}", file=sys.stderr if file is None else file)


def main(args: argparse.Namespace) -> int:
    """Run ``sdelab compare`` with parsed ``args``; returns the exit status (0 done, 1 the
    output folder is in use by another run, 2 an invalid argument or grid)."""
    from .compare import compare
    from .config import PRESETS, ConfigError, config_from_dict, load_config
    from .runner import ResultsBusy

    try:
        threads = check_threads(args.threads)
        if args.quick and (args.config or args.preset not in (None, "inverse")):
            given = f"--config {args.config}" if args.config else f"--preset {args.preset}"
            raise UsageError(f"--quick goes alone or with --preset inverse, got it with {given}")
        if args.preset == "inverse":
            return _main_inverse(args, threads)
        if args.config:
            base = load_config(args.config).to_dict()
        else:
            base = dict(PRESETS["quick" if args.quick else args.preset or "default"])
        if args.seeds is not None:
            base["seeds"] = args.seeds
        if args.n_samples is not None:
            base["n_samples"] = args.n_samples
        if args.metric is not None:
            base["metric"] = args.metric
        if args.sde is not None:
            base["sdes"] = args.sde
        elif args.score is not None and not args.config and not _checkpoint(args):
            raise ConfigError("--score needs --sde (the SDE the model was trained for) or --config")
        if args.score is not None and not _checkpoint(args):
            base["datasets"] = ["gmm2d"]  # replaced by the user's data; keeps the grid valid
            if base.get("metric") in ("mode_tv", "logp_gap"):
                raise ConfigError(
                    f"--metric {base['metric']} needs the analytic mixture, not --data"
                )
        cfg = config_from_dict(base)
        device = check_device(args.device)
        out = check_out(args.out)
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            res = compare(
                cfg,
                out,
                device=device,
                score=args.score,
                data=args.data,
                progress=not args.no_progress,
                plots=not args.no_plots,
                threads=threads,
                retry_failed=args.retry_failed,
            )
    except ConfigError as e:
        print(f"sdelab compare: invalid grid: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # UsageError, --score / --data problems
        print(f"sdelab compare: {e}", file=sys.stderr)
        return 2
    except ResultsBusy as e:
        print(f"sdelab compare: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"sdelab compare: --out {args.out!r} cannot be created or written "
            f"({e.strerror or e}); expected a writable folder",
            file=sys.stderr,
        )
        return 2
    print()
    print(res.summary)
    print()
    print(res.report())
    for role, path in res.files.items():
        print(f"  {role:<9} {path}")
    return 0


def _checkpoint(args: argparse.Namespace) -> bool:
    """``--score DIR`` without ``--data``: a training checkpoint on its own mixture and SDE."""
    from .compare import is_checkpoint

    return args.data is None and is_checkpoint(args.score)


def _main_inverse(args: argparse.Namespace, threads: int | None) -> int:
    """``sdelab compare --preset inverse [--quick]`` (`sdelab.experiments.inverse`)."""
    from dataclasses import replace

    import torch

    from .inverse import INVERSE_PRESETS, run_inverse

    cfg = INVERSE_PRESETS["inverse-quick" if args.quick else "inverse"]
    if args.seeds is not None:
        cfg = replace(cfg, seeds=args.seeds)
    if args.n_samples is not None:
        if args.n_samples < 2:
            raise UsageError(f"--n-samples must be an integer >= 2, got {args.n_samples}")
        cfg = replace(cfg, n_samples=args.n_samples)
    for flag in ("score", "data", "sde", "metric"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag} does not apply to --preset inverse")
    device = check_device(args.device)
    out = check_out(args.out)
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        res = run_inverse(cfg, out, device=device, progress=not args.no_progress)
    finally:
        torch.set_num_threads(old)
    print()
    print(res.summary)
    print()
    failed = sum(r["status"] != "ok" for r in res.records)
    print(f"{len(res.records)} cells, {failed} failed; wall time {res.wall_s:.1f} s")
    for role, path in res.files.items():
        print(f"  {role:<9} {path}")
    return 0
