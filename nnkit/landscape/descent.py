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
    value_and_grad, hessian = objective.value_and_grad, objective.hessian
    theta = np.array(theta, dtype=np.float64)
    loss, grad = (np.asarray(a, dtype=np.float64) for a in value_and_grad(theta))
    norm = np.linalg.norm(grad, axis=1)
    R = theta.shape[0]
    steps = np.zeros(R, dtype=np.int64)
    mu = np.full(R, np.nan)
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            rows = np.flatnonzero((norm > grad_tol) & np.isfinite(norm) & np.isfinite(loss))
            if rows.size == 0:
                break
            e, Q = np.linalg.eigh(hessian(theta[rows]))
            scale = np.max(np.abs(e), axis=1) + 1e-300
            fresh = np.isnan(mu[rows])
            mu[rows[fresh]] = _MU0 * scale[fresh]
            mu[rows] = np.maximum(mu[rows], _MU_FLOOR * scale)
            g_eig = np.einsum("rpq,rp->rq", Q, grad[rows])
            step = -np.einsum("rpq,rq->rp", Q, g_eig / (np.abs(e) + mu[rows, None]))
            trial = theta[rows] + step
            t_loss, t_grad = (np.asarray(a, dtype=np.float64) for a in value_and_grad(trial))
            t_norm = np.linalg.norm(t_grad, axis=1)
            level = t_loss <= loss[rows] + 1e-14 * np.maximum(1.0, np.abs(loss[rows]))
            better = np.isfinite(t_loss) & np.isfinite(t_norm) & ((t_loss < loss[rows]) | (level & (t_norm < norm[rows])))
            take = rows[better]
            theta[take], loss[take], grad[take], norm[take] = (
                trial[better], t_loss[better], t_grad[better], t_norm[better]
            )  # fmt: skip
            mu[take] /= 3.0
            mu[rows[~better]] *= 4.0
            steps[rows] += 1
    return DescentResult(theta, loss, norm, steps)
