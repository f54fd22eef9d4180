"""Device functions more than one kernel uses."""

from __future__ import annotations

from functools import lru_cache

from nnkit.core.stops import stop_code as _stop_code

from ._target import cuda

_FULL_MASK = 0xFFFFFFFF

#: the stopping rules of :func:`nnkit.training.train` for one init (the same Python
#: function the CPU kernels compile)
stop_code = cuda.jit(device=True)(_stop_code)


@lru_cache(maxsize=None)
def group_sum(G: int):
    """A device function: the sum of ``x`` over a group of ``G`` consecutive lanes (a
    power of two, at most a warp), by butterfly shuffles, the same in every lane.
    Every lane of the group must call it."""

    @cuda.jit(device=True)
    def total(x):
        m = G // 2
        while m > 0:
            x += cuda.shfl_xor_sync(_FULL_MASK, x, m)
            m //= 2
        return x

    return total
