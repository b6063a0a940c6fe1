"""Time grids and the log-SNR: closed forms, exact inverses, the grids' defining properties."""

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import discrete_vp_sdes, dtypes, linear_sdes, sdes_with_log_snr, times

import sdelab
from sdelab.schedules import SCHEDULES


@given(sde=sdes_with_log_snr(), t=times)
def test_log_snr_is_log_of_mean_over_std(sde, t):
    """The closed form equals its definition lambda = log(m / sigma)."""
    direct = math.log(sde.mean_coeff(t)) - math.log(sde.std(t))
    assert sde.log_snr(t) == pytest.approx(direct, rel=1e-10, abs=1e-10)


@given(sde=sdes_with_log_snr(), t=times, dtype=dtypes)
def test_t_from_log_snr_inverts_log_snr(sde, t, dtype):
    """t -> lambda -> t, in Python floats and in tensors of either precision. The tolerance is
    the float's rounding of lambda carried through dt/dlambda = 1 / lambda'(t)."""
    lam = sde.log_snr(t)
    assert sde.t_from_log_snr(lam) == pytest.approx(t, rel=1e-9, abs=1e-12)
    tt = torch.tensor([t, 0.5 * t, 1.0], dtype=dtype)
    back = sde.t_from_log_snr(sde.log_snr(tt))
    assert back.dtype == dtype and back.shape == tt.shape
    ulp = torch.finfo(dtype).eps
    h = 1e-6
    # |dt/dlambda| by a central difference in float64
    slope = torch.tensor(
        [
            2 * h / abs(sde.log_snr(max(s - h, 1e-9)) - sde.log_snr(min(s + h, 1.0)))
            for s in tt.double().tolist()
        ],
        dtype=torch.float64,
    )
    lam64 = sde.log_snr(tt.double())
    tol = 8 * ulp * (lam64.abs() + 1) * slope + 8 * ulp * tt.double()
    assert ((back.double() - tt.double()).abs() <= tol).all(), (back, tt, tol)


@given(sde=sdes_with_log_snr(), lam=st.floats(-5.0, 10.0))
def test_log_snr_inverts_t_from_log_snr(sde, lam):
    t = sde.t_from_log_snr(lam)
    if 1e-6 < t <= 1.0:  # lam inside the SDE's range
        assert sde.log_snr(t) == pytest.approx(lam, rel=1e-9, abs=1e-9)


@given(sde=sdes_with_log_snr(), t1=times, t2=times)
def test_log_snr_decreases(sde, t1, t2):
    lo, hi = sorted((t1, t2))
    assert sde.log_snr(lo) >= sde.log_snr(hi)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@given(sde=sdes_with_log_snr(), steps=st.integers(1, 60), eps=st.floats(1e-4, 0.1))
def test_grids_decrease_from_T_to_eps(name, sde, steps, eps):
    ts = sdelab.time_grid(sde, steps, name, eps)
    assert len(ts) == steps + 1 and ts[0] == sde.T and ts[-1] == eps
    assert all(a > b for a, b in itertools.pairwise(ts))
    assert all(type(t) is float for t in ts)


@given(sde=sdes_with_log_snr(), steps=st.integers(2, 40))
def test_logsnr_grid_has_equal_steps_in_lambda(sde, steps):
    eps = 1e-3
    lam = [sde.log_snr(t) for t in sdelab.time_grid(sde, steps, "logsnr", eps)]
    h = (lam[-1] - lam[0]) / steps
    assert [b - a for a, b in itertools.pairwise(lam)] == pytest.approx(
        [h] * steps, rel=1e-7, abs=1e-9
    )


@given(sde=sdes_with_log_snr(), steps=st.integers(2, 40), rho=st.floats(1.0, 10.0))
def test_karras_grid_has_equal_steps_in_nsr_to_the_one_over_rho(sde, steps, rho):
    u = [
        math.exp(-sde.log_snr(t) / rho)
        for t in sdelab.time_grid(sde, steps, sdelab.Karras(rho), 1e-3)
    ]
    h = (u[-1] - u[0]) / steps
    assert [b - a for a, b in itertools.pairwise(u)] == pytest.approx(
        [h] * steps, rel=1e-6, abs=1e-9 * max(map(abs, u))
    )


@given(sde=linear_sdes(), steps=st.integers(2, 40))
def test_quadratic_grid_has_equal_steps_in_sqrt_t(sde, steps):
    r = [math.sqrt(t) for t in sdelab.time_grid(sde, steps, "quadratic", 1e-3)]
    h = (r[-1] - r[0]) / steps
    assert [b - a for a, b in itertools.pairwise(r)] == pytest.approx([h] * steps, rel=1e-9)


def test_uniform_grid_is_todays_grid():
    sde = sdelab.VPSDE()
    T, eps, n = 1.0, 1e-3, 7
    dt = (T - eps) / n
    assert sdelab.time_grid(sde, n, eps=eps) == [T - i * dt for i in range(n)] + [eps]
    assert sdelab.time_grid(sde, n, eps=eps) == sdelab.time_grid(sde, n, sdelab.UniformTime(), eps)


def test_times_schedule_runs_exactly_its_times():
    sde = sdelab.VESDE()
    seen = []

    def score(x, t):
        seen.append(t)
        return -x / (sde.std(t) ** 2 + 1.0)

    ts = [1.0, 0.6, 0.3, 0.01]
    res = sdelab.sample(
        sde, score, sdelab.EulerMaruyama(), (4, 2), schedule=sdelab.Times(ts), eps=0.01
    )
    assert seen == ts[:-1] and res.steps == 3 and res.nfe == 3
    tt = sdelab.Times(torch.tensor(ts, dtype=torch.float64))
    assert sdelab.time_grid(sde, schedule=tt, eps=0.01) == ts


def test_a_schedule_changes_where_the_score_is_called():
    sde = sdelab.VPSDE()
    seen = []

    def score(x, t):
        seen.append(t)
        return -x

    sdelab.sample(sde, score, sdelab.EulerMaruyama(), (2, 2), steps=5, schedule="logsnr")
    assert seen == sdelab.time_grid(sde, 5, "logsnr")[:-1]


@given(sde=discrete_vp_sdes())
def test_discrete_vp_accepts_eps_zero(sde):
    ts = sdelab.time_grid(sde, 4, "logsnr", eps=0.0)
    assert ts[-1] == 0.0 and ts[0] == 1.0
    assert sde.log_snr(0.0) == pytest.approx(
        0.5 * math.log(sde.alphas_cumprod[0].item() / (1 - sde.alphas_cumprod[0].item()))
    )


class _NoInverse(sdelab.LinearSDE):
    """A linear SDE without a closed-form t(lambda)."""

    prior_std = 1.0

    def drift_coeff(self, t):
        return 0.0 * t

    def diffusion(self, t):
        return 1.0 + 0.0 * t

    def mean_coeff(self, t):
        return 1.0 + 0.0 * t

    def std(self, t):
        return t**0.5


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 5, "cosine"),
            ValueError,
            "schedule must be one of.*'cosine'",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 5, sdelab.Karras),
            TypeError,
            "did you mean Karras()",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 5, 3),
            TypeError,
            "schedule must be a name or a Schedule",
        ),
        (lambda: sdelab.Karras(rho=-1.0), ValueError, "rho must be a finite number > 0, got -1.0"),
        (
            lambda: sdelab.Times([1.0, 0.5, 0.5, 0.1]),
            ValueError,
            r"strictly decreasing, got ts\[1\]=0.5 <= ts\[2\]=0.5",
        ),
        (lambda: sdelab.Times([1.0]), ValueError, "at least 2 times"),
        (lambda: sdelab.Times([1.0, float("nan")]), ValueError, "ts must be finite"),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), schedule=sdelab.Times([0.9, 0.001])),
            ValueError,
            r"must start at T = 1.0, got ts\[0\]=0.9",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), schedule=sdelab.Times([1.0, 0.01]), eps=1e-3),
            ValueError,
            r"must end at the sampler's eps = 0.001, got ts\[-1\]=0.01",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 3, sdelab.Times([1.0, 0.5, 1e-3])),
            ValueError,
            "steps=3 does not match the 2 steps",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 0),
            ValueError,
            "steps must be an integer >= 1, got 0",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 5, eps=0.0),
            ValueError,
            "eps must be a finite number > 0, got 0.0",
        ),
        (
            lambda: sdelab.time_grid(sdelab.VPSDE(), 5, eps=1.0),
            ValueError,
            r"eps must lie in \(0, T\)",
        ),
        (
            lambda: sdelab.time_grid(_NoInverse(), 5, "logsnr"),
            TypeError,
            "needs an SDE with a closed-form log-SNR.*got _NoInverse",
        ),
        (lambda: sdelab.time_grid(_NoInverse(), 5, "karras"), TypeError, "closed-form log-SNR"),
        (
            lambda: sdelab.sample(
                sdelab.VPSDE(),
                lambda x, t: -x,
                sdelab.ProbabilityFlowODE(),
                (2, 2),
                schedule="karras",
            ),
            ValueError,
            "applies to fixed-grid solvers",
        ),
        (lambda: sdelab.DiscreteVPSDE([0.9, 0.95]), ValueError, "strictly decreasing"),
        (lambda: sdelab.DiscreteVPSDE([0.9, 0.0]), ValueError, r"must lie in \(0, 1\)"),
        (lambda: sdelab.DiscreteVPSDE([0.9]), ValueError, "at least 2 entries"),
        (
            lambda: sdelab.DiscreteVPSDE.from_diffusers({"beta_schedule": "cosine"}),
            ValueError,
            "beta_schedule must be one of",
        ),
        (
            lambda: sdelab.DiscreteVPSDE.from_diffusers({"rescale_betas_zero_snr": True}),
            ValueError,
            "rescale_betas_zero_snr",
        ),
        (lambda: sdelab.DiscreteVPSDE.from_diffusers(42), TypeError, "diffusers scheduler config"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
