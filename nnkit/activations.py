"""Activation functions written once against an array namespace ``xp``.

Each activation gives the value ``a(z)`` and the derivative ``a'(z)``; the derivative
may reuse the value ``h = a(z)`` (sigmoid and tanh do), so back-propagation never
recomputes a transcendental it already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

NAMES = ("relu", "sigmoid", "tanh", "linear", "softplus", "leaky_relu")


def sigmoid(xp, z):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, overflow-free for any ``z``."""
    return xp.exp(-xp.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Activation:
    """``value(xp, z)`` and ``derivative(xp, z, h)`` with ``h = value(xp, z)``."""

    name: str
    value: Callable
    derivative: Callable


def get(name: str, leaky_slope: float = 0.01) -> Activation:
    """The activation called ``name`` (one of :data:`NAMES`)."""
    if name == "relu":
        return Activation(
            "relu",
            lambda xp, z: xp.maximum(z, 0.0),
            lambda xp, z, h: (z > 0).astype(z.dtype),
        )
    if name == "sigmoid":
        return Activation("sigmoid", sigmoid, lambda xp, z, h: h * (1.0 - h))
    if name == "tanh":
        return Activation("tanh", lambda xp, z: xp.tanh(z), lambda xp, z, h: 1.0 - h * h)
    if name == "linear":
        return Activation("linear", lambda xp, z: z, lambda xp, z, h: xp.ones_like(z))
    if name == "softplus":
        return Activation(
            "softplus",
            lambda xp, z: xp.logaddexp(0.0, z),
            lambda xp, z, h: sigmoid(xp, z),
        )
    if name == "leaky_relu":
        s = float(leaky_slope)
        return Activation(
            "leaky_relu",
            lambda xp, z: xp.where(z > 0, z, s * z),
            lambda xp, z, h: xp.where(z > 0, 1.0, s).astype(z.dtype),
        )
    raise ValueError(f"unknown activation {name!r} (expected one of {', '.join(NAMES)})")
