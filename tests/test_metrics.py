"""The comparison metrics on cases with known answers, and their noise floors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sdelab import GaussianMixture
from sdelab.experiments.metrics import (
    Reference,
    covariance_error,
    energy_distance,
    mean_error,
    mean_log_density,
    mode_weight_error,
    projections,
    sliced_wasserstein2,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mixture(dtype=torch.float64) -> GaussianMixture:
    return GaussianMixture(
        torch.tensor([[-4.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, -4.0, 2.0]], dtype=dtype),
        torch.tensor([[0.5, 1.0, 0.7], [1.0, 0.3, 0.5], [0.6, 0.6, 0.6]], dtype=dtype),
        torch.tensor([0.5, 0.3, 0.2], dtype=dtype),
    )


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 6),
    n=st.integers(2, 60),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_sliced_w2_of_a_shift_is_the_mean_projected_shift(d, n, seed, dtype):
    # sorting commutes with a shift, so SW2(x, x + delta)^2 = mean_p (theta_p . delta)^2 exactly
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    delta = torch.randn(d, generator=g, dtype=dtype)
    theta = projections(d, 64, seed=3, dtype=dtype)
    expected = (delta @ theta).pow(2).mean().sqrt()
    got = sliced_wasserstein2(x, x + delta, n_projections=64, seed=3)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert got.dtype == dtype
    assert torch.allclose(got, expected, rtol=tol, atol=tol)
    perm = x[torch.randperm(n, generator=g)]
    assert sliced_wasserstein2(x, perm) <= tol * (1 + x.abs().max())  # order-free
    assert energy_distance(x, x) <= tol * (1 + x.abs().max())


def test_sliced_w2_unequal_sizes_is_exact():
    # y repeated twice is the same empirical law as y, so the distance must not change
    g = _gen(0)
    x, y = torch.randn(7, 3, generator=g), torch.randn(5, 3, generator=g) + 1.0
    y2 = torch.cat([y, y])
    assert torch.allclose(sliced_wasserstein2(x, y), sliced_wasserstein2(x, y2), atol=1e-6)
    z = torch.randn(10, 3, generator=g)
    assert torch.allclose(sliced_wasserstein2(z, y2), sliced_wasserstein2(z, y), atol=1e-6)
    assert torch.allclose(sliced_wasserstein2(y, y2), torch.zeros(()), atol=1e-6)


def test_mean_and_covariance_errors_of_exact_gaussian_samples_scale_with_n():
    # for x ~ N(0, I_d): E|mean|^2 = d / n and E|S - I|_F^2 ~ (d^2 + d) / n; allow 5 of those
    d, n = 4, 4000
    x = torch.randn(n, d, generator=_gen(1), dtype=torch.float64)
    zero, eye = torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
    assert mean_error(x, zero) < 5 * math.sqrt(d / n)
    assert covariance_error(x, eye) < 5 * math.sqrt((d * d + d) / n)
    # and they see a shift / a scaling far beyond that
    assert mean_error(x + 0.5, zero) > math.sqrt(d) * 0.5 - 5 * math.sqrt(d / n)
    assert covariance_error(1.2 * x, eye) > 0.44 * math.sqrt(d) - 5 * math.sqrt((d * d + d) / n)


def test_mode_weight_error_known_cases():
    gm = _mixture()
    n = 4000
    x, k = gm.sample(n, _gen(2), return_labels=True)
    # exact sample: each mean posterior weight is off by about sqrt(w (1 - w) / n)
    bound = 0.5 * sum(5 * math.sqrt(w * (1 - w) / n) for w in gm.weights.tolist())
    assert mode_weight_error(x, gm) < bound
    # a sample from the first mode only: TV = 1 - w_0 (the modes are far apart, so the
    # posterior is one-hot up to ~1e-6)
    only0 = x[k == 0]
    assert abs(float(mode_weight_error(only0, gm)) - 0.5) < 1e-3


def test_mean_log_density_of_a_gaussian_is_minus_its_entropy():
    # N(0, s^2 I_d): E log p = -d/2 log(2 pi e s^2), Var log p = d / 2
    d, s, n = 3, 0.7, 5000
    gm = GaussianMixture(torch.zeros(1, d, dtype=torch.float64), torch.tensor([s]).double())
    x = gm.sample(n, _gen(3))
    expected = -d / 2 * math.log(2 * math.pi * math.e * s * s)
    assert abs(float(mean_log_density(x, gm)) - expected) < 5 * math.sqrt(d / 2 / n)


@pytest.mark.parametrize("with_mixture", [True, False])
def test_same_distribution_sits_at_the_floor_and_a_shift_does_not(with_mixture):
    """The floor is the spread of each metric over independent exact samples; another exact
    sample lands inside floor + 5 sd, a sample shifted by 1.5 in every coordinate (2-5 component stds) lands beyond it."""
    gm = _mixture()
    n, draws = 1000, 12
    g = _gen(4)
    ref = Reference(gm.sample(n, g), gm if with_mixture else None, n_projections=64)
    floors = [ref.evaluate(gm.sample(n, g)) for _ in range(draws)]
    same = ref.evaluate(gm.sample(n, g))
    shifted = ref.evaluate(gm.sample(n, g) + torch.full((3,), 1.5, dtype=torch.float64))
    assert set(same) == set(ref.metric_names)
    assert ("mode_tv" in same) == with_mixture
    for m in ("sw2", "energy", "mean_err"):
        vals = torch.tensor([abs(f[m]) for f in floors])
        hi = float(vals.mean() + 5 * vals.std())
        assert abs(same[m]) < hi, (m, same[m], hi)
        assert abs(shifted[m]) > hi, (m, shifted[m], hi)


def test_reference_reports_none_for_a_non_finite_sample():
    gm = _mixture()
    ref = Reference(gm.sample(50, _gen(5)), gm)
    x = gm.sample(50, _gen(6))
    x[3, 1] = float("nan")
    out = ref.evaluate(x)
    assert out == dict.fromkeys(ref.metric_names)


def test_metrics_reject_mismatched_dimensions():
    with pytest.raises(ValueError, match="same number of entries"):
        sliced_wasserstein2(torch.zeros(4, 2), torch.zeros(4, 3))
