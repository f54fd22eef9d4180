"""Atomic writes: a file is written under a temporary name and renamed into place, so
an interrupted run leaves only whole files behind."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np


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
