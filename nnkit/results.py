"""Reading a finished run back: ``nnkit.load(path)``."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, storage
from .errors import UserError


class Run:
    """A run folder ``results/<experiment>/<run-id>/``.

    Attributes
    ----------
    path : the folder.
    config : the resolved experiment as a nested dict (``config.json``).
    meta : versions, backend, device, dtype, git commit and wall times (``meta.json``).
    runs : one row per init and sweep point (``runs.parquet``).
    history : loss and gradient norm at log-spaced steps (``history.parquet``), or None.
    """

    def __init__(self, path):
        self.path = Path(path)
        for name in ("meta.json", "config.json"):
            if not (self.path / name).is_file():
                raise UserError(f"{self.path} is not an nnkit run folder (no {name})")
        if not (self.path / "runs.parquet").is_file():
            raise UserError(
                f"run {self.path} is not finished (continue it with nnkit run FILE --resume)"
            )
        self.config = storage.read_json(self.path / "config.json")
        self.meta = storage.read_json(self.path / "meta.json")

    @property
    def experiment(self) -> config.Experiment:
        return config.from_dict(self.config)

    @cached_property
    def runs(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "runs.parquet")

    @cached_property
    def history(self) -> pd.DataFrame | None:
        path = self.path / "history.parquet"
        return pd.read_parquet(path) if path.is_file() else None

    def params(self, point: int = 0) -> np.ndarray:
        """Final parameters ``(R, P)`` of sweep point ``point``, rows in init order."""
        path = self.path / "params" / f"point-{point:03d}.npy"
        if not path.is_file():
            raise UserError(f"run {self.path} has no sweep point {point}")
        return np.load(path, allow_pickle=False)

    @property
    def sweep_keys(self) -> list[str]:
        """The swept config keys; each is a column of :attr:`runs`."""
        return [key for key in self.config.get("sweep", {}) if key != "mode"]

    def summary(self) -> pd.DataFrame:
        """Per sweep point: status counts and loss quantiles (what ``nnkit show`` prints)."""
        from .runner import summary

        return summary(self.runs, self.sweep_keys)

    def __repr__(self):
        return f"Run({str(self.path)!r})"


def load(path) -> Run:
    """The finished run at ``path`` (a ``results/<experiment>/<run-id>`` folder)."""
    return Run(path)
