"""Exact Hessians of the sampled objective for a batch of networks (the R-operator).

:func:`hvp` applies Pearlmutter's R-operator (forward-over-reverse differentiation) to
the back-propagation of :class:`~nnkit.backends.reference.ReferenceKernel`: for every
network ``r`` it returns ``H(theta_r) @ V_r`` exactly, with no finite differences, at
the cost of about two gradients. Written once against an array namespace ``xp``.

Write ``R{q}`` for the directional derivative ``d/dt q(theta + t V)`` at ``t = 0`` and
``V_W``, ``V_b``, ``v_out``, ``v_bo`` for the blocks of ``V``. With ``h_0 = X``,
``z_l = h_{l-1} W_l + b_l``, ``h_l = a_l(z_l)``, ``f = h_L w_out + b_out`` (or
``c * sum_k h_L[k]`` for a fixed output layer of weight ``c``), ``g = dE/df`` and
``delta_l = dE/dz_l``, the forward R-pass is::

    R{h_0} = 0
    R{z_l} = R{h_{l-1}} W_l + h_{l-1} V_W_l + V_b_l
    R{h_l} = a_l'(z_l) * R{z_l}
    R{f}   = R{h_L} w_out + h_L v_out + v_bo            (fixed: c * sum_k R{h_L}[k])

and the backward R-pass (the gradient's own recursion, differentiated)::

    R{g}        = L''(f) * R{f}
    R{dE/dw_out} = sum_i (R{h_L} g + h_L R{g}),    R{dE/db_out} = sum_i R{g}
    R{dE/dh_L}  = R{g} w_out + g v_out                   (fixed: c * R{g})
    R{delta_l}  = R{dE/dh_l} * a_l'(z_l) + dE/dh_l * a_l''(z_l) * R{z_l}
    R{dE/dW_l}  = R{h_{l-1}}^T delta_l + h_{l-1}^T R{delta_l},  R{dE/db_l} = sum_i R{delta_l}
    R{dE/dh_{l-1}} = R{delta_l} W_l^T + delta_l V_W_l^T

with ``L''(f) = 2 s`` (squared) or ``s y^2 sigmoid(m) (1 - sigmoid(m))``, ``m = -y f``
(logistic; ``y^2 = 1`` for labels ``+-1``), ``s`` the loss scale (``c/n`` or ``c``).
The L2 penalty adds ``2 l2 mask * V``. The L1 penalty ``l1 |w|`` is piecewise linear:
its Hessian is 0 wherever it exists (every ``w != 0``), so it adds nothing here; ReLU
and leaky ReLU likewise have ``a'' = 0`` away from their kink at 0.

Directions carry their own axis: :func:`hvp` works on ``(R, B, ...)`` arrays, so B
directions per network share one ordinary forward pass. :func:`hessian` builds the
whole matrix another way, from the per-sample Jacobians (forward mode): pushing all P
basis vectors through the R-pass would multiply mostly zeros, in one small product
per direction.
"""

from __future__ import annotations

from array_api_compat import array_namespace, is_numpy_array

from ..backends import host_threads
from ..backends.reference import ReferenceKernel

#: bytes the per-sample Jacobians of one slice of networks may take, by default: a
#: slice that stays in the cache is faster than one large slice (3.5x at 200 networks
#: of 56 parameters and 160 samples, with one slice per core)
SLICE_BYTES = 16 * 2**20
#: bytes the ``(R, B, n, width)`` R-pass intermediates of one block of directions may
#: take: the path of networks too large for their Jacobians to fit in ``SLICE_BYTES``
MEMORY_BUDGET = 256 * 2**20


def _blocks(xp, layout, V):
    """Blocks of directions ``V (R, B, P)``: name -> ``(R, B, *shape)``."""
    lead = tuple(V.shape[:-1])
    return {
        b.name: xp.reshape(V[..., b.offset : b.offset + b.size], lead + b.shape)
        for b in layout.blocks
    }


def _hvp_batch(kernel, xp, theta, V, X, y):
    """``H(theta_r) @ V[r, k]`` for ``theta (R, P)``, ``V (R, B, P)`` -> ``(R, B, P)``.

    The ordinary forward/backward quantities have shape ``(R, 1, n, w)`` and broadcast
    against the R-quantities ``(R, B, n, w)``; ``X`` is ``(n, d)`` or ``(R, n, d)``.
    """
    lay, acts, spec = kernel.layout, kernel.activations, kernel.spec
    Z, H, f = kernel.forward(xp, theta, X)
    _, g = spec.data_loss(xp, f, y)

    def ex(a):  # (R, ...) -> (R, 1, ...)
        return a[:, None]

    H = [X if X.ndim == 2 else ex(X)] + [ex(h) for h in H[1:]]
    Z = [None] + [ex(z) for z in Z[1:]]
    W = [None] + [ex(lay.weights(theta, l)) for l in range(1, lay.depth + 1)]
    d1 = [None] + [acts[l].derivative(xp, Z[l], H[l]) for l in range(1, lay.depth + 1)]
    VB = _blocks(xp, lay, V)

    # forward R-pass
    Rz, Rh = [None], [None]
    for l in range(1, lay.depth + 1):
        rz = xp.matmul(H[l - 1], VB[f"W{l}"])
        if l > 1:
            rz = rz + xp.matmul(Rh[l - 1], W[l])
        if lay.bias[l - 1]:
            rz = rz + VB[f"b{l}"][..., None, :]
        Rz.append(rz)
        Rh.append(d1[l] * rz)
    if lay.output_trained:
        w_out = ex(lay.view(theta, "W_out"))[..., None]  # (R, 1, w, 1)
        Rf = (xp.matmul(Rh[-1], w_out) + xp.matmul(H[-1], VB["W_out"][..., None]))[..., 0]
    else:
        Rf = lay.output_value * xp.sum(Rh[-1], axis=-1)
    if lay.output_bias:
        Rf = Rf + VB["b_out"][..., None]

    # backward R-pass
    g = ex(g)[..., None]  # (R, 1, n, 1)
    Rg = (ex(spec.curvature(xp, f, y)) * Rf)[..., None]  # (R, B, n, 1)
    out = {}
    if lay.output_trained:
        out["W_out"] = xp.sum(Rh[-1] * g + H[-1] * Rg, axis=-2)
        w_row = xp.matrix_transpose(w_out)  # (R, 1, 1, w)
        dH, RdH = g * w_row, Rg * w_row + g * VB["W_out"][..., None, :]
    else:
        dH, RdH = lay.output_value * g, lay.output_value * Rg
    if lay.output_bias:
        out["b_out"] = xp.sum(Rg[..., 0], axis=-1)
    for l in range(lay.depth, 0, -1):
        dZ = dH * d1[l]
        RdZ = RdH * d1[l] + dH * acts[l].second(xp, Z[l], H[l]) * Rz[l]
        gW = xp.matmul(xp.matrix_transpose(H[l - 1]), RdZ)
        if l > 1:
            gW = gW + xp.matmul(xp.matrix_transpose(Rh[l - 1]), dZ)
        out[f"W{l}"] = gW
        if lay.bias[l - 1]:
            out[f"b{l}"] = xp.sum(RdZ, axis=-2)
        if l > 1:
            Wt, VWt = xp.matrix_transpose(W[l]), xp.matrix_transpose(VB[f"W{l}"])
            dH, RdH = xp.matmul(dZ, Wt), xp.matmul(RdZ, Wt) + xp.matmul(dZ, VWt)
    lead = tuple(V.shape[:-1])
    HV = xp.concat([xp.reshape(out[b.name], lead + (b.size,)) for b in lay.blocks], axis=-1)
    if spec.l2:
        HV = HV + (2.0 * spec.l2) * kernel.penalty_mask(xp, theta) * V
    return HV


def hvp(model, spec, theta, V, X, y, xp=None):
    """Hessian-vector products ``H(theta_r) @ V_r`` of the full objective: ``(R, P)``.

    ``theta, V (R, P)``; ``X (n, d)`` shared or ``(R, n, d)`` per network; ``y (n,)`` or
    ``(R, n)``. Exact (R-operator); the L1 penalty contributes 0 (see the module doc).
    """
    xp = xp if xp is not None else array_namespace(theta)
    kernel = ReferenceKernel(model, spec, xp)
    return _hvp_batch(kernel, xp, theta, V[:, None, :], X, y)[:, 0, :]


def _jacobians_hessian(kernel, xp, theta, X, y):
    """Full Hessians ``(R, P, P)`` from the per-sample Jacobians (forward mode).

    Per sample ``i``: ``H = sum_i L''_i grad f_i grad f_i^T + g_i hess f_i``. The
    Jacobians ``J{z_l}``, ``J{h_l}`` (of every hidden layer, with respect to the
    parameters of layers ``<= l`` only) go forward, ``J{delta_l}`` (``delta_l =
    df/dz_l``, with respect to all parameters) backward, as products with the
    weights in which the parameter axis joins the samples' (few large products, not
    one per direction); the second-order term of a row of ``W_l`` is then
    ``sum_i g_i (h_{l-1}[a] J{delta_l}[b] + delta_l[b] J{h_{l-1}}[a])``, a product over
    the samples. Arrays are ``(R, n, P_l, width)``: the parameter axis before the
    units.
    """
    lay, acts, spec = kernel.layout, kernel.activations, kernel.spec
    R, P = theta.shape
    Z, H, f = kernel.forward(xp, theta, X)
    _, g = spec.data_loss(xp, f, y)  # dE/df (R, n)
    curv = spec.curvature(xp, f, y)  # d2E/df2 (R, n)
    n, L, dt = f.shape[-1], lay.depth, theta.dtype
    blocks = {b.name: b for b in lay.blocks}
    H = [X if X.ndim == 3 else xp.broadcast_to(X, (R,) + tuple(X.shape))] + list(H[1:])
    W = [None] + [lay.weights(theta, l) for l in range(1, L + 1)]
    d1 = [None] + [acts[l].derivative(xp, Z[l], H[l]) for l in range(1, L + 1)]
    d2 = [None] + [acts[l].second(xp, Z[l], H[l]) for l in range(1, L + 1)]
    end = [0] + [blocks[f"b{l}"].offset + blocks[f"b{l}"].size if lay.bias[l - 1]
                 else blocks[f"W{l}"].offset + blocks[f"W{l}"].size for l in range(1, L + 1)]  # fmt: skip

    def times(J, M):  # J (R, n, Q, a) @ M (R, a, b) -> (R, n, Q, b)
        Rr, nn, Q, a = J.shape
        return xp.reshape(xp.matmul(xp.reshape(J, (Rr, nn * Q, a)), M), (Rr, nn, Q, M.shape[-1]))

    # forward: J{z_l} over the parameters of layers <= l
    Jz, Jh = [None], [None]
    for l in range(1, L + 1):
        A, B = W[l].shape[-2:]
        direct = xp.reshape(H[l - 1][..., :, None, None] * xp.eye(B, dtype=dt), (R, n, A * B, B))
        parts = [times(Jh[l - 1], W[l])] if l > 1 else []
        parts.append(direct)
        if lay.bias[l - 1]:
            parts.append(xp.broadcast_to(xp.eye(B, dtype=dt), (R, n, B, B)))
        Jz.append(xp.concat(parts, axis=2))
        Jh.append(d1[l][..., None, :] * Jz[l])

    def pad(J):  # (R, n, Q, w) -> (R, n, P, w) with zero columns for the later parameters
        extra = P - J.shape[2]
        return J if extra == 0 else xp.concat([J, xp.zeros((R, n, extra, J.shape[-1]), dtype=dt)], axis=2)

    # backward: delta_L = df/dz_L and its Jacobian over all parameters
    wL = lay.widths[-1]
    if lay.output_trained:
        w_out = lay.view(theta, "W_out")[:, None, :]  # (R, 1, w)
        delta = w_out * d1[L]
        first = (w_out * d2[L])[..., None, :] * Jz[L]
        parts = [first, d1[L][..., None, :] * xp.eye(wL, dtype=dt)]
        if lay.output_bias:
            parts.append(xp.zeros((R, n, 1, wL), dtype=dt))
        Jd = xp.concat(parts, axis=2)
    else:
        delta = lay.output_value * d1[L]
        Jd = pad((lay.output_value * d2[L])[..., None, :] * Jz[L])

    gradf, second = [None] * (L + 1), [None] * (L + 1)  # per layer: (R, n, rows) and (R, rows, P)
    gc = g[..., None]  # (R, n, 1)
    for l in range(L, 0, -1):
        A, B = W[l].shape[-2:]
        Hp = H[l - 1]
        # rows of W_l: sum_i g_i (h[a] Jd[b] + delta[b] Jh_{l-1}[a])
        t1 = xp.matmul(xp.matrix_transpose(gc * Hp), xp.reshape(Jd, (R, n, P * B)))
        S = xp.permute_dims(xp.reshape(t1, (R, A, P, B)), (0, 1, 3, 2))  # (R, A, B, P)
        if l > 1:
            Q = Jh[l - 1].shape[2]
            t2 = xp.matmul(xp.matrix_transpose(gc * delta), xp.reshape(Jh[l - 1], (R, n, Q * A)))
            t2 = xp.permute_dims(xp.reshape(t2, (R, B, Q, A)), (0, 3, 1, 2))  # (R, A, B, Q)
            S = S + xp.concat([t2, xp.zeros((R, A, B, P - Q), dtype=dt)], axis=-1)
        rows = [xp.reshape(S, (R, A * B, P))]
        grads = [xp.reshape(Hp[..., :, None] * delta[..., None, :], (R, n, A * B))]
        if lay.bias[l - 1]:
            rows.append(xp.matrix_transpose(xp.sum(gc[..., None] * Jd, axis=1)))
            grads.append(delta)
        second[l], gradf[l] = xp.concat(rows, axis=1), xp.concat(grads, axis=-1)
        if l > 1:  # delta_{l-1} = a'(z_{l-1}) * (delta_l W_l^T), and its Jacobian
            Wt = xp.matrix_transpose(W[l])
            u = xp.matmul(delta, Wt)
            Ju = times(Jd, Wt)
            oW = blocks[f"W{l}"].offset
            direct = xp.reshape(delta[..., None, :, None] * xp.eye(A, dtype=dt)[:, None, :], (R, n, A * B, A))
            Ju = xp.concat([Ju[:, :, :oW], Ju[:, :, oW : oW + A * B] + direct, Ju[:, :, oW + A * B :]], axis=2)
            e = end[l - 1]
            Jd = d1[l - 1][..., None, :] * Ju
            Jd = xp.concat([Jd[:, :, :e] + (d2[l - 1] * u)[..., None, :] * Jz[l - 1], Jd[:, :, e:]], axis=2)
            delta = d1[l - 1] * u
    rows_out, grads_out = [], []
    if lay.output_trained:
        Q = Jh[L].shape[2]
        t = xp.matrix_transpose(xp.sum(gc[..., None] * Jh[L], axis=1))  # (R, w, Q)
        rows_out.append(xp.concat([t, xp.zeros((R, wL, P - Q), dtype=dt)], axis=-1))
        grads_out.append(H[L])
    if lay.output_bias:
        rows_out.append(xp.zeros((R, 1, P), dtype=dt))
        grads_out.append(xp.ones((R, n, 1), dtype=dt))
    second = xp.concat(second[1:] + rows_out, axis=1)
    G = xp.concat(gradf[1:] + grads_out, axis=-1)  # grad f_i (R, n, P)
    Hm = second + xp.matmul(xp.matrix_transpose(G), curv[..., None] * G)
    if spec.l2:
        mask = kernel.penalty_mask(xp, theta)
        Hm = Hm + (2.0 * spec.l2) * mask[..., None] * xp.eye(P, dtype=dt)
    return Hm


def jacobian_bytes(n, layout, itemsize=8):
    """Bytes the per-sample Jacobians (about three ``(n, P, width)`` arrays per hidden
    layer) and the ``(P, P)`` result of one network take in :func:`hessian`."""
    P = layout.size
    return (3 * n * P * (sum(layout.widths) + 1) + 3 * P * P) * itemsize


def default_rows(n, layout, itemsize=8, budget=SLICE_BYTES):
    """Networks per slice of :func:`hessian`: as many as fit in ``budget`` bytes; at
    least 1."""
    return int(max(1, budget // jacobian_bytes(n, layout, itemsize)))


def default_block(R, n, layout, itemsize=8, budget=MEMORY_BUDGET):
    """Basis vectors per block of the R-operator path of :func:`hessian` so that the
    ``(R, B, n, width)`` R-pass intermediates (about four per hidden unit: ``R{z}``,
    ``R{h}``, ``R{dE/dh}``, ``R{delta}``) plus the ``(R, B, P)`` directions and results
    fit in ``budget`` bytes; at least 1, at most P."""
    P = layout.size
    per_direction = R * (4 * n * (sum(layout.widths) + 1) + 2 * P) * itemsize
    return int(max(1, min(P, budget // per_direction)))


def _rop_hessian(kernel, xp, theta, X, y):
    """Column ``j`` is the R-operator's ``H e_j``, a block of basis vectors at a time
    (memory ``default_block``); for networks whose Jacobians would not fit."""
    R, P = theta.shape
    B = default_block(R, X.shape[-2], kernel.layout, theta.dtype.itemsize)
    eye = xp.eye(P, dtype=theta.dtype)
    cols = []
    for j in range(0, P, B):
        E = xp.broadcast_to(eye[j : j + B][None], (R, min(B, P - j), P))
        cols.append(xp.matrix_transpose(_hvp_batch(kernel, xp, theta, E, X, y)))
    return xp.concat(cols, axis=-1)


def hessian(model, spec, theta, X, y, xp=None, rows=None):
    """Full Hessians ``(R, P, P)`` of the objective of every network.

    Exact, from the per-sample Jacobians of the network (forward mode, see
    :func:`_jacobians_hessian`), ``rows`` networks at a time (default
    :func:`default_rows`: slices that stay in the cache); NumPy arrays are cut into one
    range of networks per core, run side by side. A network whose Jacobians alone
    exceed :data:`MEMORY_BUDGET` gets its columns from the R-operator instead, a block
    of basis vectors at a time. The result is symmetrised, ``(H +
    H^T) / 2``: the computation is exact, so this only removes rounding-level
    asymmetry and makes ``eigvalsh`` see exactly what it assumes.
    """
    xp = xp if xp is not None else array_namespace(theta)
    kernel = ReferenceKernel(model, spec, xp)
    R, n = theta.shape[0], X.shape[-2]
    if jacobian_bytes(n, model.layout, theta.dtype.itemsize) > MEMORY_BUDGET:
        Hm = _rop_hessian(kernel, xp, theta, X, y)
        return 0.5 * (Hm + xp.matrix_transpose(Hm))
    step = rows or default_rows(n, model.layout, theta.dtype.itemsize)

    def part(first, last):
        out = []
        for a in range(first, last, step):
            b = min(last, a + step)
            Xa = X if X.ndim == 2 else X[a:b]
            ya = y if y.ndim == 1 else y[a:b]
            out.append(_jacobians_hessian(kernel, xp, theta[a:b], Xa, ya))
        return out

    if is_numpy_array(theta):
        parts = [h for chunk in host_threads.map_slices(part, R, step) for h in chunk]
    else:
        parts = part(0, R)
    Hm = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
    return 0.5 * (Hm + xp.matrix_transpose(Hm))
