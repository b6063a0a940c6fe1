import pytest
import torch

import sdelab


@pytest.mark.parametrize("sde", [sdelab.VPSDE(), sdelab.SubVPSDE(), sdelab.VESDE()], ids=repr)
@pytest.mark.parametrize("t", [0.3, "tensor"])
def test_score_from_noise_inverts_the_noise_parametrisation(sde, t):
    """A model predicting eps = -std * grad log p_t gives back the exact score."""
    gm = sdelab.GaussianMixture([[0.0, 1.0], [2.0, -1.0]], [0.5, 0.3])
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    if t == "tensor":
        t = torch.linspace(0.1, 0.9, 5)
    seen = []

    def eps_model(x, tb):
        seen.append(tb)
        std = sde.std(tb)
        return -std[:, None] * gm.score(sde)(x, tb)

    got = sdelab.score_from_noise(sde, eps_model)(x, t)
    torch.testing.assert_close(got, gm.score(sde)(x, t))
    assert seen[0].shape == (5,) and seen[0].dtype == x.dtype


def test_score_from_noise_checks_the_model_output():
    score = sdelab.score_from_noise(sdelab.VPSDE(), lambda x, t: x[:, :1])
    with pytest.raises(
        ValueError, match=r"eps_model must return a tensor shaped like x \(3, 2\), got \(3, 1\)"
    ):
        score(torch.zeros(3, 2), 0.5)
    with pytest.raises(TypeError, match="eps_model must be callable"):
        sdelab.score_from_noise(sdelab.VPSDE(), None)
