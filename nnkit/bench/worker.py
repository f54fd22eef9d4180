"""One implementation on one case, in a process of its own: warm up (compilation
included), then time ``repeats`` full runs and print one JSON line."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np

from . import cases, peers

#: ``ru_maxrss`` is in KiB on Linux and in bytes on macOS
_RSS_PER_MB = 2.0**20 if sys.platform == "darwin" else 1024.0


def nnkit_run(backend_name):
    from nnkit import backends, config
    from nnkit.config import TrainConfig
    from nnkit.runner import chunk_size_for
    from nnkit.layout import Layout
    from nnkit.model import Model
    from nnkit.objective import Objective
    from nnkit.train import train

    backend = backends.get(backend_name)

    def prepare(case, X, y):
        model = Model(Layout(case.d, (case.k,), (False,)), ("relu",))
        kernel = backend.kernel(model, Objective())
        cfg = TrainConfig(lr=case.lr, max_steps=case.steps, grad_tol=0.0, max_loss=float("inf"))
        # chunks of inits as `nnkit run` cuts them (default memory budget)
        exp = config.from_dict({"inits": case.R, "model": {"hidden": [case.k], "bias": False}})
        chunk = chunk_size_for(exp, case.n, case.d, backend)

        def run(W0, v0):
            theta0 = np.concatenate([W0.reshape(case.R, -1), v0], axis=1)
            parts = [
                train(kernel, backend, theta0[a : a + chunk], X, y, cfg).loss
                for a in range(0, case.R, chunk)
            ]
            return np.concatenate(parts)

        return run

    return prepare, backend


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--impl", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    case = cases.CASES[args.case] if args.case in cases.CASES else cases.custom(args.case)
    X, y, W0, v0 = cases.problem(case)
    compile_s = float("nan")  # what a peer spends compiling is not measured apart
    if args.impl.startswith("nnkit-"):
        prepare, backend = nnkit_run(args.impl.removeprefix("nnkit-"))
    else:
        prepare, backend = peers.PEERS[args.impl], None

    t0 = time.perf_counter()
    run = prepare(case, X, y)
    losses = run(W0, v0)  # warm-up: compilation, caches, thread pools
    warm = time.perf_counter() - t0
    if backend is not None:
        compile_s = backend.compile_seconds
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        losses = run(W0, v0)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    print(json.dumps({
        "case": case.name, "impl": args.impl, "seconds": seconds, "times": times,
        "warmup_s": warm, "compile_s": compile_s,
        "init_steps_per_s": case.R * case.steps / seconds,
        "mean_final_loss": float(np.mean(losses)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _RSS_PER_MB,
    }))  # fmt: skip


def gemm_rate(size: int = 2048, repeats: int = 3) -> float:
    """This machine's float64 GEMM rate in GFLOP/s (NumPy ``matmul``, median)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2.0 * size**3 / statistics.median(times) / 1e9


if __name__ == "__main__":
    main()
