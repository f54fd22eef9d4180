"""The ``numba`` backend against the NumPy reference: values, gradients, training.

Each generated kernel costs a compilation, so a few models cover every activation
(one per layer), both losses, biases on and off, and trained and fixed outputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnkit import backends
from nnkit.config import TrainConfig
from nnkit.train import train

from conftest import make_problem

pytest.importorskip("numba")

NUMBA = backends.get("numba")
NUMPY = backends.get("numpy")

MODELS = {
    "relu-sigmoid-tanh": dict(activation=("relu", "sigmoid", "tanh"), widths=(4, 3, 5),
                              bias=(True, False, True), loss="squared"),
    "linear-softplus-leaky": dict(activation=("linear", "softplus", "leaky_relu"), widths=(3, 4, 2),
                                  loss="logistic", output_trained=False),
    "tanh-plain": dict(activation="tanh", widths=(6,), bias=False, output_bias=False, loss="logistic"),
}  # fmt: skip


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


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("R", [1, 11, 130])  # one block of lanes, and two
def test_value_and_gradient_equal_the_reference(name, R):
    compare(make_problem(R=R, n=13, d=3, seed=R, **MODELS[name]), rtol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_one_batch_per_network(name):
    compare(make_problem(R=9, n=5, seed=2, **MODELS[name]), rtol=1e-12, batches=True)


@pytest.mark.parametrize(
    "penalty", [{"l2": 0.05, "l1": 0.01, "regularize_bias": True}, {"reduction": "sum", "half": True}]
)
@pytest.mark.parametrize("name", ["relu-sigmoid-tanh", "linear-softplus-leaky"])
def test_penalties_and_conventions(name, penalty):
    compare(make_problem(R=9, n=7, seed=3, **MODELS[name], **penalty), rtol=1e-12)


def test_float32():
    compare(make_problem(R=10, n=17, seed=4, **MODELS["relu-sigmoid-tanh"]), rtol=1e-5, dtype=np.float32)


@pytest.mark.parametrize("name", MODELS)
def test_saturated_units_match_and_stay_finite(name):
    model, obj, theta, X, y = make_problem(R=8, n=9, seed=5, **MODELS[name])
    compare((model, obj, theta * 40.0, X, y), rtol=1e-12)


def test_fifty_training_steps_end_at_the_same_parameters():
    model, obj, theta, X, y = make_problem(R=13, n=31, seed=6, l2=1e-3, **MODELS["relu-sigmoid-tanh"])
    cfg = TrainConfig(method="nesterov", lr=0.05, momentum=0.8, max_steps=50, grad_tol=0.0)
    ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    fast = train(NUMBA.kernel(model, obj), NUMBA, theta, X, y, cfg)
    np.testing.assert_allclose(fast.theta, ref.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(fast.status, ref.status)


def test_nan_stays_in_its_own_init():
    model, obj, theta, X, y = make_problem(R=10, seed=7, **MODELS["tanh-plain"])
    theta[3, 0] = np.nan
    loss, grad = NUMBA.kernel(model, obj).value_and_grad(theta, X, y)
    assert np.isnan(loss[3]) and np.isfinite(np.delete(loss, 3)).all()
    assert np.isfinite(np.delete(grad, 3, axis=0)).all()


def test_kernels_are_generated_once_and_cached_on_disk(tmp_path, monkeypatch):
    from nnkit.backends import numba_codegen

    model, obj, *_ = make_problem(**MODELS["tanh-plain"])
    source = numba_codegen.kernel_source(model, obj.loss)
    assert source == numba_codegen.kernel_source(model, obj.loss)
    monkeypatch.setenv("NNKIT_CACHE_DIR", str(tmp_path))
    assert numba_codegen.cache_dir() == tmp_path / "kernels"
    numba_codegen.load_kernel(model, obj.loss)
    (path,) = (tmp_path / "kernels").glob("nnkit_kernel_*.py")
    assert path.read_text() == source


def test_compile_time_is_kept_apart():
    backend = backends.get("numba")
    model, obj, theta, X, y = make_problem(R=3, seed=8, **MODELS["tanh-plain"])
    kernel = backend.kernel(model, obj)
    loaded = backend.compile_seconds
    assert loaded > 0  # writing or finding the generated module
    kernel.value_and_grad(theta, X, y)
    after_first = backend.compile_seconds
    assert after_first > loaded  # compiling (or loading) for float64
    kernel.value_and_grad(theta, X, y)
    assert backend.compile_seconds == after_first  # once per dtype only
    kernel.value_and_grad(theta.astype(np.float32), X, y)
    assert backend.compile_seconds > after_first  # float32 is its own signature


def test_auto_picks_numba_on_a_cpu_machine():
    if backends.gpu.cupy_device()[0]:
        pytest.skip("a GPU is usable here")
    assert backends.resolve("auto") == "numba"


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
@pytest.mark.parametrize("name", ["relu-sigmoid-tanh", "linear-softplus-leaky"])
def test_fused_training_equals_the_step_by_step_loop(name, method):
    """The whole loop in the kernel: same updates, stops and final values as the
    reference trainer, with inits that converge, diverge and run out of steps."""
    model, obj, theta, X, y = make_problem(R=70, n=11, seed=9, l2=1e-3, l1=1e-4, **MODELS[name])
    theta = theta * 0.5
    theta[6, 0] = np.nan  # diverges at once
    cfg = TrainConfig(method=method, lr=0.05, momentum=0.7, max_steps=300, grad_tol=0.0)
    plain = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    # a tolerance that about half of the inits reach before the last step
    cfg = dataclasses.replace(cfg, grad_tol=float(np.nanmedian(plain.grad_norm)) * 1.5)
    kernel = NUMBA.kernel(model, obj)
    fused = kernel.train_fused(theta, X, y, cfg)
    ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    np.testing.assert_array_equal(fused.status, ref.status)
    assert {"converged", "diverged"} <= set(ref.status)
    np.testing.assert_array_equal(fused.steps, ref.steps)
    ok = ref.status != "diverged"
    np.testing.assert_allclose(fused.theta[ok], ref.theta[ok], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.loss[ok], ref.loss[ok], rtol=1e-10)
    np.testing.assert_allclose(fused.grad_norm[ok], ref.grad_norm[ok], rtol=1e-8, atol=1e-12)
    # train() takes the fused path for the numba backend
    via_train = train(kernel, NUMBA, theta, X, y, cfg)
    np.testing.assert_array_equal(via_train.theta, fused.theta)


def test_fused_training_float32_and_the_other_stopping_rules():
    model, obj, theta, X, y = make_problem(R=20, n=11, seed=10, **MODELS["tanh-plain"])
    theta[3] *= 30.0  # a large loss: stopped by max_loss
    start = NUMPY.kernel(model, obj).value(theta, X, y)
    cfg = TrainConfig(lr=0.1, max_steps=200, grad_tol=0.0, loss_target=float(np.median(start)) * 0.8,
                      max_loss=float(np.sort(start)[-2]) * 1.01)  # fmt: skip
    ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    fused = NUMBA.kernel(model, obj).train_fused(theta, X, y, cfg)
    assert {"target", "diverged"} <= set(ref.status)
    np.testing.assert_array_equal(fused.status, ref.status)
    np.testing.assert_array_equal(fused.steps, ref.steps)
    cfg32 = dataclasses.replace(cfg, dtype="float32")
    fused32 = NUMBA.kernel(model, obj).train_fused(theta, X, y, cfg32)
    ref32 = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg32)
    ok = ref32.status != "diverged"
    np.testing.assert_allclose(fused32.theta[ok], ref32.theta[ok], rtol=1e-4, atol=1e-5)


def test_sgd_and_history_take_the_step_by_step_path():
    model, obj, theta, X, y = make_problem(R=9, n=20, seed=11, **MODELS["relu-sigmoid-tanh"])
    for cfg in (TrainConfig(method="sgd", lr=0.05, batch_size=6, max_steps=30, grad_tol=0.0),
                TrainConfig(lr=0.05, max_steps=30, grad_tol=0.0, history=5)):  # fmt: skip
        ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg, seed=2)
        fast = train(NUMBA.kernel(model, obj), NUMBA, theta, X, y, cfg, seed=2)
        np.testing.assert_allclose(fast.theta, ref.theta, rtol=1e-10, atol=1e-12)
        assert (fast.history is None) == (ref.history is None)


def test_one_thread_and_no_networks():
    backend = backends.get("numba")
    backend.threads = 1
    model, obj, theta, X, y = make_problem(R=130, seed=12, **MODELS["tanh-plain"])
    compare_backend = backend.kernel(model, obj).value_and_grad(theta, X, y)
    ref = NUMPY.kernel(model, obj).value_and_grad(theta, X, y)
    np.testing.assert_allclose(compare_backend[1], ref[1], rtol=1e-12, atol=1e-14)
    loss, grad = backend.kernel(model, obj).value_and_grad(theta[:0], X, y)
    assert loss.shape == (0,) and grad.shape == (0, theta.shape[1])


def test_runs_through_the_runner_match_the_reference(tmp_path):
    from nnkit import config, load, run_experiment

    path = tmp_path / "e.toml"
    path.write_text(
        'name = "e"\ninits = 600\n[data]\nkind = "teacher_student"\nd = 3\nn = 40\nn_test = 20\n'
        '[model]\nhidden = [10]\nactivation = "tanh"\n[train]\nlr = 0.1\nmax_steps = 60\n'
        "grad_tol = 1e-3\n[run]\nmemory_mb = 1\n"
    )
    runs = {}
    for name in ("numpy", "numba"):
        out = run_experiment(config.load(path), results_dir=tmp_path / name, backend=name, progress=False)
        runs[name] = load(out)
    chunk = runs["numba"].meta["chunk_sizes"][0]
    assert chunk < 600 and chunk % 64 == 0  # cut by the budget, in whole blocks of lanes
    a, b = runs["numpy"].runs, runs["numba"].runs
    assert list(a["status"]) == list(b["status"]) and list(a["steps"]) == list(b["steps"])
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-9)
    np.testing.assert_allclose(runs["numba"].params(), runs["numpy"].params(), rtol=1e-9, atol=1e-12)
