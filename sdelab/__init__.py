"""sdelab: score-based generative modelling with stochastic differential equations.

Forward SDEs (`VPSDE`, `SubVPSDE`, `VESDE`), the analytic oracle (`GaussianMixture`), scores.
"""

from .analytic import GaussianMixture
from .schedulers import (
    ScoreSdeVePipeline,
    ScoreSdeVeScheduler,
    ScoreSdeVpPipeline,
    ScoreSdeVpScheduler,
    score_from_diffusers_model,
)
from .scores import score_from_noise
from .sde import SDE, VESDE, VPSDE, GeometricBrownianMotion, OrnsteinUhlenbeck, SubVPSDE

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "GaussianMixture",
    "GeometricBrownianMotion",
    "OrnsteinUhlenbeck",
    "ScoreSdeVePipeline",
    "ScoreSdeVeScheduler",
    "ScoreSdeVpPipeline",
    "ScoreSdeVpScheduler",
    "SubVPSDE",
    "score_from_diffusers_model",
    "score_from_noise",
]
