"""``sdelab compare``: arguments and entry point (registered in `sdelab.cli`)."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  sdelab compare --quick                      # reduced grid, < 30 s
  sdelab compare                              # the built-in benchmark (a few minutes)
  sdelab compare --preset table1 --seeds 0 1 2
  sdelab compare --config examples/compare.toml --out my-results
  sdelab compare --score mymodel:score --data data.npy --sde vp --n-samples 1000

A run appends to OUT/results.jsonl as each cell finishes; rerunning with the same --out
resumes and computes only the missing cells.
"""


def add_args(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sdelab compare``."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--quick", action="store_true", help="reduced grid (< 30 s): --preset quick")
    grid.add_argument(
        "--preset",
        choices=("default", "quick", "table1"),
        help="built-in grid (default: 'default'); table1 = the structure of the paper's Table 1",
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
        help="a user's score model: score(x, t), or make(sde) -> score (needs --data)",
    )
    p.add_argument(
        "--data", metavar="FILE", help="data sample (.npy or .pt, shape (N, ...)) for --score"
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``sdelab compare`` with parsed ``args``; returns the exit status."""
    from .compare import compare
    from .config import PRESETS, ConfigError, config_from_dict, load_config

    try:
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
        elif args.score is not None and not args.config:
            raise ConfigError("--score needs --sde (the SDE the model was trained for) or --config")
        if args.score is not None:
            base["datasets"] = ["gmm2d"]  # replaced by the user's data; keeps the grid valid
            if base.get("metric") in ("mode_tv", "logp_gap"):
                raise ConfigError(
                    f"--metric {base['metric']} needs the analytic mixture, not --data"
                )
        cfg = config_from_dict(base)
        res = compare(
            cfg,
            args.out,
            device=args.device,
            score=args.score,
            data=args.data,
            progress=not args.no_progress,
            plots=not args.no_plots,
            threads=args.threads or None,
        )
    except ConfigError as e:
        print(f"sdelab compare: invalid grid: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"sdelab compare: {e}", file=sys.stderr)
        return 2
    print()
    print(res.summary)
    print(
        f"\n{len(res.records)} cells in {res.wall_s:.1f} s; sampling {res.sampling_s:.1f} s, "
        f"{100 * res.score_share:.0f}% of it inside the score function"
    )
    for role, path in res.files.items():
        print(f"  {role:<9} {path}")
    return 0
