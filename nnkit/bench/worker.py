"""One implementation on one case, in a process of its own: warm up (compilation
included), then time ``repeats`` full runs (or, with ``--serve``, one run each time the
runner asks: :mod:`nnkit.bench.rounds`) and print one JSON line.

Also the rates the bench compares with, each measured in a process of its own: this
machine's float64 GEMM rate (NumPy) and a CUDA GPU's GEMM rates and device-to-device
copy bandwidth (CuPy).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import time

import numpy as np

from . import cases, peers
from .rounds import timed_runs

#: ``ru_maxrss`` is in KiB on Linux and in bytes on macOS
RSS_PER_MB = 2.0**20 if sys.platform == "darwin" else 1024.0


def nnkit_run(backend_name, dtype="float64"):
    from nnkit import backends
    from nnkit.core.layout import Layout
    from nnkit.core.losses import ObjectiveSpec
    from nnkit.core.model import Model
    from nnkit.data import Dataset
    from nnkit.objective import Problem, make_objective
    from nnkit.study.config import RunConfig
    from nnkit.training import TrainConfig, chunk_size, train

    backend = backends.get(backend_name)

    def prepare(case, X, y):
        model = Model(Layout(case.d, (case.k,), (False,)), ("relu",))
        objective = make_objective(Problem(model, ObjectiveSpec(), Dataset(X, y, X[:0], y[:0])), backend)
        cfg = TrainConfig(
            lr=case.lr, max_steps=case.steps, grad_tol=0.0, max_loss=float("inf"), dtype=dtype
        )
        # chunks of inits as `nnkit run` cuts them (default memory budget)
        chunk = chunk_size(objective, cfg, case.R, RunConfig().memory_mb)

        def run(W0, v0):
            theta0 = np.concatenate([W0.reshape(case.R, -1), v0], axis=1)
            parts = [train(objective, theta0[a : a + chunk], cfg).loss for a in range(0, case.R, chunk)]
            return np.concatenate(parts)

        return run

    return prepare, backend


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--impl", required=True)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs after the warm-up (0: report the warm-up run)")
    parser.add_argument("--dtype", choices=cases.DTYPES, default="float64")
    parser.add_argument("--inits", type=int, default=0,
                        help="train only the first INITS inits of the case (0: all)")
    parser.add_argument("--head", type=int, default=0,
                        help="also report the mean final loss of the first HEAD inits")
    parser.add_argument("--serve", action="store_true",
                        help="after the warm-up, time one run per line 'run' read from stdin "
                             "(see nnkit.bench.rounds); --repeats is then unused")
    args = parser.parse_args(argv)  # fmt: skip
    case = cases.named(args.case)
    X, y, W0, v0 = cases.cast(cases.problem(case), args.dtype)
    if args.inits:
        case = dataclasses.replace(case, R=args.inits)
        W0, v0 = W0[: case.R], v0[: case.R]
    compile_s = float("nan")  # what a peer spends compiling is not measured apart
    if args.impl.startswith("nnkit-"):
        prepare, backend = nnkit_run(args.impl.removeprefix("nnkit-"), args.dtype)
    else:
        prepare, backend = peers.PEERS[args.impl], None

    t0 = time.perf_counter()
    run = prepare(case, X, y)
    losses = run(W0, v0)  # warm-up: compilation, caches, thread pools
    warm = time.perf_counter() - t0
    if backend is not None:
        compile_s = backend.compile_seconds
    times, last = timed_runs(lambda: run(W0, v0), args.serve, args.repeats, warm)
    losses = losses if last is None else last
    seconds = statistics.median(times or [warm])
    row = {
        "case": case.name, "impl": args.impl, "seconds": seconds, "times": times,
        "warmup_s": warm, "compile_s": compile_s,
        "init_steps_per_s": case.R * case.steps / seconds,
        "mean_final_loss": float(np.mean(losses)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / RSS_PER_MB,
    }  # fmt: skip
    if args.head:
        row["head_loss"] = float(np.mean(losses[: args.head]))
    print(json.dumps(row))


def gemm_rate(size: int = 2048, repeats: int = 3, dtype: str = "float64") -> float:
    """This machine's GEMM rate in ``dtype`` in GFLOP/s (NumPy ``matmul``, median)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(dtype) for _ in range(2))
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * size**3 / statistics.median(times) / 1e9


def gpu_rates(size: int = 8192, copy_gib: float = 2.0, repeats: int = 7) -> dict:
    """CUDA device 0's GEMM rates in GFLOP/s, ``{"gemm_float64": .., "gemm_float32": ..}``,
    and its device-to-device copy bandwidth in GB/s (bytes read plus bytes written),
    ``{"copy": ..}``: CuPy ``matmul`` of two random ``(size, size)`` matrices and
    ``dst[...] = src`` on ``copy_gib`` GiB buffers, medians of ``repeats`` timings with
    CUDA events after a warm-up."""
    import cupy

    rates = {f"gemm_{dtype}": _gpu_gemm_rate(cupy, dtype, size, repeats) for dtype in cases.DTYPES}
    src = cupy.arange(int(copy_gib * 2**30) // 4, dtype=cupy.float32)
    dst = cupy.empty_like(src)

    def copy():
        dst[...] = src

    rates["copy"] = 2.0 * src.nbytes / (event_ms(cupy, copy, repeats) * 1e-3) / 1e9
    return rates


def _gpu_gemm_rate(cupy, dtype: str, size: int, repeats: int) -> float:
    """GFLOP/s of ``(size, size) @ (size, size)`` in ``dtype`` on random matrices."""
    a, b = (cupy.random.standard_normal((size, size)).astype(dtype) for _ in range(2))
    out = cupy.empty_like(a)
    return 2.0 * size**3 / (event_ms(cupy, lambda: cupy.matmul(a, b, out=out), repeats) * 1e-3) / 1e9


def event_ms(cupy, work, repeats: int) -> float:
    """Median milliseconds of ``work()`` on the current stream, timed with CUDA events
    after two untimed calls."""
    for _ in range(2):
        work()
    times = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        work()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return statistics.median(times)


if __name__ == "__main__":
    main()
