"""The diffusers-compatible layer against real diffusers, and against the analytic oracle.

diffusers is only a test dependency (the ``test`` extra); sdelab itself never imports it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sdelab
from sdelab import GaussianMixture, ScoreSdeVePipeline, ScoreSdeVpPipeline
from sdelab import ScoreSdeVeScheduler as SVe
from sdelab import ScoreSdeVpScheduler as SVp
from sdelab.schedulers import FrozenConfig, SchedulerOutput, SdeVeOutput

diffusers = pytest.importorskip("diffusers")
from diffusers import ScoreSdeVePipeline as DPipe  # noqa: E402
from diffusers import ScoreSdeVeScheduler as DVe  # noqa: E402
from diffusers import UNet2DModel  # noqa: E402
from diffusers.schedulers.deprecated.scheduling_sde_vp import (  # noqa: E402
    ScoreSdeVpScheduler as DVp,
)

VE_CASES = [
    ({}, 5),
    ({"sigma_max": 50.0, "sigma_min": 0.05, "snr": 0.2, "sampling_eps": 1e-3}, 37),
    ({"sigma_max": 378.0, "num_train_timesteps": 1000}, 300),
]
VP_CASES = [
    ({}, 5),
    ({"beta_min": 0.2, "beta_max": 15.0, "sampling_eps": 1e-2}, 37),
    ({"num_train_timesteps": 1000}, 300),
]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- import hygiene ---------------------------------------------------------------------------
def test_sdelab_never_imports_diffusers_transformers_or_pil():
    code = (
        "import sys, torch, sdelab\n"
        "s = sdelab.ScoreSdeVeScheduler(); s.set_timesteps(3); s.set_sigmas(3)\n"
        "p = sdelab.ScoreSdeVePipeline(lambda x, c: -x, s, sample_size=2, in_channels=1)\n"
        "p.set_progress_bar_config(disable=True)\n"
        "p(num_inference_steps=3, output_type='np')\n"
        "v = sdelab.ScoreSdeVpScheduler(); v.save_pretrained(sys.argv[1])\n"
        "bad = [m for m in ('diffusers', 'transformers', 'PIL') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", code, d], check=True, timeout=120)
    src = Path(sdelab.__file__).parent
    for f in src.rglob("*.py"):
        assert not re.search(
            r"^\s*(import|from)\s+(diffusers|transformers)\b", f.read_text(), re.M
        ), f


# --- schedulers step for step -----------------------------------------------------------------
def ve_pair(kw, n):
    d, s = DVe(**kw), SVe(**kw)
    for sch in (d, s):
        sch.set_timesteps(n)
        sch.set_sigmas(n)
    return d, s


@pytest.mark.parametrize(("kw", "n"), VE_CASES)
def test_ve_tables_match_diffusers(kw, n):
    d, s = DVe(**kw), SVe(**kw)
    assert torch.equal(d.timesteps, s.timesteps) and torch.equal(
        d.discrete_sigmas, s.discrete_sigmas
    )
    d, s = ve_pair(kw, n)
    assert torch.equal(d.timesteps, s.timesteps)
    assert torch.equal(d.discrete_sigmas, s.discrete_sigmas)
    # sigmas: VESDE.sigma in float32, one time at a time, is diffusers' number bit for bit
    # (n = 37 and 300 are longer than a SIMD block: evaluated as a vector, ~2% would differ) ...
    assert s.sigmas.dtype == torch.float32 and torch.equal(d.sigmas, s.sigmas)
    # ... and within 2 float32 ulp of sigma(t) in float64 (the power and the product by sigma_min
    # each round once)
    exact = s.sde.sigma(s.timesteps.double())
    ulp = torch.from_numpy(np.spacing(exact.float().numpy())).double()
    assert ((s.sigmas.double() - exact).abs() <= 2 * ulp).all()
    assert s.init_noise_sigma == d.init_noise_sigma and len(s) == len(d)
    assert {k: v for k, v in d.config.items() if not k.startswith("_")} == dict(s.config)


@pytest.mark.parametrize(("kw", "n"), VE_CASES)
def test_ve_steps_equal_diffusers(kw, n):
    d, s = ve_pair(kw, n)
    x0 = 3.0 * torch.randn(3, 2, 4, 4, generator=gen(0))
    xs, gs = [x0.clone(), x0.clone()], [gen(1), gen(1)]
    for i, t in enumerate(d.timesteps):
        means = []
        for k, sch in enumerate((d, s)):
            sigma = d.sigmas[i]
            m = -xs[k] / (1 + sigma**2) + 0.1 * torch.sin(xs[k])
            xs[k] = sch.step_correct(m, xs[k], generator=gs[k]).prev_sample
            m = -xs[k] / (1 + sigma**2) + 0.1 * torch.cos(xs[k])
            out = sch.step_pred(m, t, xs[k], generator=gs[k])
            xs[k] = out.prev_sample
            means.append(out.prev_sample_mean)
        assert torch.equal(xs[0], xs[1]) and torch.equal(means[0], means[1]), f"step {i}"
    idx = torch.tensor([0, n // 2, n - 1])
    z = torch.randn_like(x0)
    assert torch.equal(d.add_noise(x0, z, idx), s.add_noise(x0, z, idx))


def test_ve_tuple_outputs_per_sample_times_and_generator_lists():
    d, s = ve_pair({}, 8)
    x = torch.randn(2, 3, 2, 2, generator=gen(0))
    m = -x
    t = d.timesteps[3]
    dp = d.step_pred(m, t * torch.ones(2), x, generator=[gen(5), gen(6)], return_dict=False)
    sp = s.step_pred(m, t * torch.ones(2), x, generator=[gen(5), gen(6)], return_dict=False)
    assert isinstance(sp, tuple) and len(sp) == 2
    assert torch.equal(dp[0], sp[0]) and torch.equal(dp[1], sp[1])
    out = s.step_pred(m, float(t), x, generator=gen(5))
    assert isinstance(out, SdeVeOutput) and torch.equal(out[0], out.prev_sample)
    assert torch.equal(out["prev_sample_mean"], out.to_tuple()[1])
    dc = d.step_correct(m, x, generator=gen(7), return_dict=False)
    sc = s.step_correct(m, x, generator=gen(7), return_dict=False)
    assert isinstance(sc, tuple) and len(sc) == 1 and torch.equal(dc[0], sc[0])
    assert isinstance(s.step_correct(m, x, generator=gen(7)), SchedulerOutput)


@pytest.mark.parametrize(("kw", "n"), VP_CASES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_vp_steps_equal_diffusers(kw, n, per_sample):
    d, s = DVp(**kw), SVp(**kw)
    assert s.timesteps is None and s.sigmas is None and s.discrete_sigmas is None
    for sch in (d, s):
        sch.set_timesteps(n)
    assert torch.equal(d.timesteps, s.timesteps) and len(d) == len(s)
    assert dict(d.config) == {
        **dict(s.config),
        **{k: v for k, v in d.config.items() if k[0] == "_"},
    }
    x0 = torch.randn(3, 2, 4, 4, generator=gen(0))
    xs, gs = [x0.clone(), x0.clone()], [gen(1), gen(1)]
    for t in d.timesteps:
        tt = t * torch.ones(3) if per_sample else t
        means = []
        for k, sch in enumerate((d, s)):
            eps = 0.5 * xs[k] + 0.1 * torch.sin(xs[k])
            xs[k], mean = sch.step_pred(eps, xs[k], tt, generator=gs[k])
            means.append(mean)
        assert torch.equal(xs[0], xs[1]) and torch.equal(means[0], means[1])


shapes = st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple)


@settings(max_examples=25)
@given(
    sigma_min=st.floats(1e-3, 0.5),
    log_ratio=st.floats(0.5, 12.0),
    snr=st.floats(0.01, 0.5),
    eps=st.floats(1e-6, 1e-2),
    n=st.integers(1, 60),
    where=st.floats(0.0, 1.0),
    shape=shapes,
    seed=st.integers(0, 2**31 - 1),
)
def test_ve_one_step_equals_diffusers_everywhere(
    sigma_min, log_ratio, snr, eps, n, where, shape, seed
):
    kw = {"sigma_min": sigma_min, "sigma_max": sigma_min * math.exp(log_ratio), "snr": snr}
    kw["sampling_eps"] = eps
    d, s = ve_pair(kw, n)
    i = min(int(where * n), n - 1)
    x = torch.randn(shape, generator=gen(seed)) * float(d.sigmas[i])
    m = torch.randn(shape, generator=gen(seed + 1))
    a = d.step_pred(m, d.timesteps[i], x, generator=gen(seed + 2))
    b = s.step_pred(m, s.timesteps[i], x, generator=gen(seed + 2))
    assert torch.equal(a.prev_sample, b.prev_sample)
    assert torch.equal(a.prev_sample_mean, b.prev_sample_mean)
    a = d.step_correct(m, x, generator=gen(seed + 3)).prev_sample
    assert torch.equal(a, s.step_correct(m, x, generator=gen(seed + 3)).prev_sample)


@settings(max_examples=25)
@given(
    beta_min=st.floats(0.0, 1.0),
    beta_span=st.floats(0.1, 30.0),
    eps=st.floats(1e-5, 0.1),
    n=st.integers(1, 60),
    where=st.floats(0.0, 1.0),
    shape=shapes,
    per_sample=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_vp_one_step_equals_diffusers_everywhere(
    beta_min, beta_span, eps, n, where, shape, per_sample, seed
):
    kw = {"beta_min": beta_min, "beta_max": beta_min + beta_span, "sampling_eps": eps}
    d, s = DVp(**kw), SVp(**kw)
    for sch in (d, s):
        sch.set_timesteps(n)
    t = d.timesteps[min(int(where * n), n - 1)]
    if per_sample:
        t = t * torch.ones(shape[0])
    x = torch.randn(shape, generator=gen(seed))
    e = torch.randn(shape, generator=gen(seed + 1))
    a = d.step_pred(e, x, t, generator=gen(seed + 2))
    b = s.step_pred(e, x, t, generator=gen(seed + 2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_vp_uses_vpsde_and_diffusers_surprises():
    """VP's `score` is a noise prediction; dt = 1/n while the grid spacing is (1-eps)/(n-1)."""
    s = SVp()
    s.set_timesteps(4)
    x = torch.randn(2, 1, 2, 2, generator=gen(0))
    eps = torch.randn(2, 1, 2, 2, generator=gen(1))
    t = float(s.timesteps[1])
    _, mean = s.step_pred(eps, x, t)
    sde = s.sde
    score = -eps / sde.std(t)  # the VP marginal std (diffusers' rounding differs by ~ulps)
    dt = 1.0 / 4  # not the grid spacing (1 - 1e-3) / 3
    expect = x - (sde.drift(x, t) - sde.diffusion(t) ** 2 * score) * dt
    torch.testing.assert_close(mean, expect, rtol=1e-5, atol=1e-6)
    assert s.init_noise_sigma == 1.0


# --- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ours", "theirs", "kw"),
    [
        (SVe, DVe, {"sigma_max": 378.0, "num_train_timesteps": 1000, "snr": 0.17}),
        (SVp, DVp, {"beta_max": 15.0, "sampling_eps": 1e-2}),
        (SVe, DVe, {}),
        (SVp, DVp, {}),
    ],
)
def test_config_round_trips_both_ways(tmp_path, ours, theirs, kw):
    def typed(cfg):  # values and their JSON types (beta_max=20 stays an int, as in diffusers)
        return {k: (v, type(v)) for k, v in cfg.items() if not k.startswith("_")}

    a = ours(**kw)
    a.save_pretrained(tmp_path / "ours")
    raw = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    assert raw["_class_name"] == ours.__name__ and "_diffusers_version" in raw
    b = theirs.from_pretrained(tmp_path / "ours")  # real diffusers reads sdelab's file
    assert typed(b.config) == typed(a.config)
    # and back: diffusers saves, sdelab loads (also from a subfolder, as in a pipeline repo)
    b.save_pretrained(tmp_path / "repo" / "scheduler")
    c = ours.from_pretrained(tmp_path / "repo", subfolder="scheduler")
    assert c.config == a.config and typed(c.config) == typed(a.config)
    # the two files are the same but for the version stamps
    theirs_raw = json.loads((tmp_path / "repo" / "scheduler" / "scheduler_config.json").read_text())
    drop = ("_diffusers_version", "_sdelab_version")
    assert {k: v for k, v in raw.items() if k not in drop} == {
        k: v for k, v in theirs_raw.items() if k not in drop
    }
    # from_config in both directions, with an override
    assert ours.from_config(b.config).config == a.config
    key = "snr" if ours is SVe else "beta_min"
    assert theirs.from_config(a.config, **{key: 0.3}).config[key] == 0.3
    assert ours.from_config(dict(b.config), **{key: 0.3}).config[key] == 0.3


def test_unknown_config_keys_are_kept_and_reported(tmp_path):
    cfg = {**SVe().config, "mystery": 7, "_private": 1}
    with pytest.warns(UserWarning, match="mystery"):
        s = SVe.from_config(cfg)
    assert s.config.mystery == 7 and s.config["_private"] == 1
    s.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "scheduler_config.json").read_text())["mystery"] == 7
    with pytest.warns(UserWarning) as record:
        SVe.from_config(SVp().config | {"_class_name": "ScoreSdeVpScheduler"})
    messages = " | ".join(str(w.message) for w in record)
    assert "saved by 'ScoreSdeVpScheduler'" in messages and "beta_max" in messages
    with pytest.raises(TypeError, match="read-only"):
        s.config["snr"] = 1.0
    assert isinstance(s.config, FrozenConfig)


def test_config_errors(tmp_path):
    with pytest.raises(OSError, match="never downloads"):
        SVe.from_pretrained("google/ncsnpp-celebahq-256")
    with pytest.raises(OSError, match="scheduler_config.json"):
        SVe.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="sigma_mx"):
        SVe.from_config(SVe().config, sigma_mx=3.0)
    with pytest.raises(TypeError, match="from_pretrained"):
        SVe.from_config(str(tmp_path))
    with pytest.raises(ValueError, match="sigma_min"):
        SVe(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="sampling_eps"):
        SVp(sampling_eps=1.5)


# --- pipelines against diffusers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    return unet.eval()


@pytest.mark.parametrize(
    "kw", [{"sigma_max": 1.0}, {"sigma_max": 5.0, "snr": 0.3, "correct_steps": 2}]
)
def test_ve_pipeline_images_equal_diffusers(tiny_unet, kw):
    ours = ScoreSdeVePipeline(tiny_unet, SVe(**kw))
    ours.set_progress_bar_config(disable=True)
    run = {"batch_size": 2, "num_inference_steps": 4}
    mine = ours(**run, generator=gen(3), output_type="np").images
    d = DPipe(unet=tiny_unet, scheduler=DVe(**kw))
    d.set_progress_bar_config(disable=True)
    theirs = d(**run, generator=gen(3), output_type="np").images
    assert mine.shape == theirs.shape == (2, 8, 8, 3) and mine.dtype == theirs.dtype
    assert 0 < ((mine > 0) & (mine < 1)).mean()  # not all clamped: the comparison means something
    assert np.array_equal(mine, theirs)  # every number identical
    pil = ours(**run, generator=gen(3)).images
    theirs_pil = d(**run, generator=gen(3)).images
    assert [im.mode for im in pil] == ["RGB", "RGB"] and pil[0].size == (8, 8)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(pil, theirs_pil, strict=True)
    )
    pt = ours(**run, generator=gen(3), output_type="pt", return_dict=False)[0]
    assert torch.equal(pt.permute(0, 2, 3, 1), torch.from_numpy(mine))
    raw = ours(**run, generator=gen(3), output_type="latent").images
    assert torch.equal(raw.clamp(0, 1), pt) and not torch.equal(raw, pt)


def test_pipelines_take_any_callable_and_channel_count():
    calls = []

    def model(x, c):
        calls.append(c.shape)
        return -x / (1 + c[:, None, None, None] ** 2)

    ve = ScoreSdeVePipeline(model, SVe(sigma_max=2.0), sample_size=(3, 5), in_channels=1)
    ve.set_progress_bar_config(disable=True)
    out = ve(batch_size=2, num_inference_steps=3, generator=gen(0), output_type="np")
    assert out.images.shape == (2, 3, 5, 1) and len(calls) == 6 and calls[0] == (2,)
    pil = ve(batch_size=2, num_inference_steps=3, generator=gen(0)).images
    assert pil[0].mode == "L" and pil[0].size == (5, 3)

    class Out:
        def __init__(self, sample):
            self.sample = sample

    vp = ScoreSdeVpPipeline(lambda x, t: Out(0.1 * x), SVp(), sample_size=4, in_channels=2)
    vp.set_progress_bar_config(disable=True)
    assert vp(batch_size=3, num_inference_steps=3, output_type="pt").images.shape == (3, 2, 4, 4)
    assert vp.to("cpu") is vp and vp.device == torch.device("cpu")


# --- the pipelines sample the right distribution with the exact score ----------------------------
D = 16  # 1 x 4 x 4 "images"
ORACLE = GaussianMixture(
    torch.stack([torch.linspace(-1.0, 1.0, D), -0.5 * torch.ones(D)]),
    torch.stack([0.3 * torch.ones(D), torch.linspace(0.2, 0.6, D)]),
    torch.tensor([0.4, 0.6]),
)
N_SAMPLES = 6000
# Discretisation allowance (absolute, on means and covariance entries), measured with 20000-40000
# samples (largest of both): VE pipeline with 100 noise levels 0.011, VP pipeline with 200 steps
# 0.008, native VP Euler-Maruyama with 100 steps 0.008, native VE PC with 100 steps 0.021 (0.040
# with 50 steps, 0.010 with 200: first order in 1/steps).
ALLOWANCE = 0.03


def assert_moments(x: torch.Tensor) -> None:
    x = x.reshape(x.shape[0], -1).double()
    n = x.shape[0]
    mean, cov = ORACLE.mean().double(), ORACLE.covariance().double()
    se_mean = (cov.diag() / n).sqrt()  # a mean of n draws is off by ~std / sqrt(n)
    c = x - x.mean(0)
    prod = c[:, :, None] * c[:, None, :]
    se_cov = prod.std(0) / math.sqrt(n)  # the same for each covariance entry
    assert ((x.mean(0) - mean).abs() <= 5 * se_mean + ALLOWANCE).all()
    assert ((c.T @ c / (n - 1) - cov).abs() <= 5 * se_cov + ALLOWANCE).all()


def ve_oracle_model(sde):
    """A perfect VE score network s(x, sigma): the exact score of p_0 * N(0, sigma^2 I) (the
    paper's VE convention; VESDE's marginal adds sigma(t)^2 - sigma_min^2, so the mixture is
    blurred by sigma_min first)."""
    blurred = GaussianMixture(
        ORACLE.means, (ORACLE.stds**2 + sde.sigma_min**2).sqrt(), ORACLE.weights
    )
    log_ratio = math.log(sde.sigma_max / sde.sigma_min)

    def model(x, sigma):
        t = (torch.log(sigma / sde.sigma_min) / log_ratio).clamp(0.0, 1.0)
        return blurred.marginal_score(sde, x, t)

    return model


def test_ve_pipeline_samples_the_oracle():
    sched = SVe(sigma_max=20.0, sigma_min=0.01)
    pipe = ScoreSdeVePipeline(ve_oracle_model(sched.sde), sched, sample_size=4, in_channels=1)
    pipe.set_progress_bar_config(disable=True)
    x = pipe(N_SAMPLES, 100, generator=gen(11), output_type="latent").images
    assert x.shape == (N_SAMPLES, 1, 4, 4)
    assert_moments(x)


def test_vp_pipeline_samples_the_oracle():
    sched = SVp()
    sde = sched.sde
    score = ORACLE.score(sde)

    def noise_model(x, t):  # what a perfect noise-prediction network returns
        return -sde.std(t)[:, None, None, None] * score(x, t)

    pipe = ScoreSdeVpPipeline(noise_model, sched, sample_size=4, in_channels=1)
    pipe.set_progress_bar_config(disable=True)
    assert_moments(pipe(N_SAMPLES, 200, generator=gen(12), output_type="latent").images)


# --- the native path ------------------------------------------------------------------------------
def test_adapter_score_values(tiny_unet):
    ve = SVe(sigma_max=20.0).sde
    x = torch.randn(3, 3, 8, 8, generator=gen(0))
    t = torch.tensor([0.9, 0.5, 0.1])
    score = sdelab.score_from_diffusers_model(tiny_unet, ve)
    with torch.no_grad():
        expect = tiny_unet(x, ve.sigma(t)).sample
        assert torch.equal(score(x, t), expect)
        assert torch.equal(score(x, 0.5), tiny_unet(x, ve.sigma(torch.full((3,), 0.5))).sample)
    vp = SVp().sde
    exact = ORACLE.score(vp)
    eps_model = lambda x, c: -vp.std(c / 999.0)[:, None, None, None] * exact(x, c / 999.0)  # noqa: E731
    s = sdelab.score_from_diffusers_model(eps_model, vp, time_scale=999.0)
    y = torch.randn(4, 1, 4, 4, generator=gen(1))
    tt = torch.tensor([0.05, 0.3, 0.6, 1.0])
    torch.testing.assert_close(s(y, tt), exact(y, tt))
    with pytest.raises(ValueError, match="prediction"):
        sdelab.score_from_diffusers_model(eps_model, vp, prediction="x0")


def test_native_path_samples_the_oracle():
    """The same models driven through `sdelab.sample` with sdelab's own solvers."""
    vp = SVp().sde
    exact = ORACLE.score(vp)

    def eps_model(x, t):
        return -vp.std(t)[:, None, None, None] * exact(x, t)

    score = sdelab.score_from_diffusers_model(eps_model, vp)
    shape = (N_SAMPLES, 1, 4, 4)
    res = sdelab.sample(vp, score, sdelab.EulerMaruyama(), shape, steps=100, generator=gen(13))
    assert_moments(res.x)
    ve = SVe(sigma_max=20.0).sde
    score = sdelab.score_from_diffusers_model(ve_oracle_model(ve), ve)
    solver = sdelab.PC(sdelab.ReverseDiffusion(), sdelab.Langevin(snr=0.05))
    res = sdelab.sample(ve, score, solver, shape, steps=100, eps=1e-5, generator=gen(14))
    assert_moments(res.x)


# --- bad input ------------------------------------------------------------------------------------
def test_bad_input_gives_clear_errors():
    vp = SVp()
    x = torch.randn(2, 1, 2, 2)
    with pytest.raises(ValueError, match="set_timesteps"):
        vp.step_pred(x, x, torch.tensor(0.5))
    with pytest.raises(ValueError, match="set_timesteps"):
        DVp().step_pred(x, x, torch.tensor(0.5))  # as in diffusers
    with pytest.raises(TypeError, match="sampling_eps"):
        vp.set_timesteps(10, 1e-3)  # VE's signature used on VP
    vp.set_timesteps(10)
    with pytest.raises(ValueError, match=r"shaped like x \(2, 1, 2, 2\)"):
        vp.step_pred(x[:1], x, torch.tensor(0.5))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        vp.step_pred(x, x, torch.ones(3) * 0.5)
    with pytest.raises(ValueError, match="generators"):
        vp.step_pred(x, x, 0.5, generator=[gen(0)] * 3)

    ve = SVe()
    ve.set_timesteps(10)  # without set_sigmas: diffusers silently uses the old 2000-level table
    with pytest.raises(ValueError, match="set_sigmas"):
        ve.step_pred(x, ve.timesteps[0], x)
    ve.set_sigmas(10)
    # diffusers broadcasts a (1, ...) model output over the batch without a word
    d = DVe()
    d.set_timesteps(10)
    d.set_sigmas(10)
    assert d.step_pred(x[:1], d.timesteps[0], x).prev_sample.shape == x.shape
    with pytest.raises(ValueError, match="model_output"):
        ve.step_pred(x[:1], ve.timesteps[0], x)
    with pytest.raises(ValueError, match="model_output"):
        ve.step_correct(x[:, :, :1], x)
    with pytest.raises(ValueError, match="timestep must lie in"):
        ve.step_pred(x, 1.5, x)
    with pytest.raises(ValueError, match="noise"):
        ve.add_noise(x, x[:1], torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer indices"):
        ve.add_noise(x, x, torch.tensor([0.5, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        ve.add_noise(x, x, torch.tensor([1, 10]))
    flat = torch.zeros(2, 5)  # diffusers' add_noise would mis-broadcast this to (2, 1, 2, 5)
    noisy = ve.add_noise(flat, torch.ones(2, 5), torch.tensor([0, 9]))
    assert torch.equal(noisy, ve.discrete_sigmas[[0, 9]][:, None].expand(2, 5))

    pipe = ScoreSdeVePipeline(lambda s, c: s, SVe(), sample_size=2, in_channels=1)
    with pytest.raises(ValueError, match="output_type.*'jpeg'"):
        pipe(num_inference_steps=2, output_type="jpeg")
    with pytest.raises(ValueError, match="sample_size"):
        ScoreSdeVePipeline(lambda s, c: s, SVe())(num_inference_steps=2)
    bad = ScoreSdeVePipeline(lambda s, c: s[:, :1], SVe(), sample_size=2, in_channels=3)
    bad.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="shaped like sample"):
        bad(num_inference_steps=2, output_type="np")
    with pytest.raises(TypeError, match="ScoreSdeVpScheduler"):
        ScoreSdeVpPipeline(lambda s, c: s, SVe())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.set_progress_bar_config(disable=True)
        with pytest.raises(ValueError, match="batch_size"):
            pipe(batch_size=0)
