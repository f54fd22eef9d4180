"""The training stage of a run: every chunk of inits of every sweep point, trained by
the pure chunk function (:func:`nnkit.training.train_chunk`) and written to the run folder
as it finishes, with a progress bar. A chunk already in the folder (an interrupted run
continued) is skipped.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .. import backends
from ..about import __version__
from ..objective import make_objective
from ..training import chunk_size, train_chunk
from .store import RunFolder

#: column order of runs.parquet (sweep keys come right after ``point``)
RUN_COLUMNS = (
    "point", "init", "seed", "status", "steps", "loss", "grad_norm", "lr", "restarts",
    "train_loss", "test_loss", "train_error", "test_error", "chunk", "chunk_time_s",
)  # fmt: skip

#: a run whose rest takes longer than this at the first chunk's speed earns a warning
LONG_RUN_S = 24 * 3600

log = logging.getLogger("nnkit")


@dataclass(frozen=True)
class Job:
    """One chunk to train: the inits ``ids`` of sweep point ``point``."""

    point: int
    chunk: int
    ids: np.ndarray


#: the libraries whose versions every run records, besides the backends' own
_LIBRARIES = ("numpy", "pandas", "pyarrow", "scipy")


def train_points(folder: RunFolder, meta: dict, points, problems, tasks, backend, progress=None,
                 cluster=None, asked=None, session=None) -> None:
    """Train every chunk of every sweep point that the folder does not hold yet, on
    ``backend`` here or, given a :class:`~nnkit.runs.cluster.Cluster`, on its workers
    (each on the backend ``asked`` resolves to there, by default ``backend``'s); the
    chunks are written here as they finish.

    ``points`` are the sweep's ``(values, experiment)``, ``problems`` and ``tasks`` one
    per point. ``meta["chunk_sizes"]`` are fixed (and saved) before the first chunk
    trains, so a continued run cuts its chunks alike. A cluster run records in
    ``session["chunks"]`` the worker each chunk ran on, and in
    ``session["cluster"]["workers"]`` the backend and device of each.
    """
    cells = sweep_cells([values for values, _ in points])
    estimate = _Estimate(meta["inits"])
    with progress_bar(meta["inits"], progress) as bar:
        if any([_fix_chunk_size(meta, p, exp, problem, backend) for p, ((_, exp), problem) in enumerate(zip(points, problems))]):
            folder.write_meta(meta)
        jobs = []
        for p, ((_, exp), problem, task) in enumerate(zip(points, problems, tasks)):
            for job in cut(p, meta["chunk_sizes"][p], exp.inits):
                if folder.has_chunk(p, job.chunk, job.ids.size, problem.model.size, task.train.history > 0):
                    bar.update(job.ids.size)
                    estimate.skipped(job.ids.size)
                else:
                    jobs.append(job)
        if cluster is None:
            done = _here(jobs, problems, tasks, backend, bar)
        else:
            done = cluster.train(jobs, problems, tasks, asked or backend.name)
        session = session if session is not None and cluster is not None else {}
        placed, seen = session.setdefault("chunks", {}), session.setdefault("cluster", {}).setdefault("workers", {})
        saved = time.monotonic()
        for job, chunk, where in done:
            table = pd.DataFrame({"point": job.point, **cells[job.point], **chunk.columns,
                                  "chunk": job.chunk, "chunk_time_s": chunk.seconds})  # fmt: skip
            history = None if chunk.history is None else pd.DataFrame({"point": job.point, **chunk.history})
            folder.write_chunk(job.point, job.chunk, chunk.theta, table, history)
            estimate.trained(job.ids.size, chunk.seconds)
            if where is not None:
                bar.update(job.ids.size)
                placed[f"{job.point}:{job.chunk}"] = where["worker"]
                seen.setdefault(where["worker"], {}).update(backend=where["backend"], device=where["device"])
                if time.monotonic() - saved > _META_EVERY_S:  # where chunks ran survives a kill, mostly
                    folder.write_meta(meta)
                    saved = time.monotonic()


#: a cluster run rewrites meta.json (where the chunks ran) at most this often
_META_EVERY_S = 2.0


def _fix_chunk_size(meta, p, exp, problem, backend) -> bool:
    """Fix the chunk size of point ``p`` in ``meta`` if it is not yet; whether it was."""
    if meta["chunk_sizes"][p] is not None:
        return False
    objective = make_objective(problem, backend)
    chunk = exp.run.chunk_size or chunk_size(objective, exp.train, exp.inits, exp.run.memory_mb)
    meta["chunk_sizes"][p] = min(chunk, exp.inits)
    return True


def cut(point: int, size: int, inits: int) -> list[Job]:
    """The chunks of ``size`` inits that ``inits`` inits of sweep point ``point`` are cut into."""
    return [Job(point, c, np.arange(first, min(first + size, inits))) for c, first in enumerate(range(0, inits, size))]


def _here(jobs, problems, tasks, backend, bar):
    """Train ``jobs`` one after the other in this process: ``(job, chunk, None)``."""
    objectives = {}
    for job in jobs:
        if job.point not in objectives:
            objectives = {job.point: make_objective(problems[job.point], backend)}
        note = _StepNote(bar, f"point {job.point} chunk {job.chunk}", tasks[job.point].train.max_steps)
        chunk = train_chunk(objectives[job.point], tasks[job.point], job.ids, on_finish=bar.update, on_step=note)
        yield job, chunk, None


def chunk_counts(meta: dict, points) -> list[int]:
    """How many chunks each sweep point is cut into (once its chunk size is fixed)."""
    return [-(-exp.inits // size) for size, (_, exp) in zip(meta["chunk_sizes"], points)]


def check_chunks(folder: RunFolder, meta: dict, points, problems, tasks) -> None:
    """Raise :class:`~nnkit.runs.store.Damaged` for the first chunk in ``folder`` that
    is written but not whole (before a resume writes anything)."""
    for p, ((_, exp), problem, task) in enumerate(zip(points, problems, tasks)):
        size = meta["chunk_sizes"][p]
        for job in cut(p, size, exp.inits) if size is not None else []:
            folder.has_chunk(p, job.chunk, job.ids.size, problem.model.size, task.train.history > 0)


def sweep_cells(values: list[dict]) -> list[dict]:
    """Each point's sweep values as Parquet cells, one type per column: a key whose
    values hold lists or mix types (numbers aside) is stored as text."""
    keys = list(values[0]) if values else []
    as_text = {}
    for key in keys:
        kinds = {float if type(v[key]) is int else type(v[key]) for v in values}
        as_text[key] = len(kinds) > 1 or tuple in kinds

    def cell(key, value):
        if not as_text[key]:
            return value
        return str(list(value)) if isinstance(value, tuple) else str(value)

    return [{key: cell(key, v) for key, v in point.items()} for point in values]


def initial_meta(experiment, backend, points) -> dict:
    """``meta.json`` of a new run: provenance, sizes, and no chunk size fixed yet."""
    return {
        "experiment": experiment.name,
        "created": now(),
        "finished": None,
        "backend": backend.name,
        "device": backend.device,
        "dtype": experiment.train.dtype,
        "points": len(points),
        "inits": sum(exp.inits for _, exp in points),
        "sweep_keys": [key for key, _ in experiment.sweep],
        "chunk_sizes": [None] * len(points),
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def versions() -> dict:
    """Versions of nnkit and of the libraries and backend packages installed here."""
    out = {"nnkit": __version__}
    for name in (*_LIBRARIES, *backends.packages()):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _Estimate:
    """Warns once, after the first chunk trained, when the rest of the run would take
    more than :data:`LONG_RUN_S` at that chunk's speed."""

    def __init__(self, total: int):
        self.left, self.warned = total, False

    def skipped(self, n: int) -> None:
        self.left -= n

    def trained(self, n: int, seconds: float) -> None:
        self.left -= n
        if self.warned or seconds <= 0 or self.left <= 0:
            return
        self.warned = True
        rest = self.left * seconds / n
        if rest > LONG_RUN_S:
            log.warning("at the speed of the first chunk the rest of this run takes about %.0f hours "
                        "(%s inits left); Ctrl-C keeps the finished chunks, --resume continues",
                        rest / 3600, f"{self.left:,}")  # fmt: skip


class _StepNote:
    """Shows the step a chunk is at beside the bar, at most twice a second."""

    def __init__(self, bar, where, max_steps):
        self.bar, self.where, self.max_steps = bar, where, max_steps
        self.last = 0.0

    def __call__(self, t, running):
        now = time.monotonic()
        if now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(f"{self.where}: step {t}/{self.max_steps}, {running} running")


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(total, progress, desc="training", unit="init"):
    """A tqdm bar over ``total`` inits (or other ``unit``; ``progress`` None: on a
    terminal only; False: none)."""
    if progress is False:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        unit=unit,
        desc=desc,
        disable=None if progress is None else False,
    )
