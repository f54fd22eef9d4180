"""The user's own CSV or Parquet files as data sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import validate
from ..errors import UserError
from .dataset import Dataset


@dataclass(frozen=True)
class File:
    """The user's own CSV or Parquet file: ``target`` is the label column, ``features``
    the input columns (all others when empty). A random ``test_fraction`` of the rows is
    held out; ``standardize`` rescales every feature to mean 0 and standard deviation 1
    using the training rows only. A relative ``path`` is taken from the experiment
    file's folder."""

    #: the CSV, TSV or Parquet file (required; a relative path is taken from the
    #: experiment file's folder)
    path: str = ""
    #: the label column (required)
    target: str = ""
    #: the input columns (empty: all the other columns)
    features: tuple[str, ...] = ()
    #: the share of the rows held out at random as the test set
    test_fraction: float = 0.2
    #: rescale every feature to mean 0 and standard deviation 1 with the training rows'
    #: statistics
    standardize: bool = True

    def check(self):
        if not self.path:
            raise UserError("data.path is required for kind = 'file'")
        if not self.target:
            raise UserError("data.target is required for kind = 'file' (the label column)")
        validate.check(self, "data", test_fraction="in [0, 1)")


def read_table(path: Path):
    """A CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet (``.parquet``, ``.pq``) file."""
    import pandas as pd

    name = path.name.lower()
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith(".tsv"):
            return pd.read_csv(path, sep="\t")
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
    except Exception as exc:  # a malformed file is the user's to fix
        raise UserError(f"cannot read data file {path}: {exc}") from None
    raise UserError(f"data file {path} is neither CSV (.csv, .tsv) nor Parquet (.parquet)")


def from_file(o: File, rng) -> Dataset:
    frame = read_table(Path(o.path))
    if o.target not in frame.columns:
        raise UserError(
            f"data.target = {o.target!r} is not a column of {o.path} "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    features = list(o.features) or [c for c in frame.columns if c != o.target]
    if not features:
        raise UserError(f"data file {o.path} has no feature columns besides {o.target!r}")
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise UserError(f"data.features not in {o.path}: {', '.join(missing)}")
    try:
        X = frame[features].to_numpy(dtype=float)
        y = frame[o.target].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise UserError(f"data in {o.path} must be numeric: {exc}") from None
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise UserError(f"data in {o.path} has missing or non-finite values")
    order = rng.permutation(len(y))
    n_test = int(round(o.test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    if train.size == 0:
        raise UserError(f"data file {o.path} has no rows left for training")
    X_train, X_test = X[train], X[test]
    info = {"features": features}
    if o.standardize:
        mean, std = X_train.mean(axis=0), X_train.std(axis=0)
        std[std == 0] = 1.0
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
        info.update(mean=mean, std=std)
    return Dataset(X_train, y[train], X_test, y[test], info)


#: kind -> (options dataclass, reader)
KINDS = {"file": (File, from_file)}
