"""The shared ODE machinery (sdelab._ode) and the ProbabilityFlowODE solver."""

import dataclasses
import math

import pytest
import torch

import sdelab
from sdelab import VESDE, VPSDE, GaussianMixture, ProbabilityFlowODE, SubVPSDE
from sdelab._ode import odeint
from sdelab.solvers import AdaptiveSolver, CountingScore

F64 = torch.float64
SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


# --------------------------------------------------------------------------------------------
# odeint on ODEs with known solutions
# --------------------------------------------------------------------------------------------
class Linear:
    """dy/dt = lam * y (one rate per sample), counting calls and refusing t outside the span."""

    def __init__(self, lam, lo, hi):
        self.lam, self.lo, self.hi, self.calls = lam, lo, hi, 0

    def __call__(self, t, y):
        assert isinstance(t, float) and self.lo <= t <= self.hi, t
        self.calls += 1
        return self.lam * y


@pytest.mark.parametrize("backend", ["scipy", "torch"])
@pytest.mark.parametrize(("t0", "t1"), [(0.0, 2.0), (2.0, 0.3)])
def test_odeint_solves_a_linear_ode(backend, t0, t1):
    lam = torch.tensor([[-1.0], [-3.0], [0.5]], dtype=F64)
    y0 = torch.ones(3, 2, dtype=F64)
    f = Linear(lam, min(t0, t1), max(t0, t1))
    sol = odeint(f, y0, t0, t1, backend=backend, rtol=1e-9, atol=1e-12, return_trajectory=True)
    exact = torch.exp(lam * (t1 - t0)) * y0
    torch.testing.assert_close(sol.y, exact, rtol=1e-7, atol=1e-9)
    assert sol.nfev == f.calls  # counted, not computed
    assert sol.times[0] == t0 and sol.times[-1] == t1 and len(sol.times) == sol.steps + 1
    ts = torch.tensor(sol.times, dtype=F64)
    steps = ts.diff() * math.copysign(1.0, t1 - t0)
    assert (steps > 0).all()
    traj_exact = torch.exp(lam[None] * (ts - t0)[:, None, None]) * y0
    torch.testing.assert_close(sol.trajectory, traj_exact, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", ["RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA"])
def test_every_scipy_method_stays_inside_the_span(method):
    lam = torch.tensor([[-2.0], [1.0]], dtype=F64)
    f = Linear(lam, 1e-3, 1.0)
    sol = odeint(f, torch.ones(2, 1, dtype=F64), 1.0, 1e-3, method=method, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(sol.y, torch.exp(lam * (1e-3 - 1.0)), rtol=1e-4, atol=1e-6)


def test_torch_dopri5_takes_scipys_rk45_steps():
    # with scipy's error norm ("batch") the own Dormand-Prince reproduces RK45 step by step
    g = torch.Generator().manual_seed(0)
    lam = -3 * torch.rand(6, 3, generator=g, dtype=F64)
    y0 = torch.randn(6, 3, generator=g, dtype=F64)

    def f(t, y):
        return lam * y + math.sin(5 * t) * y.roll(1, 1)

    out = {
        b: odeint(f, y0, 0.0, 1.0, backend=b, error_norm="batch", return_trajectory=True)
        for b in ("scipy", "torch")
    }
    assert out["scipy"].nfev == out["torch"].nfev and out["scipy"].steps == out["torch"].steps
    torch.testing.assert_close(
        torch.tensor(out["scipy"].times), torch.tensor(out["torch"].times), rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(out["scipy"].y, out["torch"].y, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_per_sample_error_norm_holds_every_sample_to_the_tolerance(backend):
    # one fast-decaying sample among 63 constant ones: scipy's RMS over the batch dilutes its
    # error by sqrt(64); the per-sample norm solves it as accurately as alone
    lam = torch.zeros(64, 1, dtype=F64)
    lam[0] = -8.0
    y0 = torch.ones(64, 1, dtype=F64)
    exact = math.exp(-8.0)
    kw = dict(backend=backend, rtol=1e-4, atol=1e-4)
    alone = odeint(lambda t, y: lam[:1] * y, y0[:1], 0.0, 1.0, error_norm="batch", **kw)
    err_alone = abs(alone.y[0, 0].item() - exact)
    err = {
        n: abs(
            odeint(lambda t, y: lam * y, y0, 0.0, 1.0, error_norm=n, **kw).y[0, 0].item() - exact
        )
        for n in ("sample", "batch")
    }
    assert err["sample"] <= 1.5 * err_alone
    assert err["batch"] > 3 * err["sample"]


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_odeint_float32_input_is_integrated_in_the_state_dtype(backend):
    y0 = torch.ones(2, 2)
    seen = []

    def f(t, y):
        seen.append(y.dtype)
        return -y

    sol = odeint(f, y0, 0.0, 1.0, backend=backend, ode_dtype=F64, rtol=1e-9, atol=1e-9)
    assert set(seen) == {torch.float32} and sol.y.dtype == torch.float32
    torch.testing.assert_close(sol.y, torch.full((2, 2), math.exp(-1.0)))


def test_odeint_bad_input():
    f = Linear(torch.ones(1, 1), 0.0, 1.0)
    y = torch.ones(1, 1)
    with pytest.raises(ValueError, match="t0 != t1"):
        odeint(f, y, 0.5, 0.5)
    with pytest.raises(ValueError, match="backend"):
        odeint(f, y, 0.0, 1.0, backend="numpy")
    with pytest.raises(ValueError, match="method"):
        odeint(f, y, 0.0, 1.0, method="Euler")
    with pytest.raises(ValueError, match="rtol"):
        odeint(f, y, 0.0, 1.0, rtol=0.0)
    with pytest.raises(ValueError, match="shape"):
        odeint(lambda t, y: y[:, :0], y, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="scipy RK45 failed"):  # finite-time blow-up
        odeint(lambda t, y: y**2 * 1e3, y, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# ProbabilityFlowODE
# --------------------------------------------------------------------------------------------
def mixture(d: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(100 + d)
    means = 2.0 * torch.randn(3, d, generator=g, dtype=F64)
    stds = 0.2 + 0.5 * torch.rand(3, d, generator=g, dtype=F64)
    return GaussianMixture(means, stds, torch.tensor([0.5, 0.3, 0.2], dtype=F64))


def sliced_w2(a, b, n_dirs=64):
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(a.shape[1], n_dirs, generator=g, dtype=a.dtype)
    dirs /= dirs.norm(dim=0)
    pa, pb = (a @ dirs).sort(0).values, (b @ dirs).sort(0).values
    return (pa - pb).pow(2).mean().sqrt()


def assert_samples_match(x, target, g):
    """Mean, covariance, mode weights and a sliced Wasserstein distance of samples ``x``
    against the mixture ``target``, with tolerances from the sample size."""
    n = x.shape[0]
    # mean: a mean of n draws is off by ~sd/sqrt(n); 5 of those + 1e-3 for the integrator
    sd = x.std(0)
    assert ((x.mean(0) - target.mean()).abs() < 5 * sd / math.sqrt(n) + 1e-3).all()
    # covariance entries: standard errors from the sample's own products
    c = x - x.mean(0)
    prods = c[:, :, None] * c[:, None, :]
    se = prods.std(0) / math.sqrt(n)
    assert ((prods.mean(0) - target.covariance()).abs() < 5 * se + 1e-3).all()
    # mode weights
    w_hat = target.component_posterior(x).mean(0)
    w = target.weights
    assert ((w_hat - w).abs() < 5 * (w * (1 - w) / n).sqrt()).all()
    # distance to fresh true samples vs the noise floor between two true samples
    ref = [target.sample(n, generator=g) for _ in range(3)]
    floor = torch.stack([sliced_w2(ref[i], ref[(i + 1) % 3]) for i in range(3)]).mean()
    assert sliced_w2(x, ref[0]) < 3 * floor


@pytest.mark.parametrize(
    ("name", "d", "n"), [("vp", 2, 2000), ("subvp", 2, 2000), ("ve", 2, 2000), ("vp", 8, 1000)]
)
def test_sample_with_probability_flow_matches_the_mixture(name, d, n):
    # through sdelab.sample: prior draw, ODE from T to eps. The prior N(0, I) / N(0, 50^2 I)
    # differs from p_T by KL ~ m(T)^2 |mu|^2 / 2 (VP, ~1e-4) or |mu|^2 / (2 * 50^2) (VE,
    # ~1e-3): far below what n samples resolve
    sde, mix, eps = SDES[name](), mixture(d), 1e-3
    g = torch.Generator().manual_seed(1)
    calls = []

    def counted(x, t):
        calls.append(t)
        return mix.score(sde)(x, t)

    res = sdelab.sample(sde, counted, ProbabilityFlowODE(), (n, d), eps=eps, generator=g, dtype=F64)
    assert res.nfe == len(calls)  # NFE from actual calls
    # RK45 costs 6 evaluations per (accepted or rejected) step plus 2 to start
    assert res.nfe >= 6 * res.steps + 2 and (res.nfe - 2) % 6 == 0
    assert_samples_match(res.x, mix.at(sde, eps), g)


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_probability_flow_from_the_exact_prior_isolates_solver_error(backend):
    # start from the exact p_T: the only errors left are the integrator's
    sde, mix, eps, n = VESDE(), mixture(4), 1e-3, 1500
    g = torch.Generator().manual_seed(5)
    z = mix.at(sde, sde.T).sample(n, generator=g)
    res = ProbabilityFlowODE(backend=backend).solve(
        sde, CountingScore(mix.score(sde)), z, sde.T, eps, steps=None, generator=None,
        progress=False, return_trajectory=False,
    )  # fmt: skip
    assert_samples_match(res.x, mix.at(sde, eps), g)


def test_probability_flow_is_deterministic_and_ignores_steps():
    sde, mix = VPSDE(), mixture(2)

    def run(seed, steps=None, trajectory=False):
        return sdelab.sample(
            sde, mix.score(sde), ProbabilityFlowODE(), (64, 2), steps=steps, eps=1e-3,
            generator=torch.Generator().manual_seed(seed), dtype=F64,
            return_trajectory=trajectory,
        )  # fmt: skip

    a, b, c = run(2), run(2, steps=7, trajectory=True), run(3)
    assert torch.equal(a.x, b.x) and a.steps == b.steps and a.nfe == b.nfe
    assert not torch.equal(a.x, c.x)  # the generator seeds the prior draw
    # trajectory: the integrator's accepted times, T down to eps
    assert b.times[0] == sde.T and b.times[-1] == pytest.approx(1e-3)
    assert (b.times.diff() < 0).all() and b.trajectory.shape == (a.steps + 1, 64, 2)
    assert torch.equal(b.trajectory[-1], b.x)
    z = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(2), dtype=F64)
    assert torch.equal(b.trajectory[0], z)


@pytest.mark.filterwarnings("error")  # tqdm warns when the bar overshoots its total
def test_progress_bar_and_span(capsys):
    sde, mix = VESDE(), mixture(2)
    seen = []

    def score(x, t):
        seen.append(t)
        return mix.score(sde)(x, t)

    sdelab.sample(sde, score, ProbabilityFlowODE(backend="torch"), (8, 2), dtype=F64, progress=True)
    assert "probability-flow ODE" in capsys.readouterr().err
    assert all(1e-3 <= t <= sde.T for t in seen)


@pytest.mark.parametrize("method", ["DOP853", "RK23"])
def test_probability_flow_backends_and_methods_agree(method):
    sde, mix = VESDE(), mixture(3)
    z = mix.at(sde, sde.T).sample(128, generator=torch.Generator().manual_seed(3))
    out = []
    for solver in (ProbabilityFlowODE(method=method), ProbabilityFlowODE(backend="torch")):
        out.append(
            solver.solve(
                sde, CountingScore(mix.score(sde)), z, sde.T, 1e-3, steps=None, generator=None,
                progress=False, return_trajectory=False,
            ).x
        )  # fmt: skip
    assert (out[0] - out[1]).abs().max() < 2e-3


def test_probability_flow_float32_stays_float32():
    sde, mix = SubVPSDE(), mixture(2).to(dtype=torch.float32)
    z = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(4))
    for backend in ("scipy", "torch"):
        r = ProbabilityFlowODE(backend=backend).solve(
            sde, CountingScore(mix.score(sde)), z, sde.T, 1e-3, steps=None, generator=None,
            progress=False, return_trajectory=False,
        )  # fmt: skip
        assert r.x.dtype == torch.float32 and torch.isfinite(r.x).all()


def test_probability_flow_solver_is_a_frozen_value():
    s = ProbabilityFlowODE()
    assert isinstance(s, AdaptiveSolver) and s.stochastic is False
    assert (s.method, s.rtol, s.atol) == ("RK45", 1e-5, 1e-5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rtol = 1e-3
    assert ProbabilityFlowODE() == ProbabilityFlowODE() and hash(s)
    assert "ProbabilityFlowODE" in sdelab.__all__ and "ProbabilityFlowODE" in sdelab.solvers.__all__


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"rtol": 0.0}, ValueError, "rtol"),
        ({"atol": -1.0}, ValueError, "atol"),
        ({"rtol": "1e-5"}, TypeError, "rtol"),
        ({"method": "Euler"}, ValueError, "method"),
        ({"backend": "torch", "method": "LSODA"}, ValueError, "method"),
        ({"backend": "gpu"}, ValueError, "backend"),
        ({"error_norm": "l1"}, ValueError, "error_norm"),
        ({"ode_dtype": torch.float32}, ValueError, "ode_dtype"),
        ({"backend": "torch", "ode_dtype": torch.int32}, TypeError, "ode_dtype"),
    ],
)
def test_probability_flow_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ProbabilityFlowODE(**kwargs)


def test_probability_flow_refuses_a_reverse_sde_and_a_bad_score():
    sde, mix = VPSDE(), mixture(2)
    z = torch.zeros(4, 2, dtype=F64)
    kw = dict(steps=None, generator=None, progress=False, return_trajectory=False)
    with pytest.raises(
        TypeError, match="sde must be the forward SDE .* got the stochastic reverse-time SDE"
    ):
        ProbabilityFlowODE().solve(
            sde.reverse(mix.score(sde)), CountingScore(mix.score(sde)), z, 1.0, 1e-3, **kw
        )
    with pytest.raises(ValueError, match="shaped like x"):
        ProbabilityFlowODE().solve(sde, CountingScore(lambda x, t: x[:, :1]), z, 1.0, 1e-3, **kw)


@pytest.mark.parametrize("probability_flow", [False, True])
def test_reverse_process_passed_as_sde_is_rejected(probability_flow):
    """The ODE solvers (and every sampler) take the forward SDE, never its reversal."""
    sde = sdelab.VPSDE()
    score = sdelab.GaussianMixture([[0.0, 0.0]], [1.0]).score(sde)
    rev = sde.reverse(score, probability_flow=probability_flow)
    kind = "probability-flow ODE" if probability_flow else "stochastic reverse-time SDE"
    with pytest.raises(TypeError, match=f"sde must be the forward SDE .* got the {kind}"):
        sdelab.sample(rev, score, sdelab.ProbabilityFlowODE(), (4, 2))
    with pytest.raises(TypeError, match=f"sde must be the forward SDE .* got the {kind}"):
        sdelab.encode(rev, score, torch.zeros(4, 2))
