"""The database of stationary points of the Wales group's PATHSAMPLE, as its two text
files, so that minima and transition states found here can be handed to PATHSAMPLE and
disconnectionDPS, and theirs read back.

``min.data`` holds one minimum per line::

    energy  log_product_freq  point_group_order  itx  ity  itz

``ts.data`` one transition state per line::

    energy  log_product_freq  point_group_order  min1  min2  itx  ity  itz

``log_product_freq`` is the frequency term of the harmonic superposition approximation,
``ln prod_i lambda_i`` over the positive eigenvalues of the Hessian (for a transition
state, all but the negative one; 0 where unknown, see :func:`log_product`); the point
group order is 1 and the three moments of inertia 0 for a network's parameter vector.
``min1``, ``min2`` are the line numbers (from 1) of the two minima in min.data. Here
minima are numbered from 0, as everywhere in nnkit: the readers and writers convert.

PATHSAMPLE writes Fortran numbers (``1.0D-03``, or ``0.1-100`` where the exponent has
three digits) and older files stop after ``min2``; both are read, the missing columns
as 0. Numbers are written with the shortest text that reads back to the same float64.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError

#: the columns of :func:`read_min_data`, in the order of min.data
MIN_COLUMNS = ("energy", "log_freq", "order", "itx", "ity", "itz")
#: the columns of :func:`read_ts_data`, in the order of ts.data
TS_COLUMNS = ("energy", "log_freq", "order", "min1", "min2", "itx", "ity", "itz")
_INTEGER = ("order", "min1", "min2")
#: a Fortran number whose exponent lost its letter: ``0.1234-100``
_BARE_EXPONENT = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))([+-]\d+)$")


def log_product(eigs, rel_tol: float = 1e-7) -> np.ndarray:
    """``ln`` of the product of the eigenvalues above ``rel_tol * max|eig|`` in each row
    of ``eigs (R, P)``, as ``(R,)``: the frequency term of min.data and ts.data.

    For a transition state pass the magnitudes of all eigenvalues but the negative one.
    A row with a non-finite eigenvalue gives NaN; one with none above the cutoff, 0."""
    eigs = np.atleast_2d(np.asarray(eigs, dtype=float))
    with np.errstate(invalid="ignore"):
        tol = rel_tol * np.max(np.abs(eigs), axis=-1, keepdims=True)
        above = eigs > tol
    out = np.sum(np.log(np.where(above, eigs, 1.0)), axis=-1)
    return np.where(np.isfinite(eigs).all(axis=-1), out, np.nan)


def write_min_data(path, energy, log_freq=None) -> Path:
    """Write min.data: one line per minimum of ``energy (N,)``, with ``log_freq (N,)``
    (default 0), point group order 1 and moments of inertia 0. Returns the path."""
    energy = _floats(energy, "energy")
    log_freq = _floats(np.zeros_like(energy) if log_freq is None else log_freq, "log_freq", energy.size)
    lines = [f"{_text(e)} {_text(f)} 1 0 0 0\n" for e, f in zip(energy, log_freq)]
    return _write(path, lines)


def write_ts_data(path, energy, min1, min2, log_freq=None) -> Path:
    """Write ts.data: one line per transition state of ``energy (T,)`` between minima
    ``min1 (T,)`` and ``min2 (T,)`` (indices from 0 into the minima of min.data, written
    as line numbers from 1), with ``log_freq (T,)`` (default 0). Returns the path."""
    energy = _floats(energy, "energy")
    log_freq = _floats(np.zeros_like(energy) if log_freq is None else log_freq, "log_freq", energy.size)
    min1, min2 = _indices(min1, "min1", energy.size), _indices(min2, "min2", energy.size)
    lines = [f"{_text(e)} {_text(f)} 1 {a + 1} {b + 1} 0 0 0\n" for e, f, a, b in zip(energy, log_freq, min1, min2)]
    return _write(path, lines)


def read_min_data(path) -> pd.DataFrame:
    """The minima of min.data ``path``: one row per line, columns :data:`MIN_COLUMNS`
    (``energy``, ``log_freq``, ``order``, ``itx``, ``ity``, ``itz``); at least the first
    three columns must be present. :class:`UserError` naming the line if malformed."""
    return _read(path, MIN_COLUMNS, required=3, what="minimum")


def read_ts_data(path, n_minima: int | None = None) -> pd.DataFrame:
    """The transition states of ts.data ``path``: one row per line, columns
    :data:`TS_COLUMNS` with ``min1``, ``min2`` counted from 0; at least the first five
    columns must be present. With ``n_minima`` (the lines of min.data), a minimum
    outside ``1..n_minima`` is an error too. :class:`UserError` naming the line."""
    frame = _read(path, TS_COLUMNS, required=5, what="transition state")
    for column in ("min1", "min2"):
        values = frame[column].to_numpy()
        bad = (values < 1) | (values > n_minima if n_minima is not None else False)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            where = f"1..{n_minima}, the lines of min.data" if n_minima is not None else "minima are lines from 1"
            raise UserError(f"{path}, line {k + 1}: {column} = {values[k]} is not a minimum ({where})")
        frame[column] = values - 1
    return frame


# -- helpers --------------------------------------------------------------------------


def _text(x) -> str:
    """The shortest text that reads back as the float64 ``x``."""
    return repr(float(x))


def _write(path, lines) -> Path:
    from ..runs.store import atomic_path  # here: the run store sits above the landscape tools

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="ascii")
    return path


def _floats(values, name, size=None) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or (size is not None and values.size != size):
        want = f"({size},)" if size is not None else "one-dimensional"
        raise UserError(f"{name} must be {want}, not of shape {values.shape}")
    if not np.isfinite(values).all():
        k = int(np.flatnonzero(~np.isfinite(values))[0])
        raise UserError(f"{name}[{k}] is {values[k]}: PATHSAMPLE files hold finite numbers")
    return values


def _indices(values, name, size) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (size,):
        raise UserError(f"{name} must be ({size},) like energy, not of shape {values.shape}")
    if values.size and (values.dtype.kind not in "iuf" or np.any(values != np.round(values)) or values.min() < 0):
        raise UserError(f"{name} must hold indices of minima from 0 (whole numbers >= 0)")
    return values.astype(np.int64)


def _read(path, names, required, what) -> pd.DataFrame:
    """The table of one PATHSAMPLE file: columns ``names``, of which the first
    ``required`` must be on every line (the others default to 0)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file") from None
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for k, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            raise UserError(f"{path}, line {k}: blank (each line is one {what}, numbered by its line)")
        if not required <= len(tokens) <= len(names):
            raise UserError(f"{path}, line {k}: {len(tokens)} columns, expected {required} to {len(names)} "
                            f"({' '.join(names)})")  # fmt: skip
        row = [_value(path, k, name, token) for name, token in zip(names, tokens)]
        rows.append(row + [0] * (len(names) - len(tokens)))
    frame = pd.DataFrame(rows, columns=list(names))
    return frame.astype({name: np.int64 if name in _INTEGER else np.float64 for name in names})


def _value(path, k, name, token):
    """The number ``token`` of column ``name`` on line ``k``, Fortran forms accepted."""
    try:
        value = _number(token)
    except ValueError:
        raise UserError(f"{path}, line {k}: {name} is {token!r}, not a number") from None
    if not np.isfinite(value):
        raise UserError(f"{path}, line {k}: {name} is {token!r}, not a finite number")
    if name in _INTEGER:
        if not value.is_integer():
            raise UserError(f"{path}, line {k}: {name} is {token!r}, not a whole number")
        return int(value)
    return value


def _number(token: str) -> float:
    text = token.replace("D", "E").replace("d", "e")
    if "_" in text:  # float() would accept 1_000
        raise ValueError(token)
    try:
        return float(text)
    except ValueError:
        bare = _BARE_EXPONENT.match(text)
        if bare is None:
            raise
        return float(f"{bare[1]}e{bare[2]}")
