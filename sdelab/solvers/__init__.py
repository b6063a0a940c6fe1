"""Solvers for the reverse process: predictors, correctors and adaptive integrators."""

from .base import AdaptiveResult, AdaptiveSolver, CountingScore, Solver
from .torchsde import TorchSDE

__all__ = ["AdaptiveResult", "AdaptiveSolver", "CountingScore", "Solver", "TorchSDE"]
