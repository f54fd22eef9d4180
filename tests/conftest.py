"""Shared builders for the tests: small random problems of every kind.

The CUDA kernels are tested on a GPU when one is asked for (``NNKIT_TEST_GPU=1``, as
``benchmarks/gpu_check.py`` does) and in Numba's CUDA simulator otherwise; the choice
has to be made before Numba is first imported, so it is made here.
"""

from __future__ import annotations

import os

if os.environ.get("NNKIT_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnkit.backends import gpu  # noqa: E402
from nnkit.layout import Layout  # noqa: E402
from nnkit.model import Model  # noqa: E402
from nnkit.objective import Objective  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a usable CUDA device: without one they are skipped,
    saying why."""
    marked = [item for item in items if "gpu" in item.keywords]
    if not marked:
        return
    usable, _, reason = gpu.cupy_device()
    if not usable:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
        for item in marked:
            item.add_marker(skip)


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
