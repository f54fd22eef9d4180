"""Host work spread over the cores: many small, independent NumPy/LAPACK problems (the
Hessians and eigendecompositions of a batch of inits) run one slice per core, each
with BLAS in its own thread.

OpenBLAS parallelises inside each small ``eigh`` or product instead, which gains
little at these sizes and loses badly when the cores are busy: an ``eigh`` of 200
matrices of 56 x 56 took 9.6 s with its threads competing with another process, 76 ms
with one thread. NumPy releases the GIL in its array loops and LAPACK calls, so plain
threads run the slices side by side.
"""

from __future__ import annotations

import contextlib
import os
import threading

_pool = None
_blas = None
_lock = threading.Lock()


def affinity_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def cores() -> int:
    """:func:`affinity_cores`, or fewer where ``OMP_NUM_THREADS`` says so (a Dask
    worker of a local cluster gets its share of the machine that way)."""
    count = affinity_cores()
    try:
        return max(1, min(count, int(os.environ.get("OMP_NUM_THREADS", count))))
    except ValueError:
        return count


def one_blas_thread():
    """A context in which NumPy's BLAS and LAPACK run in the calling thread only (the
    libraries are looked up once per process)."""
    global _blas
    if affinity_cores() == 1:
        return contextlib.nullcontext()
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def map_slices(fn, n: int, min_rows: int = 1) -> list:
    """``[fn(a, b) for (a, b) in slices]`` for the ranges that cut ``range(n)`` into one
    slice per core (at least ``min_rows`` rows each), run side by side in threads with
    one BLAS thread each; in order. One slice runs in the calling thread."""
    global _pool
    parts = max(1, min(cores(), n // max(1, min_rows)))
    edges = [n * i // parts for i in range(parts + 1)]
    ranges = list(zip(edges[:-1], edges[1:]))
    if parts == 1 or threading.current_thread().name.startswith("nnkit-host"):
        return [fn(a, b) for a, b in ranges]
    with _lock:
        if _pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(cores(), thread_name_prefix="nnkit-host")
    with one_blas_thread():
        return [f.result() for f in [_pool.submit(fn, a, b) for a, b in ranges]]
