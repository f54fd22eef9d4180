"""The population loss on the ``cuda`` backend (``kernels/population.py``, a block of
threads per init) against the closed form and against the ``numba`` kernels.

The kernels run on the GPU under ``NNKIT_TEST_GPU=1`` and in Numba's CUDA simulator
otherwise (see ``conftest.py``); the simulator runs a Python thread per CUDA thread, so
sizes and step counts are kept small there.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_population import PENALTIES, layout, orthonormal, population_problem, special_students, student_from

from nnkit import backends
from nnkit.backends import cuda_population, gpu
from nnkit.core.losses import ObjectiveSpec
from nnkit.objective import make_objective, runs_on
from nnkit.training import TrainConfig, train

pytest.importorskip("numba")

CUDA = backends.get("cuda")
ON_GPU = not gpu.simulated()


def host(a):
    return np.asarray(CUDA.to_numpy(a))


@pytest.mark.parametrize("d, k, ks, trained", [(3, 4, 2, False), (2, 4, 3, True)])
@pytest.mark.parametrize("spec", [PENALTIES[0], PENALTIES[2]], ids=["half", "l1-l2"])
def test_value_and_gradient_match_the_closed_form(d, k, ks, trained, spec):
    """Random students, units parallel and antiparallel to a teacher unit, two parallel
    units and a dead one, with and without a penalty."""
    rng = np.random.default_rng(10 * d + k)
    lay = layout(d, k, trained)
    V = rng.normal(size=(d, ks))
    objective = make_objective(population_problem(lay, V, rng.uniform(0.5, 2.0, ks), spec), CUDA)
    assert objective.backend.name == "cuda" and objective.fuses(TrainConfig())
    theta = special_students(lay, V, rng)
    theta[1, : d * k].reshape(d, k)[:, 0] = 0.0  # a dead unit
    value, grad = objective.value_and_grad(CUDA.asarray(theta, np.float64))
    want_v, want_g = objective.closed_form.value_and_grad(theta)
    np.testing.assert_allclose(host(value), want_v, rtol=1e-12, atol=1e-12 * np.abs(want_v).max())
    np.testing.assert_allclose(host(grad), want_g, rtol=1e-12, atol=1e-12 * np.abs(want_g).max())
    np.testing.assert_allclose(host(objective.hessian(CUDA.asarray(theta, np.float64))),
                               objective.closed_form.hessian(theta), rtol=1e-12, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("method", ["gd", "nesterov"])
def test_fused_training_ends_as_the_numba_kernels_end(method):
    """One init diverging at once, one at the teacher (converged before a step), one
    running to max_steps: the same statuses, steps and end points as on numba."""
    d = k = 3
    lay = layout(d, k, trained=True)
    V = orthonormal(d, 2)
    problem = population_problem(lay, V)
    rng = np.random.default_rng(3)
    theta0 = np.concatenate([
        100.0 * rng.normal(size=(1, lay.size)), student_from(lay, V, np.ones(k)),
        rng.normal(size=(1, lay.size)) / np.sqrt(d),
    ])  # fmt: skip
    cfg = TrainConfig(method=method, lr=0.2, momentum=0.5, max_steps=6, grad_tol=1e-10, max_loss=1e4,
                      loss_target=-1.0)  # fmt: skip
    got = train(make_objective(problem, CUDA), theta0, cfg)
    want = train(make_objective(problem, backends.get("numba")), theta0, cfg)
    assert list(got.status) == list(want.status) == ["diverged", "converged", "max_steps"]
    assert list(got.steps) == list(want.steps)
    np.testing.assert_allclose(got.theta[1:], want.theta[1:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.loss[1:], want.loss[1:], rtol=1e-10, atol=1e-14)


def test_students_too_large_for_a_block_are_computed_on_the_host():
    """Past a block's shared memory the objective answers on the host, in device
    arrays, and training runs step by step."""
    lay = layout(60, 60, trained=False)
    assert not cuda_population.fits(lay, 60)
    rng = np.random.default_rng(0)
    objective = make_objective(population_problem(lay, rng.normal(size=(60, 60))), CUDA)
    theta = rng.normal(size=(2, lay.size)) / np.sqrt(60)
    value, grad = objective.value_and_grad(CUDA.asarray(theta, np.float64))
    want_v, want_g = objective.closed_form.value_and_grad(theta)
    np.testing.assert_array_equal(host(value), want_v)
    np.testing.assert_array_equal(host(grad), want_g)
    assert not objective.fuses(TrainConfig())


def test_the_population_runs_on_cuda_when_asked_and_auto_never_picks_the_simulator():
    rng = np.random.default_rng(1)
    problem = population_problem(layout(3, 3), rng.normal(size=(3, 2)))
    assert runs_on(problem, "cuda") == "cuda" and runs_on(problem, "cupy") == "numpy"
    assert runs_on(problem, "auto") == ("numba" if gpu.simulated() else "cuda")


@pytest.mark.gpu
def test_a_p14_sized_study_on_the_gpu_ends_as_on_numba():
    """200 inits of the P14 problem (k = d = 14) trained to a gradient norm of 1e-9 on
    the GPU: the same statuses and final losses as the numba kernels, steps within 2."""
    d = k = 14
    lay = layout(d, k, trained=False)
    V = orthonormal(d, 0)
    problem = population_problem(lay, V, spec=ObjectiveSpec(half=True))
    theta0 = np.random.default_rng(0).normal(size=(200, lay.size)) / np.sqrt(d)
    cfg = TrainConfig(lr=0.1, max_steps=100_000, grad_tol=1e-9)
    got = train(make_objective(problem, CUDA), theta0, cfg)
    want = train(make_objective(problem, backends.get("numba")), theta0, cfg)
    assert list(got.status) == list(want.status)
    np.testing.assert_allclose(got.steps, want.steps, atol=2)
    np.testing.assert_allclose(got.loss, want.loss, rtol=1e-8, atol=1e-14)
