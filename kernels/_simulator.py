"""Warp shuffles for Numba's CUDA simulator, which has none.

The simulator runs every thread of a block as a Python thread and offers block-wide
barriers only. ``shfl_xor_sync`` is emulated with them: each thread posts its value,
waits for the whole block, reads its partner's, and waits again. That equals the
hardware shuffle whenever every thread of the block makes the same sequence of shuffle
calls, which nnkit's kernels do (their shuffles sit outside every data-dependent
branch); a kernel that shuffles inside a divergent branch would hang here.
"""

from __future__ import annotations

import threading


def _shfl_xor_sync(self, mask, value, lane_mask):
    thread = threading.current_thread()
    posted = thread._manager.__dict__.setdefault("_nnkit_shuffle", {})
    posted[thread.thread_id] = value
    thread.syncthreads()  # every thread has posted
    partner = posted[thread.thread_id ^ lane_mask]
    thread.syncthreads()  # every thread has read before the next shuffle posts
    return partner


def install() -> None:
    """Give the simulator's fake ``cuda`` module ``shfl_xor_sync`` if it lacks it."""
    from numba.cuda.simulator import kernelapi

    if not hasattr(kernelapi.FakeCUDAModule, "shfl_xor_sync"):
        kernelapi.FakeCUDAModule.shfl_xor_sync = _shfl_xor_sync
