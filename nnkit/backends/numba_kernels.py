"""Scalar functions the generated kernels of the ``numba`` backend call (inlined):
overflow-free sigmoid and softplus, and tanh through ``expm1``.

The kernels themselves are generated per model by ``numba_codegen.py``. Imported only
by those kernels, never by ``import nnkit``.
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
