"""Scalar device functions shared by the kernels: activations with their derivatives
and the losses with their slopes, specialised per activation and dtype (constants are
of the kernel's dtype, so float32 kernels never compute in float64).

An activation's device function is written from the two expressions of its record in
:mod:`nnkit.core.activations` (``Activation.cuda``), so that adding an activation
touches that record only.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from nnkit.core import activations

from ._target import cuda

_ACTIVATE = '''
def activate(z):
    h = {value}
    return h, {derivative}
'''


@lru_cache(maxsize=None)
def functions(activation: str, slope: float, logistic: bool, dtype: str):
    """``(activate, loss_and_slope)`` device functions.

    ``activate(z) -> (a(z), a'(z))``, the derivative taken as the reference takes it
    (0 at a ReLU's kink, the slope at a leaky ReLU's). ``loss_and_slope(f, y, scale)
    -> (L(f, y), scale * dL/df)`` for the squared or logistic loss.
    """
    dt = np.dtype(dtype).type
    ZERO, ONE, TWO = dt(0.0), dt(1.0), dt(2.0)

    @cuda.jit(device=True)
    def sigmoid(z):
        if z >= ZERO:
            return ONE / (ONE + math.exp(-z))
        e = math.exp(z)
        return e / (ONE + e)

    @cuda.jit(device=True)
    def softplus(z):
        return max(z, ZERO) + math.log1p(math.exp(-abs(z)))

    value, derivative = activations.get(activation, slope).cuda
    names = {"math": math, "ZERO": ZERO, "ONE": ONE, "SLOPE": dt(slope),
             "sigmoid": sigmoid, "softplus": softplus}  # fmt: skip
    exec(_ACTIVATE.format(value=value, derivative=derivative), names)  # noqa: S102
    activate = cuda.jit(device=True)(names["activate"])

    @cuda.jit(device=True)
    def loss_and_slope(f, y, scale):
        if logistic:
            m = -y * f
            return softplus(m), -scale * y * sigmoid(m)
        res = f - y
        return res * res, TWO * scale * res

    return activate, loss_and_slope
