"""Data sets: seeded generators and the user's own CSV or Parquet files.

Each kind is a frozen dataclass of its options (the keys of ``[data]`` besides
``kind``) and a function ``make(options, rng) -> Dataset``. Every generator draws only
from the ``rng`` it is given, which the runner derives from the experiment seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from . import activations, validate
from .errors import UserError


@dataclass(frozen=True)
class Dataset:
    """Train and test data: ``X (n, d)``, ``y (n,)``, ``X_test (m, d)``, ``y_test (m,)``.

    ``info`` holds what a generator knows besides the samples (a teacher's weights...).
    """

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]


@dataclass(frozen=True)
class TeacherStudent:
    """``y = sum_j a_j act(w_j . x) + noise`` with a random teacher, ``x ~ N(0, I_d)``.

    ``teacher_weights``: ``normal`` (entries ``N(0, 1/d)``) or ``orthonormal`` (the
    teacher's ``w_j`` are orthonormal; needs ``teacher_width <= d``).
    ``teacher_output``: ``ones`` (``a_j = 1``) or ``normal`` (``a_j ~ N(0, 1/k)``).
    ``population``: train on the exact expected loss over ``x ~ N(0, I_d)`` instead of
    the ``n`` samples (ReLU teacher without noise; one-hidden-layer ReLU students without
    biases; :mod:`nnkit.population`); the test samples still give the test loss.
    """

    d: int = 4
    n: int = 200
    n_test: int = 1000
    teacher_width: int = 4
    teacher_activation: Literal["relu", "sigmoid", "tanh", "linear"] = "relu"
    teacher_weights: Literal["normal", "orthonormal"] = "normal"
    teacher_output: Literal["ones", "normal"] = "ones"
    noise: float = 0.0
    population: bool = False

    def check(self):
        validate.check(
            self, "data", d="> 0", n="> 0", teacher_width="> 0", n_test=">= 0", noise=">= 0"
        )
        if self.population and (self.teacher_activation != "relu" or self.noise != 0):
            raise UserError(
                "data.population = true needs a ReLU teacher without noise "
                "(data.teacher_activation = 'relu', data.noise = 0)"
            )
        if self.teacher_weights == "orthonormal" and self.teacher_width > self.d:
            raise UserError(
                f"data.teacher_width = {self.teacher_width} orthonormal teacher vectors "
                f"do not fit in d = {self.d} dimensions (use teacher_width <= d)"
            )


def _teacher_student(o: TeacherStudent, rng) -> Dataset:
    if o.teacher_weights == "orthonormal":
        q, _ = np.linalg.qr(rng.standard_normal((o.d, o.d)))
        W = q[:, : o.teacher_width]
    else:
        W = rng.standard_normal((o.d, o.teacher_width)) / np.sqrt(o.d)
    if o.teacher_output == "ones":
        a = np.ones(o.teacher_width)
    else:
        a = rng.standard_normal(o.teacher_width) / np.sqrt(o.teacher_width)
    act = activations.get(o.teacher_activation).value

    def sample(m):
        X = rng.standard_normal((m, o.d))
        y = act(np, X @ W) @ a + o.noise * rng.standard_normal(m)
        return X, y

    X, y = sample(o.n)
    X_test, y_test = sample(o.n_test)
    return Dataset(X, y, X_test, y_test, {"teacher_W": W, "teacher_a": a})


@dataclass(frozen=True)
class Xor:
    """The four XOR points ``(+-1, +-1)``, each repeated ``repeat`` times with Gaussian
    jitter ``noise``. Labels: ``01`` (0 when the signs agree, else 1) or ``pm1``
    (-1 / +1). The test set is the four clean points."""

    repeat: int = 1
    noise: float = 0.0
    labels: Literal["01", "pm1"] = "01"

    def check(self):
        validate.check(self, "data", repeat="> 0", noise=">= 0")


def _xor(o: Xor, rng) -> Dataset:
    corners = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    label = np.array([0.0, 1.0, 1.0, 0.0])
    if o.labels == "pm1":
        label = 2.0 * label - 1.0
    X = np.repeat(corners, o.repeat, axis=0)
    y = np.repeat(label, o.repeat)
    if o.noise:
        X = X + o.noise * rng.standard_normal(X.shape)
    return Dataset(X, y, corners.copy(), label.copy())


@dataclass(frozen=True)
class Sine:
    """1-D regression ``y = sin(frequency * x) + noise``, ``x ~ U(low, high)``."""

    n: int = 64
    n_test: int = 256
    low: float = -3.141592653589793
    high: float = 3.141592653589793
    frequency: float = 1.0
    noise: float = 0.0

    def check(self):
        validate.check(self, "data", n="> 0", n_test=">= 0", noise=">= 0")
        if not self.high > self.low:
            raise UserError(f"data.high = {self.high} must be above data.low = {self.low}")


def _sine(o: Sine, rng) -> Dataset:
    def sample(m):
        x = rng.uniform(o.low, o.high, size=(m, 1))
        return x, np.sin(o.frequency * x[:, 0]) + o.noise * rng.standard_normal(m)

    X, y = sample(o.n)
    X_test, y_test = sample(o.n_test)
    return Dataset(X, y, X_test, y_test)


@dataclass(frozen=True)
class Blobs:
    """Binary classification: two Gaussian blobs with centres ``+-separation/2 * u`` for
    a random unit vector ``u``, each with standard deviation ``std``; labels -1 / +1."""

    d: int = 2
    n: int = 200
    n_test: int = 1000
    separation: float = 3.0
    std: float = 1.0

    def check(self):
        validate.check(
            self, "data", d="> 0", n="> 0", std="> 0", n_test=">= 0", separation=">= 0"
        )


def _blobs(o: Blobs, rng) -> Dataset:
    u = rng.standard_normal(o.d)
    u /= np.linalg.norm(u)

    def sample(m):
        y = np.where(rng.random(m) < 0.5, -1.0, 1.0)
        X = y[:, None] * (0.5 * o.separation) * u + o.std * rng.standard_normal((m, o.d))
        return X, y

    X, y = sample(o.n)
    X_test, y_test = sample(o.n_test)
    return Dataset(X, y, X_test, y_test, {"direction": u})


@dataclass(frozen=True)
class File:
    """The user's own CSV or Parquet file: ``target`` is the label column, ``features``
    the input columns (all others when empty). A random ``test_fraction`` of the rows is
    held out; ``standardize`` rescales every feature to mean 0 and standard deviation 1
    using the training rows only. A relative ``path`` is taken from the experiment
    file's folder."""

    path: str = ""
    target: str = ""
    features: tuple[str, ...] = ()
    test_fraction: float = 0.2
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


def _file(o: File, rng) -> Dataset:
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


#: kind -> (options dataclass, generator)
KINDS = {
    "teacher_student": (TeacherStudent, _teacher_student),
    "xor": (Xor, _xor),
    "sine": (Sine, _sine),
    "blobs": (Blobs, _blobs),
    "file": (File, _file),
}


def make_dataset(kind: str, options, rng: np.random.Generator) -> Dataset:
    """The data set of ``kind`` with ``options`` (its dataclass), drawn from ``rng``."""
    return KINDS[kind][1](options, rng)

