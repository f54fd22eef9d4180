"""Polishing: from where gradient descent stopped to the critical point it was heading
for, batched over inits, in float64.

Gradient descent only approaches a critical point; to certify one (and tell two apart)
the gradient norm must get far smaller, down to 1e-10. Each polishing step is a
Levenberg-Marquardt step on ``|grad E|^2 / 2``, whose Gauss-Newton matrix is ``H^2``
(``H`` the exact Hessian)::

    s = -(H^2 + lam I)^-1 H g = -Q diag(e / (e^2 + lam)) Q^T g      (H = Q diag(e) Q^T)

accepted when it lowers the gradient norm (then ``lam /= 3``), else retried with
``lam *= 4``. Why this and not a descent method: the aim is to certify the critical
point the run ended next to, whatever its index. Near a nondegenerate critical point
the step is Newton's, so the norm falls quadratically, at a saddle as at a minimum; a
descent method (damped Newton on ``E``, L-BFGS) would carry a run that stopped next to a
saddle on to some minimum and report where polishing went instead of where training
went. Directions in which ``H`` vanishes (the flat directions of degenerate minima) get
no step, since ``g`` has no component there to first order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import eigensteps

#: damping of the first step, relative to the largest eigenvalue squared
_LAMBDA0 = 1e-6


@dataclass
class PolishResult:
    """Per init: ``theta (R, P)``, ``loss (R,)``, ``grad_norm (R,)``, ``steps (R,)`` (tries,
    accepted or not) and ``converged (R,)`` (gradient norm at most the tolerance)."""

    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    steps: np.ndarray
    converged: np.ndarray


def polish(objective, theta, grad_tol: float, max_steps: int) -> PolishResult:
    """Polish every row of ``theta (R, P)`` until its gradient norm is at most
    ``grad_tol`` or ``max_steps`` tries are spent.

    ``objective`` (a :class:`nnkit.objective.Objective` on the host) gives the value,
    gradient and Hessian of any subset of rows, in float64.
    """
    theta, loss, norm, steps = eigensteps.iterate(
        objective, theta, grad_tol, max_steps,
        coefficients=lambda e, lam: e / (e**2 + lam),
        accept=lambda loss, norm, t_loss, t_norm: t_norm < norm,
        first=lambda e: _LAMBDA0 * np.max(e**2, axis=1) + 1e-300,
        floor=lambda e: 1e-300,
    )  # fmt: skip
    return PolishResult(theta, loss, norm, steps, norm <= grad_tol)
