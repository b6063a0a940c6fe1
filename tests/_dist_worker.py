"""One rank of the 2-process tests of `sdelab.distributed` (started by tests/test_distributed.py
with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set; no external launcher).

``python tests/_dist_worker.py CASE OUT [ARGS]``; each rank writes ``OUT/rank{r}.*``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

import sdelab  # noqa: E402
import sdelab.distributed as sd  # noqa: E402
from sdelab.cli import main as cli  # noqa: E402


def problem():
    """The shared sampling / likelihood problem (also used by the single-process side)."""
    mix = sdelab.GaussianMixture(
        torch.tensor([[-1.0, 0.5], [1.5, -0.5]], dtype=torch.float64),
        torch.tensor([[0.3, 0.2], [0.2, 0.4]], dtype=torch.float64),
        torch.tensor([0.4, 0.6], dtype=torch.float64),
    )
    return sdelab.VPSDE(), mix


def sample_and_likelihood(out: Path) -> None:
    sde, mix = problem()
    res = sd.sample_sharded(
        sde,
        mix.score(sde),
        sdelab.EulerMaruyama(),
        (23, 2),
        seed=5,
        block_size=4,
        steps=12,
        dtype=torch.float64,
    )
    x = mix.sample(9, torch.Generator().manual_seed(1))
    ll = sd.log_likelihood_sharded(sde, mix.score(sde), x, seed=2, block_size=2, rtol=1e-3)
    torch.save(
        {"x": res.x, "nfe": res.nfe, "logp": ll.logp, "z": ll.z, "ll_nfe": ll.nfe},
        out / f"rank{sd.rank()}.pt",
    )


QUIET = ("--no-plots", "--no-progress")


def main() -> int:
    case, out = sys.argv[1], Path(sys.argv[2])
    sd.init_from_env(timeout=60, op_timeout=float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    r = sd.rank()
    if case == "cli":  # the command lines in OUT/commands.json, one after the other
        rcs = [cli(argv) for argv in json.loads((out / "commands.json").read_text())]
        return max(rcs)
    if case == "all":
        # 1. sampling and likelihoods, 2. compare through the CLI, 3. differing configs,
        # 4. a rank that raises (last: it poisons the session)
        sample_and_likelihood(out)
        rc = cli(["compare", "--config", str(out / "grid.json"), "--out", str(out / "cmp"), *QUIET])
        report = {"compare_rc": rc}
        from sdelab.experiments.sharded import compare_sharded

        try:
            compare_sharded(
                {**json.loads((out / "grid.json").read_text()), "n_samples": 100 + r},
                out / "mismatch",
                progress=False,
                plots=False,
            )
            report["mismatch"] = None
        except sd.ConfigMismatch as e:
            report["mismatch"] = str(e)
        report["mismatch_folder"] = (out / "mismatch").exists()
        try:
            with sd.stop_together():
                if r == 1:
                    raise ValueError("boom on rank 1")
            report["raised"] = None
        except sd.RankFailed as e:
            report["raised"] = ["RankFailed", e.rank, str(e)]
        except ValueError as e:
            report["raised"] = ["ValueError", r, str(e)]
        (out / f"rank{r}.json").write_text(json.dumps(report))
        return 0
    if case == "compare-die":  # rank 1 is killed (SIGKILL) right after its first cell
        import os
        import signal

        from sdelab.experiments import sharded

        append = sharded._append

        def append_then_die(path, record):
            append(path, record)
            if r == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        sharded._append = append_then_die
        case = "compare"
    if case == "compare":  # the CLI alone (the kill and resume test)
        return cli(
            ["compare", "--config", str(out / "grid.json"), "--out", str(out / "cmp"), *QUIET]
        )
    raise SystemExit(f"unknown case {case!r}")


if __name__ == "__main__":
    sys.exit(main())
