"""Steps that cannot silently blow up: a step size from the curvature at each init's
start point (``train.lr = "auto"``), and restarts of the inits that failed
(``train.restarts``), each from its own start point with half its previous step.

Both work on every backend and leave the kernels alone: inits that share a step size
train together as one batch, so ``"auto"`` rounds each init's step down to a power of
two (between half of and the whole inverse curvature).
"""

from __future__ import annotations

import numpy as np

#: power-iteration steps of the curvature estimate
POWER_STEPS = 20
#: the largest step ``"auto"`` gives (a nearly flat start point)
AUTO_LR_MAX = 1.0
#: the smallest step a restart halves down to
LR_MIN = 2.0**-40


def start_vectors(ids, P: int) -> np.ndarray:
    """``(R, P)`` unit vectors, a fixed function of each init's id (the same whatever
    chunk the init is in), that start the power iteration."""
    ids = np.asarray(ids, dtype=np.float64)[:, None]
    j = np.arange(1, P + 1, dtype=np.float64)[None, :]
    v = np.sin((ids + 1.0) * 12.9898 + j * 78.233) * 43758.5453
    v = v - np.floor(v) - 0.5
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def curvature(objective, theta, ids, steps: int = POWER_STEPS) -> np.ndarray:
    """The largest Hessian eigenvalue in magnitude at each row of ``theta (R, P)``
    (host), by power iteration on central differences of the gradient (the
    objective's own backend, any model): ``(R,)``, NaN where the gradient is not
    finite."""
    be = objective.backend
    xp = be.xp
    w = be.asarray(theta, xp.float64)
    v = be.asarray(start_vectors(ids, theta.shape[1]), xp.float64)
    h = 1e-5 * xp.maximum(1.0, xp.sqrt(xp.sum(w * w, axis=1, keepdims=True)))
    lam = xp.zeros(theta.shape[0])
    for _ in range(steps):
        _, gp = objective.value_and_grad(w + h * v)
        _, gm = objective.value_and_grad(w - h * v)
        hv = (gp - gm) / (2 * h)
        lam = xp.sum(v * hv, axis=1)
        norm = xp.sqrt(xp.sum(hv * hv, axis=1, keepdims=True))
        v = xp.where(norm > 0, hv / xp.where(norm > 0, norm, 1.0), v)
    lam = be.to_numpy(xp.abs(lam)).astype(np.float64)
    return np.where(np.isfinite(lam), lam, np.nan)


def auto_steps(objective, theta, ids) -> np.ndarray:
    """The step of ``lr = "auto"`` for each init: ``1 / lambda_max`` at its start
    point rounded down to a power of two, at most :data:`AUTO_LR_MAX`."""
    lam = curvature(objective, theta, ids)
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = np.where(lam > 0, 1.0 / lam, AUTO_LR_MAX)
    exact = np.where(np.isfinite(exact), exact, AUTO_LR_MAX)
    return np.minimum(AUTO_LR_MAX, 2.0 ** np.floor(np.log2(np.maximum(exact, LR_MIN))))
