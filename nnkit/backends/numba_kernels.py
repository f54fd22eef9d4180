"""Fused forward and backward passes of a batch of MLPs, compiled with Numba.

Imported only by the ``numba`` backend. The networks are laid out with the inits as the
fast axis, ``thT (P, R)``, and processed in blocks of :data:`LANES` inits: every inner
loop runs over the lanes of a block, which the compiler turns into SIMD instructions,
and a block's parameters, gradient accumulators and per-sample activations stay in
the cache. A sample is pushed forward and back through all layers before the next one
is read, so no ``(R, n, k)`` intermediate is ever stored. Blocks run in parallel.

Every kernel has the NumPy reference beside it (``reference.py``) and is tested against
it (``tests/test_numba_backend.py``).

The model is described by integer arrays, so that one compiled function serves every
depth, width, activation and loss (one compilation per dtype, cached on disk):

* ``widths[l]``, ``acts[l]`` (codes of :data:`ACTIVATION_CODES`), ``has_bias[l]``;
* ``w_off[l]``, ``b_off[l]``: row offsets of layer ``l``'s weights (row-major
  ``(fan_in, fan_out)``) and biases in ``thT``;
* ``out[0]``: 1 when the output weights are trained (rows from ``out[1]``), 0 when they
  are all ``out_value``; ``out[2]``: 1 with an output bias at row ``out[3]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: inits per block: one AVX-512 register of float64 values
LANES = 8

ACTIVATION_CODES = {"relu": 0, "sigmoid": 1, "tanh": 2, "linear": 3, "softplus": 4, "leaky_relu": 5}
LOSS_CODES = {"squared": 0, "logistic": 1}

_FASTMATH = {"contract", "reassoc", "nsz"}  # no 'nnan'/'ninf': divergence needs NaN and inf


@njit(inline="always", fastmath=_FASTMATH)
def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(inline="always", fastmath=_FASTMATH)
def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@njit(inline="always", fastmath=_FASTMATH)
def _tanh(z):
    if abs(z) > 20.0:
        return 1.0 if z > 0 else -1.0
    e = math.expm1(2.0 * z)
    return e / (e + 2.0)


@njit(inline="always", fastmath=_FASTMATH)
def _activate(code, slope, z, h, row):
    """``h[row] = a(z[row])`` over the lanes, the branch taken once per row."""
    if code == 0:
        for q in range(LANES):
            h[row, q] = max(z[row, q], 0.0)
    elif code == 1:
        for q in range(LANES):
            h[row, q] = _sigmoid(z[row, q])
    elif code == 2:
        for q in range(LANES):
            h[row, q] = _tanh(z[row, q])
    elif code == 3:
        for q in range(LANES):
            h[row, q] = z[row, q]
    elif code == 4:
        for q in range(LANES):
            h[row, q] = _softplus(z[row, q])
    else:
        for q in range(LANES):
            h[row, q] = z[row, q] if z[row, q] > 0 else slope * z[row, q]


@njit(inline="always", fastmath=_FASTMATH)
def _times_derivative(code, slope, z, h, row, dz):
    """``dz[row] *= a'(z[row])``, with ``h = a(z)`` reused where it helps."""
    if code == 0:
        for q in range(LANES):
            dz[row, q] = dz[row, q] if z[row, q] > 0 else 0.0
    elif code == 1:
        for q in range(LANES):
            dz[row, q] *= h[row, q] * (1.0 - h[row, q])
    elif code == 2:
        for q in range(LANES):
            dz[row, q] *= 1.0 - h[row, q] * h[row, q]
    elif code == 4:
        for q in range(LANES):
            dz[row, q] *= _sigmoid(z[row, q])
    elif code == 5:
        for q in range(LANES):
            dz[row, q] = dz[row, q] if z[row, q] > 0 else slope * dz[row, q]
    # code 3 (linear): derivative one


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def value_and_grad(
    thT, X, y, widths, acts, has_bias, w_off, b_off, out, out_value, slope, loss_code, scale,
    loss, gT,
):  # fmt: skip
    """Data loss ``loss (R,)`` and its gradient ``gT (P, R)`` of the networks ``thT (P, R)``.

    ``X (Rx, n, d)`` and ``y (Rx, n)``: ``Rx = 1`` when all networks share the data,
    ``Rx = R`` for one batch per network. ``R`` must be a multiple of :data:`LANES`.
    ``scale`` is the factor in front of the summed loss (``1/n`` for a mean).
    """
    P, R = thT.shape
    n, d = X.shape[1], X.shape[2]
    depth = widths.shape[0]
    shared = X.shape[0] == 1
    units = 0
    for l in range(depth):
        units += widths[l]
    unit_off = np.zeros(depth + 1, dtype=np.int64)
    for l in range(depth):
        unit_off[l + 1] = unit_off[l] + widths[l]
    kl = widths[depth - 1]
    last = unit_off[depth - 1]

    for block in prange(R // LANES):
        r0 = block * LANES
        w = np.empty((P, LANES), dtype=thT.dtype)
        for p in range(P):
            for q in range(LANES):
                w[p, q] = thT[p, r0 + q]
        g = np.zeros((P, LANES), dtype=thT.dtype)
        z = np.empty((units, LANES), dtype=thT.dtype)
        h = np.empty((units, LANES), dtype=thT.dtype)
        dz = np.empty((units, LANES), dtype=thT.dtype)
        x = np.empty((d, LANES), dtype=thT.dtype)
        f = np.empty(LANES, dtype=thT.dtype)
        df = np.empty(LANES, dtype=thT.dtype)
        target = np.empty(LANES, dtype=thT.dtype)
        total = np.zeros(LANES, dtype=thT.dtype)

        for i in range(n):
            for a in range(d):
                for q in range(LANES):
                    x[a, q] = X[0, i, a] if shared else X[r0 + q, i, a]
            for q in range(LANES):
                target[q] = y[0, i] if shared else y[r0 + q, i]

            # forward: z = W^T h_prev + b, h = a(z), layer by layer
            for l in range(depth):
                k, base, wo = widths[l], unit_off[l], w_off[l]
                fan_in = d if l == 0 else widths[l - 1]
                for j in range(k):
                    for q in range(LANES):
                        z[base + j, q] = w[b_off[l] + j, q] if has_bias[l] else 0.0
                for a in range(fan_in):
                    for j in range(k):
                        row = wo + a * k + j
                        if l == 0:
                            for q in range(LANES):
                                z[base + j, q] += x[a, q] * w[row, q]
                        else:
                            src = unit_off[l - 1] + a
                            for q in range(LANES):
                                z[base + j, q] += h[src, q] * w[row, q]
                for j in range(k):
                    _activate(acts[l], slope, z, h, base + j)

            # output and loss
            for q in range(LANES):
                f[q] = w[out[3], q] if out[2] else 0.0
            for j in range(kl):
                if out[0]:
                    for q in range(LANES):
                        f[q] += w[out[1] + j, q] * h[last + j, q]
                else:
                    for q in range(LANES):
                        f[q] += out_value * h[last + j, q]
            if loss_code == 0:
                for q in range(LANES):
                    r = f[q] - target[q]
                    total[q] += r * r
                    df[q] = 2.0 * scale * r
            else:
                for q in range(LANES):
                    m = -target[q] * f[q]
                    total[q] += _softplus(m)
                    df[q] = -scale * target[q] * _sigmoid(m)

            # backward: output layer, then dz = dh * a'(z) and dh_prev = W dz
            if out[2]:
                for q in range(LANES):
                    g[out[3], q] += df[q]
            for j in range(kl):
                if out[0]:
                    for q in range(LANES):
                        g[out[1] + j, q] += df[q] * h[last + j, q]
                        dz[last + j, q] = df[q] * w[out[1] + j, q]
                else:
                    for q in range(LANES):
                        dz[last + j, q] = df[q] * out_value
            for l in range(depth - 1, -1, -1):
                k, base, wo = widths[l], unit_off[l], w_off[l]
                fan_in = d if l == 0 else widths[l - 1]
                for j in range(k):
                    _times_derivative(acts[l], slope, z, h, base + j, dz)
                if has_bias[l]:
                    for j in range(k):
                        for q in range(LANES):
                            g[b_off[l] + j, q] += dz[base + j, q]
                if l == 0:
                    for a in range(fan_in):
                        for j in range(k):
                            row = wo + a * k + j
                            for q in range(LANES):
                                g[row, q] += x[a, q] * dz[base + j, q]
                else:
                    prev = unit_off[l - 1]
                    for a in range(fan_in):
                        for q in range(LANES):
                            dz[prev + a, q] = 0.0
                        for j in range(k):
                            row = wo + a * k + j
                            for q in range(LANES):
                                g[row, q] += h[prev + a, q] * dz[base + j, q]
                                dz[prev + a, q] += w[row, q] * dz[base + j, q]

        for q in range(LANES):
            loss[r0 + q] = scale * total[q]
        for p in range(P):
            for q in range(LANES):
                gT[p, r0 + q] = g[p, q]

