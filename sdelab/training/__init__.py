"""Training score models: the denoising score-matching loss and its parametrizations."""

from .loss import dsm_loss, from_score, to_score

__all__ = ["dsm_loss", "from_score", "to_score"]
