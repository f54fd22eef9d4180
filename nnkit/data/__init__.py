"""Data sets: seeded generators (:mod:`.generators`) and the user's own CSV or Parquet
files (:mod:`.files`), each kind a dataclass of its options and a function that draws
a :class:`Dataset` from a random generator."""

from __future__ import annotations

import numpy as np

from . import files, generators
from .dataset import Dataset
from .files import File, read_table
from .generators import Blobs, Sine, TeacherStudent, Xor

__all__ = [
    "KINDS", "Blobs", "Dataset", "File", "Sine", "TeacherStudent", "Xor", "make_dataset", "read_table",
]  # fmt: skip

#: kind -> (options dataclass, function ``(options, rng) -> Dataset``)
KINDS = {**generators.KINDS, **files.KINDS}


def make_dataset(kind: str, options, rng: np.random.Generator) -> Dataset:
    """The data set of ``kind`` with ``options`` (its dataclass), drawn from ``rng``."""
    return KINDS[kind][1](options, rng)
