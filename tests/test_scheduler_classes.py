"""The alpha-bar scheduler classes (DDIM, DDIM inverse, DDPM, DPM-Solver multistep / singlestep,
UniPC, DEIS, PNDM) against diffusers 0.42.1: the same full denoising loop (diffusers' own style:
a deterministic model of the sample and the timestep, a deterministic starting sample, 10 and 50
steps) gives the same samples to float32 round-off, the stochastic ones with the same
``torch.Generator``; timesteps (and sigmas) are equal; configs saved by either side load in the
other; ``from_config`` switches method; bad input raises.

Tolerance: both sides run in float32 with coefficients rounded differently (diffusers: float32
0-d tensors; sdelab: Python floats), so each ``step`` call may differ by a few float32 ulps
relative to the sample; the bound is ``8 * calls * eps32`` relative to the sample's max (linear
accumulation of 8 ulps a call), as in tests/test_scheduler_classes_sigma.py. Where sdelab's
solver is not diffusers' method (documented in the class docs) the test shows the difference.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings

import diffusers
import pytest
import torch

import sdelab.schedulers as S

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EPS32 = float(torch.finfo(torch.float32).eps)
SHAPE = (4, 3, 5)


def model(x: torch.Tensor, timestep) -> torch.Tensor:
    """A smooth nonlinear model output of the sample and the timestep."""
    w = torch.as_tensor(timestep, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) / 1000.0
    return torch.tanh(0.8 * x + 0.3 * torch.sin(3.0 * w)) * (0.6 + 0.5 * w) + 0.2 * x * torch.cos(
        2.0 * w
    )


def run_loop(sched, steps: int, seed: int = 0, step_kw: dict | None = None, x0=None):
    """diffusers' loop: set_timesteps, the start scaled by init_noise_sigma, then for every
    timestep scale_model_input -> model -> step (with a seeded generator where step takes one).
    Returns the final sample and the list of pred_original_sample where step returns it."""
    sched.set_timesteps(steps)
    if x0 is None:
        x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42))
    x = x0 * sched.init_noise_sigma
    kw = dict(step_kw or {})
    if "generator" in inspect.signature(sched.step).parameters:
        kw["generator"] = torch.Generator().manual_seed(seed)
    preds = []
    for t in sched.timesteps:
        out = sched.step(model(sched.scale_model_input(x, t), t), t, x, **kw)
        x = out.prev_sample
        if getattr(out, "pred_original_sample", None) is not None:
            preds.append(out.pred_original_sample)
    return x, preds


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


SCALED = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
RAMPS = [{"use_karras_sigmas": True}, {"use_exponential_sigmas": True}, {"use_beta_sigmas": True}]
SPACE = [{"timestep_spacing": "leading", "steps_offset": 1}, {"timestep_spacing": "trailing"}]
PRED = [{"prediction_type": "v_prediction"}, {"prediction_type": "sample"}]

# (class name, constructor options, step keyword arguments): a representative grid of the
# options that change the numbers (each option varied from the defaults, not the product)
ROWS = [
    *[
        ("DDIMScheduler", o, {})
        for o in [
            {},
            {"clip_sample": False},
            {"set_alpha_to_one": False},
            {"timestep_spacing": "linspace"},
            *SPACE,
            *PRED,
            {"thresholding": True},
            SCALED,
        ]
    ],
    ("DDIMScheduler", {}, {"eta": 1.0}),
    ("DDIMScheduler", {"clip_sample": False}, {"eta": 0.5}),
    ("DDIMScheduler", {}, {"eta": 0.5, "use_clipped_model_output": True}),
    *[
        ("DDIMInverseScheduler", o, {})
        for o in [
            {},
            {"set_alpha_to_one": False},
            {"timestep_spacing": "trailing"},
            {"clip_sample": False, "prediction_type": "v_prediction"},
        ]
    ],
    *[
        ("DDPMScheduler", o, {})
        for o in [
            {},
            {"clip_sample": False},
            {"variance_type": "fixed_large"},
            {"variance_type": "fixed_large", "timestep_spacing": "trailing"},
            {"variance_type": "fixed_small_log"},
            {"timestep_spacing": "linspace"},
            *PRED,
            {"thresholding": True},
        ]
    ],
    *[
        ("DPMSolverMultistepScheduler", o, {})
        for o in [
            {},
            {"solver_order": 1},
            {"solver_type": "heun"},
            {"final_sigmas_type": "sigma_min"},
            {"final_sigmas_type": "sigma_min", "lower_order_final": False},
            {"euler_at_final": True, "final_sigmas_type": "sigma_min"},
            {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"},
            {"algorithm_type": "sde-dpmsolver++"},
            {"algorithm_type": "sde-dpmsolver++", "solver_type": "heun"},
            *RAMPS,
            *SPACE,
            *PRED,
            {"thresholding": True},
        ]
    ],
    *[
        ("DPMSolverMultistepInverseScheduler", o, {})
        for o in [
            {},
            {"solver_order": 1},
            {"solver_type": "heun", "lower_order_final": False},
            {"algorithm_type": "dpmsolver"},
            {"euler_at_final": True},
            *SPACE,
            {"prediction_type": "v_prediction"},
        ]
    ],
    *[
        ("DPMSolverSinglestepScheduler", o, {})
        for o in [
            {},
            {"solver_order": 1},
            {"solver_order": 3, "solver_type": "heun"},
            {"final_sigmas_type": "sigma_min", "lower_order_final": False},
            {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"},
            {"use_karras_sigmas": True},
            {"prediction_type": "v_prediction"},
        ]
    ],
    *[
        ("UniPCMultistepScheduler", o, {})
        for o in [
            {},
            {"solver_order": 1},
            {"solver_order": 3},
            {"solver_type": "bh1", "final_sigmas_type": "sigma_min"},
            {"final_sigmas_type": "sigma_min"},
            {"predict_x0": False, "final_sigmas_type": "sigma_min"},
            {"disable_corrector": [0, 1, 2]},
            {"use_karras_sigmas": True},
            {"use_exponential_sigmas": True},
            *SPACE,
            *PRED,
            {"thresholding": True},
        ]
    ],
    *[
        ("DEISMultistepScheduler", o, {})
        for o in [
            {},
            {"solver_order": 1},
            {"solver_order": 3},
            {"lower_order_final": False},
            {"use_karras_sigmas": True},
            {"use_beta_sigmas": True},
            *SPACE,
            *PRED,
            {"thresholding": True},
        ]
    ],
    *[
        ("PNDMScheduler", o, {})
        for o in [
            {},
            {"skip_prk_steps": True},
            {"timestep_spacing": "trailing"},
            {"timestep_spacing": "trailing", "skip_prk_steps": True},
            {"steps_offset": 1},
            {**SCALED, "skip_prk_steps": True},
        ]
    ],
    ("IPNDMScheduler", {}, {}),
]


def _ids(row):
    name, opts, kw = row
    args = ",".join(f"{k}={v}" for k, v in {**opts, **kw}.items())
    return name.replace("Scheduler", "") + "-" + (args or "default")


@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("row", ROWS, ids=[_ids(r) for r in ROWS])
def test_loop_equals_diffusers(row, steps):
    name, opts, kw = row
    ref_sched, ours = getattr(diffusers, name)(**opts), getattr(S, name)(**opts)
    ref, ref_preds = run_loop(ref_sched, steps, seed=3, step_kw=kw)
    got, got_preds = run_loop(ours, steps, seed=3, step_kw=kw)
    assert torch.equal(ours.timesteps, ref_sched.timesteps)
    assert ours.timesteps.dtype == ref_sched.timesteps.dtype
    if hasattr(ref_sched, "sigmas") and hasattr(ours, "sigmas"):
        assert torch.equal(ours.sigmas.double(), ref_sched.sigmas.double())
    assert float(ours.init_noise_sigma) == float(ref_sched.init_noise_sigma)
    calls = len(ours.timesteps)
    tol = 8 * calls * EPS32
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert rel(got, ref) <= tol, rel(got, ref)
    assert len(got_preds) == len(ref_preds)
    if got_preds:  # pred_original_sample: the first call (one call's round-off) and the last
        assert rel(got_preds[0], ref_preds[0]) <= 16 * EPS32
        assert rel(got_preds[-1], ref_preds[-1]) <= tol


def test_the_loop_is_not_trivial():
    """The model and grid make the options matter: changing one changes the sample by far
    more than the tolerance (so the equality above is informative)."""
    a, _ = run_loop(S.DPMSolverMultistepScheduler(), 10)
    b, _ = run_loop(S.DPMSolverMultistepScheduler(solver_type="heun"), 10)
    c, _ = run_loop(S.DDIMScheduler(), 10, step_kw={"eta": 1.0}, seed=4)
    d, _ = run_loop(S.DDIMScheduler(), 10, step_kw={"eta": 1.0}, seed=5)
    assert rel(a, b) > 1e-4 and rel(c, d) > 1e-2


# --- where sdelab's solver is not diffusers' method (the class docs) ----------------------
@pytest.mark.parametrize(
    "name, opts",
    [
        ("DPMSolverMultistepScheduler", {"solver_order": 3}),
        ("DPMSolverSinglestepScheduler", {"solver_order": 3}),
    ],
)
def test_order_three_differences_are_visible_and_start_at_the_third_order_step(name, opts):
    """sdelab's 3M keeps the factor 2 diffusers drops; its midpoint 3S takes the Taylor
    coefficient at the second stage: equal on the first two calls, different after."""
    for steps, equal in ((2, True), (10, False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, _ = run_loop(getattr(diffusers, name)(**opts), steps)
            got, _ = run_loop(getattr(S, name)(**opts), steps)
        assert (rel(got, ref) <= 8 * steps * EPS32) == equal


def test_pndm_v_prediction_differs_only_on_the_warm_up():
    """diffusers converts a warm-up stage's v output with the step's start level and sample;
    with the Runge-Kutta warm-up replaced by equal model outputs the loops agree again."""
    opts = {"prediction_type": "v_prediction", "skip_prk_steps": True}
    ref, _ = run_loop(diffusers.PNDMScheduler(**opts), 10)
    got, _ = run_loop(S.PNDMScheduler(**opts), 10)
    assert rel(got, ref) > 1e-3
    same = {"prediction_type": "v_prediction", "skip_prk_steps": True}
    a, b = diffusers.PNDMScheduler(**same), S.PNDMScheduler(**same)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    for s in (a, b):
        s.set_timesteps(10)
    xa = xb = x
    for i, t in enumerate(a.timesteps):
        xa = a.step(model(xa, t) if i != 1 else torch.zeros(SHAPE), t, xa).prev_sample
        xb = b.step(model(xb, t) if i != 1 else torch.zeros(SHAPE), t, xb).prev_sample
        if i == 0:
            assert rel(xb, xa) <= 8 * EPS32


def test_unipc_final_zero_step_is_finite_where_diffusers_is_nan():
    opts = {"lower_order_final": False}
    ref, _ = run_loop(diffusers.UniPCMultistepScheduler(**opts), 10)
    got, _ = run_loop(S.UniPCMultistepScheduler(**opts), 10)
    assert not torch.isfinite(ref).any() and torch.isfinite(got).all()


# --- configs ------------------------------------------------------------------------------
NAMES = sorted({name for name, _, _ in ROWS} - {"IPNDMScheduler"})  # IPNDM: its own tests


@pytest.mark.parametrize("name", NAMES)
def test_configs_load_across(name, tmp_path):
    opts = {"beta_schedule": "scaled_linear", "steps_offset": 1, "prediction_type": "v_prediction"}
    keys = inspect.signature(getattr(S, name)).parameters
    if name == "PNDMScheduler":  # its v-prediction warm-up differs (see above)
        opts.pop("prediction_type")
    ours = getattr(S, name)(**{k: v for k, v in opts.items() if k in keys})
    ours.save_pretrained(tmp_path / "a")
    theirs = getattr(diffusers, name).from_pretrained(tmp_path / "a")
    assert {k: theirs.config[k] for k in ours.config} == dict(ours.config)
    theirs.save_pretrained(tmp_path / "b")
    back = getattr(S, name).from_pretrained(tmp_path / "b")
    assert dict(back.config) == dict(ours.config)
    saved = json.loads((tmp_path / "a" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == name
    # the two loaded from the same file step alike
    ref, _ = run_loop(theirs, 10)
    got, _ = run_loop(back, 10)
    assert rel(got, ref) <= 80 * EPS32


@pytest.mark.parametrize(
    "source, target, key, value",
    [
        ("DDIMScheduler", "DPMSolverMultistepScheduler", "solver_order", 2),
        ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler", "solver_type", "midpoint"),
        ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "solver_type", "bh2"),
        ("DPMSolverMultistepScheduler", "DEISMultistepScheduler", "solver_type", "logrho"),
        ("EulerDiscreteScheduler", "DDIMScheduler", "beta_schedule", "scaled_linear"),
        ("PNDMScheduler", "DDPMScheduler", "beta_schedule", "scaled_linear"),
    ],
)
def test_from_config_switches_method(source, target, key, value):
    src = getattr(S, source)(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = getattr(S, target).from_config(src.config)
        theirs = getattr(diffusers, target).from_config(
            getattr(diffusers, source).from_config(dict(src.config)).config
        )
    assert type(ours) is getattr(S, target)
    assert ours.config[key] == theirs.config[key] == value
    assert ours.config.beta_schedule == "scaled_linear"
    assert source in getattr(S, target)._compatibles or source == target
    ref, _ = run_loop(theirs, 10)
    got, _ = run_loop(ours, 10)
    assert rel(got, ref) <= 80 * EPS32


def test_deis_config_loads_into_dpm_solver():
    """diffusers renames algorithm_type "deis" but then checks the old name and refuses
    final_sigmas_type="zero"; sdelab checks the renamed value, so the switch works."""
    deis = S.DEISMultistepScheduler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dpm = S.DPMSolverMultistepScheduler.from_config(deis.config)
        with pytest.raises(ValueError, match="final_sigmas_type"):
            diffusers.DPMSolverMultistepScheduler.from_config(dict(deis.config))
    assert dpm.config.algorithm_type == "dpmsolver++" and dpm.config.solver_type == "midpoint"
    ref, _ = run_loop(diffusers.DPMSolverMultistepScheduler(), 10)
    got, _ = run_loop(dpm, 10)
    assert rel(got, ref) <= 80 * EPS32


@pytest.mark.parametrize("name", [n for n in NAMES if n != "DDIMInverseScheduler"])
def test_add_noise_equals_diffusers(name):
    a, b = getattr(diffusers, name)(), getattr(S, name)()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 10, 500, 999])
    assert rel(b.add_noise(x, z, t), a.add_noise(x, z, t)) <= 4 * EPS32  # training steps
    a.set_timesteps(10)
    b.set_timesteps(10)
    t = a.timesteps[[1, 3, 5, 7]]
    assert rel(b.add_noise(x, z, t), a.add_noise(x, z, t)) <= 4 * EPS32


def test_class_attributes_as_diffusers():
    for name in NAMES:
        ours, theirs = getattr(S, name)(), getattr(diffusers, name)()
        assert ours.order == theirs.order
        if theirs.timesteps is None:
            assert ours.timesteps is None
        else:
            assert torch.equal(ours.timesteps, theirs.timesteps)
            assert ours.timesteps.dtype == theirs.timesteps.dtype
        if hasattr(theirs, "sigmas"):
            assert torch.equal(ours.sigmas, theirs.sigmas)
        assert len(ours) == len(theirs) == 1000
        assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: S.DDIMScheduler(prediction_type="x0"), "prediction_type.*'x0'"),
        (lambda: S.DDIMScheduler(timestep_spacing="even"), "timestep_spacing.*'even'"),
        (lambda: S.DDIMScheduler(rescale_betas_zero_snr=True), "rescale_betas_zero_snr.*True"),
        (lambda: S.DDPMScheduler(variance_type="learned"), "variance_type.*'learned'"),
        (lambda: S.DDPMScheduler(variance_type="fixed_large_log"), "variance_type.*'fixed_large"),
        (
            lambda: S.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver"),
            "algorithm_type.*'sde-dpmsolver'",
        ),
        (
            lambda: S.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=3),
            "solver_order must be 1 or 2",
        ),
        (lambda: S.DPMSolverMultistepScheduler(solver_order=4), "solver_order.*4"),
        (lambda: S.DPMSolverMultistepScheduler(use_lu_lambdas=True), "use_lu_lambdas.*True"),
        (lambda: S.DPMSolverMultistepScheduler(variance_type="learned"), "variance_type"),
        (
            lambda: S.DPMSolverMultistepScheduler(algorithm_type="dpmsolver"),
            "final_sigmas_type='zero' is not supported",
        ),
        (
            lambda: S.DPMSolverMultistepScheduler(lambda_min_clipped=-5.1),
            "lambda_min_clipped.*-5.1",
        ),
        (
            lambda: S.DPMSolverMultistepScheduler(use_karras_sigmas=True, use_beta_sigmas=True),
            "at most one of",
        ),
        (lambda: S.UniPCMultistepScheduler(solver_p=object()), "solver_p"),
        (
            lambda: S.UniPCMultistepScheduler(
                use_karras_sigmas=True, final_sigmas_type="sigma_min"
            ),
            "sigma_min.*ramp",
        ),
        (lambda: S.DEISMultistepScheduler(use_flow_sigmas=True), "use_flow_sigmas.*True"),
        (lambda: S.PNDMScheduler(timestep_spacing="linspace"), "timestep_spacing.*'linspace'"),
        (lambda: S.PNDMScheduler(set_alpha_to_one=True), "set_alpha_to_one.*True"),
        (lambda: S.PNDMScheduler().set_timesteps(3), "at least 4"),
        (lambda: S.DDIMScheduler().set_timesteps(1001), "at most num_train_timesteps=1000"),
        (lambda: S.DDIMInverseScheduler(timestep_spacing="linspace"), "timestep_spacing"),
        (
            lambda: S.DPMSolverMultistepInverseScheduler(use_karras_sigmas=True),
            "use_karras_sigmas.*True",
        ),
        (
            lambda: S.DPMSolverMultistepInverseScheduler(algorithm_type="sde-dpmsolver++"),
            "algorithm_type.*sde-dpmsolver",
        ),
    ],
)
def test_unsupported_options_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("name", NAMES)
def test_bad_calls_raise(name):
    s = getattr(S, name)()
    x = torch.zeros(SHAPE)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        s.step(x, 999, x)
    s.set_timesteps(10)
    with pytest.raises(ValueError, match=r"timestep must be one of scheduler.timesteps.*123\.5"):
        s.step(x, 123.5, x)
    t0 = s.timesteps[0]
    with pytest.raises(ValueError, match=r"model_output must be a tensor shaped like sample"):
        s.step(torch.zeros(2, 3), t0, x)
    with pytest.raises(TypeError, match="model_output must have sample's dtype torch.float32"):
        s.step(x.double(), t0, x)
    with pytest.raises(TypeError, match="sample must be a floating-point tensor"):
        s.step(x.long(), t0, x.long())
    with pytest.raises(TypeError, match="num_inference_steps"):
        s.set_timesteps(2.5)
    with pytest.raises(ValueError, match="timesteps= is not supported"):
        s.set_timesteps(10, timesteps=[999, 500, 0])
    for t in s.timesteps:
        x = s.step(torch.zeros(SHAPE), t, x).prev_sample
    if not s._by_value:
        with pytest.raises(ValueError, match=r"step was called \d+ times"):
            s.step(x, s.timesteps[-1], x)


def test_bad_step_arguments_raise():
    s = S.DDIMScheduler()
    s.set_timesteps(5)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="variance_noise is not supported"):
        s.step(x, s.timesteps[0], x, variance_noise=x)
    with pytest.raises(ValueError, match="eta must be >= 0, got -1"):
        s.step(x, s.timesteps[0], x, eta=-1)
    m = S.DPMSolverMultistepScheduler()
    m.set_timesteps(5)
    m.step(x, m.timesteps[0], x)
    with pytest.raises(ValueError, match=r"timestep must be scheduler.timesteps\[1\]"):
        m.step(x, m.timesteps[3], x)
    with pytest.raises(ValueError, match="timestep must be a single value"):
        m.step(x, m.timesteps[:2], x)


def test_unknown_config_keys_are_kept_and_warned():
    with pytest.warns(UserWarning, match="not arguments"):
        s = S.DDIMScheduler.from_config({"num_train_timesteps": 1000, "foo": 1})
    assert s.config["foo"] == 1


def test_singlestep_uneven_steps_switch_on_lower_order_final_as_diffusers():
    opts = {"solver_order": 2, "lower_order_final": False, "final_sigmas_type": "sigma_min"}
    ours, theirs = (
        S.DPMSolverSinglestepScheduler(**opts),
        diffusers.DPMSolverSinglestepScheduler(**opts),
    )
    with pytest.warns(UserWarning, match="lower_order_final is set to True"):
        ours.set_timesteps(7)
    theirs.set_timesteps(7)
    assert ours.config.lower_order_final is True is theirs.config.lower_order_final
    assert ours.order_list == theirs.order_list


def test_begin_index_starts_mid_grid():
    """Image-to-image: set_begin_index picks the first call as diffusers."""
    a, b = diffusers.DPMSolverMultistepScheduler(), S.DPMSolverMultistepScheduler()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = {}
    for s in (a, b):
        s.set_timesteps(10)
        s.set_begin_index(4)
        y = x
        for t in s.timesteps[4:]:
            y = s.step(model(y, t), t, y).prev_sample
        out[type(s).__module__.startswith("sdelab")] = y
    assert rel(out[True], out[False]) <= 80 * EPS32
    assert not math.isnan(rel(out[True], out[False]))


# --- IPNDMScheduler: diffusers' own VP levels, a v-prediction model ----------------------------
def test_ipndm_trained_betas_and_configs_across(tmp_path):
    levels = [float(v) for v in torch.linspace(0.999, 0.0, 11) ** 2]
    ours, theirs = (
        S.IPNDMScheduler(trained_betas=levels),
        diffusers.IPNDMScheduler(trained_betas=levels),
    )
    ref, _ = run_loop(theirs, 10)
    got, _ = run_loop(ours, 10)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert rel(got, ref) <= 80 * EPS32
    ours.save_pretrained(tmp_path)
    back = diffusers.IPNDMScheduler.from_pretrained(tmp_path)
    assert dict(back.config)["trained_betas"] == levels
    assert dict(S.IPNDMScheduler.from_pretrained(tmp_path).config) == dict(ours.config)


def test_ipndm_bad_calls_raise():
    s = S.IPNDMScheduler()
    x = torch.zeros(SHAPE)
    s.set_timesteps(5)
    with pytest.raises(ValueError, match=r"timestep must be one of scheduler.timesteps.*0\.123"):
        s.step(x, 0.123, x)
    with pytest.raises(ValueError, match="model_output must be a tensor shaped like sample"):
        s.step(torch.zeros(2), s.timesteps[0], x)
    with pytest.raises(ValueError, match=r"trained_betas must hold num_inference_steps \+ 1 = 6"):
        S.IPNDMScheduler(trained_betas=[0.5, 0.1]).set_timesteps(5)
    for t in s.timesteps:
        x = s.step(torch.zeros(SHAPE), t, x).prev_sample
    with pytest.raises(ValueError, match="step was called 6 times"):
        s.step(x, s.timesteps[-1], x)


# --- device discipline (checked on the CPU) -------------------------------------------------
@pytest.mark.parametrize("name", [*NAMES, "IPNDMScheduler"])
def test_step_reads_a_device_timestep_once(name):
    """On a GPU a timestep tensor lives on the device: sdelab reads it on the first call only
    (to find its index, as diffusers) and then counts calls. Checked on the CPU with "meta"
    timesteps after the first call (a read of one would raise) and the host-read counter of
    tests/test_host_sync.py: no tensor is read while stepping."""
    from test_host_sync import count_host_reads

    s = getattr(S, name)()
    s.set_timesteps(10)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    x = s.step(model(x, s.timesteps[0]), s.timesteps[0], x).prev_sample
    gen = {"generator": torch.Generator().manual_seed(1)}
    kw = gen if "generator" in inspect.signature(s.step).parameters else {}
    with count_host_reads() as stats:
        for _ in s.timesteps[1:]:
            t = torch.empty((), device="meta")
            x = s.step(torch.tanh(x), t, x, **kw).prev_sample
    assert stats["reads"] == 0
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", ["DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler"])
def test_python_timesteps_and_tuples(name):
    """Timesteps as Python ints give the same loop; ``return_dict=False`` gives the tuple."""
    ref, _ = run_loop(getattr(S, name)(), 10)
    s = getattr(S, name)()
    s.set_timesteps(10)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42))
    for t in s.timesteps.tolist():
        out = s.step(model(x, t), t, x, return_dict=False)
        assert isinstance(out, tuple)
        x = out[0]
    assert torch.equal(x, ref)
