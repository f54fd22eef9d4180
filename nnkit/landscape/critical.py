"""Certifying critical points: polish a final point of training to a gradient norm of
about 1e-10 (:mod:`.polishing`), then tell from the exact Hessian's spectrum what it is:
a strict minimum, a degenerate minimum (zero eigenvalues), a saddle, or not converged.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pandas as pd

from .descent import descend
from .eigensteps import eigh
from .polishing import polish


def spectrum(H):
    """Eigenvalues ``(R, P)``, ascending, of symmetric ``H (R, P, P)`` (NumPy, on the
    host); NaN rows where ``H`` is not finite or LAPACK does not converge."""
    H = H.get() if hasattr(H, "get") and not isinstance(H, np.ndarray) else H
    return eigh(np.asarray(H), vectors=False)


def classify(eigs, grad_norm, grad_tol, rel_tol=1e-7):
    """What each critical point is, from its Hessian spectrum ``eigs (R, P)``.

    Returns arrays of length R: ``eig_min``, ``eig_max``, ``index`` (eigenvalues
    ``< -tol``), ``nullity`` (``|eig| <= tol``), ``tol`` and ``kind``: "not converged"
    where ``grad_norm > grad_tol``, else "saddle" (index > 0), "degenerate minimum"
    (index 0, nullity > 0) or "strict minimum".

    ``tol = rel_tol * max|eig|`` per init is relative because the rounding error of
    computed eigenvalues is about ``machine eps * ||H||``, and because the Hessian scales
    with the loss convention (``mean`` vs ``sum``, ``half``) and the data: an absolute
    cutoff would call the same point degenerate under one convention and not another.
    """
    eigs = np.asarray(eigs)
    grad_norm = np.asarray(grad_norm)
    tol = rel_tol * np.max(np.abs(eigs), axis=-1)
    index = np.sum(eigs < -tol[:, None], axis=-1)
    nullity = np.sum(np.abs(eigs) <= tol[:, None], axis=-1)
    kind = np.where(
        index > 0, "saddle", np.where(nullity > 0, "degenerate minimum", "strict minimum")
    )
    kind = np.where(grad_norm > grad_tol, "not converged", kind)
    return {
        "eig_min": eigs.min(axis=-1),
        "eig_max": eigs.max(axis=-1),
        "index": index,
        "nullity": nullity,
        "tol": tol,
        "kind": kind,
    }


#: why a point is "not converged", in the column ``why_not`` of runs.parquet
WHY_NOT = {
    "far": "the gradient norm stayed above analysis.grad_tol",
    "moved": "polishing moved it more than analysis.polish_radius",
    "finite": "its loss, parameters or Hessian are not finite",
}


def certify(objective, theta, cfg, slice_rows=None, on_rows=None, seconds=None):
    """Descend (if ``cfg.descend``), polish (if ``cfg.polish``) and classify every row
    of ``theta (R, P)`` (host, float64) as a critical point of ``objective`` (a
    :class:`nnkit.objective.Objective` on the host); ``cfg`` is an
    :class:`~nnkit.landscape.minima.AnalysisConfig`. ``on_rows(k)`` is called as each
    slice of ``k`` rows is done; ``seconds`` (a dict) gains the time of each stage.

    Returns ``(theta (R, P), per-init DataFrame, eigenvalues (R, P))``; the frame has
    ``polished_loss``, ``polished_grad_norm``, ``descend_steps``, ``descend_move``
    (how far descent took the point, relative to ``max(1, |theta|)``),
    ``polish_steps``, ``polish_move`` (the distance polishing then moved it),
    ``kind``, ``index``, ``nullity``, ``eig_min``, ``eig_max`` and ``why_not`` (a key
    of :data:`WHY_NOT` for a point that is "not converged", else empty). A point that
    polishing moved by more than ``cfg.polish_radius`` is "not converged": the
    critical point it reached is not the one training (or descent) was approaching.
    """
    seconds = {} if seconds is None else seconds
    start = np.asarray(theta, dtype=np.float64)
    step = slice_rows or max(1, start.shape[0])
    if start.shape[0] > step:  # a slice of inits at a time keeps the Hessians in memory
        parts = [certify(objective, start[a : a + step], cfg, None, on_rows, seconds)
                 for a in range(0, start.shape[0], step)]  # fmt: skip
        return (np.concatenate([p[0] for p in parts]),
                pd.concat([p[1] for p in parts], ignore_index=True),
                np.concatenate([p[2] for p in parts]))  # fmt: skip
    R = start.shape[0]
    clock = _Clock(seconds)
    descended, descend_steps = start, np.zeros(R, dtype=np.int64)
    if cfg.descend and cfg.descend_steps > 0:
        with clock("descend"):
            res = descend(objective, start, cfg.descend_tol, cfg.descend_steps)
        descended, descend_steps = res.theta, res.steps
    with clock("polish"):
        if cfg.polish and cfg.polish_steps > 0:
            res = polish(objective, descended, cfg.grad_tol, cfg.polish_steps)
            theta, loss, norm, steps = res.theta, res.loss, res.grad_norm, res.steps
        else:
            theta = descended
            loss, grad = objective.value_and_grad(theta)
            norm, steps = np.linalg.norm(grad, axis=1), np.zeros(R, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(1.0, np.linalg.norm(start, axis=1))
        went = np.linalg.norm(descended - start, axis=1) / scale
        moved = np.linalg.norm(theta - descended, axis=1) / scale
    finite = np.isfinite(theta).all(axis=1) & np.isfinite(loss)
    eigs = np.full(theta.shape, np.nan)
    with clock("spectrum"):
        if finite.any():
            eigs[finite] = spectrum(objective.hessian(theta[finite]))
    finite &= np.isfinite(eigs).all(axis=1)  # a Hessian that is not finite certifies nothing
    # a critical point far from where training stopped is not where training went
    certified = finite & (moved <= cfg.polish_radius)
    kinds = classify(eigs, np.where(certified, norm, np.inf), cfg.grad_tol, cfg.eig_tol)
    why = np.where(~finite, "finite", np.where(~certified, "moved", np.where(norm > cfg.grad_tol, "far", "")))
    frame = pd.DataFrame({
        "polished_loss": loss, "polished_grad_norm": norm, "descend_steps": descend_steps,
        "descend_move": went, "polish_steps": steps, "polish_move": moved,
        "kind": kinds["kind"], "index": kinds["index"], "nullity": kinds["nullity"],
        "eig_min": kinds["eig_min"], "eig_max": kinds["eig_max"], "why_not": why,
    })  # fmt: skip
    if on_rows is not None:
        on_rows(R)
    return theta, frame, eigs


class _Clock:
    """Adds the wall time of each ``with clock(stage):`` block to ``seconds[stage]``."""

    def __init__(self, seconds: dict):
        self.seconds = seconds

    @contextlib.contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
