"""A data set: train and test samples, and what the generator knew besides them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
