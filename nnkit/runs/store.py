"""The run folder on disk, and atomic writes: a file is written under a temporary name
and renamed into place, so an interrupted run leaves only whole files behind.

``results/<experiment>/<run-id>/`` holds ``config.json`` (the resolved experiment) and
``meta.json`` from the start; each finished chunk of inits is written under
``chunks/`` (its table last: the table marks it done). When every chunk is done they
are gathered into ``runs.parquet``, ``params/point-NNN.npy`` and ``history.parquet``,
and ``chunks/`` is removed. The analysis adds ``minima.parquet``,
``params/point-NNN-polished.npy`` and ``analysis.json``; figures go to ``figures/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError


@contextmanager
def atomic_path(path):
    """A temporary name beside ``path`` to write to; renamed to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def write_figure(path, figure) -> Path:
    """A matplotlib ``figure`` as a PNG (or the format of ``path``'s suffix)."""
    path = Path(path)
    _atomic(path, lambda p: figure.savefig(p, dpi=120, format=path.suffix.lstrip(".")))
    return path


def write_json(path, obj) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n"))


def write_text(path, text: str) -> None:
    _atomic(path, lambda p: p.write_text(text))


def write_npy(path, array) -> None:
    def write(p):
        with open(p, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)

    _atomic(path, write)


def write_parquet(path, frame) -> None:
    _atomic(path, lambda p: frame.to_parquet(p, index=False))


def read_json(path):
    return json.loads(Path(path).read_text())


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def new_run_id() -> str:
    """A fresh run id: the time stamp and four random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()


class RunFolder:
    """The files of the run at ``path`` (see the module doc for the layout)."""

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self):
        return f"RunFolder({str(self.path)!r})"

    # -- the files ---------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def meta_file(self) -> Path:
        return self.path / "meta.json"

    @property
    def runs_file(self) -> Path:
        return self.path / "runs.parquet"

    @property
    def history_file(self) -> Path:
        return self.path / "history.parquet"

    @property
    def minima_file(self) -> Path:
        return self.path / "minima.parquet"

    @property
    def analysis_file(self) -> Path:
        return self.path / "analysis.json"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def chunks(self) -> Path:
        return self.path / "chunks"

    def params_file(self, point: int, polished: bool = False) -> Path:
        return self.path / "params" / f"point-{point:03d}{'-polished' if polished else ''}.npy"

    # -- reading and writing -------------------------------------------------------
    def read_config(self) -> dict:
        return read_json(self.config_file)

    def read_meta(self) -> dict:
        return read_json(self.meta_file)

    def write_config(self, config: dict) -> None:
        write_json(self.config_file, config)

    def write_meta(self, meta: dict) -> None:
        write_json(self.meta_file, meta)

    def is_finished(self) -> bool:
        return bool(self.read_meta().get("finished"))

    def _chunk_stem(self, point: int, chunk: int) -> Path:
        return self.chunks / f"p{point:03d}-c{chunk:05d}"

    def has_chunk(self, point: int, chunk: int) -> bool:
        """Whether chunk ``chunk`` of sweep point ``point`` is written whole."""
        return self._chunk_stem(point, chunk).with_suffix(".parquet").exists()

    def write_chunk(self, point: int, chunk: int, theta, table: pd.DataFrame, history=None) -> None:
        """The parameters, history and, last (it marks the chunk done), the table of one
        chunk."""
        stem = self._chunk_stem(point, chunk)
        if history is not None:
            write_parquet(stem.with_suffix(".history.parquet"), history)
        write_npy(stem.with_suffix(".npy"), theta)
        write_parquet(stem.with_suffix(".parquet"), table)

    def gather(self, points: int, order) -> None:
        """Every chunk into ``runs.parquet`` (columns: ``point``, then those not in
        ``order``, then ``order``), ``params/`` and ``history.parquet``; ``chunks/`` is
        removed after."""
        if not self.chunks.exists():
            return
        frames, history = [], []
        for p in range(points):
            parts = sorted(self.chunks.glob(f"p{p:03d}-c*.npy"))
            theta = np.concatenate([np.load(part) for part in parts])
            write_npy(self.params_file(p), theta)
            frames += [pd.read_parquet(part.with_suffix(".parquet")) for part in parts]
            history += [pd.read_parquet(h) for h in sorted(self.chunks.glob(f"p{p:03d}-c*.history.parquet"))]
        runs = pd.concat(frames, ignore_index=True)
        front = ["point", *[c for c in runs.columns if c not in order]]
        runs = runs[front + [c for c in order if c != "point"]]
        write_parquet(self.runs_file, runs)
        if history:
            write_parquet(self.history_file, pd.concat(history, ignore_index=True))
        shutil.rmtree(self.chunks)

    def remove(self) -> None:
        """Delete the whole folder (a run that a bad input stopped before any chunk)."""
        shutil.rmtree(self.path, ignore_errors=True)


def find_resumable(root: Path, run_id: str | None) -> RunFolder:
    """The run ``run_id`` under ``root``, or the newest unfinished one there."""
    if run_id:
        folder = RunFolder(root / run_id)
        if not folder.meta_file.is_file():
            raise UserError(f"no run {run_id!r} to resume under {root}")
        return folder
    unfinished = []
    for path in root.glob("*/meta.json"):
        try:
            meta = read_json(path)
        except (OSError, ValueError):
            continue  # not a run this version can continue
        if isinstance(meta, dict) and not meta.get("finished"):
            unfinished.append((str(meta.get("created", "")), path.stat().st_mtime, path.parent))
    if not unfinished:
        raise UserError(f"no unfinished run of {root.name!r} to resume under {root}")
    return RunFolder(max(unfinished)[2])
