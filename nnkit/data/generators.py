"""Seeded generators: teacher-student, XOR, sine regression, Gaussian blobs.

Each kind is a frozen dataclass of its options (the keys of ``[data]`` besides
``kind``) and a function ``make(options, rng) -> Dataset`` that draws only from the
``rng`` it is given (the pipeline derives it from the experiment seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core import activations, validate
from ..errors import UserError
from .dataset import Dataset


@dataclass(frozen=True)
class TeacherStudent:
    """``y = sum_j a_j act(w_j . x) + noise`` with a random teacher, ``x ~ N(0, I_d)``.

    ``teacher_weights``: ``normal`` (entries ``N(0, 1/d)``) or ``orthonormal`` (the
    teacher's ``w_j`` are orthonormal; needs ``teacher_width <= d``).
    ``teacher_output``: ``ones`` (``a_j = 1``) or ``normal`` (``a_j ~ N(0, 1/k)``).
    ``population``: train on the exact expected loss over ``x ~ N(0, I_d)`` instead of
    the ``n`` samples (ReLU teacher without noise; one-hidden-layer ReLU students without
    biases; :mod:`nnkit.objective.population`); the test samples still give the test loss.
    """

    #: input dimension
    d: int = 4
    #: training samples
    n: int = 200
    #: test samples
    n_test: int = 1000
    #: the teacher's hidden units ``k``
    teacher_width: int = 4
    #: the teacher's activation
    teacher_activation: Literal["relu", "sigmoid", "tanh", "linear"] = "relu"
    #: ``normal`` (entries ``N(0, 1/d)``) or ``orthonormal`` (needs
    #: ``teacher_width <= d``)
    teacher_weights: Literal["normal", "orthonormal"] = "normal"
    #: ``ones`` (``a_j = 1``) or ``normal`` (``a_j ~ N(0, 1/k)``)
    teacher_output: Literal["ones", "normal"] = "ones"
    #: standard deviation of the Gaussian noise added to the labels
    noise: float = 0.0
    #: train on the exact expected squared loss over ``x ~ N(0, I_d)`` instead of the
    #: ``n`` samples (a ReLU teacher without noise; one-hidden-layer ReLU students without
    #: biases); the ``n`` samples still give ``train_loss``, the ``n_test`` ones the test
    #: loss
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


def teacher_student(o: TeacherStudent, rng) -> Dataset:
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

    #: copies of each of the four points
    repeat: int = 1
    #: standard deviation of the Gaussian jitter of the inputs
    noise: float = 0.0
    #: ``01`` (0 when the signs agree, else 1) or ``pm1`` (-1 / +1)
    labels: Literal["01", "pm1"] = "01"

    def check(self):
        validate.check(self, "data", repeat="> 0", noise=">= 0")


def xor(o: Xor, rng) -> Dataset:
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

    #: training samples
    n: int = 64
    #: test samples
    n_test: int = 256
    #: the lower end of the range of ``x`` (default: -pi)
    low: float = -3.141592653589793
    #: the upper end of the range of ``x`` (default: pi)
    high: float = 3.141592653589793
    #: ``frequency`` in ``sin(frequency * x)``
    frequency: float = 1.0
    #: standard deviation of the Gaussian noise added to the labels
    noise: float = 0.0

    def check(self):
        validate.check(self, "data", n="> 0", n_test=">= 0", noise=">= 0")
        if not self.high > self.low:
            raise UserError(f"data.high = {self.high} must be above data.low = {self.low}")


def sine(o: Sine, rng) -> Dataset:
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

    #: input dimension
    d: int = 2
    #: training samples
    n: int = 200
    #: test samples
    n_test: int = 1000
    #: the distance between the two centres
    separation: float = 3.0
    #: the standard deviation of each blob
    std: float = 1.0

    def check(self):
        validate.check(
            self, "data", d="> 0", n="> 0", std="> 0", n_test=">= 0", separation=">= 0"
        )


def blobs(o: Blobs, rng) -> Dataset:
    u = rng.standard_normal(o.d)
    u /= np.linalg.norm(u)

    def sample(m):
        y = np.where(rng.random(m) < 0.5, -1.0, 1.0)
        X = y[:, None] * (0.5 * o.separation) * u + o.std * rng.standard_normal((m, o.d))
        return X, y

    X, y = sample(o.n)
    X_test, y_test = sample(o.n_test)
    return Dataset(X, y, X_test, y_test, {"direction": u})


#: kind -> (options dataclass, generator)
KINDS = {
    "teacher_student": (TeacherStudent, teacher_student),
    "xor": (Xor, xor),
    "sine": (Sine, sine),
    "blobs": (Blobs, blobs),
}
