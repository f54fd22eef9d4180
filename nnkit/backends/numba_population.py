"""The exact teacher-student population loss (:mod:`nnkit.objective.population`) as
Numba kernels: its value and gradient, and all of full-batch training, for :data:`L`
inits side by side as the lanes of every innermost loop.

Per init and step the work is ``O(k (k + k*) d)`` and the memory ``O(P)``: each pair
of units (student-student, student-teacher) is visited once, its angle computed from
the projection ``P_w u`` (accurate near 0 and pi, as in the NumPy closed form), and
its terms added into the gradient straight away; no ``(k, m, d)`` array exists. The
formulas are those of the closed form:

    K(w, u) = (|w| |P_w u| + (pi - t) w.u) / (2 pi),   G(w, u) = (|P_w u| wh + (pi - t) u) / (2 pi)
    L = a^T K(W, W) a - 2 a^T K(W, V) b + b^T K(V, V) b
    dL/dw_i = 2 a_i (sum_j a_j G(w_i, w_j) - sum_m b_m G(w_i, v_m)),  dL/da_i = 2 (K a - T b)_i

with ``k(w, w) = |w|^2 / 2``, ``G(w, w) = w / 2``, and ``G = 0`` for a unit ``w = 0``.
The NumPy reference is :class:`nnkit.objective.population.TeacherStudentPopulation`.

Why lanes: one init at a time, the loops over the ``d`` coordinates are too short to
vectorise well and the angle of every pair is a call of ``atan2`` (case P14: about half
of the time). With the inits as the fast axis, every loop runs over 64 lanes, and the
angle is :func:`_angle`, a polynomial arctangent the compiler vectorises. Inits stop at
very different steps, so training keeps every lane busy: a lane whose init stops takes
the next init of its range. ``value_and_grad`` goes through the very same function as
training, so that a training step by step ends where the fused one ends.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..core.stops import Stop

_CONVERGED, _TARGET, _MAX_STEPS, _DIVERGED = (int(s) for s in (Stop.CONVERGED, Stop.TARGET, Stop.MAX_STEPS, Stop.DIVERGED))
_INV_2PI = 1.0 / (2.0 * math.pi)
#: sums may be reordered (vectorised); nothing assumes finite values, so a diverging
#: init still reads as NaN or inf
_REASSOC = {"reassoc", "contract", "nsz"}
# Every kernel here compiles with NumPy's error model: a float division by zero gives
# inf or NaN instead of raising (each division is guarded or cannot divide by 0).
# Python's model puts a check and a raise in every division, and a lane loop holding
# one does not vectorise: with NumPy's, :func:`_angle` over the lanes is 2.5x faster.
#: inits side by side (lanes of every innermost loop)
L = 64
#: the fewest lanes training narrows to when only a few inits are left running
MIN_LANES = 4
#: ``atan(x) = x + x z p(z)``, ``z = x^2``, for ``0 <= x <= tan(pi/8)``: ``p`` of degree
#: 10, a Chebyshev least-squares fit of ``(atan(sqrt z) / sqrt z - 1) / z`` on
#: ``[0, tan(pi/8)^2]`` (400 nodes); relative error at most 2.3e-16 there (tested)
_ATAN = (
    -0.3333333333333331, 0.20000000000051846, -0.1428571429517818, 0.11111111719477841,
    -0.09090928664948536, 0.07692662794407054, -0.06670398830298047, 0.05903356222161693,
    -0.05297082326072344, 0.044757229868083254, -0.025346427125623454,
)  # fmt: skip
_TAN_PI_8 = math.tan(math.pi / 8)


@njit(cache=True, nogil=True, inline="always", fastmath=_REASSOC, error_model="numpy")
def _angle(s, c):
    """``atan2(s, c)`` for ``s >= 0`` (in ``[0, pi]``), without branches: the ratio of
    the smaller to the larger of ``s, |c|`` in ``[0, 1]``, reduced to ``|x| <=
    tan(pi/8)`` by ``atan(r) = pi/4 + atan((r - 1) / (r + 1))``, then :data:`_ATAN`."""
    ac = abs(c)
    hi = max(s, ac)
    r = min(s, ac) / hi if hi > 0.0 else 0.0
    big = r > _TAN_PI_8
    x = (r - 1.0) / (r + 1.0) if big else r
    z = x * x
    p = _ATAN[10]
    p = p * z + _ATAN[9]
    p = p * z + _ATAN[8]
    p = p * z + _ATAN[7]
    p = p * z + _ATAN[6]
    p = p * z + _ATAN[5]
    p = p * z + _ATAN[4]
    p = p * z + _ATAN[3]
    p = p * z + _ATAN[2]
    p = p * z + _ATAN[1]
    p = p * z + _ATAN[0]
    a = x + x * z * p
    a = a + 0.25 * math.pi if big else a
    a = 0.5 * math.pi - a if s > ac else a
    return math.pi - a if c < 0.0 else a


@njit(cache=True, nogil=True, error_model="numpy")
def angles(s, c, out):
    """:func:`_angle` of every entry (for the tests)."""
    for q in range(s.size):
        out[q] = _angle(s[q], c[q])


@njit(cache=True, nogil=True, inline="always", fastmath=_REASSOC, error_model="numpy")
def _pair(Wi, whi, nai, invi, u, nu2, dot, proj, npp, near, res, lanes):
    """``proj = |u| cos t`` and ``npp = |P_w u| = |u| sin t`` of every lane for the unit
    ``Wi (d, L)`` (direction ``whi``, norm ``nai``, ``invi = 1 / nai`` or 0) and ``u``
    (``(d, L)``, or ``(d, 1)`` shared by all lanes) with ``|u|^2 = nu2`` and ``w.u =
    dot``: from ``|u|^2 - proj^2`` where that loses no digits, else (nearly parallel or
    opposite) from the residual ``u - proj wh`` itself, computed where any lane needs it."""
    d = Wi.shape[0]
    wide = u.shape[1] > 1
    any_near = False
    for q in range(lanes):
        proj[q] = dot[q] * invi[q]
        rest = nu2[q] - proj[q] * proj[q]
        near[q] = rest <= 0.5 * nu2[q]
        npp[q] = math.sqrt(max(rest, 0.0))
        any_near |= near[q]
    if any_near:
        res[:] = 0.0
        for a in range(d):
            for q in range(lanes):
                r = (u[a, q] if wide else u[a, 0]) - proj[q] * whi[a, q]
                res[q] += r * r
        for q in range(lanes):
            npp[q] = math.sqrt(res[q]) if near[q] else npp[q]


@njit(cache=True, nogil=True, fastmath=_REASSOC, error_model="numpy")
def loss_grad(w, g, value, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, s):
    """Objective ``value (L,)`` and gradient ``g (P, L)`` of the students ``w (P, L)``
    (lanes as columns; ``w[a k + i]`` the weight of input ``a`` into unit ``i``); ``Vt
    (m, d)`` holds the teacher's units as rows; ``s`` the scratch of :func:`scratch`."""
    W, wh, D, na, inv, live, ao, Ka, Tb, cwh, V1, nu2, dot, proj, npp, near, res, ci, cj = s
    lanes = w.shape[1]
    m = Vt.shape[0]
    for i in range(k):
        for q in range(lanes):
            na[i, q] = 0.0
        for a in range(d):
            for q in range(lanes):
                x = w[a * k + i, q]
                W[i, a, q] = x
                na[i, q] += x * x
        for q in range(lanes):
            na[i, q] = math.sqrt(na[i, q])
            live[i, q] = 1.0 if na[i, q] > 0.0 else 0.0
            inv[i, q] = 1.0 / na[i, q] if na[i, q] > 0.0 else 0.0
            ao[i, q] = w[d * k + i, q] if trained else out_value
            Ka[i, q] = 0.5 * na[i, q] * na[i, q] * ao[i, q]  # k(w, w) = |w|^2 / 2
            Tb[i, q] = 0.0
            cwh[i, q] = 0.0
        for a in range(d):
            for q in range(lanes):
                wh[i, a, q] = W[i, a, q] * inv[i, q]
                D[i, a, q] = 0.5 * ao[i, q] * W[i, a, q]  # G(w, w) = w / 2
    for i in range(k):
        for j in range(i + 1, k):  # student pairs: a dead unit (w = 0) takes no part
            dot[:] = 0.0
            for a in range(d):
                for q in range(lanes):
                    dot[q] += W[i, a, q] * W[j, a, q]
            for q in range(lanes):
                nu2[q] = na[j, q] * na[j, q]
            _pair(W[i], wh[i], na[i], inv[i], W[j], nu2, dot, proj, npp, near, res, lanes)
            for q in range(lanes):
                t = _angle(npp[q], proj[q])
                both = live[i, q] * live[j, q]
                K = (na[i, q] * npp[q] + (math.pi - t) * dot[q]) * _INV_2PI * both
                Ka[i, q] += K * ao[j, q]
                Ka[j, q] += K * ao[i, q]
                cu = (math.pi - t) * _INV_2PI * both
                cwh[i, q] += ao[j, q] * npp[q] * _INV_2PI * both
                cwh[j, q] += ao[i, q] * npp[q] * (na[i, q] * inv[j, q]) * _INV_2PI * both  # |w_i| sin t
                cj[q] = ao[j, q] * cu
                ci[q] = ao[i, q] * cu
            for a in range(d):
                for q in range(lanes):
                    D[i, a, q] += cj[q] * W[j, a, q]
                    D[j, a, q] += ci[q] * W[i, a, q]
        for mm in range(m):
            nv2 = 0.0
            for a in range(d):
                V1[a, 0] = Vt[mm, a]
                nv2 += Vt[mm, a] * Vt[mm, a]
            dot[:] = 0.0
            for a in range(d):
                for q in range(lanes):
                    dot[q] += W[i, a, q] * V1[a, 0]
            nu2[:] = nv2
            _pair(W[i], wh[i], na[i], inv[i], V1, nu2, dot, proj, npp, near, res, lanes)
            for q in range(lanes):
                t = _angle(npp[q], proj[q])
                Tb[i, q] += (na[i, q] * npp[q] + (math.pi - t) * dot[q]) * _INV_2PI * b[mm] * live[i, q]
                cwh[i, q] -= b[mm] * npp[q] * _INV_2PI * live[i, q]
                ci[q] = (math.pi - t) * _INV_2PI * b[mm] * live[i, q]
            for a in range(d):
                for q in range(lanes):
                    D[i, a, q] -= ci[q] * V1[a, 0]
    for q in range(lanes):
        value[q] = teacher_norm
    for i in range(k):
        for q in range(lanes):
            value[q] += ao[i, q] * (Ka[i, q] - 2.0 * Tb[i, q])
        for a in range(d):
            for q in range(lanes):
                g[a * k + i, q] = scale * 2.0 * ao[i, q] * live[i, q] * (D[i, a, q] + cwh[i, q] * wh[i, a, q])
        if trained:
            for q in range(lanes):
                g[d * k + i, q] = scale * 2.0 * (Ka[i, q] - Tb[i, q])
    for q in range(lanes):
        value[q] *= scale
    if l2 != 0.0 or l1 != 0.0:
        for p in range(w.shape[0]):
            if mask[p] != 0.0:
                for q in range(lanes):
                    x = w[p, q]
                    value[q] += l2 * x * x + l1 * abs(x)
                    g[p, q] += 2.0 * l2 * x + l1 * (1.0 if x > 0 else (-1.0 if x < 0 else 0.0))


@njit(cache=True, nogil=True, error_model="numpy")
def scratch(d, k, lanes):
    """The working arrays of :func:`loss_grad` for ``lanes`` lanes (separate arrays, so
    that the compiler sees they do not overlap and vectorises)."""
    kd = (k, d, lanes)
    kl = (k, lanes)
    v = np.empty(lanes)
    return (np.empty(kd), np.empty(kd), np.empty(kd), np.empty(kl), np.empty(kl), np.empty(kl), np.empty(kl),
            np.empty(kl), np.empty(kl), np.empty(kl), np.empty((d, 1)), v.copy(), v.copy(), v.copy(), v.copy(),
            np.empty(lanes, dtype=np.bool_), v.copy(), v.copy(), v.copy())  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def value_and_grad(TH, G, out, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, first, last):
    """:func:`loss_grad` of the rows ``first..last`` of ``TH (R, P)`` into ``out (R,)``
    and ``G (R, P)``, :data:`L` rows at a time."""
    P = TH.shape[1]
    w, g, value = np.zeros((P, L)), np.empty((P, L)), np.empty(L)
    s = scratch(d, k, L)
    for r0 in range(first, last, L):
        n = min(L, last - r0)
        w[:] = 0.0
        for q in range(n):
            w[:, q] = TH[r0 + q]
        loss_grad(w, g, value, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, s)
        for q in range(n):
            out[r0 + q] = value[q]
            G[r0 + q] = g[:, q]


@njit(cache=True, nogil=True, fastmath=_REASSOC, error_model="numpy")
def train(TH, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, lr, mu, method, max_steps,
          grad_tol, loss_target, max_loss, status, steps, loss_out, gn_out, first, last):  # fmt: skip
    """Full-batch training of the rows ``first..last`` of ``TH (R, P)`` in place, each
    init stopping on its own by the rules of :func:`nnkit.training.train`; method 0 gd,
    1 momentum, 2 nesterov. :data:`L` lanes, each taking the next init of the range
    when its own stops; once none is left, the inits still running are gathered into
    the first lanes and the lanes beyond them dropped (halving down to
    :data:`MIN_LANES`), so that a few slow inits do not cost a whole block each step."""
    P = TH.shape[1]
    w, g, buf = np.zeros((P, L)), np.empty((P, L)), np.zeros((P, L))
    value, norm = np.empty(L), np.empty(L)
    row = np.full(L, -1)
    t = np.zeros(L, dtype=np.int64)
    step = np.zeros(L, dtype=np.bool_)  # lanes that take a step after this evaluation
    s = scratch(d, k, L)
    nxt = first
    for q in range(L):
        if nxt < last:
            row[q] = nxt
            w[:, q] = TH[nxt]
            nxt += 1
    busy = 0
    for q in range(L):
        busy += row[q] >= 0
    width = L
    while busy > 0:
        if nxt >= last and width > MIN_LANES and busy <= width // 2:
            j = 0
            for q in range(width):
                if row[q] >= 0:
                    if q != j:
                        w[:, j] = w[:, q]
                        buf[:, j] = buf[:, q]
                        row[j] = row[q]
                        t[j] = t[q]
                        row[q] = -1
                    j += 1
            while width > MIN_LANES and busy <= width // 2:
                width //= 2
            w[:, busy:width] = 0.0
        loss_grad(w[:, :width], g[:, :width], value, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask,
                  l2, l1, s)  # fmt: skip
        for q in range(width):
            norm[q] = 0.0
        for p in range(P):
            for q in range(width):
                norm[q] += g[p, q] * g[p, q]
        for q in range(width):
            norm[q] = math.sqrt(norm[q])
            step[q] = False
            if row[q] < 0:
                continue
            v, nq = value[q], norm[q]
            finite = math.isfinite(v) and math.isfinite(nq)
            code = _MAX_STEPS if t[q] == max_steps else 0
            if finite and v <= loss_target:
                code = _TARGET
            if grad_tol > 0 and finite and nq <= grad_tol:
                code = _CONVERGED
            if not finite or v > max_loss:
                code = _DIVERGED
            if code == 0:
                step[q] = True
                continue
            r = row[q]
            status[r] = code
            steps[r] = t[q]
            loss_out[r] = v
            gn_out[r] = nq
            TH[r] = w[:, q]
            # the next init of the range into this lane (evaluated before its first step)
            t[q] = 0
            buf[:, q] = 0.0
            if nxt < last:
                row[q] = nxt
                w[:, q] = TH[nxt]
                nxt += 1
            else:
                row[q] = -1
                w[:, q] = 0.0
                busy -= 1
        for p in range(P):
            for q in range(width):
                gv = g[p, q]
                if method == 0:
                    delta = gv
                else:
                    bv = mu * buf[p, q] + gv
                    buf[p, q] = bv if step[q] else buf[p, q]
                    delta = bv if method == 1 else gv + mu * bv
                w[p, q] = w[p, q] - lr * delta if step[q] else w[p, q]
        for q in range(width):
            t[q] += step[q]
