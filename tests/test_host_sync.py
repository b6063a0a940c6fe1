"""Device discipline, checked on the CPU: what would cross to the host on a GPU.

A host synchronisation happens when Python reads a tensor's value (``bool``, ``float``,
``int``, ``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``). We count those reads while the
code runs: the fixed-grid sampler's count must not grow with the number of steps, and the
torch ODE backend may read single scalars (its step-size control) but never the state.
"""

import contextlib

import pytest
import torch

import sdelab

_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy")


@contextlib.contextmanager
def count_host_reads():
    """Count value reads of tensors; record the largest number of elements read at once."""
    stats = {"reads": 0, "largest": 0}
    originals = {name: getattr(torch.Tensor, name) for name in _READS}

    def wrap(name, fn):
        def reader(self, *args, **kwargs):
            stats["reads"] += 1
            stats["largest"] = max(stats["largest"], self.numel())
            return fn(self, *args, **kwargs)

        return reader

    for name, fn in originals.items():
        setattr(torch.Tensor, name, wrap(name, fn))
    try:
        yield stats
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


MIX = sdelab.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.3, 1.0], [0.6, 0.2]], [0.4, 0.6])


@pytest.mark.parametrize(
    "solver",
    [
        sdelab.EulerMaruyama(),
        sdelab.ReverseDiffusion(),
        sdelab.AncestralSampling(),
        sdelab.PC(sdelab.ReverseDiffusion(), sdelab.Langevin()),
        sdelab.AnnealedLangevin(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_fixed_grid_sampling_reads_the_device_a_constant_number_of_times(solver):
    sde = sdelab.VESDE() if isinstance(solver, sdelab.AnnealedLangevin) else sdelab.VPSDE()
    score = MIX.score(sde)
    counts = []
    for steps in (10, 80):
        with count_host_reads() as stats:
            sdelab.sample(sde, score, solver, (64, 2), steps=steps, generator=torch.Generator())
        counts.append(stats["reads"])
    assert counts[0] == counts[1], f"host reads grow with steps: {counts}"


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_torch_ode_backend_never_reads_the_state(divergence):
    sde = sdelab.VPSDE()
    x = MIX.sample(32, generator=torch.Generator().manual_seed(0))
    with count_host_reads() as stats:
        res = sdelab.log_likelihood(
            sde, MIX.score(sde), x, divergence=divergence, backend="torch", rtol=1e-4, atol=1e-4
        )
    # step-size control reads one scalar per attempt; the (32, 2) state never comes across
    assert stats["largest"] <= 1
    assert stats["reads"] <= 4 * res.nfe


def test_the_counter_sees_reads():
    with count_host_reads() as stats:
        t = torch.arange(6.0)
        bool(t.sum() > 0), t.tolist(), float(t[0])
    assert stats["reads"] == 3 and stats["largest"] == 6


def test_a_batch_of_times_is_read_once_per_score_call():
    """The mixture score with t of shape (B,) checks t's values once (one host read), not once
    per coefficient; a tensor changed in place after its check is checked again."""
    sde = sdelab.VPSDE()
    score = MIX.score(sde)
    x = torch.zeros(16, 2)
    t = torch.full((16,), 0.5)
    with count_host_reads() as stats:
        score(x, t)
    assert stats["reads"] == 1
    t.add_(1.0)  # now outside [0, T]
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\]"):
        score(x, t)
