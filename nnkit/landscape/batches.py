"""The objective of many host points, a batch of rows at a time: what every landscape
tool evaluates (the points of lines, the images of bands, the points of a slice or of
a path are rows of one ``theta``). Points go to the objective's backend and back as
float64; at most ``rows`` of them are on the device at once."""

from __future__ import annotations

import numpy as np

#: rows of ``theta`` evaluated at a time by default
ROWS = 65536


def values(objective, theta, rows: int = ROWS) -> np.ndarray:
    """``objective.value`` of the host points ``theta (N, P)``: host float64 ``(N,)``."""
    be = objective.backend
    theta = np.asarray(theta)
    out = np.empty(theta.shape[0])
    for start in range(0, theta.shape[0], rows):
        out[start : start + rows] = be.to_numpy(objective.value(be.asarray(theta[start : start + rows], be.xp.float64)))
    return out


def values_and_grads(objective, theta, rows: int = ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``objective.value_and_grad`` of the host points ``theta (N, P)``: host float64
    ``(N,)`` and ``(N, P)``."""
    be = objective.backend
    theta = np.asarray(theta)
    loss, grad = np.empty(theta.shape[0]), np.empty(theta.shape, dtype=np.float64)
    for start in range(0, theta.shape[0], rows):
        value, g = objective.value_and_grad(be.asarray(theta[start : start + rows], be.xp.float64))
        loss[start : start + rows], grad[start : start + rows] = be.to_numpy(value), be.to_numpy(g)
    return loss, grad
