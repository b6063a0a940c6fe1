"""sdelab: score-based generative modelling with stochastic differential equations.

Forward SDEs (`VPSDE`, `SubVPSDE`, `VESDE`), the analytic oracle (`GaussianMixture`), scores.
"""

from .analytic import GaussianMixture
from .likelihood import LikelihoodResult, bits_per_dim, decode, dequantize, encode, log_likelihood
from .scores import score_from_noise
from .sde import SDE, VESDE, VPSDE, GeometricBrownianMotion, OrnsteinUhlenbeck, SubVPSDE
from .solvers import ProbabilityFlowODE

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "GaussianMixture",
    "GeometricBrownianMotion",
    "LikelihoodResult",
    "OrnsteinUhlenbeck",
    "ProbabilityFlowODE",
    "SubVPSDE",
    "bits_per_dim",
    "decode",
    "dequantize",
    "encode",
    "log_likelihood",
    "score_from_noise",
]
