"""Shared builders for the tests: small random problems of every kind."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit.layout import Layout
from nnkit.model import Model
from nnkit.objective import Objective


def make_problem(
    *,
    activation="tanh",
    widths=(5,),
    d=3,
    n=7,
    R=4,
    loss="squared",
    bias=True,
    output_trained=True,
    output_bias=True,
    seed=0,
    **objective,
):
    """A random ``(model, objective, theta (R, P), X (n, d), y (n,))``."""
    rng = np.random.default_rng(seed)
    depth = len(widths)
    layout = Layout(
        d=d,
        widths=tuple(widths),
        bias=(bias,) * depth if isinstance(bias, bool) else tuple(bias),
        output_trained=output_trained,
        output_bias=output_bias and output_trained,
        output_value=0.7,
    )
    acts = (activation,) * depth if isinstance(activation, str) else tuple(activation)
    model = Model(layout, acts, leaky_slope=0.1)
    obj = Objective(loss=loss, **objective)
    theta = rng.normal(size=(R, layout.size))
    X = rng.normal(size=(n, d))
    y = np.sign(rng.normal(size=n)) if loss == "logistic" else rng.normal(size=n)
    return model, obj, theta, X, y


@pytest.fixture
def problem():
    return make_problem
