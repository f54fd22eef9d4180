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


def check_run(experiment, points, problems, results_dir) -> None:
    """:class:`UserError` when the run of ``points`` cannot be held in memory when it
    is gathered or cannot fit on the disk of ``results_dir``."""
    inits = sum(exp.inits for _, exp in points)
    params = [exp.inits * problem.model.size * PARAM_BYTES for (_, exp), problem in zip(points, problems)]
    memory = physical_memory()
    needed = inits * ROW_BYTES + max(params, default=0)
    if memory is not None and needed > memory // 2:
        raise UserError(
            f"{experiment.name}: {inits:,} inits need about {size(needed)} of memory when the run "
            f"is gathered, more than half of this machine's {size(memory)}; lower inits (or split "
            f"the study into several runs)"
        )
    on_disk = inits * ROW_BYTES + sum(params)
    free = free_disk(results_dir)
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
