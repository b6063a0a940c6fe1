"""Solvers for the reverse process: predictors, correctors and adaptive integrators."""

from .ancestral import AncestralSampling
from .base import AdaptiveResult, AdaptiveSolver, CountingScore, Solver
from .euler_maruyama import EulerMaruyama
from .langevin import AnnealedLangevin, Langevin
from .ode import ProbabilityFlowODE
from .pc import PC, Corrector, Predictor
from .pndm import IPNDM, PNDM
from .reverse_diffusion import ReverseDiffusion
from .torchsde import TorchSDE

__all__ = [
    "IPNDM",
    "PC",
    "PNDM",
    "AdaptiveResult",
    "AdaptiveSolver",
    "AncestralSampling",
    "AnnealedLangevin",
    "Corrector",
    "CountingScore",
    "EulerMaruyama",
    "Langevin",
    "Predictor",
    "ProbabilityFlowODE",
    "ReverseDiffusion",
    "Solver",
    "TorchSDE",
]
