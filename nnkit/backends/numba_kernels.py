"""Element-wise pieces of the ``numba`` backend's kernels: activations, their
derivatives and the logistic loss's functions, each branch picked once per row of lanes.

The kernels themselves are generated per model by ``numba_codegen.py`` and call these
(inlined). Imported only by the ``numba`` backend, never by ``import nnkit``.
"""

from __future__ import annotations

import math

from numba import njit

#: no 'nnan'/'ninf': divergence detection needs NaN and inf to behave
FASTMATH = {"contract", "reassoc", "nsz"}


@njit(inline="always", fastmath=FASTMATH)
def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(inline="always", fastmath=FASTMATH)
def softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@njit(inline="always", fastmath=FASTMATH)
def tanh(z):
    """Through ``expm1``: as accurate as libm's tanh and faster in a lane loop."""
    if abs(z) > 20.0:
        return 1.0 if z > 0 else -1.0
    e = math.expm1(2.0 * z)
    return e / (e + 2.0)


@njit(inline="always", fastmath=FASTMATH)
def activate(code, slope, z, h, o, lanes):
    """``h[o:o+lanes] = a(z[o:o+lanes])`` for the activation with ``code``."""
    if code == 0:
        for q in range(o, o + lanes):
            h[q] = max(z[q], 0.0)
    elif code == 1:
        for q in range(o, o + lanes):
            h[q] = sigmoid(z[q])
    elif code == 2:
        for q in range(o, o + lanes):
            h[q] = tanh(z[q])
    elif code == 3:
        for q in range(o, o + lanes):
            h[q] = z[q]
    elif code == 4:
        for q in range(o, o + lanes):
            h[q] = softplus(z[q])
    else:
        for q in range(o, o + lanes):
            h[q] = z[q] if z[q] > 0 else slope * z[q]


@njit(inline="always", fastmath=FASTMATH)
def times_derivative(code, slope, z, h, o, dz, lanes):
    """``dz[o:o+lanes] *= a'(z[o:o+lanes])``, reusing ``h = a(z)`` where it helps."""
    if code == 0:
        for q in range(o, o + lanes):
            dz[q] = dz[q] if z[q] > 0 else 0.0
    elif code == 1:
        for q in range(o, o + lanes):
            dz[q] *= h[q] * (1.0 - h[q])
    elif code == 2:
        for q in range(o, o + lanes):
            dz[q] *= 1.0 - h[q] * h[q]
    elif code == 4:
        for q in range(o, o + lanes):
            dz[q] *= sigmoid(z[q])
    elif code == 5:
        for q in range(o, o + lanes):
            dz[q] = dz[q] if z[q] > 0 else slope * dz[q]
    # code 3 (linear): the derivative is one
