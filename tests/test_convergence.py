"""Measured convergence orders against known pathwise solutions (sdelab._convergence).

Each slope is the least-squares fit of log(error) against log(h) over h = 2^-k; it must lie
within 0.1 of the declared order. Euler-Maruyama runs through `sdelab.sde.simulate` (which
shares `euler_maruyama_step` with the reverse EM predictor); references are exact:

* GBM: x_T = x0 exp((mu - sigma^2/2) T + sigma W_T), W_T the sum of the shared increments.
* OU: the exact transition over each fine step, drawn from the joint Gaussian of the Brownian
  increment and the stochastic integral int e^{-theta(h-u)} dW_u; EM at every level sums the
  same fine increments, so the reference has no discretisation error at all.
* TorchSDE: a fine srk solution (h = 2^-10, error ~ h^1.5, over 100x below the finest level's)
  on one shared torchsde.BrownianInterval.

Weak errors are estimated on the same paths as the exact solution (mean of X^h - X), whose
Monte-Carlo error is the strong error / sqrt(paths); we check it is below a fifth of the
weak error at every level, so the fitted slope measures discretisation, not noise.
"""

from __future__ import annotations

import pytest

from sdelab._convergence import em_orders, fit_order, torchsde_strong_order
from sdelab.solvers.torchsde import METHODS

TOL = 0.1


def test_fit_order_recovers_a_power_law():
    dts = [2.0**-k for k in range(3, 8)]
    assert fit_order(dts, [3.0 * h**1.5 for h in dts]) == pytest.approx(1.5, abs=1e-12)


def test_em_strong_order_half_on_gbm():
    # sigma large against mu: the sqrt(h) term (prop. to sigma^2) dominates the h terms
    r = em_orders("gbm", mu=0.5, sigma=1.0, paths=20_000)
    assert abs(r.strong_order - 0.5) < TOL, r


def test_em_weak_order_one_on_gbm():
    # mu large against sigma: the weak error x0 e^mu mu^2 h / 2 dominates the MC noise
    r = em_orders("gbm", mu=1.0, sigma=0.5, paths=20_000)
    assert all(n < e / 5 for n, e in zip(r.weak_noise, r.weak_errors, strict=True)), r
    assert abs(r.weak_order - 1.0) < TOL, r


def test_em_strong_and_weak_order_one_on_ou():
    r = em_orders("ou", theta=1.0, sigma=1.0, paths=20_000)
    assert abs(r.strong_order - 1.0) < TOL, r
    assert all(n < e / 5 for n, e in zip(r.weak_noise, r.weak_errors, strict=True)), r
    assert abs(r.weak_order - 1.0) < TOL, r


@pytest.mark.parametrize("method", ["euler", "srk"])
def test_torchsde_strong_order_matches_its_method(method):
    r = torchsde_strong_order(method)
    assert abs(r.strong_order - METHODS[method]["strong_order"]) < TOL, r
