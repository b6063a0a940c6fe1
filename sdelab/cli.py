"""The ``sdelab`` command line.

``sdelab sdes`` prints the three SDEs' marginal mean coefficient and std over t. Further
subcommands register themselves in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def _sdes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--points", type=int, default=11, help="number of times in [0, 1] (default 11)")


def _sdes_run(args: argparse.Namespace) -> int:
    from .sde import VESDE, VPSDE, SubVPSDE

    if args.points < 2:
        raise SystemExit(f"sdelab sdes: --points must be >= 2, got {args.points}")
    sdes = {"VP": VPSDE(), "sub-VP": SubVPSDE(), "VE": VESDE()}
    print("Perturbation kernels p_0t(x_t | x_0) = N(m(t) x_0, std(t)^2 I), paper defaults\n")
    header = f"{'t':>6} " + " ".join(f"{n + ' m(t)':>12} {n + ' std':>12}" for n in sdes)
    print(header)
    print("-" * len(header))
    for i in range(args.points):
        t = i / (args.points - 1)
        row = " ".join(f"{s.mean_coeff(t):12.5g} {s.std(t):12.5g}" for s in sdes.values())
        print(f"{t:6.3f} {row}")
    return 0


COMMANDS["sdes"] = (
    "table of the forward SDEs' marginal mean coefficient and std",
    _sdes_args,
    _sdes_run,
)


def _compare_args(p: argparse.ArgumentParser) -> None:
    from .experiments.cli import add_args

    add_args(p)


def _compare_run(args: argparse.Namespace) -> int:
    from .experiments.cli import main as run

    return run(args)


COMMANDS["compare"] = (
    "compare samplers against the analytic truth: tables, plots, resumable results",
    _compare_args,
    _compare_run,
)


def _training(name: str) -> tuple[Callable, Callable]:
    """``(add_args, run)`` of a training command, imported when it is used."""

    def add_args(p: argparse.ArgumentParser) -> None:
        from .training import cli

        getattr(cli, f"{name}_args")(p)

    def run(args: argparse.Namespace) -> int:
        from .training import cli

        return getattr(cli, f"{name}_run")(args)

    return add_args, run


COMMANDS["train"] = (
    "train a score model by denoising score matching (checkpoints, resumes after a kill)",
    *_training("train"),
)
COMMANDS["sample"] = ("draw samples of a trained checkpoint to .npy or .png", *_training("sample"))
COMMANDS["likelihood"] = (
    "log-likelihood (nats, bits/dim) of data under a trained checkpoint",
    *_training("likelihood"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdelab`` console script."""
    parser = argparse.ArgumentParser(prog="sdelab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
