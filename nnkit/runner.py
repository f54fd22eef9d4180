"""Run an experiment: data, inits and training, chunk by chunk, into a results folder.

``results/<experiment>/<run-id>/`` receives ``config.json`` (the resolved experiment)
and ``meta.json`` first; each finished chunk of inits is then written atomically under
``chunks/``. When every chunk is done they are gathered into ``runs.parquet``,
``params/point-NNN.npy`` and ``history.parquet``, and ``chunks/`` is removed. A run that
was interrupted is continued by :func:`run_experiment` with ``resume=True``: finished
chunks are kept and only the missing ones are trained.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from . import backends, config, storage
from .backends import Backend
from .data import make_dataset
from .errors import UserError
from .init import init_batch
from .objective import prepare_targets
from .seeding import data_rng
from .train import STATUSES, TrainResult, train

#: column order of runs.parquet (sweep keys come right after ``point``)
RUN_COLUMNS = (
    "point", "init", "seed", "status", "steps", "loss", "grad_norm",
    "train_loss", "test_loss", "train_error", "test_error", "chunk", "chunk_time_s",
)  # fmt: skip


def run_experiment(
    experiment: config.Experiment,
    *,
    results_dir="results",
    backend: str | None = None,
    run_id: str | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> Path:
    """Train every init of every sweep point of ``experiment``; return the run folder.

    ``backend`` overrides ``experiment.run.backend``. With ``resume`` the run ``run_id``
    (default: the newest unfinished run of this experiment) is continued.
    """
    if run_id is not None:
        config.check_plain_name(run_id, "run id")
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise UserError(f"results folder {results_dir} is a file, not a folder")
    root = results_dir / experiment.name
    if resume:
        run_dir = _find_resumable(root, run_id)
        _check_same(run_dir, experiment)
        meta = storage.read_json(run_dir / "meta.json")
    else:
        run_dir = root / (run_id or _new_run_id())
        if run_dir.exists():
            raise UserError(f"{run_dir} exists already (use --resume to continue a run)")
        meta = None

    points = config.expand_sweep(experiment)
    if all(getattr(exp.data, "population", False) for _, exp in points):
        backend = "numpy"  # the exact population objective is computed with NumPy
    be = backends.get(backend or experiment.run.backend)
    problems = _problems(points)  # every point's data made and checked before any write
    created = meta is None
    if created:
        meta = _initial_meta(experiment, be, points)
        storage.write_json(run_dir / "config.json", experiment.to_dict())
        storage.write_json(run_dir / "meta.json", meta)
    session = {"backend": be.name, "device": be.device, "started": _now()}
    meta.setdefault("sessions", []).append(session)

    work = list(zip(_sweep_cells(experiment, points), [exp for _, exp in points], problems))
    started = time.perf_counter()
    try:
        with _progress_bar(meta["inits"], progress) as bar:
            for p, (cells, exp, problem) in enumerate(work):
                _run_point(run_dir, meta, p, cells, exp, problem, be, bar)
    except UserError:
        if created and not (run_dir / "chunks").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # a bad input leaves no empty run
        raise
    finally:
        session["seconds"] = round(time.perf_counter() - started, 3)
        session["compile_seconds"] = round(be.compile_seconds, 3)
        if run_dir.exists():
            storage.write_json(run_dir / "meta.json", meta)
    _gather(run_dir, len(points))
    meta["finished"] = _now()
    meta["train_seconds"] = round(sum(s.get("seconds", 0.0) for s in meta["sessions"]), 3)
    storage.write_json(run_dir / "meta.json", meta)
    if experiment.analysis.enabled:
        from .analysis import analyse_run
        from .results import load

        try:
            analyse_run(load(run_dir))
        except KeyboardInterrupt:
            raise AnalysisInterrupted(run_dir) from None
    return run_dir


class AnalysisInterrupted(KeyboardInterrupt):
    """Ctrl-C during the analysis of a run whose training is finished and saved."""

    def __init__(self, run_dir):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def chunk_size_for(exp: config.Experiment, n: int, d: int, backend=None) -> int:
    """Inits per chunk: ``run.chunk_size``, or as many as fit in the backend's memory
    budget (``run.memory_mb`` on the CPU, a share of the free memory on a GPU).

    Each init needs room for its parameters, gradient and buffers, and for what the
    backend keeps per sample in a step (:meth:`Backend.stored_per_sample`: none for
    fused kernels). The result is rounded down to a multiple of
    ``backend.chunk_multiple`` when larger.
    """
    if exp.run.chunk_size:
        return min(exp.run.chunk_size, exp.inits)
    backend = backend if backend is not None else Backend()
    model = exp.build_model(d)
    sgd = exp.train.method == "sgd"
    rows = min(n, exp.train.batch_size) if sgd else n
    # with SGD each init also has its own (rows, d) batch
    words = 8 * model.size + rows * backend.stored_per_sample(model, sgd) + (rows * d if sgd else 0)
    itemsize = 4 if exp.train.dtype == "float32" else 8
    budget = backend.memory_budget(exp.run.memory_mb)
    chunk = int(max(1, min(exp.inits, budget // (words * itemsize))))
    multiple = getattr(backend, "chunk_multiple", 1)
    return chunk - chunk % multiple if chunk < exp.inits and chunk > multiple else chunk


def _problems(points):
    """``(dataset, y, y_test)`` of every sweep point; points with the same data share it."""
    made, out = {}, []
    for _, exp in points:
        key = (exp.data_kind, exp.data, exp.seed)
        if key not in made:
            made[key] = make_dataset(exp.data_kind, exp.data, data_rng(exp.seed))
        ds = made[key]
        try:
            out.append((ds, prepare_targets(exp.objective, ds.y), prepare_targets(exp.objective, ds.y_test)))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return out


def _run_point(run_dir, meta, p, values, exp, problem, be, bar):
    ds, y, y_test = problem
    chunk = meta["chunk_sizes"][p]
    if chunk is None:  # fixed when the point starts, so that a resumed run cuts alike
        chunk = meta["chunk_sizes"][p] = chunk_size_for(exp, ds.n, ds.d, be)
        storage.write_json(run_dir / "meta.json", meta)
    model = exp.build_model(ds.d)
    objective = exp.objective
    if getattr(exp.data, "population", False):  # the exact expected loss, on the CPU
        from .population import population_for

        be = backends.get("numpy")
        kernel = population_for(exp, model, ds)
    else:
        kernel = be.kernel(model, objective)
    for c, first in enumerate(range(0, exp.inits, chunk)):
        stem = run_dir / "chunks" / f"p{p:03d}-c{c:05d}"
        ids = np.arange(first, min(first + chunk, exp.inits))
        if stem.with_suffix(".parquet").exists():
            bar.update(ids.size)
            continue
        theta0 = init_batch(model.layout, exp.init, exp.seed, ids)
        t0 = time.perf_counter()
        note = _StepNote(bar, f"point {p} chunk {c}", exp.train.max_steps)
        res = _train_in_memory(kernel, be, theta0, ds.X, y, exp, ids, bar.update, note)
        seconds = time.perf_counter() - t0
        rows = {
            "point": p,
            **values,
            "init": ids,
            "seed": exp.seed,
            "status": res.status,
            "steps": res.steps,
            "loss": res.loss,
            "grad_norm": res.grad_norm,
        }
        rows.update(_evaluate(kernel, be, objective, exp, res.theta, ds, y, y_test))
        rows.update(chunk=c, chunk_time_s=seconds)
        if res.history is not None:
            hist = pd.DataFrame({"point": p, **res.history})
            storage.write_parquet(stem.with_suffix(".history.parquet"), hist)
        storage.write_npy(stem.with_suffix(".npy"), res.theta)
        storage.write_parquet(stem.with_suffix(".parquet"), pd.DataFrame(rows))  # marks it done


def _train_in_memory(kernel, be, theta0, X, y, exp, ids, on_finish, on_step):
    """:func:`train` on the chunk, or, when the device runs out of memory, on each half
    of it in turn (and so on down to single inits)."""
    try:
        return train(
            kernel, be, theta0, X, y, exp.train, seed=exp.seed, ids=ids,
            on_finish=on_finish, on_step=on_step,
        )  # fmt: skip
    except Exception as exc:
        if ids.size < 2 or not be.is_out_of_memory(exc):
            raise
    be.release_memory()
    half = ids.size // 2
    parts = [
        _train_in_memory(kernel, be, theta0[part], X, y, exp, ids[part], on_finish, on_step)
        for part in (slice(0, half), slice(half, None))
    ]
    return TrainResult.concat(parts)


def _evaluate(kernel, be, objective, exp, theta, ds, y, y_test):
    """Data loss (no penalty) on the train and test sets, and error rates for logistic.

    Predictions store ``(rows, n, width)`` activations, so the networks are taken a
    slice at a time that fits in ``run.memory_mb``, whatever the chunk size."""
    per_row = 8 * max(ds.n, ds.X_test.shape[0]) * (3 * sum(exp.model.hidden) + 4)
    step = max(1, exp.run.memory_mb * 2**20 // per_row)
    parts = [
        _evaluate_rows(kernel, be, objective, exp.train.dtype, theta[a : a + step], ds, y, y_test)
        for a in range(0, theta.shape[0], step)
    ]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _evaluate_rows(kernel, be, objective, dtype, theta, ds, y, y_test):
    xp = be.xp
    th = be.asarray(theta, getattr(xp, dtype))
    out = {}
    for split, X, target in (("train", ds.X, y), ("test", ds.X_test, y_test)):
        if X.shape[0] == 0:
            out[f"{split}_loss"] = np.full(theta.shape[0], np.nan)
            out[f"{split}_error"] = np.full(theta.shape[0], np.nan)
            continue
        with np.errstate(all="ignore"):
            f = kernel.predict(th, be.asarray(X, th.dtype))
            t = be.asarray(target, th.dtype)
            out[f"{split}_loss"] = be.to_numpy(objective.data_loss(xp, f, t)[0]).astype(float)
            if objective.loss == "logistic":
                wrong = be.to_numpy(f * t <= 0).astype(float)
                out[f"{split}_error"] = wrong.mean(axis=1)
            else:
                out[f"{split}_error"] = np.full(theta.shape[0], np.nan)
    return out


def _gather(run_dir: Path, n_points: int) -> None:
    chunks = run_dir / "chunks"
    if not chunks.exists():
        return
    frames, history = [], []
    for p in range(n_points):
        parts = sorted(chunks.glob(f"p{p:03d}-c*.npy"))
        theta = np.concatenate([np.load(part) for part in parts])
        storage.write_npy(run_dir / "params" / f"point-{p:03d}.npy", theta)
        frames += [pd.read_parquet(part.with_suffix(".parquet")) for part in parts]
        history += [pd.read_parquet(h) for h in sorted(chunks.glob(f"p{p:03d}-c*.history.parquet"))]
    runs = pd.concat(frames, ignore_index=True)
    front = ["point", *[c for c in runs.columns if c not in RUN_COLUMNS]]
    runs = runs[front + [c for c in RUN_COLUMNS if c != "point"]]
    storage.write_parquet(run_dir / "runs.parquet", runs)
    if history:
        storage.write_parquet(run_dir / "history.parquet", pd.concat(history, ignore_index=True))
    shutil.rmtree(chunks)


def _sweep_cells(experiment, points) -> list[dict]:
    """Each point's sweep values as Parquet cells, one type per column: a key whose
    values hold lists or mix types (numbers aside) is stored as text."""
    as_text = {}
    for key, values in experiment.sweep:
        kinds = {float if type(v) is int else type(v) for v in values}
        as_text[key] = len(kinds) > 1 or tuple in kinds

    def cell(key, value):
        if not as_text[key]:
            return value
        return str(list(value)) if isinstance(value, tuple) else str(value)

    return [{key: cell(key, v) for key, v in values.items()} for values, _ in points]


def _initial_meta(experiment, be, points) -> dict:
    return {
        "experiment": experiment.name,
        "created": _now(),
        "finished": None,
        "backend": be.name,
        "device": be.device,
        "dtype": experiment.train.dtype,
        "points": len(points),
        "inits": sum(exp.inits for _, exp in points),
        "sweep_keys": [key for key, _ in experiment.sweep],
        "chunk_sizes": [None] * len(points),
        "versions": _versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def _versions() -> dict:
    out = {}
    for name in ("nnkit", "numpy", "pandas", "pyarrow", "scipy", "numba", "cupy", "numba-cuda"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(2).hex()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _find_resumable(root: Path, run_id: str | None) -> Path:
    if run_id:
        run_dir = root / run_id
        if not (run_dir / "meta.json").is_file():
            raise UserError(f"no run {run_id!r} to resume under {root}")
        return run_dir
    unfinished = []
    for path in root.glob("*/meta.json"):
        try:
            meta = storage.read_json(path)
        except (OSError, ValueError):
            continue  # not a run this version can continue
        if isinstance(meta, dict) and not meta.get("finished"):
            unfinished.append((str(meta.get("created", "")), path.stat().st_mtime, path.parent))
    if not unfinished:
        raise UserError(f"no unfinished run of {root.name!r} to resume under {root}")
    return max(unfinished)[2]


def _check_same(run_dir: Path, experiment: config.Experiment) -> None:
    try:
        stored = storage.read_json(run_dir / "config.json")
    except (OSError, ValueError):
        raise UserError(f"cannot resume {run_dir}: its config.json is missing or damaged") from None
    try:  # a config stored by an older nnkit lacks keys added since: fill in their defaults
        stored = config.from_dict(stored, experiment.name).to_dict()
    except UserError:
        pass
    current = experiment.to_dict()
    for d in (stored, current):  # how the work runs and what is analysed afterwards may change
        d.pop("run", None)
        d.pop("analysis", None)
    if stored != current:
        a, b = config.flatten(stored), config.flatten(current)
        diff = sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))
        raise UserError(
            f"cannot resume {run_dir}: the experiment differs from the stored one in "
            f"{', '.join(diff)}"
        )
    if storage.read_json(run_dir / "meta.json").get("finished"):
        raise UserError(f"run {run_dir} is already finished")


class _StepNote:
    """Shows the step a chunk is at beside the bar, at most twice a second."""

    def __init__(self, bar, where, max_steps):
        self.bar, self.where, self.max_steps = bar, where, max_steps
        self.last = 0.0

    def __call__(self, t, running):
        now = time.monotonic()
        if now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(f"{self.where}: step {t}/{self.max_steps}, {running} running")


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress_bar(total, progress):
    if progress is False:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="init", desc="training", disable=None if progress is None else False)


def summary(runs: pd.DataFrame, sweep_keys=None) -> pd.DataFrame:
    """Per sweep point: the swept values, status counts, and quantiles of the final
    and test loss over the inits that did not diverge."""
    if sweep_keys is None:
        sweep_keys = [c for c in runs.columns if c not in RUN_COLUMNS]
    rows = []
    for p, group in runs.groupby("point", sort=True):
        row = {"point": p, **{c: group[c].iloc[0] for c in sweep_keys}, "inits": len(group)}
        for s in STATUSES:
            row[s] = int((group["status"] == s).sum())
        ok = group[group["status"] != "diverged"]
        for q, name in ((0.0, "loss_min"), (0.5, "loss_median"), (1.0, "loss_max")):
            row[name] = ok["loss"].quantile(q) if len(ok) else np.nan
        row["test_loss_median"] = ok["test_loss"].median() if len(ok) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["run_experiment", "summary", "chunk_size_for"]
