"""Transition states: from the climbing image of a band to a certified index-1 saddle,
and down from it on both sides to the minima it connects; batched over bands.

Refinement is eigenvector following with the exact Hessian ``H = Q diag(e) Q^T``
(eigenvalues ascending): uphill along the lowest mode, downhill along the others::

    s = -Q diag(c) Q^T g,   c_0 = -1 / (|e_0| + mu),   c_i = 1 / (|e_i| + mu)  (i > 0)

accepted when it lowers the gradient norm (then ``mu /= 3``, else ``mu *= 4``): near
an index-1 saddle this is Newton's step and the gradient norm falls quadratically, to
``1e-10``; away from one it still walks up the softest direction and down all others
(Cerjan & Miller 1981; Wales, *Energy Landscapes*, 2003). A saddle is *certified* when
its gradient norm is at most the tolerance and its exact Hessian has exactly one
negative eigenvalue (:func:`nnkit.landscape.critical.classify`).

From a certified saddle the two descents start a small step along ``+-`` the negative
eigenvector and go downhill (:func:`nnkit.landscape.descent.descend`, then polishing);
:func:`match` says which known minimum each end is, or that it is a new one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from . import eigensteps, symmetry
from .critical import classify
from .descent import descend
from .polishing import polish

#: damping of the first step and its floor, relative to the largest |eigenvalue|
_MU0, _MU_FLOOR = 1e-3, 1e-14


@dataclass
class Saddles:
    """Per band: ``theta (B, P)``, ``loss (B,)``, ``grad_norm (B,)``, ``steps (B,)``,
    ``eigenvalues (B, P)`` ascending, ``index (B,)``, ``certified (B,)`` (index 1 at
    the gradient tolerance) and ``mode (B, P)``, the unit eigenvector of the negative
    eigenvalue."""

    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    steps: np.ndarray
    eigenvalues: np.ndarray
    index: np.ndarray
    certified: np.ndarray
    mode: np.ndarray

    def take(self, rows) -> Saddles:
        """The saddles of ``rows`` only."""
        return Saddles(*(getattr(self, f.name)[rows] for f in dataclasses.fields(self)))


def _coefficients(e, mu):
    c = 1.0 / (np.abs(e) + mu)
    c[:, 0] = -c[:, 0]
    return c


def _sliced(work, rows: int | None, *arrays):
    """``work(*parts)`` on consecutive slices of ``rows`` rows of ``arrays`` (all at
    once for None), the dataclass results joined field by field: the Hessians of one
    slice at a time are what must fit in memory."""
    n = len(arrays[0])
    if not rows or n <= rows:
        return work(*arrays)
    parts = [work(*(a[start : start + rows] for a in arrays)) for start in range(0, n, rows)]
    return type(parts[0])(*(np.concatenate([getattr(p, f.name) for p in parts])
                            for f in dataclasses.fields(parts[0])))  # fmt: skip


def refine(objective, theta, grad_tol: float = 1e-10, max_steps: int = 100, eig_tol: float = 1e-7,
           rows: int | None = None) -> Saddles:  # fmt: skip
    """Refine every row of ``theta (B, P)`` (host float64; climbing images) to an
    index-1 saddle by eigenvector following, then certify it by its exact spectrum;
    ``rows`` saddles at a time (default: all)."""
    return _sliced(lambda t: _refine(objective, t, grad_tol, max_steps, eig_tol), rows, np.asarray(theta, float))


def _refine(objective, theta, grad_tol, max_steps, eig_tol) -> Saddles:
    theta, loss, norm, steps = eigensteps.iterate(
        objective, theta, grad_tol, max_steps,
        coefficients=_coefficients,
        accept=lambda loss, norm, t_loss, t_norm: t_norm < norm,
        first=lambda e: _MU0 * (np.max(np.abs(e), axis=1) + 1e-300),
        floor=lambda e: _MU_FLOOR * (np.max(np.abs(e), axis=1) + 1e-300),
    )  # fmt: skip
    e, Q = eigensteps.eigh(objective.hessian(theta))
    kinds = classify(np.nan_to_num(e, nan=0.0), norm, grad_tol, eig_tol)
    finite = np.isfinite(e).all(axis=1)
    index = np.where(finite, kinds["index"], -1)
    certified = finite & (norm <= grad_tol) & (index == 1)
    return Saddles(theta, loss, norm, steps, e, index, certified, Q[:, :, 0])


@dataclass
class Sides:
    """The two descents from each saddle: ``theta (B, 2, P)``, ``loss (B, 2)``,
    ``grad_norm (B, 2)``, ``kind (B, 2)`` (as :func:`~nnkit.landscape.critical.classify`
    says) and ``eigenvalues (B, 2, P)``."""

    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    kind: np.ndarray
    eigenvalues: np.ndarray


def sides(objective, saddles: Saddles, step: float = 1e-2, grad_tol: float = 1e-10, descend_tol: float = 1e-8,
          max_steps: int = 300, eig_tol: float = 1e-7, rows: int | None = None) -> Sides:  # fmt: skip
    """Descend from every saddle on both sides: from ``theta +- h mode`` with
    ``h = step * max(1, |theta|)`` shrunk until the loss falls on that side, by damped
    Newton descent to ``descend_tol`` then polishing to ``grad_tol``; each end
    classified by its exact spectrum; ``rows`` saddles at a time (default: all)."""
    picks = np.arange(len(saddles.theta))
    return _sliced(lambda r: _sides(objective, saddles.take(r), step, grad_tol, descend_tol, max_steps, eig_tol),
                   None if rows is None else max(1, rows // 2), picks)  # fmt: skip


def _sides(objective, saddles, step, grad_tol, descend_tol, max_steps, eig_tol) -> Sides:
    B, P = saddles.theta.shape
    start = np.empty((B, 2, P))
    h = step * np.maximum(1.0, np.linalg.norm(saddles.theta, axis=1))
    for s, sign in enumerate((1.0, -1.0)):
        x = saddles.theta + sign * h[:, None] * saddles.mode
        for halvings in range(1, 21):  # a step so long it climbs out the other side is halved
            worse = ~(objective.value(x) < saddles.loss)
            if not worse.any():
                break
            x[worse] = saddles.theta[worse] + sign * (h[worse] * 0.5**halvings)[:, None] * saddles.mode[worse]
        else:  # still not below the saddle: start at the saddle itself (descent then stays put)
            worse = ~(objective.value(x) < saddles.loss)
            x[worse] = saddles.theta[worse]
        start[:, s] = x
    flat = start.reshape(2 * B, P)
    went = descend(objective, flat, descend_tol, max_steps)
    done = polish(objective, went.theta, grad_tol, 50)
    e = eigensteps.eigh(objective.hessian(done.theta), vectors=False)
    kinds = classify(np.nan_to_num(e, nan=0.0), np.where(np.isfinite(e).all(axis=1), done.grad_norm, np.inf),
                     grad_tol, eig_tol)  # fmt: skip
    return Sides(done.theta.reshape(B, 2, P), done.loss.reshape(B, 2), done.grad_norm.reshape(B, 2),
                 kinds["kind"].reshape(B, 2), e.reshape(B, 2, P))  # fmt: skip


def match(model, known, known_loss, theta, loss, loss_tol: float = 1e-8, distance_tol: float = 1e-4,
          known_flat=None, flat=None) -> np.ndarray:  # fmt: skip
    """Which of the minima ``known (N, P)`` (losses ``known_loss (N,)``) each row of
    ``theta (R, P)`` is: ``(R,)`` row indices into ``known``, -1 for none.

    With the analysis' tolerances, but by alignment rather than canonical forms (the
    analysis compares :func:`~nnkit.landscape.symmetry.canonical` forms, which jump where
    two units nearly tie; alignment does not): the same loss within ``loss_tol``
    (relative to ``max(1, |loss|)``) and, after aligning the known minimum's symmetric
    copy onto the point, a distance at most ``distance_tol`` relative to ``max(1,
    |theta|)``; two degenerate minima (``known_flat``, ``flat``) need only the same loss."""
    known, theta = np.asarray(known, float), np.asarray(theta, float)
    N, R = known.shape[0], theta.shape[0]
    known_flat = np.zeros(N, bool) if known_flat is None else np.asarray(known_flat, bool)
    flat = np.zeros(R, bool) if flat is None else np.asarray(flat, bool)
    out = np.full(R, -1, dtype=np.int64)
    for r in range(R):
        same = np.abs(known_loss - loss[r]) <= loss_tol * np.maximum(1.0, np.abs(loss[r]))
        cand = np.flatnonzero(same)
        if cand.size == 0:
            continue
        if flat[r] and known_flat[cand].any():
            out[r] = cand[known_flat[cand]][0]
            continue
        aligned = symmetry.align(model, theta[r], known[cand])
        d = np.linalg.norm(aligned - theta[r], axis=1)
        best = int(np.argmin(d))
        if d[best] <= distance_tol * max(1.0, float(np.linalg.norm(theta[r]))):
            out[r] = cand[best]
    return out
