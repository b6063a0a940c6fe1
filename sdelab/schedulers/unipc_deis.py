r"""diffusers' UniPC and DEIS schedulers as thin adapters over `sdelab.UniPC` and `sdelab.DEIS` on
`sdelab.DiscreteVPSDE.from_diffusers(config)` (the grid of the DPM-Solver family, see
`sdelab.schedulers.dpm`).

| class | sdelab solver |
|---|---|
| `UniPCMultistepScheduler` | `sdelab.UniPC` (UniP + UniC, ``bh1`` / ``bh2``) |
| `DEISMultistepScheduler` | `sdelab.DEIS` (``logrho``) |
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from ..solvers.deis import DEIS
from ..solvers.unipc import UniPC
from .dpm import _SigmaGrid
from .sigma import KARRAS_COMPATIBLES

__all__ = ["DEISMultistepScheduler", "UniPCMultistepScheduler"]


class UniPCMultistepScheduler(_SigmaGrid):
    r"""UniPC (Zhao et al. 2023) on `sdelab.DiscreteVPSDE`, stepped by `sdelab.UniPC`: each
    ``step`` call first corrects the previous call's prediction with this call's model output
    (UniC, unless the previous index is in ``disable_corrector``), then predicts (UniP-$p$):

    $$ \tilde x_t = \frac{\sigma_t}{\sigma_{s_0}}x_{s_0} - m_t(e^{\hat h} - 1)D_{s_0}
       - m_t B(h)\sum_{k=1}^{p-1} a_k\,\frac{D_{s_k} - D_{s_0}}{r_k}, \qquad \hat h = -h, $$

    with $B(h) = \hat h$ (``bh1``) or $e^{\hat h} - 1$ (``bh2``), and the noise-prediction
    form for ``predict_x0=False``. Orders: warm-up, and with ``lower_order_final``
    $p \le$ the calls left, as diffusers. The last call to $s = 0$
    (``final_sigmas_type="zero"``) returns $D$ (diffusers returns NaN there for ``bh1`` and
    for the noise prediction; sdelab's $D$ is its limit). Refused: ``solver_p``, flow sigmas,
    dynamic shifting, ``final_sigmas_type="sigma_min"`` with a sigma ramp (diffusers repeats
    the last level: a zero-length step)."""

    _compatibles = KARRAS_COMPATIBLES
    _round_karras = True
    _repeat_last = True
    _allowed: ClassVar[dict[str, tuple]] = {
        "solver_type": ("bh1", "bh2"),
        "solver_order": (1, 2, 3),
        "solver_p": (None,),
        "shift_terminal": (None,),
    }

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        predict_x0: bool = True,
        solver_type: str = "bh2",
        lower_order_final: bool = True,
        disable_corrector: list[int] = [],  # noqa: B006 - diffusers' default, saved as []
        solver_p: Any = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        final_sigmas_type: str = "zero",
        rescale_betas_zero_snr: bool = False,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        shift_terminal: float | None = None,
    ) -> None:
        cfg = {k: v for k, v in locals().items() if k != "self"}
        if cfg["solver_type"] in ("midpoint", "heun", "logrho"):  # diffusers' rename
            cfg["solver_type"] = "bh2"
        cfg["disable_corrector"] = list(disable_corrector)
        self._register_config(**cfg)
        self._setup()
        if self._ramp is not None and final_sigmas_type == "sigma_min":
            raise ValueError(
                "final_sigmas_type='sigma_min' with a sigma ramp (use_karras_sigmas, ...) is not "
                "supported by sdelab's UniPCMultistepScheduler: diffusers repeats the last level "
                "there (a step of length 0); use final_sigmas_type='zero'"
            )
        self.solver = UniPC(
            order=solver_order,
            variant=cfg["solver_type"],
            predict="data" if predict_x0 else "noise",
            lower_order_final=bool(lower_order_final),
            disable_corrector=tuple(int(i) for i in disable_corrector),
            final_denoise=final_sigmas_type == "zero",
        )

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One UniC + UniP call (see the class docs)."""
        return self._step(model_output, timestep, sample, None, return_dict)


class DEISMultistepScheduler(_SigmaGrid):
    r"""DEIS (Zhang & Chen 2023) on `sdelab.DiscreteVPSDE`, stepped by `sdelab.DEIS`: in the
    scaled state $y = x/m$ and $\rho = \sigma/m$, the polynomial through the last $p$ noise
    predictions in $\log\rho$ integrated exactly,

    $$ x_t = m_t\Big(\frac{x_{s_0}}{m_{s_0}} + \sum_{j<p} C_j\,\hat\epsilon_{s_j}\Big), \qquad
       C_j = \int_{\rho_{s_0}}^{\rho_t}\ell_j(\log\rho)\,\mathrm d\rho. $$

    Warm-up and ``lower_order_final`` (grids under 15 steps) as diffusers. diffusers ends at
    $s_0 = \sqrt{(1 - \bar\alpha_0)/\bar\alpha_0}$ (or, with a sigma ramp, repeats the last
    level: a step of length 0, the identity)."""

    _compatibles = KARRAS_COMPATIBLES
    _round_karras = True
    _allowed: ClassVar[dict[str, tuple]] = {
        "algorithm_type": ("deis",),
        "solver_type": ("logrho",),
        "solver_order": (1, 2, 3),
    }

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        solver_order: int = 2,
        prediction_type: str = "epsilon",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        algorithm_type: str = "deis",
        solver_type: str = "logrho",
        lower_order_final: bool = True,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        use_flow_sigmas: bool = False,
        flow_shift: float = 1.0,
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
        use_dynamic_shifting: bool = False,
        time_shift_type: str = "exponential",
    ) -> None:
        cfg = {k: v for k, v in locals().items() if k != "self"}
        if cfg["algorithm_type"] in ("dpmsolver", "dpmsolver++"):  # diffusers' renames
            cfg["algorithm_type"] = "deis"
        if cfg["solver_type"] in ("midpoint", "heun", "bh1", "bh2"):
            cfg["solver_type"] = "logrho"
        self._register_config(**cfg)
        self._setup()
        self.solver = DEIS(order=solver_order, lower_order_final=bool(lower_order_final))

    def step(
        self,
        model_output: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        return_dict: bool = True,
    ):
        """One DEIS call (see the class docs)."""
        return self._step(model_output, timestep, sample, None, return_dict)
