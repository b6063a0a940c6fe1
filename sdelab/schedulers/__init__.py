"""diffusers-compatible schedulers and pipelines built on sdelab's SDEs.

Nothing here imports diffusers (or PIL, until PIL images are asked for).
"""

from ._config import FrozenConfig
from ._outputs import ImagePipelineOutput, SchedulerOutput, SdeVeOutput
from .adapter import score_from_diffusers_model
from .karras_ve import KarrasVeOutput, KarrasVeScheduler
from .pipelines import ScoreSdeVePipeline, ScoreSdeVpPipeline
from .repaint import RePaintScheduler, RePaintSchedulerOutput
from .sigma import (
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
)
from .ve import ScoreSdeVeScheduler
from .vp import ScoreSdeVpScheduler

__all__ = [
    "DPMSolverSDEScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "FrozenConfig",
    "HeunDiscreteScheduler",
    "ImagePipelineOutput",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KarrasVeOutput",
    "KarrasVeScheduler",
    "LMSDiscreteScheduler",
    "RePaintScheduler",
    "RePaintSchedulerOutput",
    "SchedulerOutput",
    "ScoreSdeVePipeline",
    "ScoreSdeVeScheduler",
    "ScoreSdeVpPipeline",
    "ScoreSdeVpScheduler",
    "SdeVeOutput",
    "score_from_diffusers_model",
]
