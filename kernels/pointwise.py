"""Scalar device functions shared by the kernels: activations with their derivatives
and the losses with their slopes, specialised per activation and dtype (constants are
of the kernel's dtype, so float32 kernels never compute in float64)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ._target import cuda

ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "softplus", "leaky_relu")


@lru_cache(maxsize=None)
def functions(activation: str, slope: float, logistic: bool, dtype: str):
    """``(activate, loss_and_slope)`` device functions.

    ``activate(z) -> (a(z), a'(z))``, the derivative taken as the reference takes it
    (0 at a ReLU's kink, the slope at a leaky ReLU's). ``loss_and_slope(f, y, scale)
    -> (L(f, y), scale * dL/df)`` for the squared or logistic loss.
    """
    dt = np.dtype(dtype).type
    ZERO, ONE, TWO, SLOPE = dt(0.0), dt(1.0), dt(2.0), dt(slope)
    ACT = ACTIVATIONS.index(activation)

    @cuda.jit(device=True)
    def sigmoid(z):
        if z >= ZERO:
            return ONE / (ONE + math.exp(-z))
        e = math.exp(z)
        return e / (ONE + e)

    @cuda.jit(device=True)
    def softplus(z):
        return max(z, ZERO) + math.log1p(math.exp(-abs(z)))

    @cuda.jit(device=True)
    def activate(z):
        if ACT == 0:
            return (z, ONE) if z > ZERO else (ZERO, ZERO)
        if ACT == 1:
            s = sigmoid(z)
            return s, s * (ONE - s)
        if ACT == 2:
            t = math.tanh(z)
            return t, ONE - t * t
        if ACT == 3:
            return z, ONE
        if ACT == 4:
            return softplus(z), sigmoid(z)
        return (z, ONE) if z > ZERO else (SLOPE * z, SLOPE)

    @cuda.jit(device=True)
    def loss_and_slope(f, y, scale):
        if logistic:
            m = -y * f
            return softplus(m), -scale * y * sigmoid(m)
        res = f - y
        return res * res, TWO * scale * res

    return activate, loss_and_slope
