"""The run folder on disk, and atomic writes: a file is written under a temporary name
and renamed into place, so an interrupted run leaves only whole files behind.

``results/<experiment>/<run-id>/`` holds ``config.json`` (the resolved experiment) and
``meta.json`` from the start; each finished chunk of inits is written under
``chunks/`` (its table last: the table marks it done). When every chunk is done they
are gathered into ``runs.parquet``, ``params/point-NNN.npy`` and ``history.parquet``;
then ``meta.json`` is rewritten with ``finished`` set, the one atomic step that commits
the run; only after it is ``chunks/`` removed. A kill at any instant therefore leaves
either a committed run or whole chunks that a resume gathers again.

The analysis removes ``analysis.json`` first, writes ``params/point-NNN-polished.npy``,
``minima.parquet`` and ``runs.parquet``, and writes ``analysis.json`` last: without it
the run reads as not analysed. The landscape between the minima goes to
``landscape/`` the same way, its ``landscape.json`` last (a new analysis removes it:
the minima it was drawn from are gone). Figures go to ``figures/``.

One process at a time writes a run folder (:func:`nnkit.runs.lock.hold`); every file
it reads back is checked, and a damaged one is reported as :class:`Damaged`, naming the
file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from . import lock

#: the suffix of files being written (see :func:`atomic_path`)
TMP_SUFFIX = ".tmp"
#: names this machine in the folders a new run is made in (so that a results folder
#: shared between machines never has one machine sweep up another's)
_HOST = "".join(c for c in socket.gethostname() if c.isalnum() or c == "-")[:40] or "host"


class Damaged(UserError):
    """A file of a run folder is unreadable, truncated, or not what nnkit wrote."""

    def __init__(self, path, what: str):
        super().__init__(f"{path} is damaged: {what}")
        self.path, self.what = Path(path), what


@contextmanager
def atomic_path(path):
    """A temporary name beside ``path`` to write to; renamed to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
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
    _atomic(
        path,
        lambda p: p.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n"),
    )


def write_text(path, text: str) -> None:
    _atomic(path, lambda p: p.write_text(text))


def write_npy(path, array) -> None:
    def write(p):
        with open(p, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)

    _atomic(path, write)


def write_parquet(path, frame) -> None:
    _atomic(path, lambda p: frame.to_parquet(p, index=False))


def read_json(path) -> dict:
    """The JSON object in ``path``; :class:`Damaged` if it is missing, unreadable or not
    an object."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Damaged(path, "the file is missing") from None
    except (OSError, ValueError) as exc:
        raise Damaged(path, f"not valid JSON ({_reason(exc)})") from None
    if not isinstance(value, dict):
        raise Damaged(path, f"expected a JSON object, found {type(value).__name__}")
    return value


def read_parquet(path, columns=(), rows: int | None = None) -> pd.DataFrame:
    """The table in ``path``, checked to hold ``columns`` and, if given, ``rows`` rows."""
    path = Path(path)
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise Damaged(path, "the file is missing") from None
    except Exception as exc:  # pyarrow reports a damaged file with several exception types
        raise Damaged(path, f"not a readable Parquet table ({_reason(exc)})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise Damaged(path, f"the table lacks the column(s) {', '.join(missing)}")
    if rows is not None and len(frame) != rows:
        raise Damaged(path, f"the table has {len(frame)} rows, expected {rows}")
    return frame


def npy_shape(path, shape=None) -> tuple:
    """The shape of the float array in the ``.npy`` file ``path`` (read from its header,
    and checked against the file's length and, where given, ``shape``; ``None`` in
    ``shape`` matches any length)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            found, fortran, dtype = header(fh)
            data_at = fh.tell()
        size = path.stat().st_size
    except FileNotFoundError:
        raise Damaged(path, "the file is missing") from None
    except (OSError, ValueError) as exc:
        raise Damaged(path, f"not a NumPy array file ({_reason(exc)})") from None
    if dtype.kind != "f" or fortran:
        raise Damaged(path, f"expected a C-ordered float array, found dtype {dtype}")
    if size != data_at + int(np.prod(found)) * dtype.itemsize:
        raise Damaged(path, f"truncated or padded: {size} bytes for an array of shape {found}")
    if shape is not None and (
        len(found) != len(shape) or any(want not in (None, got) for want, got in zip(shape, found))
    ):
        want = tuple("any" if w is None else w for w in shape)
        raise Damaged(path, f"the array has shape {found}, expected {want}")
    return found


def read_npy(path, shape=None) -> np.ndarray:
    """The array in ``path``, checked as :func:`npy_shape` does."""
    npy_shape(path, shape)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Damaged(path, f"not a NumPy array file ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


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
    def landscape(self) -> Path:
        """The folder of the landscape tables (``nnkit landscape RUN``)."""
        return self.path / "landscape"

    @property
    def landscape_file(self) -> Path:
        return self.landscape / "landscape.json"

    @property
    def chunks(self) -> Path:
        return self.path / "chunks"

    def params_file(self, point: int, polished: bool = False) -> Path:
        return self.path / "params" / f"point-{point:03d}{'-polished' if polished else ''}.npy"

    # -- reading and writing -------------------------------------------------------
    def create(self, config: dict, meta: dict) -> contextlib.ExitStack:
        """Make the folder of a new run holding ``config`` and ``meta``, in one atomic
        step (a folder made aside, locked, and renamed into place): a kill leaves either
        no run or one that can be resumed, and of two runs started with one run id, one
        gets :class:`UserError`. Returns the held lock of the new run (a context to
        close when done writing: ``with folder.create(...): ...``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mine = f"{_HOST}.{os.getpid()}"
        aside = self.path.with_name(f".{self.path.name}.{mine}{TMP_SUFFIX}")
        shutil.rmtree(aside, ignore_errors=True)  # an earlier process of this pid, killed
        aside.mkdir()
        held = contextlib.ExitStack()
        try:
            write_json(aside / self.config_file.name, config)
            write_json(aside / self.meta_file.name, meta)
            held.enter_context(lock.hold(aside))  # the lock moves with the folder
            try:
                os.rename(aside, self.path)  # fails on a folder that is there and not empty
            except OSError as exc:
                if self.path.is_dir():
                    raise UserError(f"{self.path} exists already (use --resume to continue a run)") from None
                raise exc
        except BaseException:
            held.close()
            raise
        finally:
            if aside.exists():
                shutil.rmtree(aside, ignore_errors=True)
        lock.moved(aside, self.path)
        self.sweep_starts()
        return held

    def sweep_starts(self) -> None:
        """Remove what runs killed while starting on this machine left beside this one
        (their folders made aside)."""
        for stale in self.path.parent.glob(f".*.{_HOST}.*{TMP_SUFFIX}"):
            if _dead(stale.name.rsplit(".", 2)[-2]):
                shutil.rmtree(stale, ignore_errors=True)

    def writing(self):
        """Hold the folder's lock (``with folder.writing(): ...``); :class:`lock.Busy`
        if another process holds it."""
        return lock.hold(self.path)

    def read_config(self) -> dict:
        return read_json(self.config_file)

    def read_meta(self) -> dict:
        """``meta.json``, checked to hold what nnkit writes there."""
        meta = read_json(self.meta_file)
        for key, kind in _META.items():
            if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
                raise Damaged(self.meta_file, f"{key!r} is missing or not of type {kind.__name__}")
        sizes = meta["chunk_sizes"]
        if meta["points"] < 1 or meta["inits"] < 0 or len(sizes) != meta["points"]:
            raise Damaged(self.meta_file, "its points, inits and chunk_sizes do not agree")
        if any(c is not None and (type(c) is not int or c < 1) for c in sizes):
            raise Damaged(self.meta_file, f"chunk_sizes holds something other than sizes: {sizes}")
        if meta.get("finished") is not None and not isinstance(meta["finished"], str):
            raise Damaged(self.meta_file, "'finished' is neither a time nor null")
        if not isinstance(meta.get("sessions", []), list):
            raise Damaged(self.meta_file, "'sessions' is not a list")
        return meta

    def write_config(self, config: dict) -> None:
        write_json(self.config_file, config)

    def write_meta(self, meta: dict) -> None:
        write_json(self.meta_file, meta)

    def is_finished(self) -> bool:
        return bool(self.read_meta().get("finished"))

    def _chunk_stem(self, point: int, chunk: int) -> Path:
        return self.chunks / f"p{point:03d}-c{chunk:05d}"

    def has_chunk(self, point: int, chunk: int, rows: int, width: int, history: bool) -> bool:
        """Whether chunk ``chunk`` of sweep point ``point`` (``rows`` inits of ``width``
        parameters) is written; :class:`Damaged` if it is, but not whole."""
        stem = self._chunk_stem(point, chunk)
        table = stem.with_suffix(".parquet")
        if not table.exists():
            return False
        hint = f"; remove chunks/{stem.name}.* to train that chunk again"
        try:
            read_parquet(table, ("init", "status", "loss"), rows)
            npy_shape(stem.with_suffix(".npy"), (rows, width))
            if history:
                read_parquet(stem.with_suffix(".history.parquet"), ("init", "step", "loss"))
        except Damaged as exc:
            raise Damaged(exc.path, exc.what + hint) from None
        return True

    def write_chunk(self, point: int, chunk: int, theta, table: pd.DataFrame, history=None) -> None:
        """The parameters, history and, last (it marks the chunk done), the table of one
        chunk."""
        stem = self._chunk_stem(point, chunk)
        if history is not None:
            write_parquet(stem.with_suffix(".history.parquet"), history)
        write_npy(stem.with_suffix(".npy"), theta)
        write_parquet(stem.with_suffix(".parquet"), table)

    def gather(self, chunks: list[int], order) -> None:
        """The ``chunks[p]`` chunks of every sweep point ``p`` into ``runs.parquet``
        (columns: ``point``, then those not in ``order``, then ``order``), ``params/``
        and ``history.parquet``. The chunks stay until :meth:`finish`."""
        frames, history = [], []
        for p, count in enumerate(chunks):
            stems = [self._chunk_stem(p, c) for c in range(count)]
            tables = [read_parquet(stem.with_suffix(".parquet")) for stem in stems]
            thetas = [read_npy(stem.with_suffix(".npy"), (len(t), None)) for stem, t in zip(stems, tables)]
            write_npy(self.params_file(p), np.concatenate(thetas))
            frames += tables
            history += [read_parquet(h) for stem in stems if (h := stem.with_suffix(".history.parquet")).is_file()]
        runs = pd.concat(frames, ignore_index=True)
        front = ["point", *[c for c in runs.columns if c not in order]]
        runs = runs[front + [c for c in order if c != "point"]]
        write_parquet(self.runs_file, runs)
        if history:
            write_parquet(self.history_file, pd.concat(history, ignore_index=True))

    def finish(self, meta: dict) -> None:
        """Commit the gathered run (``meta`` with ``finished`` set, in one atomic
        rewrite of ``meta.json``), then remove what it no longer needs."""
        self.write_meta(meta)
        self.clean()

    def clean(self) -> None:
        """Remove ``chunks/`` of a committed run and files left half-written by a killed
        writer. Call it holding the lock."""
        if self.chunks.exists():
            shutil.rmtree(self.chunks)
        for tmp in self.path.rglob(f".*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the whole folder (a run that a bad input stopped before any chunk)."""
        shutil.rmtree(self.path, ignore_errors=True)


#: what every meta.json holds, with its type
_META = {
    "experiment": str,
    "points": int,
    "inits": int,
    "chunk_sizes": list,
    "backend": str,
    "dtype": str,
}


def _dead(pid: str) -> bool:
    """Whether no process ``pid`` runs here (the writer of a stale temporary folder)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return True
    except OSError:  # a process of another user: alive
        return False
    return False


def find_resumable(root: Path, run_id: str | None) -> RunFolder:
    """The run ``run_id`` under ``root``, or the newest unfinished one there."""
    if run_id:
        folder = RunFolder(root / run_id)
        if not folder.path.is_dir():
            raise UserError(f"no run {run_id!r} to resume under {root}")
        if not folder.meta_file.is_file():
            raise Damaged(folder.meta_file, "the file is missing or not a file")
        return folder
    unfinished, damaged = [], []
    for path in root.glob("*/meta.json"):
        if path.parent.name.startswith("."):
            continue  # a run being created
        try:
            meta = RunFolder(path.parent).read_meta()
        except Damaged as exc:
            damaged.append((path.stat().st_mtime, exc))
            continue
        if not meta.get("finished"):
            unfinished.append((str(meta.get("created", "")), path.stat().st_mtime, path.parent))
    newest = max(unfinished, default=None)
    newest_damaged = max(damaged, default=None, key=lambda item: item[0])
    if newest_damaged is not None and (newest is None or newest_damaged[0] > newest[1]):
        exc = newest_damaged[1]  # it may be the run meant: say so rather than pick an older one
        raise Damaged(exc.path, exc.what + " (name the run to resume with --run-id)")
    if newest is None:
        raise UserError(f"no unfinished run of {root.name!r} to resume under {root}")
    return RunFolder(newest[2])
