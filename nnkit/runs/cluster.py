"""Chunks of inits as tasks on a Dask cluster (the ``dask`` extra).

The task is the pure chunk function (:func:`nnkit.training.train_chunk`): a worker
builds the objective on its own backend (``auto`` resolves there, so a GPU worker uses
its GPU), trains the chunk and returns the arrays; only the client writes the run
folder. A worker that dies mid-chunk has its chunk redone on another by Dask's
scheduler; the client writes each chunk once, as it arrives, so a client killed
mid-study leaves every finished chunk for ``--resume``.

    with cluster.connect(workers=2) as c:        # a LocalCluster of 2 processes
        ...
    with cluster.connect("tcp://host:8786") as c:  # an existing scheduler
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections import OrderedDict

from .. import backends
from ..errors import UserError
from ..objective import make_objective, runs_on

log = logging.getLogger("nnkit")

INSTALL = "pip install 'nnkit-landscape[dask]'"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(f"running on a Dask cluster needs the dask extra: {INSTALL}") from None
    return distributed


class Cluster:
    """A Dask client and what the run records about it."""

    def __init__(self, client, kind: str):
        self.client = client
        self.kind = kind  # "local" (a LocalCluster started here) or "remote"
        self.token = uuid.uuid4().hex[:8]  # task keys of this client never clash with another's

    @property
    def address(self) -> str:
        return self.client.scheduler.address

    def workers(self) -> dict:
        """``{address: {"host", "nthreads", "name"}}`` of the workers connected now."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {
            address: {"host": w.get("host"), "nthreads": w.get("nthreads"), "name": str(w.get("name"))}
            for address, w in info.items()
        }

    def describe(self) -> dict:
        """The scheduler and workers, as ``meta.json`` records them."""
        return {"scheduler": self.address, "kind": self.kind, "workers": self.workers()}

    def train(self, jobs, problems, tasks, backend: str):
        """Train ``jobs`` (with ``point``, ``chunk``, ``ids``) on the cluster, each
        worker on backend ``backend`` as it resolves there; yield ``(job, chunk,
        where)`` in the order they finish (``where``: the worker, backend and device
        that trained it). Leaving the generator early (an error, Ctrl-C) cancels what
        is left."""
        distributed = _distributed()
        client = self.client
        if jobs and not client.scheduler_info()["workers"]:
            log.info("waiting for a worker to join the scheduler at %s", self.address)
            client.wait_for_workers(1)
        shared = {}
        for p in sorted({job.point for job in jobs}):  # a point's data reaches each worker once
            shared[p] = client.submit(_share, problems[p], tasks[p], key=f"nnkit-data-{self.token}-{p}", pure=False)
        futures = {}
        for job in jobs:
            key = f"nnkit-train-{self.token}-{job.point}-{job.chunk}"
            future = client.submit(_train_on_worker, shared[job.point], job.ids, backend, key=key, pure=False)
            futures[future] = job
        try:
            for future in distributed.as_completed(futures):
                chunk, where = _unless_refused(future.result())  # a chunk that failed for good raises here
                yield futures.pop(future), chunk, where
        finally:
            client.cancel(list(futures))
            client.cancel(list(shared.values()))

    def certifier(self, problem):
        """A drop-in for :func:`nnkit.landscape.critical.certify` that polishes and
        classifies the points of ``problem`` in batches on the workers (float64 on
        their CPUs, as the analysis does here; the same results, batch by batch)."""
        import numpy as np
        import pandas as pd

        def certify(objective, theta, cfg, slice_rows=None, on_rows=None, seconds=None):
            seconds = {} if seconds is None else seconds
            rows = theta.shape[0]
            step = slice_rows or rows
            threads = sum(w["nthreads"] or 1 for w in self.workers().values()) or 1
            per_batch = step * max(1, -(-rows // (2 * threads * step)))  # whole slices, two batches a thread
            shared = self.client.submit(_share, problem, None, key=f"nnkit-data-{self.token}-{uuid.uuid4().hex[:8]}",
                                        pure=False)  # fmt: skip
            futures = [
                self.client.submit(_certify_on_worker, shared, theta[a : a + per_batch], cfg, slice_rows,
                                   key=f"nnkit-certify-{self.token}-{uuid.uuid4().hex[:8]}", pure=False)
                for a in range(0, rows, per_batch)
            ]  # fmt: skip
            order = {future: i for i, future in enumerate(futures)}
            parts = [None] * len(futures)
            try:
                for future in _distributed().as_completed(futures):
                    theta_part, frame, eigs, spent = _unless_refused(future.result())
                    parts[order[future]] = theta_part, frame, eigs
                    for stage, s in spent.items():  # summed over the workers
                        seconds[stage] = seconds.get(stage, 0.0) + s
                    if on_rows is not None:
                        on_rows(theta_part.shape[0])
            finally:
                self.client.cancel([*futures, shared])
            return (np.concatenate([p[0] for p in parts]),
                    pd.concat([p[1] for p in parts], ignore_index=True),
                    np.concatenate([p[2] for p in parts]))  # fmt: skip

        return certify


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int = 0):
    """A :class:`Cluster`: the scheduler at ``scheduler``, or a ``LocalCluster`` of
    ``workers`` processes started here (one thread each; Numba and the BLAS share this
    machine's cores between them; only its errors are logged), closed on exit."""
    distributed = _distributed()
    if scheduler and workers:
        raise UserError("give either a scheduler address or a number of local workers, not both")
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:  # no scheduler there, a malformed address
            raise UserError(f"cannot reach a Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield Cluster(client, "remote")
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}  # fmt: skip
    with (
        distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                 dashboard_address=":0", env=env, silence_logs=logging.ERROR) as local,  # fmt: skip
        distributed.Client(local) as client,
    ):
        yield Cluster(client, "local")


# -- on the workers ----------------------------------------------------------------

#: the objectives a worker built, by the (problem, backend) they were built for: a
#: worker trains many chunks of one point with one objective (and one copy of the data
#: on its device)
_OBJECTIVES: OrderedDict = OrderedDict()


def _objective(problem, name: str):
    key = (id(problem), name)
    if key not in _OBJECTIVES:
        _OBJECTIVES[key] = (problem, make_objective(problem, backends.get(runs_on(problem, name))))
        while len(_OBJECTIVES) > 4:
            _OBJECTIVES.popitem(last=False)
    return _OBJECTIVES[key][1]


def _share(problem, task):
    """A point's problem and task as a task's result, not scattered data: a worker that
    dies holding them has them recomputed (from the graph) rather than lost."""
    return problem, task


class _Refused:
    """A user's mistake met on a worker (a backend it cannot run), returned rather than
    raised: Dask would log a raised one with its traceback; the client raises it as the
    one-line :class:`UserError` it is."""

    def __init__(self, exc: UserError):
        self.kind, self.message = type(exc), str(exc)


def _unless_refused(result):
    if isinstance(result, _Refused):
        raise result.kind(result.message)
    return result


def _train_on_worker(shared, ids, backend: str):
    from distributed import get_worker

    from ..training import train_chunk

    problem, task = shared
    try:
        objective = _objective(problem, backend)
    except UserError as exc:
        return _Refused(exc)
    chunk = train_chunk(objective, task, ids)
    be = objective.backend
    return chunk, {"worker": get_worker().address, "backend": be.name, "device": be.device}


def _certify_on_worker(shared, theta, cfg, slice_rows):
    from ..landscape.critical import certify

    seconds = {}
    return (*certify(_objective(shared[0], "numpy"), theta, cfg, slice_rows, seconds=seconds), seconds)
