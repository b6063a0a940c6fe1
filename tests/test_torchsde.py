"""TorchSDE: the reverse SDE through torchsde, checked against the Gaussian-mixture oracle.

Tolerances: a mean of n draws is off by about std/sqrt(n); we allow 5 of those plus a
discretisation allowance DISC taken from benchmarks/convergence_orders.py, where fixed-step
srk with 64 steps has an RMS *pathwise* error of at most 1.3e-2 on VP, sub-VP and VE (the
pathwise error bounds the bias of any 1-Lipschitz statistic, the mean included); DISC = 0.03
is about twice that, and the looser adaptive tolerance is checked against the same bound.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sdelab
from sdelab.solvers.base import CountingScore
from sdelab.solvers.torchsde import METHODS, TorchSDE

N = 4000
EPS = 1e-3
DISC = 0.03
MIX = sdelab.GaussianMixture([[-1.5, 0.5], [1.5, -0.5]], [[0.4, 0.8], [0.6, 0.3]], [0.35, 0.65])
SDES = [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE()]


class _RawCounter:
    """The true number of score calls, counted beside CountingScore."""

    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


def run(sde, solver, n=N, *, seed=0, steps=None, shape=None, return_trajectory=False, **kw):
    """`sdelab.sample` with TorchSDE; returns (result, reported NFE, true score calls, x_T)."""
    shape = shape or (n, MIX.dim)
    dtype = kw.pop("dtype", None)
    raw = _RawCounter(MIX.score(sde))
    res = sdelab.sample(
        sde,
        raw,
        solver,
        shape,
        steps=steps,
        eps=EPS,
        generator=torch.Generator().manual_seed(seed),
        dtype=dtype,
        progress=kw.pop("progress", False),
        return_trajectory=return_trajectory,
    )
    # sample draws the prior first from the same generator
    x_T = sde.prior_sample(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return res, res.nfe, raw.calls, x_T


def sliced_w1(a, b, n_proj=64, seed=0):
    """Sliced 1-Wasserstein distance between equal-size samples, fixed projections."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(a.shape[1], n_proj, generator=g, dtype=a.dtype)
    d = d / d.norm(dim=0)
    pa, pb = (a @ d).sort(0).values, (b @ d).sort(0).values
    return float((pa - pb).abs().mean())


def assert_matches_truth(x, seed=1):
    x = x.double()
    n = x.shape[0]
    truth = MIX.sample(n, torch.Generator().manual_seed(100 + seed)).double()
    mean, cov = MIX.mean().double(), MIX.covariance().double()
    # mean: 5 standard errors + discretisation allowance
    se = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= 5 * se + DISC).all(), (x.mean(0), mean)
    # covariance entries: 5 standard errors of the sample covariance (estimated from a true
    # sample) + allowance 2 * |x| * DISC for a perturbation DISC of each draw
    c = truth - mean
    prod = c[:, :, None] * c[:, None, :]
    se_cov = prod.std(0) / math.sqrt(n)
    scale = truth.abs().mean()
    assert ((torch.cov(x.T) - cov).abs() <= 5 * se_cov + 2 * scale * DISC).all()
    # mode weights
    w = MIX.component_posterior(x.float()).mean(0).double()
    se_w = (MIX.weights.double() * (1 - MIX.weights.double()) / n).sqrt()
    assert ((w - MIX.weights.double()).abs() <= 5 * se_w + DISC).all(), w
    # sliced W1 against its noise floor (two independent true samples), plus DISC: a
    # per-draw perturbation of size DISC moves W1 by at most DISC
    floor = sliced_w1(truth, MIX.sample(n, torch.Generator().manual_seed(200 + seed)).double())
    sw = sliced_w1(x, truth)
    assert sw <= 3 * floor + DISC, (sw, floor)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_fixed_srk_samples_the_mixture(sde):
    res, nfe, calls, _ = run(sde, TorchSDE(method="srk", adaptive=False), steps=64)
    assert res.steps == 64
    assert nfe == calls == 2 * 64  # SRA1: two distinct drift evaluations per step
    assert_matches_truth(res.x)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_default_adaptive_samples_the_mixture(sde):
    res, nfe, calls, _ = run(sde, TorchSDE(), steps=100)
    assert nfe == calls
    assert 0 < res.steps < 100  # the default tolerance needs fewer steps than the initial dt
    assert_matches_truth(res.x, seed=2)


def test_fixed_euler_samples_and_counts():
    sde = sdelab.VPSDE()
    res, nfe, calls, _ = run(sde, TorchSDE(method="euler", adaptive=False), steps=300)
    assert res.steps == 300 and nfe == calls == 300
    assert_matches_truth(res.x, seed=3)


def test_coarse_steps_show_error_that_shrinks():
    sde = sdelab.VESDE()
    truth = MIX.sample(N, torch.Generator().manual_seed(5)).double()
    sw = []
    for steps in (4, 64):
        res, *_ = run(sde, TorchSDE(method="euler", adaptive=False), steps=steps)
        sw.append(sliced_w1(res.x.double(), truth))
    floor = sliced_w1(truth, MIX.sample(N, torch.Generator().manual_seed(6)).double())
    assert sw[0] > 5 * floor and sw[1] < sw[0] / 3, (sw, floor)


def test_adaptive_fewer_steps_at_looser_tolerance_and_unbiased():
    sde = sdelab.VPSDE()
    loose, nfe_l, calls_l, _ = run(sde, TorchSDE(rtol=1e-2, atol=1e-2), steps=100)
    tight, nfe_t, calls_t, _ = run(sde, TorchSDE(rtol=1e-4, atol=1e-4), n=500, steps=100)
    assert loose.steps < tight.steps and nfe_l < nfe_t
    assert nfe_l == calls_l and nfe_t == calls_t
    assert_matches_truth(loose.x, seed=4)


def test_same_generator_same_samples_different_generator_differs():
    sde = sdelab.VPSDE()
    for solver in (TorchSDE(method="srk", adaptive=False), TorchSDE(method="euler")):
        a = run(sde, solver, n=200, seed=7, steps=20)[0].x
        b = run(sde, solver, n=200, seed=7, steps=20)[0].x
        c = run(sde, solver, n=200, seed=8, steps=20)[0].x
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)
    # the Brownian motion differs too, not only the prior draw: same x, other generator
    x = sde.prior_sample((200, 2), generator=torch.Generator().manual_seed(0))
    outs = []
    for seed in (1, 2):
        res = TorchSDE(adaptive=False).solve(
            sde,
            CountingScore(MIX.score(sde)),
            x,
            1.0,
            EPS,
            steps=20,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
            return_trajectory=False,
        )
        outs.append(res.x)
    assert not torch.allclose(*outs)


def test_global_rng_untouched_when_a_generator_is_given():
    before = torch.get_rng_state()
    run(sdelab.VPSDE(), TorchSDE(adaptive=False), n=50, steps=5)
    assert torch.equal(before, torch.get_rng_state())


def test_no_generator_uses_global_rng_reproducibly():
    sde = sdelab.VPSDE()
    x = torch.zeros(50, 2)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        res = TorchSDE(adaptive=False).solve(
            sde,
            CountingScore(MIX.score(sde)),
            x,
            1.0,
            EPS,
            steps=5,
            generator=None,
            progress=False,
            return_trajectory=False,
        )
        outs.append(res.x)
    assert torch.equal(*outs)


@pytest.mark.parametrize(
    ("dt", "steps", "expected"), [(None, 10, 10), (0.3, 10, 4), (None, None, 1000)]
)
def test_step_size_from_steps_dt_or_N(dt, steps, expected):
    res, nfe, _, _ = run(
        sdelab.VPSDE(), TorchSDE("euler", adaptive=False, dt=dt), n=20, steps=steps
    )
    assert res.steps == expected and nfe == expected


def test_fixed_trajectory_is_on_the_step_grid():
    sde = sdelab.VESDE()
    solver = TorchSDE(method="euler", adaptive=False)
    res, _, _, x0 = run(sde, solver, n=30, steps=8, return_trajectory=True)
    plain, *_ = run(sde, solver, n=30, steps=8)
    grid = torch.linspace(1.0, EPS, 9)
    assert res.times.shape == (9,) and torch.allclose(res.times, grid, atol=1e-6)
    assert res.trajectory.shape == (9, 30, 2)
    assert torch.equal(res.trajectory[0], x0) and torch.equal(res.trajectory[-1], res.x)
    assert torch.equal(res.x, plain.x)  # outputs on the grid: the trajectory changes nothing
    # each output is an exact Euler step from the previous one: the residual after the drift
    # is g * dW with dW ~ N(0, dt) (interpolated outputs would shrink it at some outputs)
    dt = (1.0 - EPS) / 8
    score = MIX.score(sde)
    for k in range(8):
        t = float(res.times[k])
        xk = res.trajectory[k]
        drift = sde.reverse(score).drift(xk, t)
        z = (res.trajectory[k + 1] - xk + drift * dt) / (sde.diffusion(t) * math.sqrt(dt))
        assert abs(float(z.var()) - 1.0) < 5 * math.sqrt(2 / z.numel()), (k, float(z.var()))


def test_adaptive_trajectory_outputs_are_exact_states():
    res, _, _, x0 = run(sdelab.VPSDE(), TorchSDE(), n=30, steps=5, return_trajectory=True)
    assert torch.allclose(res.times, torch.linspace(1.0, EPS, 6), atol=1e-6)
    assert res.trajectory.shape == (6, 30, 2)
    assert torch.equal(res.trajectory[0], x0) and torch.equal(res.trajectory[-1], res.x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_image_shapes_and_dtype_follow_input(dtype):
    mix4 = sdelab.GaussianMixture([[0.0, 1.0, -1.0, 0.5]], [0.5])
    sde = sdelab.VPSDE()
    shape = (16, 1, 2, 2)
    res = sdelab.sample(
        sde,
        mix4.score(sde),
        TorchSDE(adaptive=False),
        shape,
        steps=10,
        dtype=dtype,
        return_trajectory=True,
    )
    assert res.x.shape == shape and res.x.dtype == dtype
    assert res.trajectory.shape == (11, *shape) and res.times.dtype == dtype


def test_progress_bar_does_not_change_the_numerics():
    sde = sdelab.VPSDE()
    for solver in (TorchSDE(), TorchSDE(adaptive=False)):
        a = run(sde, solver, n=40, seed=1, steps=20, progress=True)[0]
        b = run(sde, solver, n=40, seed=1, steps=20)[0]
        assert torch.equal(a.x, b.x) and a.steps == b.steps


def test_adaptive_euler_raises_no_false_warning():
    # the noise is declared additive, so torchsde's "adaptive Euler with non-additive noise"
    # warning has no cause to fire; any warning here would be a real one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(sdelab.VPSDE(), TorchSDE(method="euler", rtol=1e-2, atol=1e-2), n=50, steps=50)


def test_strong_order_property_reported():
    assert TorchSDE("srk").strong_order == 1.5 and TorchSDE("euler").strong_order == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "heun"}, "method"),
        ({"method": "midpoint"}, "method"),
        ({"rtol": 0.0}, "rtol"),
        ({"atol": -1e-3}, "atol"),
        ({"rtol": float("nan")}, "rtol"),
        ({"dt": 0.0}, "dt"),
        ({"dt": -0.1}, "dt"),
        ({"dt_min": 0.0}, "dt_min"),
    ],
)
def test_bad_options_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TorchSDE(**kwargs)


def test_bad_types_and_immutability():
    with pytest.raises(TypeError, match="adaptive"):
        TorchSDE(adaptive="yes")
    with pytest.raises(TypeError, match="rtol"):
        TorchSDE(rtol="1e-3")
    s = TorchSDE()
    with pytest.raises(AttributeError):
        s.method = "euler"
    with pytest.raises(ValueError, match="steps"):
        run(sdelab.VPSDE(), s, n=4, steps=0)


def test_exported():
    assert sdelab.TorchSDE is TorchSDE
    assert sdelab.solvers.TorchSDE is TorchSDE


@settings(max_examples=12)
@given(
    method=st.sampled_from(sorted(METHODS)),
    adaptive=st.booleans(),
    steps=st.integers(1, 12),
    batch=st.integers(1, 5),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    sde=st.sampled_from(SDES),
    eps=st.floats(1e-3, 0.5),
)
def test_property_nfe_steps_shape_dtype(method, adaptive, steps, batch, dtype, sde, eps):
    raw = _RawCounter(MIX.score(sde))
    res = sdelab.sample(
        sde,
        raw,
        TorchSDE(method=method, adaptive=adaptive, rtol=1e-2, atol=1e-2),
        (batch, 1, 2),
        steps=steps,
        eps=eps,
        dtype=dtype,
        generator=torch.Generator().manual_seed(0),
    )
    assert res.x.shape == (batch, 1, 2) and res.x.dtype == dtype
    assert res.nfe == raw.calls
    if not adaptive:  # exactly `steps` steps, each costing the method's distinct stages
        assert res.steps == steps
        assert res.nfe == METHODS[method]["nfe_per_step"] * steps
    else:
        assert res.steps >= 1
