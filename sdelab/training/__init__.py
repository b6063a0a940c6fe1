"""Training score models: the denoising score-matching loss and its parametrizations,
`train`, checkpoints (`load_checkpoint`), and the weighted Fisher divergence of a trained score
to the exact one (`fisher_divergence`)."""

from .checkpoint import CheckpointError, TrainedScore, load_checkpoint
from .loss import dsm_loss, from_score, to_score
from .metrics import FisherDivergence, fisher_divergence
from .train import TrainResult, train

__all__ = [
    "CheckpointError",
    "FisherDivergence",
    "TrainResult",
    "TrainedScore",
    "dsm_loss",
    "fisher_divergence",
    "from_score",
    "load_checkpoint",
    "to_score",
    "train",
]
