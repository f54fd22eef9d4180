"""Exact Hessians (R-operator) against central differences of the reference gradient,
their structure (symmetry, blocks, penalties) and the classification of spectra."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem

from nnkit import backends
from nnkit.core import activations
from nnkit.landscape.critical import classify, spectrum
from nnkit.objective import hessian as hessian_module
from nnkit.objective.hessian import default_block, default_rows, hessian, hvp

KINK = 1e-3  # finite differences need every pre-activation this far from 0 (ReLU kinks)


def min_abs_preactivation(model, objective, theta, X):
    kernel = backends.get("numpy").kernel(model, objective)
    Z = kernel.forward(np, theta, X)[0][1:]
    return min(np.abs(z).min() for z in Z)


def smooth_problem(seed=0, X=None, **kw):
    """``make_problem`` at the first seed from ``seed`` whose pre-activations all stay
    ``KINK`` away from 0, so central differences never straddle a ReLU kink.
    ``X`` replaces the shared data (per-network X)."""
    for s in range(seed, seed + 1000):
        model, obj, theta, X0, y = make_problem(seed=s, **kw)
        Xs = X0 if X is None else X
        if min_abs_preactivation(model, obj, theta, Xs) > KINK:
            return model, obj, theta, Xs, y
    raise AssertionError("no seed away from the kinks")


def gradient(model, objective):
    return backends.get("numpy").kernel(model, objective).value_and_grad


def fd_hvp(model, objective, theta, V, X, y, eps=1e-5):
    """Central differences of the reference gradient along ``V (R, P)``."""
    grad = gradient(model, objective)
    return (grad(theta + eps * V, X, y)[1] - grad(theta - eps * V, X, y)[1]) / (2 * eps)


def fd_hessian(model, objective, theta, X, y):
    P = theta.shape[1]
    cols = [
        fd_hvp(model, objective, theta, np.broadcast_to(e, theta.shape), X, y) for e in np.eye(P)
    ]
    return np.stack(cols, axis=-1)


def rel_err(a, b):
    """Per-init relative error in the Frobenius norm."""
    axes = tuple(range(1, a.ndim))
    return np.sqrt(np.sum((a - b) ** 2, axis=axes) / np.sum(b**2, axis=axes))


def assert_hessian_matches(model, objective, theta, X, y, rtol=1e-6):
    H = hessian(model, objective, theta, X, y)
    assert rel_err(H, fd_hessian(model, objective, theta, X, y)).max() < rtol
    return H


@pytest.mark.parametrize("activation", activations.NAMES)
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_hvp_every_activation_and_loss(activation, loss):
    model, obj, theta, X, y = smooth_problem(
        activation=activation, loss=loss, widths=(4, 3), l2=0.2, seed=1
    )
    V = np.random.default_rng(0).normal(size=theta.shape)
    HV = hvp(model, obj, theta, V, X, y)
    assert rel_err(HV, fd_hvp(model, obj, theta, V, X, y)).max() < 1e-6


@pytest.mark.parametrize("widths", [(4,), (4, 3), (3, 4, 2)])
@pytest.mark.parametrize("activation", activations.NAMES)
def test_hessian_one_two_three_hidden_layers(widths, activation):
    assert_hessian_matches(*smooth_problem(activation=activation, widths=widths, seed=2))


@pytest.mark.parametrize(
    "shape",
    [
        {"bias": False, "output_bias": False},
        {"output_trained": False, "widths": (3, 4)},
        {"output_trained": False, "activation": "relu"},
        {"bias": (True, False), "widths": (3, 4)},
        {"bias": (False, True, False), "widths": (2, 3, 3), "activation": "softplus"},
        {"activation": ("tanh", "relu", "sigmoid"), "widths": (3, 4, 2)},
        {"reduction": "sum", "half": True, "loss": "logistic"},
        {"l2": 0.3, "l1": 0.1, "regularize_bias": True, "widths": (3, 2)},
        {"l2": 0.3, "loss": "logistic", "output_trained": False},
    ],
)
def test_hessian_bias_output_and_objective_options(shape):
    assert_hessian_matches(*smooth_problem(seed=3, **shape))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_hessian_per_network_data(activation, loss):
    """X (R, n, d) and y (R, n): each network on its own batch."""
    rng = np.random.default_rng(4)
    Xb = rng.normal(size=(3, 6, 3))
    yb = np.sign(rng.normal(size=(3, 6))) if loss == "logistic" else rng.normal(size=(3, 6))
    model, obj, theta, X, _ = smooth_problem(
        activation=activation, loss=loss, widths=(4, 3), R=3, X=Xb, seed=4
    )
    H = assert_hessian_matches(model, obj, theta, X, yb)
    for r in range(3):  # each network's Hessian is that of its own batch
        np.testing.assert_allclose(
            H[r], hessian(model, obj, theta[r : r + 1], Xb[r], yb[r])[0], rtol=1e-12, atol=1e-14
        )


def test_shared_data_equals_repeated_data():
    model, obj, theta, X, y = make_problem(widths=(4, 3), loss="logistic", seed=5)
    R = theta.shape[0]
    H_shared = hessian(model, obj, theta, X, y)
    H_rep = hessian(
        model, obj, theta, np.broadcast_to(X, (R,) + X.shape), np.broadcast_to(y, (R,) + y.shape)
    )
    np.testing.assert_allclose(H_shared, H_rep, rtol=1e-13, atol=1e-15)


def test_symmetry_before_and_after_symmetrising():
    model, obj, theta, X, y = make_problem(widths=(4, 3), activation="softplus", l2=0.1, seed=6)
    P = theta.shape[1]
    raw = np.stack(
        [hvp(model, obj, theta, np.broadcast_to(e, theta.shape), X, y) for e in np.eye(P)], axis=-1
    )
    assert (
        np.abs(raw - raw.transpose(0, 2, 1)).max(axis=(1, 2)) < 1e-12 * np.abs(raw).max(axis=(1, 2))
    ).all()
    H = hessian(model, obj, theta, X, y)
    np.testing.assert_array_equal(H, H.transpose(0, 2, 1))
    np.testing.assert_allclose(H, raw, rtol=1e-12, atol=1e-14)  # hessian == stacked hvp


@pytest.mark.parametrize("rows", [1, 3, 7, 1000])
def test_slice_size_does_not_change_the_result(rows):
    model, obj, theta, X, y = make_problem(
        widths=(3, 4), activation="sigmoid", loss="logistic", R=9, seed=7
    )
    np.testing.assert_allclose(
        hessian(model, obj, theta, X, y, rows=rows),
        hessian(model, obj, theta, X, y),
        rtol=1e-13,
        atol=1e-15,
    )


def test_default_rows_respect_the_budget():
    small = make_problem(widths=(5,))[0].layout
    assert default_rows(7, small) > 100  # small problem: many networks per slice
    layout = make_problem(widths=(10, 10))[0].layout
    rows = default_rows(100, layout)
    assert rows >= 1
    assert default_rows(100, layout, budget=2**30) > rows  # grows with the budget
    assert default_rows(10**6, layout) == 1  # never below one network


def test_default_block_respects_the_budget():
    small = make_problem(widths=(5,))[0].layout
    assert default_block(4, 7, small) == small.size  # small problem: one block
    layout = make_problem(widths=(50, 50))[0].layout
    B = default_block(100, 100, layout)
    assert 1 <= B < layout.size
    assert default_block(100, 100, layout, budget=2**30) > B  # grows with the budget
    assert default_block(10**6, 10**6, layout) == 1  # never below one direction


def test_networks_too_large_for_their_jacobians_take_the_r_operator(monkeypatch):
    model, obj, theta, X, y = make_problem(widths=(4, 3), activation="softplus", l2=0.1, seed=6)
    fast = hessian(model, obj, theta, X, y)
    monkeypatch.setattr(hessian_module, "MEMORY_BUDGET", 1)
    np.testing.assert_allclose(hessian(model, obj, theta, X, y), fast, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "shape",
    [
        {"widths": (4,)},
        {"widths": (3, 4, 2), "activation": "tanh", "bias": (False, True, True)},
        {"output_trained": False, "widths": (3, 4), "l2": 0.2},
        {"activation": ("tanh", "relu", "sigmoid"), "widths": (3, 4, 2), "loss": "logistic"},
    ],
)
def test_hessian_equals_the_stacked_r_operator(shape):
    """The Jacobian construction of the whole matrix against the R-operator's columns."""
    model, obj, theta, X, y = make_problem(seed=11, R=5, **shape)
    P = theta.shape[1]
    cols = [hvp(model, obj, theta, np.broadcast_to(e, theta.shape), X, y) for e in np.eye(P)]
    np.testing.assert_allclose(hessian(model, obj, theta, X, y), np.stack(cols, axis=-1),
                               rtol=1e-12, atol=1e-13 * np.abs(cols).max())  # fmt: skip


def test_penalties_l2_adds_diagonal_and_l1_adds_nothing():
    model, obj0, theta, X, y = make_problem(widths=(4,), seed=8)
    _, obj, *_ = make_problem(widths=(4,), seed=8, l2=0.25, l1=0.5)
    diff = hessian(model, obj, theta, X, y) - hessian(model, obj0, theta, X, y)
    mask = obj.penalty_mask(model.layout)
    np.testing.assert_allclose(diff, np.broadcast_to(np.diag(0.5 * mask), diff.shape), atol=1e-13)


def test_linear_least_squares_hessian_is_known():
    """One linear unit, fixed output 0.7, no bias, squared loss with mean: f = 0.7 X w,
    so H = 2/n * 0.49 * X^T X."""
    model, obj, theta, X, y = make_problem(
        activation="linear", widths=(1,), bias=False, output_trained=False, seed=9
    )
    H = hessian(model, obj, theta, X, y)
    expected = 2.0 / X.shape[0] * 0.49 * X.T @ X
    np.testing.assert_allclose(H, np.broadcast_to(expected, H.shape), rtol=1e-13)


def test_spectrum_is_batched_eigvalsh():
    model, obj, theta, X, y = make_problem(widths=(3, 2), seed=10)
    H = hessian(model, obj, theta, X, y)
    eigs = spectrum(H)
    assert eigs.shape == theta.shape
    for r in range(theta.shape[0]):
        np.testing.assert_allclose(eigs[r], np.linalg.eigvalsh(H[r]), rtol=1e-12, atol=1e-14)


def test_classify_hand_made_spectra():
    H = np.stack(
        [
            np.diag(d)
            for d in ([1.0, 2.0], [1.0, 0.0], [-1.0, 1.0], [1.0, 1e-9], [1.0, 2.0], [-2.0, -1.0])
        ]
    )
    grad_norm = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1e-9])
    c = classify(spectrum(H), grad_norm, grad_tol=1e-6)
    assert list(c["kind"]) == [
        "strict minimum",  # diag(1, 2)
        "degenerate minimum",  # diag(1, 0)
        "saddle",  # diag(-1, 1), index 1
        "degenerate minimum",  # |1e-9| <= 1e-7 * 1: zero relative to the largest
        "not converged",  # diag(1, 2) but a large gradient
        "saddle",  # diag(-2, -1): a maximum, index 2
    ]
    assert list(c["index"]) == [0, 0, 1, 0, 0, 2]
    assert list(c["nullity"]) == [0, 1, 0, 1, 0, 0]
    np.testing.assert_array_equal(c["eig_min"], [1.0, 0.0, -1.0, 1e-9, 1.0, -2.0])
    np.testing.assert_array_equal(c["eig_max"], [2.0, 1.0, 1.0, 1.0, 2.0, -1.0])
    # the tolerance is relative: scaling the spectrum changes nothing
    c2 = classify(1e6 * spectrum(H), grad_norm, grad_tol=1e-6)
    np.testing.assert_array_equal(c2["kind"], c["kind"])
    assert (
        classify(spectrum(H), grad_norm, grad_tol=1e-6, rel_tol=1e-10)["kind"][3]
        == "strict minimum"
    )


def test_classify_edge_cases():
    """An all-zero spectrum is a degenerate minimum; a row of NaN (an init that blew up)
    with an infinite gradient is "not converged", without warnings."""
    eigs = np.array([[0.0, 0.0], [np.nan, np.nan]])
    with np.errstate(all="raise"):
        c = classify(eigs, np.array([0.0, np.inf]), grad_tol=1e-6)
    assert list(c["kind"]) == ["degenerate minimum", "not converged"]
    assert list(c["nullity"]) == [2, 0]
