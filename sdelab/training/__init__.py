"""Training score models: the denoising score-matching loss and its parametrizations, and the
weighted Fisher divergence of a trained score to the exact one."""

from .loss import dsm_loss, from_score, to_score
from .metrics import FisherDivergence, fisher_divergence

__all__ = ["FisherDivergence", "dsm_loss", "fisher_divergence", "from_score", "to_score"]
