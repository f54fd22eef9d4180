"""Shared builders for the tests: small random problems of every kind.

The CUDA kernels are tested on a GPU when one is asked for (``NNKIT_TEST_GPU=1``, as
``benchmarks/gpu_check.py`` does) and in Numba's CUDA simulator otherwise; the choice
has to be made before Numba is first imported, so it is made here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

if os.environ.get("NNKIT_TEST_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import nnkit  # noqa: E402
from nnkit import backends  # noqa: E402
from nnkit.backends import gpu  # noqa: E402
from nnkit.core.layout import Layout  # noqa: E402
from nnkit.core.model import Model  # noqa: E402
from nnkit.core.losses import ObjectiveSpec  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a usable CUDA device: without one they are skipped,
    saying why."""
    marked = [item for item in items if "gpu" in item.keywords]
    if not marked:
        return
    usable, _, reason = gpu.cupy_device()
    if not usable:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}")
        for item in marked:
            item.add_marker(skip)


def make_problem(
    *,
    activation="tanh",
    widths=(5,),
    d=3,
    n=7,
    R=4,
    loss="squared",
    bias=True,
    output_trained=True,
    output_bias=True,
    seed=0,
    **objective,
):
    """A random ``(model, objective, theta (R, P), X (n, d), y (n,))``."""
    rng = np.random.default_rng(seed)
    depth = len(widths)
    layout = Layout(
        d=d,
        widths=tuple(widths),
        bias=(bias,) * depth if isinstance(bias, bool) else tuple(bias),
        output_trained=output_trained,
        output_bias=output_bias and output_trained,
        output_value=0.7,
    )
    acts = (activation,) * depth if isinstance(activation, str) else tuple(activation)
    model = Model(layout, acts, leaky_slope=0.1)
    obj = ObjectiveSpec(loss=loss, **objective)
    theta = rng.normal(size=(R, layout.size))
    X = rng.normal(size=(n, d))
    y = np.sign(rng.normal(size=n)) if loss == "logistic" else rng.normal(size=n)
    return model, obj, theta, X, y


@pytest.fixture
def problem():
    return make_problem


@pytest.fixture
def small_cuda_tiles(monkeypatch):
    """The CUDA kernels with tiles of a few samples (the defaults hold hundreds), so
    that small problems in the simulator cross tile edges; kernels rebuilt before and
    after. Nothing changes on a GPU."""
    if not gpu.simulated():
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


def matches_reference(backend, problem, rtol=1e-12, dtype=np.float64, batches=False):
    """Objective and gradient of ``problem`` (a :func:`make_problem`) on ``backend``
    against the NumPy reference, the gradient relative to the largest entry of each
    init; ``batches``: one random batch per network instead of the shared data.
    Returns the backend's ``(loss, grad)`` on the host."""
    model, obj, theta, X, y = problem
    theta = theta.astype(dtype)
    if batches:  # one batch per network, as minibatch SGD gives
        rng = np.random.default_rng(1)
        X = rng.normal(size=(theta.shape[0], 6, X.shape[1]))
        y = np.sign(rng.normal(size=(theta.shape[0], 6)))
    X, y = X.astype(dtype), y.astype(dtype)
    ref_loss, ref_grad = backends.get("numpy").kernel(model, obj).value_and_grad(theta, X, y)
    xp_dtype = getattr(backend.xp, np.dtype(dtype).name)
    args = (backend.asarray(a, xp_dtype) for a in (theta, X, y))
    loss, grad = (backend.to_numpy(a) for a in backend.kernel(model, obj).value_and_grad(*args))
    assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == ref_grad.shape
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
    scale = np.maximum(np.abs(ref_grad).max(axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(grad / scale, ref_grad / scale, rtol=0, atol=rtol)
    return loss, grad


def objective_of(model, spec, X, y, backend=None):
    """The objective of ``model`` under ``spec`` on the samples ``X (n, d)``, ``y (n,)``
    (no test samples), on ``backend`` (default: the NumPy reference)."""
    from nnkit.data import Dataset
    from nnkit.objective import Problem, make_objective

    backend = backends.get("numpy") if backend is None else backend
    return make_objective(Problem(model, spec, Dataset(X, y, X[:0], y[:0])), backend)


# -- the command line -------------------------------------------------------------------


def invoke(*args):
    """``nnkit ARGS`` through click's test runner (arguments made strings)."""
    from click.testing import CliRunner

    from nnkit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, *fragments):
    """Exit status 2, exactly one non-empty line on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


#: runs ``nnkit`` in a fresh process and kills it before its N-th change to a run
KILL_AT = Path(__file__).with_name("kill_at.py")


def nnkit_cmd(kill: int, run: Path, *args, popen=False):
    """``nnkit ARGS`` in a fresh process, killed before its ``kill``-th change to the
    run folder ``run`` (0: never)."""
    results = run.parent.parent
    results.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(KILL_AT), str(kill), str(run), *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, cwd=results.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=results.parent, capture_output=True, text=True, timeout=300)


def assert_same_run(path: Path, ref: Path, analysed=False):
    a, b = nnkit.load(path), nnkit.load(ref)
    pd.testing.assert_frame_equal(a.runs.drop(columns="chunk_time_s"), b.runs.drop(columns="chunk_time_s"))
    pd.testing.assert_frame_equal(a.history, b.history)
    for p in range(b.points):
        np.testing.assert_array_equal(a.params(p), b.params(p))
        if analysed:
            np.testing.assert_array_equal(a.params(p, polished=True), b.params(p, polished=True))
    if analysed:
        pd.testing.assert_frame_equal(a.minima, b.minima)
    assert not (path / "chunks").exists()
    left = [p for p in path.rglob("*") if p.name.endswith(".tmp")]
    assert not left, left


@contextmanager
def held_elsewhere(folder):
    """The run folder ``folder`` locked by another process for the ``with`` block."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from nnkit.runs import lock\n"
         "with lock.hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(folder)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
