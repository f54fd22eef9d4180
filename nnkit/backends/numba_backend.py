"""The ``numba`` backend: fused CPU kernels (``numba_kernels.py``), parallel over cores.

Parameters cross into the kernels' layout, inits as the fast axis, at each call; the
penalty and everything outside the hot loop are the reference's own code.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np

from .base import Backend
from .numpy_backend import _cpu_device
from .reference import ReferenceKernel


def probe():
    if importlib.util.find_spec("numba") is None:
        return False, "", "numba is not installed"
    return True, f"{_cpu_device()}, {os.cpu_count()} threads", ""


def make():
    return NumbaBackend()


class NumbaBackend(Backend):
    name = "numba"

    def __init__(self):
        from . import numba_kernels  # the only place numba is imported

        self._kernels = numba_kernels
        self.device = probe()[1]
        self.compile_seconds = 0.0

    def kernel(self, model, objective):
        return NumbaKernel(model, objective, self)


class NumbaKernel(ReferenceKernel):
    """``value_and_grad`` from the fused kernel; ``predict`` from the reference."""

    def __init__(self, model, objective, backend):
        super().__init__(model, objective, backend.xp)
        self._backend = backend
        k = backend._kernels
        lay = model.layout
        depth = lay.depth
        self._lanes = k.LANES
        self._widths = np.array(lay.widths, dtype=np.int64)
        self._act_codes = np.array([k.ACTIVATION_CODES[a] for a in model.activations], dtype=np.int64)
        self._has_bias = np.array(lay.bias, dtype=np.int64)
        self._w_off = np.array([lay.block(f"W{l}").offset for l in range(1, depth + 1)], dtype=np.int64)
        self._b_off = np.array(
            [lay.block(f"b{l}").offset if lay.bias[l - 1] else 0 for l in range(1, depth + 1)],
            dtype=np.int64,
        )
        self._out = np.array(
            [
                int(lay.output_trained),
                lay.block("W_out").offset if lay.output_trained else 0,
                int(lay.output_bias),
                lay.block("b_out").offset if lay.output_bias else 0,
            ],
            dtype=np.int64,
        )
        self._loss_code = k.LOSS_CODES[objective.loss]

    def value(self, theta, X, y):
        return self.value_and_grad(theta, X, y)[0]

    def value_and_grad(self, theta, X, y):
        theta = np.asarray(theta)
        dtype = theta.dtype
        R, P = theta.shape
        lanes = self._lanes
        padded = -(-R // lanes) * lanes
        thT = np.zeros((P, padded), dtype=dtype)
        thT[:, :R] = theta.T
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
        gT = np.empty((P, padded), dtype=dtype)
        started = time.perf_counter()
        compiled = len(self._backend._kernels.value_and_grad.signatures)
        self._backend._kernels.value_and_grad(
            thT, np.ascontiguousarray(X3), np.ascontiguousarray(y2), self._widths, self._act_codes,
            self._has_bias, self._w_off, self._b_off, self._out,
            float(self.layout.output_value), float(self.model.leaky_slope), self._loss_code,
            float(self.objective.scale(X.shape[-2])), loss, gT,
        )  # fmt: skip
        if len(self._backend._kernels.value_and_grad.signatures) > compiled:
            self._backend.compile_seconds += time.perf_counter() - started
        loss = loss[:R]
        grad = np.ascontiguousarray(gT[:, :R].T)
        if self.objective.has_penalty():
            value, pgrad = self.objective.penalty(self._xp, theta, self._penalty_mask(self._xp, theta))
            loss, grad = loss + value, grad + pgrad
        return loss, grad
