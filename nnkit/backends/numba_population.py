"""The exact teacher-student population loss (:mod:`nnkit.objective.population`) as
Numba kernels: its value and gradient, and all of full-batch training, one init at a
time on each thread.

Per init and step the work is ``O(k (k + k*) d)`` and the memory ``O(P)``: each pair
of units (student-student, student-teacher) is visited once, its angle computed from
the projection ``P_w u`` formed on the fly (accurate near 0 and pi, as in the NumPy
closed form), and its terms added into the gradient straight away; no ``(k, m, d)``
array exists. The formulas are those of the closed form:

    K(w, u) = (|w| |P_w u| + (pi - t) w.u) / (2 pi),   G(w, u) = (|P_w u| wh + (pi - t) u) / (2 pi)
    L = a^T K(W, W) a - 2 a^T K(W, V) b + b^T K(V, V) b
    dL/dw_i = 2 a_i (sum_j a_j G(w_i, w_j) - sum_m b_m G(w_i, v_m)),  dL/da_i = 2 (K a - T b)_i

with ``k(w, w) = |w|^2 / 2``, ``G(w, w) = w / 2``, and ``G = 0`` for a unit ``w = 0``.
The NumPy reference is :class:`nnkit.objective.population.TeacherStudentPopulation`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..core.stops import Stop

_CONVERGED, _TARGET, _MAX_STEPS, _DIVERGED = (int(s) for s in (Stop.CONVERGED, Stop.TARGET, Stop.MAX_STEPS, Stop.DIVERGED))
_INV_2PI = 1.0 / (2.0 * math.pi)
#: sums over the d coordinates may be reordered (vectorised); nothing assumes finite
#: values, so a diverging init still reads as NaN or inf
_REASSOC = {"reassoc", "contract", "nsz"}


@njit(cache=True, nogil=True, inline="always", fastmath=_REASSOC)
def _sin_part(Wt, i, wh, proj, u, nu2, d):
    """``|P_w u| = |u| sin t`` for the unit direction ``wh`` of ``Wt[i]`` and ``u`` with
    ``|u|^2 = nu2``, ``proj = u . wh``: from ``|u|^2 - proj^2`` where that loses no
    digits, else (nearly parallel) from the residual ``u - proj wh`` itself."""
    rest = nu2 - proj * proj
    if rest > 0.5 * nu2:
        return math.sqrt(rest)
    s = 0.0
    for a in range(d):
        r = u[a] - proj * wh[i, a]
        s += r * r
    return math.sqrt(s)


@njit(cache=True, nogil=True, fastmath=_REASSOC)
def loss_grad(th, g, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, Wt, wh, D, na, a_, Ka, Tb, cwh):
    """Objective of the student ``th (P,)``; its gradient into ``g (P,)``. ``Vt (m, d)``
    holds the teacher's units as rows. Scratch (separate arrays, so that the compiler
    sees they do not overlap and vectorises): ``Wt``, ``wh``, ``D`` ``(k, d)`` (the
    units, their directions, parts of the gradient), ``na``, ``a_``, ``Ka``, ``Tb``,
    ``cwh`` ``(k,)``."""
    m = Vt.shape[0]
    for i in range(k):
        s = 0.0
        for a in range(d):
            x = th[a * k + i]
            Wt[i, a] = x
            s += x * x
        na[i] = math.sqrt(s)
        inv = 1.0 / na[i] if na[i] > 0.0 else 0.0
        for a in range(d):
            wh[i, a] = Wt[i, a] * inv
            D[i, a] = 0.0
        a_[i] = th[d * k + i] if trained else out_value
        Ka[i] = 0.5 * na[i] * na[i] * a_[i]  # k(w, w) = |w|^2 / 2
        Tb[i] = 0.0
        cwh[i] = 0.0
    for i in range(k):
        if na[i] == 0.0:  # a dead unit: K = 0 with every other, G = 0
            continue
        for a in range(d):
            D[i, a] += 0.5 * a_[i] * Wt[i, a]  # G(w, w) = w / 2
        for j in range(i + 1, k):
            if na[j] == 0.0:
                continue
            dot = 0.0
            for a in range(d):
                dot += Wt[i, a] * Wt[j, a]
            proj = dot / na[i]  # |w_j| cos t
            npp = _sin_part(Wt, i, wh, proj, Wt[j], na[j] * na[j], d)  # |w_j| sin t
            t = math.atan2(npp, proj)
            K = (na[i] * npp + (math.pi - t) * dot) * _INV_2PI
            Ka[i] += K * a_[j]
            Ka[j] += K * a_[i]
            cu = (math.pi - t) * _INV_2PI
            cwh[i] += a_[j] * npp * _INV_2PI
            cwh[j] += a_[i] * npp * (na[i] / na[j]) * _INV_2PI  # |w_i| sin t
            for a in range(d):
                D[i, a] += a_[j] * cu * Wt[j, a]
                D[j, a] += a_[i] * cu * Wt[i, a]
        for mm in range(m):
            u = Vt[mm]
            dot = 0.0
            nu2 = 0.0
            for a in range(d):
                dot += Wt[i, a] * u[a]
                nu2 += u[a] * u[a]
            proj = dot / na[i]
            npp = _sin_part(Wt, i, wh, proj, u, nu2, d)
            t = math.atan2(npp, proj)
            Tb[i] += (na[i] * npp + (math.pi - t) * dot) * _INV_2PI * b[mm]
            cwh[i] -= b[mm] * npp * _INV_2PI
            cu = (math.pi - t) * _INV_2PI * b[mm]
            for a in range(d):
                D[i, a] -= cu * u[a]
    loss = teacher_norm
    for i in range(k):
        loss += a_[i] * (Ka[i] - 2.0 * Tb[i])
        for a in range(d):
            g[a * k + i] = scale * 2.0 * a_[i] * (D[i, a] + cwh[i] * wh[i, a])
        if trained:
            g[d * k + i] = scale * 2.0 * (Ka[i] - Tb[i])
    loss *= scale
    if l2 != 0.0 or l1 != 0.0:
        for p in range(th.size):
            if mask[p] != 0.0:
                w = th[p]
                loss += l2 * w * w + l1 * abs(w)
                g[p] += 2.0 * l2 * w + l1 * (1.0 if w > 0 else (-1.0 if w < 0 else 0.0))
    return loss


@njit(cache=True, nogil=True)
def value_and_grad(TH, G, out, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, first, last):
    """:func:`loss_grad` of the rows ``first..last`` of ``TH (R, P)`` into ``out (R,)``
    and ``G (R, P)``."""
    Wt, wh, D = np.empty((k, d)), np.empty((k, d)), np.empty((k, d))
    na, a_, Ka, Tb, cwh = np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k)
    for r in range(first, last):
        out[r] = loss_grad(TH[r], G[r], d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1,
                           Wt, wh, D, na, a_, Ka, Tb, cwh)  # fmt: skip


@njit(cache=True, nogil=True)
def train(TH, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, lr, mu, method, max_steps,
          grad_tol, loss_target, max_loss, status, steps, loss_out, gn_out, first, last):  # fmt: skip
    """Full-batch training of the rows ``first..last`` of ``TH (R, P)`` in place, each
    init stopping on its own by the rules of :func:`nnkit.training.train`; method 0 gd,
    1 momentum, 2 nesterov."""
    P = TH.shape[1]
    g = np.empty(P)
    buf = np.empty(P)
    Wt, wh, D = np.empty((k, d)), np.empty((k, d)), np.empty((k, d))
    na, a_, Ka, Tb, cwh = np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k)
    for r in range(first, last):
        th = TH[r]
        buf[:] = 0.0
        for t in range(max_steps + 1):
            value = loss_grad(th, g, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1,
                              Wt, wh, D, na, a_, Ka, Tb, cwh)  # fmt: skip
            norm = 0.0
            for p in range(P):
                norm += g[p] * g[p]
            norm = math.sqrt(norm)
            finite = math.isfinite(value) and math.isfinite(norm)
            code = _MAX_STEPS if t == max_steps else 0
            if finite and value <= loss_target:
                code = _TARGET
            if grad_tol > 0 and finite and norm <= grad_tol:
                code = _CONVERGED
            if not finite or value > max_loss:
                code = _DIVERGED
            if code:
                status[r] = code
                steps[r] = t
                loss_out[r] = value
                gn_out[r] = norm
                break
            for p in range(P):
                if method == 0:
                    th[p] -= lr * g[p]
                else:
                    buf[p] = mu * buf[p] + g[p]
                    th[p] -= lr * (buf[p] if method == 1 else g[p] + mu * buf[p])
