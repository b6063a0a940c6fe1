"""The six integrator options live in one place, `sdelab._ode.ODEOptions`."""

import dataclasses
import inspect

import pytest
import torch

import sdelab
from sdelab._ode import ODEOptions, odeint
from sdelab.solvers.ode import integrate_probability_flow

FIELDS = [f.name for f in dataclasses.fields(ODEOptions)]
ENTRY_POINTS = [
    odeint,
    integrate_probability_flow,
    sdelab.ProbabilityFlowODE,
    sdelab.log_likelihood,
    sdelab.encode,
    sdelab.decode,
]


def test_the_options_are_the_six_named():
    assert FIELDS == ["backend", "method", "rtol", "atol", "ode_dtype", "error_norm"]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_every_entry_point_takes_the_options_with_the_same_defaults(entry):
    """The keyword arguments are the public face; their defaults are ODEOptions'."""
    params = inspect.signature(entry).parameters
    defaults = ODEOptions()
    for name in FIELDS:
        assert name in params, f"{entry.__name__} lacks {name}"
        assert params[name].default == getattr(defaults, name), (entry.__name__, name)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": "jax"}, ValueError, "backend must be one of .* got 'jax'"),
        ({"method": "Euler"}, ValueError, "method must be one of scipy's .* got 'Euler'"),
        ({"backend": "torch", "method": "RK23"}, ValueError, "backend='torch'.* got 'RK23'"),
        ({"rtol": 0.0}, ValueError, "rtol must be a finite number > 0, got 0.0"),
        ({"atol": float("nan")}, ValueError, "atol must be a finite number > 0, got nan"),
        ({"rtol": "1e-3"}, TypeError, "rtol must be a real number, got '1e-3'"),
        ({"error_norm": "max"}, ValueError, "error_norm must be one of .* got 'max'"),
        ({"ode_dtype": torch.float32}, ValueError, "scipy backend integrates in float64"),
        ({"backend": "torch", "ode_dtype": torch.int32}, TypeError, "ode_dtype must be a float"),
    ],
)
def test_bad_options_are_named_with_their_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        ODEOptions(**kwargs)
    with pytest.raises(error, match=match):  # the same check, reached through a solver
        sdelab.ProbabilityFlowODE(**kwargs)


def test_options_are_frozen_and_tolerances_become_floats():
    opts = ODEOptions(rtol=1, atol=2)
    assert (type(opts.rtol), type(opts.atol)) == (float, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.rtol = 1e-3
