"""What a run may ask of this machine, checked before anything is written: its tables
and parameters must fit in memory when they are gathered, and on the disk under the
results folder. (How long it takes is estimated from its first chunk:
:func:`nnkit.runs.executor.train_points` warns when that comes to more than a day.)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import UserError

#: bytes per init of runs.parquet in memory (a dozen 8-byte columns and the status)
ROW_BYTES = 160
#: bytes per stored parameter (the final parameters are kept in float64)
PARAM_BYTES = 8
#: bytes per row of history.parquet (point, init, step, loss, grad_norm)
HISTORY_ROW_BYTES = 40


def check_run(experiment, points, problems, tasks, results_dir, disk: bool = True) -> None:
    """:class:`UserError` when the run of ``points`` cannot be held in memory when it
    is gathered or (``disk``: a new run) cannot fit on the disk of ``results_dir``,
    where the chunks and the gathered files are there at once for a moment."""
    inits = sum(exp.inits for _, exp in points)
    params = [exp.inits * problem.model.size * PARAM_BYTES for (_, exp), problem in zip(points, problems)]
    history = sum(exp.inits * (task.train.history + 2) * HISTORY_ROW_BYTES for (_, exp), task in zip(points, tasks))
    memory = physical_memory()
    needed = inits * ROW_BYTES + max(params, default=0) + history
    if memory is not None and needed > memory // 2:
        raise UserError(
            f"{experiment.name}: {inits:,} inits need about {size(needed)} of memory when the run "
            f"is gathered, more than half of this machine's {size(memory)}; lower inits or "
            f"train.history (or split the study into several runs)"
        )
    on_disk = 2 * (inits * ROW_BYTES + sum(params) + history)
    free = free_disk(results_dir) if disk else None
    if free is not None and on_disk > free:
        raise UserError(
            f"{experiment.name}: {inits:,} inits need about {size(on_disk)} on disk, and "
            f"{free_root(results_dir)} has {size(free)} free; lower inits or choose another "
            f"--results folder"
        )


def physical_memory() -> int | None:
    """Bytes of memory of this machine, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def free_root(path) -> Path:
    """The nearest folder at or above ``path`` that exists."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_disk(path) -> int | None:
    """Free bytes on the disk that ``path`` (or the folder it will be made in) is on."""
    try:
        return shutil.disk_usage(free_root(path)).free
    except OSError:
        return None


def size(n: float) -> str:
    """``n`` bytes for a reader: 1.5 GB, 80 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover
