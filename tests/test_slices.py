"""Slices of the landscape and PCA planes of paths, against direct evaluation of the
objective point by point."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem, objective_of

from nnkit.landscape import slices, trajectory
from nnkit.landscape.symmetry import random_symmetry


def setup(seed=0, **kw):
    kw = {"activation": "tanh", "widths": (4, 3), "d": 3, "n": 9, "R": 3, "seed": seed, **kw}
    model, spec, theta, X, y = make_problem(**kw)
    return model, objective_of(model, spec, X, y), theta


def unit_blocks(layout, t):
    """Each unit's incoming weights and bias of ``t (P,)`` as flat vectors."""
    t = t[None]
    blocks = []
    for layer in range(1, layout.depth + 1):
        W, b = layout.weights(t, layer)[0], layout.biases(t, layer)
        for j in range(W.shape[1]):
            blocks.append(np.concatenate([W[:, j], [] if b is None else [b[0, j]]]))
    if layout.output_trained:
        w = layout.view(t, "W_out")[0]
        blocks.append(np.concatenate([w, [layout.view(t, "b_out")[0]] if layout.output_bias else []]))
    return blocks


@pytest.mark.parametrize("bias", [True, (False, True)])
def test_filter_normalised_unit_norms(bias):
    model, _, theta = setup(bias=bias, output_bias=True)
    rng = np.random.default_rng(3)
    D = slices.filter_normalised(model, theta, rng)
    assert D.shape == theta.shape
    for t, d in zip(theta, D):
        tb, db = unit_blocks(model.layout, t), unit_blocks(model.layout, d)
        assert sum(b.size for b in tb) == model.size  # every parameter is in one unit
        for a, b in zip(tb, db):
            assert abs(np.linalg.norm(b) - np.linalg.norm(a)) <= 1e-12 * max(1.0, np.linalg.norm(a))
    one = slices.filter_normalised(model, theta[0], np.random.default_rng(3))
    np.testing.assert_array_equal(one, slices.filter_normalised(model, theta[:1], np.random.default_rng(3))[0])
    # a dead unit gets a zero block; nothing else is NaN
    dead = theta[0].copy()
    lay = model.layout
    lay.weights(dead[None], 1)[0, :, 2] = 0.0
    if lay.bias[0]:
        lay.biases(dead[None], 1)[0, 2] = 0.0
    d = slices.filter_normalised(model, dead, rng)
    assert np.isfinite(d).all() and np.all(lay.weights(d[None], 1)[0, :, 2] == 0)


def test_filter_normalised_fixed_output():
    model, _, theta = setup(output_trained=False)
    d = slices.filter_normalised(model, theta[1], np.random.default_rng(0))
    for a, b in zip(unit_blocks(model.layout, theta[1]), unit_blocks(model.layout, d)):
        assert abs(np.linalg.norm(b) - np.linalg.norm(a)) <= 1e-12 * np.linalg.norm(a)


def test_slices_match_direct_evaluation():
    model, objective, theta = setup()
    rng = np.random.default_rng(1)
    origin = theta[0]
    d1, d2 = slices.filter_normalised(model, np.stack([origin, origin]), rng)
    ts = np.linspace(-1, 1, 11)
    line = slices.slice_1d(objective, origin, d1, ts)
    assert line.shape == ts.shape
    for i in (0, 4, 10):
        assert line[i] == objective.value((origin + ts[i] * d1)[None])[0]
    a, b = np.linspace(-1, 1, 9), np.linspace(-0.5, 1.5, 7)
    grid = slices.slice_2d(objective, origin, d1, d2, a, b)
    assert grid.shape == (b.size, a.size)
    for i, j in [(0, 0), (3, 5), (8, 6), (8, 0)]:
        assert grid[j, i] == objective.value((origin + a[i] * d1 + b[j] * d2)[None])[0]
    chunked = slices.slice_2d(objective, origin, d1, d2, a, b, rows=5)
    np.testing.assert_allclose(chunked, grid, rtol=1e-14, atol=0)
    np.testing.assert_allclose(slices.slice_1d(objective, origin, d1, ts, rows=3), line, rtol=1e-14, atol=0)
    # the tidy table and back
    frame = slices.slice_frame(a, b, grid)
    assert list(frame.columns) == ["alpha", "beta", "loss"] and len(frame) == a.size * b.size
    row = frame[(frame["alpha"] == a[3]) & (frame["beta"] == b[5])]
    assert row["loss"].item() == grid[5, 3]
    a2, b2, g2 = slices.slice_grid(frame.sample(frac=1.0, random_state=0))
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_array_equal(b2, b)
    np.testing.assert_array_equal(g2, grid)
    assert list(slices.slice_frame(ts, None, line).columns) == ["alpha", "loss"]


def test_plane_through_three_points():
    model, objective, theta = setup(activation="relu")
    a = theta[0]
    b = random_symmetry(model, theta[1], np.random.default_rng(0))[0]
    plane = slices.through(np.stack([a, b, theta[2]]))
    np.testing.assert_array_equal(plane.coords, [[0, 0], [1, 0], [0, 1]])
    d1, d2 = plane.directions
    at = slices.evaluate(objective, plane.origin, plane.directions, plane.coords)
    direct = objective.value(np.stack([a, b, theta[2]]))
    np.testing.assert_allclose(at, direct, rtol=1e-12)
    grid = slices.slice_2d(objective, plane.origin, d1, d2, [0.0, 0.5, 1.0], [0.0, 1.0])
    np.testing.assert_allclose([grid[0, 0], grid[0, 2], grid[1, 0]], direct, rtol=1e-12)
    line = slices.through(theta[:2])
    assert line.directions.shape == (1, model.size)
    np.testing.assert_allclose(slices.slice_1d(objective, line.origin, line.directions[0], line.coords[:, 0]),
                               objective.value(theta[:2]), rtol=1e-12)  # fmt: skip
    with pytest.raises(ValueError):
        slices.through(theta[:1])


def test_hessian_directions_are_eigenvectors():
    model, objective, theta = setup()
    H = objective.hessian(theta[:1])[0]
    V, lam = slices.hessian_directions(objective, theta[0], which=(0, 1, -1), values=True)
    assert V.shape == (3, model.size)
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0, atol=1e-12)
    scale = np.abs(np.linalg.eigvalsh(H)).max()
    for v, e in zip(V, lam):
        np.testing.assert_allclose(H @ v, e * v, atol=1e-10 * scale)
    assert lam[0] <= lam[1] <= lam[2]
    np.testing.assert_allclose(lam[[0, 2]], np.linalg.eigvalsh(H)[[0, -1]], rtol=1e-10)
    top = slices.hessian_directions(objective, theta[:2], which="top")
    assert top.shape == (2, 2, model.size)
    np.testing.assert_array_equal(top[0, 0], V[2])


def test_pca_of_a_planar_path():
    model, objective, theta = setup()
    rng = np.random.default_rng(2)
    P = model.size
    u, v = np.linalg.qr(rng.normal(size=(P, 2)))[0].T
    centre = theta[0]
    s = np.linspace(0, 1, 25)
    a, b = 2.0 * (1 - s) * np.cos(6 * s), 0.5 * (1 - s) * np.sin(6 * s)  # ends at the centre
    path = centre + a[:, None] * u + b[:, None] * v
    fit = trajectory.pca(path)
    np.testing.assert_array_equal(fit.centre, path[-1])
    assert abs(fit.explained.sum() - 1.0) <= 1e-12 and fit.explained[0] >= fit.explained[1] > 0
    np.testing.assert_allclose(fit.components @ fit.components.T, np.eye(2), atol=1e-12)
    basis = np.stack([u, v])
    np.testing.assert_allclose(fit.components @ basis.T @ basis, fit.components, atol=1e-12)  # spans u, v
    np.testing.assert_allclose(fit.centre + fit.coords @ fit.components, path, atol=1e-12)
    at = trajectory.losses_at(objective, fit.centre, fit.components, fit.coords)
    np.testing.assert_allclose(at, objective.value(path), rtol=1e-12)
    plane = trajectory.plane_losses(objective, fit.centre, fit.components, fit.coords, size=9, path=path)
    assert plane.losses.shape == (9, 9)
    np.testing.assert_allclose(plane.path_losses, objective.value(path), rtol=1e-12)
    assert plane.alpha.min() < fit.coords[:, 0].min() and plane.beta.max() > fit.coords[:, 1].max()
    j, i = 4, 2
    point = fit.centre + plane.alpha[i] * fit.components[0] + plane.beta[j] * fit.components[1]
    np.testing.assert_allclose(plane.losses[j, i], objective.value(point[None])[0], rtol=1e-12)
    mean = trajectory.pca(path, centre="mean")
    assert abs(mean.explained.sum() - 1.0) <= 1e-12
    np.testing.assert_allclose(mean.centre, path.mean(axis=0))
    many = trajectory.pca(np.stack([path, centre + 0.5 * (path - centre)]))
    assert many.coords.shape == (2, 25, 2) and abs(many.explained.sum() - 1.0) <= 1e-12
    still = trajectory.pca(np.tile(centre, (5, 1)))
    assert np.all(still.explained == 0) and np.all(still.coords == 0)


def test_figures_build():
    from matplotlib.figure import Figure

    _, objective, theta = setup()
    plane = slices.through(theta)
    a = b = np.linspace(-0.5, 1.5, 6)
    grid = slices.slice_2d(objective, plane.origin, *plane.directions, a, b)
    fig = slices.contour(a, b, grid, points=plane.coords)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the panel and its colorbar
    spread = np.geomspace(1e-6, 1e2, 36).reshape(6, 6)
    fig = slices.contour(a, b, spread, log=True)
    assert fig.axes[0].collections
    ax = Figure().subplots()
    assert slices.contour(a, b, grid, ax=ax) is ax.figure
    ts = np.linspace(-0.5, 1.5, 9)
    fig = slices.profile(ts, slices.slice_1d(objective, plane.origin, plane.directions[0], ts), points=(0, 1))
    assert fig.axes and fig.axes[0].lines
    ax = Figure().subplots()
    assert slices.profile(ts, np.geomspace(1e-8, 1, 9), ax=ax) is ax.figure and ax.get_yscale() == "log"
    path = theta[0] + np.linspace(0, 1, 8)[:, None] * (theta[1] - theta[0])
    fit = trajectory.pca(path)
    plane_l = trajectory.plane_losses(objective, fit.centre, fit.components, fit.coords, size=7)
    fig = trajectory.figure(plane_l.alpha, plane_l.beta, plane_l.losses, fit.coords, fit.explained)
    assert fig.axes[0].get_xlabel().startswith("PC1 (") and fig.axes[0].get_xlabel().endswith("%)")
    ax = Figure().subplots()
    assert trajectory.figure(plane_l.alpha, plane_l.beta, plane_l.losses, fit.coords[None], ax=ax) is ax.figure
