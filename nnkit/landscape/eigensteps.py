"""The loop that polishing (:mod:`.polishing`) and descent (:mod:`.descent`) share:
damped steps in the eigenbasis of the exact Hessian, batched over inits, in float64.

For every init still above the gradient tolerance: ``H = Q diag(e) Q^T``, the trial
``theta + s`` with ``s = -Q diag(coefficients(e, lam)) Q^T g``, accepted where
``accept`` says so (then ``lam /= 3``), else retried with ``lam *= 4``; ``lam`` starts
at ``first(e)`` and never falls below ``floor(e)`` (per init).
"""

from __future__ import annotations

import numpy as np


def iterate(objective, theta, grad_tol, max_steps, coefficients, accept, first, floor):
    """``(theta, loss, grad_norm, steps)`` of every row of ``theta (R, P)`` after the
    damped steps; ``steps`` counts tries, accepted or not.

    ``coefficients(e, lam) -> (r, P)``; ``accept(loss, norm, t_loss, t_norm) -> (r,)``
    bool (current and trial values of the rows tried); ``first(e)``, ``floor(e)`` give
    the starting and the smallest damping of each row from its eigenvalues ``e (r, P)``.
    """
    value_and_grad, hessian = objective.value_and_grad, objective.hessian
    theta = np.array(theta, dtype=np.float64)
    loss, grad = (np.asarray(a, dtype=np.float64) for a in value_and_grad(theta))
    norm = np.linalg.norm(grad, axis=1)
    steps = np.zeros(theta.shape[0], dtype=np.int64)
    lam = np.full(theta.shape[0], np.nan)
    stuck = np.zeros(theta.shape[0], dtype=bool)  # no finite Hessian: no step to take
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            rows = np.flatnonzero((norm > grad_tol) & np.isfinite(norm) & np.isfinite(loss) & ~stuck)
            if rows.size == 0:
                break
            e, Q = eigh(hessian(theta[rows]))
            bad = ~np.isfinite(e).all(axis=1)
            if bad.any():
                stuck[rows[bad]] = True
                rows, e, Q = rows[~bad], e[~bad], Q[~bad]
                if rows.size == 0:
                    break
            fresh = np.isnan(lam[rows])
            lam[rows[fresh]] = first(e[fresh])
            lam[rows] = np.maximum(lam[rows], floor(e))
            g_eig = np.einsum("rpq,rp->rq", Q, grad[rows])
            trial = theta[rows] - np.einsum("rpq,rq->rp", Q, coefficients(e, lam[rows, None]) * g_eig)
            t_loss, t_grad = (np.asarray(a, dtype=np.float64) for a in value_and_grad(trial))
            t_norm = np.linalg.norm(t_grad, axis=1)
            better = np.isfinite(t_loss) & np.isfinite(t_norm) & accept(loss[rows], norm[rows], t_loss, t_norm)
            take = rows[better]
            theta[take], loss[take], grad[take], norm[take] = (
                trial[better], t_loss[better], t_grad[better], t_norm[better]
            )  # fmt: skip
            lam[take] /= 3.0
            lam[rows[~better]] *= 4.0
            steps[rows] += 1
    return theta, loss, norm, steps


def eigh(H, vectors=True):
    """``np.linalg.eigh`` of a batch ``H (R, P, P)`` that never raises: the rows whose
    matrix is not finite (a dead unit's Hessian on the population loss, say) or does
    not converge get NaN eigenvalues (and NaN vectors)."""
    H = np.asarray(H, dtype=np.float64)
    e = np.full(H.shape[:2], np.nan)
    Q = np.full(H.shape, np.nan) if vectors else None
    ok = np.isfinite(H).all(axis=(1, 2))
    try:
        parts = [np.linalg.eigh(H[ok])] if vectors else [(np.linalg.eigvalsh(H[ok]), None)]
        rows = [np.flatnonzero(ok)]
    except np.linalg.LinAlgError:  # one matrix spoils the batch: take them one at a time
        parts, rows = [], []
        for r in np.flatnonzero(ok):
            try:
                parts.append(np.linalg.eigh(H[r : r + 1]) if vectors else (np.linalg.eigvalsh(H[r : r + 1]), None))
                rows.append(np.array([r]))
            except np.linalg.LinAlgError:
                continue
    for (values, vecs), where in zip(parts, rows):
        e[where] = values
        if vectors:
            Q[where] = vecs
    return (e, Q) if vectors else e
