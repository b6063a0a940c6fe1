"""Solvers for the reverse process: predictors, correctors and adaptive integrators."""

from .base import AdaptiveResult, AdaptiveSolver, CountingScore, Solver

__all__ = ["AdaptiveResult", "AdaptiveSolver", "CountingScore", "Solver"]
