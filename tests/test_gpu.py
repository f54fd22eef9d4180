"""The GPU backends: on a GPU (tests marked ``gpu``, skipped without one), and the
parts that need none: the shared-data GEMM layout on NumPy, chunks that run out of
device memory, the clear error without a GPU, and the kernels inside a built wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_problem, objective_of

import nnkit
import nnkit.pipeline
from nnkit import backends
from nnkit.about import DISTRIBUTION
from nnkit.backends.cupy_backend import SharedDataKernel
from nnkit.study import config
from nnkit.training import TrainConfig, chunk_size, train

NUMPY = backends.get("numpy")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape", [dict(widths=(5,)), dict(widths=(4, 3), bias=(False, True))])
def test_shared_data_gemm_layout_equals_the_reference(shape):
    model, obj, theta, X, y = make_problem(R=6, n=11, seed=1, **shape)
    got = SharedDataKernel(model, obj, NUMPY.xp).value_and_grad(theta, X, y)
    ref = NUMPY.kernel(model, obj).value_and_grad(theta, X, y)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-13)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12, atol=1e-14)


class _SmallDevice(backends.Backend):
    """The numpy backend on a pretend device that holds at most 3 inits."""

    name = "numpy"
    xp = NUMPY.xp
    device = "pretend device"

    def __init__(self):
        self.released = 0
        self.largest = 0

    def kernel(self, model, spec):
        inner = NUMPY.kernel(model, spec)
        outer = self

        class Kernel:
            def __getattr__(self, name):
                return getattr(inner, name)

            def value_and_grad(self, theta, X, y):
                outer.largest = max(outer.largest, theta.shape[0])
                if theta.shape[0] > 3:
                    raise MemoryError("out of memory")
                return inner.value_and_grad(theta, X, y)

        return Kernel()

    def release_memory(self):
        self.released += 1


def test_a_chunk_that_does_not_fit_is_trained_in_halves(tmp_path, monkeypatch):
    exp = config.from_dict({
        "name": "split", "inits": 10, "data": {"d": 2, "n": 12, "teacher_width": 2},
        "model": {"hidden": [2]}, "train": {"max_steps": 30, "lr": 0.1},
        "run": {"chunk_size": 10},
    })  # fmt: skip
    device = _SmallDevice()
    monkeypatch.setattr(nnkit.pipeline.backends, "get", lambda name: device)
    split = nnkit.load(nnkit.run_experiment(exp, results_dir=tmp_path / "a", progress=False)).runs
    monkeypatch.undo()
    whole = nnkit.load(nnkit.run_experiment(exp, results_dir=tmp_path / "b", backend="numpy", progress=False)).runs
    assert device.released >= 1 and device.largest == 10
    cols = ["init", "status", "steps", "loss", "grad_norm"]
    pd.testing.assert_frame_equal(split[cols], whole[cols])


def _without_simulator():
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return env


@pytest.mark.parametrize("name", ["cuda", "cupy"])
def test_without_a_gpu_the_gpu_backends_exit_2_with_one_line(tmp_path, name):
    if backends.gpu.cupy_device()[0]:
        pytest.skip("this machine has a GPU")
    done = subprocess.run(
        [sys.executable, "-m", "nnkit", "run", str(ROOT / "experiments" / "quickstart.toml"),
         "--backend", name, "--results", str(tmp_path)],
        capture_output=True, text=True, env=_without_simulator(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"backend {name!r} is unavailable" in lines[0] and f"{DISTRIBUTION}[cuda12]" in lines[0]


def test_backends_lists_each_gpu_backend_with_its_reason():
    done = subprocess.run(
        [sys.executable, "-m", "nnkit", "backends"], capture_output=True, text=True,
        env=_without_simulator(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for name in ("cuda", "cupy"):
        assert name in rows
        if not backends.gpu.cupy_device()[0]:
            assert "CuPy" in rows[name] or "CUDA" in rows[name]


@pytest.mark.slow
def test_a_built_wheel_contains_and_loads_the_kernels(tmp_path):
    """The kernels live in ``kernels/`` and install as ``nnkit.kernels``."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    [wheel] = tmp_path.glob("nnkit_landscape-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("__init__", "_target", "_simulator", "pointwise", "small_mlp", "wide_epilogue"):
        assert f"nnkit/kernels/{module}.py" in names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    code = (
        "import nnkit.kernels.small_mlp as m, nnkit.backends.gpu as g;"
        "assert g.kernels('small_mlp') is m and m.__file__.startswith(%r);"
        "print(m.plan(10, 10))" % str(target)
    )
    env = dict(os.environ, PYTHONPATH=str(target), NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(4, 3)"


# -- on a GPU ---------------------------------------------------------------------------


def _fifty_steps(name, problem, dtype="float64"):
    model, obj, theta, X, y = problem
    cfg = TrainConfig(lr=0.05, max_steps=50, grad_tol=0.0, dtype=dtype)
    return (
        train(objective_of(model, obj, X, y, backends.get(name)), theta, cfg),
        train(objective_of(model, obj, X, y), theta, cfg),
    )


GPU_MODELS = {
    "small": dict(activation="relu", widths=(10,), d=10, bias=False, output_bias=False),
    "small-tanh-bias": dict(activation="tanh", widths=(7,), d=5, loss="logistic"),
    "wide": dict(activation="relu", widths=(100,), d=50, bias=False, output_bias=False),
    "wide-sigmoid-bias": dict(activation="sigmoid", widths=(60,), d=45),
    "deep": dict(activation=("tanh", "relu"), widths=(8, 6)),
}


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda", "cupy"])
@pytest.mark.parametrize("model", GPU_MODELS)
def test_fifty_steps_on_the_gpu_equal_the_reference(name, model):
    """The target: float64 results equal the NumPy reference to 1e-10 after 50 steps, on
    models the size of the GPU cases (the conformance suite's are small)."""
    got, ref = _fifty_steps(name, make_problem(R=257, n=301, seed=11, **GPU_MODELS[model]))
    np.testing.assert_array_equal(got.status, ref.status)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-10)
    np.testing.assert_allclose(got.theta, ref.theta, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["cuda", "cupy"])
def test_float32_on_the_gpu(name):
    got, ref = _fifty_steps(name, make_problem(R=100, n=200, seed=12, **GPU_MODELS["small"]), "float32")
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-3)


@pytest.mark.gpu
def test_auto_picks_the_gpu_and_chunks_use_its_memory():
    assert backends.resolve("auto") == "cuda"
    be = backends.get("cuda")
    assert "GPU 0" in be.device and "compute capability" in be.device
    model, obj, _, X, y = make_problem(d=50, widths=(100,), n=2000)
    on_gpu, on_cpu = (objective_of(model, obj, X, y, b) for b in (be, NUMPY))
    assert chunk_size(on_gpu, TrainConfig(), 8192, 512) > chunk_size(on_cpu, TrainConfig(), 8192, 512)


@pytest.mark.gpu
def test_nnkit_run_on_the_gpu_equals_the_cpu(tmp_path):
    exp = nnkit.load_experiment(ROOT / "experiments" / "quickstart.toml")
    gpu_runs = nnkit.load(nnkit.run_experiment(exp, results_dir=tmp_path / "g", backend="cuda", progress=False)).runs
    cpu_runs = nnkit.load(nnkit.run_experiment(exp, results_dir=tmp_path / "c", backend="numpy", progress=False)).runs
    assert (gpu_runs.status == cpu_runs.status).mean() > 0.99
    same = gpu_runs.status == cpu_runs.status
    np.testing.assert_allclose(gpu_runs.loss[same], cpu_runs.loss[same], rtol=1e-6, atol=1e-12)
