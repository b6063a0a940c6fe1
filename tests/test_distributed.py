"""`sdelab.distributed` and ``sdelab compare`` over 2 gloo ranks the tests start themselves
(subprocesses of tests/_dist_worker.py with a free port; no launcher), against the same work
done in this single process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import sdelab.distributed as sd
from sdelab.experiments import compare

HERE = Path(__file__).parent
ROOT = HERE.parent
WORKER = HERE / "_dist_worker.py"
sys.path.insert(0, str(HERE))
import _dist_worker  # noqa: E402

#: 6 cells of about 0.1 s each (two fixed-grid solvers at two step counts, the exact-flow one
#: with a pathwise error)
GRID = {
    "name": "tiny",
    "datasets": ["gmm2d"],
    "sdes": ["vp"],
    "solvers": [
        "euler_maruyama",
        {"kind": "reverse_diffusion", "probability_flow": True},
        "ancestral",
    ],
    "steps": [10, 20],
    "seeds": [0],
    "n_samples": 200,
}
SAME = ("key", "status", "nfe", "solver_steps", "metrics", "floor", "pathwise", "config")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(case: str, out: Path, world: int, *extra: str) -> list[subprocess.Popen]:
    port = free_port()
    procs = []
    for r in range(world):
        env = {
            **os.environ,
            "RANK": str(r),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(r),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), case, str(out), *extra],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 60) -> list[tuple[int, str]]:
    """(return code, stderr) of each rank; each rank's stdout is kept in ``p.out``."""
    res = []
    for p in procs:
        try:
            p.out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a rank hung")
        res.append((p.returncode, err))
    return res


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_records(a: list[dict], b: list[dict], *, ordered: bool = True) -> None:
    """The same cells with the same results (in the same order: a fresh run writes grid
    order; a resumed one, like a resumed single-process run, the old records first)."""
    if ordered:
        assert [r["key"] for r in a] == [r["key"] for r in b]
    a, b = {r["key"]: r for r in a}, {r["key"]: r for r in b}
    assert a.keys() == b.keys() and len(a) == len(GRID["steps"]) * 3
    for k, x in a.items():
        assert {f: x[f] for f in SAME} == {f: b[k][f] for f in SAME}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The tiny grid computed in this single process."""
    out = tmp_path_factory.mktemp("single")
    compare(GRID, out, progress=False, plots=False)
    return records(out / "results.jsonl")


def test_two_ranks_equal_one_process(tmp_path, single):
    """Sampling, likelihoods and compare under 2 ranks equal the single-process results;
    differing configs are refused on both ranks; a rank that raises stops both with its
    error (no hang)."""
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    procs = launch("all", tmp_path, 2)
    # the same work in this process (world size 1) while the ranks run
    sde, mix = _dist_worker.problem()
    one = sd.sample_sharded(
        sde,
        mix.score(sde),
        sd_solver(),
        (23, 2),
        seed=5,
        block_size=4,
        steps=12,
        dtype=torch.float64,
    )
    x = mix.sample(9, torch.Generator().manual_seed(1))
    ll = sd.log_likelihood_sharded(sde, mix.score(sde), x, seed=2, block_size=2, rtol=1e-3)
    results = finish(procs)
    assert [rc for rc, _ in results] == [0, 0], results
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt")
        assert torch.equal(got["x"], one.x)  # bit for bit: blocks are seeded by index
        assert got["nfe"] == one.nfe
        assert torch.equal(got["logp"], ll.logp) and torch.equal(got["z"], ll.z)
        assert got["ll_nfe"] == ll.nfe
    # the blocks are not all the same draw: different blocks got different seeds
    assert not torch.equal(one.x[:4], one.x[4:8])
    merged = records(tmp_path / "cmp" / "results.jsonl")
    assert_same_records(merged, single)
    assert {r["rank"] for r in merged} <= {0, 1}
    assert not list((tmp_path / "cmp").glob("results.rank*.jsonl"))  # folded and removed
    assert (tmp_path / "cmp" / "summary.md").is_file()
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [rep["compare_rc"] for rep in reports] == [0, 0]
    for rep in reports:
        assert rep["mismatch"] is not None and "ranks [1]" in rep["mismatch"]
        assert rep["mismatch_folder"] is False  # refused before anything was written
    assert reports[1]["raised"] == ["ValueError", 1, "boom on rank 1"]
    kind, who, msg = reports[0]["raised"]
    assert (kind, who) == ("RankFailed", 1) and "boom on rank 1" in msg


def sd_solver():
    import sdelab

    return sdelab.EulerMaruyama()


def test_rank_killed_then_resume_with_other_world_sizes(tmp_path, single):
    """Rank 1 killed mid-run: rank 0 fails within op_timeout (no hang); a resume under 3
    ranks (more ranks than cells left: idle ranks exit cleanly) loses no finished cell and
    the merged results equal the single-process run."""
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    procs = launch("compare-die", tmp_path, 2, "3")
    procs[1].wait(timeout=60)  # SIGKILL after its first cell
    t0 = time.monotonic()
    (rc0, err0), (rc1, _) = finish(procs)
    assert rc1 == -signal.SIGKILL
    assert rc0 == 1 and "timed out" in err0, err0
    assert time.monotonic() - t0 < 40  # op_timeout 3 s, then exit (a loaded machine)
    done = {r["key"]: r for f in (tmp_path / "cmp").glob("results*.jsonl") for r in records(f)}
    assert len(done) >= 1
    results = finish(launch("compare", tmp_path, 3))
    assert [rc for rc, _ in results] == [0, 0, 0], results
    merged = records(tmp_path / "cmp" / "results.jsonl")
    assert_same_records(merged, single, ordered=False)
    # the cells finished before the kill were kept as they were (not computed again)
    kept = {r["key"]: r for r in merged if r["key"] in done}
    assert kept == done


def test_resume_in_one_process_folds_rank_files(tmp_path, single):
    """A single-process run on a folder left by a distributed run folds its rank files in
    (whatever their number) and computes only the rest."""
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "results.rank0.jsonl").write_text(json.dumps(single[0]) + "\n")
    (out / "results.rank5.jsonl").write_text(json.dumps(single[3]) + "\n" + '{"torn')
    res = compare(GRID, out, progress=False, plots=False)
    assert res.resumed == 2 and res.computed == len(single) - 2
    assert_same_records(records(out / "results.jsonl"), single, ordered=False)
    assert not list(out.glob("results.rank*.jsonl"))


def test_block_seed_and_shard():
    assert sd.block_seed(0, 1) != sd.block_seed(1, 0) != sd.block_seed(0, 0)
    assert 0 <= sd.block_seed(2**40, 7) < 2**63
    items = list(range(11))
    parts = [sd.shard(items, of=3, index=r) for r in range(3)]
    assert sorted(x for p in parts for x in p) == items and parts[1] == [1, 4, 7, 10]
    assert sd.blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError, match="block must be an integer >= 0, got -1"):
        sd.block_seed(0, -1)
    with pytest.raises(ValueError, match="index=3, of=3"):
        sd.shard(items, of=3, index=3)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1, got 0"):
        sd.blocks(5, 0)


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    s = sd.init_from_env(timeout=1)
    assert (s.rank, s.world_size, sd.is_distributed()) == (0, 1, False)
    assert sd.collect({1: torch.ones(2), 0: torch.zeros(1)}, 2)[0].shape == (1,)
    with pytest.raises(ValueError, match=r"parts \[1\] of 2 are missing"):
        sd.collect({0: torch.zeros(1)}, 2)
    sd.check_same({"a": 1})
    with pytest.raises(KeyError):
        with sd.stop_together():
            raise KeyError("x")


@pytest.mark.parametrize("r", [0, 1])
def test_unreachable_rendezvous_errors_within_timeout(monkeypatch, r):
    """Rank 1 with no rank 0 listening, and rank 0 with no rank 1 joining: a clear error
    after about the timeout, not a hang."""
    port = free_port()
    for k, v in {
        "RANK": r,
        "WORLD_SIZE": 2,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
    }.items():
        monkeypatch.setenv(k, str(v))
    t0 = time.monotonic()
    with pytest.raises(sd.RendezvousError, match=f"127.0.0.1:{port}.*timeout 1 s.*rank {r} of"):
        sd.init_from_env(timeout=1)
    assert time.monotonic() - t0 < 12
    assert not sd.is_distributed()


def test_missing_variables_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(sd.RendezvousError, match="RANK is not set"):
        sd.init_from_env(timeout=1)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(sd.RendezvousError, match="RANK=2 and WORLD_SIZE=2"):
        sd.init_from_env(timeout=1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(sd.RendezvousError, match="MASTER_ADDR is not set"):
        sd.init_from_env(timeout=1)
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0, got 0"):
        sd.init_from_env(timeout=0)


def test_train_sample_likelihood_commands_under_two_ranks(tmp_path, capsys):
    """``sdelab train`` under 2 ranks (DistributedDataParallel): the same seed gives the same
    weights twice and, up to rounding, those of one process; rank 0 alone checkpoints, and
    the checkpoint resumes in one process.
    ``sdelab sample`` / ``sdelab likelihood`` under 2 ranks give the same samples and the same
    printed log-likelihood as one process."""
    import numpy as np
    from safetensors.torch import load_file

    from sdelab.cli import main

    train = ["train", "--data", "gmm2d", "--hidden", "16", "--batch-size", "16"]
    train += ["--checkpoint-every", "10", "--no-progress"]
    ck = str(tmp_path / "a")

    def commands(tag: str) -> list[list[str]]:
        npy = str(tmp_path / f"{tag}.npy")
        sample = ["sample", "--checkpoint", ck, "--steps", "5", "--n", "11"]
        likelihood = ["likelihood", "--checkpoint", ck, "--data", "gmm2d", "--n", "5"]
        return [
            [*sample, "--block-size", "3", "--out", npy, "--seed", "4", "--no-progress"],
            [*likelihood, "--block-size", "2", "--rtol", "1e-3"],
        ]

    runs = [[*train, "--steps", "20", "--out", str(tmp_path / d)] for d in ("a", "b")]
    (tmp_path / "commands.json").write_text(json.dumps(runs + commands("two")))
    procs = launch("cli", tmp_path, 2)
    results = finish(procs)
    assert [rc for rc, _ in results] == [0, 0], results
    a, b = (load_file(tmp_path / d / "step-00000020.safetensors") for d in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "a").glob("*.json")) == [
        "step-00000010.json",
        "step-00000020.json",
    ]
    # one process: the same batches and draws, the same weights up to rounding
    assert main([*train, "--steps", "20", "--out", str(tmp_path / "one")]) == 0
    one = load_file(tmp_path / "one" / "step-00000020.safetensors")
    for k in a:
        assert torch.allclose(one[k], a[k], rtol=1e-4, atol=1e-5), k
    capsys.readouterr()
    for argv in commands("one"):
        assert main(argv) == 0
    one_out = capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy"))
    lines = [x for x in one_out.splitlines() if "log-likelihood" in x or "bits/dim" in x]
    assert len(lines) == 2 and all(x in procs[0].out for x in lines), (one_out, procs[0].out)
    assert "log-likelihood" not in procs[1].out  # rank 0 alone prints
    # a resume in one process continues from step 20 (the shared generator's state)
    assert main([*train, "--steps", "30", "--out", ck]) == 0
    c = load_file(tmp_path / "a" / "step-00000030.safetensors")
    assert c["losses"].shape == (30,) and torch.equal(c["losses"][:20], a["losses"])
    weights = [k for k in a if k.startswith("model.")]
    assert any(not torch.equal(c[k], a[k]) for k in weights)  # it trained on
