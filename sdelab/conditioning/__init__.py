"""Conditional generation with an unconditional score: `sdelab.sample(..., condition=...)`.

`Inpaint` (imputation, RePaint), `LinearObservation` (imputation / colorization, DPS) and
`ClassGuidance`; one module per method. See the Conditional generation concept page.
"""

from .base import Condition
from .guidance import ClassGuidance
from .inpaint import Inpaint
from .linear import LinearObservation, grayscale_matrix
from .repaint import repaint_path

__all__ = [
    "ClassGuidance",
    "Condition",
    "Inpaint",
    "LinearObservation",
    "grayscale_matrix",
    "repaint_path",
]
