"""Fused kernels for networks with one hidden layer of up to a few dozen units, all
inits sharing one data matrix: the ``cuda`` backend's fast path.

Thread layout (computed on the host by :func:`plan`): a group of ``G`` consecutive
threads, ``G`` a power of two of at most 32 so that a group never straddles a warp,
holds one init. Lane ``l`` of the group owns hidden units ``j = l + G*u`` for
``u < U``, and keeps their incoming weights, bias and output weight, and the gradient of
each, in registers from the first step to the last. The block stages the samples in
shared-memory tiles of ``TS`` rows. For each sample every lane adds its units'
contributions to the network's output, and the group sums them with butterfly shuffles,
after which every lane holds the same output (IEEE addition commutes), so no lane waits
on another and no two threads ever write one number: gradients are private to the lane
that owns the unit. Lane 0 also owns the output bias.

* :func:`value_and_grad_kernel` gives the data loss ``(R,)`` and its gradient ``(R, P)``.
* :func:`train_kernel` runs full-batch ``gd``, ``momentum`` or ``nesterov`` training to
  the end, each init stopping on its own by the rules of :func:`nnkit.training.train`,
  parameters updated in place.

Parameters are read from and written to rows of ``theta (R, P)`` in nnkit's layout
(``W1 (d, k)`` row-major, ``b1``, ``W_out``, ``b_out``); inside a lane they live in one
local array ``p`` of ``NP = U*d + 2*U + 1`` numbers: ``w[u, i]`` at ``u*d + i``, then the
biases, the output weights and the output bias.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nnkit.core.stops import Stop

from . import pointwise
from . import _shared
from ._target import cuda

#: the code of a running init, as a plain integer for the compiler
RUNNING = int(Stop.RUNNING)

#: threads per block (at most), a multiple of 32
BLOCK = 128
#: numbers of the units a lane owns, ``U * (d + 2)``, beyond which registers run out
UNIT_BUDGET = 40
#: rows of one shared-memory tile of samples hold at most this many numbers
TILE_NUMBERS = 2048
METHODS = ("gd", "momentum", "nesterov")


@dataclass(frozen=True)
class Net:
    """A one-hidden-layer network and its loss, as the kernels need it (hashable: the
    kernels are built and cached per ``Net``)."""

    d: int
    k: int
    activation: str = "relu"
    slope: float = 0.01
    hidden_bias: bool = False
    out_trained: bool = True
    out_value: float = 1.0
    out_bias: bool = False
    loss: str = "squared"
    regularize_bias: bool = False

    def offsets(self):
        """Columns of ``W1``, ``b1``, ``W_out`` and ``b_out`` in a row of theta (-1: absent)."""
        at = self.d * self.k
        b0 = at if self.hidden_bias else -1
        at += self.k if self.hidden_bias else 0
        v0 = at if self.out_trained else -1
        at += self.k if self.out_trained else 0
        c0 = at if self.out_bias else -1
        return 0, b0, v0, c0

    @property
    def size(self) -> int:
        return self.d * self.k + self.k * (self.hidden_bias + self.out_trained) + self.out_bias


def plan(d: int, k: int, budget: int | None = None):
    """``(G, U)``: threads per init (a power of two up to 32) and hidden units per thread
    with ``G * U >= k``, the fewest idle unit slots and ``U * (d + 2) <= budget``; more
    threads on a tie. None when no such layout exists (the network is too wide)."""
    budget = UNIT_BUDGET if budget is None else budget
    best = None
    for G in (32, 16, 8, 4, 2, 1):
        U = -(-k // G)
        if U * (d + 2) > budget:
            continue
        key = (G * U, -G)
        if best is None or key < best[0]:
            best = (key, G, U)
    return None if best is None else best[1:]


def fits(net: Net) -> bool:
    """Whether :func:`plan` finds a thread layout for ``net``."""
    return plan(net.d, net.k) is not None


def grid(R: int, net: Net) -> tuple[int, int]:
    """``(blocks, threads per block)`` for ``R`` inits: blocks of ``BLOCK`` threads, or
    fewer whole warps when all inits fit in one block."""
    G, _ = plan(net.d, net.k)
    threads = min(BLOCK, 32 * -(-R * G // 32))
    return -(-R * G // threads), threads


@lru_cache(maxsize=None)
def _device_functions(net: Net, dtype: str):
    """The per-sample math, specialised to ``net`` and ``dtype``: every size and flag is
    a compile-time constant, so loops unroll and local arrays stay in registers."""
    dt = np.dtype(dtype).type
    G, U = plan(net.d, net.k)
    D, K = net.d, net.k
    UD = U * D
    NP = UD + 2 * U + 1
    TS = max(1, min(256, TILE_NUMBERS // D))
    ZERO, ONE, TWO = dt(0.0), dt(1.0), dt(2.0)
    OUT_VALUE = dt(net.out_value)
    activate, loss_and_slope = pointwise.functions(
        net.activation, net.slope, net.loss == "logistic", dtype
    )
    HB, OT, OB, RB = net.hidden_bias, net.out_trained, net.out_bias, net.regularize_bias
    W0, B0, V0, C0 = net.offsets()

    group_sum = _shared.group_sum(G)

    @cuda.jit(device=True)
    def slot(q, lane):
        """Slot ``q`` of the lane's array ``p``: ``(column in a row of theta or -1,
        trained, regularised)``, the last two 1.0 or 0.0. Loops over ``q`` unroll, so
        this folds to a comparison of ``lane`` and keeps no table in registers."""
        if q < UD:
            u = q // D
            j = lane + G * u
            if j < K:
                return W0 + (q - u * D) * K + j, ONE, ONE
            return -1, ZERO, ZERO
        if q < UD + U:
            j = lane + G * (q - UD)
            if HB and j < K:
                return B0 + j, ONE, ONE if RB else ZERO
            return -1, ZERO, ZERO
        if q < UD + 2 * U:
            j = lane + G * (q - UD - U)
            if OT and j < K:
                return V0 + j, ONE, ONE
            return -1, ZERO, ZERO
        if OB:  # every lane keeps the output bias (all need it); lane 0 stores it
            return C0, ONE, ONE if RB else ZERO
        return -1, ZERO, ZERO

    @cuda.jit(device=True)
    def load(theta, r, lane, p):
        """The lane's parameters of init ``r``; a fixed output layer's weights are the
        constant ``out_value`` (0 for idle unit slots, which then add nothing)."""
        for q in range(NP):
            col = slot(q, lane)[0]
            p[q] = theta[r, col] if col >= 0 else ZERO
        if not OT:
            for u in range(U):
                p[UD + U + u] = OUT_VALUE if lane + G * u < K else ZERO

    @cuda.jit(device=True)
    def store(out, r, lane, values):
        for q in range(NP):
            col = slot(q, lane)[0]
            if col >= 0 and (q < NP - 1 or lane == 0):
                out[r, col] = values[q]

    @cuda.jit(device=True)
    def data_pass(X, y, scale, xs, ys, p, g, act, dact):
        """Add the gradient of the data loss (scaled) of all samples to ``g``; return
        the summed unscaled loss. Every thread of the block must call it (barriers)."""
        n = X.shape[0]
        total = ZERO
        for s0 in range(0, n, TS):
            cuda.syncthreads()  # nobody still reads the previous tile
            for e in range(cuda.threadIdx.x, TS * D, cuda.blockDim.x):
                row = s0 + e // D
                xs[e // D, e % D] = X[row, e % D] if row < n else ZERO
            for e in range(cuda.threadIdx.x, TS, cuda.blockDim.x):
                ys[e] = y[s0 + e] if s0 + e < n else ZERO
            cuda.syncthreads()  # the tile is complete before anyone reads it
            for t in range(min(TS, n - s0)):
                f = ZERO
                for u in range(U):
                    z = p[UD + u]
                    for i in range(D):
                        z += p[u * D + i] * xs[t, i]
                    a, da = activate(z)
                    act[u] = a
                    dact[u] = da
                    f += p[UD + U + u] * a
                f = group_sum(f) + p[NP - 1]
                value, df = loss_and_slope(f, ys[t], scale)
                total += value
                g[NP - 1] += df
                for u in range(U):
                    g[UD + U + u] += df * act[u]
                    dz = df * p[UD + U + u] * dact[u]
                    g[UD + u] += dz
                    for i in range(D):
                        g[u * D + i] += dz * xs[t, i]
        return total

    return NP, TS, ZERO, ONE, TWO, slot, load, store, data_pass, group_sum


@lru_cache(maxsize=None)
def value_and_grad_kernel(net: Net, dtype: str):
    """``kernel[grid(R, net)](theta, X, y, scale, loss, grad)``: data loss ``loss (R,)``
    and its gradient ``grad (R, P)`` of ``theta (R, P)`` on ``X (n, d)``, ``y (n,)``;
    ``scale`` is the objective's factor in front of the summed loss."""
    dt = np.dtype(dtype).type
    NP, TS, ZERO, _, _, _, load, store, data_pass, _ = _device_functions(net, dtype)
    G, U = plan(net.d, net.k)
    D = net.d

    @cuda.jit
    def kernel(theta, X, y, scale, loss, grad):
        tid = cuda.grid(1)
        r, lane = tid // G, tid % G
        R = theta.shape[0]
        row = min(r, R - 1)  # threads past the last init compute on a real one, unseen
        p = cuda.local.array(NP, dt)
        g = cuda.local.array(NP, dt)
        act = cuda.local.array(U, dt)
        dact = cuda.local.array(U, dt)
        xs = cuda.shared.array((TS, D), dt)
        ys = cuda.shared.array(TS, dt)
        load(theta, row, lane, p)
        for q in range(NP):
            g[q] = ZERO
        total = data_pass(X, y, scale, xs, ys, p, g, act, dact)
        if r < R:
            store(grad, r, lane, g)
            if lane == 0:
                loss[r] = scale * total

    return kernel


@lru_cache(maxsize=None)
def train_kernel(net: Net, dtype: str, method: str):
    """``kernel[grid(R, net)](theta, X, y, scale, l2, l1, lr, mu, max_steps, grad_tol,
    loss_target, max_loss, status, steps, loss, grad_norm)``: train every init of
    ``theta (R, P)`` in place; per init write its status code (:class:`nnkit.core.stops.Stop`),
    the updates it took and the objective and gradient norm
    at its final parameters. Scalars must have the dtype of ``theta``."""
    dt = np.dtype(dtype).type
    NP, TS, ZERO, ONE, TWO, slot, load, store, data_pass, group_sum = _device_functions(
        net, dtype
    )
    G, U = plan(net.d, net.k)
    D = net.d
    METHOD = METHODS.index(method)
    NB = NP if METHOD else 1  # momentum buffers

    @cuda.jit
    def kernel(theta, X, y, scale, l2, l1, lr, mu, max_steps, grad_tol, loss_target, max_loss,
               status, steps, loss, grad_norm):  # fmt: skip
        tid = cuda.grid(1)
        r, lane = tid // G, tid % G
        R = theta.shape[0]
        running = r < R
        p = cuda.local.array(NP, dt)
        g = cuda.local.array(NP, dt)
        buf = cuda.local.array(NB, dt)
        act = cuda.local.array(U, dt)
        dact = cuda.local.array(U, dt)
        xs = cuda.shared.array((TS, D), dt)
        ys = cuda.shared.array(TS, dt)
        load(theta, min(r, R - 1), lane, p)
        for q in range(NB):
            buf[q] = ZERO
        for t in range(max_steps + 1):
            # the whole block stops once every init in it has (all threads get here)
            if cuda.syncthreads_or(1 if running else 0) == 0:
                break
            for q in range(NP):
                g[q] = ZERO
            value = scale * data_pass(X, y, scale, xs, ys, p, g, act, dact)
            # penalty and gradient norm; the output bias, kept by every lane, counts once
            part = ZERO
            for q in range(NP):
                _, trained, regularised = slot(q, lane)
                g[q] *= trained  # idle slots and fixed parameters have no gradient
                w = p[q] * regularised
                sign = ONE if w > ZERO else (-ONE if w < ZERO else ZERO)
                if q < NP - 1 or lane == 0:
                    part += l2 * w * w + l1 * abs(w)
                g[q] += TWO * l2 * w + l1 * sign
            value += group_sum(part)
            part = ZERO
            for q in range(NP):
                if q < NP - 1 or lane == 0:
                    part += g[q] * g[q]
            norm = math.sqrt(group_sum(part))
            if running:
                code = _shared.stop_code(t, max_steps, value, norm, loss_target, grad_tol, max_loss)
                if code != RUNNING:
                    running = False
                    if lane == 0:
                        status[r] = code
                        steps[r] = t
                        loss[r] = value
                        grad_norm[r] = norm
            if running:
                for q in range(NP):
                    if METHOD == 0:
                        p[q] -= lr * g[q]
                    else:
                        b = mu * buf[q] + g[q]
                        buf[q] = b
                        p[q] -= lr * (b if METHOD == 1 else g[q] + mu * b)
        if r < R:
            store(theta, r, lane, p)

    return kernel
