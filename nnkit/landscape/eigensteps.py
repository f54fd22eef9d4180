"""The loop that polishing (:mod:`.polishing`) and descent (:mod:`.descent`) share:
damped steps in the eigenbasis of the exact Hessian, batched over inits, in float64.

For every init still above the gradient tolerance: ``H = Q diag(e) Q^T``, the trial
``theta + s`` with ``s = -Q diag(coefficients(e, lam)) Q^T g``, accepted where
``accept`` says so (then ``lam /= 3``), else retried with ``lam *= 4``; ``lam`` starts
at ``first(e)`` and never falls below ``floor(e)`` (per init).
"""

from __future__ import annotations

import numpy as np

from ..backends import host_threads


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
    R, P = theta.shape
    steps = np.zeros(R, dtype=np.int64)
    lam = np.full(R, np.nan)
    stuck = np.zeros(R, dtype=bool)  # no finite Hessian: no step to take
    # the eigendecomposition at each row's current point: a rejected trial leaves the
    # point where it was, and the retry with more damping needs no new Hessian
    E, Qs, stale = np.full((R, P), np.nan), np.full((R, P, P), np.nan), np.ones(R, dtype=bool)
    with np.errstate(all="ignore"):
        for _ in range(max_steps):
            rows = np.flatnonzero((norm > grad_tol) & np.isfinite(norm) & np.isfinite(loss) & ~stuck)
            need = rows[stale[rows]]
            if need.size:
                e, Q = eigh(hessian(theta[need]))
                E[need], Qs[need], stale[need] = e, Q, False
                stuck[need[~np.isfinite(e).all(axis=1)]] = True
                rows = rows[~stuck[rows]]
            if rows.size == 0:
                break
            e, Q = E[rows], Qs[rows]
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
            stale[take] = True
            lam[take] /= 3.0
            lam[rows[~better]] *= 4.0
            steps[rows] += 1
    return theta, loss, norm, steps


def eigh(H, vectors=True):
    """``np.linalg.eigh`` of a batch ``H (R, P, P)`` that never raises: the rows whose
    matrix is not finite (a dead unit's Hessian on the population loss, say) or does
    not converge get NaN eigenvalues (and NaN vectors). One slice of the batch per
    core, each with one LAPACK thread (:mod:`nnkit.backends.host_threads`)."""
    H = np.asarray(H, dtype=np.float64)
    e = np.full(H.shape[:2], np.nan)
    Q = np.full(H.shape, np.nan) if vectors else None

    def part(first, last):
        for r, values, vecs in _eigh_rows(H, first, last, vectors):
            e[r] = values
            if vectors:
                Q[r] = vecs

    host_threads.map_slices(part, H.shape[0], 8)
    return (e, Q) if vectors else e


def _eigh_rows(H, first, last, vectors):
    """``(rows, values, vectors)`` of the finite matrices ``H[first:last]`` that LAPACK
    decomposes: the slice at once, else (one matrix spoils a batch) one at a time."""
    ok = first + np.flatnonzero(np.isfinite(H[first:last]).all(axis=(1, 2)))
    decompose = np.linalg.eigh if vectors else (lambda M: (np.linalg.eigvalsh(M), None))
    try:
        return [(ok, *decompose(H[ok]))]
    except np.linalg.LinAlgError:
        out = []
        for r in ok:
            try:
                out.append((np.array([r]), *decompose(H[r : r + 1])))
            except np.linalg.LinAlgError:
                continue
        return out
