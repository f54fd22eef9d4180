"""Slices of the loss landscape: the objective on a line or a plane through parameter
space, ``E(origin + a d1 + b d2)`` on a grid of ``(a, b)``, evaluated as one batch.

Which directions to slice along decides what the picture means:

* random directions, *filter normalised* (Li, Xu, Taylor, Studer and Goldstein 2018,
  "Visualizing the loss landscape of neural nets"): a Gaussian direction whose part for
  each unit is rescaled to the norm of that unit's parameters, so that a step of 1 moves
  every unit by as much as it is long, and the scale symmetries of ReLU networks (a unit's
  incoming weights times ``c``, its outgoing divided by ``c``) do not distort the picture;
* eigenvectors of the exact Hessian at a critical point (:func:`hessian_directions`):
  the sharpest or flattest directions of a minimum, the descending ones of a saddle;
* the line through two minima, or the plane through three (:func:`through`), as in
  Garipov, Izmailov, Podoprikhin, Vetrov and Wilson 2018, "Loss surfaces, mode
  connectivity, and fast ensembling of DNNs": the barrier between them, if any, lies on
  the slice.

A 51 x 51 slice is ``theta`` with 2,601 rows for :meth:`Objective.value
<nnkit.objective.Objective.value>`; it is evaluated ``rows`` at a time, so that memory
stays bounded for any grid. :func:`contour` and :func:`profile` draw the result with
matplotlib's object API (never pyplot), as :mod:`nnkit.report.figures` does;
:func:`slice_frame` makes the tidy table to write to Parquet and :func:`slice_grid`
reads it back.

Shapes: ``P`` parameters per network, ``R`` networks; ``theta (P,)`` is one network,
``(R, P)`` a batch, host NumPy float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from . import batches
from .eigensteps import eigh

#: rows of ``theta`` evaluated at a time by default
DEFAULT_ROWS = 4096
#: log-spaced contour levels when the finite positive losses span more than this factor
LOG_SPAN = 100.0


# -- directions ----------------------------------------------------------------------


def units(layout):
    """The units of a :class:`~nnkit.core.layout.Layout`, as filter normalisation sees
    them: a list of ``(weights, bias)`` block names (``bias`` None where absent) and the
    axis of the weight block that runs over the units.

    A *unit* is one hidden neuron ``j`` of hidden layer ``l``: its incoming weights
    ``W_l[:, j]`` together with its bias ``b_l[j]`` where the layer has biases (the
    *filter* of Li et al.); entry ``("W{l}", "b{l}" or None, 2)``. The output layer,
    when it is trained, is one more unit: all of ``W_out`` together with ``b_out`` where
    present; entry ``("W_out", "b_out" or None, None)``. A fixed output layer has no
    parameters and is no unit.
    """
    out = []
    for layer in range(1, layout.depth + 1):
        out.append((f"W{layer}", f"b{layer}" if layout.bias[layer - 1] else None, 2))
    if layout.output_trained:
        out.append(("W_out", "b_out" if layout.output_bias else None, None))
    return out


def _unit_norms(layout, t, weights, bias, axis):
    """Per unit, the norm of its incoming weights and bias in ``t (R, P)``: ``(R, k)``
    for a hidden layer (``axis`` 2), ``(R, 1)`` for the output layer (``axis`` None)."""
    W = layout.view(t, weights)
    if axis is None:
        sq = np.sum(W**2, axis=1, keepdims=True)
        if bias is not None:
            sq = sq + layout.view(t, bias)[:, None] ** 2
    else:
        sq = np.sum(W**2, axis=1)
        if bias is not None:
            sq = sq + layout.view(t, bias) ** 2
    return np.sqrt(sq)


def filter_normalised(model, theta, rng):
    """A random filter-normalised direction at each row of ``theta`` (Li et al. 2018):
    ``(P,)`` for ``theta (P,)``, ``(R, P)`` for ``theta (R, P)``.

    A standard Gaussian direction ``d`` (drawn from ``rng``, a
    ``numpy.random.Generator``, as one ``(R, P)`` array) has the part of each unit (see
    :func:`units`: one hidden neuron's incoming weights and bias; the whole trained
    output layer, weights and bias, as one more) rescaled to the Euclidean norm of that
    unit's part of ``theta``::

        d_u <- d_u * |theta_u| / |d_u|

    so that every unit's block of the direction has exactly the norm of the unit. A
    unit of ``theta`` that is all zero (a dead unit) gets a zero block. Every entry of
    ``theta`` belongs to exactly one unit, so no parameter is left unnormalised.
    """
    t = np.asarray(theta, dtype=np.float64)
    single = t.ndim == 1
    t = np.atleast_2d(t)
    layout = model.layout
    if t.ndim != 2 or t.shape[1] != layout.size:
        raise ValueError(f"theta must have shape (P,) or (R, P) with P = {layout.size}, got {np.shape(theta)}")
    d = rng.standard_normal(t.shape)
    for weights, bias, axis in units(layout):
        target = _unit_norms(layout, t, weights, bias, axis)
        have = _unit_norms(layout, d, weights, bias, axis)
        factor = np.divide(target, have, out=np.zeros_like(target), where=have > 0)
        W = layout.view(d, weights)
        if axis is None:
            W *= factor
            if bias is not None:
                layout.view(d, bias)[...] *= factor[:, 0]
        else:
            W *= factor[:, None, :]
            if bias is not None:
                layout.view(d, bias)[...] *= factor
    return d[0] if single else d


def _sign_fixed(V):
    """Each row of ``V (..., P)`` times the sign that makes its largest-magnitude entry
    positive (eigenvectors and principal axes are only defined up to sign)."""
    big = np.take_along_axis(V, np.abs(V).argmax(axis=-1)[..., None], axis=-1)
    return V * np.where(big < 0, -1.0, 1.0)


def hessian_directions(objective, theta, which=(0, 1), values=False):
    """Unit eigenvectors of the exact Hessian of ``objective`` at ``theta``.

    ``which`` holds indices into the eigenvalues in ascending order: ``0`` the smallest
    (the most negative at a saddle, the flattest at a minimum), ``-1`` the largest (the
    sharpest), ``(-1, -2)`` the top two; or ``"top"`` for ``(-1, -2)`` and ``"bottom"``
    for ``(0, 1)``. Each vector's sign is fixed so that its largest-magnitude entry is
    positive.

    ``theta (P,)`` gives ``(K, P)`` for ``K = len(which)``; ``theta (R, P)`` gives
    ``(R, K, P)``. With ``values=True`` returns ``(vectors, eigenvalues)``, the
    eigenvalues ``(K,)`` or ``(R, K)``. Rows whose Hessian is not finite get NaN.
    """
    if isinstance(which, str):
        try:
            which = {"top": (-1, -2), "bottom": (0, 1)}[which]
        except KeyError:
            raise ValueError(f'which must be indices, "top" or "bottom", got {which!r}') from None
    which = np.atleast_1d(np.asarray(which, dtype=np.int64))
    t = np.asarray(theta, dtype=np.float64)
    single = t.ndim == 1
    t = np.atleast_2d(t)
    P = t.shape[1]
    if np.any(which >= P) or np.any(which < -P):
        raise ValueError(f"eigenvalue indices must lie in [-{P}, {P}), got {which.tolist()}")
    backend = objective.backend
    H = backend.to_numpy(objective.hessian(backend.asarray(t, np.float64)))
    e, Q = eigh(H)
    vectors = _sign_fixed(np.swapaxes(Q[:, :, which], 1, 2))  # eigenvectors are columns of Q
    chosen = e[:, which]
    if single:
        vectors, chosen = vectors[0], chosen[0]
    return (vectors, chosen) if values else vectors


class Plane(NamedTuple):
    """A line or plane through given points: ``origin (P,)``, ``directions (K, P)``
    (``K`` = 1 for a line, 2 for a plane) and the points' coordinates ``coords (N, K)``
    in it (``point_i = origin + coords[i] @ directions``)."""

    origin: np.ndarray
    directions: np.ndarray
    coords: np.ndarray


def through(points) -> Plane:
    """The line through 2 points or the plane through 3, ``points (2 or 3, P)``.

    The line through ``a, b`` has origin ``a`` and direction ``b - a``: ``a`` sits at
    ``t = 0`` and ``b`` at ``t = 1``. The plane through ``a, b, c`` has origin ``a`` and
    directions ``b - a`` and ``c - a``, left as they are (not orthogonalised or
    normalised), so the points sit at ``(0, 0)``, ``(1, 0)`` and ``(0, 1)``; the axes of
    a figure of it are then oblique in parameter space.

    Minima are only worth joining modulo the network's symmetries: a permuted copy of
    ``b`` is the same minimum, but the line to it runs through quite other networks.
    Align them first, e.g. ``b = nnkit.landscape.symmetry.align(model, a, b)[0]``
    (likewise ``c``).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] not in (2, 3):
        raise ValueError(f"through needs 2 or 3 points, shape (2 or 3, P), got {np.shape(points)}")
    origin = pts[0].copy()
    directions = pts[1:] - origin
    if not np.all(np.linalg.norm(directions, axis=1) > 0):
        raise ValueError("the points must differ from the first")
    coords = np.vstack([np.zeros(len(directions)), np.eye(len(directions))])
    return Plane(origin, directions, coords)


# -- evaluation ----------------------------------------------------------------------


def evaluate(objective, origin, directions, coords, rows: int = DEFAULT_ROWS):
    """The objective at ``origin + sum_k coords[..., k] * directions[k]``: ``origin (P,)``,
    ``directions (K, P)``, ``coords (..., K)`` -> losses ``coords.shape[:-1]``.

    The points are built and evaluated ``rows`` at a time as one batch each (float64,
    moved to the objective's backend and back), so memory stays at ``rows x P``
    whatever the grid. Each point is summed in the same order as the direct
    ``origin + a * d1 + b * d2``, so it matches a direct evaluation bit for bit.
    """
    origin = np.asarray(origin, dtype=np.float64)
    directions = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    coords = np.asarray(coords, dtype=np.float64)
    if origin.ndim != 1 or directions.shape[1] != origin.shape[0]:
        raise ValueError(f"origin must be (P,) and directions (K, P), got {origin.shape} and {directions.shape}")
    if coords.shape[-1] != directions.shape[0]:
        raise ValueError(f"coords must end in K = {directions.shape[0]}, got shape {coords.shape}")
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    flat = coords.reshape(-1, coords.shape[-1])
    out = np.empty(flat.shape[0])
    for start in range(0, flat.shape[0], rows):
        c = flat[start : start + rows]
        theta = np.broadcast_to(origin, (c.shape[0], origin.shape[0]))
        for k in range(directions.shape[0]):
            theta = theta + c[:, k, None] * directions[k]
        out[start : start + c.shape[0]] = batches.values(objective, theta, rows)
    return out.reshape(coords.shape[:-1])


def slice_1d(objective, origin, direction, ts, rows: int = DEFAULT_ROWS):
    """``E(origin + t direction)`` for each ``t`` of ``ts (T,)``: ``(T,)``; ``origin``
    and ``direction`` ``(P,)``."""
    ts = np.asarray(ts, dtype=np.float64)
    return evaluate(objective, origin, np.asarray(direction)[None], ts[:, None], rows)


def slice_2d(objective, origin, d1, d2, a, b, rows: int = DEFAULT_ROWS):
    """``E(origin + a_i d1 + b_j d2)`` on the grid of ``a (A,)`` by ``b (B,)``: losses
    ``(B, A)``, entry ``[j, i]`` at ``(a_i, b_j)``, rows along ``b``: the layout
    ``matplotlib``'s ``contour(a, b, losses)`` and ``np.meshgrid(a, b)`` use.
    ``origin``, ``d1``, ``d2`` are ``(P,)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    A, B = np.meshgrid(a, b)
    return evaluate(objective, origin, np.stack([np.asarray(d1), np.asarray(d2)]), np.stack([A, B], axis=-1), rows)


def slice_frame(alpha, beta, losses) -> pd.DataFrame:
    """A slice as a tidy table to write to Parquet: one row per grid point, columns
    ``alpha``, ``beta`` and ``loss``, ``alpha`` varying fastest (the order of
    ``losses (B, A)`` read row by row). For a 1-D slice pass ``beta=None`` and
    ``losses (T,)``: columns ``alpha`` and ``loss``."""
    alpha = np.asarray(alpha, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if beta is None:
        if losses.shape != alpha.shape:
            raise ValueError(f"losses must have the shape of alpha {alpha.shape}, got {losses.shape}")
        return pd.DataFrame({"alpha": alpha, "loss": losses})
    beta = np.asarray(beta, dtype=np.float64)
    if losses.shape != (beta.size, alpha.size):
        raise ValueError(f"losses must have shape (B, A) = {(beta.size, alpha.size)}, got {losses.shape}")
    A, B = np.meshgrid(alpha, beta)
    return pd.DataFrame({"alpha": A.ravel(), "beta": B.ravel(), "loss": losses.ravel()})


def slice_grid(frame: pd.DataFrame):
    """The inverse of :func:`slice_frame`: ``(alpha (A,), beta (B,), losses (B, A))``,
    or ``(alpha (T,), None, losses (T,))`` for a table without ``beta``; rows in any
    order, every grid point once."""
    if "beta" not in frame:
        f = frame.sort_values("alpha")
        return f["alpha"].to_numpy(), None, f["loss"].to_numpy()
    grid = frame.pivot(index="beta", columns="alpha", values="loss").sort_index().sort_index(axis=1)
    return grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float), grid.to_numpy(dtype=float)


# -- figures -------------------------------------------------------------------------


def _new_axes(ax, figsize=(4.8, 3.8)):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").subplots()


def _spans_decades(values) -> tuple[bool, float, float]:
    """Whether the finite positive ``values`` span more than :data:`LOG_SPAN`, and their
    smallest and largest (NaN when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    positive = v[np.isfinite(v) & (v > 0)]
    if not positive.size:
        return False, np.nan, np.nan
    low, high = float(positive.min()), float(positive.max())
    return high > LOG_SPAN * low, low, high


def contour(alpha, beta, losses, ax=None, points=None, log=True, levels: int = 30, point_labels=None,
            xlabel="alpha", ylabel="beta", title=None):  # fmt: skip
    """Filled contours of a 2-D slice ``losses (B, A)`` over ``alpha (A,)`` by ``beta
    (B,)`` (as :func:`slice_2d` returns them), with a colorbar; returns the Figure.

    With ``log`` and finite positive losses spanning more than a factor
    :data:`LOG_SPAN`, ``levels`` log-spaced levels on a log colour scale (losses at or
    below 0 drawn at the smallest positive one), else ``levels`` linear ones. Points not
    finite (a diverged loss) are left blank. ``points (N, 2)``, the minima in plane
    coordinates (``through(...).coords``), get markers, labelled by ``point_labels``
    (default 0, 1, ...). With ``ax`` draws into it and returns ``ax.figure``.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator

    ax = _new_axes(ax)
    Z = np.ma.masked_invalid(np.asarray(losses, dtype=np.float64))
    use_log, low, high = _spans_decades(Z.compressed())
    if log and use_log:
        cs = ax.contourf(alpha, beta, np.ma.clip(Z, low, high), levels=np.geomspace(low, high, levels),
                         norm=LogNorm(low, high), cmap="viridis")  # fmt: skip
    else:
        cs = ax.contourf(alpha, beta, Z, levels=levels, cmap="viridis")
    if log and use_log:  # ticks at the decades, not at the (many) levels
        bar = ax.figure.colorbar(cs, ax=ax, ticks=LogLocator(), format=LogFormatterSciNotation())
    else:
        bar = ax.figure.colorbar(cs, ax=ax)
    bar.set_label("loss" + (" (log scale)" if log and use_log else ""), fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if points is not None:
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        ax.plot(pts[:, 0], pts[:, 1], ls="none", marker="o", ms=6, mfc="white", mec="black", mew=1.2, zorder=3)
        names = point_labels if point_labels is not None else [str(i) for i in range(len(pts))]
        for (x, y), name in zip(pts, names):
            ax.annotate(str(name), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7, color="white")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def profile(ts, losses, ax=None, points=None, log=None, xlabel="t", title=None):
    """The loss along a 1-D slice, ``losses (T,)`` against ``ts (T,)`` (as
    :func:`slice_1d` returns them); returns the Figure.

    ``log`` None puts the loss on a log axis when its finite positive values span more
    than a factor :data:`LOG_SPAN`; True or False forces it. ``points`` (positions in
    ``t``, e.g. ``(0, 1)`` for the line through two minima) get dotted vertical lines.
    With ``ax`` draws into it and returns ``ax.figure``.
    """
    ax = _new_axes(ax, figsize=(4.8, 3.2))
    losses = np.asarray(losses, dtype=np.float64)
    ax.plot(ts, losses, lw=1.2, color="tab:blue")
    spans, _, _ = _spans_decades(losses)
    if (spans if log is None else log) and np.any(np.isfinite(losses) & (losses > 0)):
        ax.set_yscale("log")
    if points is not None:
        for t in np.atleast_1d(points):
            ax.axvline(float(t), color="grey", ls=":", lw=0.8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(which="both", labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure
