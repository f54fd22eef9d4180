"""The exact teacher-student population loss (:mod:`nnkit.objective.population`) on the
GPU: its value and gradient, and all of full-batch training, one block of threads per
init.

The block keeps its init in shared memory from the first step to the last: the
student units ``w_i`` (the first ``K`` columns of ``UT (D, J)``), the teacher's units
beside them (columns ``K..J-1``, loaded once), per column (``cols (4, J)``) the output
weights as the coefficients ``cs`` (students) and ``ct`` (teacher, ``b``), the squared
norms and whether the unit is alive, and the gradient. One
evaluation is three phases with a barrier between them (the formulas are those of the
closed form and of the CPU kernel, :mod:`nnkit.backends.numba_population`):

1. every thread: the squared norms of the student units;
2. a group of ``G`` threads per student unit ``w_i`` (groups take the units in turn):
   each lane takes columns ``j``, the dot product, ``|u| cos t`` and ``|P_w u| = |u|
   sin t`` (from ``|u|^2 - proj^2``, or where that loses digits, nearly parallel or
   opposite, from the residual ``u - proj wh``), the angle and the pair's terms; the
   group sums the row's terms with butterfly shuffles (the same sum in every lane) and
   stores the coefficients ``co[i, j]`` of the gradient ``D_i = sum_j co_ij u_j``;
3. every thread: entries of the gradient, each a sum over ``j`` (in order: results do
   not depend on the launch), and thread 0 the value.

Training adds the gradient norm (per group, then the groups in order), the stopping
rules of :func:`nnkit.training.train` taken by thread 0 for the block, and the update.
Sizes are compile-time constants (kernels are built and cached per :class:`Shape`).
float64 only: a population study trains to gradient norms of 1e-9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nnkit.core.stops import Stop

from . import _shared
from ._target import cuda

RUNNING = int(Stop.RUNNING)
METHODS = ("gd", "momentum", "nesterov")
#: groups (student units handled side by side) per block, at most
GROUPS = 8
#: static shared memory a block may use
SHARED_BYTES = 48 * 1024
_INV_2PI = 1.0 / (2.0 * math.pi)


@dataclass(frozen=True)
class Shape:
    """Students of ``k`` units in ``d`` dimensions, output weights trained or fixed at
    ``out_value``, against a teacher of ``m`` units (hashable: kernels are cached per
    shape)."""

    d: int
    k: int
    m: int
    trained: bool = False
    out_value: float = 1.0

    @property
    def size(self) -> int:
        return self.d * self.k + (self.k if self.trained else 0)

    def lanes(self) -> int:
        """``G``: threads per student unit, a power of two of at most 32 (a warp) and
        not much more than the ``J = k + m`` columns they share."""
        G = 1
        while G < min(32, self.k + self.m):
            G *= 2
        return G

    def groups(self) -> int:
        return min(GROUPS, self.k)

    def shared_bytes(self) -> int:
        J, P = self.k + self.m, self.size
        return 8 * (self.d * J + self.k * J + 4 * J + 3 * self.k + 2 * P + self.groups() + 2)


def fits(shape: Shape) -> bool:
    """Whether a block's shared memory holds the init (else the host computes)."""
    return shape.shared_bytes() <= SHARED_BYTES


def threads(shape: Shape) -> int:
    return shape.lanes() * shape.groups()


@lru_cache(maxsize=None)
def _device_functions(shape: Shape):
    D, K, M = shape.d, shape.k, shape.m
    J, P, DK = K + M, shape.size, shape.d * shape.k
    G, NG = shape.lanes(), shape.groups()
    ROUNDS = -(-K // NG)  # every group takes the same number of rows (uniform shuffles)
    TRAINED, OUT_VALUE = shape.trained, float(shape.out_value)

    group_sum = _shared.group_sum(G)

    @cuda.jit(device=True)
    def load(theta, r, Vt, b, UT, cols):
        """Init ``r`` of ``theta`` and the teacher into the block's shared arrays."""
        cs, ct = cols[0], cols[1]
        for e in range(cuda.threadIdx.x, D * J, cuda.blockDim.x):
            a, j = e // J, e % J
            UT[a, j] = theta[r, a * K + j] if j < K else Vt[j - K, a]
        for j in range(cuda.threadIdx.x, J, cuda.blockDim.x):
            if j < K:
                cs[j] = theta[r, DK + j] if TRAINED else OUT_VALUE
                ct[j] = 0.0
            else:
                cs[j] = 0.0
                ct[j] = b[j - K]

    @cuda.jit(device=True)
    def evaluate(UT, cols, co, rows, g, teacher_norm, scale, mask, l2, l1):
        """The objective (returned in thread 0) and its gradient into ``g``. Every
        thread of the block must call it (barriers)."""
        cs, ct, nu2, live = cols[0], cols[1], cols[2], cols[3]
        tid = cuda.threadIdx.x
        lane, grp = tid % G, tid // G
        cuda.syncthreads()  # the parameters are in place
        for j in range(tid, J, cuda.blockDim.x):
            n2 = 0.0
            for a in range(D):
                n2 += UT[a, j] * UT[a, j]
            nu2[j] = n2
            live[j] = 1.0 if n2 > 0.0 else 0.0
        cuda.syncthreads()  # norms ready
        for rnd in range(ROUNDS):
            i = grp + rnd * NG
            ii = min(i, K - 1)
            nai = math.sqrt(nu2[ii])
            invi = 1.0 / nai if nai > 0.0 else 0.0
            li = live[ii] * _INV_2PI  # a dead unit (w = 0) takes no part
            Ka = 0.0
            Tb = 0.0
            cw = 0.0
            for j in range(lane, J, G):
                dot = 0.0
                for a in range(D):
                    dot += UT[a, ii] * UT[a, j]
                p = dot * invi
                rest = nu2[j] - p * p
                npp = math.sqrt(max(rest, 0.0))
                if j == ii:
                    npp = 0.0  # the unit with itself: t = 0
                elif rest <= 0.5 * nu2[j] and nu2[j] > 0.0:
                    c = p * invi
                    r2 = 0.0
                    for a in range(D):
                        x = UT[a, j] - c * UT[a, ii]
                        r2 += x * x
                    npp = math.sqrt(r2)
                t = math.atan2(npp, p)
                Kij = nai * npp + (math.pi - t) * dot
                ws = cs[j] * live[j] * li
                wt = ct[j] * li
                Ka += Kij * ws
                Tb += Kij * wt
                cw += (ws - wt) * npp
                if i < K:
                    co[i, j] = (ws - wt) * (math.pi - t)
            Ka = group_sum(Ka)
            Tb = group_sum(Tb)
            cw = group_sum(cw)
            if lane == 0 and i < K:
                rows[0, i] = Ka  # (K a)_i
                rows[1, i] = Tb  # (T b)_i
                rows[2, i] = cw * invi
        cuda.syncthreads()  # every row done
        for e in range(tid, P, cuda.blockDim.x):
            if e < DK:
                a, i = e // K, e % K
                s = 0.0
                for j in range(J):
                    s += co[i, j] * UT[a, j]
                grad = scale * 2.0 * cs[i] * live[i] * (s + rows[2, i] * UT[a, i])
                x = UT[a, i]
            else:
                i = e - DK
                grad = scale * 2.0 * (rows[0, i] - rows[1, i])
                x = cs[i]
            if mask[e] != 0.0:
                grad += 2.0 * l2 * x + l1 * (1.0 if x > 0 else (-1.0 if x < 0 else 0.0))
            g[e] = grad
        value = 0.0
        if tid == 0:
            value = teacher_norm
            for i in range(K):
                value += cs[i] * (rows[0, i] - 2.0 * rows[1, i])
            value *= scale
            if l2 != 0.0 or l1 != 0.0:
                for e in range(P):
                    x = UT[e // K, e % K] if e < DK else cs[e - DK]
                    value += mask[e] * (l2 * x * x + l1 * abs(x))
        cuda.syncthreads()  # the gradient is complete
        return value

    return J, P, DK, G, NG, group_sum, load, evaluate


@lru_cache(maxsize=None)
def value_and_grad_kernel(shape: Shape):
    """``kernel[R, threads(shape)](theta, Vt, b, teacher_norm, scale, mask, l2, l1, value,
    grad)``: objective ``value (R,)`` and gradient ``grad (R, P)`` of ``theta (R, P)``
    against the teacher ``Vt (m, d)`` (units as rows) with output weights ``b (m,)``."""
    J, P, DK, G, NG, _, load, evaluate = _device_functions(shape)
    D, K = shape.d, shape.k
    f8 = np.float64

    @cuda.jit
    def kernel(theta, Vt, b, teacher_norm, scale, mask, l2, l1, value, grad):
        r = cuda.blockIdx.x
        UT = cuda.shared.array((D, J), f8)
        cols = cuda.shared.array((4, J), f8)
        co = cuda.shared.array((K, J), f8)
        rows = cuda.shared.array((3, K), f8)
        g = cuda.shared.array(P, f8)
        load(theta, r, Vt, b, UT, cols)
        v = evaluate(UT, cols, co, rows, g, teacher_norm, scale, mask, l2, l1)
        for e in range(cuda.threadIdx.x, P, cuda.blockDim.x):
            grad[r, e] = g[e]
        if cuda.threadIdx.x == 0:
            value[r] = v

    return kernel


@lru_cache(maxsize=None)
def train_kernel(shape: Shape, method: str):
    """``kernel[R, threads(shape)](theta, Vt, b, teacher_norm, scale, mask, l2, l1, lr,
    mu, max_steps, grad_tol, loss_target, max_loss, status, steps, loss, grad_norm)``:
    train every init of ``theta (R, P)`` in place, each block one init to its stop by
    the rules of :func:`nnkit.training.train`, writing its status code, the updates it
    took, and the objective and gradient norm at its final parameters."""
    J, P, DK, G, NG, group_sum, load, evaluate = _device_functions(shape)
    D, K = shape.d, shape.k
    METHOD = METHODS.index(method)
    NB = P if METHOD else 1
    f8 = np.float64

    @cuda.jit
    def kernel(theta, Vt, b, teacher_norm, scale, mask, l2, l1, lr, mu, max_steps, grad_tol, loss_target,
               max_loss, status, steps, loss, grad_norm):  # fmt: skip
        r = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        UT = cuda.shared.array((D, J), f8)
        cols = cuda.shared.array((4, J), f8)
        co = cuda.shared.array((K, J), f8)
        rows = cuda.shared.array((3, K), f8)
        g = cuda.shared.array(P, f8)
        buf = cuda.shared.array(NB, f8)
        part = cuda.shared.array(NG, f8)
        stop = cuda.shared.array(1, np.int64)
        load(theta, r, Vt, b, UT, cols)
        for e in range(tid, NB, cuda.blockDim.x):
            buf[e] = 0.0
        for t in range(max_steps + 1):
            value = evaluate(UT, cols, co, rows, g, teacher_norm, scale, mask, l2, l1)
            s = 0.0
            for e in range(tid, P, cuda.blockDim.x):
                s += g[e] * g[e]
            s = group_sum(s)
            if tid % G == 0:
                part[tid // G] = s
            cuda.syncthreads()  # the groups' parts of the norm are in
            if tid == 0:
                total = 0.0
                for q in range(NG):
                    total += part[q]
                norm = math.sqrt(total)
                code = _shared.stop_code(t, max_steps, value, norm, loss_target, grad_tol, max_loss)
                stop[0] = code
                if code != RUNNING:
                    status[r] = code
                    steps[r] = t
                    loss[r] = value
                    grad_norm[r] = norm
            cuda.syncthreads()  # the block's decision is made
            if stop[0] != RUNNING:
                break
            for e in range(tid, P, cuda.blockDim.x):
                if METHOD == 0:
                    delta = g[e]
                else:
                    bv = mu * buf[e] + g[e]
                    buf[e] = bv
                    delta = bv if METHOD == 1 else g[e] + mu * bv
                if e < DK:
                    UT[e // K, e % K] -= lr * delta
                else:
                    cols[0, e - DK] -= lr * delta
        cuda.syncthreads()  # the last update is in
        for e in range(tid, P, cuda.blockDim.x):
            theta[r, e] = UT[e // K, e % K] if e < DK else cols[0, e - DK]

    return kernel
