"""Training score models: the denoising score-matching loss and its parametrizations,
`train`, and checkpoints (`load_checkpoint`)."""

from .checkpoint import CheckpointError, TrainedScore, load_checkpoint
from .loss import dsm_loss, from_score, to_score
from .train import TrainResult, train

__all__ = [
    "CheckpointError",
    "TrainResult",
    "TrainedScore",
    "dsm_loss",
    "from_score",
    "load_checkpoint",
    "to_score",
    "train",
]
