"""Back-propagation against central finite differences, and the batch against a loop."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem

from nnkit import backends
from nnkit.backends.reference import ReferenceKernel
from nnkit.core import activations
from nnkit.core.layout import Layout
from nnkit.core.losses import ObjectiveSpec
from nnkit.core.model import Model


def finite_difference(kernel, theta, X, y, eps=1e-6):
    """Central differences of ``kernel.value`` along every coordinate: ``(R, P)``."""
    grad = np.empty_like(theta)
    for j in range(theta.shape[1]):
        step = np.zeros_like(theta)
        step[:, j] = eps
        grad[:, j] = (kernel.value(theta + step, X, y) - kernel.value(theta - step, X, y)) / (2 * eps)
    return grad


def assert_gradient_matches(model, objective, theta, X, y):
    kernel = backends.get("numpy").kernel(model, objective)
    loss, grad = kernel.value_and_grad(theta, X, y)
    np.testing.assert_allclose(loss, kernel.value(theta, X, y), rtol=1e-14)
    fd = finite_difference(kernel, theta, X, y)
    rel = np.linalg.norm(grad - fd, axis=1) / np.linalg.norm(fd, axis=1)
    assert rel.max() < 1e-6, rel


@pytest.mark.parametrize("activation", activations.NAMES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_gradient_every_activation_and_loss(activation, loss):
    assert_gradient_matches(*make_problem(activation=activation, loss=loss, seed=1))


@pytest.mark.parametrize("widths", [(4,), (4, 3), (3, 5, 2)])
@pytest.mark.parametrize("activation", ["sigmoid", "relu", "softplus"])
def test_gradient_one_two_three_hidden_layers(widths, activation):
    assert_gradient_matches(*make_problem(activation=activation, widths=widths, seed=2))


@pytest.mark.parametrize(
    "penalty", [{"l2": 0.3}, {"l1": 0.2}, {"l2": 0.1, "l1": 0.05, "regularize_bias": True}]
)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_gradient_with_regularisers(penalty, loss):
    assert_gradient_matches(*make_problem(loss=loss, widths=(4, 3), seed=3, **penalty))


@pytest.mark.parametrize(
    "convention", [{"reduction": "sum"}, {"half": True}, {"reduction": "sum", "half": True}]
)
def test_gradient_loss_conventions(convention):
    assert_gradient_matches(*make_problem(seed=4, **convention))


@pytest.mark.parametrize(
    "shape",
    [
        {"bias": False, "output_bias": False},
        {"output_trained": False},
        {"bias": (True, False), "widths": (3, 4)},
        {"activation": ("tanh", "relu"), "widths": (3, 4)},
    ],
)
def test_gradient_bias_and_output_options(shape):
    assert_gradient_matches(*make_problem(seed=5, **shape))


def test_gradient_per_init_minibatches():
    """X (R, b, d) and y (R, b): each network on its own batch, as in SGD."""
    model, obj, theta, X, _ = make_problem(widths=(4, 3), R=3, seed=6)
    rng = np.random.default_rng(0)
    Xb = rng.normal(size=(3, 5, X.shape[1]))
    yb = rng.normal(size=(3, 5))
    assert_gradient_matches(model, obj, theta, Xb, yb)


def test_penalty_leaves_biases_alone_by_default():
    model, obj, theta, X, y = make_problem(l2=1.0, seed=7)
    kernel = ReferenceKernel(model, obj)
    _, grad = kernel.value_and_grad(theta, X, y)
    bare = ReferenceKernel(model, make_problem(seed=7)[1])
    _, grad0 = bare.value_and_grad(theta, X, y)
    bias = model.layout.bias_mask()
    np.testing.assert_array_equal(grad[:, bias], grad0[:, bias])
    np.testing.assert_allclose(grad[:, ~bias], grad0[:, ~bias] + 2 * theta[:, ~bias])


def forward_one(model, w, X):
    """A plain single-network forward pass with no batching at all."""
    lay = model.layout
    h = X
    for layer in range(1, lay.depth + 1):
        z = h @ lay.weights(w[None], layer)[0]
        if lay.bias[layer - 1]:
            z = z + lay.biases(w[None], layer)[0]
        h = model.activation(layer).value(np, z)
    f = h @ lay.view(w[None], "W_out")[0] if lay.output_trained else lay.output_value * h.sum(-1)
    if lay.output_bias:
        f = f + lay.view(w[None], "b_out")[0]
    return f


@pytest.mark.parametrize("widths", [(5,), (4, 3), (3, 2, 4)])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_batch_equals_loop_over_inits(widths, loss):
    model, obj, theta, X, y = make_problem(widths=widths, loss=loss, R=6, l2=0.01, seed=8)
    kernel = backends.get("numpy").kernel(model, obj)
    loss_b, grad_b = kernel.value_and_grad(theta, X, y)
    for r in range(theta.shape[0]):
        loss_r, grad_r = kernel.value_and_grad(theta[r : r + 1], X, y)
        np.testing.assert_allclose(loss_b[r], loss_r[0], rtol=1e-13)
        np.testing.assert_allclose(grad_b[r], grad_r[0], rtol=1e-12, atol=1e-14)
        f = forward_one(model, theta[r], X)
        np.testing.assert_allclose(kernel.predict(theta, X)[r], f, rtol=1e-13)


def test_known_values():
    """Hand-computed loss of x -> relu(w . x) with a fixed unit output."""
    model = Model(Layout(2, (1,), (False,), output_trained=False), ("relu",))
    kernel = backends.get("numpy").kernel(model, ObjectiveSpec(half=True))
    theta = np.array([[1.0, -2.0]])
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.5]])
    y = np.array([0.0, 0.0, 1.0])
    # outputs 1, 0, 1 -> residuals 1, 0, 0 -> mean(r^2)/2 = 1/6
    np.testing.assert_allclose(kernel.value(theta, X, y), [1 / 6])
