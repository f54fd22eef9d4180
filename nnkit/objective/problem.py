"""A problem: which networks, what they minimise, and on which data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.losses import ObjectiveSpec
from ..core.model import Model
from ..data import Dataset


@dataclass(frozen=True)
class Teacher:
    """A one-hidden-layer ReLU teacher ``y(x) = sum_m b_m relu(v_m . x)``: ``V (d, k*)``
    one unit per column, ``b (k*,)``; its exact population loss is known in closed form
    (:mod:`nnkit.objective.population`)."""

    V: np.ndarray
    b: np.ndarray


@dataclass(frozen=True, eq=False)
class Problem:
    """The networks of ``model`` minimising ``spec`` on ``data``.

    ``data`` holds the targets as the loss expects them (logistic labels in +-1, see
    :func:`nnkit.core.losses.prepare_targets`). With a ``teacher``, the objective is the
    exact expected loss over ``x ~ N(0, I_d)`` against it (a population loss) and the
    samples serve only to evaluate the networks; without one, it is the loss on the
    samples of ``data``.
    """

    model: Model
    spec: ObjectiveSpec
    data: Dataset
    teacher: Teacher | None = None

    @property
    def population(self) -> bool:
        """Whether the objective is the exact population loss."""
        return self.teacher is not None
