"""What is particular to the ``cuda`` backend: which of its three paths a model takes
(each path against the NumPy reference on the models it is built for), where fused
training applies, chunk sizes, compile time, and that ``auto`` never picks the
simulator. The conformance suite of every backend is ``test_backends.py``.

The kernels run on the GPU under ``NNKIT_TEST_GPU=1`` and in Numba's CUDA simulator
otherwise (see ``conftest.py``); the simulator runs a Python thread per CUDA thread, so
sizes are kept small there, and the tiles are made small so that odd sizes cross tile
edges.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem, matches_reference, objective_of

from nnkit import backends
from nnkit.backends import cuda_backend, gpu
from nnkit.training import TrainConfig, chunk_size

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
def tiles(small_cuda_tiles):
    """Every test here with the simulator's small tiles (see ``conftest.py``)."""


def host(a):
    return CUDA.to_numpy(a)


@pytest.mark.parametrize("name", SMALL)
def test_small_network_kernel_equals_the_reference(name):
    model = make_problem(**SMALL[name])[0]
    assert cuda_backend._path(model) == "small"
    matches_reference(CUDA, make_problem(R=R, n=9, seed=3, **SMALL[name]))


@pytest.mark.parametrize("name", WIDE)
def test_wide_network_path_equals_the_reference(name):
    model = make_problem(**WIDE[name])[0]
    assert cuda_backend._path(model) == "wide"
    matches_reference(CUDA, make_problem(R=R, n=9, seed=4, **WIDE[name]))


def test_deeper_networks_and_per_init_batches_take_the_shared_data_kernel():
    problem = make_problem(R=R, n=6, widths=(3, 4), activation=("tanh", "relu"), seed=7)
    assert cuda_backend._path(problem[0]) is None
    matches_reference(CUDA, problem)
    model, obj, theta, X, y = make_problem(R=R, n=5, seed=8, **SMALL["tanh"])
    rng = np.random.default_rng(0)
    Xb, yb = rng.normal(size=(R, 5, X.shape[1])), rng.normal(size=(R, 5))
    ref = NUMPY.kernel(model, obj).value_and_grad(theta, Xb, yb)
    got = CUDA.kernel(model, obj).value_and_grad(*(CUDA.asarray(a, CUDA.xp.float64) for a in (theta, Xb, yb)))
    np.testing.assert_allclose(host(got[1]), ref[1], rtol=1e-12, atol=1e-14)


def test_train_uses_the_fused_kernel_only_where_it_applies():
    small = CUDA.kernel(*make_problem(**SMALL["tanh"])[:2])
    wide = CUDA.kernel(*make_problem(**WIDE["tanh-bias"])[:2])
    deep = CUDA.kernel(*make_problem(widths=(3, 4), activation=("tanh", "relu"))[:2])
    for method in ("gd", "momentum", "nesterov"):
        assert small.fuses(TrainConfig(method=method))
        assert not wide.fuses(TrainConfig(method=method)) and not deep.fuses(TrainConfig(method=method))
    assert not small.fuses(TrainConfig(method="sgd")) and not small.fuses(TrainConfig(history=3))


def test_auto_never_picks_the_simulator():
    if ON_GPU:
        pytest.skip("on a GPU, auto picks the cuda backend")
    info = backends.probe("cuda")
    assert info.usable and "simulator" in info.device
    assert backends.resolve("auto") != "cuda"


def test_chunks_need_no_room_for_activations_on_the_small_path():
    """A fused small network keeps only its parameters: a chunk holds as many inits as
    the budget has room for their parameters and gradients, whatever n; the wide path
    and the numpy backend keep per-sample arrays."""
    cfg = TrainConfig()
    budget = CUDA.memory_budget(512)

    def chunk(backend, n, **shape):
        model, obj, _, X, y = make_problem(n=n, **shape)
        return chunk_size(objective_of(model, obj, X, y, backend), cfg, 10**9, 512), model

    for n in (10, 10_000):
        got, small = chunk(CUDA, n, d=3, widths=(5,))
        assert got == budget // (8 * small.size * 8)
    got, wide = chunk(CUDA, 1000, d=40, widths=(6,))
    assert CUDA.stored_per_sample(wide, False) == 7
    assert got == budget // ((8 * wide.size + 7000) * 8)
    assert chunk(CUDA, 1000, d=3, widths=(5,))[0] > 50 * chunk(NUMPY, 1000, d=3, widths=(5,))[0]


def test_compile_time_is_counted_once_per_kernel():
    model, obj, theta, X, y = make_problem(R=2, n=4, seed=13, **SMALL["linear"])
    args = [CUDA.asarray(a, CUDA.xp.float64) for a in (theta, X, y)]
    before = CUDA.compile_seconds
    CUDA.kernel(model, obj).value_and_grad(*args)
    first = CUDA.compile_seconds
    CUDA.kernel(model, obj).value_and_grad(*args)  # another kernel object, same model
    assert first > before and CUDA.compile_seconds == first
