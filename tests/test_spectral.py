"""Trace and spectral density from Hessian-vector products (nnkit.landscape.spectral)
against the exact spectra of small networks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import make_problem, objective_of

from nnkit import backends
from nnkit.landscape import spectral
from nnkit.landscape.spectral import SpectralDensity, exact_density, figure, hutchinson, lanczos, slq
from nnkit.objective.base import Objective


@pytest.fixture(scope="module")
def tanh():
    """A small tanh network (P = 26), 4 networks: ``(objective, theta, H, eigenvalues)``."""
    model, spec, theta, X, y = make_problem(activation="tanh", widths=(5,), d=3, n=7, R=4)
    objective = objective_of(model, spec, X, y)
    H = objective.hessian(theta)
    return objective, theta, H, np.linalg.eigvalsh(H)


def powers(H, V, k):
    """``v_r^T H_r^k v_r`` for every row: ``(R,)``."""
    w = V.copy()
    for _ in range(k):
        w = np.einsum("rij,rj->ri", H, w)
    return np.sum(V * w, axis=-1)


class FixedHessians(Objective):
    """Objective whose Hessian at ``theta`` is ``H[int(theta[0])]`` (the first entry of a
    row names its Hessian); ``hvp`` is the base class's, which forms it."""

    def __init__(self, H):
        super().__init__(None, backends.get("numpy"))
        self.H = np.asarray(H)

    def value_and_grad(self, theta):
        return np.zeros(theta.shape[0]), np.zeros_like(theta)

    def hessian(self, theta):
        return self.H[theta[:, 0].astype(int)]

    def stored_per_init(self, cfg):
        return 0


def fixed(eigs, seed=0):
    """``FixedHessians`` with ``H_r = Q_r diag(eigs[r]) Q_r^T`` and its ``theta (R, P)``;
    returns ``(objective, theta, Q (R, P, P))``."""
    eigs = np.asarray(eigs, dtype=float)
    R, P = eigs.shape
    Q = np.linalg.qr(np.random.default_rng(seed).normal(size=(R, P, P)))[0]
    H = Q * eigs[:, None, :] @ np.transpose(Q, (0, 2, 1))
    theta = np.zeros((R, P))
    theta[:, 0] = np.arange(R)
    return FixedHessians(H), theta, Q


# -- Hutchinson --------------------------------------------------------------------------


def test_hutchinson_is_unbiased_with_the_right_standard_error(tanh):
    objective, theta, H, _ = tanh
    probes = 2000
    trace, se = hutchinson(objective, theta, probes=probes, rng=np.random.default_rng(1), stderr=True)
    exact = np.trace(H, axis1=1, axis2=2)
    assert trace.shape == se.shape == (theta.shape[0],)
    # Var[z^T H z] = 2 sum_{i != j} H_ij^2 for Rademacher z
    var = 2 * (np.sum(H**2, axis=(1, 2)) - np.sum(np.diagonal(H, axis1=1, axis2=2) ** 2, axis=1))
    np.testing.assert_allclose(se, np.sqrt(var / probes), rtol=0.2)
    assert np.all(np.abs(trace - exact) < 4 * np.sqrt(var / probes)), (trace, exact)
    # the default stream is default_rng(0), and nothing else is drawn from
    np.testing.assert_array_equal(
        hutchinson(objective, theta, 5), hutchinson(objective, theta, 5, np.random.default_rng(0))
    )
    assert np.isnan(hutchinson(objective, theta, 1, stderr=True)[1]).all()


def test_hutchinson_is_exact_on_a_diagonal_hessian():
    eigs = np.array([[3.0, -1.0, 0.5, 2.0], [1.0, 1.0, 1.0, 1.0]])
    objective, theta, _ = fixed(eigs)
    objective.H = np.stack([np.diag(e) for e in eigs])  # z^T D z = tr D for every z = +-1
    np.testing.assert_allclose(hutchinson(objective, theta, probes=3), eigs.sum(axis=1), rtol=1e-14)


# -- Lanczos -----------------------------------------------------------------------------


def test_full_lanczos_gives_the_exact_spectrum(tanh):
    objective, theta, _, eigs = tanh
    R, P = theta.shape
    run = lanczos(objective, theta, steps=P, rng=np.random.default_rng(2))
    assert run.alpha.shape == (R, P) and run.beta.shape == (R, P - 1) and run.start.shape == (R, P)
    assert list(run.size) == [P] * R
    np.testing.assert_allclose(np.linalg.norm(run.start, axis=1), 1.0, rtol=1e-14)
    values, weights = run.ritz()
    scale = np.abs(eigs).max(axis=1, keepdims=True)
    assert np.abs(values - eigs).max() / scale.min() < 1e-8
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    # more steps than P: capped at P, with several start vectors per network
    many = lanczos(objective, theta, steps=P + 7, rng=np.random.default_rng(3), vectors=3)
    assert many.alpha.shape == (R, 3, P) and many.size.shape == (R, 3) and many.start.shape == (R, 3, P)
    values, _ = many.ritz()
    assert np.abs(values - eigs[:, None, :]).max() / scale.min() < 1e-8


def test_short_lanczos_finds_the_extreme_eigenvalues(tanh):
    objective, theta, _, eigs = tanh
    values, _ = lanczos(objective, theta, steps=15, rng=np.random.default_rng(4)).ritz()
    scale = np.abs(eigs).max(axis=1)
    # Ritz values lie inside the spectrum (Cauchy interlacing) and the extremes converge first
    assert np.all(values[:, 0] >= eigs[:, 0] - 1e-12 * scale) and np.all(values[:, -1] <= eigs[:, -1] + 1e-12 * scale)
    assert np.all(np.abs(values[:, 0] - eigs[:, 0]) < 1e-5 * scale)
    assert np.all(np.abs(values[:, -1] - eigs[:, -1]) < 1e-5 * scale)


def test_breakdown_stops_each_network_at_its_own_krylov_dimension():
    P = 9
    eigs = np.array([
        [2.0, 2.0, 2.0, -1.0, -1.0, 0.5, 0.5, 0.5, 0.5],  # three distinct: Krylov dimension 3
        np.linspace(-2.0, 3.0, P),  # all distinct: P
        np.linspace(-1.0, 1.0, P),  # started from an eigenvector: 1
        np.zeros(P),  # H = 0
    ])  # fmt: skip
    objective, theta, Q = fixed(eigs)
    start = np.random.default_rng(5).normal(size=(4, P))
    start[2] = Q[2][:, 6]
    run = lanczos(objective, theta, steps=20, start=start)
    assert list(run.size) == [3, P, 1, 1]
    assert np.all(run.alpha[0, 3:] == 0) and np.all(run.beta[0, 2:] == 0) and np.all(run.beta[2] == 0)
    values, weights = run.ritz()
    np.testing.assert_allclose(values[0, :3], [-1.0, 0.5, 2.0], atol=1e-12)
    assert np.isnan(values[0, 3:]).all() and np.all(weights[0, 3:] == 0)
    np.testing.assert_allclose(values[1], eigs[1], atol=1e-12)
    np.testing.assert_allclose([values[2, 0], values[3, 0], weights[2, 0], weights[3, 0]], [eigs[2, 6], 0, 1, 1],
                               atol=1e-12)  # fmt: skip
    # the quadrature weight of each distinct eigenvalue: the start's squared projection on its eigenspace
    c = np.einsum("pk,p->k", Q[0], run.start[0]) ** 2
    np.testing.assert_allclose(weights[0, :3], [c[3:5].sum(), c[5:].sum(), c[:3].sum()], atol=1e-12)
    # one network at a time: the same recursion
    for r in range(4):
        alone = lanczos(objective, theta[r : r + 1], steps=20, start=start[r : r + 1])
        assert alone.size[0] == run.size[r]
        np.testing.assert_allclose(alone.alpha[0], run.alpha[r], atol=1e-13)
        np.testing.assert_allclose(alone.beta[0], run.beta[r], atol=1e-13)
    # an exhausted Krylov space makes the quadrature exact for every f, whatever steps:
    # degree 7 from 3 nodes (row 0), the same start vectors drawn again from the same seed
    H = objective.hessian(theta)
    density = slq(objective, theta, steps=20, probes=3, rng=np.random.default_rng(6))
    assert density.nodes.shape == (4, 3 * P) and np.all(np.isfinite(density.nodes))
    np.testing.assert_allclose(density.moment(0), 1.0, rtol=1e-12)
    again = np.random.default_rng(6)
    starts = [lanczos(objective, theta, steps=20, rng=again).start for _ in range(3)]
    for k in (1, 2, 7):
        want = np.mean([powers(H, v, k) for v in starts], axis=0)
        np.testing.assert_allclose(density.moment(k), want, rtol=1e-10, atol=1e-12)
    live = density.nodes[0][density.weights[0] > 0]
    np.testing.assert_allclose(np.unique(np.round(live, 9)), [-1.0, 0.5, 2.0], atol=1e-12)
    assert np.all(np.isin(np.round(density.nodes[0], 9), [-1.0, 0.5, 2.0]))  # padding repeats a Ritz value


def test_a_failed_product_spoils_only_its_own_network():
    eigs = np.array([np.linspace(-1.0, 2.0, 6), np.linspace(0.0, 1.0, 6)])
    objective, theta, _ = fixed(eigs)
    objective.H[1, 2, 3] = np.nan
    values, weights = lanczos(objective, theta, steps=6, rng=np.random.default_rng(7)).ritz()
    np.testing.assert_allclose(values[0], eigs[0], atol=1e-12)
    assert np.isnan(values[1]).all() and np.isnan(weights[1]).all()
    density = slq(objective, theta, steps=6, probes=2)
    assert np.isfinite(density.moment(2)[0]) and np.isnan(density.moment(2)[1])
    trace = hutchinson(objective, theta, probes=4)
    assert np.isfinite(trace[0]) and np.isnan(trace[1])


# -- stochastic Lanczos quadrature -------------------------------------------------------


@pytest.mark.parametrize("steps", [3, 26])
def test_each_probe_is_gauss_quadrature_of_its_quadratic_form(tanh, steps):
    """With ``m`` steps the quadrature is exact for ``v^T H^k v``, ``k <= 2m - 1``."""
    objective, theta, H, _ = tanh
    density = slq(objective, theta, steps=steps, probes=1, rng=np.random.default_rng(8))
    v = lanczos(objective, theta, steps=steps, rng=np.random.default_rng(8)).start
    assert density.nodes.shape == density.weights.shape == (theta.shape[0], steps)
    for k in range(min(2 * steps, 9)):
        want = powers(H, v, k)
        scale = np.abs(np.linalg.eigvalsh(H)).max(axis=1) ** k
        np.testing.assert_allclose(density.moment(k) / scale, want / scale, rtol=0, atol=1e-9)


def test_slq_moments_estimate_the_normalised_traces(tanh):
    objective, theta, H, eigs = tanh
    P, probes = theta.shape[1], 50
    density = slq(objective, theta, steps=10, probes=probes, rng=np.random.default_rng(9))
    assert density.size == P and density.nodes.shape == (theta.shape[0], probes * 10)
    np.testing.assert_allclose(density.moment(0), 1.0, rtol=1e-12)
    for k in (1, 2):
        A = np.linalg.matrix_power(H, k)
        exact = np.trace(A, axis1=1, axis2=2) / P
        # for v uniform on the sphere, Var[v^T A v] = 2 / (P + 2) (tr A^2 / P - (tr A / P)^2)
        var = 2 / (P + 2) * (np.sum(A * A, axis=(1, 2)) / P - exact**2)
        assert np.all(np.abs(density.moment(k) - exact) < 5 * np.sqrt(var / probes)), (k, density.moment(k), exact)
    np.testing.assert_allclose(density.trace(), P * density.moment(1), rtol=1e-14)
    assert np.all(density.nodes >= eigs[:, :1] - 1e-9) and np.all(density.nodes <= eigs[:, -1:] + 1e-9)


def test_exact_density(tanh):
    _, _, H, eigs = tanh
    density = exact_density(eigs)
    assert isinstance(density, SpectralDensity) and density.size == eigs.shape[1]
    np.testing.assert_allclose(density.weights, 1 / eigs.shape[1])
    np.testing.assert_allclose(density.trace(), np.trace(H, axis1=1, axis2=2), rtol=1e-12)
    np.testing.assert_allclose(density.moment(2), np.mean(eigs**2, axis=1), rtol=1e-12)
    assert exact_density(eigs[0]).nodes.shape == (1, eigs.shape[1])


def test_the_density_integrates_to_one_and_draws(tanh):
    objective, theta, _, eigs = tanh
    density = slq(objective, theta, steps=12, probes=4)
    grid = density.default_grid()
    for sigma in (None, 0.3, np.array([0.1, 0.2, 0.3, 0.4])):
        values = density.density(grid, sigma)
        assert values.shape == (theta.shape[0], grid.size) and np.all(values >= 0)
        np.testing.assert_allclose(np.trapezoid(values, grid, axis=1), 1.0, rtol=1e-3)
    np.testing.assert_allclose(np.trapezoid(exact_density(eigs).density(grid, 0.3), grid, axis=1), 1.0, rtol=1e-3)
    from matplotlib.figure import Figure

    fig = figure(density, exact=eigs)
    assert isinstance(fig, Figure) and fig.axes[0].get_yscale() == "log"
    fig.canvas.draw()  # the Agg canvas of a bare Figure renders
    ax = Figure().add_subplot()
    assert figure(density, grid=grid, sigma=0.2, ax=ax, exact=exact_density(eigs), rows=[1]) is ax.figure
    assert len(ax.lines) >= 1
    assert "import pyplot" not in inspect.getsource(spectral) and "matplotlib.pyplot" not in inspect.getsource(spectral)


# -- batching ----------------------------------------------------------------------------


def test_one_stream_per_network_makes_results_independent_of_the_batch(tanh):
    objective, theta, _, _ = tanh
    R = theta.shape[0]

    def streams(rows):
        return [np.random.default_rng(100 + r) for r in rows]

    together = slq(objective, theta, steps=8, probes=3, rng=streams(range(R)))
    traces = hutchinson(objective, theta, probes=20, rng=streams(range(R)))
    for r in range(R):
        alone = slq(objective, theta[r : r + 1], steps=8, probes=3, rng=streams([r]))
        np.testing.assert_allclose(alone.nodes[0], together.nodes[r], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(alone.weights[0], together.weights[r], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hutchinson(objective, theta[r : r + 1], 20, streams([r]))[0], traces[r],
                                   rtol=1e-12)  # fmt: skip
    with pytest.raises(ValueError, match="one per network"):
        slq(objective, theta, rng=streams(range(R - 1)))
    with pytest.raises(TypeError):
        hutchinson(objective, theta, rng=0)


# -- the population objective ------------------------------------------------------------


def test_the_population_objective():
    from nnkit.core.layout import Layout
    from nnkit.core.losses import ObjectiveSpec
    from nnkit.core.model import Model
    from nnkit.data import Dataset
    from nnkit.objective import Problem, Teacher, make_objective

    rng = np.random.default_rng(11)
    d, k = 4, 3
    lay = Layout(d=d, widths=(k,), bias=(False,), output_trained=True, output_value=1.0)
    X = np.zeros((1, d))
    problem = Problem(Model(lay, ("relu",)), ObjectiveSpec(half=True), Dataset(X, np.zeros(1), X, np.zeros(1)),
                      Teacher(rng.normal(size=(d, k)), np.ones(k)))  # fmt: skip
    objective = make_objective(problem, backends.get("numpy"))
    theta = rng.normal(size=(3, lay.size))
    H = objective.hessian(theta)
    density = slq(objective, theta, steps=4, probes=1, rng=np.random.default_rng(12))
    v = lanczos(objective, theta, steps=4, rng=np.random.default_rng(12)).start
    for k in range(8):
        np.testing.assert_allclose(density.moment(k), powers(H, v, k), rtol=1e-9, atol=1e-12)
    trace, se = hutchinson(objective, theta, probes=400, rng=rng, stderr=True)
    assert np.all(np.abs(trace - np.trace(H, axis1=1, axis2=2)) < 5 * se + 1e-12)
