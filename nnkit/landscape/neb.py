"""Minimum-energy paths between minima: the nudged elastic band, many bands at once.

A band is a chain of images ``R_0, ..., R_{M-1}`` (``R_0``, ``R_{M-1}`` the two minima,
fixed); a batch of B bands is ``theta (B, M, P)`` and all interior images of all bands
are one batch of the objective (``B (M - 2)`` rows). The force on interior image ``i``::

    F_i = -grad E(R_i)_perp + k (|R_{i+1} - R_i| - |R_i - R_{i-1}|) tau_i

with ``tau_i`` the improved tangent (Henkelman & Jonsson 2000: the direction to the
higher neighbour, energy-weighted where ``R_i`` is an extremum of the profile) and
``_perp`` the part normal to it; where the band kinks (the angle between its segments
at ``R_i`` is large), a switched share of the spring force across the band
straightens it (Jonsson, Mills & Jacobsen 1998), so that images cannot settle into
different valleys on either side of a ridge. Once a band has relaxed, its highest image climbs
(Henkelman, Uberuaga & Jonsson 2000): ``F = -grad E + 2 (grad E . tau) tau``, no spring,
so it converges to the saddle point at the top of the path. The images move by FIRE
(Bitzek et al. 2006), one set of FIRE parameters per band, each band stopping on its
own when its largest force is at most ``tol``.

:func:`autoneb` resolves a band adaptively in the spirit of AutoNEB (Kolsbjerg,
Groves & Hammer 2016; Draxler et al. 2018): a coarse band is relaxed first, then images
are inserted at the midpoints of the segments with the largest energy steps, and the
finer band is relaxed with a climbing image. Every band keeps one image count so the
batch stays one array.

The curvature scale ``L`` (the largest Hessian eigenvalue over the first band's
images, by power iteration, or given) sets the units: the spring constant is ``k = spring * L`` and FIRE's largest
time step is ``1 / sqrt(L + 4 k)`` (the stiffest mode of the loss or of the chain of
springs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import batches

# FIRE's constants, as Bitzek et al. give them
_N_MIN, _F_INC, _F_DEC, _ALPHA0, _F_ALPHA = 5, 1.1, 0.5, 0.1, 0.99


@dataclass
class Bands:
    """``theta (B, M, P)`` the images, ``loss (B, M)``, ``force (B,)`` the largest NEB
    force of an interior image, ``steps (B,)`` FIRE steps taken, ``converged (B,)``
    (force at most the tolerance, with the climbing image on when asked),
    ``climbing (B,)`` the index of the image that climbed (of the highest interior
    image where none did)."""

    theta: np.ndarray
    loss: np.ndarray
    force: np.ndarray
    steps: np.ndarray
    converged: np.ndarray
    climbing: np.ndarray

    def arc_length(self) -> np.ndarray:
        """Cumulative length along each band ``(B, M)``, 0 at the first minimum."""
        seg = np.linalg.norm(np.diff(self.theta, axis=1), axis=2)
        return np.concatenate([np.zeros((seg.shape[0], 1)), np.cumsum(seg, axis=1)], axis=1)


def straight(a, b, images: int) -> np.ndarray:
    """Bands ``(B, images, P)`` on the straight lines from ``a (B, P)`` to ``b (B, P)``."""
    t = np.linspace(0.0, 1.0, images)
    return (1.0 - t)[None, :, None] * a[:, None, :] + t[None, :, None] * b[:, None, :]


def tangents(theta, loss) -> np.ndarray:
    """Improved tangents ``(B, M - 2, P)``, unit length, of the interior images."""
    return _tangents(theta[:, 2:] - theta[:, 1:-1], theta[:, 1:-1] - theta[:, :-2], loss)


def _tangents(up, down, loss) -> np.ndarray:
    """:func:`tangents` from the segments ``up = R_{i+1} - R_i`` and ``down = R_i - R_{i-1}``."""
    e_prev, e, e_next = loss[:, :-2], loss[:, 1:-1], loss[:, 2:]
    d_next, d_prev = np.abs(e_next - e), np.abs(e_prev - e)
    big, small = np.maximum(d_next, d_prev), np.minimum(d_next, d_prev)
    # tau = c_up tau+ + c_down tau-: the higher neighbour's side, energy-weighted at an extremum
    higher_next = e_next > e_prev
    c_up, c_down = np.where(higher_next, big, small), np.where(higher_next, small, big)
    rising, falling = (e_next > e) & (e > e_prev), (e_next < e) & (e < e_prev)
    c_up, c_down = np.where(rising, 1.0, np.where(falling, 0.0, c_up)), np.where(rising, 0.0, np.where(falling, 1.0, c_down))
    flat = (c_up == 0) & (c_down == 0)  # a flat profile: the chord
    c_up, c_down = np.where(flat, 1.0, c_up), np.where(flat, 1.0, c_down)
    tau = c_up[..., None] * up + c_down[..., None] * down
    return tau / np.maximum(_norms(tau), 1e-300)[..., None]


def _norms(a) -> np.ndarray:
    """Euclidean norms over the last axis of ``a (B, M, P)``: ``(B, M)``."""
    return np.sqrt(np.einsum("bmp,bmp->bm", a, a))


def forces(theta, loss, grad, k, climb, climber=None) -> np.ndarray:
    """NEB forces ``(B, M - 2, P)`` on the interior images of ``theta (B, M, P)``, from
    ``loss (B, M)``, the interior gradients ``grad (B, M - 2, P)``, spring constants
    ``k (B,)`` and ``climb (B,)`` (bool: an image climbs: interior image ``climber (B,)``,
    from 1, or by default the highest)."""
    up = theta[:, 2:] - theta[:, 1:-1]
    down = theta[:, 1:-1] - theta[:, :-2]
    tau = _tangents(up, down, loss)
    g_par = np.einsum("bmp,bmp->bm", grad, tau)[..., None]
    n_up, n_down = _norms(up), _norms(down)
    kk = k[:, None, None]
    # along the band, the springs; where it kinks, part of the full spring force across it
    # straightens it out (Jonsson, Mills & Jacobsen 1998): the switch is 0 on a straight band,
    # 1 at a right angle and sharper folds
    cos = np.einsum("bmp,bmp->bm", up, down) / np.maximum(n_up * n_down, 1e-300)
    switch = 0.5 * (1.0 + np.cos(np.pi * np.clip(cos, 0.0, 1.0)))[..., None]  # 1 from a right angle on
    full = kk * (up - down)
    full_par = np.einsum("bmp,bmp->bm", full, tau)[..., None]
    along = kk * (n_up - n_down)[..., None]
    F = -grad + (g_par + along - switch * full_par) * tau + switch * full
    top = np.argmax(loss[:, 1:-1], axis=1) if climber is None else np.asarray(climber) - 1
    rows = np.flatnonzero(climb)
    F[rows, top[rows]] = -grad[rows, top[rows]] + 2.0 * g_par[rows, top[rows]] * tau[rows, top[rows]]
    return F


def _values(objective, images, rows):
    """Loss ``(B, M')`` and gradient ``(B, M', P)`` of ``images (B, M', P)`` on the host."""
    B, M, P = images.shape
    loss, grad = batches.values_and_grads(objective, images.reshape(-1, P), rows)
    return loss.reshape(B, M), grad.reshape(B, M, P)


def curvature(objective, theta) -> np.ndarray:
    """The largest Hessian eigenvalue in magnitude over the interior images of each
    band ``theta (B, M, P)``, by power iteration
    (:func:`nnkit.training.safeguards.curvature`): ``(B,)``, 1 where it is not finite."""
    from ..training.safeguards import curvature as largest

    B, M, P = theta.shape
    inner = theta[:, 1:-1].reshape(-1, P)
    with np.errstate(all="ignore"):
        # the start vectors follow the image's place in its band, not in the batch
        lam = largest(objective, inner, np.tile(np.arange(M - 2), B)).reshape(B, M - 2)
        L = np.nanmax(np.where(np.isfinite(lam), lam, np.nan), axis=1)
    return np.where(np.isfinite(L) & (L > 0), L, 1.0)


def neb(objective, theta, *, spring: float = 0.3, tol: float = 1e-6, max_steps: int = 2000,
        climb: bool = True, scale=None, ceiling=None, rows: int = batches.ROWS) -> Bands:  # fmt: skip
    """Relax the bands ``theta (B, M, P)`` (host float64, ends fixed) by FIRE until
    each band's largest force is at most ``tol`` or ``max_steps`` steps are spent.

    ``climb``: a band whose force has fallen below ``sqrt(tol)``-ish progress (a tenth
    of its first force) turns its highest image into a climbing image, and only counts
    as converged with it on. ``scale (B,)``: the curvature scale ``L`` (default
    :func:`curvature`). ``ceiling (B,)``: a step that takes an image of a band above it
    is undone and the band's time steps halved for good (default: the first band's
    highest image plus its height above the lower end, a barrier twice as high)."""
    theta = np.array(theta, dtype=np.float64)
    B, M, P = theta.shape
    if M < 3:
        raise ValueError(f"a band needs at least 3 images (two ends and one to move), got {M}")
    L = curvature(objective, theta) if scale is None else np.broadcast_to(np.asarray(scale, float), (B,)).copy()
    k = spring * L
    dt_max = 1.0 / np.sqrt(L + 4.0 * k)  # the stiffest mode: the curvature, or the chain of springs
    dt, alpha, n_pos = 0.1 * dt_max, np.full(B, _ALPHA0), np.zeros(B, dtype=np.int64)
    # the largest move of an image in one step: a fraction of the band's spacing
    max_move = 0.2 * np.linalg.norm(theta[:, -1] - theta[:, 0], axis=1) / (M - 1) + 1e-12
    v = np.zeros((B, M - 2, P))
    loss = np.empty((B, M))
    ends, _ = _values(objective, theta[:, [0, -1]], rows)
    loss[:, 0], loss[:, -1] = ends[:, 0], ends[:, 1]
    climbing = np.zeros(B, dtype=bool)
    climbed = np.zeros(B, dtype=bool)
    climber = np.ones(B, dtype=np.int64)  # which image climbs, once one does
    first = np.full(B, np.nan)
    force = np.full(B, np.inf)
    steps = np.zeros(B, dtype=np.int64)
    done = np.zeros(B, dtype=bool)
    prev = theta[:, 1:-1].copy()  # the last images whose energies passed the guard
    ceiling = None if ceiling is None else np.broadcast_to(np.asarray(ceiling, float), (B,)).copy()
    with np.errstate(all="ignore"):
        for _ in range(max_steps + 1):
            act = np.flatnonzero(~done)
            if act.size == 0:
                break
            inner, grad = _values(objective, theta[act, 1:-1], rows)
            if ceiling is None:  # a band may rise above its first profile, but not far
                ceiling = _ceiling(np.concatenate([loss[:, :1], inner, loss[:, -1:]], axis=1))
            blown = ~np.isfinite(inner).all(axis=1) | (inner.max(axis=1) > ceiling[act])
            if blown.any():  # an unstable step: back to the last good images, slower
                back = act[blown]
                theta[back, 1:-1], v[back] = prev[back], 0.0
                dt_max[back] *= _F_DEC  # and for good: the band has reached stiffer ground
                dt[back] = np.minimum(dt[back] * _F_DEC, dt_max[back])
                alpha[back], n_pos[back] = _ALPHA0, 0
                steps[back] += 1
                act, inner, grad = act[~blown], inner[~blown], grad[~blown]
            loss[act, 1:-1] = inner
            prev[act] = theta[act, 1:-1]
            _repick(climber, climbing, loss, act)
            F = forces(theta[act], loss[act], grad, k[act], climbing[act], climber[act])
            f_norm = _norms(F)
            norm = f_norm.max(axis=1)
            force[act] = norm
            first[act] = np.where(np.isnan(first[act]), norm, first[act])
            climbed[act] = climbing[act]  # the forces just computed had the climbing image on
            if climb:  # climb once the band has taken its shape, over a top between the ends
                start = ~climbing[act] & _inner_top(loss[act]) & (norm <= np.maximum(0.1 * first[act], tol))
                climbing[act[start]] = True
                # the image that climbs stays the one chosen: two tops of nearly one height
                # would otherwise take turns, and neither would converge
                climber[act[start]] = 1 + np.argmax(loss[act[start], 1:-1], axis=1)
            ok = (norm <= tol) & (climbed[act] | (not climb) | ~_inner_top(loss[act]))
            spent = ~ok & (steps[act] >= max_steps)  # the last evaluation is of the last step's images
            done[act[ok | spent]] = True
            go = ~(ok | spent)
            act, F, f_norm = act[go], F[go], f_norm[go]
            if act.size == 0:
                continue
            # FIRE: velocity Verlet with the velocity turned towards the force
            V = v[act] + dt[act, None, None] * F
            power = np.einsum("bmp,bmp->b", F, V)
            a = alpha[act, None]
            V = (1 - a)[..., None] * V + (a * _norms(V) / np.maximum(f_norm, 1e-300))[..., None] * F
            downhill = power > 0
            n_pos[act] = np.where(downhill, n_pos[act] + 1, 0)
            grow = downhill & (n_pos[act] > _N_MIN)
            dt[act] = np.where(grow, np.minimum(dt[act] * _F_INC, dt_max[act]),
                               np.where(downhill, dt[act], dt[act] * _F_DEC))  # fmt: skip
            alpha[act] = np.where(grow, alpha[act] * _F_ALPHA, np.where(downhill, alpha[act], _ALPHA0))
            V[~downhill] = 0.0
            V[np.einsum("bmp,bmp->bm", F, V) < 0] = 0.0  # an image moving against its force stops
            move = dt[act, None, None] * V
            size = _norms(move)
            cap = max_move[act, None]
            move *= np.where(size > cap, cap / np.maximum(size, 1e-300), 1.0)[..., None]
            theta[act, 1:-1] += move
            v[act] = V
            steps[act] += 1
    theta[:, 1:-1] = prev  # the images whose energies and forces were last evaluated
    converged = (force <= tol) & (climbed | (not climb) | ~_inner_top(loss))
    climbing = np.where(climbed, climber, 1 + np.argmax(loss[:, 1:-1], axis=1))
    return Bands(theta, loss, force, steps, converged, climbing)


def _repick(climber, climbing, loss, act) -> None:
    """In place: the climbing image of a band in ``act`` moves to its highest interior
    image once that is clearly higher (by a hundredth of the climber's height above
    the lower end) than the image climbing now."""
    rows = act[climbing[act]]
    if rows.size == 0:
        return
    inner = loss[rows, 1:-1]
    top = np.argmax(inner, axis=1)
    now = inner[np.arange(rows.size), climber[rows] - 1]
    height = now - np.minimum(loss[rows, 0], loss[rows, -1])
    move = inner[np.arange(rows.size), top] > now + 0.01 * np.abs(height)
    climber[rows[move]] = 1 + top[move]


def _ceiling(loss) -> np.ndarray:
    """``(B,)``: the default ceiling of bands with profiles ``loss (B, M)``."""
    top = np.max(loss, axis=1)
    return top + (top - np.minimum(loss[:, 0], loss[:, -1])) + 1e-12 * np.maximum(1.0, np.abs(top))


def _inner_top(loss) -> np.ndarray:
    """``(B,)``: whether the highest image of each band ``loss (B, M)`` is an interior
    one (a band whose profile rises to an end has no saddle to climb to)."""
    return np.max(loss[:, 1:-1], axis=1) > np.maximum(loss[:, 0], loss[:, -1])


def insert_images(theta, loss, images: int) -> np.ndarray:
    """Bands ``(B, images, P)`` made from ``theta (B, M, P)`` by inserting midpoints,
    one at a time per band, into the segment with the largest energy step ``|dE|``
    (the step then counts half for the next choice); ``images >= M``."""
    B, M, P = theta.shape
    out = np.empty((B, images, P))
    for r in range(B):
        pts = list(theta[r])
        steps = list(np.abs(np.diff(loss[r])))
        for _ in range(images - M):
            j = int(np.nanargmax(np.where(np.isfinite(steps), steps, np.inf)))
            pts.insert(j + 1, 0.5 * (pts[j] + pts[j + 1]))
            steps[j : j + 1] = [steps[j] / 2, steps[j] / 2]
        out[r] = np.array(pts)
    return out


def autoneb(objective, a, b, images: int = 16, *, start: int | None = None, spring: float = 0.3,
            tol: float = 1e-6, max_steps: int = 2000, climb: bool = True, rows: int = batches.ROWS) -> Bands:  # fmt: skip
    """Bands of ``images`` images from ``a (B, P)`` to ``b (B, P)`` (host float64): a
    coarse band of ``start`` images (default ``max(3, images // 2)``) relaxed without
    climbing (to ``10 tol``, half the step budget), images inserted where the energy
    steps are largest, then the full band relaxed with a climbing image. No image
    rises above the straight line's highest point plus its height (``ceiling`` of
    :func:`neb`)."""
    start = max(3, images // 2) if start is None else max(3, min(start, images))
    coarse = straight(np.asarray(a, float), np.asarray(b, float), start)
    L = curvature(objective, coarse)
    ceiling = _ceiling(_values(objective, straight(np.asarray(a, float), np.asarray(b, float), images), rows)[0])
    if start < images:
        first = neb(objective, coarse, spring=spring, tol=10 * tol, max_steps=max_steps // 2, climb=False,
                    scale=L, ceiling=ceiling, rows=rows)  # fmt: skip
        coarse = insert_images(first.theta, first.loss, images)
    return neb(objective, coarse, spring=spring, tol=tol, max_steps=max_steps, climb=climb, scale=L,
               ceiling=ceiling, rows=rows)  # fmt: skip


def interior_minima(loss) -> list[np.ndarray]:
    """Per band, the interior images ``(j,)`` that are local minima of its profile
    ``loss (B, M)`` (lower than both neighbours): a hint of a minimum between the two
    ends."""
    inner = loss[:, 1:-1]
    low = (inner < loss[:, :-2]) & (inner < loss[:, 2:])
    return [1 + np.flatnonzero(row) for row in low]


def interior_maxima(loss) -> list[np.ndarray]:
    """Per band, the interior images ``(j,)`` that are local maxima of its profile
    ``loss (B, M)`` (higher than both neighbours; the highest interior image when
    none is, the profile rising to an end)."""
    inner = loss[:, 1:-1]
    high = (inner > loss[:, :-2]) & (inner > loss[:, 2:])
    return [1 + (np.flatnonzero(row) if row.any() else np.array([np.argmax(values)]))
            for row, values in zip(high, inner)]  # fmt: skip
