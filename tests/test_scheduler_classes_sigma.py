"""The sigma-family scheduler classes against diffusers 0.42.1: the same full denoising loop
(diffusers' own style: a deterministic model of the sample and the timestep, a deterministic
starting sample, 10 and 50 steps) gives the same samples to float32 round-off; timesteps and
sigmas are equal; configs load across; bad input raises.

Tolerance: both sides run in float32 with coefficients rounded differently (diffusers: float32
0-d tensors; sdelab: Python floats on the VP state), so each ``step`` call may differ by a few
float32 ulps relative to the sample; the bound is ``8 * calls * eps32`` relative to the
sample's max (linear accumulation of 8 ulps a call). DPMSolverSDEScheduler's noise comes from
a torchsde Brownian tree in diffusers and from a generator in sdelab (same law, different
draws): it is compared in distribution.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings

import diffusers
import numpy as np
import pytest
import torch

import sdelab.schedulers as S

# diffusers' tables pass tensors through NumPy 2 (DeprecationWarning); torchsde warns about the
# float32 ends of its Brownian tree
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Should have:UserWarning"),
]

EPS32 = float(torch.finfo(torch.float32).eps)
SHAPE = (4, 3, 5)


def model(x: torch.Tensor, timestep) -> torch.Tensor:
    """A smooth nonlinear model output of the sample and the timestep."""
    w = torch.as_tensor(timestep, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) / 1000.0
    return torch.tanh(0.8 * x + 0.3 * torch.sin(3.0 * w)) * (0.6 + 0.5 * w) + 0.2 * x * torch.cos(
        2.0 * w
    )


def run_loop(sched, steps: int, seed: int = 0, x0: torch.Tensor | None = None, fn=model):
    """diffusers' loop: set_timesteps, the start scaled by init_noise_sigma, then for every
    timestep scale_model_input -> model -> step (with a seeded generator where step takes one)."""
    sched.set_timesteps(steps)
    if x0 is None:
        x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42))
    x = x0 * sched.init_noise_sigma
    kw = {}
    if "generator" in inspect.signature(sched.step).parameters:
        kw["generator"] = torch.Generator().manual_seed(seed)
    for t in sched.timesteps:
        x = sched.step(fn(sched.scale_model_input(x, t), t), t, x, **kw).prev_sample
    return x


RAMPS = [
    {},
    {"use_karras_sigmas": True},
    {"use_exponential_sigmas": True},
    {"use_beta_sigmas": True},
]
SPACINGS = [{"timestep_spacing": "leading", "steps_offset": 1}, {"timestep_spacing": "trailing"}]
PREDICTIONS = [{"prediction_type": "v_prediction"}, {"prediction_type": "sample"}]

# (class name, option sets): every class with its ramps, spacings and prediction types
ROWS = [
    (
        "EulerDiscreteScheduler",
        RAMPS + SPACINGS + PREDICTIONS + [{"final_sigmas_type": "sigma_min"}],
    ),
    ("EulerAncestralDiscreteScheduler", [{}, *SPACINGS, *PREDICTIONS[:1]]),
    ("HeunDiscreteScheduler", RAMPS + SPACINGS + PREDICTIONS + [{"clip_sample": True}]),
    ("LMSDiscreteScheduler", RAMPS + SPACINGS + PREDICTIONS),
    ("KDPM2DiscreteScheduler", RAMPS + SPACINGS + PREDICTIONS[:1]),
    ("KDPM2AncestralDiscreteScheduler", RAMPS + SPACINGS + PREDICTIONS[:1]),
]
CASES = [(name, opts) for name, optsets in ROWS for opts in optsets]


def _ids(case):
    name, opts = case
    return (
        name.replace("Scheduler", "")
        + "-"
        + (",".join(f"{k}={v}" for k, v in opts.items()) or "default")
    )


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_loop_equals_diffusers(case, steps):
    name, opts = case
    ref_sched, ours = getattr(diffusers, name)(**opts), getattr(S, name)(**opts)
    ref = run_loop(ref_sched, steps, seed=3)
    got = run_loop(ours, steps, seed=3)
    assert torch.equal(ours.timesteps.double(), ref_sched.timesteps.double())
    assert torch.equal(ours.sigmas.double(), ref_sched.sigmas.double())
    assert ours.timesteps.dtype == ref_sched.timesteps.dtype
    assert math.isclose(
        float(ours.init_noise_sigma), float(ref_sched.init_noise_sigma), rel_tol=1e-7
    )
    calls = len(ours.timesteps)
    rel = float((got - ref).abs().max() / ref.abs().max())
    assert rel <= 8 * calls * EPS32, rel
    assert got.dtype == ref.dtype and got.shape == ref.shape


@pytest.mark.parametrize("opts", RAMPS + SPACINGS, ids=lambda o: str(o) or "default")
def test_dpmsolver_sde_tables_equal_diffusers(opts):
    for steps in (10, 50):
        a, b = diffusers.DPMSolverSDEScheduler(**opts), S.DPMSolverSDEScheduler(**opts)
        a.set_timesteps(steps)
        b.set_timesteps(steps)
        assert torch.equal(a.timesteps, b.timesteps)
        assert torch.equal(a.sigmas, b.sigmas)
        x = torch.ones(SHAPE)
        for t in a.timesteps[:3]:  # the inputs of the first calls (the midpoint's included)
            assert torch.equal(a.scale_model_input(x, t), b.scale_model_input(x, t))
            a.step(torch.zeros(SHAPE), t, x)
            b.step(torch.zeros(SHAPE), t, x)


# --- DPMSolverSDEScheduler in distribution: Gaussian data, its exact noise model ----------
MU, VAR = 0.7, 0.25


def _gaussian_eps(table: np.ndarray):
    """The exact noise prediction of data N(MU, VAR) at the (fractional) training step, the
    level from the table's log-linear interpolation (diffusers' sigma_to_t inverted)."""
    log_table = torch.from_numpy(np.log(table).astype(np.float64))

    def eps(x_in, t):
        tau = float(t)
        k = min(int(tau), len(table) - 2)
        ls = float(log_table[k] + (tau - k) * (log_table[k + 1] - log_table[k]))
        s = math.exp(ls)
        m, sd = 1 / math.sqrt(1 + s * s), s / math.sqrt(1 + s * s)
        return (x_in - m * MU) * sd / (m * m * VAR + sd * sd)

    return eps


def test_dpmsolver_sde_matches_diffusers_in_distribution():
    n, steps = 20000, 10
    x0 = torch.randn((n, 1), generator=torch.Generator().manual_seed(0))
    out = {}
    for side in (diffusers, S):
        sched = side.DPMSolverSDEScheduler(noise_sampler_seed=1, use_karras_sigmas=True)
        table = (((1 - sched.alphas_cumprod) / sched.alphas_cumprod) ** 0.5).numpy()
        out[side.__name__] = run_loop(sched, steps, x0=x0, fn=_gaussian_eps(table)).double()
    a, b = out["diffusers"], out["sdelab.schedulers"]
    se_mean = math.sqrt((a.var() + b.var()) / n)
    assert abs(a.mean() - b.mean()) < 5 * se_mean
    se_var = math.sqrt(2 * (a.var() ** 2 + b.var() ** 2) / n)
    assert abs(a.var() - b.var()) < 5 * se_var
    # and both are near the data law (the same discretisation error on both sides)
    assert abs(b.mean() - MU) < 0.05 and abs(b.var() - VAR) < 0.05


def test_dpmsolver_sde_seed_reproduces_and_the_two_calls_share_the_noise():
    runs = [run_loop(S.DPMSolverSDEScheduler(noise_sampler_seed=5), 10) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = run_loop(S.DPMSolverSDEScheduler(noise_sampler_seed=6), 10)
    assert not torch.equal(runs[0], other)


# --- configs ------------------------------------------------------------------------------
NAMES = [name for name, _ in ROWS] + ["DPMSolverSDEScheduler"]


@pytest.mark.parametrize("name", NAMES)
def test_configs_load_across(name, tmp_path):
    ours = getattr(S, name)(beta_schedule="scaled_linear", timestep_spacing="trailing")
    ours.save_pretrained(tmp_path / "a")
    theirs = getattr(diffusers, name).from_pretrained(tmp_path / "a")
    assert {k: theirs.config[k] for k in ours.config} == dict(ours.config)
    theirs.save_pretrained(tmp_path / "b")
    back = getattr(S, name).from_pretrained(tmp_path / "b")
    assert dict(back.config) == dict(ours.config)
    saved = json.loads((tmp_path / "a" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == name


def test_from_config_switches_method():
    heun = S.HeunDiscreteScheduler(beta_schedule="scaled_linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        euler = S.EulerDiscreteScheduler.from_config(heun.config)
    assert type(euler) is S.EulerDiscreteScheduler
    assert euler.config.beta_schedule == "scaled_linear"
    assert "HeunDiscreteScheduler" in S.EulerDiscreteScheduler._compatibles
    euler.set_timesteps(5)
    heun.set_timesteps(5)
    assert len(heun.timesteps) == 2 * len(euler.timesteps) - 1
    assert S.HeunDiscreteScheduler.order == 2 and S.EulerDiscreteScheduler.order == 1


def test_add_noise_equals_diffusers():
    a, b = diffusers.EulerDiscreteScheduler(), S.EulerDiscreteScheduler()
    a.set_timesteps(10)
    b.set_timesteps(10)
    x, z = torch.randn(SHAPE), torch.randn(SHAPE)
    t = a.timesteps[[1, 3, 5, 7]]
    assert torch.equal(a.add_noise(x, z, t), b.add_noise(x, z, t))


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: S.EulerDiscreteScheduler(interpolation_type="log_linear"),
            "interpolation_type.*log_linear",
        ),
        (
            lambda: S.EulerDiscreteScheduler(rescale_betas_zero_snr=True),
            "rescale_betas_zero_snr.*True",
        ),
        (lambda: S.EulerDiscreteScheduler(prediction_type="x0"), "prediction_type.*'x0'"),
        (lambda: S.HeunDiscreteScheduler(timestep_spacing="even"), "timestep_spacing.*'even'"),
        (lambda: S.EulerDiscreteScheduler(final_sigmas_type="one"), "final_sigmas_type.*'one'"),
        (
            lambda: S.LMSDiscreteScheduler(use_karras_sigmas=True, use_beta_sigmas=True),
            "at most one of use_karras_sigmas",
        ),
        (lambda: S.KDPM2DiscreteScheduler(prediction_type="sample"), "prediction_type.*'sample'"),
        (
            lambda: S.EulerDiscreteScheduler(use_karras_sigmas=True, sigma_max=1e4).set_timesteps(
                5
            ),
            "sigma_max",
        ),
    ],
)
def test_unsupported_options_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_calls_raise():
    s = S.EulerDiscreteScheduler()
    x = torch.zeros(SHAPE)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        s.step(x, 999.0, x)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        s.scale_model_input(x, 999.0)
    s.set_timesteps(5)
    with pytest.raises(ValueError, match=r"timestep must be one of scheduler.timesteps.*123\.5"):
        s.step(x, 123.5, x)
    with pytest.raises(
        ValueError, match=r"model_output must be a tensor shaped like sample \(4, 3, 5\)"
    ):
        s.step(torch.zeros(2, 3), s.timesteps[0], x)
    with pytest.raises(TypeError, match="model_output must have sample's dtype torch.float32"):
        s.step(x.double(), s.timesteps[0], x)
    with pytest.raises(TypeError, match="sample must be a floating-point tensor"):
        s.step(x.long(), s.timesteps[0], x.long())
    with pytest.raises(ValueError, match="s_churn must be 0.*got 1.0"):
        s.step(x, s.timesteps[0], x, s_churn=1.0)
    with pytest.raises(ValueError, match="timesteps= .*not supported"):
        s.set_timesteps(timesteps=[999, 500, 0])
    with pytest.raises(TypeError, match="num_inference_steps"):
        s.set_timesteps(2.5)
    for t in s.timesteps:
        s.step(x, t, x)
    with pytest.raises(ValueError, match="step was called 6 times.*5 calls"):
        s.step(x, s.timesteps[-1], x)
    with pytest.raises(ValueError, match="s_noise must be 1.0"):
        S.DPMSolverSDEScheduler().step(x, 0.0, x, s_noise=0.5)


def test_unknown_config_keys_are_kept_and_warned():
    with pytest.warns(UserWarning, match="not arguments"):
        s = S.EulerDiscreteScheduler.from_config({"num_train_timesteps": 1000, "foo": 1})
    assert s.config["foo"] == 1
