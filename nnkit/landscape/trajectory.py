"""Where training went: the path of a run's parameters in the plane of its two principal
directions, over the loss evaluated on that plane.

A path ``theta_0, ..., theta_{T-1}`` in ``R^P`` is centred (on its final point, the
minimum it reached, by default, as Li, Xu, Taylor, Studer and Goldstein 2018,
"Visualizing the loss landscape of neural nets", do; or on its mean) and the centred
points ``X (T, P)`` are decomposed by a thin SVD, ``X = U S V^T``: the first two rows of
``V^T`` are the principal directions, ``s_k^2 / sum(s^2)`` the share of the squared
distance to the centre that each explains (the share of variance, for the mean as
centre), and ``X V[:, :2]`` the path's coordinates in the plane. Random directions
almost never see a path (in high dimensions they are nearly orthogonal to it); the
principal plane holds most of it, often over 90% in the first direction alone.

The loss on the plane (:func:`plane_losses`) is evaluated at every grid point,
``E(centre + a c1 + b c2)``, as one batch per ``rows`` points (:func:`nnkit.landscape.
slices.evaluate`): nothing is interpolated. The path itself leaves the plane where the
shares sum to less than 1, so its own losses and those of its projections differ there.

Shapes: one path ``(T, P)``, ``R`` paths ``(R, T, P)``, host NumPy float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import batches
from .slices import DEFAULT_ROWS, _new_axes, _sign_fixed, contour, evaluate


class PathPCA(NamedTuple):
    """The principal plane of a path: ``centre (P,)``, ``components (2, P)`` (orthonormal
    rows), ``explained (2,)`` (share of the squared distance to the centre along each)
    and the path's ``coords (T, 2)`` (``(R, T, 2)`` for ``R`` paths) in the plane."""

    centre: np.ndarray
    components: np.ndarray
    explained: np.ndarray
    coords: np.ndarray


def pca(path, centre="final") -> PathPCA:
    """The two principal directions of ``path (T, P)``, or jointly of ``R`` paths
    ``(R, T, P)``.

    ``centre``: ``"final"`` (default) the path's last point, the minimum it reached
    (for ``R`` paths, the mean of their last points: the common minimum when all end
    there, after aligning them modulo symmetry with :func:`nnkit.landscape.symmetry.
    align`); ``"mean"`` the mean of all points; or a point ``(P,)`` of the caller's.
    For ``R`` paths all ``R * T`` points enter one SVD, so every path is drawn in the
    same plane.

    Each component's sign is fixed so that its largest-magnitude entry is positive.
    When the points span fewer than two directions the missing components (and their
    shares) are 0; a path that never leaves its centre has shares ``(0, 0)``.
    """
    pts = np.asarray(path, dtype=np.float64)
    if pts.ndim not in (2, 3) or pts.shape[-2] < 1:
        raise ValueError(f"path must have shape (T, P) or (R, T, P), got {pts.shape}")
    P = pts.shape[-1]
    if isinstance(centre, str):
        if centre == "final":
            c = pts[..., -1, :].reshape(-1, P).mean(axis=0)
        elif centre == "mean":
            c = pts.reshape(-1, P).mean(axis=0)
        else:
            raise ValueError(f'centre must be "final", "mean" or a point (P,), got {centre!r}')
    else:
        c = np.asarray(centre, dtype=np.float64)
        if c.shape != (P,):
            raise ValueError(f"centre must have shape ({P},), got {c.shape}")
    X = pts.reshape(-1, P) - c
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    components = np.zeros((2, P))
    shares = np.zeros(2)
    k = min(2, s.size)
    components[:k] = _sign_fixed(Vt[:k])
    total = float(np.sum(s**2))
    if total > 0:
        shares[:k] = s[:k] ** 2 / total
    components[shares == 0] = 0.0  # a direction of no extent is no direction
    coords = (X @ components.T).reshape(pts.shape[:-1] + (2,))
    return PathPCA(c, components, shares, coords)


def losses_at(objective, centre, components, coords, rows: int = DEFAULT_ROWS):
    """``E(centre + a c1 + b c2)`` at each ``(a, b)`` of ``coords (..., 2)``: losses
    ``coords.shape[:-1]`` (``(T,)`` for one path's coordinates); ``centre (P,)``,
    ``components (2, P)``."""
    return evaluate(objective, centre, components, coords, rows)


class PlaneLosses(NamedTuple):
    """The loss on a principal plane: grid ``alpha (A,)`` by ``beta (B,)``, ``losses
    (B, A)`` (entry ``[j, i]`` at ``(alpha_i, beta_j)``) and ``path_losses`` (``(T,)``
    or ``(R, T)``) for the path drawn over it."""

    alpha: np.ndarray
    beta: np.ndarray
    losses: np.ndarray
    path_losses: np.ndarray


def plane_grid(coords, size: int = 41, margin: float = 0.2):
    """A grid ``(alpha (size,), beta (size,))`` that covers ``coords (..., 2)`` with a
    margin of ``margin`` times each axis's extent on either side (at least 1e-3 times
    the larger extent, or 1 when the coordinates are all the same point)."""
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    low, high = c.min(axis=0), c.max(axis=0)
    extent = high - low
    floor = 1e-3 * extent.max() if extent.max() > 0 else 1.0
    pad = np.maximum(margin * extent, floor)
    return np.linspace(low[0] - pad[0], high[0] + pad[0], size), np.linspace(low[1] - pad[1], high[1] + pad[1], size)


def plane_losses(objective, centre, components, coords, *, path=None, size: int = 41, margin: float = 0.2,
                 alpha=None, beta=None, rows: int = DEFAULT_ROWS) -> PlaneLosses:  # fmt: skip
    """The loss on the plane ``centre + a c1 + b c2`` (``centre (P,)``, ``components
    (2, P)``, as :func:`pca` gives them) on a grid covering the path's ``coords (T, 2)``
    or ``(R, T, 2)`` with a margin (:func:`plane_grid`; or the caller's ``alpha (A,)``
    and ``beta (B,)``), every grid point a real evaluation, ``rows`` at a time.

    ``path_losses``: with ``path`` (the points ``(T, P)`` or ``(R, T, P)`` themselves)
    the losses the path really had, ``objective.value(path)``; without, the losses at
    its projections onto the plane (:func:`losses_at`). The two agree where the path
    lies in the plane (shares summing to 1).
    """
    if alpha is None or beta is None:
        grid_a, grid_b = plane_grid(coords, size, margin)
        alpha = grid_a if alpha is None else alpha
        beta = grid_b if beta is None else beta
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    A, B = np.meshgrid(alpha, beta)
    losses = evaluate(objective, centre, components, np.stack([A, B], axis=-1), rows)
    if path is None:
        path_losses = losses_at(objective, centre, components, coords, rows)
    else:
        pts = np.asarray(path, dtype=np.float64)
        path_losses = batches.values(objective, pts.reshape(-1, pts.shape[-1]), rows).reshape(pts.shape[:-1])
    return PlaneLosses(alpha, beta, losses, path_losses)


def figure(alpha, beta, losses, coords, explained=None, ax=None, log=True, title=None):
    """The loss on the principal plane (:func:`plane_losses`) as filled contours
    (:func:`nnkit.landscape.slices.contour`), with the path's ``coords (T, 2)``, or
    several paths' ``(R, T, 2)``, drawn over it: a line from a circle (the start) to a
    star (the end). ``explained (2,)`` (from :func:`pca`) goes into the axis labels,
    ``PC1 (93.1%)``. Returns the Figure; with ``ax`` draws into it and returns
    ``ax.figure``."""
    labels = ["PC1", "PC2"]
    if explained is not None:
        labels = [f"{name} ({100 * float(share):.1f}%)" for name, share in zip(labels, explained)]
    ax = _new_axes(ax)
    fig = contour(alpha, beta, losses, ax=ax, log=log, xlabel=labels[0], ylabel=labels[1], title=title)
    paths = np.asarray(coords, dtype=np.float64)
    paths = paths[None] if paths.ndim == 2 else paths
    for p in paths:
        ax.plot(p[:, 0], p[:, 1], color="tab:red", lw=1.0, marker=".", ms=2.5, zorder=3)
        ax.plot(p[0, 0], p[0, 1], ls="none", marker="o", ms=5, mfc="white", mec="tab:red", zorder=4)
        ax.plot(p[-1, 0], p[-1, 1], ls="none", marker="*", ms=9, mfc="tab:red", mec="black", mew=0.6, zorder=4)
    ax.set_xlim(float(np.min(alpha)), float(np.max(alpha)))
    ax.set_ylim(float(np.min(beta)), float(np.max(beta)))
    return fig
