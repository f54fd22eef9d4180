"""The exact teacher-student population loss (arc-cosine kernel) of
nnkit.objective.population, and its objective."""

from __future__ import annotations

import numpy as np
import pytest

from nnkit import backends
from nnkit.backends.reference import ReferenceKernel
from nnkit.core.layout import Layout
from nnkit.core.losses import ObjectiveSpec
from nnkit.core.model import Model
from nnkit.data import Dataset
from nnkit.objective import PopulationObjective, Problem, Teacher, TeacherStudentPopulation, make_objective, runs_on
from nnkit.training import TrainConfig, train


def layout(d, k, trained=True, value=1.0):
    return Layout(d=d, widths=(k,), bias=(False,), output_trained=trained, output_value=value)


def orthonormal(d, seed):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


def student_from(lay, W, a=None):
    """One theta row (1, P) from ``W (d, k)`` and, when trained, ``a (k,)``."""
    parts = [W.reshape(-1)] + ([a] if lay.output_trained else [])
    return np.concatenate(parts)[None]


def fd_grad(f, theta, h):
    g = np.zeros_like(theta)
    for p in range(theta.shape[1]):
        e = np.zeros(theta.shape[1])
        e[p] = h
        g[:, p] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def fd_hessian(pop, theta, h=1e-5):
    H = np.zeros(theta.shape + (theta.shape[1],))
    for p in range(theta.shape[1]):
        e = np.zeros(theta.shape[1])
        e[p] = h
        H[:, :, p] = (pop.value_and_grad(theta + e)[1] - pop.value_and_grad(theta - e)[1]) / (2 * h)
    return H


def special_students(lay, V, rng):
    """Random students plus students with units parallel / antiparallel to a teacher
    unit (t = 0, pi) and two parallel student units."""
    d, k = lay.d, lay.widths[0]
    rows = [rng.normal(size=(2, lay.size))]
    W = rng.normal(size=(d, k))
    W[:, 0] = 1.7 * V[:, 0]
    W[:, 1] = -0.6 * V[:, 1 % V.shape[1]]
    W[:, 2] = 0.5 * W[:, 3]
    rows.append(student_from(lay, W, rng.normal(size=k)))
    return np.concatenate(rows)


# -- the closed form against Monte Carlo ----------------------------------------------

D = 6
N_MC = 2_000_000


@pytest.fixture(scope="module")
def X_mc():
    return np.random.default_rng(123).normal(size=(N_MC, D))


def mc_loss(pop, theta, X):
    """Sample mean of (f - y)^2 per student and its standard error."""
    y = pop.teacher(X)
    student = ReferenceKernel(Model(pop.layout, ("relu",)), ObjectiveSpec())
    s1 = np.zeros(theta.shape[0])
    s2 = np.zeros(theta.shape[0])
    for start in range(0, X.shape[0], 500_000):
        r2 = (student.predict(theta, X[start : start + 500_000]) - y[start : start + 500_000]) ** 2
        s1 += r2.sum(axis=1)
        s2 += (r2 * r2).sum(axis=1)
    mean = s1 / X.shape[0]
    return mean, np.sqrt((s2 / X.shape[0] - mean**2) / X.shape[0])


@pytest.mark.parametrize(
    "name, k, trained, teacher",
    [
        ("trained output, orthonormal teacher", 6, True, "orthonormal"),
        ("output fixed to ones, orthonormal teacher", 6, False, "orthonormal"),
        ("trained output, normal teacher", 6, True, "normal"),
        ("k > k*, fixed output", 9, False, "normal4"),
        ("k < k*, trained output", 3, True, "orthonormal"),
    ],
)
def test_closed_form_matches_monte_carlo(X_mc, name, k, trained, teacher):
    rng = np.random.default_rng(k + 10 * trained)
    V = {
        "orthonormal": orthonormal(D, 1),
        "normal": rng.normal(size=(D, D)) / np.sqrt(D),
        "normal4": rng.normal(size=(D, 4)) / np.sqrt(D),
    }[teacher]
    lay = layout(D, k, trained)
    pop = TeacherStudentPopulation(lay, V)
    theta = rng.normal(size=(3, lay.size)) / np.sqrt(D)
    exact = pop.value(theta)
    mean, se = mc_loss(pop, theta, X_mc)
    assert np.all(np.abs(exact - mean) < 4.5 * se), (name, exact, mean, se)
    # E[y^2] alone: a student with all weights 0
    mean0, se0 = mc_loss(pop, np.zeros((1, lay.size)), X_mc)
    assert abs(pop.teacher_norm - mean0[0]) < 4.5 * se0[0]


def test_predict_matches_reference_kernel():
    rng = np.random.default_rng(0)
    for trained in (True, False):
        lay = layout(4, 5, trained, value=0.7)
        pop = TeacherStudentPopulation(lay, rng.normal(size=(4, 3)))
        ref = ReferenceKernel(Model(lay, ("relu",)), ObjectiveSpec())
        theta, X = rng.normal(size=(3, lay.size)), rng.normal(size=(11, 4))
        np.testing.assert_allclose(pop.predict(theta, X), ref.predict(theta, X), rtol=1e-13)
        Xr = rng.normal(size=(3, 11, 4))  # one batch per network
        np.testing.assert_allclose(pop.predict(theta, Xr), ref.predict(theta, Xr), rtol=1e-13)


def test_the_objective_of_a_problem_with_a_teacher_is_the_closed_form():
    """make_objective picks the population loss for a problem with a teacher, on numba
    or numpy as asked (NumPy for the cupy backend; the cuda backend's is in
    test_population_cuda.py)."""
    rng = np.random.default_rng(0)
    lay = layout(4, 5, trained=True)
    model, V = Model(lay, ("relu",)), rng.normal(size=(4, 3))
    X = rng.normal(size=(11, 4))
    problem = Problem(model, ObjectiveSpec(half=True), Dataset(X, np.zeros(11), X[:0], np.zeros(0)),
                      Teacher(V, np.ones(3)))  # fmt: skip
    for asked in ("numba", "numpy"):
        objective = make_objective(problem, backends.get(asked))
        assert isinstance(objective, PopulationObjective) and objective.backend.name == asked
    assert runs_on(problem, "cupy") == "numpy"
    assert runs_on(problem, "auto") == "numba"
    pop = TeacherStudentPopulation(lay, V, spec=ObjectiveSpec(half=True))
    theta = rng.normal(size=(3, lay.size))
    for got, want in zip(objective.value_and_grad(theta), pop.value_and_grad(theta)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(objective.hessian(theta), pop.hessian(theta))
    V_dir = rng.normal(size=theta.shape)
    np.testing.assert_allclose(objective.hvp(theta, V_dir), np.einsum("rpq,rq->rp", pop.hessian(theta), V_dir),
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_array_equal(objective.predict(theta, X), pop.predict(theta, X))
    assert objective.samples is None


# -- exact derivatives -------------------------------------------------------------------

CASES = [
    # d, k, k*, output trained, output value, teacher output weights
    (5, 4, 3, True, 1.0, None),
    (6, 6, 6, False, 1.0, None),
    (4, 5, 2, False, 0.7, np.array([1.0, -0.5])),
    (3, 4, 5, True, 1.0, np.array([0.3, 1.0, -2.0, 0.5, 1.2])),
]


@pytest.mark.parametrize("d, k, ks, trained, value, b", CASES)
def test_gradient_matches_finite_differences(d, k, ks, trained, value, b):
    rng = np.random.default_rng(d * k * ks)
    V = orthonormal(d, 2)[:, :ks] if ks <= d else rng.normal(size=(d, ks))
    lay = layout(d, k, trained, value)
    pop = TeacherStudentPopulation(lay, V, b)
    theta = special_students(lay, V, rng)
    loss, g = pop.value_and_grad(theta)
    np.testing.assert_allclose(loss, pop.value(theta), rtol=1e-14)
    gf = fd_grad(pop.value, theta, 1e-6)
    np.testing.assert_allclose(g, gf, rtol=1e-6, atol=1e-6 * np.abs(g).max())


@pytest.mark.parametrize("d, k, ks, trained, value, b", CASES)
def test_hessian_matches_finite_differences_and_is_symmetric(d, k, ks, trained, value, b):
    rng = np.random.default_rng(d * k * ks + 1)
    V = orthonormal(d, 3)[:, :ks] if ks <= d else rng.normal(size=(d, ks))
    lay = layout(d, k, trained, value)
    pop = TeacherStudentPopulation(lay, V, b)
    theta = special_students(lay, V, rng)
    H = pop.hessian(theta)
    assert H.shape == (theta.shape[0], lay.size, lay.size)
    scale = np.abs(H).max()
    np.testing.assert_allclose(H, np.swapaxes(H, 1, 2), rtol=0, atol=1e-13 * scale)
    # k is only C^2 at t = 0 and pi: there the difference quotient is O(h), ~1e-6 here
    np.testing.assert_allclose(H, fd_hessian(pop, theta), rtol=1e-5, atol=1e-5 * scale)


def test_zero_student_unit_has_zero_gradient():
    rng = np.random.default_rng(5)
    lay = layout(4, 3)
    pop = TeacherStudentPopulation(lay, rng.normal(size=(4, 2)))
    W = rng.normal(size=(4, 3))
    W[:, 1] = 0.0
    theta = student_from(lay, W, rng.normal(size=3))
    loss, g = pop.value_and_grad(theta)
    H = pop.hessian(theta)
    assert np.isfinite(loss).all() and np.isfinite(H).all()
    assert np.all(lay.weights(g, 1)[0, :, 1] == 0.0)
    # the unit contributes nothing, so the loss is that of the student without it
    lay2 = layout(4, 2)
    theta2 = student_from(lay2, W[:, [0, 2]], theta[0, -3:][[0, 2]])
    reduced = TeacherStudentPopulation(lay2, pop.V).value(theta2)
    np.testing.assert_allclose(loss, reduced, rtol=1e-14)


# -- the teacher, permutations, conventions ----------------------------------------------


@pytest.mark.parametrize("trained", [True, False])
def test_teacher_is_a_zero_loss_critical_point_for_every_permutation(trained):
    rng = np.random.default_rng(7)
    d, k = 5, 4
    V = rng.normal(size=(d, k))
    b = rng.normal(size=k) if trained else np.ones(k)
    lay = layout(d, k, trained)
    pop = TeacherStudentPopulation(lay, V, b)
    perms = [np.arange(k), np.array([3, 1, 0, 2]), np.array([1, 2, 3, 0])]
    theta = np.concatenate([student_from(lay, V[:, p], b[p]) for p in perms])
    loss, g = pop.value_and_grad(theta)
    assert np.abs(loss).max() < 1e-12
    assert np.abs(g).max() < 1e-12


def test_loss_is_invariant_under_permutations_of_student_units():
    rng = np.random.default_rng(8)
    d, k = 4, 5
    lay = layout(d, k)
    pop = TeacherStudentPopulation(lay, rng.normal(size=(d, 3)))
    W, a = rng.normal(size=(d, k)), rng.normal(size=k)
    perm = rng.permutation(k)
    theta = np.concatenate([student_from(lay, W, a), student_from(lay, W[:, perm], a[perm])])
    loss = pop.value(theta)
    np.testing.assert_allclose(loss[1], loss[0], rtol=1e-13)


def test_half_and_penalty():
    rng = np.random.default_rng(9)
    lay = layout(4, 3)
    V = rng.normal(size=(4, 2))
    theta = rng.normal(size=(3, lay.size))
    plain = TeacherStudentPopulation(lay, V)
    half = TeacherStudentPopulation(lay, V, spec=ObjectiveSpec(half=True))
    l2 = TeacherStudentPopulation(lay, V, spec=ObjectiveSpec(l2=0.3))
    l1 = TeacherStudentPopulation(lay, V, spec=ObjectiveSpec(l1=0.2))
    (L, g), H = plain.value_and_grad(theta), plain.hessian(theta)
    np.testing.assert_allclose(half.value(theta), L / 2, rtol=1e-14)
    np.testing.assert_allclose(half.value_and_grad(theta)[1], g / 2, rtol=1e-14)
    np.testing.assert_allclose(half.hessian(theta), H / 2, rtol=1e-14)
    np.testing.assert_allclose(l2.value(theta), L + 0.3 * np.sum(theta**2, axis=1), rtol=1e-14)
    np.testing.assert_allclose(l2.value_and_grad(theta)[1], g + 0.6 * theta, rtol=1e-13)
    np.testing.assert_allclose(l2.hessian(theta), H + 0.6 * np.eye(lay.size), rtol=1e-14)
    np.testing.assert_allclose(l1.value(theta), L + 0.2 * np.abs(theta).sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(l1.hessian(theta), H, rtol=1e-14)


def test_rejects_layouts_without_a_closed_form():
    V = np.ones((3, 2))
    bad = [
        Layout(d=3, widths=(4, 4), bias=(False, False)),
        Layout(d=3, widths=(4,), bias=(True,)),
        Layout(d=3, widths=(4,), bias=(False,), output_bias=True),
    ]
    for lay in bad:
        with pytest.raises(ValueError, match="one hidden layer"):
            TeacherStudentPopulation(lay, V)
    with pytest.raises(ValueError, match="relu"):
        TeacherStudentPopulation(Model(layout(3, 4), ("tanh",)), V)
    with pytest.raises(ValueError, match="shape"):
        TeacherStudentPopulation(layout(3, 4), np.ones((2, 2)))
    with pytest.raises(ValueError, match="squared"):
        TeacherStudentPopulation(layout(3, 4), V, spec=ObjectiveSpec(loss="logistic"))


def test_trainer_runs_on_the_population_loss():
    rng = np.random.default_rng(10)
    d, k = 4, 3
    lay = layout(d, k, trained=False)
    V = orthonormal(d, 4)[:, :k]
    X = np.zeros((1, d))  # samples only evaluate the networks
    problem = Problem(Model(lay, ("relu",)), ObjectiveSpec(half=True), Dataset(X, np.zeros(1), X, np.zeros(1)),
                      Teacher(V, np.ones(k)))  # fmt: skip
    # the teacher's weights plus a small perturbation converge back to the teacher
    theta0 = V.reshape(1, -1) + 0.05 * rng.normal(size=(2, lay.size))
    # loss_target < 0: stop on the gradient only (the loss reaches 0 up to rounding)
    cfg = TrainConfig(lr=0.5, max_steps=2000, grad_tol=1e-10, loss_target=-1.0)
    result = train(make_objective(problem, backends.get("numpy")), theta0, cfg)
    assert list(result.status) == ["converged", "converged"]
    with pytest.raises(ValueError, match="no samples"):
        train(make_objective(problem, backends.get("numpy")), theta0, TrainConfig(method="sgd"))
    assert np.all(np.abs(result.loss) < 1e-14)
    np.testing.assert_allclose(result.theta, np.tile(V.reshape(1, -1), (2, 1)), atol=1e-8)


# -- the numba kernels against the closed form ---------------------------------------------


def population_problem(lay, V, b=None, spec=None):
    X = np.zeros((1, lay.d))
    b = np.ones(V.shape[1]) if b is None else b
    return Problem(Model(lay, ("relu",)), spec or ObjectiveSpec(half=True), Dataset(X, np.zeros(1), X, np.zeros(1)),
                   Teacher(V, b))  # fmt: skip


PENALTIES = [ObjectiveSpec(half=True), ObjectiveSpec(l2=0.03), ObjectiveSpec(half=True, l1=0.02, l2=0.01)]


@pytest.mark.parametrize("d, k, ks, trained, value, b", CASES + [(14, 14, 14, False, 1.0, None), (7, 9, 2, True, 1.0, None)])
@pytest.mark.parametrize("spec", PENALTIES, ids=["half", "l2", "l1-l2"])
def test_numba_value_and_gradient_match_the_closed_form(d, k, ks, trained, value, b, spec):
    rng = np.random.default_rng(d * 100 + k * 10 + ks)
    lay = layout(d, k, trained, value)
    V = rng.normal(size=(d, ks))
    problem = population_problem(lay, V, b, spec)
    theta = np.concatenate([special_students(lay, V, rng), 0.3 * rng.normal(size=(13, lay.size))])
    theta[3, : d * k].reshape(d, k)[:, 1] = 0.0  # a dead unit
    fast = make_objective(problem, backends.get("numba"))
    ref = make_objective(problem, backends.get("numpy"))
    (v1, g1), (v0, g0) = fast.value_and_grad(theta), ref.value_and_grad(theta)
    np.testing.assert_allclose(v1, v0, rtol=1e-12, atol=1e-12 * np.abs(v0).max())
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-12 * np.abs(g0).max())
    np.testing.assert_allclose(fast.value(theta), v0, rtol=1e-12, atol=1e-12 * np.abs(v0).max())


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
@pytest.mark.parametrize("trained", [False, True])
def test_numba_training_matches_the_numpy_loop(method, trained):
    rng = np.random.default_rng(5)
    d, k = 5, 5
    lay = layout(d, k, trained)
    V = orthonormal(d, 1)
    problem = population_problem(lay, V)
    theta0 = rng.normal(size=(9, lay.size)) / np.sqrt(d)
    theta0[-1] *= 40.0  # far out: with a trained output (curvature ~ |w|^2) it diverges
    # loss_target < 0: the loss at the teacher rounds to either side of 0
    cfg = TrainConfig(method=method, lr=0.2, momentum=0.5, max_steps=3000, grad_tol=1e-8, max_loss=1e4, loss_target=-1.0)
    fast = make_objective(problem, backends.get("numba"))
    assert fast.fuses(cfg) and not fast.fuses(TrainConfig(history=3))
    got = train(fast, theta0, cfg)
    want = train(make_objective(problem, backends.get("numpy")), theta0, cfg)
    assert list(got.status) == list(want.status)
    assert "converged" in want.status and ("diverged" in want.status) == trained
    ok = want.status != "diverged"
    np.testing.assert_allclose(got.steps[ok], want.steps[ok], atol=2)
    np.testing.assert_allclose(got.theta[ok], want.theta[ok], atol=1e-7)
    np.testing.assert_allclose(got.loss[ok], want.loss[ok], atol=1e-12)


def test_the_kernels_arctangent_is_atan2_to_rounding():
    """The polynomial arctangent of the numba kernels (vectorised over the units) against
    NumPy's atan2 over twelve decades, at 0, pi/2, pi and where both are zero."""
    from nnkit.backends import numba_population as kernels

    rng = np.random.default_rng(4)
    scale = 10.0 ** rng.uniform(-12, 4, size=(2, 50_000))
    s = np.concatenate([np.abs(rng.normal(size=50_000)) * scale[0], [0.0, 0.0, 0.0, 1.0, 1e-300, 2.0, 3.0]])
    c = np.concatenate([rng.normal(size=50_000) * scale[1], [0.0, 1.0, -1.0, 0.0, -1.0, 2.0, -3.0]])
    out = np.empty_like(s)
    kernels.angles(s, c, out)
    np.testing.assert_allclose(out, np.arctan2(s, c), rtol=1e-15, atol=1e-15)


def test_numba_training_in_ranges_ends_as_the_steps_do():
    """Inits in many ranges shared by the threads, stopping at very different steps
    (some at max_steps): every init ends as the numpy loop ends it, and as training step
    by step through the numba value_and_grad does (the same sums, to rounding)."""
    import dataclasses

    rng = np.random.default_rng(8)
    d = k = 6
    lay = layout(d, k, False)
    problem = population_problem(lay, orthonormal(d, 2))
    theta0 = rng.normal(size=(150, lay.size)) / np.sqrt(d) * rng.uniform(0.3, 3.0, size=(150, 1))
    cfg = TrainConfig(lr=0.2, max_steps=1500, grad_tol=1e-7, loss_target=-1.0)
    fast = make_objective(problem, backends.get("numba"))
    got = train(fast, theta0, cfg)
    stepped = train(fast, theta0, dataclasses.replace(cfg, history=500))
    want = train(make_objective(problem, backends.get("numpy")), theta0, cfg)
    assert "converged" in got.status and "max_steps" in got.status and len(set(got.steps)) > 50
    assert list(got.status) == list(stepped.status) and list(got.steps) == list(stepped.steps)
    np.testing.assert_allclose(got.theta, stepped.theta, rtol=1e-10, atol=1e-13)
    assert list(got.status) == list(want.status)
    np.testing.assert_allclose(got.steps, want.steps, atol=2)
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("d, k, ks, trained, value, b", CASES)
def test_the_lean_gradient_matches_the_pairwise_form(d, k, ks, trained, value, b):
    """value_and_grad (angles from cosines, (R, k, k + k*) arrays) against the pairwise
    quantities the Hessian uses (angles from the projections), near t = 0 and pi too."""
    rng = np.random.default_rng(7 * d + k)
    lay = layout(d, k, trained, value)
    V = rng.normal(size=(d, ks))
    pop = TeacherStudentPopulation(lay, V, b)
    theta = np.concatenate([special_students(lay, V, rng), rng.normal(size=(5, lay.size))])
    theta[2, : d * k].reshape(d, k)[:, 0] = 0.0  # a dead unit
    q = pop._quantities(np, theta, 1)
    _, gw, ga = pop._grad_parts(np, q)
    want_v, want_g = pop.scale * q["loss"], pop.scale * pop._flat(np, gw, ga)
    got_v, got_g = pop.value_and_grad(theta)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-12, atol=1e-13 * np.abs(want_v).max())
    np.testing.assert_allclose(got_g, want_g, rtol=1e-10, atol=1e-12 * np.abs(want_g).max())
