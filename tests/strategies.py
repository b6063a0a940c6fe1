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
