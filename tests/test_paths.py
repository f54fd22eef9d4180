"""Paths between minima: interpolation barriers (nnkit.landscape.barriers), the nudged
elastic band (nnkit.landscape.neb), transition states (nnkit.landscape.transition) and
the whole connection (nnkit.landscape.connect), on the Mueller-Brown potential (known
minima and saddles) and on small real networks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem, objective_of

from nnkit import backends
from nnkit.core.layout import Layout
from nnkit.core.model import Model
from nnkit.landscape import barriers, connect, neb, symmetry, transition
from nnkit.landscape.critical import classify
from nnkit.landscape.descent import descend
from nnkit.landscape.eigensteps import eigh
from nnkit.landscape.polishing import polish

# -- the Mueller-Brown potential ---------------------------------------------------------

_A = np.array([-200.0, -100.0, -170.0, 15.0])
_a = np.array([-1.0, -1.0, -6.5, 0.7])
_b = np.array([0.0, 0.0, 11.0, 0.6])
_c = np.array([-10.0, -10.0, -6.5, 0.7])
_X0 = np.array([1.0, 0.0, -0.5, -1.0])
_Y0 = np.array([0.0, 0.5, 1.5, 1.0])

#: the three minima (A, B, C) and the two saddles (A-C, C-B), as the literature gives them
MB_MINIMA = np.array([[-0.558, 1.442], [0.623, 0.028], [-0.050, 0.467]])
MB_MINIMA_E = np.array([-146.70, -108.17, -80.77])
SADDLE_AC, SADDLE_AC_E = np.array([-0.822, 0.624]), -40.66
SADDLE_CB, SADDLE_CB_E = np.array([0.212, 0.293]), -72.25


class MuellerBrown:
    """The Mueller-Brown potential as a duck-typed objective: ``value``, ``value_and_grad``
    and ``hessian`` in closed form, batched over the rows of ``theta (R, 2)``, on the NumPy
    backend; ``model`` is a network of two parameters with no symmetry but the identity
    (one tanh unit, a fixed output weight: no permutation, flip or scale), so that
    alignment is the identity."""

    backend = backends.get("numpy")
    model = Model(Layout(d=1, widths=(1,), bias=(True,), output_trained=False), ("tanh",))

    def _terms(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        dx, dy = theta[:, :1] - _X0, theta[:, 1:] - _Y0
        e = _A * np.exp(_a * dx**2 + _b * dx * dy + _c * dy**2)
        return e, 2 * _a * dx + _b * dy, _b * dx + 2 * _c * dy

    def value(self, theta):
        return self._terms(theta)[0].sum(axis=1)

    def value_and_grad(self, theta):
        e, px, py = self._terms(theta)
        return e.sum(axis=1), np.stack([(e * px).sum(axis=1), (e * py).sum(axis=1)], axis=1)

    def hessian(self, theta):
        e, px, py = self._terms(theta)
        H = np.empty((e.shape[0], 2, 2))
        H[:, 0, 0] = (e * (px**2 + 2 * _a)).sum(axis=1)
        H[:, 1, 1] = (e * (py**2 + 2 * _c)).sum(axis=1)
        H[:, 0, 1] = H[:, 1, 0] = (e * (px * py + _b)).sum(axis=1)
        return H


class DoubleWell:
    """``E = (x^2 - 1)^2 + y^2``: minima at ``(+-1, 0)``, the saddle at the origin, and the
    straight line between the minima is the minimum-energy path."""

    backend = backends.get("numpy")

    def value(self, theta):
        return (theta[:, 0] ** 2 - 1) ** 2 + theta[:, 1] ** 2

    def value_and_grad(self, theta):
        x, y = theta[:, 0], theta[:, 1]
        return self.value(theta), np.stack([4 * x * (x**2 - 1), 2 * y], axis=1)

    def hessian(self, theta):
        H = np.zeros((theta.shape[0], 2, 2))
        H[:, 0, 0], H[:, 1, 1] = 12 * theta[:, 0] ** 2 - 4, 2.0
        return H


class Washboard:
    """``E = -cos(2 pi x) + 0.05 x + y^2``: minima near ``x = 0, 1, 2, 3`` (each 0.05 higher
    than the one before), index-1 saddles halfway between; the straight line along ``y = 0``
    is the minimum-energy path through all of them. Alignment is the identity."""

    backend = backends.get("numpy")
    model = MuellerBrown.model

    def value(self, theta):
        return -np.cos(2 * np.pi * theta[:, 0]) + 0.05 * theta[:, 0] + theta[:, 1] ** 2

    def value_and_grad(self, theta):
        gx = 2 * np.pi * np.sin(2 * np.pi * theta[:, 0]) + 0.05
        return self.value(theta), np.stack([gx, 2 * theta[:, 1]], axis=1)

    def hessian(self, theta):
        H = np.zeros((theta.shape[0], 2, 2))
        H[:, 0, 0], H[:, 1, 1] = 4 * np.pi**2 * np.cos(2 * np.pi * theta[:, 0]), 2.0
        return H


def grad_norm(objective, theta):
    return np.linalg.norm(objective.value_and_grad(np.atleast_2d(theta))[1], axis=1)


@pytest.fixture(scope="module")
def mb():
    """``(objective, minima (3, 2))``: A, B, C polished to a gradient norm of 1e-12."""
    objective = MuellerBrown()
    done = polish(objective, MB_MINIMA, 1e-12, 50)
    assert done.converged.all()
    return objective, done.theta


def test_mueller_brown_closed_form():
    """The helper potential is right: its gradient and Hessian match central differences,
    and its minima and saddles are where the literature puts them."""
    objective, rng = MuellerBrown(), np.random.default_rng(0)
    theta, h = rng.uniform([-1.5, -0.5], [1.0, 2.0], size=(6, 2)), 1e-6
    _, g = objective.value_and_grad(theta)
    H = objective.hessian(theta)
    for p in range(2):
        e = np.zeros(2)
        e[p] = h
        fd = (objective.value(theta + e) - objective.value(theta - e)) / (2 * h)
        np.testing.assert_allclose(g[:, p], fd, rtol=1e-7, atol=1e-5)
        fd_H = (objective.value_and_grad(theta + e)[1] - objective.value_and_grad(theta - e)[1]) / (2 * h)
        np.testing.assert_allclose(H[:, :, p], fd_H, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(objective.value(MB_MINIMA), MB_MINIMA_E, atol=0.02)
    np.testing.assert_allclose(objective.value(np.stack([SADDLE_AC, SADDLE_CB])), [SADDLE_AC_E, SADDLE_CB_E], atol=0.02)
    assert np.allclose(symmetry.align(objective.model, MB_MINIMA[0], MB_MINIMA), MB_MINIMA, rtol=0, atol=0)


# -- NEB and refinement on Mueller-Brown ---------------------------------------------------


def test_band_a_to_b_climbs_to_the_highest_saddle(mb):
    """A climbing-image band from A to B, refined, is the A-C saddle (the highest on the
    minimum-energy path), certified: index 1, gradient norm <= 1e-10, one negative
    eigenvalue; the band converged, its top is its climbing image."""
    objective, m = mb
    band = neb.autoneb(objective, m[[0]], m[[1]], 16)
    assert band.converged.all() and band.force[0] <= 1e-6
    np.testing.assert_array_equal(band.theta[:, [0, -1]], np.stack([m[[0]], m[[1]]], axis=1))  # the ends stay
    top = band.theta[0, band.climbing[0]]
    assert band.loss[0, band.climbing[0]] == band.loss[0].max()
    np.testing.assert_allclose(top, SADDLE_AC, atol=2e-3)
    saddle = transition.refine(objective, top[None])
    assert saddle.certified.all() and saddle.index[0] == 1 and saddle.grad_norm[0] <= 1e-10
    np.testing.assert_allclose(saddle.theta[0], SADDLE_AC, atol=2e-3)
    np.testing.assert_allclose(saddle.loss[0], SADDLE_AC_E, atol=0.02)
    e = saddle.eigenvalues[0]
    assert e[0] < 0 < e[1]
    np.testing.assert_allclose(e, np.linalg.eigvalsh(objective.hessian(saddle.theta))[0], rtol=1e-12)
    H = objective.hessian(saddle.theta)[0]
    np.testing.assert_allclose(H @ saddle.mode[0], e[0] * saddle.mode[0], rtol=1e-10, atol=1e-8)
    assert abs(np.linalg.norm(saddle.mode[0]) - 1) < 1e-12


def test_band_c_to_b_gives_the_other_saddle(mb):
    """The band from the intermediate minimum C to B tops out at the lower saddle."""
    objective, m = mb
    band = neb.autoneb(objective, m[[2]], m[[1]], 16)
    assert band.converged.all()
    saddle = transition.refine(objective, band.theta[[0], band.climbing])
    assert saddle.certified.all() and saddle.grad_norm[0] <= 1e-10
    np.testing.assert_allclose(saddle.theta[0], SADDLE_CB, atol=2e-3)
    np.testing.assert_allclose(saddle.loss[0], SADDLE_CB_E, atol=0.02)


def test_refine_from_a_rough_start(mb):
    """Eigenvector following walks from points 0.03 off the saddles to them (steps taken,
    gradient norm <= 1e-10, index 1), both in one batch."""
    objective, _ = mb
    saddle = transition.refine(objective, np.stack([SADDLE_AC, SADDLE_CB]) + 0.03)
    assert saddle.certified.all() and (saddle.steps > 0).all() and (saddle.grad_norm <= 1e-10).all()
    assert list(saddle.index) == [1, 1]
    np.testing.assert_allclose(saddle.theta, np.stack([SADDLE_AC, SADDLE_CB]), atol=2e-3)
    one_at_a_time = transition.refine(objective, np.stack([SADDLE_AC, SADDLE_CB]) + 0.03, rows=1)
    np.testing.assert_array_equal(one_at_a_time.theta, saddle.theta)
    both = transition.sides(objective, saddle)
    np.testing.assert_array_equal(transition.sides(objective, saddle, rows=2).theta, both.theta)


def test_bands_batched_are_the_bands_alone(mb):
    """Three bands relaxed in one batch are, band by band, the bands relaxed alone: the
    images, losses, forces and step counts."""
    objective, m = mb
    a, b = m[[0, 2, 0]], m[[1, 1, 2]]
    batch = neb.autoneb(objective, a, b, 16)
    assert batch.converged.all()
    for r in range(3):
        alone = neb.autoneb(objective, a[[r]], b[[r]], 16)
        np.testing.assert_allclose(batch.theta[r], alone.theta[0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(batch.loss[r], alone.loss[0], rtol=0, atol=1e-8)
        assert batch.steps[r] == alone.steps[0] and batch.converged[r] == alone.converged[0]
    tops = transition.refine(objective, batch.theta[np.arange(3), batch.climbing])
    np.testing.assert_allclose(tops.theta, np.stack([SADDLE_AC, SADDLE_CB, SADDLE_AC]), atol=2e-3)


def test_interior_minimum_flags_the_dip_near_c(mb):
    """On the A-B band (16 images: fine enough to resolve it) exactly one interior image
    is lower than both neighbours, and it lies in C's basin: descent from it reaches C."""
    objective, m = mb
    band = neb.autoneb(objective, m[[0]], m[[1]], 16)
    dips = neb.interior_minima(band.loss)
    assert len(dips) == 1 and dips[0].size == 1
    j = dips[0][0]
    assert band.loss[0, j] < band.loss[0, j - 1] and band.loss[0, j] < band.loss[0, j + 1]
    assert np.linalg.norm(band.theta[0, j] - m[2]) < 0.2
    went = descend(objective, band.theta[0, [j]], 1e-10, 100)
    np.testing.assert_allclose(went.theta[0], m[2], atol=1e-8)
    # the C-B band climbs monotonically from C then falls to B: no dip
    assert neb.interior_minima(neb.autoneb(objective, m[[2]], m[[1]], 16).loss)[0].size == 0
    # hand-made profiles: the flags are the interior local minima, per band
    flags = neb.interior_minima(np.array([[0.0, 1, 0.5, 2, 1.5, 3], [3.0, 2, 1, 1, 2, 0]]))
    assert [list(f) for f in flags] == [[2, 4], []]


def test_interior_maxima_are_the_tops_of_a_profile(mb):
    """``interior_maxima``: the interior images higher than both neighbours; where none is
    (a profile rising to an end), the highest interior image. The A-B band has two tops:
    the A-C and the C-B saddles."""
    objective, m = mb
    tops = neb.interior_maxima(np.array([[0.0, 1, 0.5, 2, 1.5, 3], [0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0]]))
    assert [list(t) for t in tops] == [[1, 3], [4], [1]]
    band = neb.autoneb(objective, m[[0]], m[[1]], 16)
    (top,) = neb.interior_maxima(band.loss)
    assert top.size == 2 and band.climbing[0] in top
    saddles = transition.refine(objective, band.theta[0, top])
    assert saddles.certified.all()
    np.testing.assert_allclose(saddles.theta, np.stack([SADDLE_AC, SADDLE_CB]), atol=2e-3)


def test_sides_of_the_a_c_saddle_descend_to_a_and_c(mb):
    """From the A-C saddle the two descents reach A and C (one on each side), certified
    strict minima, matched to the known minima."""
    objective, m = mb
    saddle = transition.refine(objective, SADDLE_AC[None])
    ends = transition.sides(objective, saddle)
    assert ends.theta.shape == (1, 2, 2)
    assert list(ends.kind[0]) == ["strict minimum", "strict minimum"]
    assert (ends.grad_norm <= 1e-10).all() and (ends.eigenvalues > 0).all()
    assert (ends.loss < saddle.loss[:, None]).all()
    got = transition.match(objective.model, m, objective.value(m), ends.theta[0], ends.loss[0])
    assert sorted(got) == [0, 2]
    # the two sides lie on opposite sides of the saddle along its negative mode
    along = (ends.theta[0] - saddle.theta[0]) @ saddle.mode[0]
    assert along[0] > 0 > along[1]


def test_a_converged_climbing_band_has_its_climbing_image_at_the_saddle():
    """A band reported converged with ``climb=True`` has its climbing image at a critical
    point (its climbing force is the full gradient, so |grad| <= tol): on the double
    well, a straight 8-image band (no image at the saddle, the forces all 0 by symmetry)
    and a band already relaxed without climbing must still climb."""
    objective = DoubleWell()
    a, b = np.array([[-1.0, 0.0]]), np.array([[1.0, 0.0]])
    band = neb.neb(objective, neb.straight(a, b, 8), climb=True, tol=1e-6)
    assert band.converged.all()
    assert grad_norm(objective, band.theta[0, band.climbing[0]])[0] <= 1e-6, (band.steps, band.theta[0])


def test_relaxed_band_climbs_when_asked(mb):
    """Relaxing a band without climbing and then, with the same curvature scale, with
    climbing puts its top at the C-B saddle."""
    objective, m = mb
    band = neb.straight(m[[2]], m[[1]], 9)
    scale = neb.curvature(objective, band)
    first = neb.neb(objective, band, climb=False, tol=1e-6, scale=scale)
    assert first.converged.all()
    second = neb.neb(objective, first.theta, climb=True, tol=1e-6, scale=scale)
    assert second.converged.all()
    assert grad_norm(objective, second.theta[0, second.climbing[0]])[0] <= 1e-6, second.steps


# -- tangents, forces, inserted images ------------------------------------------------------


def test_improved_tangent_follows_the_rising_neighbour():
    """On a strictly rising profile the tangent is the normalised forward difference, on
    a falling one the backward difference; at an extremum the energy-weighted blend
    (Henkelman & Jonsson 2000); a flat profile gives the chord; always unit length."""
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(2, 6, 4))
    up, down = theta[:, 2:] - theta[:, 1:-1], theta[:, 1:-1] - theta[:, :-2]
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)
    rising = np.cumsum(rng.uniform(0.1, 1.0, size=(2, 6)), axis=1)
    np.testing.assert_allclose(neb.tangents(theta, rising), unit(up), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(neb.tangents(theta, -rising), unit(down), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(neb.tangents(theta, np.zeros((2, 6))), unit(up + down), rtol=1e-13, atol=1e-15)
    # extrema: tau+ dV_max + tau- dV_min where the next image is the higher neighbour, else
    # tau+ dV_min + tau- dV_max (dV the energy steps to the two neighbours)
    loss = np.array([[0.0, 1.0, 5.0, 2.0, 4.0, 3.0]])
    tau = neb.tangents(theta[:1], loss)[0]
    # image 2, a maximum: next 2 > previous 1; steps 3 (to the next) and 4 (to the previous)
    np.testing.assert_allclose(tau[1], unit(up[0, 1] * 4.0 + down[0, 1] * 3.0), rtol=1e-13)
    # image 3, a minimum: next 4 < previous 5; steps 2 (to the next) and 3 (to the previous)
    np.testing.assert_allclose(tau[2], unit(up[0, 2] * 2.0 + down[0, 2] * 3.0), rtol=1e-13)
    # image 4, a maximum: next 3 > previous 2; steps 1 (to the next) and 2 (to the previous)
    np.testing.assert_allclose(tau[3], unit(up[0, 3] * 2.0 + down[0, 3] * 1.0), rtol=1e-13)
    random = neb.tangents(theta, rng.normal(size=(2, 6)))
    np.testing.assert_allclose(np.linalg.norm(random, axis=2), 1.0, rtol=1e-14)
    assert random.shape == (2, 4, 4)


def test_forces_spring_perpendicular_and_climbing():
    """``forces``: on a straight band each interior image gets the perpendicular part of
    -grad plus the spring along the tangent; on any band the force along the tangent is
    the spring alone (the gradient is nudged out of it, a kink correction acts across);
    with ``climb`` the highest interior image gets -grad + 2 (grad.tau) tau and no
    spring, only in the bands that climb."""
    rng = np.random.default_rng(2)
    B, M, P = 3, 7, 5
    k, climb = np.array([0.5, 2.0, 1.0]), np.array([True, False, True])
    s = np.sort(rng.uniform(size=(B, M)), axis=1)
    s[:, 0], s[:, -1] = 0.0, 1.0
    origin, direction = rng.normal(size=(B, 1, P)), rng.normal(size=(B, 1, P))
    lined = origin + s[..., None] * direction  # straight bands, uneven spacing
    bent = rng.normal(size=(B, M, P))
    loss, grad = rng.normal(size=(B, M)), rng.normal(size=(B, M - 2, P))
    top = np.argmax(loss[:, 1:-1], axis=1)
    for theta in (lined, bent):
        F = neb.forces(theta, loss, grad, k, climb)
        tau = neb.tangents(theta, loss)
        seg = np.linalg.norm(np.diff(theta, axis=1), axis=2)
        for r in range(B):
            for i in range(M - 2):
                t, g = tau[r, i], grad[r, i]
                spring = k[r] * (seg[r, i + 1] - seg[r, i])
                if climb[r] and i == top[r]:
                    np.testing.assert_allclose(F[r, i], -g + 2 * (g @ t) * t, rtol=1e-12, atol=1e-14)
                    np.testing.assert_allclose(F[r, i] @ t, g @ t, rtol=1e-12)  # uphill along the path
                    continue
                np.testing.assert_allclose(F[r, i] @ t, spring, rtol=1e-10, atol=1e-12)
                if theta is lined:
                    np.testing.assert_allclose(F[r, i], -(g - (g @ t) * t) + spring * t, rtol=1e-10, atol=1e-12)
    # without climbing, the top image is an ordinary one
    plain = neb.forces(bent, loss, grad, k, np.zeros(B, bool))
    np.testing.assert_array_equal(plain[1], neb.forces(bent, loss, grad, k, climb)[1])
    assert not np.allclose(plain[0, top[0]], neb.forces(bent, loss, grad, k, climb)[0, top[0]])


def test_insert_images_keeps_ends_and_old_images():
    """``insert_images``: the count is as asked, the ends stay, every old image is kept in
    order, each new image lies on the old segment it splits (a midpoint, or a midpoint of
    midpoints), the first new one goes
    into the segment with the largest energy step; as many images as there are is the
    identity."""
    rng = np.random.default_rng(3)
    theta, loss = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5))
    for images in (5, 6, 9, 13):
        out = neb.insert_images(theta, loss, images)
        assert out.shape == (2, images, 3)
        for r in range(2):
            np.testing.assert_array_equal(out[r, [0, -1]], theta[r, [0, -1]])
            rows = [int(np.flatnonzero((out[r] == old).all(axis=1))[0]) for old in theta[r]]
            assert rows == sorted(rows) and len(set(rows)) == 5  # every old image, in order
            new = sorted(set(range(images)) - set(rows))
            assert len(new) == images - 5
            for j in new:  # on the old segment around it, at a dyadic fraction (midpoints of midpoints)
                lo = max(q for q in range(5) if rows[q] < j)
                seg = theta[r, lo + 1] - theta[r, lo]
                frac = (out[r, j] - theta[r, lo]) @ seg / (seg @ seg)
                np.testing.assert_allclose(out[r, j], theta[r, lo] + frac * seg, rtol=1e-12, atol=1e-14)
                assert 0 < frac < 1 and abs(frac * 256 - round(frac * 256)) < 1e-9
            if images == 6:
                seg = int(np.argmax(np.abs(np.diff(loss[r]))))
                np.testing.assert_allclose(out[r, seg + 1], 0.5 * (theta[r, seg] + theta[r, seg + 1]), rtol=1e-15)
    np.testing.assert_array_equal(neb.insert_images(theta, loss, 5), theta)
    # the band's length is unchanged: midpoints lie on the segments
    long = neb.insert_images(theta, loss, 13)
    np.testing.assert_allclose(neb.Bands(long, np.zeros((2, 13)), 0, 0, 0, 0).arc_length()[:, -1],
                               neb.Bands(theta, loss, 0, 0, 0, 0).arc_length()[:, -1], rtol=1e-13)  # fmt: skip


# -- barriers on real networks -----------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    """``(model, objective, minima (3, P), losses (3,))``: three distinct strict minima of a
    small tanh network (d = 2, 3 units, 20 samples, L2 0.01), certified."""
    model, spec, theta, X, y = make_problem(widths=(3,), d=2, n=20, R=16, seed=0, l2=0.01)
    objective = objective_of(model, spec, X, y)
    went = descend(objective, 0.7 * theta, 1e-8, 500)
    done = polish(objective, went.theta, 1e-10, 50)
    kind = classify(eigh(objective.hessian(done.theta), vectors=False), done.grad_norm, 1e-10)["kind"]
    ok = np.flatnonzero(kind == "strict minimum")
    _, first = np.unique(np.round(done.loss[ok], 6), return_index=True)
    keep = ok[first]
    assert keep.size >= 3, done.loss[ok]
    keep = keep[:3]
    return model, objective, done.theta[keep], done.loss[keep]


def test_line_is_the_loss_of_the_convex_combinations():
    """``line``: the losses along the segments are ``objective.value`` of ``(1 - t) a + t b``,
    with ``t`` evenly spaced from 0 to 1, in the order of the pairs."""
    model, spec, theta, X, y = make_problem(R=6, seed=4)
    objective = objective_of(model, spec, X, y)
    a, b = theta[:3], theta[3:]
    t, losses = barriers.line(objective, a, b, 9, rows=5)  # several batches of rows
    np.testing.assert_array_equal(t, np.linspace(0, 1, 9))
    assert losses.shape == (3, 9)
    for r in range(3):
        want = objective.value((1 - t)[:, None] * a[r] + t[:, None] * b[r])
        np.testing.assert_allclose(losses[r], want, rtol=1e-13)
    np.testing.assert_allclose(losses[:, 0], objective.value(a), rtol=1e-13)
    np.testing.assert_allclose(losses[:, -1], objective.value(b), rtol=1e-13)


def test_heights_on_hand_made_profiles():
    """``heights``: barrier = max - max(ends), blend barrier = max of the profile above the
    chord of its ends, t_max and loss_max at the (first) top."""
    t = np.linspace(0.0, 1.0, 5)
    losses = np.array([
        [1.0, 3.0, 5.0, 2.0, 0.0],  # a hump: 5 - 1 = 4; above the chord 1 - t: 5 - 0.5
        [0.0, 0.25, 0.5, 0.75, 1.0],  # the chord itself: no barrier
        [1.0, 0.0, 0.5, 0.0, 2.0],  # a valley: the top is an end
        [0.0, 2.0, 1.0, 2.0, 0.0],  # two equal tops: the first
    ])  # fmt: skip
    h = barriers.heights(t, losses)
    np.testing.assert_allclose(h["barrier"], [4.0, 0.0, 0.0, 2.0], atol=1e-15)
    np.testing.assert_allclose(h["barrier_blend"], [4.5, 0.0, 0.0, 2.0], atol=1e-15)
    np.testing.assert_allclose(h["t_max"], [0.5, 1.0, 1.0, 0.25])
    np.testing.assert_allclose(h["loss_max"], [5.0, 1.0, 2.0, 2.0])


def test_barrier_between_a_minimum_and_its_symmetric_copy_is_zero(net):
    """``barriers`` aligns the second minimum of a pair onto the first: a minimum and a
    random symmetric copy of it (far apart before alignment) are at distance ~0 with a
    flat profile, barrier ~0; pairs of distinct minima are at positive distance with
    their end losses in place."""
    model, objective, m, loss = net
    copy = symmetry.random_symmetry(model, m[:1], np.random.default_rng(5))
    assert np.linalg.norm(copy - m[:1]) > 0.5
    theta = np.concatenate([m, copy])
    ids = np.array([10, 11, 12, 13])
    frame = barriers.barriers(objective, theta, ids, np.array([[0, 3], [0, 1], [1, 2]]), points=17)
    assert list(frame.columns) == ["minimum_a", "minimum_b", "loss_a", "loss_b", "distance", "barrier",
                                   "barrier_blend", "t_max", "loss_max", "profile"]  # fmt: skip
    assert list(frame.minimum_a) == [10, 10, 11] and list(frame.minimum_b) == [13, 11, 12]
    assert frame.distance[0] < 1e-10
    assert abs(frame.barrier[0]) < 1e-12 and abs(frame.barrier_blend[0]) < 1e-12
    np.testing.assert_allclose(frame.profile[0], loss[0], rtol=1e-12)
    assert (frame.distance[1:] > 1e-3).all()
    np.testing.assert_allclose(frame.loss_a, loss[[0, 0, 1]], rtol=1e-12)
    np.testing.assert_allclose(frame.loss_b, loss[[0, 1, 2]], rtol=1e-12)
    assert all(len(p) == 17 for p in frame.profile)
    assert (frame.barrier >= -1e-12).all() and (frame.barrier_blend >= frame.barrier - 1e-12).all()


def test_pairs_nearest_and_all():
    """``pairs``: "all" is every pair once, "nearest" the union of each minimum's
    ``neighbours`` nearest others (brute force on the aligned distances); both ``i < j``,
    no duplicates, ordered by distance, at most ``limit``; a symmetric copy is at
    aligned distance ~0 and so the nearest pair."""
    model, _, theta, _, _ = make_problem(R=6, seed=6)
    theta = np.concatenate([theta, symmetry.random_symmetry(model, theta[2:3], np.random.default_rng(7))])
    N = theta.shape[0]
    D = barriers.aligned_distances(model, theta)
    np.testing.assert_array_equal(D, D.T)
    assert (np.diag(D) == 0).all() and D[2, 6] < 1e-10
    assert np.sum(D[np.triu_indices(N, 1)] > 1e-3) == N * (N - 1) // 2 - 1  # all other pairs apart
    every = barriers.pairs(model, theta, "all")
    assert every.shape == (N * (N - 1) // 2, 2) and every.dtype == np.int64
    for got in (every, barriers.pairs(model, theta, "nearest", neighbours=2)):
        assert (got[:, 0] < got[:, 1]).all()
        assert len({tuple(p) for p in got}) == len(got)
        d = D[got[:, 0], got[:, 1]]
        assert (np.diff(d) >= 0).all()
    assert tuple(every[0]) == (2, 6)
    for neighbours in (1, 2, 3):
        near = barriers.pairs(model, theta, "nearest", neighbours=neighbours)
        want = set()
        for i in range(N):
            others = [j for j in np.argsort(D[i]) if j != i][:neighbours]
            want |= {(min(i, j), max(i, j)) for j in others}
        assert {tuple(p) for p in near} == want
        limited = barriers.pairs(model, theta, "nearest", neighbours=neighbours, limit=3)
        np.testing.assert_array_equal(limited, near[:3])
    np.testing.assert_array_equal(barriers.pairs(model, theta, "all", distances=D), every)
    assert barriers.pairs(model, theta[:1], "all").shape == (0, 2)
    assert barriers.pairs(model, theta, "all", limit=0).shape == (0, 2)
    with pytest.raises(ValueError, match="nearest"):
        barriers.pairs(model, theta, "some")


# -- match ---------------------------------------------------------------------------------


def test_match_modulo_symmetries(net):
    """``match``: each known minimum under a random symmetry is matched to itself; a point
    with another loss, or the same loss but elsewhere, is -1; degenerate points match
    a degenerate known minimum of the same loss wherever they are."""
    model, objective, m, loss = net
    copies = symmetry.random_symmetry(model, m, np.random.default_rng(8))
    got = transition.match(model, m, loss, copies, objective.value(copies))
    np.testing.assert_array_equal(got, [0, 1, 2])
    # another loss; the loss of minimum 0 at minimum 1's place
    np.testing.assert_array_equal(transition.match(model, m, loss, m[[1, 1]], np.array([loss[1] + 1e-3, loss[0]])),
                                  [-1, -1])  # fmt: skip
    # a point displaced more than distance_tol, at the same loss
    moved = m[:1] + 1e-3
    assert transition.match(model, m, loss, moved, loss[:1])[0] == -1
    assert transition.match(model, m, loss, moved, loss[:1], distance_tol=1e-2)[0] == 0
    # degenerate: the same loss is enough between two degenerate minima, not otherwise
    flat_known = np.array([True, False, False])
    far = m[[2, 2]]
    losses = loss[[0, 1]]
    got = transition.match(model, m, loss, far, losses, known_flat=flat_known, flat=np.array([True, True]))
    np.testing.assert_array_equal(got, [0, -1])
    got = transition.match(model, m, loss, far, losses, known_flat=flat_known, flat=np.array([False, False]))
    np.testing.assert_array_equal(got, [-1, -1])


# -- a path is never worse than the straight line ------------------------------------------------


def test_band_barrier_never_above_the_straight_line(net):
    """On a real network, bands between distinct minima (aligned) relax below their
    straight lines: the band's highest loss and the refined, certified saddle's loss are
    at most the straight line's highest loss, and above both ends."""
    model, objective, m, loss = net
    pair = np.array([[0, 1], [0, 2]])
    a, b = barriers.align_pairs(model, m, pair)
    _, straight = barriers.line(objective, a, b, 65)
    bands = neb.autoneb(objective, a, b, 16)
    assert bands.converged.all(), bands.force
    np.testing.assert_allclose(bands.loss[:, [0, -1]], straight[:, [0, -1]], rtol=1e-12)
    band_max = bands.loss.max(axis=1)
    assert (band_max <= straight.max(axis=1) + 1e-12).all(), (band_max, straight.max(axis=1))
    saddle = transition.refine(objective, bands.theta[np.arange(2), bands.climbing])
    assert saddle.certified.all(), (saddle.grad_norm, saddle.index)
    assert (saddle.loss <= straight.max(axis=1) + 1e-12).all()
    assert (saddle.loss > np.maximum(loss[pair[:, 0]], loss[pair[:, 1]])).all()
    np.testing.assert_allclose(saddle.loss, band_max, rtol=1e-4)  # the climbing image was at the top


def test_network_bands_batched_are_the_bands_alone(net):
    """On a real network (13 parameters, where 20 power steps leave the estimate
    unconverged), a band relaxed with another in its batch is the band relaxed alone."""
    model, objective, m, _ = net
    a, b = barriers.align_pairs(model, m, np.array([[0, 1], [0, 2]]))
    alone = neb.curvature(objective, neb.straight(a[1:], b[1:], 8))
    batch = neb.curvature(objective, neb.straight(a, b, 8))
    together = neb.autoneb(objective, a, b, 16)
    single = neb.autoneb(objective, a[1:], b[1:], 16)
    np.testing.assert_allclose(together.theta[1], single.theta[0], rtol=0, atol=1e-8,
                               err_msg=f"curvature scale alone {alone[0]!r}, in the batch {batch[1]!r}")  # fmt: skip


# -- connect end to end ------------------------------------------------------------------------

TS_COLUMNS = [
    "transition_state", "band", "loss", "minimum_a", "minimum_b", "barrier_a", "barrier_b", "band_a", "band_b",
    "connects_ends", "grad_norm", "index", "eig_min", "refine_steps", "path_length", "eigenvalues", "theta", "bands",
]  # fmt: skip
PATH_COLUMNS = ["band", "round", "image", "arc_length", "loss", "minimum_a", "minimum_b", "neb_converged",
                "neb_force", "neb_steps", "theta"]  # fmt: skip


def test_connect_mueller_brown_finds_c_and_both_saddles(mb):
    """``connect`` from A and B only: C is found on the way (``found_by == "path"``), and in
    the second round the pairs (A, C) and (C, B) get their transition states: the A-C
    saddle (found by two bands or more, one row) and the C-B saddle, certified, index 1,
    each joining the right minima, numbered from the lowest loss up."""
    objective, m = mb
    calls = []
    res = connect.connect(objective, m[:2], objective.value(m[:2]), np.array([10, 20]),
                          ["strict minimum"] * 2, np.array([[0, 1]]), connect.PathSettings(rounds=2),
                          on_band=calls.append)  # fmt: skip
    assert list(res.minima.minimum) == [10, 20, 21]
    assert list(res.minima.found_by) == ["analysis", "analysis", "path"]
    assert list(res.minima.kind) == ["strict minimum"] * 3
    np.testing.assert_allclose(res.theta[2], m[2], atol=1e-8)
    ts = res.transition_states
    assert list(ts.columns) == TS_COLUMNS and list(res.paths.columns) == PATH_COLUMNS
    assert len(ts) == 2 and list(ts.transition_state) == [0, 1] and (np.diff(ts.loss) > 0).all()
    assert (ts["index"] == 1).all() and (ts.grad_norm <= 1e-10).all() and (ts.eig_min < 0).all()
    assert set(ts.minimum_a) | set(ts.minimum_b) <= {10, 20, 21}
    cb, ac = ts.iloc[0], ts.iloc[1]
    np.testing.assert_allclose(cb.theta, SADDLE_CB, atol=2e-3)
    np.testing.assert_allclose(ac.theta, SADDLE_AC, atol=2e-3)
    assert {cb.minimum_a, cb.minimum_b} == {21, 20} and {ac.minimum_a, ac.minimum_b} == {10, 21}
    # the A-C saddle is found by the A-B and the A-C bands; every band gave at least one
    # certified saddle (the A-B band one or both of its tops), so (A, C) and (C, B) got theirs
    assert ac.bands >= 2 and cb.bands >= 1 and ts.bands.sum() >= 3
    assert ts.connects_ends.dtype == bool
    np.testing.assert_allclose(cb.barrier_a, cb.loss - res.minima.loss[res.minima.minimum == cb.minimum_a].iloc[0])
    # the bands: one in the first round, (A, C) and (C, B) in the second
    bands = res.paths.groupby("band")[["round", "minimum_a", "minimum_b", "neb_converged"]].first()
    assert [tuple(r) for r in bands[["round", "minimum_a", "minimum_b"]].itertuples(index=False)] == [
        (0, 10, 20), (1, 10, 21), (1, 21, 20)]  # fmt: skip
    assert bands.neb_converged.all() and sum(calls) == 3
    assert (res.paths.groupby("band").size() == 16).all()
    rows = res.paths[res.paths.band.isin([1, 2])]
    assert set(map(frozenset, rows[["minimum_a", "minimum_b"]].drop_duplicates().to_numpy())) == {
        frozenset((10, 21)), frozenset((21, 20))}  # fmt: skip


def test_connect_one_round_on_a_network(net):
    """``connect`` on a real network, one round, all pairs: the table's columns, certified
    transition states of index 1 joining minima of the table, one band per pair."""
    _, objective, m, loss = net
    ids = np.array([3, 5, 8])
    res = connect.connect(objective, m, loss, ids, ["strict minimum"] * 3, np.array([[0, 1], [0, 2]]),
                          connect.PathSettings(rounds=1, images=12))  # fmt: skip
    ts = res.transition_states
    assert list(ts.columns) == TS_COLUMNS and len(ts) >= 1
    assert (ts["index"] == 1).all() and (ts.grad_norm <= 1e-10).all()
    known = set(res.minima.minimum)
    assert set(res.minima.minimum[:3]) == {3, 5, 8} and (res.minima.found_by[:3] == "analysis").all()
    assert set(ts.minimum_a) <= known | {-1} and set(ts.minimum_b) <= known | {-1}
    assert set(ts.band_a) <= {3} and set(ts.band_b) <= {5, 8}
    assert sorted(res.paths.band.unique()) == [0, 1] and (res.paths.groupby("band").size() == 12).all()
    for r in ts.itertuples():
        H = objective.hessian(np.array([r.theta]))
        assert np.sum(np.linalg.eigvalsh(H)[0] < 0) == 1


def test_connect_queues_minima_reached_from_every_top(monkeypatch):
    """A band from x = 0 to x = 3 on the washboard has three tops; descents from them reach
    the two minima between (found_by "path"), and each new minimum's pairs with the ends
    of the band are connected in the next round. Dips are switched off so that the
    minima are found from the transition states alone."""
    objective = Washboard()
    ends = polish(objective, np.array([[0.0, 0.0], [3.0, 0.0]]), 1e-12, 50)
    monkeypatch.setattr(neb, "interior_minima", lambda loss: [np.zeros(0, np.int64) for _ in loss])
    res = connect.connect(objective, ends.theta, ends.loss, np.array([0, 3]), ["strict minimum"] * 2,
                          np.array([[0, 1]]), connect.PathSettings(rounds=2))  # fmt: skip
    assert list(res.minima.minimum) == [0, 3, 4, 5] and list(res.minima.found_by[2:]) == ["path", "path"]
    np.testing.assert_allclose(res.theta[2:, 0], [1.0, 2.0], atol=0.01)
    assert len(res.transition_states) == 3 and (res.transition_states["index"] == 1).all()
    second = res.paths[res.paths["round"] == 1][["minimum_a", "minimum_b"]].drop_duplicates()
    got = {frozenset(p) for p in second.to_numpy()}
    assert got == {frozenset(p) for p in ((0, 4), (4, 3), (0, 5), (5, 3))}, got


def test_the_kink_switch_straightens_a_fold_fully():
    """At a fold sharper than a right angle the whole spring force across the band acts
    (Jonsson, Mills & Jacobsen's switch is 1 there), on a straight band none of it."""
    theta = np.array([[[0.0, 0.0], [1.0, 0.0], [0.2, 0.5]]])  # the segments meet at about 150 degrees
    loss = np.array([[0.0, 1.0, 0.5]])
    grad = np.zeros((1, 1, 2))
    k = np.array([2.0])
    F = neb.forces(theta, loss, grad, k, np.array([False]))[0, 0]
    up, down = theta[0, 2] - theta[0, 1], theta[0, 1] - theta[0, 0]
    tau = neb.tangents(theta, loss)[0, 0]
    full = k[0] * (up - down)
    along = k[0] * (np.linalg.norm(up) - np.linalg.norm(down)) * tau
    np.testing.assert_allclose(F, along + full - (full @ tau) * tau, rtol=1e-13, atol=1e-15)
    straight = np.array([[[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]]])
    F = neb.forces(straight, loss, grad, k, np.array([False]))[0, 0]
    np.testing.assert_allclose(F, [2.0 * (2.0 - 1.0), 0.0], atol=1e-15)  # the spring along the band only
