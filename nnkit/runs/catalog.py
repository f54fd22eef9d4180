"""The runs under a results folder: finding one by a prefix of its id, and listing them
with their status (``nnkit ls``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import UserError
from . import lock
from .store import Damaged, RunFolder

#: the columns of :func:`listing`
COLUMNS = ["run", "status", "stages", "inits", "points", "backend", "created", "seconds"]


def folders(results) -> list[Path]:
    """Every run folder (one holding ``meta.json``) under ``results/<experiment>/``,
    oldest first by id; folders being created (names starting with a dot) left out."""
    root = Path(results)
    found = [
        meta.parent
        for meta in root.glob("*/*/meta.json")
        if not meta.parent.name.startswith(".") and not meta.parent.parent.name.startswith(".")
    ]
    return sorted(found, key=lambda path: (path.name, path.parent.name))


def find(name, results="results") -> Path:
    """The run folder ``name``: a path to one, or a prefix of a run id (optionally
    ``experiment/prefix``) under ``results``. :class:`UserError` when nothing or more
    than one run matches."""
    path = Path(name)
    if path.is_dir() or path.exists():
        return path
    text = str(name).strip("/")
    experiment, _, prefix = text.rpartition("/")
    if not prefix or (experiment and "/" in experiment):
        raise UserError(f"{name} is not an nnkit run folder (no such folder)")
    matches = [
        folder for folder in folders(results)
        if folder.name.startswith(prefix) and (not experiment or folder.parent.name == experiment)
    ]  # fmt: skip
    if not matches:
        where = Path(results) / experiment if experiment else Path(results)
        raise UserError(f"{name} is not an nnkit run folder, and no run id under {where} starts with {prefix!r}")
    if len(matches) > 1:
        shown = ", ".join(f"{m.parent.name}/{m.name}" for m in matches[:6])
        more = f" and {len(matches) - 6} more" if len(matches) > 6 else ""
        raise UserError(f"{name}: {len(matches)} runs match ({shown}{more}); give more of the id")
    return matches[0]


def status(folder: RunFolder) -> tuple[str, dict]:
    """What the run in ``folder`` is now, with its ``meta.json`` (empty when damaged):
    ``running`` (another process writes it), ``finished``, ``interrupted`` (unfinished
    and nobody writes it: resume it) or ``damaged``."""
    try:
        meta = folder.read_meta()
    except Damaged:
        return ("running" if lock.busy(folder.path) else "damaged"), {}
    if lock.busy(folder.path):
        return "running", meta
    return ("finished" if meta.get("finished") else "interrupted"), meta


def stages(folder: RunFolder) -> str:
    """The stages after training whose results the finished run folder holds:
    ``minima``, ``minima, landscape``, or ``trained`` when there are none."""
    names = []
    if folder.analysis_file.is_file():
        names.append("minima")
        if folder.landscape_file.is_file():
            names.append("landscape")
    return ", ".join(names) or "trained"


def listing(results="results") -> pd.DataFrame:
    """One row per run under ``results``, oldest first: the run (``experiment/run-id``),
    its status, stages, size, backend, start time and training seconds."""
    rows = []
    for path in folders(results):
        folder = RunFolder(path)
        state, meta = status(folder)
        created = str(meta.get("created", ""))
        rows.append({
            "run": f"{path.parent.name}/{path.name}",
            "status": state,
            "stages": stages(folder) if state == "finished" else "-",
            "inits": meta.get("inits"),
            "points": meta.get("points"),
            "backend": meta.get("backend", ""),
            "created": created[:16].replace("T", " "),
            "seconds": meta.get("train_seconds"),
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"inits": "Int64", "points": "Int64", "seconds": "Float64"})
