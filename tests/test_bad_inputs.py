"""Bad input and bad models fail loudly, naming the argument, the value and what was expected.

One row per case: a callable, the exception it must raise and a regex its message must match
(the regex names the argument or model call and the offending value). Every case was once a
silent failure (samples quietly turned float64, NaN images, garbage bits/dim) or an obscure one
(torchsde's AssertionError, torch internals' errors); see issue 13.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from sdelab import (
    VESDE,
    VPSDE,
    EulerMaruyama,
    GaussianMixture,
    ProbabilityFlowODE,
    ScoreSdeVePipeline,
    ScoreSdeVeScheduler,
    ScoreSdeVpPipeline,
    ScoreSdeVpScheduler,
    TorchSDE,
    bits_per_dim,
    decode,
    encode,
    log_likelihood,
    sample,
)
from sdelab.solvers.torchsde import STD_RATIO_LIMIT, std_ratio

VP = VPSDE()
MIX = GaussianMixture([[-1.0, 0.0], [1.0, 0.5]], [[0.3, 0.5], [0.4, 0.2]])
SCORE = MIX.score(VP)
X = MIX.sample(4, generator=torch.Generator().manual_seed(0))  # float32
SHAPE = (4, 2)


def nan_score(x, t):
    return torch.full_like(x, float("nan"))


def inf_score(x, t):
    return torch.full_like(x, float("inf"))


def as_dtype(dtype):
    return lambda x, t: SCORE(x, t).to(dtype)


def on_meta(x, t):  # a score that lives on another device than its input
    return torch.zeros_like(x, device="meta")


def run(solver, score=SCORE, **kw):
    kw.setdefault("steps", 4)
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    return lambda: sample(VP, score, solver, SHAPE, **kw)


def pipeline(kind, model, output_type="np", steps=3):
    cls, sched = {
        "ve": (ScoreSdeVePipeline, ScoreSdeVeScheduler),
        "vp": (ScoreSdeVpPipeline, ScoreSdeVpScheduler),
    }[kind]

    def go():
        pipe = cls(model, sched(), sample_size=2, in_channels=1)
        pipe.set_progress_bar_config(disable=True)
        return pipe(batch_size=2, num_inference_steps=steps, output_type=output_type)

    return go


def nan_below(t0):  # a VP noise model that returns NaN once t < t0
    return lambda x, c: torch.where(c[:, None, None, None] < t0, float("nan"), 0.0) + 0 * x


# the VP pipeline's step at which nan_below(0.5) first fires, from the scheduler's own grid
_VP_GRID = ScoreSdeVpScheduler()
_VP_GRID.set_timesteps(5)
NAN_STEP = 1 + next(i for i, t in enumerate(_VP_GRID.timesteps.tolist()) if t < 0.5)
DTYPE_MSG = r"score\(x, t\) must return a tensor of x's dtype torch.float32, got dtype {}"
DEVICE_MSG = r"score\(x, t\) must return a tensor on x's device cpu, got device meta"

CASES = {
    # --- a non-finite score with torchsde: FloatingPointError naming the score evaluation
    "torchsde-adaptive-nan": (
        run(TorchSDE(), nan_score, steps=None),
        FloatingPointError,
        r"score\(x, t\) returned NaN or inf, first at score evaluation 1 .*torchsde's adaptive "
        r"'srk'",
    ),
    "torchsde-adaptive-euler-inf": (
        run(TorchSDE("euler"), inf_score, steps=None),
        FloatingPointError,
        r"score\(x, t\) returned NaN or inf, first at score evaluation 1 .*'euler'",
    ),
    "torchsde-fixed-nan": (
        run(TorchSDE(adaptive=False), nan_score),
        FloatingPointError,
        r"score\(x, t\) returned NaN or inf, first at score evaluation 1 ",
    ),
    # --- a score whose output is not like x: dtype (TypeError) or device (ValueError)
    "em-float64": (
        run(EulerMaruyama(), as_dtype(torch.float64)),
        TypeError,
        DTYPE_MSG.format("torch.float64"),
    ),
    "em-int64": (
        run(EulerMaruyama(), as_dtype(torch.int64)),
        TypeError,
        DTYPE_MSG.format("torch.int64"),
    ),
    "em-float16": (
        run(EulerMaruyama(), as_dtype(torch.float16)),
        TypeError,
        DTYPE_MSG.format("torch.float16"),
    ),
    "pf-ode-float64": (
        run(ProbabilityFlowODE(rtol=1e-2, atol=1e-2), as_dtype(torch.float64), steps=None),
        TypeError,
        DTYPE_MSG.format("torch.float64"),
    ),
    "torchsde-float64": (
        run(TorchSDE(adaptive=False), as_dtype(torch.float64)),
        TypeError,
        DTYPE_MSG.format("torch.float64"),
    ),
    "em-other-device": (run(EulerMaruyama(), on_meta), ValueError, DEVICE_MSG),
    "torchsde-other-device": (run(TorchSDE(), on_meta, steps=None), ValueError, DEVICE_MSG),
    # the likelihood paths wrap the score the same way
    "log-likelihood-float64": (
        lambda: log_likelihood(VP, as_dtype(torch.float64), X, divergence="exact"),
        TypeError,
        DTYPE_MSG.format("torch.float64"),
    ),
    "log-likelihood-torch-float16": (
        lambda: log_likelihood(VP, as_dtype(torch.float16), X, backend="torch"),
        TypeError,
        DTYPE_MSG.format("torch.float16"),
    ),
    "log-likelihood-other-device": (
        lambda: log_likelihood(VP, on_meta, X, divergence="exact", backend="torch"),
        ValueError,
        DEVICE_MSG,
    ),
    "encode-float64": (
        lambda: encode(VP, as_dtype(torch.float64), X),
        TypeError,
        DTYPE_MSG.format("torch.float64"),
    ),
    "decode-int64": (
        lambda: decode(VP, as_dtype(torch.int64), X),
        TypeError,
        DTYPE_MSG.format("torch.int64"),
    ),
    # --- sample's dtype / generator / device, checked where the prior is drawn
    "sample-dtype-int64": (
        run(EulerMaruyama(), dtype=torch.int64),
        TypeError,
        r"dtype must be a floating torch.dtype .*got torch.int64",
    ),
    "sample-dtype-string": (
        run(EulerMaruyama(), dtype="float32"),
        TypeError,
        r"dtype must be a floating torch.dtype .*got 'float32'",
    ),
    "sample-generator-string": (
        run(EulerMaruyama(), generator="seed"),
        TypeError,
        r"generator must be a torch.Generator .*got 'seed'",
    ),
    "torchsde-generator-int": (
        run(TorchSDE(), generator=0, steps=None),
        TypeError,
        r"generator must be a torch.Generator .*got 0",
    ),
    "sample-generator-wrong-device": (
        run(EulerMaruyama(), device="meta"),
        ValueError,
        r"generator is on device cpu but the samples are drawn on device meta",
    ),
    "sample-device-bogus": (
        run(EulerMaruyama(), device="bogus"),
        ValueError,
        r"device must name a torch device .*got 'bogus'",
    ),
    "prior-sample-dtype": (
        lambda: VESDE().prior_sample((2, 2), dtype=torch.bool),
        TypeError,
        r"dtype must be a floating torch.dtype .*got torch.bool",
    ),
    "log-likelihood-generator-string": (
        lambda: log_likelihood(VP, SCORE, X, generator="seed"),
        TypeError,
        r"generator must be a torch.Generator .*got 'seed'",
    ),
    # --- pipelines: a NaN model raises instead of giving NaN arrays / black PIL images
    "ve-pipeline-nan-np": (
        pipeline("ve", nan_score),
        FloatingPointError,
        r"unet\(sample, t\) returned NaN or inf, first at unet evaluation 1 of 6 \(in pipeline "
        r"step 1 of 3\)",
    ),
    "ve-pipeline-nan-pil": (
        pipeline("ve", nan_score, output_type="pil"),
        FloatingPointError,
        r"unet\(sample, t\) returned NaN or inf, .*step 1 of 3",
    ),
    "vp-pipeline-nan-late": (
        pipeline("vp", nan_below(0.5), output_type="pil", steps=5),
        FloatingPointError,
        rf"unet\(sample, t\) returned NaN or inf, first at unet evaluation {NAN_STEP} of 5 "
        rf"\(in pipeline step {NAN_STEP} of 5\)",
    ),
    "vp-pipeline-float64": (
        pipeline("vp", lambda x, c: x.double()),
        TypeError,
        r"unet\(sample, t\) must return a tensor of x's dtype torch.float32, got dtype "
        r"torch.float64",
    ),
    # --- bits_per_dim: non-finite log-likelihoods or data outside data_range
    "bpd-nan-logp": (
        lambda: bits_per_dim(torch.tensor([0.0, float("nan")]), torch.full((2, 3), 0.5)),
        ValueError,
        r"logp must be finite, but 1 of its 2 entries are NaN/inf \(the first, logp\[1\], is nan\)",
    ),
    "bpd-inf-logp": (
        lambda: bits_per_dim(torch.tensor([-float("inf"), 0.0]), torch.full((2, 3), 0.5)),
        ValueError,
        r"logp must be finite.*logp\[0\], is -inf",
    ),
    "bpd-x-outside-range": (
        lambda: bits_per_dim(torch.zeros(2), torch.tensor([[0.5, -0.5], [0.2, 1.5]])),
        ValueError,
        r"x must lie in data_range \[0.0, 1.0\] .*got values in \[-0.5, 1.5\]",
    ),
    "bpd-x-outside-given-range": (
        lambda: bits_per_dim(torch.zeros(1), torch.tensor([[0.5, 2.0]]), data_range=(-1, 1)),
        ValueError,
        r"x must lie in data_range \[-1.0, 1.0\] .*got values in \[0.5, 2\]",
    ),
}


@pytest.mark.parametrize(("call", "exc", "match"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_named(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde's own warnings are not the point here
        with pytest.raises(exc, match=match):
            call()


def test_matching_dtypes_still_work():
    """The dtype check compares with x's dtype, not float32: float64 end to end is fine, and
    bits_per_dim accepts data on the edges of data_range."""
    score64 = MIX.to(dtype=torch.float64).score(VP)
    for solver in (EulerMaruyama(), TorchSDE(adaptive=False)):
        res = sample(VP, score64, solver, SHAPE, steps=4, dtype=torch.float64)
        assert res.x.dtype == torch.float64
    edges = torch.tensor([[0.0, 1.0]])
    assert torch.isfinite(bits_per_dim(torch.zeros(1), edges)).all()


# --- finite garbage: a fixed torchsde step beyond the stable one warns ---------------------------
def _runtime_warnings(sde, solver, steps, n=4):
    score = GaussianMixture([[0.0, 0.0]], [[1.0, 1.0]]).score(sde)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sample(
            sde, score, solver, (n, 2), steps=steps, generator=torch.Generator().manual_seed(0)
        )
    return res, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("method", ["srk", "euler"])
def test_unstable_fixed_torchsde_step_warns_and_names_enough_steps(method):
    sde, solver = VESDE(), TorchSDE(method, adaptive=False)
    _, msgs = _runtime_warnings(sde, solver, 5)
    assert len(msgs) == 1
    assert re.search(r"dt=0\.2 \(5 steps\) is beyond the stable step on VESDE", msgs[0])
    enough = int(re.search(r"use at least (\d+) steps", msgs[0]).group(1))
    assert _runtime_warnings(sde, solver, enough)[1] == []  # the advice is quiet ...
    assert len(_runtime_warnings(sde, solver, enough - 1)[1]) == 1  # ... and the least such


@pytest.mark.parametrize(
    ("sde", "method", "steps"),
    [(VESDE(), "srk", k) for k in (5, 10, 12, 15, 30)]
    + [(VESDE(), "euler", k) for k in (10, 11)]
    + [(VPSDE(), m, k) for m in ("srk", "euler") for k in (3, 5)],
)
def test_the_warning_predicts_the_sample_std(sde, method, steps):
    """On N(0, I) data with the exact score, `std_ratio` (a Python-float recursion) predicts
    the std torchsde's samples end with, and the solver warns exactly when it is more than
    1.5x off. n = 4000 x 2 entries: the std's standard error is 0.8%, so 5% is ~6 SE."""
    res, msgs = _runtime_warnings(sde, TorchSDE(method, adaptive=False), steps, n=4000)
    h = (sde.T - 1e-3) / steps
    predicted = std_ratio(sde, [sde.T - i * h for i in range(steps)] + [1e-3], method)
    truth = (sde.mean_coeff(1e-3) ** 2 + sde.std(1e-3) ** 2) ** 0.5
    assert float(res.x.std()) / truth == pytest.approx(predicted, rel=0.05)
    assert bool(msgs) == (not 1 / STD_RATIO_LIMIT <= predicted <= STD_RATIO_LIMIT)


def test_stable_or_adaptive_torchsde_is_quiet():
    for sde, solver, steps in [
        (VPSDE(), TorchSDE(adaptive=False), 10),
        (VESDE(), TorchSDE(adaptive=False), 20),
        (VESDE(), TorchSDE(), 5),  # adaptive: the controller picks the step
    ]:
        assert _runtime_warnings(sde, solver, steps)[1] == []
