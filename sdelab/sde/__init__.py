"""Forward SDEs, their reversal, and reference solutions."""

from .base import SDE, ItoSDE, LinearSDE
from .discrete import DiscreteVPSDE
from .linear import GeometricBrownianMotion, OrnsteinUhlenbeck
from .reverse import ReverseSDE, Score
from .simulate import euler_maruyama_step, simulate
from .ve import VESDE
from .vp import VPSDE, SubVPSDE

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "DiscreteVPSDE",
    "GeometricBrownianMotion",
    "ItoSDE",
    "LinearSDE",
    "OrnsteinUhlenbeck",
    "ReverseSDE",
    "Score",
    "SubVPSDE",
    "euler_maruyama_step",
    "simulate",
]
