"""Conditional generation inside the sampling loop: the known part equals the observation, the
methods are exact where the theory says so (the exact conditional score through the same
loop), imputation's bias is visible where the paper's method is biased, RePaint's schedule is
diffusers', every fixed-grid solver runs with every method, and bad input fails."""

import inspect
import itertools
import math

import pytest
import torch

import sdelab
from sdelab.conditioning import repaint_path
from sdelab.conditioning.repaint import forward_jump
from sdelab.experiments.metrics import energy_distance
from sdelab.solvers.grid import GridSolver

Z = 5.0  # standard errors allowed

# 3-D, two well separated modes whose third coordinate depends on the mode: seeing the first
# two coordinates decides the mode, so the posterior of the third is (nearly) one component
MIX3 = sdelab.GaussianMixture(
    [[-1.5, 0.0, -2.0], [1.5, 0.5, 2.0], [0.0, -1.0, 0.0]],
    [[0.6, 0.5, 0.4], [0.5, 0.6, 0.5], [0.7, 0.4, 0.6]],
    [0.3, 0.5, 0.2],
)
MASK3 = torch.tensor([True, True, False])
Y3 = torch.tensor([0.3, -0.2, 0.0])  # between the modes: a posterior with two modes


def posterior(mix: sdelab.GaussianMixture, mask: torch.Tensor, y: torch.Tensor):
    """The exact posterior of the unobserved coordinates of a diagonal mixture given the
    observed ones: the same components restricted to them, reweighted by
    w_k N(y_obs; mu_k,obs, diag s_k,obs^2)."""
    obs = mix.means[:, mask], mix.stds[:, mask]
    logw = mix.weights.log() + torch.distributions.Normal(*obs).log_prob(y[mask]).sum(-1)
    return sdelab.GaussianMixture(mix.means[:, ~mask], mix.stds[:, ~mask], logw.softmax(0))


def factorised_score(post, sde, mask, y):
    """The exact score of the conditional forward process: x_obs ~ N(m y, sigma^2) independent
    of x_unobs, which follows the posterior perturbed by the SDE."""

    def score(x, t):
        m, s = sde.marginal_coeffs(t)
        out = torch.empty_like(x)
        out[:, mask] = -(x[:, mask] - m * y[mask]) / s**2
        out[:, ~mask] = post.marginal_score(sde, x[:, ~mask], t)
        return out

    return score


def class_log_prob(mix, sde, k):
    """log p_t(k | x) of the component labels under the perturbed mixture."""
    comp = sdelab.GaussianMixture(mix.means[k : k + 1], mix.stds[k : k + 1])

    def log_prob(x, t):
        joint = comp.marginal_log_prob(sde, x, t) + mix.weights[k].log().to(x)
        return joint - mix.marginal_log_prob(sde, x, t)

    return log_prob


def floor(exact_sampler, n, reps=6):
    """Mean and sd of the energy distance between independent exact samples of size n."""
    g = torch.Generator().manual_seed(99)
    v = torch.stack(
        [energy_distance(exact_sampler(n, g), exact_sampler(n, g)) for _ in range(reps)]
    )
    return float(v.mean()), float(v.std())


def assert_matches(x, truth_sampler, mix, n_ref=40000):
    """Mean (per coordinate) and mode weights within Z standard errors of the truth, and the
    energy distance inside the noise floor band."""
    ref = truth_sampler(n_ref, torch.Generator().manual_seed(7))
    n = x.shape[0]
    se_mean = ref.std(0) / n**0.5
    assert ((x.mean(0) - ref.mean(0)).abs() < Z * se_mean).all(), (x.mean(0), ref.mean(0))
    r_ref, r_x = mix.component_posterior(ref), mix.component_posterior(x)
    assert ((r_x.mean(0) - r_ref.mean(0)).abs() < Z * r_ref.std(0) / n**0.5 + 1e-3).all()
    mean, sd = floor(truth_sampler, n)
    ed = float(energy_distance(x, ref[:n]))
    assert ed < mean + Z * sd, (ed, mean, sd)
    return ed, mean


def run(sde, score, solver, n, steps, condition, seed=0, **kw):
    return sdelab.sample(
        sde,
        score,
        solver,
        (n, *condition_shape(condition)),
        steps=steps,
        condition=condition,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def condition_shape(condition):
    return (3,)


# --- the known part equals the observation ---------------------------------------------------


@pytest.mark.parametrize("denoise", [False, True])
@pytest.mark.parametrize("method", ["imputation", "repaint"])
def test_known_coordinates_equal_the_observation_exactly(method, denoise):
    sde = sdelab.VPSDE()
    cond = sdelab.Inpaint(Y3, MASK3, method=method, jump_length=3, jump_n_sample=2)
    x = run(sde, MIX3.score(sde), sdelab.EulerMaruyama(), 64, 20, cond, denoise=denoise).x
    assert torch.equal(x[:, MASK3], Y3[MASK3].expand(64, 2))
    # per-sample masks and observations, float64
    g = torch.Generator().manual_seed(3)
    mask, y = torch.rand(16, 3, generator=g) < 0.5, torch.randn(16, 3, generator=g).double()
    x = sdelab.sample(
        sde,
        MIX3.score(sde),
        sdelab.DPMSolver(),
        (16, 3),
        steps=10,
        dtype=torch.float64,
        condition=sdelab.Inpaint(y, mask.int(), method=method, jump_length=2, jump_n_sample=2),
    ).x
    assert torch.equal(x[mask], y[mask]) and x.dtype == torch.float64


def test_linear_observation_holds_at_the_end_and_colorization_matches_the_grey_image():
    sde = sdelab.VESDE(sigma_max=10.0)
    g = torch.Generator().manual_seed(1)
    A = torch.randn(2, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0.4, -1.0], dtype=torch.float64)
    x = sdelab.sample(
        sde,
        MIX3.score(sde),
        sdelab.EulerMaruyama(),
        (32, 3),
        steps=30,
        dtype=torch.float64,
        condition=sdelab.LinearObservation(A, y),
        generator=g,
    ).x
    assert torch.allclose(x @ A.T, y.expand(32, 2), atol=1e-12)
    # colorization: samples of shape (3, 2, 2) whose channel mean is the grey image
    img_mix = sdelab.GaussianMixture(torch.randn(2, 12, generator=g), [0.5, 0.7])
    grey = torch.randn(2, 2, generator=g)
    cond = sdelab.LinearObservation.grayscale(grey, channels=3)
    assert cond.A.shape == (4, 12) and torch.allclose(cond.A.sum(1), torch.ones(4))
    x = sdelab.sample(
        sde,
        lambda x, t: img_mix.score(sde)(x, t),
        sdelab.DDIM(),
        (8, 3, 2, 2),
        steps=15,
        condition=cond,
        generator=g,
    ).x
    assert x.shape == (8, 3, 2, 2)
    assert torch.allclose(x.mean(1), grey.expand(8, 2, 2), atol=1e-5)


# --- exactness with the exact conditional score -----------------------------------------------


@pytest.mark.parametrize(
    "solver, method, steps",
    [
        (sdelab.EulerMaruyama(), "imputation", 400),
        (sdelab.DPMSolver(), "imputation", 40),
        (sdelab.DPMSolver(), "repaint", 40),
    ],
    ids=["EM-imputation", "DPM-imputation", "DPM-repaint"],
)
def test_with_the_exact_conditional_score_the_samples_are_the_exact_posterior(
    solver, method, steps
):
    sde = sdelab.VPSDE()
    post = posterior(MIX3, MASK3, Y3)
    cond = sdelab.Inpaint(Y3, MASK3, method=method, jump_length=5, jump_n_sample=3)
    score = factorised_score(post, sde, MASK3, Y3)
    x = run(sde, score, solver, 3000, steps, cond, seed=11, dtype=torch.float64).x
    assert_matches(x[:, ~MASK3], post.sample, post)


def test_linear_imputation_with_the_exact_score_is_exact_in_the_rotated_basis():
    """u = R x has a diagonal mixture law; observing A x = (R x)_{obs} is inpainting in u, and
    the exact score in x is R^T s_u(R x)."""
    sde = sdelab.VPSDE()
    R = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(4)).double())[0]
    post = posterior(MIX3, MASK3, Y3)
    su = factorised_score(post, sde, MASK3, Y3.double())
    cond = sdelab.LinearObservation(R[MASK3], Y3[MASK3])
    x = run(
        sde,
        lambda x, t: su(x @ R.T, t) @ R,
        sdelab.DPMSolver(),
        3000,
        40,
        cond,
        seed=12,
        dtype=torch.float64,
    ).x
    assert_matches((x @ R.T)[:, ~MASK3], post.sample, post)


def test_class_guidance_with_the_exact_classifier_samples_the_class():
    sde = sdelab.VPSDE()
    k = 2
    comp = sdelab.GaussianMixture(MIX3.means[k : k + 1], MIX3.stds[k : k + 1])
    cond = sdelab.ClassGuidance(class_log_prob(MIX3, sde, k), scale=1.0)
    x = run(
        sde, MIX3.score(sde), sdelab.EulerMaruyama(), 3000, 400, cond, seed=13, dtype=torch.float64
    ).x
    assert_matches(x, comp.sample, MIX3)
    # an adaptive solver honours guidance (it is a score)
    x = run(sde, MIX3.score(sde), sdelab.ProbabilityFlowODE(), 200, None, cond, seed=14).x
    assert (x.double().mean(0) - comp.means[0]).abs().max() < Z * 0.7 / 200**0.5


def test_imputation_is_measurably_biased_on_the_3d_mixture():
    """The paper's imputation (Euler-Maruyama, 400 steps) against the exact posterior: its
    energy distance is far outside the noise floor band (the method is an approximation;
    the exact conditional score through the same loop sits inside it, test above)."""
    sde = sdelab.VPSDE()
    post = posterior(MIX3, MASK3, Y3)
    cond = sdelab.Inpaint(Y3, MASK3)
    x = run(
        sde, MIX3.score(sde), sdelab.EulerMaruyama(), 3000, 400, cond, seed=15, dtype=torch.float64
    ).x
    ref = post.sample(3000, torch.Generator().manual_seed(7))
    mean, sd = floor(post.sample, 3000)
    ed = float(energy_distance(x[:, ~MASK3], ref))
    assert ed > mean + Z * sd and ed > 10 * mean, (ed, mean, sd)


# --- RePaint ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, L, R", [(50, 10, 10), (20, 3, 2), (25, 5, 1), (7, 10, 3), (30, 1, 4)])
def test_repaint_schedule_is_diffusers(n, L, R):
    import diffusers

    sched = diffusers.RePaintScheduler(num_train_timesteps=1000)
    sched.set_timesteps(n, jump_length=L, jump_n_sample=R)
    stride = 1000 // n
    path = repaint_path(n, L, R)
    assert [n - p for p in path[1:]] == (sched.timesteps // stride).tolist()
    assert path[0] == 0 and path[-1] == n
    assert all(abs(b - a) == 1 for a, b in itertools.pairwise(path))


def test_repaint_costs_the_steps_of_its_path():
    sde = sdelab.VPSDE()
    n, L, R = 20, 3, 3
    cond = sdelab.Inpaint(Y3, MASK3, method="repaint", jump_length=L, jump_n_sample=R)
    res = run(sde, MIX3.score(sde), sdelab.DDIM(), 8, n, cond)
    path = repaint_path(n, L, R)
    assert res.nfe == sum(b > a for a, b in itertools.pairwise(path))
    assert res.steps == n


def test_the_forward_jump_maps_p_t_to_p_t_later():
    n = 20000
    for sde in (sdelab.VPSDE(), sdelab.VESDE(), sdelab.SubVPSDE()):
        g = torch.Generator().manual_seed(2)
        t, t2 = 0.3, 0.45
        x = MIX3.at(sde, t).sample(n, g).double()
        x2 = forward_jump(sde, x, t, t2, g)
        target = MIX3.to(dtype=torch.float64).at(sde, t2)
        se = target.covariance().diagonal().sqrt() / n**0.5
        assert ((x2.mean(0) - target.mean()).abs() < Z * se).all()
        assert torch.allclose(x2.var(0), target.covariance().diagonal(), rtol=Z * (2 / n) ** 0.5)


# --- every solver, every method ---------------------------------------------------------------


def _grid_solvers():
    out = []
    for name in sdelab.__all__:
        obj = getattr(sdelab, name)
        if inspect.isclass(obj) and issubclass(obj, GridSolver) and not inspect.isabstract(obj):
            out.append(obj() if obj is not sdelab.PC else None)
    solvers = [s for s in out if s is not None]
    solvers.append(sdelab.PC(sdelab.ReverseDiffusion(), sdelab.Langevin()))
    solvers.append(sdelab.Langevin())
    return solvers


SOLVERS = _grid_solvers()
IDS = [type(s).__name__ if not isinstance(s, sdelab.PC) else "PC(RD, Langevin)" for s in SOLVERS]
A2 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0]])
Y2 = torch.tensor([0.5, -0.5])
METHODS = {
    "imputation": sdelab.Inpaint(Y3, MASK3),
    "repaint": sdelab.Inpaint(Y3, MASK3, method="repaint", jump_length=3, jump_n_sample=2),
    "linear": sdelab.LinearObservation(A2, Y2),
    "dps": sdelab.LinearObservation(A2, Y2, noise_std=0.1, method="dps", scale=0.3),
    "guidance": sdelab.ClassGuidance(class_log_prob(MIX3, sdelab.VPSDE(), 1), scale=2.0),
}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_every_grid_solver_runs_with_every_method(solver, method):
    sde = sdelab.VPSDE()
    res = run(sde, MIX3.score(sde), solver, 32, 12, METHODS[method], return_trajectory=True)
    assert torch.isfinite(res.x).all() and res.trajectory.shape == (13, 32, 3)
    if method in ("imputation", "repaint"):
        assert torch.equal(res.x[:, MASK3], Y3[MASK3].expand(32, 2))
    if method == "linear":
        assert torch.allclose(res.x @ A2.T, Y2.expand(32, 2), atol=1e-5)


def test_dps_pulls_toward_the_observation_and_costs_one_extra_evaluation():
    sde = sdelab.VPSDE()
    cond = sdelab.LinearObservation(A2, Y2, noise_std=0.05, method="dps", scale=0.05)
    misfit = {}
    for name, c in (("none", None), ("dps", cond)):
        res = run(sde, MIX3.score(sde), sdelab.DDIM(), 500, 50, c)
        misfit[name] = float((res.x @ A2.T - Y2).norm(dim=1).mean())
        misfit[name + "_nfe"] = res.nfe
    assert misfit["dps"] < 0.25 * misfit["none"], misfit
    assert misfit["dps_nfe"] == 2 * misfit["none_nfe"]
    # scale 0: the extra evaluations change nothing for a deterministic solver
    zero = sdelab.LinearObservation(A2, Y2, method="dps", scale=0.0)
    a = run(sde, MIX3.score(sde), sdelab.DPMSolver(), 16, 10, zero).x
    b = run(sde, MIX3.score(sde), sdelab.DPMSolver(), 16, 10, None).x
    assert torch.equal(a, b)


def test_condition_none_and_a_condition_that_changes_nothing_leave_results_bit_identical():
    sde = sdelab.VPSDE()
    for solver in (
        sdelab.EulerMaruyama(),
        sdelab.DPMSolver(),
        sdelab.PC(sdelab.DDIM(), sdelab.Langevin()),
    ):
        base = run(sde, MIX3.score(sde), solver, 16, 10, None).x
        assert torch.equal(
            base,
            sdelab.sample(
                sde,
                MIX3.score(sde),
                solver,
                (16, 3),
                steps=10,
                generator=torch.Generator().manual_seed(0),
            ).x,
        )
        flat = sdelab.ClassGuidance(lambda x, t: 0.0 * x.sum(1))
        assert torch.equal(base, run(sde, MIX3.score(sde), solver, 16, 10, flat).x)
    empty = sdelab.Inpaint(Y3, torch.zeros(3, dtype=torch.bool))
    a = run(sde, MIX3.score(sde), sdelab.DPMSolver(), 16, 10, empty).x
    assert torch.equal(a, run(sde, MIX3.score(sde), sdelab.DPMSolver(), 16, 10, None).x)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: sdelab.Inpaint(Y3, torch.tensor([0.0, 0.5, 1.0])),
            r"mask must be boolean or hold only 0 and 1",
        ),
        (
            lambda: sdelab.Inpaint(Y3, torch.ones(2, dtype=torch.bool)),
            r"mask must have y's shape \(3,\)",
        ),
        (lambda: sdelab.Inpaint(Y3, MASK3, method="ddrm"), r"method must be one of .*'ddrm'"),
        (
            lambda: sdelab.Inpaint(Y3, MASK3, jump_length=0),
            r"jump_length must be an integer >= 1, got 0",
        ),
        (
            lambda: sdelab.Inpaint(Y3, MASK3, jump_n_sample=0),
            r"jump_n_sample must be an integer >= 1, got 0",
        ),
        (lambda: sdelab.Inpaint(torch.tensor([0.0, math.nan, 1.0]), MASK3), r"y must be finite"),
        (
            lambda: sdelab.LinearObservation(A2, Y2, noise_std=-0.1),
            r"noise_std must be a finite number >= 0, got -0.1",
        ),
        (
            lambda: sdelab.LinearObservation(A2, torch.zeros(3)),
            r"y must have shape \(m,\) or \(B, m\) with m = 2 .* got \(3,\)",
        ),
        (
            lambda: sdelab.LinearObservation(torch.zeros(3), Y2),
            r"A must be a matrix of shape \(m, d\), got shape \(3,\)",
        ),
        (
            lambda: sdelab.LinearObservation(A2, Y2, method="dps", scale=-1.0),
            r"scale must be a finite number >= 0, got -1.0",
        ),
        (
            lambda: sdelab.ClassGuidance(lambda x, t: x.sum(1), scale=math.nan),
            r"scale must be a finite number, got nan",
        ),
        (
            lambda: sdelab.LinearObservation.grayscale(torch.zeros(4)),
            r"y must be a grey image of shape \(H, W\)",
        ),
    ],
)
def test_bad_conditions_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_conditions_fail_at_the_start_of_sample():
    sde = sdelab.VPSDE()

    def go(cond, shape=(8, 3), solver=None):
        return sdelab.sample(
            sde, MIX3.score(sde), solver or sdelab.EulerMaruyama(), shape, steps=3, condition=cond
        )

    with pytest.raises(
        ValueError, match=r"mask must have shape \(3,\) .* or \(8, 3\) .* got \(4, 3\)"
    ):
        go(sdelab.Inpaint(torch.zeros(4, 3), torch.ones(4, 3, dtype=torch.bool)))
    with pytest.raises(ValueError, match=r"A must have d = 3 columns.* got shape \(2, 4\)"):
        go(sdelab.LinearObservation(torch.ones(2, 4), Y2))
    with pytest.raises(
        ValueError, match=r"y must have shape \(2,\) .* or \(8, 2\) .* got \(5, 2\)"
    ):
        go(sdelab.LinearObservation(A2, torch.zeros(5, 2)))
    with pytest.raises(
        ValueError,
        match=r"Inpaint\(method='imputation'\) acts between the steps .* adaptive solver",
    ):
        go(sdelab.Inpaint(Y3, MASK3), solver=sdelab.ProbabilityFlowODE())
    with pytest.raises(TypeError, match=r"condition must be an sdelab condition .* got dict"):
        go({"mask": MASK3})
    with pytest.raises(ValueError, match=r"log_prob\(x, t\) must return shape \(B,\) = \(8,\)"):
        go(sdelab.ClassGuidance(lambda x, t: x))
