"""Hypothesis strategies shared by the tests: SDEs over their parameter ranges, times, shapes."""

import torch
from hypothesis import strategies as st

import sdelab


@st.composite
def vp_params(draw):
    beta_min = draw(st.floats(0.0, 5.0))
    beta_max = beta_min + draw(st.floats(0.01, 30.0))
    return beta_min, beta_max


@st.composite
def linear_sdes(draw, kinds=("vp", "subvp", "ve", "ou")):
    kind = draw(st.sampled_from(kinds))
    if kind in ("vp", "subvp"):
        beta_min, beta_max = draw(vp_params())
        cls = sdelab.VPSDE if kind == "vp" else sdelab.SubVPSDE
        return cls(beta_min=beta_min, beta_max=beta_max)
    if kind == "ve":
        sigma_min = draw(st.floats(1e-3, 1.0))
        sigma_max = sigma_min * draw(st.floats(1.5, 1e4))
        return sdelab.VESDE(sigma_min=sigma_min, sigma_max=sigma_max)
    return sdelab.OrnsteinUhlenbeck(
        theta=draw(st.floats(0.05, 5.0)), sigma=draw(st.floats(0.1, 3.0))
    )


times = st.floats(1e-3, 1.0)
dtypes = st.sampled_from([torch.float32, torch.float64])
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@st.composite
def discrete_vp_sdes(draw):
    """A `DiscreteVPSDE` from a diffusers beta schedule of 10 to 1000 training steps."""
    n = draw(st.integers(10, 1000))
    schedule = draw(st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2"]))
    return sdelab.DiscreteVPSDE.from_diffusers(
        {"num_train_timesteps": n, "beta_schedule": schedule, "beta_start": 1e-4, "beta_end": 0.02}
    )


@st.composite
def sdes_with_log_snr(draw):
    """Every kind of linear SDE with a closed-form log-SNR, the discrete VP included."""
    if draw(st.booleans()):
        return draw(discrete_vp_sdes())
    return draw(linear_sdes())
