"""Solvers for the reverse process: predictors, correctors and adaptive integrators."""

from .ancestral import AncestralSampling
from .base import AdaptiveResult, AdaptiveSolver, CountingScore, Solver
from .ddim import DDIM
from .deis import DEIS
from .dpm_solver import DPMSolver
from .edm import EDMStochastic
from .euler_maruyama import EulerMaruyama
from .karras import DPM2, DPM2Ancestral, DPMpp2SAncestral, Euler, EulerAncestral, Heun
from .langevin import AnnealedLangevin, Langevin
from .lms import LMS
from .ode import ProbabilityFlowODE
from .pc import PC, Corrector, Predictor
from .pndm import IPNDM, PNDM
from .reverse_diffusion import ReverseDiffusion
from .torchsde import TorchSDE
from .unipc import UniPC

__all__ = [
    "DDIM",
    "DEIS",
    "DPM2",
    "IPNDM",
    "LMS",
    "PC",
    "PNDM",
    "AdaptiveResult",
    "AdaptiveSolver",
    "AncestralSampling",
    "AnnealedLangevin",
    "Corrector",
    "CountingScore",
    "DPM2Ancestral",
    "DPMSolver",
    "DPMpp2SAncestral",
    "EDMStochastic",
    "Euler",
    "EulerAncestral",
    "EulerMaruyama",
    "Heun",
    "Langevin",
    "Predictor",
    "ProbabilityFlowODE",
    "ReverseDiffusion",
    "Solver",
    "TorchSDE",
    "UniPC",
]
