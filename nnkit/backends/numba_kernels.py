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

#: inits per block. The lane loops must be long for the compiler to vectorise them
#: (it cannot prove that the block's buffers do not overlap, and checks that at run
#: time only for long loops): 8 lanes ran at 13k init-steps/s on case B1, 128 at 75k.
LANES = 128

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
def _activate(code, slope, z, h, o):
    """``h[o:o+LANES] = a(z[o:o+LANES])``, the branch taken once per row of lanes."""
    if code == 0:
        for q in range(o, o + LANES):
            h[q] = max(z[q], 0.0)
    elif code == 1:
        for q in range(o, o + LANES):
            h[q] = _sigmoid(z[q])
    elif code == 2:
        for q in range(o, o + LANES):
            h[q] = _tanh(z[q])
    elif code == 3:
        for q in range(o, o + LANES):
            h[q] = z[q]
    elif code == 4:
        for q in range(o, o + LANES):
            h[q] = _softplus(z[q])
    else:
        for q in range(o, o + LANES):
            h[q] = z[q] if z[q] > 0 else slope * z[q]


@njit(inline="always", fastmath=_FASTMATH)
def _times_derivative(code, slope, z, h, o, dz):
    """``dz[o:o+LANES] *= a'(z[o:o+LANES])``, reusing ``h = a(z)`` where it helps."""
    if code == 0:
        for q in range(o, o + LANES):
            dz[q] = dz[q] if z[q] > 0 else 0.0
    elif code == 1:
        for q in range(o, o + LANES):
            dz[q] *= h[q] * (1.0 - h[q])
    elif code == 2:
        for q in range(o, o + LANES):
            dz[q] *= 1.0 - h[q] * h[q]
    elif code == 4:
        for q in range(o, o + LANES):
            dz[q] *= _sigmoid(z[q])
    elif code == 5:
        for q in range(o, o + LANES):
            dz[q] = dz[q] if z[q] > 0 else slope * dz[q]
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
        # every buffer is flat: row p of lanes lives at [p * LANES, (p + 1) * LANES)
        w = np.empty(P * LANES, dtype=thT.dtype)
        for p in range(P):
            for q in range(LANES):
                w[p * LANES + q] = thT[p, r0 + q]
        g = np.zeros(P * LANES, dtype=thT.dtype)
        z = np.empty(units * LANES, dtype=thT.dtype)
        h = np.empty(units * LANES, dtype=thT.dtype)
        dz = np.empty(units * LANES, dtype=thT.dtype)
        x = np.empty(d * LANES, dtype=thT.dtype)
        f = np.empty(LANES, dtype=thT.dtype)
        df = np.empty(LANES, dtype=thT.dtype)
        target = np.empty(LANES, dtype=thT.dtype)
        total = np.zeros(LANES, dtype=thT.dtype)

        for i in range(n):
            for a in range(d):
                for q in range(LANES):
                    x[a * LANES + q] = X[0, i, a] if shared else X[r0 + q, i, a]
            for q in range(LANES):
                target[q] = y[0, i] if shared else y[r0 + q, i]

            # forward: z = W^T h_prev + b, h = a(z), layer by layer
            for l in range(depth):
                k, base, wo = widths[l], unit_off[l], w_off[l]
                fan_in = d if l == 0 else widths[l - 1]
                src = x if l == 0 else h
                src_base = 0 if l == 0 else unit_off[l - 1]
                for j in range(k):
                    zo = (base + j) * LANES
                    if has_bias[l]:
                        bo = (b_off[l] + j) * LANES
                        for q in range(LANES):
                            z[zo + q] = w[bo + q]
                    else:
                        for q in range(LANES):
                            z[zo + q] = 0.0
                for a in range(fan_in):
                    s_a = src[(src_base + a) * LANES : (src_base + a + 1) * LANES]
                    for j in range(k):
                        z_j = z[(base + j) * LANES : (base + j + 1) * LANES]
                        w_aj = w[(wo + a * k + j) * LANES : (wo + a * k + j + 1) * LANES]
                        for q in range(LANES):
                            z_j[q] += s_a[q] * w_aj[q]
                for j in range(k):
                    _activate(acts[l], slope, z, h, (base + j) * LANES)

            # output and loss
            for q in range(LANES):
                f[q] = w[out[3] * LANES + q] if out[2] else 0.0
            for j in range(kl):
                ho = (last + j) * LANES
                if out[0]:
                    vo = (out[1] + j) * LANES
                    for q in range(LANES):
                        f[q] += w[vo + q] * h[ho + q]
                else:
                    for q in range(LANES):
                        f[q] += out_value * h[ho + q]
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
                    g[out[3] * LANES + q] += df[q]
            for j in range(kl):
                ho = (last + j) * LANES
                if out[0]:
                    vo = (out[1] + j) * LANES
                    for q in range(LANES):
                        g[vo + q] += df[q] * h[ho + q]
                        dz[ho + q] = df[q] * w[vo + q]
                else:
                    for q in range(LANES):
                        dz[ho + q] = df[q] * out_value
            for l in range(depth - 1, -1, -1):
                k, base, wo = widths[l], unit_off[l], w_off[l]
                fan_in = d if l == 0 else widths[l - 1]
                for j in range(k):
                    _times_derivative(acts[l], slope, z, h, (base + j) * LANES, dz)
                if has_bias[l]:
                    for j in range(k):
                        bo, zo = (b_off[l] + j) * LANES, (base + j) * LANES
                        for q in range(LANES):
                            g[bo + q] += dz[zo + q]
                src = x if l == 0 else h
                src_base = 0 if l == 0 else unit_off[l - 1]
                for a in range(fan_in):
                    s_a = src[(src_base + a) * LANES : (src_base + a + 1) * LANES]
                    for j in range(k):
                        dz_j = dz[(base + j) * LANES : (base + j + 1) * LANES]
                        g_aj = g[(wo + a * k + j) * LANES : (wo + a * k + j + 1) * LANES]
                        for q in range(LANES):
                            g_aj[q] += s_a[q] * dz_j[q]
                if l > 0:  # dh of the layer below, into its rows of dz
                    for a in range(fan_in):
                        so = (src_base + a) * LANES
                        for q in range(LANES):
                            dz[so + q] = 0.0
                        for j in range(k):
                            zo = (base + j) * LANES
                            wr = (wo + a * k + j) * LANES
                            for q in range(LANES):
                                dz[so + q] += w[wr + q] * dz[zo + q]

        for q in range(LANES):
            loss[r0 + q] = scale * total[q]
        for p in range(P):
            for q in range(LANES):
                gT[p, r0 + q] = g[p * LANES + q]
