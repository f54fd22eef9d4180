"""The ``cuda`` backend's Numba-CUDA kernels against the NumPy reference.

They run on the GPU under ``NNKIT_TEST_GPU=1`` and in Numba's CUDA simulator otherwise
(see ``conftest.py``); the simulator runs a Python thread per CUDA thread, so sizes are
kept small there, and the tiles are made small so that odd sizes cross tile edges.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnkit import backends
from nnkit.backends import cuda_backend, gpu
from nnkit.config import TrainConfig
from nnkit.train import train

from conftest import make_problem

pytest.importorskip("numba")

CUDA = backends.get("cuda")
NUMPY = backends.get("numpy")
ON_GPU = not gpu.simulated()
#: inits per test: a few in the simulator, several blocks' worth on a GPU
R = 300 if ON_GPU else 3

#: one-hidden-layer models of the small-network path: every activation, both losses,
#: biases on and off, a fixed output layer, thread groups with idle unit slots
SMALL = {
    "tanh": dict(activation="tanh", widths=(5,), d=3),
    "sigmoid-logistic": dict(activation="sigmoid", widths=(9,), d=3, loss="logistic"),
    "relu-plain": dict(activation="relu", widths=(4,), d=2, bias=False, output_bias=False),
    "softplus-fixed": dict(activation="softplus", widths=(3,), d=2, output_trained=False),
    "leaky-wide-group": dict(activation="leaky_relu", widths=(33,), d=2, loss="logistic"),
    "linear": dict(activation="linear", widths=(2,), d=4, bias=False),
}
#: models too wide for it (the GEMM + epilogue path)
WIDE = {
    "tanh-bias": dict(activation="tanh", widths=(6,), d=40),
    "relu-plain": dict(activation="relu", widths=(5,), d=41, bias=False, output_bias=False),
    "sigmoid-fixed-logistic": dict(activation="sigmoid", widths=(7,), d=39,
                                   output_trained=False, loss="logistic"),
}  # fmt: skip


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """Tiles of a few samples (the defaults hold hundreds), kernels rebuilt."""
    if ON_GPU:
        yield
        return
    small, wide = gpu.kernels("small_mlp"), gpu.kernels("wide_epilogue")
    caches = (small._device_functions, small.value_and_grad_kernel, small.train_kernel, wide.kernel)
    for cache in caches:
        cache.cache_clear()
    monkeypatch.setattr(small, "TILE_NUMBERS", 12)  # 4 rows at d = 3, 6 at d = 2
    monkeypatch.setattr(wide, "NS", 4)
    yield
    for cache in caches:
        cache.cache_clear()


def host(a):
    return CUDA.to_numpy(a)


def compare(problem, rtol=1e-12, dtype=np.float64):
    model, obj, theta, X, y = problem
    theta, X, y = theta.astype(dtype), X.astype(dtype), y.astype(dtype)
    ref_loss, ref_grad = NUMPY.kernel(model, obj).value_and_grad(theta, X, y)
    xp_dtype = getattr(CUDA.xp, np.dtype(dtype).name)
    loss, grad = CUDA.kernel(model, obj).value_and_grad(
        CUDA.asarray(theta, xp_dtype), CUDA.asarray(X, xp_dtype), CUDA.asarray(y, xp_dtype)
    )
    loss, grad = host(loss), host(grad)
    assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == ref_grad.shape
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    scale = np.maximum(np.abs(ref_grad).max(axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(grad / scale, ref_grad / scale, rtol=0, atol=rtol)


@pytest.mark.parametrize("name", SMALL)
def test_small_network_kernel_equals_the_reference(name):
    model = make_problem(**SMALL[name])[0]
    assert cuda_backend._path(model) == "small"
    compare(make_problem(R=R, n=9, seed=3, **SMALL[name]))


@pytest.mark.parametrize("name", WIDE)
def test_wide_network_path_equals_the_reference(name):
    model = make_problem(**WIDE[name])[0]
    assert cuda_backend._path(model) == "wide"
    compare(make_problem(R=R, n=9, seed=4, **WIDE[name]))


def test_float32_kernels():
    compare(make_problem(R=R, n=9, seed=5, **SMALL["tanh"]), rtol=2e-5, dtype=np.float32)
    compare(make_problem(R=R, n=9, seed=6, **WIDE["tanh-bias"]), rtol=2e-5, dtype=np.float32)


def test_deeper_networks_and_per_init_batches_take_the_shared_data_kernel():
    problem = make_problem(R=R, n=6, widths=(3, 4), activation=("tanh", "relu"), seed=7)
    assert cuda_backend._path(problem[0]) is None
    compare(problem)
    model, obj, theta, X, y = make_problem(R=R, n=5, seed=8, **SMALL["tanh"])
    rng = np.random.default_rng(0)
    Xb, yb = rng.normal(size=(R, 5, X.shape[1])), rng.normal(size=(R, 5))
    ref = NUMPY.kernel(model, obj).value_and_grad(theta, Xb, yb)
    got = CUDA.kernel(model, obj).value_and_grad(*(CUDA.asarray(a, CUDA.xp.float64) for a in (theta, Xb, yb)))
    np.testing.assert_allclose(host(got[1]), ref[1], rtol=1e-12, atol=1e-14)


def diverse_inits(theta):
    """Starting points that end in every status: one blows up (diverged)."""
    theta = theta.copy()
    theta[0] *= 40.0
    return theta


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
def test_fused_training_equals_the_step_by_step_loop(method):
    model, obj, theta, X, y = make_problem(R=R, n=9, seed=9, l2=0.01, l1=0.001, **SMALL["tanh"])
    theta = diverse_inits(theta)
    cfg = TrainConfig(method=method, lr=0.2, momentum=0.5, max_steps=12, grad_tol=0.05,
                      loss_target=0.2, max_loss=100.0)  # fmt: skip
    kernel = CUDA.kernel(model, obj)
    assert kernel.train_fused is not None
    fused = kernel.train_fused(theta, X, y, cfg)
    ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    np.testing.assert_array_equal(fused.status, ref.status)
    np.testing.assert_array_equal(fused.steps, ref.steps)
    ok = ref.status != "diverged"
    np.testing.assert_allclose(fused.theta[ok], ref.theta[ok], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.loss[ok], ref.loss[ok], rtol=1e-10)
    np.testing.assert_allclose(fused.grad_norm[ok], ref.grad_norm[ok], rtol=1e-8, atol=1e-12)
    assert "diverged" in ref.status


def test_fused_training_float32_with_a_group_of_threads_per_init():
    model, obj, theta, X, y = make_problem(R=R, n=7, seed=10, **SMALL["sigmoid-logistic"])
    cfg = TrainConfig(lr=0.3, max_steps=6, grad_tol=0.0, dtype="float32")
    fused = CUDA.kernel(model, obj).train_fused(theta, X, y, cfg)
    ref = train(NUMPY.kernel(model, obj), NUMPY, theta, X, y, cfg)
    np.testing.assert_array_equal(fused.status, ref.status)
    np.testing.assert_allclose(fused.theta, ref.theta, rtol=1e-4, atol=1e-5)


def test_train_uses_the_fused_kernel_only_where_it_applies():
    small = CUDA.kernel(*make_problem(**SMALL["tanh"])[:2])
    wide = CUDA.kernel(*make_problem(**WIDE["tanh-bias"])[:2])
    assert small.train_fused is not None and wide.train_fused is None


def test_auto_never_picks_the_simulator():
    if ON_GPU:
        pytest.skip("on a GPU, auto picks the cuda backend")
    info = backends.probe("cuda")
    assert info.usable and "simulator" in info.device
    assert backends.resolve("auto") != "cuda"


def test_chunks_need_no_room_for_activations_on_the_small_path():
    from nnkit import config
    from nnkit.runner import chunk_size_for

    exp = config.from_dict({"inits": 10**6, "data": {"n": 1000}, "model": {"hidden": [10]}})
    wide = config.from_dict({"inits": 10**6, "data": {"n": 1000}, "model": {"hidden": [300]}})
    assert chunk_size_for(exp, 1000, 10, CUDA) > 10 * chunk_size_for(wide, 1000, 10, CUDA)


def test_compile_time_is_counted_once_per_kernel():
    model, obj, theta, X, y = make_problem(R=2, n=4, seed=13, **SMALL["linear"])
    args = [CUDA.asarray(a, CUDA.xp.float64) for a in (theta, X, y)]
    before = CUDA.compile_seconds
    CUDA.kernel(model, obj).value_and_grad(*args)
    first = CUDA.compile_seconds
    CUDA.kernel(model, obj).value_and_grad(*args)  # another kernel object, same model
    assert first > before and CUDA.compile_seconds == first
