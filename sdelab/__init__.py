"""sdelab: score-based generative modelling with stochastic differential equations.

Forward SDEs (`VPSDE`, `SubVPSDE`, `VESDE`), the analytic oracle (`GaussianMixture`), scores.
"""

from .analytic import GaussianMixture
from .scores import score_from_noise
from .sde import SDE, VESDE, VPSDE, GeometricBrownianMotion, OrnsteinUhlenbeck, SubVPSDE
from .solvers import TorchSDE

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "GaussianMixture",
    "GeometricBrownianMotion",
    "OrnsteinUhlenbeck",
    "SubVPSDE",
    "TorchSDE",
    "score_from_noise",
]
