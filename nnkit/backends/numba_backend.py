"""The ``numba`` backend: fused CPU kernels generated per model (``numba_codegen.py``),
run on all cores.

Full-batch training runs whole inside a kernel (``NumbaKernel.train_fused``); for SGD
and runs with history, parameters cross into the kernels' layout (inits as the fast
axis) at each step, and the penalty is the reference's own code. A network of one wide
hidden layer takes the GEMM path of :mod:`.numba_wide` instead (every step a call).
"""

from __future__ import annotations

import time

import numpy as np

from . import host_threads
from .base import Backend, Fused, import_problem
from .numpy_backend import cpu_device
from .reference import ReferenceKernel

#: the methods of full-batch training the generated kernel runs (its ``method`` 0, 1, 2)
FUSED_METHODS = ("gd", "momentum", "nesterov")


def probe():
    problem = import_problem("numba", "numba")
    if problem:
        return False, "", problem
    return True, f"{cpu_device()}, {host_threads.affinity_cores()} threads", ""


def make():
    return NumbaBackend()


class NumbaBackend(Backend):
    name = "numba"

    def __init__(self):
        from . import numba_codegen  # numba itself is imported by the generated kernels

        self.device = probe()[1]
        self.compile_seconds = 0.0
        self.threads = host_threads.affinity_cores()
        #: chunks are cut in whole blocks of lanes, one per thread
        self.chunk_multiple = numba_codegen.LANES * self.threads
        self._pool = None

    def stored_per_sample(self, model, sgd):
        return 0  # fused kernels and the wide path's tiles: a chunk needs room for parameters only

    def one_blas_thread(self):
        """A context in which NumPy's BLAS runs in the calling thread only, for work
        that is spread over the cores by :meth:`run_threads` already."""
        return host_threads.one_blas_thread()

    def split(self, blocks: int) -> list[tuple[int, int]]:
        """``blocks`` cut into at most one contiguous range per thread."""
        parts = min(self.threads, blocks)
        if parts == 0:
            return []
        edges = [blocks * i // parts for i in range(parts + 1)]
        return [(a, b) for a, b in zip(edges[:-1], edges[1:])]

    def run_threads(self, kernel, args, ranges):
        """``kernel(*args, first, last)`` for every range, on all cores at once."""
        if len(ranges) <= 1:
            for first, last in ranges:
                kernel(*args, first, last)
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="nnkit-numba")
        for future in [self._pool.submit(kernel, *args, a, b) for a, b in ranges]:
            future.result()

    def kernel(self, model, spec):
        return NumbaKernel(model, spec, self)


class NumbaKernel(ReferenceKernel):
    """``value_and_grad`` from a fused kernel generated for the model; ``predict`` from
    the reference."""

    def __init__(self, model, spec, backend):
        from . import numba_codegen

        super().__init__(model, spec, backend.xp)
        self._backend = backend
        self._lanes = numba_codegen.LANES
        started = time.perf_counter()
        self._module = numba_codegen.load_kernel(model, spec.loss)
        self._ready = set()  # (function, dtype) compiled or loaded in this process
        from . import numba_wide

        #: one hidden layer wide enough for GEMMs with the shared data (:mod:`.numba_wide`)
        self._wide = (numba_codegen.load_source(numba_wide.source(model.activation(1), spec.loss))
                      if numba_wide.wide(model) else None)  # fmt: skip
        backend.compile_seconds += time.perf_counter() - started

    def value(self, theta, X, y):
        return self.value_and_grad(theta, X, y)[0]

    def fuses(self, cfg) -> bool:
        return self._wide is None and cfg.method in FUSED_METHODS and cfg.history == 0

    def _to_lanes(self, theta, dtype):
        """``theta (R, P)`` as the kernels' ``(P, R')``, R' padded to whole lane blocks."""
        R, P = theta.shape
        padded = -(-R // self._lanes) * self._lanes
        thT = np.zeros((P, padded), dtype=dtype)
        thT[:, :R] = theta.T
        return thT, padded

    def _run(self, name, args, blocks, module=None):
        """Kernel ``name`` over ``blocks`` lane blocks (or other ranges) on all cores,
        compiled (or loaded from the disk cache) for these argument types first, in
        this thread."""
        kernel = getattr(module or self._module, name)
        self._compile(kernel, name, (*args, 0, 0))
        self._backend.run_threads(kernel, args, self._backend.split(blocks))

    def _compile(self, kernel, name, args):
        """``kernel`` compiled (or loaded from the disk cache) for the types of ``args``,
        once per dtype and process, in this thread."""
        key = (name, args[0].dtype)
        if key not in self._ready:
            from numba import typeof

            started = time.perf_counter()
            kernel.compile(tuple(typeof(a) for a in args))
            self._backend.compile_seconds += time.perf_counter() - started
            self._ready.add(key)

    def value_and_grad(self, theta, X, y):
        if self._wide is not None and np.ndim(X) == 2:
            return self._wide_value_and_grad(np.asarray(theta), X, y)
        theta = np.asarray(theta)
        dtype = theta.dtype
        R = theta.shape[0]
        thT, padded = self._to_lanes(theta, dtype)
        X = np.asarray(X, dtype=dtype)
        y = np.asarray(y, dtype=dtype)
        if X.ndim == 2:
            X3, y2 = X[None], y[None]
        else:  # one batch per network: pad the batches like the networks
            X3 = np.zeros((padded,) + X.shape[1:], dtype=dtype)
            X3[:R] = X
            y2 = np.zeros((padded, y.shape[1]), dtype=dtype)
            y2[:R] = y
        loss = np.empty(padded, dtype=dtype)
        gT = np.empty_like(thT)
        scale = dtype.type(self.spec.scale(X.shape[-2]))
        args = (thT, np.ascontiguousarray(X3), np.ascontiguousarray(y2), scale, loss, gT)
        self._run("value_and_grad" if X.ndim == 2 else "value_and_grad_batches", args, padded // self._lanes)
        loss = loss[:R]
        grad = np.ascontiguousarray(gT[:, :R].T)
        if self.spec.has_penalty():
            value, pgrad = self.spec.penalty(self._xp, theta, self.penalty_mask(self._xp, theta))
            loss, grad = loss + value, grad + pgrad
        return loss, grad

    def _wide_value_and_grad(self, theta, X, y):
        """:mod:`.numba_wide`: per block of networks and tile of samples, two GEMMs with
        the shared ``X (n, d)`` and one fused pass, blocks spread over the cores."""
        from . import numba_wide

        lay, dtype = self.layout, theta.dtype
        R, (k,) = theta.shape[0], lay.widths
        X = np.ascontiguousarray(X, dtype=dtype)
        b = lay.biases(theta, 1)
        w_out = lay.view(theta, "W_out") if lay.output_trained else np.full((R, k), lay.output_value, dtype=dtype)
        b_out = lay.view(theta, "b_out") if lay.output_bias else np.zeros(R, dtype=dtype)
        work = numba_wide.Pass(
            self._wide, X, lay.weights(theta, 1), np.zeros((R, k), dtype=dtype) if b is None else np.ascontiguousarray(b),
            np.ascontiguousarray(w_out), np.ascontiguousarray(b_out).reshape(R),
            np.ascontiguousarray(y, dtype=dtype), dtype.type(self.spec.scale(X.shape[0])),
        )  # fmt: skip
        self._compile(work.tile, "tile", (X, work.b, work.w_out, work.b_out, work.y, work.scale, work.db[0],
                                          work.loss, work.db, work.dw_out, work.db_out))  # fmt: skip
        with self._backend.one_blas_thread():
            self._backend.run_threads(work.blocks, (), self._backend.split(work.count))
        grads = {"W1": work.gW, "b1": work.db, "W_out": work.dw_out, "b_out": work.db_out}
        grad = np.concatenate([grads[block.name].reshape(R, block.size) for block in lay.blocks], axis=1)
        loss = work.scale * work.loss
        if self.spec.has_penalty():
            value, pgrad = self.spec.penalty(self._xp, theta, self.penalty_mask(self._xp, theta))
            loss, grad = loss + value, grad + pgrad
        return loss, grad

    def train_fused(self, theta0, X, y, cfg):
        """All of full-batch training (``gd``, ``momentum``, ``nesterov``) in the kernel:
        the same updates and stopping rules as :func:`nnkit.training.train`, with the
        parameters of each block of inits kept in the cache from the first step to the
        last."""
        dtype = np.dtype(cfg.dtype)
        R = theta0.shape[0]
        thT, padded = self._to_lanes(theta0, dtype)
        status = np.zeros(padded, dtype=np.int8)
        steps = np.zeros(padded, dtype=np.int64)
        loss = np.full(padded, np.nan)
        norm = np.full(padded, np.nan)
        obj = self.spec
        args = (
            thT, np.ascontiguousarray(np.asarray(X, dtype=dtype)[None]),
            np.ascontiguousarray(np.asarray(y, dtype=dtype)[None]),
            dtype.type(obj.scale(X.shape[0])), self._mask.astype(dtype), obj.l2, obj.l1,
            cfg.lr, cfg.momentum, FUSED_METHODS.index(cfg.method),
            cfg.max_steps, cfg.grad_tol, cfg.loss_target, cfg.max_loss, R, status, steps, loss, norm,
        )  # fmt: skip
        self._run("train", args, padded // self._lanes)
        theta = np.ascontiguousarray(thT[:, :R].T, dtype=np.float64)
        return Fused(theta, status[:R], steps[:R], loss[:R], norm[:R])

