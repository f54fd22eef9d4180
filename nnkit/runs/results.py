"""Reading a finished run back: ``nnkit.load(path)``. Every file is checked as it is
read (:class:`~nnkit.runs.store.Damaged` names the file and what is wrong with it);
a run whose last analysis did not finish reads as not analysed."""

from __future__ import annotations

import html
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..report import tables
from ..study import config
from .store import Damaged, RunFolder, npy_shape, read_json, read_npy, read_parquet

#: the columns every runs.parquet has (chunk and timing columns aside)
RUN_COLUMNS = ("point", "init", "seed", "status", "steps", "loss", "grad_norm")

#: the per-init columns an analysis adds to runs.parquet
ANALYSIS_COLUMNS = (
    "minimum", "kind", "index", "nullity", "eig_min", "eig_max", "polished_loss",
    "polished_grad_norm", "polished_test_loss", "descend_steps", "descend_move", "polish_steps",
    "polish_move", "why_not",
)  # fmt: skip

#: the columns every minima.parquet has
MINIMA_COLUMNS = ("point", "minimum", "loss", "count", "fraction", "kind", "spurious")


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
    landscape : the tables of ``landscape/`` by name, or None before a survey
        (``nnkit landscape RUN``); :attr:`barriers` and :attr:`transition_states` are two
        of them.
    """

    def __init__(self, path):
        self.folder = RunFolder(path)
        self.path = self.folder.path
        for file in (self.folder.meta_file, self.folder.config_file):
            if not file.is_file():
                raise UserError(f"{self.path} is not an nnkit run folder (no {file.name})")
        self.meta = self.folder.read_meta()
        self.config = read_json(self.folder.config_file)
        try:
            config.from_dict(self.config)
        except UserError as exc:
            raise Damaged(self.folder.config_file, str(exc)) from None
        if not self.meta["finished"]:
            raise UserError(
                f"run {self.path} is not finished (continue it with nnkit run FILE --resume "
                f"--run-id {self.path.name} --results {self.path.parent.parent}, FILE its experiment)"
            )

    def check(self) -> Run:
        """Read every table and the headers of every parameter file; :class:`Damaged`
        for the first that is not whole. Returns the run."""
        runs, _, _ = self.runs, self.history, self.minima
        for p in range(self.points):
            rows = int((runs["point"] == p).sum())
            npy_shape(self.folder.params_file(p), (rows, None))
            if self.minima is not None:
                npy_shape(self.folder.params_file(p, polished=True), (rows, None))
        return self

    @property
    def experiment(self) -> config.Experiment:
        """The resolved experiment of the run."""
        return config.from_dict(self.config)

    @property
    def name(self) -> str:
        return self.meta["experiment"]

    @property
    def analysed(self) -> bool:
        """Whether an analysis of the run finished (its ``analysis.json`` is written
        last)."""
        return self.folder.analysis_file.is_file()

    @cached_property
    def runs(self) -> pd.DataFrame:
        runs = read_parquet(self.folder.runs_file, RUN_COLUMNS, self.meta["inits"])
        if not self.analysed:  # an analysis killed half-way: its columns do not count
            runs = runs.drop(columns=[c for c in ANALYSIS_COLUMNS if c in runs.columns])
        if not runs["point"].between(0, self.points - 1).all():
            raise Damaged(self.folder.runs_file, f"its column point holds values outside 0..{self.points - 1}")
        return runs

    @cached_property
    def history(self) -> pd.DataFrame | None:
        path = self.folder.history_file
        return read_parquet(path, ("init", "step", "loss")) if path.is_file() else None

    @cached_property
    def minima(self) -> pd.DataFrame | None:
        if not self.analysed:
            return None
        read_json(self.folder.analysis_file)
        minima = read_parquet(self.folder.minima_file, MINIMA_COLUMNS)
        runs = self.runs
        if "minimum" not in runs.columns:
            raise Damaged(self.folder.runs_file, "the analysis columns are missing")
        found = runs.loc[runs["minimum"] >= 0].groupby(["point", "minimum"]).size()
        listed = minima.set_index(["point", "minimum"])["count"]
        if not found.sort_index().equals(listed.sort_index().astype(found.dtype)):
            raise Damaged(self.folder.minima_file, "its minima and counts do not match the column minimum of runs.parquet")
        return minima

    @property
    def has_landscape(self) -> bool:
        """Whether a landscape survey of the current analysis finished (its
        ``landscape/landscape.json`` is written last)."""
        return self.analysed and self.folder.landscape_file.is_file()

    @cached_property
    def _landscape_summary(self) -> dict | None:
        """``landscape/landscape.json``, read once (None without a finished survey)."""
        return read_json(self.folder.landscape_file) if self.has_landscape else None

    @cached_property
    def landscape(self) -> dict[str, pd.DataFrame] | None:
        """The tables of ``landscape/`` by name (``barriers``, ``transition_states``,
        ``paths``, ``minima``, ``slices``, ``trajectories``, ``density``: those the
        tools wrote), or None without a finished survey (``nnkit landscape RUN``)."""
        if self._landscape_summary is None:
            return None
        out = {}
        for path in sorted(self.folder.landscape.glob("*.parquet")):
            out[path.stem] = read_parquet(path, ("point",))
        return out

    @property
    def barriers(self) -> pd.DataFrame | None:
        """``landscape/barriers.parquet``: one row per pair of minima (None without it)."""
        return (self.landscape or {}).get("barriers")

    @property
    def transition_states(self) -> pd.DataFrame | None:
        """``landscape/transition_states.parquet``: one row per distinct transition
        state (None without it)."""
        return (self.landscape or {}).get("transition_states")

    def landscape_summary(self) -> pd.DataFrame | None:
        """Per sweep point: pairs and their straight-line barriers, bands, transition
        states and minima found on the way; None without a survey."""
        if self.landscape is None:
            return None
        return tables.landscape(self.landscape, self._landscape_summary, self.sweep_keys, self.runs)

    def landscape_notes(self) -> list[str]:
        """What the survey's tools had nothing to work on, one line each."""
        if self._landscape_summary is None:
            return []
        points = self._landscape_summary.get("points", [])
        return [f"point {p}: {note}" for p, entry in enumerate(points) if isinstance(entry, dict)
                for note in entry.get("notes", [])]  # fmt: skip

    def reload(self) -> None:
        """Forget the tables read so far (after the run folder changed)."""
        for name in ("runs", "history", "minima", "landscape", "_landscape_summary"):
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
        if not 0 <= point < self.points:
            raise UserError(f"run {self.path} has no sweep point {point} (it has {self.points})")
        if polished and not self.analysed:
            raise UserError(f"run {self.path} has no polished parameters: analyse it first (nnkit minima RUN)")
        rows = int((self.runs["point"] == point).sum())
        return read_npy(self.folder.params_file(point, polished), (rows, None))

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

    def diagnosis(self) -> list[str]:
        """A short paragraph per sweep point where most inits failed to converge, or
        where the analysis certified fewer than half of them: how they ended and what
        to change (empty when every point went well)."""
        return self.training_diagnosis() + self.analysis_diagnosis()

    def training_diagnosis(self) -> list[str]:
        """The paragraphs of :meth:`diagnosis` on training."""
        cfgs = [exp.train for _, exp in config.expand_sweep(self.experiment)]
        return tables.diagnosis(self.runs, cfgs, self.sweep_keys)

    def analysis_diagnosis(self) -> list[str]:
        """The paragraphs of :meth:`diagnosis` on the analysis (none before one)."""
        if not self.analysed:
            return []
        settings = read_json(self.folder.analysis_file).get("settings", {})
        settings = settings if isinstance(settings, list) else [settings]
        if not settings or not all(isinstance(s, dict) and {"grad_tol", "polish_radius"} <= set(s) for s in settings):
            return []
        return tables.analysis_diagnosis(self.runs, settings, self.sweep_keys)

    def summary(self) -> dict[str, pd.DataFrame]:
        """Every table ``nnkit show`` prints, by name: ``training`` and, after an
        analysis, ``landing`` and ``minima`` (the most frequent)."""
        out = {"training": self.training()}
        if self.minima is not None:
            out["landing"] = self.landing()
            out["minima"] = self.top_minima()
        if self.landscape is not None:
            out["landscape"] = self.landscape_summary()
        return out

    def to_dict(self) -> dict:
        """What ``nnkit show --json`` prints: the run's folder, id and experiment, its
        ``meta.json``, the diagnosis, every table of :meth:`summary` as a list of rows
        (NaN as null) and the landscape notes; plain JSON types only."""
        tables = {
            name: json.loads(frame.to_json(orient="records", double_precision=15))
            for name, frame in self.summary().items()
            if frame is not None
        }
        return {
            "path": str(self.path), "run_id": self.path.name, "experiment": self.name,
            "headline": self.headline(), "analysed": self.analysed, "landscape": self.has_landscape,
            "meta": self.meta, "tables": tables, "diagnosis": self.diagnosis(),
            "landscape_notes": self.landscape_notes(),
        }  # fmt: skip

    def headline(self) -> str:
        """One line: the experiment, its size, the backend and the time taken."""
        meta = self.meta
        sessions = [s for s in meta.get("sessions", []) if isinstance(s, dict)]
        compiling = sum(session.get("compile_seconds", 0.0) for session in sessions)
        workers = {str(w) for s in sessions if isinstance(s.get("chunks"), dict) for w in s["chunks"].values()}
        return (
            f"{meta['experiment']}: {meta['inits']} inits, {meta['points']} point(s), "
            f"backend {meta['backend']} ({meta['dtype']}), {meta.get('train_seconds', 0):.2f} s"
            + (f" ({compiling:.2f} s of it compiling kernels)" if compiling >= 0.5 else "")
            + (f", on {len(workers)} Dask worker(s)" if workers else "")
        )

    def figures(self) -> list[Path]:
        """The figures written into the run folder so far."""
        return sorted(self.folder.figures.glob("*.png"))

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def _repr_html_(self):
        parts = [f"<p><b>{html.escape(self.headline())}</b><br><code>{html.escape(str(self.path))}</code></p>"]
        titles = {"training": "Training", "landing": "Where the inits ended", "minima": "Most frequent minima",
                  "landscape": "The landscape between the minima"}  # fmt: skip
        for name, table in self.summary().items():
            parts.append(f"<p>{titles[name]}</p>")
            parts.append(table.to_html(index=False, float_format="{:.4g}".format, border=0))
            if name == "training":
                parts += [f"<p><i>{html.escape(paragraph)}</i></p>" for paragraph in self.diagnosis()]
        return "\n".join(parts)


def load(path) -> Run:
    """The finished run at ``path`` (a ``results/<experiment>/<run-id>`` folder), its
    files checked (:meth:`Run.check`)."""
    return Run(path).check()
