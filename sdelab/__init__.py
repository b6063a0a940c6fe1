"""sdelab: score-based generative modelling with stochastic differential equations.

Forward SDEs (`VPSDE`, `SubVPSDE`, `VESDE`), the analytic oracle (`GaussianMixture`), one
entry point for sampling (`sample`, with the solvers `EulerMaruyama`, `ReverseDiffusion`,
`AncestralSampling`, `Langevin`, `AnnealedLangevin`, `PC`, `ProbabilityFlowODE`, `TorchSDE`),
likelihoods through the probability-flow ODE (`log_likelihood`, `bits_per_dim`, `encode`,
`decode`), a diffusers-compatible layer (`ScoreSdeVpScheduler`, `ScoreSdeVeScheduler`,
`ScoreSdeVePipeline`, `ScoreSdeVpPipeline`) and the `sdelab compare` experiments
(`sdelab.experiments`).
"""

from .analytic import GaussianMixture
from .likelihood import LikelihoodResult, bits_per_dim, decode, dequantize, encode, log_likelihood
from .sampling import SampleResult, sample, tweedie_denoise
from .schedulers import (
    ScoreSdeVePipeline,
    ScoreSdeVeScheduler,
    ScoreSdeVpPipeline,
    ScoreSdeVpScheduler,
    score_from_diffusers_model,
)
from .schedules import Karras, QuadraticTime, Schedule, Times, UniformLogSNR, UniformTime, time_grid
from .scores import score_from_noise
from .sde import (
    SDE,
    VESDE,
    VPSDE,
    DiscreteVPSDE,
    GeometricBrownianMotion,
    LinearSDE,
    OrnsteinUhlenbeck,
    SubVPSDE,
)
from .solvers import (
    IPNDM,
    PC,
    PNDM,
    AncestralSampling,
    AnnealedLangevin,
    EulerMaruyama,
    Langevin,
    ProbabilityFlowODE,
    ReverseDiffusion,
    TorchSDE,
)

__version__ = "0.1.0"

__all__ = [
    "IPNDM",
    "PC",
    "PNDM",
    "SDE",
    "VESDE",
    "VPSDE",
    "AncestralSampling",
    "AnnealedLangevin",
    "DiscreteVPSDE",
    "EulerMaruyama",
    "GaussianMixture",
    "GeometricBrownianMotion",
    "Karras",
    "Langevin",
    "LikelihoodResult",
    "LinearSDE",
    "OrnsteinUhlenbeck",
    "ProbabilityFlowODE",
    "QuadraticTime",
    "ReverseDiffusion",
    "SampleResult",
    "Schedule",
    "ScoreSdeVePipeline",
    "ScoreSdeVeScheduler",
    "ScoreSdeVpPipeline",
    "ScoreSdeVpScheduler",
    "SubVPSDE",
    "Times",
    "TorchSDE",
    "UniformLogSNR",
    "UniformTime",
    "bits_per_dim",
    "decode",
    "dequantize",
    "encode",
    "log_likelihood",
    "sample",
    "score_from_diffusers_model",
    "score_from_noise",
    "time_grid",
    "tweedie_denoise",
]
