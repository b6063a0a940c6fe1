"""A diffusers model runs with an sdelab scheduler (issue 14, item 4): a tiny random
``diffusers.UNet2DModel`` in a DDPMPipeline-style loop gives the same images with each sdelab
scheduler class as with the diffusers class of the same name.

The loop is diffusers' generic one (``init_noise_sigma``, ``scale_model_input``, ``step``;
DDPMPipeline itself skips the first two, which only the sigma-family classes need), with the
same starting noise and the same generator for the schedulers that draw noise. Tolerance: the
schedulers agree to float32 round-off per call (tests/test_scheduler_classes_sigma.py); the
random UNet is Lipschitz of order 1 on these inputs, so the [0, 1] images agree to 1e-4 after
at most 2 x 10 calls. DPMSolverSDEScheduler is left out: its noise is a torchsde Brownian tree
in diffusers and a generator in sdelab (equal in law only; tested in distribution there).
KarrasVeScheduler and RePaintScheduler have their own pipeline loops (churn / step_correct,
undo_step with an image and a mask): tests/test_scheduler_karras_repaint.py.
"""

from __future__ import annotations

import inspect

import diffusers
import pytest
import torch

import sdelab.schedulers as S

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

STEPS = 10
# every sdelab scheduler class with a diffusers class of the same name, the stochastic-by-tree one
# and the two with their own loops excepted (see the module docs)
NAMES = sorted(
    n
    for n in S.__all__
    if n.endswith("Scheduler")
    and not n.startswith("ScoreSde")
    and hasattr(diffusers, n)
    and n not in ("DPMSolverSDEScheduler", "KarrasVeScheduler", "RePaintScheduler")
)


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    net = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    return net.eval()


@torch.no_grad()
def generate(unet, scheduler, seed: int = 0) -> torch.Tensor:
    """DDPMPipeline's loop with the generic scheduler calls; images in [0, 1], (B, H, W, C)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn((2, 1, 8, 8), generator=g)
    scheduler.set_timesteps(STEPS)
    image = image * scheduler.init_noise_sigma
    kw = {"generator": g} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in scheduler.timesteps:
        out = unet(scheduler.scale_model_input(image, t), t).sample
        image = scheduler.step(out, t, image, **kw).prev_sample
    return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


def test_the_classes_are_found():
    assert {"EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_images_equal_diffusers(unet, name):
    ours = generate(unet, getattr(S, name)())
    ref = generate(unet, getattr(diffusers, name)())
    assert ours.shape == ref.shape == (2, 8, 8, 1)
    assert float((ours - ref).abs().max()) < 1e-4
    assert float(ref.std()) > 0.01  # a real image, not a constant
