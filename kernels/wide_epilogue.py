"""The element-wise middle of a gradient step of a wide one-hidden-layer network, between
the two GEMMs that cuBLAS does for all R inits at once (the ``cuda`` backend's path for
networks too wide for :mod:`.small_mlp`)::

    Z        = [X 1] @ [W; b]           (n, R*k)    GEMM
    f        = sum_j v_j a(Z_j) + c     (n, R)    \\
    dZ       = dL/df * v * a'(Z)        (n, R, k)  | this kernel: one read of Z,
    g_v      = sum_n dL/df * a(Z)       (R, k)     | dZ written over it
    g_c, L   = sum_n dL/df, sum_n L     (R,)      /
    [gW; gb] = [X 1]^T @ dZ             (d+1, R*k)  GEMM

Thread layout (host side: :func:`grid`): block ``(r, tile)`` takes init ``r`` and the
``NS`` samples of ``tile``; thread ``t`` owns units ``j = t + threads * u``, ``u < JU``,
so a warp reads consecutive numbers of a row of Z. Per sample the block sums the units'
contributions to ``f``: butterfly shuffles inside each warp, then the warps' sums
through shared memory, added by every thread in the same order. Each block writes its
own partial sums to a ``(T, R, ...)`` slot, and the caller adds the T tiles up, so the
result does not depend on the order in which blocks run and nothing is written twice.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import pointwise
from ._target import cuda

#: samples per block
NS = 32
_FULL_MASK = 0xFFFFFFFF


def threads(k: int) -> int:
    """Threads per block for ``k`` hidden units: whole warps, at most 128."""
    return min(128, 32 * -(-k // 32))


def grid(R: int, n: int, k: int):
    """``((R, T), threads)``: the launch geometry and ``T``, the number of sample tiles."""
    return (R, tiles(n)), threads(k)


def tiles(n: int) -> int:
    return -(-n // NS)


@lru_cache(maxsize=None)
def kernel(k: int, activation: str, slope: float, logistic: bool, dtype: str):
    """``kernel[grid(R, n, k)](Z, v, c, y, scale, loss_part, gc_part, gv_part)``.

    ``Z (n, R, k)``: pre-activations, overwritten with ``dZ``; ``v (R, k)`` output
    weights; ``c (R,)`` output biases; ``y (n,)``; ``scale`` the objective's factor.
    Writes ``loss_part (T, R)`` (unscaled summed loss), ``gc_part (T, R)`` and
    ``gv_part (T, R, k)``, one slot per tile of samples.
    """
    dt = np.dtype(dtype).type
    ZERO = dt(0.0)
    BLOCK = threads(k)
    WARPS = BLOCK // 32
    JU = -(-k // BLOCK)
    activate, loss_and_slope = pointwise.functions(activation, slope, logistic, dtype)

    @cuda.jit
    def epilogue(Z, v, c, y, scale, loss_part, gc_part, gv_part):
        r, tile = cuda.blockIdx.x, cuda.blockIdx.y
        t = cuda.threadIdx.x
        n = Z.shape[0]
        vs = cuda.local.array(JU, dt)
        acc = cuda.local.array(JU, dt)
        a_s = cuda.local.array(JU, dt)
        da_s = cuda.local.array(JU, dt)
        z_next = cuda.local.array(JU, dt)
        warp_sums = cuda.shared.array(WARPS, dt)
        first, end = tile * NS, min(n, (tile + 1) * NS)
        for u in range(JU):
            j = t + BLOCK * u
            vs[u] = v[r, j] if j < k else ZERO
            acc[u] = ZERO
            z_next[u] = Z[first, r, j] if j < k else ZERO
        cr = c[r]
        total = ZERO
        gc = ZERO
        for s in range(first, end):
            part = ZERO
            for u in range(JU):
                j = t + BLOCK * u
                if j < k:
                    a, da = activate(z_next[u])
                    a_s[u] = a
                    da_s[u] = da
                    part += vs[u] * a
                    if s + 1 < end:  # the next sample's load overlaps this one's sums
                        z_next[u] = Z[s + 1, r, j]
            m = 16
            while m > 0:
                part += cuda.shfl_xor_sync(_FULL_MASK, part, m)
                m //= 2
            if t % 32 == 0:
                warp_sums[t // 32] = part
            cuda.syncthreads()  # every warp's sum is in shared memory
            f = cr
            for w in range(WARPS):
                f += warp_sums[w]
            cuda.syncthreads()  # all have read the sums before the next sample's
            value, df = loss_and_slope(f, y[s], scale)
            total += value
            gc += df
            for u in range(JU):
                j = t + BLOCK * u
                if j < k:
                    acc[u] += df * a_s[u]
                    Z[s, r, j] = df * vs[u] * da_s[u]
        for u in range(JU):
            j = t + BLOCK * u
            if j < k:
                gv_part[tile, r, j] = acc[u]
        if t == 0:
            loss_part[tile, r] = total
            gc_part[tile, r] = gc

    return epilogue
