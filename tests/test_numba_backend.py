"""The ``numba`` backend against the NumPy reference: values, gradients, training."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

from nnkit import activations, backends
from nnkit.config import TrainConfig
from nnkit.train import train

from conftest import make_problem

pytest.importorskip("numba")

NUMBA = backends.get("numba")
NUMPY = backends.get("numpy")

SHAPES = [
    {"widths": (5,)},
    {"widths": (4, 3), "bias": (True, False)},
    {"widths": (3, 5, 2), "output_bias": False},
    {"widths": (6,), "bias": False, "output_bias": False, "output_trained": False},
]
PENALTIES = [{}, {"l2": 0.05, "l1": 0.01, "regularize_bias": True}, {"reduction": "sum", "half": True}]


def compare(problem, rtol, dtype=np.float64, batches=False):
    model, obj, theta, X, y = problem
    theta = theta.astype(dtype)
    if batches:  # one batch per network, as minibatch SGD gives
        rng = np.random.default_rng(1)
        X = rng.normal(size=(theta.shape[0], 6, X.shape[1]))
        y = np.sign(rng.normal(size=(theta.shape[0], 6)))
    X, y = X.astype(dtype), y.astype(dtype)
    ref_loss, ref_grad = NUMPY.kernel(model, obj).value_and_grad(theta, X, y)
    loss, grad = NUMBA.kernel(model, obj).value_and_grad(theta, X, y)
    assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == ref_grad.shape
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    scale = np.maximum(np.abs(ref_grad).max(axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(grad / scale, ref_grad / scale, rtol=0, atol=rtol)


@pytest.mark.parametrize(
    "activation,loss,shape",
    list(itertools.product(activations.NAMES, ["squared", "logistic"], SHAPES)),
)
def test_value_and_gradient_equal_the_reference(activation, loss, shape):
    seed = zlib.crc32(f"{activation}{loss}{shape}".encode()) % 1000
    problem = make_problem(activation=activation, loss=loss, R=11, n=13, d=3, seed=seed, **shape)
    compare(problem, rtol=1e-12)


@pytest.mark.parametrize("penalty", PENALTIES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_penalties_and_conventions(penalty, loss):
    compare(make_problem(loss=loss, widths=(4, 3), R=9, n=7, seed=3, **penalty), rtol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_float32(activation):
    problem = make_problem(activation=activation, widths=(5, 4), R=10, n=17, seed=4)
    compare(problem, rtol=1e-5, dtype=np.float32)


@pytest.mark.parametrize("R", [1, 7, 8, 9, 17])
def test_odd_batch_sizes_and_per_init_batches(R):
    compare(make_problem(widths=(3,), R=R, n=5, seed=R), rtol=1e-12)
    compare(make_problem(widths=(3, 2), R=R, n=5, seed=R, loss="logistic"), rtol=1e-12, batches=True)


def test_extreme_inputs_match_and_stay_finite():
    model, obj, theta, X, y = make_problem(activation="tanh", widths=(4,), R=8, n=9, seed=5)
    theta = theta * 40.0  # saturated units, tanh and sigmoid at their flat ends
    compare((model, obj, theta, X, y), rtol=1e-12)
    model, obj, _, _, _ = make_problem(activation="sigmoid", loss="logistic", widths=(4,), R=8, seed=5)
    compare((model, obj, theta, X, np.sign(y)), rtol=1e-12)


def test_fifty_training_steps_end_at_the_same_parameters():
    model, obj, theta, X, y = make_problem(activation="tanh", widths=(6, 4), R=13, n=31, seed=6, l2=1e-3)
    cfg = TrainConfig(method="nesterov", lr=0.05, momentum=0.8, max_steps=50, grad_tol=0.0)
    ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    fast = train(NUMBA.kernel(model, obj), NUMBA, theta, X, y, cfg)
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(fast.status, ref.status)


def test_nan_stays_in_its_own_init():
    model, obj, theta, X, y = make_problem(widths=(4,), R=10, seed=7)
    theta[3, 0] = np.nan
    loss, grad = NUMBA.kernel(model, obj).value_and_grad(theta, X, y)
    assert np.isnan(loss[3]) and np.isfinite(np.delete(loss, 3)).all()
    assert np.isfinite(np.delete(grad, 3, axis=0)).all()


def test_auto_picks_numba_on_a_cpu_machine():
    if any(backends.probe(name).usable for name in ("cuda", "cupy")):
        pytest.skip("a GPU backend is usable here")
    assert backends.resolve("auto") == "numba"
