"""Where the time of the ``cuda`` backend's GPU cases goes, on a machine with a GPU.

* ``--layouts CASE``: the small-network kernel under several register budgets (each
  gives a thread layout: G threads per init, U hidden units per thread), float64 and
  float32, whole training runs: ``budget G U dtype seconds init-steps/s``. Used to
  choose ``small_mlp.UNIT_BUDGET``.
* ``--wide CASE``: one step of the wide path taken apart: the first GEMM, the epilogue
  kernel, the second GEMM, the whole ``value_and_grad`` and a whole training step, each
  timed with CUDA events (median of ``--repeats``), with the bytes each moves.

    python benchmarks/gpu_variants.py --layouts B1g --wide B3g
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _setup(name):
    from nnkit import backends
    from nnkit.bench import cases
    from nnkit.core.layout import Layout
    from nnkit.core.model import Model

    case = cases.named(name)
    X, y, W0, v0 = cases.problem(case)
    theta0 = np.concatenate([W0.reshape(case.R, -1), v0], axis=1)
    model = Model(Layout(case.d, (case.k,), (False,)), ("relu",))
    return case, X, y, theta0, model, backends.get("cuda")


def layouts(name, budgets, repeats):
    from nnkit.backends import gpu
    from nnkit.core.losses import ObjectiveSpec
    from nnkit.training import TrainConfig

    case, X, y, theta0, model, be = _setup(name)
    small = gpu.kernels("small_mlp")
    print(f"{case.label()} on {be.device}")
    print("budget  G   U  dtype     seconds   init-steps/s")
    for budget in budgets:
        plan = small.plan(case.d, case.k, budget)
        if plan is None:
            print(f"{budget:6d}  no layout fits")
            continue
        small.UNIT_BUDGET = budget
        for cache in (small._device_functions, small.value_and_grad_kernel, small.train_kernel):
            cache.cache_clear()
        for dtype in ("float64", "float32"):
            kernel = be.kernel(model, ObjectiveSpec())
            cfg = TrainConfig(lr=case.lr, max_steps=case.steps, grad_tol=0.0,
                              max_loss=float("inf"), dtype=dtype)  # fmt: skip
            kernel.train_fused(theta0, X, y, cfg)  # compile and warm up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                loss = kernel.train_fused(theta0, X, y, cfg).loss
                times.append(time.perf_counter() - t0)
            s = statistics.median(times)
            print(f"{budget:6d} {plan[0]:2d} {plan[1]:3d}  {dtype}  {s:9.4f} "
                  f"{case.R * case.steps / s:14,.0f}   mean loss {np.mean(loss):.10g}")  # fmt: skip


def wide(name, repeats):
    import cupy

    from nnkit.backends import gpu
    from nnkit.bench.worker import event_ms
    from nnkit.core.losses import ObjectiveSpec

    case, X, y, theta0, model, be = _setup(name)
    epi = gpu.kernels("wide_epilogue")
    print(f"{case.label()} on {be.device}")
    print("dtype    part              ms     GB moved   GB/s   TFLOP/s")
    for dtype in ("float64", "float32"):
        item = np.dtype(dtype).itemsize
        R, n, d, k = case.R, case.n, case.d, case.k
        th = cupy.asarray(theta0, dtype=dtype)
        Xd, yd = cupy.asarray(X, dtype=dtype), cupy.asarray(y, dtype=dtype)
        W = cupy.ascontiguousarray(th[:, : d * k].reshape(R, d, k).transpose(1, 0, 2)).reshape(d, R * k)
        Z = Xd @ W
        v = cupy.ascontiguousarray(th[:, d * k :])
        c = cupy.zeros(R, dtype=dtype)
        T = epi.tiles(n)
        parts = [cupy.empty((T, R), dtype=dtype), cupy.empty((T, R), dtype=dtype),
                 cupy.empty((T, R, k), dtype=dtype)]  # fmt: skip
        kern = epi.kernel(k, "relu", 0.01, False, dtype)
        blocks, threads = epi.grid(R, n, k)
        scale = np.dtype(dtype).type(1.0 / n)
        zbytes = n * R * k * item / 1e9
        kernel = be.kernel(model, ObjectiveSpec())

        def gemm1():
            cupy.matmul(Xd, W, out=Z)

        def epilogue():
            kern[blocks, threads](Z.reshape(n, R, k), v, c, yd, scale, *parts)

        def gemm2():
            Xd.T @ Z

        def step():
            _, g = kernel.value_and_grad(th, Xd, yd)
            th - 0.01 * g
            cupy.asnumpy(cupy.sqrt(cupy.sum(g * g, axis=1)))

        rows = [("GEMM X@W", gemm1, zbytes, 2 * n * d * R * k),
                ("epilogue", epilogue, 2 * zbytes, 0),
                ("GEMM X^T@dZ", gemm2, zbytes, 2 * n * d * R * k),
                ("value_and_grad", lambda: kernel.value_and_grad(th, Xd, yd), 4 * zbytes, 4 * n * d * R * k),
                ("train step", step, 4 * zbytes, 4 * n * d * R * k)]  # fmt: skip
        for label, fn, gb, flops in rows:
            s = event_ms(cupy, fn, repeats) / 1e3
            print(f"{dtype}  {label:15s} {s * 1e3:8.2f} {gb:10.1f} {gb / s:7.0f} {flops / s / 1e12:8.1f}")
        del Z, parts
        cupy.get_default_memory_pool().free_all_blocks()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", metavar="CASE")
    parser.add_argument("--budgets", default="12,24,40")
    parser.add_argument("--wide", metavar="CASE")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.layouts:
        layouts(args.layouts, [int(b) for b in args.budgets.split(",")], args.repeats)
    if args.wide:
        wide(args.wide, args.repeats)


if __name__ == "__main__":
    main()
