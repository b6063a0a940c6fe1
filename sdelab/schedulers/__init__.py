"""diffusers-compatible schedulers and pipelines built on sdelab's SDEs.

Nothing here imports diffusers (or PIL, until PIL images are asked for).
"""

from ._config import FrozenConfig
from ._discrete import DDIMSchedulerOutput
from ._outputs import ImagePipelineOutput, SchedulerOutput, SdeVeOutput
from .adapter import score_from_diffusers_model
from .ddim import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler
from .dpm import (
    DPMSolverMultistepInverseScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
)
from .karras_ve import KarrasVeOutput, KarrasVeScheduler
from .pipelines import ScoreSdeVePipeline, ScoreSdeVpPipeline
from .pndm import IPNDMScheduler, PNDMScheduler
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
from .unipc_deis import DEISMultistepScheduler, UniPCMultistepScheduler
from .ve import ScoreSdeVeScheduler
from .vp import ScoreSdeVpScheduler

__all__ = [
    "DDIMInverseScheduler",
    "DDIMScheduler",
    "DDIMSchedulerOutput",
    "DDPMScheduler",
    "DEISMultistepScheduler",
    "DPMSolverMultistepInverseScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "FrozenConfig",
    "HeunDiscreteScheduler",
    "IPNDMScheduler",
    "ImagePipelineOutput",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KarrasVeOutput",
    "KarrasVeScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "RePaintScheduler",
    "RePaintSchedulerOutput",
    "SchedulerOutput",
    "ScoreSdeVePipeline",
    "ScoreSdeVeScheduler",
    "ScoreSdeVpPipeline",
    "ScoreSdeVpScheduler",
    "SdeVeOutput",
    "UniPCMultistepScheduler",
    "score_from_diffusers_model",
]
