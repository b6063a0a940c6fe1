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
from .conditioning import ClassGuidance, Inpaint, LinearObservation
from .inversion import invert, reconstruct
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
    DDIM,
    DEIS,
    DPM2,
    IPNDM,
    LMS,
    PC,
    PNDM,
    AncestralSampling,
    AnnealedLangevin,
    DPM2Ancestral,
    DPMpp2SAncestral,
    DPMSolver,
    EDMStochastic,
    Euler,
    EulerAncestral,
    EulerMaruyama,
    Heun,
    Langevin,
    ProbabilityFlowODE,
    ReverseDiffusion,
    TorchSDE,
    UniPC,
)
from .training import TrainResult, dsm_loss, load_checkpoint, train

__version__ = "0.1.0"

__all__ = [
    "DDIM",
    "DEIS",
    "DPM2",
    "IPNDM",
    "LMS",
    "PC",
    "PNDM",
    "SDE",
    "VESDE",
    "VPSDE",
    "AncestralSampling",
    "AnnealedLangevin",
    "ClassGuidance",
    "DPM2Ancestral",
    "DPMSolver",
    "DPMpp2SAncestral",
    "DiscreteVPSDE",
    "EDMStochastic",
    "Euler",
    "EulerAncestral",
    "EulerMaruyama",
    "GaussianMixture",
    "GeometricBrownianMotion",
    "Heun",
    "Inpaint",
    "Karras",
    "Langevin",
    "LikelihoodResult",
    "LinearObservation",
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
    "TrainResult",
    "UniPC",
    "UniformLogSNR",
    "UniformTime",
    "bits_per_dim",
    "decode",
    "dequantize",
    "dsm_loss",
    "encode",
    "invert",
    "load_checkpoint",
    "log_likelihood",
    "reconstruct",
    "sample",
    "score_from_diffusers_model",
    "score_from_noise",
    "time_grid",
    "train",
    "tweedie_denoise",
]
