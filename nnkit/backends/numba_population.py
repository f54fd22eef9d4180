"""The exact teacher-student population loss (:mod:`nnkit.objective.population`) as
Numba kernels: its value and gradient, and all of full-batch training, one init at a
time per thread.

Per init and step the work is ``O(k (k + k*) d)`` and the memory ``O(P + (k + k*) d)``:
the student units and the teacher's sit side by side as the ``J`` columns of one matrix
(zero columns pad ``J`` to a multiple of :data:`PAD`), and for each student unit
``w_i`` one pass over the columns takes the dot products (four coordinates a pass),
the projections ``|u| cos t`` and ``|P_w u| = |u| sin t`` (from ``|u|^2 - proj^2``
where that loses no digits, else, nearly parallel or opposite, from the residual
``u - proj wh`` itself, as in the NumPy closed form), the angle and the terms of the
loss and the gradient. No ``(k, m, d)`` array exists. The
formulas are those of the closed form:

    K(w, u) = (|w| |P_w u| + (pi - t) w.u) / (2 pi),   G(w, u) = (|P_w u| wh + (pi - t) u) / (2 pi)
    L = a^T K(W, W) a - 2 a^T K(W, V) b + b^T K(V, V) b
    dL/dw_i = 2 a_i (sum_j a_j G(w_i, w_j) - sum_m b_m G(w_i, v_m)),  dL/da_i = 2 (K a - T b)_i

with the pair ``(w_i, w_i)`` taken at ``t = 0`` and ``|P_w u| = 0`` exactly (so
``k(w, w) = |w|^2 / 2``, ``G(w, w) = w / 2``), and ``G = 0`` for a unit ``w = 0``.
The NumPy reference is :class:`nnkit.objective.population.TeacherStudentPopulation`.

Why one init at a time: every loop over the ``J`` columns is vectorised by the
compiler (the angle is :func:`_angle`, a polynomial arctangent without branches), and
the working set of an init (a few KB) stays in the L1 cache. Inits stop at very
different steps (case P14: median 6,200, slowest 18,300); one init at a time, a slow
init costs its own steps and no more, and threads share the inits in small ranges
handed to whichever is free. The earlier kernel took 64 inits side by side as SIMD
lanes: on P14 it was no faster per init-step (2.5 against 2.1 us) and its last few
slow inits ran at a few lanes, 20 us an init-step. Taking the student pairs once (the
dot products and angles are symmetric) ran slower as written: the loops then start at
a unit's own column, and with the extra stores the compiler no longer vectorised them.
``value_and_grad`` goes through the very same function as training (inlined, with the
same compiler flags and buffers of its own), so that a training step by step ends
where the fused one ends.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..core import stops

_stop_code = njit(inline="always", error_model="numpy")(stops.stop_code)
_RUNNING = int(stops.Stop.RUNNING)
_INV_2PI = 1.0 / (2.0 * math.pi)
#: sums may be reordered (vectorised); nothing assumes finite values, so a diverging
#: init still reads as NaN or inf
_REASSOC = {"reassoc", "contract", "nsz"}
# Every kernel here compiles with NumPy's error model: a float division by zero gives
# inf or NaN instead of raising (each division is guarded or cannot divide by 0).
# Python's model puts a check and a raise in every division, and a loop holding one
# does not vectorise: with NumPy's, :func:`_angle` over a loop is 2.5x faster.
#: the columns (student and teacher units) are padded to a multiple of this, the
#: doubles of one SIMD register
PAD = 8
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
    """``atan2(s, c)`` for ``s >= 0`` (in ``[0, pi]``), without branches: the ratio
    ``x`` of the smaller to the larger of ``s, |c|`` in ``[0, 1]``, or where it is past
    ``tan(pi/8)``, ``(lo - hi) / (lo + hi)`` (``atan(r) = pi/4 + atan((r - 1) / (r +
    1))``), so that ``|x| <= tan(pi/8)`` with one division; then :data:`_ATAN`."""
    ac = abs(c)
    hi = max(s, ac)
    lo = min(s, ac)
    big = lo > _TAN_PI_8 * hi
    num = lo - hi if big else lo
    den = lo + hi if big else hi
    x = num / den if den > 0.0 else 0.0
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


@njit(cache=True, nogil=True, error_model="numpy")
def scratch(d, k, Vt, b):
    """The working arrays of :func:`loss_grad` for students of ``k`` units in ``d``
    dimensions against the teacher ``Vt (m, d)`` (units as rows) with output weights
    ``b (m,)``: the teacher's columns filled in once (separate arrays, so that the
    compiler sees they do not overlap and vectorises)."""
    m = Vt.shape[0]
    J = -(-(k + m) // PAD) * PAD
    U, UT = np.zeros((J, d)), np.zeros((d, J))  # every unit as a row, and as a column
    nu2, cs, ct, live = np.zeros(J), np.zeros(J), np.zeros(J), np.zeros(J)
    for mm in range(m):
        for a in range(d):
            U[k + mm, a] = UT[a, k + mm] = Vt[mm, a]
            nu2[k + mm] += Vt[mm, a] * Vt[mm, a]
        ct[k + mm] = b[mm]
        live[k + mm] = 1.0
    v = np.zeros(J)
    return U, UT, nu2, cs, ct, live, v.copy(), v.copy(), v.copy(), v.copy(), np.zeros(J, dtype=np.bool_)


@njit(cache=True, nogil=True, inline="always", fastmath=_REASSOC, error_model="numpy")
def loss_grad(w, g, d, k, trained, out_value, teacher_norm, scale, mask, l2, l1, s):
    """Objective value (returned) and gradient ``g (P,)`` of the student ``w (P,)``
    (``w[a k + i]`` the weight of input ``a`` into unit ``i``, then the trained output
    weights); ``s`` the scratch of :func:`scratch` (the teacher is in it)."""
    U, UT, nu2, cs, ct, live, dot, proj, npp, co, near = s
    J = UT.shape[1]
    d4 = d - d % 4
    # the students into the first k columns: norms, and output weights as the columns'
    # coefficients cs (the teacher's b are in ct, and enter with a minus sign)
    for i in range(k):
        n2 = 0.0
        for a in range(d):
            x = w[a * k + i]
            U[i, a] = UT[a, i] = x
            n2 += x * x
        nu2[i] = n2
        live[i] = 1.0 if n2 > 0.0 else 0.0
        cs[i] = w[d * k + i] if trained else out_value
    value = teacher_norm
    for i in range(k):
        # four coordinates a pass (one store of dot[j] for four products), then those
        # left over one at a time
        for j in range(J):
            dot[j] = 0.0
        for a in range(0, d4, 4):
            x0, x1, x2, x3 = U[i, a], U[i, a + 1], U[i, a + 2], U[i, a + 3]
            for j in range(J):
                dot[j] += x0 * UT[a, j] + x1 * UT[a + 1, j] + x2 * UT[a + 2, j] + x3 * UT[a + 3, j]
        for a in range(d4, d):
            x0 = U[i, a]
            for j in range(J):
                dot[j] += x0 * UT[a, j]
        nai = math.sqrt(nu2[i])
        invi = 1.0 / nai if nai > 0.0 else 0.0
        any_near = False
        for j in range(J):
            p = dot[j] * invi
            rest = nu2[j] - p * p
            proj[j] = p
            npp[j] = math.sqrt(max(rest, 0.0))
            near[j] = (rest <= 0.5 * nu2[j]) & (nu2[j] > 0.0)
            any_near |= near[j]
        npp[i] = 0.0  # the unit with itself: t = 0
        near[i] = False
        if any_near:
            for j in range(J):
                if near[j]:
                    c = proj[j] * invi
                    r2 = 0.0
                    for a in range(d):
                        r = U[j, a] - c * U[i, a]
                        r2 += r * r
                    npp[j] = math.sqrt(r2)
        li = live[i] * _INV_2PI  # a dead unit (w = 0) takes no part
        Ka = Tb = cw = 0.0
        for j in range(J):
            t = _angle(npp[j], proj[j])
            K = nai * npp[j] + (math.pi - t) * dot[j]
            ws = cs[j] * live[j] * li
            wt = ct[j] * li
            Ka += K * ws  # (K a)_i
            Tb += K * wt  # (T b)_i
            cw += (ws - wt) * npp[j]
            co[j] = (ws - wt) * (math.pi - t)
        ai = cs[i]
        value += ai * (Ka - 2.0 * Tb)
        f = scale * 2.0 * ai * live[i]
        for a in range(0, d4, 4):  # four coordinates of D_i = sum_j co_j u_j a pass
            D0 = D1 = D2 = D3 = 0.0
            for j in range(J):
                c = co[j]
                D0 += c * UT[a, j]
                D1 += c * UT[a + 1, j]
                D2 += c * UT[a + 2, j]
                D3 += c * UT[a + 3, j]
            g[a * k + i] = f * (D0 + cw * U[i, a] * invi)
            g[(a + 1) * k + i] = f * (D1 + cw * U[i, a + 1] * invi)
            g[(a + 2) * k + i] = f * (D2 + cw * U[i, a + 2] * invi)
            g[(a + 3) * k + i] = f * (D3 + cw * U[i, a + 3] * invi)
        for a in range(d4, d):
            D0 = 0.0
            for j in range(J):
                D0 += co[j] * UT[a, j]
            g[a * k + i] = f * (D0 + cw * U[i, a] * invi)
        if trained:
            g[d * k + i] = scale * 2.0 * (Ka - Tb)
    value *= scale
    if l2 != 0.0 or l1 != 0.0:
        for p in range(w.shape[0]):
            if mask[p] != 0.0:
                x = w[p]
                value += l2 * x * x + l1 * abs(x)
                g[p] += 2.0 * l2 * x + l1 * (1.0 if x > 0 else (-1.0 if x < 0 else 0.0))
    return value


@njit(cache=True, nogil=True, fastmath=_REASSOC, error_model="numpy")
def value_and_grad(TH, G, out, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, first, last):
    """:func:`loss_grad` of the rows ``first..last`` of ``TH (R, P)`` into ``out (R,)``
    and ``G (R, P)``; ``Vt (m, d)`` holds the teacher's units as rows. Each row goes
    through buffers of its own, as in :func:`train` (so the compiler sees that they do
    not overlap the scratch, and vectorises the same way)."""
    P = TH.shape[1]
    w, g = np.empty(P), np.empty(P)
    s = scratch(d, k, Vt, b)
    for r in range(first, last):
        w[:] = TH[r]
        out[r] = loss_grad(w, g, d, k, trained, out_value, teacher_norm, scale, mask, l2, l1, s)
        G[r] = g


@njit(cache=True, nogil=True, fastmath=_REASSOC, error_model="numpy")
def train(TH, d, k, trained, out_value, Vt, b, teacher_norm, scale, mask, l2, l1, lr, mu, method, max_steps,
          grad_tol, loss_target, max_loss, status, steps, loss_out, gn_out, first, last):  # fmt: skip
    """Full-batch training of the rows ``first..last`` of ``TH (R, P)`` in place, one
    init after the other, each stopping by the rules of :func:`nnkit.training.train`;
    method 0 gd, 1 momentum, 2 nesterov."""
    P = TH.shape[1]
    w, g, buf = np.empty(P), np.empty(P), np.empty(P)
    s = scratch(d, k, Vt, b)
    for r in range(first, last):
        w[:] = TH[r]
        buf[:] = 0.0
        t = 0
        while True:
            v = loss_grad(w, g, d, k, trained, out_value, teacher_norm, scale, mask, l2, l1, s)
            nq = 0.0
            for p in range(P):
                nq += g[p] * g[p]
            nq = math.sqrt(nq)
            code = _stop_code(t, max_steps, v, nq, loss_target, grad_tol, max_loss)
            if code != _RUNNING:
                status[r], steps[r], loss_out[r], gn_out[r] = code, t, v, nq
                TH[r] = w
                break
            if method == 0:
                for p in range(P):
                    w[p] -= lr * g[p]
            else:
                for p in range(P):
                    buf[p] = mu * buf[p] + g[p]
                    w[p] -= lr * (buf[p] if method == 1 else g[p] + mu * buf[p])
            t += 1
