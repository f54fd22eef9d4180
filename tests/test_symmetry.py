"""Network symmetries: they keep the function, canonical forms agree, align undoes them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem

from nnkit import backends
from nnkit.landscape.symmetry import align, allowed, canonical, distance, random_symmetry, transform

# (activation, hidden biases)
KINDS = [
    ("tanh", True),
    ("sigmoid", True),
    ("relu", False),
    ("relu", True),
    ("leaky_relu", True),
    ("softplus", True),
    ("linear", True),
]
WIDTHS = [(5,), (4, 3)]
# (output_trained, output_bias)
OUTPUTS = [(False, False), (True, False), (True, True)]

CASES = [
    pytest.param(act, bias, w, out, id=f"{act}-b{bias:d}-L{len(w)}-out{out[0]:d}{out[1]:d}")
    for act, bias in KINDS
    for w in WIDTHS
    for out in OUTPUTS
]


def problem(act, bias, widths, out, seed=0, R=4):
    model, obj, theta, X, _ = make_problem(
        activation=act, bias=bias, widths=widths, output_trained=out[0], output_bias=out[1],
        d=3, n=9, R=R, seed=seed,
    )
    return model, obj, theta, X


def assert_same_outputs(kernel, theta, X, f):
    """``kernel``'s outputs on ``X`` equal ``f`` to 1e-12 relative."""
    np.testing.assert_allclose(kernel.predict(theta, X), f, rtol=0, atol=1e-12 * np.abs(f).max())


@pytest.mark.parametrize("act, bias, widths, out", CASES)
def test_symmetries_keep_function_canonical_form_and_align_back(act, bias, widths, out):
    model, obj, theta, X = problem(act, bias, widths, out)
    kernel = backends.get("numpy").kernel(model, obj)
    rng = np.random.default_rng(1)
    moved = random_symmetry(model, theta, rng)
    assert np.abs(moved - theta).max() > 0.1

    f = kernel.predict(theta, X)
    assert_same_outputs(kernel, moved, X, f)

    canon = canonical(model, theta)
    np.testing.assert_allclose(canonical(model, moved), canon, rtol=0, atol=1e-10)
    np.testing.assert_allclose(canonical(model, canon), canon, rtol=0, atol=1e-12)
    assert_same_outputs(kernel, canon, X, f)
    assert distance(model, theta, moved).max() < 1e-10

    copies = random_symmetry(model, np.tile(theta[0], (5, 1)), rng)
    np.testing.assert_allclose(align(model, theta[0], copies) - theta[0], 0, atol=1e-10)


@pytest.mark.parametrize("act, bias, widths, out", CASES)
def test_each_allowed_symmetry_alone_keeps_function(act, bias, widths, out):
    model, obj, theta, X = problem(act, bias, widths, out, seed=2)
    kernel = backends.get("numpy").kernel(model, obj)
    f = kernel.predict(theta, X)
    for layer, k in enumerate(widths, start=1):
        flip_ok, scale_ok = allowed(model, layer)
        one = [None] * len(widths)
        ops = [{"perms": one[: layer - 1] + [np.arange(k)[::-1]] + one[layer:]}]
        if flip_ok:
            ops.append({"flips": one[: layer - 1] + [-np.ones(k)] + one[layer:]})
        if scale_ok:
            ops.append({"scales": one[: layer - 1] + [np.linspace(0.5, 2.5, k)] + one[layer:]})
        for op in ops:
            moved = transform(model, theta, **op)
            assert np.abs(moved - theta).max() > 0.01, op
            assert_same_outputs(kernel, moved, X, f)


def test_allowed_follows_activation_and_layout():
    def rules(act, bias=True, out=(True, True), widths=(3, 3)):
        model = problem(act, bias, widths, out)[0]
        return [allowed(model, layer) for layer in range(1, len(widths) + 1)]

    assert rules("tanh") == [(True, False)] * 2
    assert rules("linear") == [(True, True)] * 2
    assert rules("relu") == rules("leaky_relu") == [(False, True)] * 2
    assert rules("softplus") == [(False, False)] * 2
    assert rules("sigmoid") == [(True, False)] * 2
    assert rules("sigmoid", bias=False, out=(True, False)) == [(False, False)] * 2
    assert rules("sigmoid", bias=(True, False), out=(True, True)) == [(False, False), (True, False)]
    assert rules("tanh", out=(False, False)) == [(True, False), (False, False)]
    assert rules("relu", out=(False, False)) == [(False, True), (False, False)]


@pytest.mark.parametrize(
    "act, bias, out, kwargs, match",
    [
        ("relu", True, (True, True), {"flips": [-np.ones(5)]}, "relu is not odd"),
        ("softplus", True, (True, True), {"scales": [2 * np.ones(5)]}, "not positively"),
        ("tanh", True, (True, True), {"scales": [2 * np.ones(5)]}, "not positively"),
        ("sigmoid", True, (True, False), {"flips": [-np.ones(5)]}, "output layer has no bias"),
        ("tanh", True, (False, False), {"flips": [-np.ones(5)]}, "output weights are fixed"),
        ("relu", True, (False, False), {"scales": [2 * np.ones(5)]}, "output weights are fixed"),
        ("relu", True, (True, True), {"scales": [-np.ones(5)]}, "finite and positive"),
        ("tanh", True, (True, True), {"flips": [2 * np.ones(5)]}, r"\+1 or -1"),
        ("tanh", True, (True, True), {"perms": [np.zeros(5, dtype=int)]}, "permutations"),
        ("tanh", True, (True, True), {"perms": [np.arange(4)]}, "shape"),
        ("tanh", True, (True, True), {"perms": [None, None]}, "one entry per hidden layer"),
    ],
)
def test_transform_refuses_what_is_not_a_symmetry(act, bias, out, kwargs, match):
    model, _, theta, _ = problem(act, bias, (5,), out)
    with pytest.raises(ValueError, match=match):
        transform(model, theta, **kwargs)


def test_transform_conventions():
    model, _, theta, _ = problem("linear", True, (3,), (True, True), R=2)
    lay = model.layout
    p, s, c = np.array([2, 0, 1]), np.array([1.0, -1.0, 1.0]), np.array([1.0, 1.0, 4.0])
    moved = transform(model, theta, perms=[p], flips=[s], scales=[c])
    np.testing.assert_allclose(lay.weights(moved, 1), (lay.weights(theta, 1) * s * c)[:, :, p])
    np.testing.assert_allclose(lay.biases(moved, 1), (lay.biases(theta, 1) * s * c)[:, p])
    np.testing.assert_allclose(lay.view(moved, "W_out"), (lay.view(theta, "W_out") * s / c)[:, p])
    # identity flips and scales are accepted anywhere
    for out in [(False, False), (True, False)]:
        fixed, _, theta, _ = problem("sigmoid", False, (3,), out)
        same = transform(fixed, theta, perms=[None], flips=[np.ones(3)], scales=[np.ones(3)])
        np.testing.assert_array_equal(same, theta)


def test_canonical_conventions():
    model, _, theta, _ = problem("linear", True, (4, 3), (True, True), R=3)
    canon = canonical(model, theta)
    for layer in (1, 2):
        W, b = model.layout.weights(canon, layer), model.layout.biases(canon, layer)
        V = np.concatenate([np.swapaxes(W, 1, 2), b[:, :, None]], axis=2)  # (R, k, fan_in + 1)
        np.testing.assert_allclose(np.linalg.norm(V, axis=2), 1.0, rtol=1e-14)
        big = np.take_along_axis(V, np.abs(V).argmax(axis=2)[:, :, None], axis=2)
        assert np.all(big > 0)
        assert np.all(np.diff(V[:, :, 0], axis=1) > 0)


def test_different_networks_have_positive_distance():
    model, _, theta, _ = problem("tanh", True, (4, 3), (True, True))
    other = theta[::-1]
    assert np.all(distance(model, theta, other) > 0.1)
    assert np.all(np.linalg.norm(align(model, theta[0], other[:3]) - theta[0], axis=1) > 0.1)


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_align_of_a_perturbed_copy_stays_close(act):
    model, _, theta, _ = problem(act, True, (6, 4), (True, True), R=1)
    rng = np.random.default_rng(3)
    copies = random_symmetry(model, np.tile(theta[0], (4, 1)), rng)
    noisy = copies + 1e-3 * rng.normal(size=copies.shape) * np.abs(copies)
    err = np.abs(align(model, theta[0], noisy) - theta[0]).max()
    assert err < 1e-2
