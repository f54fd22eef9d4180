"""Interpolation barriers between minima: the loss along the straight line from one
minimum to another, after aligning the second onto the first modulo the network's
symmetries (:func:`nnkit.landscape.symmetry.align`), batched over pairs.

For a pair ``(a, b)`` with ``b`` aligned, the line is ``theta(t) = (1 - t) a + t b`` at
``points`` evenly spaced ``t`` in ``[0, 1]``; every point of every pair is one row of
one batch of the objective. The barrier heights::

    barrier        = max_t E(t) - max(E(0), E(1))
    barrier_blend  = max_t [E(t) - ((1 - t) E(0) + t E(1))]

(both 0 for a pair joined by a straight valley: linear mode connectivity). Which pairs
(:func:`pairs`): each minimum with its nearest neighbours in aligned distance, or all
pairs; at most a given number, nearest first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import batches, symmetry


def aligned_distances(model, theta) -> np.ndarray:
    """``D (N, N)``: ``D[i, j] = |align(theta_j onto theta_i) - theta_i|`` for the rows of
    ``theta (N, P)``; symmetrised by the smaller of the two directions (the alignment is
    a heuristic, so the two can differ slightly)."""
    theta = np.asarray(theta, dtype=np.float64)
    N = theta.shape[0]
    D = np.zeros((N, N))
    for i in range(N):
        D[i] = np.linalg.norm(symmetry.align(model, theta[i], theta) - theta[i], axis=1)
    D = np.minimum(D, D.T)
    np.fill_diagonal(D, 0.0)
    return D


def pairs(model, theta, how: str = "nearest", neighbours: int = 2, limit: int = 100, distances=None) -> np.ndarray:
    """Pairs ``(M, 2)`` of row indices ``i < j`` of the minima ``theta (N, P)``, nearest
    first (aligned distance, :func:`aligned_distances`), at most ``limit``.

    ``how = "nearest"``: each minimum with its ``neighbours`` nearest others (a pair
    counted once); ``"all"``: every pair."""
    if how not in ("nearest", "all"):
        raise ValueError(f"how = {how!r}: expected 'nearest' or 'all'")
    N = np.shape(theta)[0]
    if N < 2 or limit < 1:
        return np.zeros((0, 2), dtype=np.int64)
    D = aligned_distances(model, theta) if distances is None else np.asarray(distances)
    i, j = np.triu_indices(N, 1)
    if how == "nearest":
        order = np.argsort(D + np.diag(np.full(N, np.inf)), axis=1, kind="stable")[:, : max(0, neighbours)]
        near = np.zeros((N, N), dtype=bool)
        near[np.repeat(np.arange(N), order.shape[1]), order.ravel()] = True
        keep = (near | near.T)[i, j]
        i, j = i[keep], j[keep]
    order = np.lexsort((j, i, D[i, j]))[:limit]
    return np.stack([i[order], j[order]], axis=1).astype(np.int64)


def align_pairs(model, theta, pair) -> tuple[np.ndarray, np.ndarray]:
    """``(a (M, P), b (M, P))``: the first minimum of each pair and the second aligned
    onto it."""
    theta = np.asarray(theta, dtype=np.float64)
    pair = np.asarray(pair, dtype=np.int64).reshape(-1, 2)
    a = theta[pair[:, 0]]
    b = np.empty_like(a)
    for i in np.unique(pair[:, 0]):
        rows = np.flatnonzero(pair[:, 0] == i)
        b[rows] = symmetry.align(model, theta[i], theta[pair[rows, 1]])
    return a, b


def line(objective, a, b, points: int = 33, rows: int = batches.ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The loss along the segments from ``a (M, P)`` to ``b (M, P)``: ``(t (points,),
    losses (M, points))``, every point of every segment in one batch (``rows`` at a
    time)."""
    t = np.linspace(0.0, 1.0, points)
    path = (1.0 - t)[None, :, None] * a[:, None, :] + t[None, :, None] * b[:, None, :]
    with np.errstate(all="ignore"):
        losses = batches.values(objective, path.reshape(-1, a.shape[1]), rows)
    return t, losses.reshape(a.shape[0], points)


def heights(t, losses) -> dict:
    """Barrier heights of profiles ``losses (M, T)`` at ``t (T,)``: ``barrier``,
    ``barrier_blend``, ``t_max`` and ``loss_max``, each ``(M,)``."""
    ends = np.maximum(losses[:, 0], losses[:, -1])
    blend = (1.0 - t)[None, :] * losses[:, :1] + t[None, :] * losses[:, -1:]
    top = np.argmax(np.where(np.isfinite(losses), losses, np.inf), axis=1)
    loss_max = losses[np.arange(losses.shape[0]), top]
    return {
        "barrier": loss_max - ends,
        "barrier_blend": np.max(losses - blend, axis=1),
        "t_max": t[top],
        "loss_max": loss_max,
    }


def barriers(objective, theta, ids, pair, points: int = 33) -> pd.DataFrame:
    """The interpolation barrier of every pair ``(M, 2)`` of rows of the minima ``theta
    (N, P)`` (whose minimum ids are ``ids (N,)``): one row per pair with
    ``minimum_a``, ``minimum_b``, ``loss_a``, ``loss_b``, ``distance`` (aligned),
    ``barrier``, ``barrier_blend``, ``t_max``, ``loss_max`` and the ``profile`` (the
    ``points`` losses along the line)."""
    pair = np.asarray(pair, dtype=np.int64).reshape(-1, 2)
    ids = np.asarray(ids)
    a, b = align_pairs(objective.model, theta, pair)
    t, losses = line(objective, a, b, points)
    frame = pd.DataFrame({
        "minimum_a": ids[pair[:, 0]], "minimum_b": ids[pair[:, 1]],
        "loss_a": losses[:, 0], "loss_b": losses[:, -1],
        "distance": np.linalg.norm(b - a, axis=1),
        **heights(t, losses),
    })  # fmt: skip
    frame["profile"] = list(losses)
    return frame
