"""Descent to the minimum a run was heading for, batched over inits, in float64
(``analysis.descend``): for end points of training that stopped far from a critical
point (a step budget spent on a slow valley, the usual case on real data).

Each step is a damped saddle-free Newton step on the loss ``E`` itself::

    s = -Q diag(1 / (|e| + mu)) Q^T g        (H = Q diag(e) Q^T, the exact Hessian)

accepted when it lowers ``E`` (or leaves it level within rounding and lowers the
gradient norm), then ``mu /= 3``; else retried with ``mu *= 4``. The step always points
downhill, so a run that stopped on the way to a minimum reaches that minimum, never a
saddle beside it; with ``mu`` small near a nondegenerate minimum it is Newton's step,
and the gradient norm falls quadratically. Unlike polishing (:mod:`.polishing`), which
finds the critical point nearest to where training stopped whatever its index, this
carries on what training was doing; polishing and the Hessian's spectrum then certify
the point it reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import eigensteps

#: damping of the first step and its floor, relative to the largest |eigenvalue|
_MU0, _MU_FLOOR = 1e-3, 1e-12


@dataclass
class DescentResult:
    """Per init: ``theta (R, P)``, ``loss (R,)``, ``grad_norm (R,)``, ``steps (R,)``
    (tries, accepted or not)."""

    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    steps: np.ndarray


def descend(objective, theta, grad_tol: float, max_steps: int) -> DescentResult:
    """Lower the loss of every row of ``theta (R, P)`` by damped Newton steps until
    its gradient norm is at most ``grad_tol`` or ``max_steps`` tries are spent."""
    def accept(loss, norm, t_loss, t_norm):
        level = t_loss <= loss + 1e-14 * np.maximum(1.0, np.abs(loss))
        return (t_loss < loss) | (level & (t_norm < norm))

    theta, loss, norm, steps = eigensteps.iterate(
        objective, theta, grad_tol, max_steps,
        coefficients=lambda e, mu: 1.0 / (np.abs(e) + mu),
        accept=accept,
        first=lambda e: _MU0 * (np.max(np.abs(e), axis=1) + 1e-300),
        floor=lambda e: _MU_FLOOR * (np.max(np.abs(e), axis=1) + 1e-300),
    )  # fmt: skip
    return DescentResult(theta, loss, norm, steps)
