"""Activation functions: one record per activation, holding everything the rest of
nnkit needs to know about it.

* ``value(xp, z)``, ``derivative(xp, z, h)`` and ``second(xp, z, h)``: ``a(z)``,
  ``a'(z)`` and ``a''(z)`` written once against an array namespace ``xp``; the
  derivatives may reuse the value ``h = a(z)`` (sigmoid and tanh do), so
  back-propagation never recomputes a transcendental it already has.
* ``flip`` and ``homogeneous``: the symmetries of a unit (:mod:`nnkit.landscape.symmetry`).
  ``flip = "odd"`` when ``a(-z) = -a(z)``, so negating a unit's incoming and outgoing
  weights leaves the network unchanged; ``"shift"`` when ``a(-z) = 1 - a(z)`` (sigmoid),
  so a flip also moves the unit's outgoing weights into the next bias; None when a
  unit cannot be flipped. ``homogeneous``: ``a(c z) = c a(z)`` for ``c > 0``, so a unit
  can be rescaled.
* ``numba``: the two expressions the ``numba`` backend's code generator writes into its
  lane loops, ``h[q]`` from ``z[q]`` and ``dz[q] * a'(z[q])`` (which may read ``h[q]``;
  empty when the factor is 1), with the leaky slope written in as a number.
* ``cuda``: the two expressions of the ``cuda`` backend's device function
  ``activate(z) -> (a(z), a'(z))``: ``a(z)`` from ``z``, then ``a'(z)`` from ``z`` and
  ``h``, with the kernel dtype's constants ``ZERO``, ``ONE``, ``SLOPE`` and the device
  functions ``sigmoid``, ``softplus`` and ``math``.

Adding an activation is one entry in :func:`_records` (plus its tests: the gradient and
Hessian checks against finite differences and the backend conformance suite run over
:data:`NAMES`; a new scalar helper for the generated kernels goes into
``nnkit/backends/numba_kernels.py`` and ``kernels/pointwise.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


def sigmoid(xp, z):
    """Logistic sigmoid ``1 / (1 + exp(-z))``, overflow-free for any ``z``."""
    return xp.exp(-xp.logaddexp(0.0, -z))


@dataclass(frozen=True)
class Activation:
    """One activation: its math, its symmetries and its code for the generated kernels
    (see the module doc)."""

    name: str
    value: Callable
    derivative: Callable
    second: Callable
    flip: Literal["odd", "shift"] | None
    homogeneous: bool
    numba: tuple[str, str]
    cuda: tuple[str, str]


def _zero(xp, z, h):
    return xp.zeros_like(z)


def _records(s: float) -> dict[str, Activation]:
    """Every activation, with leaky slope ``s``."""
    return {
        "relu": Activation(
            "relu",
            value=lambda xp, z: xp.maximum(z, 0.0),
            derivative=lambda xp, z, h: (z > 0).astype(z.dtype),
            second=_zero,
            flip=None,
            homogeneous=True,
            numba=("max(z[q], 0.0)", "dz[q] if z[q] > 0 else 0.0"),
            cuda=("z if z > ZERO else ZERO", "ONE if z > ZERO else ZERO"),
        ),
        "sigmoid": Activation(
            "sigmoid",
            value=sigmoid,
            derivative=lambda xp, z, h: h * (1.0 - h),
            second=lambda xp, z, h: h * (1.0 - h) * (1.0 - 2.0 * h),
            flip="shift",
            homogeneous=False,
            numba=("sigmoid(z[q])", "dz[q] * h[q] * (1.0 - h[q])"),
            cuda=("sigmoid(z)", "h * (ONE - h)"),
        ),
        "tanh": Activation(
            "tanh",
            value=lambda xp, z: xp.tanh(z),
            derivative=lambda xp, z, h: 1.0 - h * h,
            second=lambda xp, z, h: -2.0 * h * (1.0 - h * h),
            flip="odd",
            homogeneous=False,
            numba=("tanh(z[q])", "dz[q] * (1.0 - h[q] * h[q])"),
            cuda=("math.tanh(z)", "ONE - h * h"),
        ),
        "linear": Activation(
            "linear",
            value=lambda xp, z: z,
            derivative=lambda xp, z, h: xp.ones_like(z),
            second=_zero,
            flip="odd",
            homogeneous=True,
            numba=("z[q]", ""),
            cuda=("z", "ONE"),
        ),
        "softplus": Activation(
            "softplus",
            value=lambda xp, z: xp.logaddexp(0.0, z),
            derivative=lambda xp, z, h: sigmoid(xp, z),
            second=lambda xp, z, h: sigmoid(xp, z) * sigmoid(xp, -z),  # s (1 - s)
            flip=None,
            homogeneous=False,
            numba=("softplus(z[q])", "dz[q] * sigmoid(z[q])"),
            cuda=("softplus(z)", "sigmoid(z)"),
        ),
        "leaky_relu": Activation(
            "leaky_relu",
            value=lambda xp, z: xp.where(z > 0, z, s * z),
            derivative=lambda xp, z, h: xp.where(z > 0, 1.0, s).astype(z.dtype),
            second=_zero,
            flip=None,
            homogeneous=True,
            numba=(f"z[q] if z[q] > 0 else {s!r} * z[q]", f"dz[q] if z[q] > 0 else {s!r} * dz[q]"),
            cuda=("z if z > ZERO else SLOPE * z", "ONE if z > ZERO else SLOPE"),
        ),
    }


NAMES = tuple(_records(0.01))


def get(name: str, leaky_slope: float = 0.01) -> Activation:
    """The activation called ``name`` (one of :data:`NAMES`)."""
    records = _records(float(leaky_slope))
    if name not in records:
        raise ValueError(f"unknown activation {name!r} (expected one of {', '.join(NAMES)})")
    return records[name]
