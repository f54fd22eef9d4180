"""Every backend against the NumPy reference: one conformance suite, parametrised over
the registered backends, each skipped (with the reason) where it cannot run.

The ``cuda`` backend runs here on the GPU under ``NNKIT_TEST_GPU=1`` and in Numba's
CUDA simulator otherwise (see ``conftest.py``), where every simulated thread is a
Python thread: sizes are small there, and the kernels' tiles are shrunk so that odd
sizes still cross tile edges. What is particular to one backend (its code cache, its
thread layouts, which path it picks) is tested in that backend's own file.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_problem, matches_reference, objective_of

from nnkit import backends
from nnkit.backends import gpu
from nnkit.core.stops import labels
from nnkit.training import TrainConfig, train

NUMPY = backends.get("numpy")
SIMULATED = gpu.simulated()

#: models that cover every activation (one per layer), both losses, biases on and off,
#: trained and fixed outputs, and, on the ``cuda`` backend, each of its three paths
#: (deeper networks: the shared-data kernel; ``small-*``: the fused small-network
#: kernel; ``wide-*``: GEMM + epilogue)
MODELS = {
    "deep": dict(activation=("relu", "sigmoid", "tanh"), widths=(4, 3, 5), bias=(True, False, True)),
    "deep-logistic-fixed": dict(activation=("linear", "softplus", "leaky_relu"), widths=(3, 4, 2),
                                loss="logistic", output_trained=False),
    "small-tanh": dict(activation="tanh", widths=(6,), bias=False, output_bias=False, loss="logistic"),
    "wide-sigmoid-fixed": dict(activation="sigmoid", widths=(7,), d=39, output_trained=False, loss="logistic"),
}  # fmt: skip


def _param(name):
    marks = [pytest.mark.gpu] if name == "cupy" else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(params=[_param(name) for name in backends.REGISTRY if name != "numpy"])
def backend(request):
    info = backends.probe(request.param)
    if not info.usable:
        pytest.skip(f"backend {request.param} cannot run here: {info.reason}")
    if request.param == "cuda":
        request.getfixturevalue("small_cuda_tiles")
    return backends.get(request.param)


def sizes(backend) -> dict:
    """Inits per test: several lane blocks on the CPU, a few in the simulator, several
    blocks' worth on a GPU."""
    if backend.name == "cuda" and SIMULATED:
        return {"R": (3,), "train_R": 3, "n": 9, "steps": 8}
    if backend.name in ("cuda", "cupy"):
        return {"R": (300,), "train_R": 257, "n": 301, "steps": 50}
    return {"R": (1, 11, 130), "train_R": 70, "n": 31, "steps": 300}


@pytest.mark.parametrize("name", MODELS)
def test_value_and_gradient_equal_the_reference(backend, name):
    for R in sizes(backend)["R"]:
        matches_reference(backend, make_problem(R=R, n=13, seed=R, **{"d": 3, **MODELS[name]}))


@pytest.mark.parametrize("name", MODELS)
def test_one_batch_per_network(backend, name):
    matches_reference(backend, make_problem(R=sizes(backend)["R"][-1], n=5, seed=2, **MODELS[name]), batches=True)


@pytest.mark.parametrize(
    "penalty", [{"l2": 0.05, "l1": 0.01, "regularize_bias": True}, {"reduction": "sum", "half": True}]
)
@pytest.mark.parametrize("name", ["deep", "small-tanh", "wide-sigmoid-fixed"])
def test_penalties_and_conventions(backend, name, penalty):
    matches_reference(backend, make_problem(R=sizes(backend)["R"][-1], n=7, seed=3, **MODELS[name], **penalty))


@pytest.mark.parametrize("name", MODELS)
def test_float32(backend, name):
    matches_reference(backend, make_problem(R=sizes(backend)["R"][-1], n=17, seed=4, **MODELS[name]),
            rtol=2e-5, dtype=np.float32)  # fmt: skip


@pytest.mark.parametrize("name", ["deep", "deep-logistic-fixed", "small-tanh"])
def test_saturated_units_match_and_stay_finite(backend, name):
    """Weights 40 times too large saturate every sigmoid, tanh and softplus (with d = 39
    inputs the gradient of a saturated sigmoid, h (1 - h), cancels catastrophically and
    no two implementations agree on it: the wide model is left out)."""
    model, obj, theta, X, y = make_problem(R=sizes(backend)["R"][-1], n=9, seed=5, **MODELS[name])
    loss, grad = matches_reference(backend, (model, obj, theta * 40.0, X, y))
    assert np.isfinite(loss).all() and np.isfinite(grad).all()


@pytest.mark.parametrize("name", ["deep", "small-tanh", "wide-sigmoid-fixed"])
def test_nan_stays_in_its_own_init(backend, name):
    model, obj, theta, X, y = make_problem(R=max(3, sizes(backend)["R"][-1]), seed=7, **MODELS[name])
    theta[1, 0] = np.nan
    args = (backend.asarray(a, backend.xp.float64) for a in (theta, X, y))
    with np.errstate(invalid="ignore"):  # the NaN init's own arithmetic
        loss, grad = (backend.to_numpy(a) for a in backend.kernel(model, obj).value_and_grad(*args))
    assert np.isnan(loss[1]) and np.isfinite(np.delete(loss, 1)).all()
    assert np.isfinite(np.delete(grad, 1, axis=0)).all()


@pytest.mark.parametrize("name", MODELS)
def test_training_ends_where_the_reference_ends(backend, name):
    """Nesterov with an L2 penalty, through :func:`train` (fused where the backend
    fuses): the same statuses and, to 1e-10, the same parameters."""
    size = sizes(backend)
    model, obj, theta, X, y = make_problem(R=size["train_R"], n=size["n"], seed=6, l2=1e-3, **MODELS[name])
    # a simulated launch of the wide path takes seconds: a few steps show the loop works
    steps = 3 if SIMULATED and backend.name == "cuda" and name.startswith("wide") else min(50, size["steps"])
    cfg = TrainConfig(method="nesterov", lr=0.05, momentum=0.8, max_steps=steps, grad_tol=0.0)
    ref = train(objective_of(model, obj, X, y), theta, cfg)
    got = train(objective_of(model, obj, X, y, backend), theta, cfg)
    np.testing.assert_array_equal(got.status, ref.status)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-10)
    np.testing.assert_allclose(got.theta, ref.theta, rtol=1e-10, atol=1e-12)


def fusing(backend, name, cfg):
    """The backend's objective for ``name`` (a small problem), skipping where its kernel
    does not fuse training with ``cfg``."""
    size = sizes(backend)
    problem = make_problem(R=size["train_R"], n=min(11, size["n"]), seed=9, l2=1e-3, l1=1e-4, **MODELS[name])
    model, obj, theta, X, y = problem
    objective = objective_of(model, obj, X, y, backend)
    if not objective.fuses(cfg):
        pytest.skip(f"the {backend.name} backend does not fuse training of {name}")
    return problem, objective


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
@pytest.mark.parametrize("name", MODELS)
def test_fused_training_equals_the_step_by_step_loop(backend, name, method):
    """The whole loop in one compiled call: the same updates, stops and final values as
    the reference trainer, with inits that converge, diverge and run out of steps."""
    cfg = TrainConfig(method=method, lr=0.05, momentum=0.7, max_steps=sizes(backend)["steps"], grad_tol=0.0)
    (model, obj, theta, X, y), objective = fusing(backend, name, cfg)
    theta = theta * 0.5
    theta[0, 0] = np.nan  # diverges at once
    plain = train(objective_of(model, obj, X, y), theta, cfg)
    # a tolerance that some inits reach before the last step
    cfg = dataclasses.replace(cfg, grad_tol=float(np.nanmedian(plain.grad_norm)) * 1.5)
    fused = objective.train_fused(theta, cfg)
    ref = train(objective_of(model, obj, X, y), theta, cfg)
    np.testing.assert_array_equal(labels(fused.stop), ref.status)
    assert "diverged" in ref.status and len(set(ref.status)) > 1
    np.testing.assert_array_equal(fused.steps, ref.steps)
    ok = ref.status != "diverged"
    np.testing.assert_allclose(fused.theta[ok], ref.theta[ok], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.loss[ok], ref.loss[ok], rtol=1e-10)
    np.testing.assert_allclose(fused.grad_norm[ok], ref.grad_norm[ok], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", ["small-tanh"])
def test_fused_training_float32_and_the_other_stopping_rules(backend, name):
    size = sizes(backend)
    model, obj, theta, X, y = make_problem(R=size["train_R"], n=min(11, size["n"]), seed=10, **MODELS[name])
    theta[1] *= 30.0  # a large loss: stopped by max_loss
    start = NUMPY.kernel(model, obj).value(theta, X, y)
    cfg = TrainConfig(lr=0.1, max_steps=size["steps"], grad_tol=0.0,
                      loss_target=float(np.median(start)) * 0.8, max_loss=float(np.sort(start)[-2]) * 1.01)  # fmt: skip
    objective = objective_of(model, obj, X, y, backend)
    if not objective.fuses(cfg):
        pytest.skip(f"the {backend.name} backend does not fuse training of {name}")
    ref = train(objective_of(model, obj, X, y), theta, cfg)
    got = train(objective, theta, cfg)
    assert "diverged" in ref.status
    np.testing.assert_array_equal(got.status, ref.status)
    np.testing.assert_array_equal(got.steps, ref.steps)
    cfg32 = dataclasses.replace(cfg, dtype="float32")
    got32 = train(objective, theta, cfg32)
    ref32 = train(objective_of(model, obj, X, y), theta, cfg32)
    ok = (ref32.status != "diverged") & (got32.status == ref32.status)
    assert ok.mean() > 0.5
    np.testing.assert_allclose(got32.theta[ok], ref32.theta[ok], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["deep", "small-tanh"])
def test_sgd_and_history_take_the_step_by_step_path(backend, name):
    size = sizes(backend)
    model, obj, theta, X, y = make_problem(R=size["R"][-1], n=min(20, size["n"]), seed=11, **MODELS[name])
    objective = objective_of(model, obj, X, y, backend)
    steps = min(12, size["steps"])
    for cfg in (TrainConfig(method="sgd", lr=0.05, batch_size=4, max_steps=steps, grad_tol=0.0),
                TrainConfig(lr=0.05, max_steps=steps, grad_tol=0.0, history=5)):  # fmt: skip
        assert not objective.fuses(cfg)
        ref = train(objective_of(model, obj, X, y), theta, cfg, seed=2)
        got = train(objective, theta, cfg, seed=2)
        np.testing.assert_allclose(got.theta, ref.theta, rtol=1e-10, atol=1e-12)
        assert (got.history is None) == (ref.history is None)


_FAULTS = """
import resource, numpy as np
from nnkit import backends
backends.get("numpy")
a = np.ones(40_000)  # 320 KB: above glibc's first mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    temporaries = [a * 2.0 for _ in range(8)]
    del temporaries
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds: Linux only")
def test_temporaries_reuse_freed_memory_unless_told_not_to():
    """Once a backend is made, temporaries of a few hundred KB come from memory freed
    before (a handful of page faults, not one per page each time);
    ``NNKIT_MALLOC=default`` leaves glibc's behaviour alone."""
    from nnkit.backends.allocator import keep_freed_memory

    def faults(**env):
        run = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True,
                             env={**os.environ, **env})  # fmt: skip
        return int(run.stdout.split()[-1])

    if not keep_freed_memory():
        pytest.skip("no glibc mallopt here")
    kept = faults()
    assert kept < 1_000, (kept, faults(NNKIT_MALLOC="default"))
    told = "from nnkit.backends.allocator import keep_freed_memory as k; print(k())"
    for env, said in (({"NNKIT_MALLOC": "default"}, "False"), ({}, "True")):
        run = subprocess.run([sys.executable, "-c", told], capture_output=True, text=True, check=True,
                             env={**os.environ, **env})  # fmt: skip
        assert run.stdout.strip() == said


def test_host_slices_cover_the_rows_in_order_and_respect_omp_num_threads(monkeypatch):
    from nnkit.backends import host_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert host_threads.cores() == 1
    assert host_threads.map_slices(lambda a, b: (a, b), 10) == [(0, 10)]
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    got = host_threads.map_slices(lambda a, b: list(range(a, b)), 10, min_rows=3)
    assert [i for part in got for i in part] == list(range(10)) and all(len(p) >= 3 for p in got)
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert host_threads.cores() >= 1
