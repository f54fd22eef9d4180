"""What is particular to the ``numba`` backend: generated kernels cached on disk,
compile time kept apart, threads, and runs through the pipeline. Its values,
gradients and training against the reference are in ``test_backends.py``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_problem, matches_reference

from nnkit import backends

pytest.importorskip("numba")

NUMBA = backends.get("numba")
NUMPY = backends.get("numpy")

MODELS = {
    "tanh-plain": dict(activation="tanh", widths=(6,), bias=False, output_bias=False, loss="logistic"),
}


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


def test_one_thread_and_no_networks():
    backend = backends.get("numba")
    backend.threads = 1
    model, obj, theta, X, y = make_problem(R=130, seed=12, **MODELS["tanh-plain"])
    compare_backend = backend.kernel(model, obj).value_and_grad(theta, X, y)
    ref = NUMPY.kernel(model, obj).value_and_grad(theta, X, y)
    np.testing.assert_allclose(compare_backend[1], ref[1], rtol=1e-12, atol=1e-14)
    loss, grad = backend.kernel(model, obj).value_and_grad(theta[:0], X, y)
    assert loss.shape == (0,) and grad.shape == (0, theta.shape[1])


def test_runs_through_the_pipeline_match_the_reference(tmp_path):
    from nnkit import load, run_experiment
    from nnkit.study import config

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


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear", "softplus", "leaky_relu"])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_the_wide_path_matches_the_reference(monkeypatch, activation, loss):
    """One hidden layer through the GEMM path (two BLAS products with the shared data
    per block of networks and tile of samples, one generated pass between them): value
    and gradient as the NumPy reference, with and without biases and a trained output,
    in float64 and float32, in one tile and cut into uneven blocks (3 + 2 networks) and
    tiles (16 + 16 + 5 samples); training with it is not fused (every step a call)."""
    from nnkit.backends import numba_wide
    from nnkit.training import TrainConfig

    monkeypatch.setattr(numba_wide, "WIDE_MIN", 1)
    be = backends.get("numba")
    for columns, tile_bytes, n in ((256, 1 << 20, 11), (15, 1, 37)):
        monkeypatch.setattr(numba_wide, "MIN_COLUMNS", columns)
        monkeypatch.setattr(numba_wide, "TILE_BYTES", tile_bytes)
        assert numba_wide.tiling(5, n, 7, 8) == ((5, 11) if n == 11 else (3, 16))
        for bias, trained in ((True, True), (False, True), (True, False)):
            problem = make_problem(activation=activation, widths=(7,), d=5, n=n, R=5, bias=bias,
                                   output_trained=trained, loss=loss, l2=0.01)  # fmt: skip
            kernel = be.kernel(problem[0], problem[1])
            assert kernel._wide is not None and not kernel.fuses(TrainConfig())
            matches_reference(be, problem, rtol=1e-12)
            matches_reference(be, problem, rtol=1e-5, dtype=np.float32)
    deep = make_problem(activation=activation, widths=(4, 3), d=5, n=11, R=3, loss=loss)
    assert be.kernel(deep[0], deep[1])._wide is None  # two hidden layers: the fused kernel


@pytest.mark.parametrize(
    "widths, activation",
    [((3,), "tanh"), ((5, 4), "relu"), ((9, 6), ("tanh", "sigmoid"))],
    ids=["registers", "registers-deep", "sample-blocks"],
)
def test_fused_training_sums_as_the_steps_do(widths, activation):
    """The fused training kernel and ``value_and_grad`` take the shared data through the
    same sums (every unit in registers for tiny networks, the first layer a few samples
    at a time otherwise, a number of samples that does not fill the last block): a
    training step by step ends where the fused one ends, up to the rounding of the
    update (fused into one multiply-add in the kernel). Summed in different orders, a
    long training through saddles ended 2% apart."""
    from conftest import objective_of

    from nnkit.backends import numba_codegen
    from nnkit.training import TrainConfig, train

    model, obj, theta, X, y = make_problem(R=70, n=11, d=2, seed=5, widths=widths, activation=activation)
    assert (model.layout.size <= numba_codegen.SCALAR_MAX) == (widths != (9, 6))
    objective = objective_of(model, obj, X, y, NUMBA)
    fused_cfg = TrainConfig(lr=0.05, max_steps=400, grad_tol=0.0)
    stepped_cfg = TrainConfig(lr=0.05, max_steps=400, grad_tol=0.0, history=50)
    assert objective.fuses(fused_cfg) and not objective.fuses(stepped_cfg)
    fused = train(objective, theta, fused_cfg)
    stepped = train(objective, theta, stepped_cfg)
    np.testing.assert_allclose(fused.theta, stepped.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused.loss, stepped.loss, rtol=1e-10)
