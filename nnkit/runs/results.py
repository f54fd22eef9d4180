"""Reading a finished run back: ``nnkit.load(path)``."""

from __future__ import annotations

import html
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..report import tables
from ..study import config
from .store import RunFolder, read_json


class Run:
    """A run folder ``results/<experiment>/<run-id>/``.

    Attributes
    ----------
    path : the folder.
    config : the resolved experiment as a nested dict (``config.json``).
    meta : versions, backend, device, dtype, git commit and wall times (``meta.json``).
    runs : one row per init and sweep point (``runs.parquet``).
    history : loss and gradient norm at log-spaced steps (``history.parquet``), or None.
    minima : one row per distinct minimum and sweep point (``minima.parquet``), or None
        before the run is analysed.
    """

    def __init__(self, path):
        self.folder = RunFolder(path)
        self.path = self.folder.path
        for file in (self.folder.meta_file, self.folder.config_file):
            if not file.is_file():
                raise UserError(f"{self.path} is not an nnkit run folder (no {file.name})")
        if not self.folder.runs_file.is_file():
            raise UserError(
                f"run {self.path} is not finished (continue it with nnkit run FILE --resume "
                f"--run-id {self.path.name} --results {self.path.parent.parent}, FILE its experiment)"
            )
        self.config = read_json(self.folder.config_file)
        self.meta = read_json(self.folder.meta_file)

    @property
    def experiment(self) -> config.Experiment:
        """The resolved experiment of the run."""
        return config.from_dict(self.config)

    @property
    def name(self) -> str:
        return self.meta["experiment"]

    @cached_property
    def runs(self) -> pd.DataFrame:
        return pd.read_parquet(self.folder.runs_file)

    @cached_property
    def history(self) -> pd.DataFrame | None:
        path = self.folder.history_file
        return pd.read_parquet(path) if path.is_file() else None

    @cached_property
    def minima(self) -> pd.DataFrame | None:
        path = self.folder.minima_file
        return pd.read_parquet(path) if path.is_file() else None

    def reload(self) -> None:
        """Forget the tables read so far (after the run folder changed)."""
        for name in ("runs", "history", "minima"):
            self.__dict__.pop(name, None)

    @property
    def sweep_keys(self) -> list[str]:
        """The swept config keys; each is a column of :attr:`runs`."""
        return [key for key in self.config.get("sweep", {}) if key != "mode"]

    @property
    def points(self) -> int:
        return int(self.meta["points"])

    def params(self, point: int = 0, polished: bool = False) -> np.ndarray:
        """Final parameters ``(R, P)`` of sweep point ``point``, rows in init order;
        ``polished``: the points the analysis polished them to."""
        path = self.folder.params_file(point, polished)
        if not path.is_file():
            if not 0 <= point < self.points:
                raise UserError(f"run {self.path} has no sweep point {point} (it has {self.points})")
            if polished:
                raise UserError(f"run {self.path} has no polished parameters: analyse it first (nnkit minima RUN)")
            raise UserError(f"run {self.path} is missing {path.relative_to(self.path)}")
        return np.load(path, allow_pickle=False)

    # -- what nnkit show prints ------------------------------------------------------
    def training(self) -> pd.DataFrame:
        """Per sweep point: status counts and loss quantiles."""
        return tables.training(self.runs, self.sweep_keys)

    def landing(self) -> pd.DataFrame | None:
        """Per sweep point, where the inits ended (global or spurious minimum, saddle,
        not converged), with the spurious fraction and its interval; None before the
        analysis."""
        if self.minima is None:
            return None
        return tables.landing(self.runs, self.minima, self.sweep_keys)

    def top_minima(self, top: int = 10) -> pd.DataFrame | None:
        """The ``top`` most frequent minima of each sweep point; None before the analysis."""
        return None if self.minima is None else tables.top_minima(self.minima, self.sweep_keys, top)

    def summary(self) -> dict[str, pd.DataFrame]:
        """Every table ``nnkit show`` prints, by name: ``training`` and, after an
        analysis, ``landing`` and ``minima`` (the most frequent)."""
        out = {"training": self.training()}
        if self.minima is not None:
            out["landing"] = self.landing()
            out["minima"] = self.top_minima()
        return out

    def headline(self) -> str:
        """One line: the experiment, its size, the backend and the time taken."""
        meta = self.meta
        compiling = sum(session.get("compile_seconds", 0.0) for session in meta.get("sessions", []))
        return (
            f"{meta['experiment']}: {meta['inits']} inits, {meta['points']} point(s), "
            f"backend {meta['backend']} ({meta['dtype']}), {meta.get('train_seconds', 0):.2f} s"
            + (f" ({compiling:.2f} s of it compiling kernels)" if compiling >= 0.5 else "")
        )

    def figures(self) -> list[Path]:
        """The figures written into the run folder so far."""
        return sorted(self.folder.figures.glob("*.png"))

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def _repr_html_(self):
        parts = [f"<p><b>{html.escape(self.headline())}</b><br><code>{html.escape(str(self.path))}</code></p>"]
        titles = {"training": "Training", "landing": "Where the inits ended", "minima": "Most frequent minima"}
        for name, table in self.summary().items():
            parts.append(f"<p>{titles[name]}</p>")
            parts.append(table.to_html(index=False, float_format="{:.4g}".format, border=0))
        return "\n".join(parts)


def load(path) -> Run:
    """The finished run at ``path`` (a ``results/<experiment>/<run-id>`` folder)."""
    return Run(path)
