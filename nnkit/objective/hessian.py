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
directions per network share one ordinary forward pass, and :func:`hessian` feeds it
blocks of basis vectors.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ..backends.reference import ReferenceKernel

#: bytes the ``(R, B, n, width)`` intermediates of one block may take, by default
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


def default_block(R, n, layout, itemsize=8, budget=MEMORY_BUDGET):
    """Basis vectors per block so that the ``(R, B, n, width)`` R-pass intermediates
    (about four per hidden unit: ``R{z}``, ``R{h}``, ``R{dE/dh}``, ``R{delta}``) plus the
    ``(R, B, P)`` directions and results fit in ``budget`` bytes; at least 1, at most P."""
    P = layout.size
    per_direction = R * (4 * n * (sum(layout.widths) + 1) + 2 * P) * itemsize
    return int(max(1, min(P, budget // per_direction)))


def hessian(model, spec, theta, X, y, xp=None, block=None):
    """Full Hessians ``(R, P, P)`` of the objective of every network.

    Column ``j`` is ``hvp`` with the basis vector ``e_j``; ``block`` basis vectors are
    pushed through one R-pass at a time (default :func:`default_block`, a 256 MB
    budget). The result is symmetrised, ``(H + H^T) / 2``: the R-pass is exact, so
    this only removes rounding-level asymmetry and makes ``eigvalsh`` see exactly what
    it assumes.
    """
    xp = xp if xp is not None else array_namespace(theta)
    kernel = ReferenceKernel(model, spec, xp)
    R, P = theta.shape
    n = X.shape[-2]
    B = block or default_block(R, n, model.layout, theta.dtype.itemsize)
    eye = xp.eye(P, dtype=theta.dtype)
    cols = []
    for j in range(0, P, B):
        E = xp.broadcast_to(eye[j : j + B][None], (R, min(B, P - j), P))
        cols.append(xp.matrix_transpose(_hvp_batch(kernel, xp, theta, E, X, y)))
    Hm = xp.concat(cols, axis=-1)
    return 0.5 * (Hm + xp.matrix_transpose(Hm))
