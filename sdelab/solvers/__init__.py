"""Solvers for the reverse process: predictors, correctors and adaptive integrators."""

from .base import AdaptiveResult, AdaptiveSolver, CountingScore, Solver
from .ode import ProbabilityFlowODE

__all__ = ["AdaptiveResult", "AdaptiveSolver", "CountingScore", "ProbabilityFlowODE", "Solver"]
