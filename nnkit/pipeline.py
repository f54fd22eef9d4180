"""The stages of a study, in order: train every init of every sweep point into a run
folder, map the minima of the finished run, draw its figures. This module is the one
place that sequences them; each stage is a function of the layers below it.

``nnkit run`` calls :func:`run_experiment` (which analyses when the experiment's
``[analysis]`` has ``enabled = true``), ``nnkit minima RUN`` calls :func:`analyse_run`,
``nnkit landscape RUN`` calls :func:`landscape_run`, ``nnkit plot RUN`` calls
:func:`write_figures`.

The analysis writes

* ``minima.parquet``: one row per distinct minimum and sweep point;
* ``runs.parquet``: gains per init ``minimum`` (id, -1 for no converged minimum),
  ``kind``, ``index``, ``nullity``, ``eig_min``, ``eig_max``, ``polished_loss``,
  ``polished_grad_norm``, ``polished_test_loss``, ``descend_steps``, ``descend_move``,
  ``polish_steps``, ``polish_move``, ``why_not``;
* ``params/point-NNN-polished.npy``: the polished points;
* ``analysis.json``: the settings used (one set per point when a sweep varies them),
  the time taken, and per point the seconds of each stage (``descend``, ``polish``,
  ``spectrum``, ``group``, ``test_loss``; summed over the workers on a cluster);
* ``figures/``: among them the minima by loss level and the Hessian spectra.

The landscape (:mod:`nnkit.landscape.survey`) writes under ``landscape/`` one table
per tool with a column ``point``: ``barriers.parquet``, ``transition_states.parquet``,
``paths.parquet``, ``minima.parquet`` (the analysis' minima that took part and those
found on the way), ``slices.parquet``, ``trajectories.parquet``, ``density.parquet``;
the PATHSAMPLE files ``min.data`` and ``ts.data`` (``point-NNN/`` for each point of a
sweep); ``landscape.json`` last (settings, seconds per tool, notes); and the figures
``figures/landscape-*.png``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import backends, study
from .errors import UserError
from .landscape import pathsample, problem_symmetry, survey
from .landscape.critical import certify
from .landscape.minima import analyse, rows_per_slice
from .objective import make_objective, runs_on
from .report import figures
from .runs import executor, limits
from .runs.results import ANALYSIS_COLUMNS, Run, load
from .runs.store import (
    Damaged,
    RunFolder,
    find_resumable,
    new_run_id,
    write_figure,
    write_json,
    write_npy,
    write_parquet,
)
from .study import config
from .training import evaluate

log = logging.getLogger("nnkit")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``run_dir`` holds what was finished (``stage`` is
    ``"training"``, whose finished chunks are kept, ``"analysis"``, whose training
    is finished and saved, or ``"landscape"``, whose training and analysis are; an
    interrupted survey leaves the run reading as not surveyed)."""

    def __init__(self, run_dir, stage: str):
        super().__init__(str(run_dir))
        self.run_dir = Path(run_dir)
        self.stage = stage


def run_experiment(
    experiment: config.Experiment,
    *,
    results_dir="results",
    backend: str | None = None,
    run_id: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> Path:
    """Train every init of every sweep point of ``experiment``; return the run folder.

    ``backend`` overrides ``experiment.run.backend``. With ``resume`` the run ``run_id``
    (default: the newest unfinished run of this experiment) is continued. When the
    experiment's ``[analysis]`` is enabled, the minima are mapped afterwards.

    ``scheduler`` (a Dask scheduler's address) or ``workers`` (a ``LocalCluster`` of
    that many processes here) override ``run.scheduler`` and ``run.workers``: the
    chunks (and the analysis) then run on the cluster's workers, each on the backend
    ``backend`` resolves to there; this process writes the run folder.
    """
    if run_id is not None:
        config.check_plain_name(run_id, "run id")
    if "\0" in str(results_dir):
        raise UserError(f"results folder {str(results_dir)!r} holds a NUL character")
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise UserError(f"results folder {results_dir} is a file, not a folder")
    root = results_dir / experiment.name
    folder = find_resumable(root, run_id) if resume else RunFolder(root / (run_id or new_run_id()))
    if not resume and folder.path.exists():  # said early; create() below is the atomic test
        raise UserError(f"{folder.path} exists already (use --resume to continue a run)")
    if experiment.landscape.enabled and not experiment.analysis.enabled:
        raise UserError("landscape.enabled = true needs analysis.enabled = true (the landscape lies between the minima)")
    points = config.expand_sweep(experiment)
    problems = study.problems(points)  # every point's data made and checked before any write
    if experiment.analysis.enabled:
        for p, ((_, exp), problem) in enumerate(zip(points, problems)):
            _orbit_keys(exp.analysis, problem, p)  # an analysis that cannot run is said before training
    if scheduler is None and workers is None:
        scheduler, workers = experiment.run.scheduler, experiment.run.workers
    asked = backend or experiment.run.backend
    be = _backend(asked, problems, remote=bool(scheduler or workers))
    tasks = [study.task(exp) for _, exp in points]
    limits.check_run(experiment, points, problems, tasks, results_dir, disk=not resume)
    held = folder.writing() if resume else folder.create(experiment.to_dict(), executor.initial_meta(experiment, be, points))
    with held:  # one writer from the first file to the last figure
        meta = _resumable(folder, experiment, points, problems, tasks) if resume else folder.read_meta()
        folder.sweep_starts()
        try:
            with _cluster(scheduler, workers) as cl:
                _train(folder, meta, points, problems, tasks, be, progress, cl, asked)
                if experiment.analysis.enabled:
                    try:
                        _analyse_run(load(folder.path), (), cl, progress)
                    except KeyboardInterrupt:
                        raise Interrupted(folder.path, "analysis") from None
                    if experiment.landscape.enabled:
                        try:
                            _landscape_run(load(folder.path), (), progress)
                        except KeyboardInterrupt:
                            raise Interrupted(folder.path, "landscape") from None
        except Exception:
            if not resume and not folder.chunks.exists() and not folder.is_finished():
                folder.remove()  # a run that failed before its first chunk leaves nothing
            raise
    return folder.path


def _cluster(scheduler, workers):
    """The Dask cluster to run on, or None (nothing started) when neither is given."""
    if not scheduler and not workers:
        return contextlib.nullcontext(None)
    if workers is not None and workers < 0:
        raise UserError(f"workers = {workers}: expected a number of worker processes, 1 or more")
    from .runs import cluster

    return cluster.connect(scheduler or None, workers or 0)


def _train(folder, meta, points, problems, tasks, be, progress, cl=None, asked=None) -> None:
    """Train, gather and commit the run in ``folder`` (held by this process), here on
    ``be`` or on the workers of the cluster ``cl`` (on the backend ``asked``)."""
    meta["backend"], meta["device"] = be.name, be.device  # the backend that finishes it
    session = {"backend": be.name, "device": be.device, "started": executor.now()}
    if cl is not None:
        session["cluster"] = cl.describe()
    meta.setdefault("sessions", []).append(session)
    started = time.perf_counter()
    try:
        executor.train_points(folder, meta, points, problems, tasks, be, progress,
                              cluster=cl, asked=asked, session=session)  # fmt: skip
    except KeyboardInterrupt:
        raise Interrupted(folder.path, "training") from None
    finally:
        session["seconds"] = round(time.perf_counter() - started, 3)
        session["compile_seconds"] = round(be.compile_seconds, 3)
        workers = session.get("cluster", {}).get("workers", {}).values()
        if cl is not None and any("backend" in w for w in workers):  # what the workers trained on
            used = ", ".join(sorted({w["backend"] for w in workers if "backend" in w}))
            devices = "; ".join(sorted({w["device"] for w in workers if "device" in w}))
            meta["backend"], meta["device"] = session["backend"], session["device"] = used, devices
        if folder.path.exists():
            folder.write_meta(meta)
    try:  # every chunk is saved: a resume after a kill here gathers them again
        folder.gather(executor.chunk_counts(meta, points), executor.RUN_COLUMNS)
        meta["finished"] = executor.now()
        meta["train_seconds"] = round(sum(s.get("seconds", 0.0) for s in meta["sessions"]), 3)
        folder.finish(meta)
    except KeyboardInterrupt:
        stage = "analysis" if folder.is_finished() else "training"
        raise Interrupted(folder.path, stage) from None


def _backend(name: str, problems, remote: bool = False) -> backends.Backend:
    """The backend of the run: the one asked for, or, when no point's objective runs
    there (:func:`nnkit.objective.runs_on`: an exact population loss runs on numba or
    numpy), the one they run on. Overriding a backend the user named earns a warning.

    With ``remote`` workers train, each on ``name`` as it resolves there: a backend
    that cannot run here (no GPU on the client) is then NumPy here, to size the chunks."""
    where = {runs_on(problem, name) for problem in problems}
    if where != {name} and name != "auto":
        log.warning("the exact population loss (data.population = true) runs on numba or numpy only: "
                    "its points train on the numpy backend, not on %s", name)  # fmt: skip
    pick = where.pop() if len(where) == 1 else name
    if remote and pick != "auto" and not backends.probe(pick).usable:
        log.info("backend %s cannot run on this machine; the workers resolve it, and chunk sizes "
                 "follow run.chunk_size (or NumPy's memory budget here)", pick)  # fmt: skip
        return backends.get("numpy")
    return backends.get(pick)


def _resumable(folder: RunFolder, experiment: config.Experiment, points, problems, tasks) -> dict:
    """The meta of the run in ``folder`` (held by this process), checked to be an
    unfinished run of ``experiment`` whose files are whole; nothing is written before
    the checks pass. A run may be continued only with the experiment it was started
    with (how the work runs and what is analysed afterwards may change)."""
    meta = folder.read_meta()
    stored = folder.read_config()
    try:  # a config stored by an older nnkit lacks keys added since: fill in their defaults
        stored = config.from_dict(stored, experiment.name).to_dict()
    except UserError as exc:
        raise Damaged(folder.config_file, str(exc)) from None
    current = experiment.to_dict()
    for d in (stored, current):
        for section in ("run", "analysis", "landscape"):
            d.pop(section, None)
    if stored != current:
        a, b = config.flatten(stored), config.flatten(current)
        diff = sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))
        raise UserError(f"cannot resume {folder.path}: the experiment differs from the stored one in {', '.join(diff)}")
    if meta["finished"]:
        folder.clean()  # a kill after the commit may have left chunks behind
        raise UserError(f"run {folder.path} is already finished")
    if meta["points"] != len(points) or meta["inits"] != sum(exp.inits for _, exp in points):
        raise Damaged(folder.meta_file, "its points or inits do not match config.json")
    executor.check_chunks(folder, meta, points, problems, tasks)
    return meta


def analyse_run(run: Run, overrides=(), *, scheduler: str | None = None, workers: int | None = None,
                progress: bool | None = None) -> pd.DataFrame:  # fmt: skip
    """Map the minima of the finished run ``run`` with its ``[analysis]`` settings
    changed by ``overrides`` (``analysis.KEY=VALUE``); swept ``analysis.*`` keys apply
    to their own points. Writes the tables and figures; returns the minima table.

    The points are polished and certified on a Dask cluster when ``scheduler`` or
    ``workers`` (or the run's ``run.scheduler``, ``run.workers``) say so."""
    if scheduler is None and workers is None:
        stored = run.config.get("run", {})
        scheduler, workers = stored.get("scheduler", ""), stored.get("workers", 0)
    with _cluster(scheduler, workers) as cl:
        return _analyse_run(run, overrides, cl, progress)


def _stored_points(run: Run, overrides, section: str):
    """The sweep points and problems of the stored experiment of ``run``, with the
    ``section.*`` settings changed by ``overrides`` (no other key may change)."""
    raw = copy.deepcopy(run.config)
    for item in overrides:
        if not item.split("=", 1)[0].strip().startswith(f"{section}."):
            raise UserError(f"--set {item}: only {section}.* settings can change on a finished run")
        config.apply_override(raw, item)
    points = config.expand_sweep(config.from_dict(raw))
    return points, study.problems(points)


def _analyse_run(run: Run, overrides, cl, progress=None) -> pd.DataFrame:
    points, problems = _stored_points(run, overrides, "analysis")
    with run.folder.writing():
        run.reload()  # as it is now that this process holds it
        run.check()  # every file it reads is whole before anything is written
        minima = _analyse(run, points, problems, cl, progress)
        run.folder.clean()
        _write_figures(run)  # the final-loss histogram, the minima and their spectra among them
    return minima


def _analyse(run: Run, points, problems, cl=None, progress=None) -> pd.DataFrame:
    """The analysis of ``run`` (held by this process). Its files are written at the
    end, ``analysis.json`` removed before the first and written after the last, so that
    a kill while writing leaves a run that reads as not analysed (and a Ctrl-C before
    leaves the earlier analysis as it was)."""
    host = backends.get("numpy")  # polishing and Hessians: float64 on the CPU
    runs = run.runs.drop(columns=[c for c in ANALYSIS_COLUMNS if c in run.runs.columns])
    started = time.perf_counter()
    per_point, tables, settings, polished, stages = [], [], [], [], []
    bar = executor.progress_bar(len(runs), progress, "analysis")
    with bar, np.errstate(all="ignore"):  # diverged inits are expected, and flagged
        for p, ((_, point_exp), problem) in enumerate(zip(points, problems)):
            rows = runs.index[runs["point"] == p]
            objective = make_objective(problem, host)
            # the test loss is the loss on the test samples, whatever the objective
            on_samples = make_objective(dataclasses.replace(problem, teacher=None), host)
            cfg = point_exp.analysis
            orbit_keys = _orbit_keys(cfg, problem, p)
            t0 = time.perf_counter()
            seconds = {}
            theta, per_init, minima = analyse(
                objective, run.params(p), cfg, runs.loc[rows, "init"].to_numpy(),
                lambda th: evaluate(on_samples, th, memory_mb=point_exp.run.memory_mb, splits=("test",))["test_loss"],
                rows_per_slice(problem.model, problem.data.n, point_exp.run.memory_mb),
                certify if cl is None else cl.certifier(problem), bar.update, seconds, orbit_keys,
            )  # fmt: skip
            stages.append({stage: round(s, 3) for stage, s in seconds.items()})
            per_init.index = rows
            per_point.append(per_init)
            polished.append(theta)
            for i, key in enumerate(run.sweep_keys):
                minima.insert(i, key, runs.loc[rows[0], key])
            minima.insert(0, "point", p)
            tables.append(minima)
            settings.append(dataclasses.asdict(cfg))
            log.info("point %d: %d minima from %d inits (%.1f s)", p, len(minima), len(rows),
                     time.perf_counter() - t0)  # fmt: skip
    runs = runs.join(pd.concat(per_point)[list(ANALYSIS_COLUMNS)])
    minima = pd.concat(tables, ignore_index=True)
    run.folder.analysis_file.unlink(missing_ok=True)
    _retire_landscape(run.folder)  # drawn between the minima about to be replaced
    for p, theta in enumerate(polished):
        write_npy(run.folder.params_file(p, polished=True), theta)
    write_parquet(run.folder.minima_file, minima)
    write_parquet(run.folder.runs_file, runs)
    write_json(run.folder.analysis_file, {
        "settings": settings[0] if all(s == settings[0] for s in settings) else settings,
        "stages_seconds": stages,
        "seconds": round(time.perf_counter() - started, 3),
    })  # fmt: skip
    run.reload()  # the tables read before are stale now
    return minima


def landscape_run(run: Run, overrides=(), *, progress: bool | None = None) -> dict:
    """The landscape between the minima of the analysed run ``run``, with its
    ``[landscape]`` settings changed by ``overrides`` (``landscape.KEY=VALUE``). Writes
    the tables, the PATHSAMPLE files and the figures; returns ``landscape.json``."""
    if not run.analysed:
        raise UserError(f"run {run.path} has not been analysed: map its minima first (nnkit minima {run.path})")
    with run.folder.writing():
        run.reload()
        run.check()
        summary = _landscape_run(run, overrides, progress)
        run.folder.clean()
    return summary


def _landscape_run(run: Run, overrides, progress=None) -> dict:
    points, problems = _stored_points(run, overrides, "landscape")
    # the tools hand host float64 arrays to the objective: the CPU backends, compiled where they can be
    host = backends.get("numba" if backends.probe("numba").usable else "numpy")
    started = time.perf_counter()
    tables, files, per_point = {}, {}, []
    folder = run.folder
    bar = executor.progress_bar(sum(len(e.landscape.tools) for _, e in points), progress, "landscape", "tool")
    with bar:
        for p, ((_, exp_p), problem) in enumerate(zip(points, problems)):
            cfg = exp_p.landscape
            objective = make_objective(problem, host)
            minima = run.minima[run.minima["point"] == p]
            taken = survey.chosen(minima, cfg)
            polished = run.params(p, polished=True)
            inits = run.runs.loc[run.runs["point"] == p, "init"].to_numpy()
            where = {int(i): r for r, i in enumerate(inits)}
            theta = polished[[where[int(i)] for i in taken["representative"]]]
            retrain = functools.partial(_retrain, make_objective(problem, _trained_on(run)), exp_p, inits)
            found = survey.survey(objective, taken, theta, cfg, exp_p.analysis, retrain=retrain,
                                  on_tool=lambda _: bar.update(1), on_note=bar.set_postfix_str,
                                  next_id=int(np.max(minima["minimum"].to_numpy(), initial=-1)) + 1,
                                  hessian_rows=rows_per_slice(problem.model, problem.data.n, exp_p.run.memory_mb))  # fmt: skip
            for name, table in found.tables.items():
                if isinstance(table, pd.DataFrame):
                    tables.setdefault(name, []).append(table.assign(point=p)[["point", *table.columns]])
            stem = "" if len(points) == 1 else f"-point-{p:03d}"
            files.update({f"landscape-{name}{stem}.png": fig for name, fig in found.figures.items()})
            if found.pathsample is not None:
                where_to = folder.landscape if len(points) == 1 else folder.landscape / f"point-{p:03d}"
                files[where_to] = found.pathsample
            per_point.append({"seconds": found.seconds, "notes": found.notes, **_counts(found)})
    summary = {
        "settings": [dataclasses.asdict(e.landscape) for _, e in points],
        "points": per_point,
        "backend": host.name,
        "seconds": round(time.perf_counter() - started, 3),
    }
    try:
        _write_landscape(folder, tables, files, summary)
    except KeyboardInterrupt:
        raise Interrupted(folder.path, "landscape") from None
    run.reload()
    return summary


def _retire_landscape(folder: RunFolder) -> None:
    """Remove the survey of ``folder``: ``landscape.json`` first (the run then reads as
    not surveyed), then its tables, files and figures."""
    folder.landscape_file.unlink(missing_ok=True)
    if folder.landscape.exists():
        shutil.rmtree(folder.landscape)
    for figure in folder.figures.glob("landscape-*.png"):
        figure.unlink()


def _trained_on(run: Run) -> backends.Backend:
    """The backend the run trained on, where it can run here (the retrained paths of
    the trajectories then follow the run's to the last digit), else NumPy."""
    name = str(run.meta.get("backend", "numpy"))
    return backends.get(name) if name in backends.names() and backends.probe(name).usable else backends.get("numpy")


def _write_landscape(folder: RunFolder, tables: dict, files: dict, summary: dict) -> None:
    """The survey's tables, PATHSAMPLE files and figures into ``folder``, replacing
    the survey before (whose ``landscape.json`` goes first, so that a kill part way
    leaves a run that reads as not surveyed), ``landscape.json`` last."""
    # the survey before stays whole until this one is done: it goes from here, landscape.json first
    folder.landscape_file.unlink(missing_ok=True)
    for name in survey.TABLES:  # a table of an earlier landscape with other tools goes
        path = folder.landscape / f"{name}.parquet"
        if name in tables:
            write_parquet(path, pd.concat(tables[name], ignore_index=True))
        else:
            path.unlink(missing_ok=True)
    # a survey replaces the one before: its figures and PATHSAMPLE files that this one has not made go
    for stale in folder.figures.glob("landscape-*.png"):
        if stale.name not in files:
            stale.unlink()
    for stale in [*folder.landscape.glob("*.data"), *folder.landscape.glob("point-*/*.data")]:
        if stale.parent not in files:
            stale.unlink()
    for target, value in files.items():
        if isinstance(target, Path):
            pathsample.write_min_data(target / "min.data", value["min"][0], value["min"][1])
            pathsample.write_ts_data(target / "ts.data", *value["ts"])
        else:
            write_figure(folder.figures / target, value)
    write_json(folder.landscape_file, summary)


def _counts(found) -> dict:
    """What one point's landscape holds, in numbers (for ``landscape.json``)."""
    out = {}
    if "barriers" in found.tables:
        out["pairs"] = len(found.tables["barriers"])
    ts = found.tables.get("transition_states")
    if ts is not None:
        paths = found.tables["paths"]
        out["bands"] = int(paths["band"].nunique())
        out["bands_converged"] = int(paths.groupby("band")["neb_converged"].first().sum())
        out["transition_states"] = len(ts)
        out["minima_found"] = int((found.tables["minima"]["found_by"] == "path").sum())
    return out


def _retrain(objective, exp, inits, count, points):
    """Train the first ``count`` inits of ``inits`` again as the run did, keeping about
    ``points`` snapshots of each and its end: ``(inits (R,), paths (R, T, P))``, NaN
    rows past an init's end."""
    from .core.init import init_batch
    from .training import train

    ids = np.asarray(inits[:count], dtype=np.int64)
    theta0 = init_batch(objective.model.layout, exp.init, exp.seed, ids)
    cfg = dataclasses.replace(exp.train, history=max(points, 2))
    res = train(objective, theta0, cfg, seed=exp.seed, ids=ids, snapshots=True)
    h = res.history
    T = max(int(np.sum(h["init"] == i)) for i in ids) + 1
    paths = np.full((ids.size, T, theta0.shape[1]), np.nan)
    for r, i in enumerate(ids):
        rows = np.flatnonzero((h["init"] == i) & (h["step"] < res.steps[r]))
        rows = rows[np.argsort(h["step"][rows], kind="stable")]
        paths[r, : rows.size] = h["theta"][rows]
        paths[r, rows.size] = res.theta[r]  # where it stopped, a history step or not
    return ids, paths


def _orbit_keys(cfg, problem, p):
    """The invariants under ``cfg.problem_symmetry`` for the problem of point ``p``
    (None without one); :class:`UserError` where the group is not a symmetry of it."""
    if cfg.problem_symmetry == "none":
        return None
    reason = problem_symmetry.why_not(problem, cfg.problem_symmetry)
    if reason:
        raise UserError(f"analysis.problem_symmetry = {cfg.problem_symmetry!r} does not apply to point {p}: {reason}")
    return functools.partial(problem_symmetry.invariants, problem)


def write_figures(run: Run) -> list[Path]:
    """Every figure of ``run`` into ``RUN/figures/``; a figure that no longer applies
    (no minima after a new analysis) is removed. Returns the files written."""
    with run.folder.writing():
        run.reload()
        run.check()
        return _write_figures(run)


def _write_figures(run: Run) -> list[Path]:
    written = []
    for name, figure in figures.figures(run).items():
        path = run.folder.figures / name
        if figure is None:
            path.unlink(missing_ok=True)
            continue
        written.append(write_figure(path, figure))
    return written
