"""`KarrasVeScheduler` and `RePaintScheduler` against diffusers 0.42.1: the same pipeline-style
loop (a deterministic model of the sample and the noise level, a deterministic start, the same
seeded generator on both sides) gives the same samples to float32 round-off.

Tolerance: both sides run in float32; sdelab's coefficients are Python floats where diffusers'
are float32 0-d tensors, so each call may differ by a few float32 ulps relative to the sample;
the bound is ``8 * calls * eps32`` relative to the sample's max, as in
``tests/test_scheduler_classes_sigma.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import sdelab.schedulers as S

# diffusers' tables pass tensors through NumPy 2 (DeprecationWarning)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EPS32 = float(torch.finfo(torch.float32).eps)
SHAPE = (2, 3, 4, 4)


def _diffusers_karras_ve():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers.schedulers.deprecated.scheduling_karras_ve import KarrasVeScheduler
    return KarrasVeScheduler


def ve_model(x: torch.Tensor, sigma) -> torch.Tensor:
    """A smooth model output $(D - x)/\\sigma$ of a VE model: D a squashed x."""
    s = float(sigma)
    return (torch.tanh(x / (1.0 + s)) * 0.8 - x) / s


def karras_ve_loop(sched, steps: int, seed: int = 0):
    """diffusers' KarrasVePipeline loop (churn, Euler step, Heun correction)."""
    gen = torch.Generator().manual_seed(seed)
    sched.set_timesteps(steps)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42)) * sched.init_noise_sigma
    calls = 0
    for t in sched.timesteps:
        sigma = sched.schedule[t]
        sigma_prev = sched.schedule[t - 1] if t > 0 else 0
        x_hat, sigma_hat = sched.add_noise_to_input(x, sigma, generator=gen)
        out = sched.step(ve_model(x_hat, sigma_hat), sigma_hat, sigma_prev, x_hat)
        calls += 1
        if sigma_prev != 0:
            out = sched.step_correct(
                ve_model(out.prev_sample, sigma_prev),
                sigma_hat,
                sigma_prev,
                x_hat,
                out.prev_sample,
                out.derivative,
            )
            calls += 1
        x = out.prev_sample
    return x, calls


KARRAS_OPTS = [{}, {"s_churn": 0.0}, {"s_min": 0.0, "s_max": 20000.0, "s_churn": 5.0}]


@pytest.mark.parametrize("opts", KARRAS_OPTS)
@pytest.mark.parametrize("steps", [10, 50])
def test_karras_ve_loop_equals_diffusers(opts, steps):
    ref_sched = _diffusers_karras_ve()(**opts)
    ours = S.KarrasVeScheduler(**opts)
    ref, calls = karras_ve_loop(ref_sched, steps)
    got, _ = karras_ve_loop(ours, steps)
    assert torch.equal(ours.timesteps, ref_sched.timesteps)
    assert torch.equal(ours.schedule, ref_sched.schedule)
    rel = float((got - ref).abs().max() / ref.abs().max())
    assert rel < 8 * calls * EPS32, rel


def test_karras_ve_churn_follows_the_seed():
    """Same generator seed: same sample; another seed: another sample (the churn is drawn)."""
    a, _ = karras_ve_loop(S.KarrasVeScheduler(), 10, seed=1)
    b, _ = karras_ve_loop(S.KarrasVeScheduler(), 10, seed=1)
    c, _ = karras_ve_loop(S.KarrasVeScheduler(), 10, seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_karras_ve_churn_std_is_the_forward_noising():
    """add_noise_to_input adds noise of std sqrt(s_hat^2 - s^2) * s_noise (n = 20000 draws)."""
    sched = S.KarrasVeScheduler(s_churn=80.0, s_noise=1.0)
    sched.set_timesteps(10)
    x = torch.zeros(20000)
    x_hat, s_hat = sched.add_noise_to_input(x, 1.0, generator=torch.Generator().manual_seed(0))
    assert s_hat == pytest.approx(2**0.5)  # gamma capped at sqrt(2) - 1
    n = x.numel()
    assert abs(float(x_hat.std()) - 1.0) < 5 / (2 * n) ** 0.5
    assert abs(float(x_hat.mean())) < 5 / n**0.5


def test_karras_ve_config_round_trip(tmp_path):
    ours = S.KarrasVeScheduler(s_churn=10.0, sigma_max=50.0)
    ours.save_pretrained(tmp_path)
    ref = _diffusers_karras_ve().from_pretrained(tmp_path)
    assert ref.config.s_churn == 10.0 and ref.config.sigma_max == 50.0
    ref.save_pretrained(tmp_path / "d")
    back = S.KarrasVeScheduler.from_pretrained(tmp_path / "d")
    assert back.config["s_churn"] == 10.0 and back.config["sigma_max"] == 50.0


def test_karras_ve_bad_input():
    with pytest.raises(ValueError, match="sigma_max"):
        S.KarrasVeScheduler(sigma_min=1.0, sigma_max=0.5)
    sched = S.KarrasVeScheduler()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sched.add_noise_to_input(torch.zeros(SHAPE), 1.0)
    sched.set_timesteps(5)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="model_output"):
        sched.step(torch.zeros(2, 3), 1.0, 0.5, x)
    with pytest.raises(TypeError, match="dtype"):
        sched.step(x.double(), 1.0, 0.5, x)
    with pytest.raises(ValueError, match="sigma_prev"):
        sched.step_correct(x, 1.0, 0.0, x, x, x)
    with pytest.raises(NotImplementedError):
        sched.add_noise(x, x, torch.tensor([1]))


# --- RePaint --------------------------------------------------------------------------------
def eps_model(x: torch.Tensor, t) -> torch.Tensor:
    """A smooth noise prediction of the sample and the training step."""
    w = float(t) / 1000.0
    return torch.tanh(0.7 * x) * (0.5 + 0.4 * w) + 0.1 * x


def repaint_loop(sched, steps: int, jump_length: int, jump_n_sample: int, eta: float, seed=0):
    """diffusers' RePaintPipeline loop: step on down moves, undo_step on up moves."""
    gen = torch.Generator().manual_seed(seed)
    g0 = torch.Generator().manual_seed(7)
    original = torch.rand(SHAPE, generator=g0) * 2 - 1
    mask = (torch.rand(SHAPE, generator=g0) > 0.5).float()
    x = torch.randn(SHAPE, generator=gen)
    sched.set_timesteps(steps, jump_length, jump_n_sample)
    sched.eta = eta
    t_last = sched.timesteps[0] + 1
    calls = 0
    for t in sched.timesteps:
        if t < t_last:
            x = sched.step(eps_model(x, t), t, x, original, mask, gen).prev_sample
        else:
            x = sched.undo_step(x, t_last, gen)
        t_last = t
        calls += 1
    return x, calls


REPAINT_CASES = [
    (10, 3, 2, 0.0, {}),
    (10, 3, 2, 1.0, {}),
    (50, 10, 3, 0.5, {}),
    (50, 10, 2, 0.0, {"clip_sample": False, "beta_schedule": "squaredcos_cap_v2"}),
]


@pytest.mark.parametrize(("steps", "length", "repeats", "eta", "opts"), REPAINT_CASES)
def test_repaint_loop_equals_diffusers(steps, length, repeats, eta, opts):
    import diffusers

    ref_sched = diffusers.RePaintScheduler(**opts)
    ours = S.RePaintScheduler(**opts)
    ref, calls = repaint_loop(ref_sched, steps, length, repeats, eta)
    got, _ = repaint_loop(ours, steps, length, repeats, eta)
    assert torch.equal(ours.timesteps, ref_sched.timesteps)
    rel = float((got - ref).abs().max() / ref.abs().max())
    assert rel < 8 * calls * EPS32, rel


def test_repaint_keeps_the_known_part_at_the_end():
    """After the last step (to the clean level) the known pixels are the original image."""
    sched = S.RePaintScheduler()
    x, _ = repaint_loop(sched, 10, 3, 2, 1.0)
    g0 = torch.Generator().manual_seed(7)
    original = torch.rand(SHAPE, generator=g0) * 2 - 1
    mask = torch.rand(SHAPE, generator=g0) > 0.5
    assert torch.allclose(x[mask], original[mask], atol=1e-6)


def test_repaint_undo_step_is_the_forward_process():
    """undo_step from x = 0 over r steps has std sqrt(1 - prod(1 - beta_k)) (n = 20000)."""
    sched = S.RePaintScheduler()
    sched.set_timesteps(50)
    x = sched.undo_step(torch.zeros(20000), 100, torch.Generator().manual_seed(0))
    ac = sched.sde.alphas_cumprod
    var = 1 - float(ac[119] / ac[99])
    n = x.numel()
    assert abs(float(x.var()) / var - 1) < 5 * (2 / n) ** 0.5


def test_repaint_bad_input():
    sched = S.RePaintScheduler()
    x = torch.zeros(SHAPE)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sched.step(x, 10, x, x, x)
    sched.set_timesteps(10, 3, 2)
    with pytest.raises(ValueError, match="timestep"):
        sched.step(x, 5000, x, x, x)
    with pytest.raises(ValueError, match="original_image"):
        sched.step(x, 100, x, torch.zeros(2, 3), x)
    with pytest.raises(ValueError, match="jump_length"):
        sched.set_timesteps(10, 0, 2)
    with pytest.raises(NotImplementedError):
        sched.add_noise(x, x, torch.tensor([1]))


# --- the noise rules of the ancestral sigma-family classes ----------------------------------
@pytest.mark.parametrize(
    "name", ["EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler"]
)
def test_ancestral_noise_from_a_list_of_generators_equals_diffusers(name):
    """One generator per batch element (diffusers' rule): the same draws as diffusers."""
    import diffusers

    def loop(sched):
        sched.set_timesteps(10)
        x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42)) * sched.init_noise_sigma
        gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
        for t in sched.timesteps:
            out = eps_model(sched.scale_model_input(x, t), t)
            x = sched.step(out, t, x, generator=gens).prev_sample
        return x

    ref, got = loop(getattr(diffusers, name)()), loop(getattr(S, name)())
    rel = float((got - ref).abs().max() / ref.abs().max())
    assert rel < 8 * 20 * EPS32, rel
