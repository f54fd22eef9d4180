"""The benchmark cases: train R networks ``f(x) = v . relu(W^T x)`` (no biases) with
plain full-batch gradient descent on ``mean((f(x) - y)**2)``, from the same data and the
same starting points in every implementation.

Teacher ``y = sum(relu(W*^T x))`` with ``W*`` standard normal over ``sqrt(d)``, inputs
``X ~ N(0, I_d)``; inits ``W ~ N(0, 1/d)``, ``v ~ N(0, 1/k)``.

The GPU cases (``nnkit bench --gpu``) are the same problems scaled to fill a card, each
timed in float64 and in float32: the data and inits are always drawn in float64 and a
float32 run casts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..runs.limits import physical_memory, size


@dataclass(frozen=True)
class Case:
    name: str
    R: int
    n: int
    d: int
    k: int
    steps: int
    lr: float
    what: str = ""

    @property
    def flops_per_init_step(self) -> float:
        """Useful floating-point operations of one gradient step of one network: the
        forward products ``X W`` and ``H v`` and their two backward products."""
        return 4.0 * self.n * self.k * (self.d + 1)

    def label(self) -> str:
        return f"{self.name} (R={self.R:,} n={self.n:,} d={self.d} k={self.k} steps={self.steps})"


CASES = {
    "B1": Case("B1", 1_000, 1_000, 10, 10, 100, 0.05, "medium"),
    "B2": Case("B2", 100_000, 4, 2, 3, 100, 0.05, "tiny-many"),
    "B3": Case("B3", 128, 2_000, 50, 100, 20, 0.01, "wide"),
}


#: the cases of ``nnkit bench --gpu``; each runs in every one of :data:`DTYPES`
GPU_CASES = {
    "B1g": Case("B1g", 100_000, 1_000, 10, 10, 100, 0.05, "medium, GPU"),
    "B2g": Case("B2g", 100_000, 4, 2, 3, 100, 0.05, "tiny-many, GPU"),
    "B3g": Case("B3g", 8_192, 2_000, 50, 100, 20, 0.01, "wide, GPU"),
}

DTYPES = ("float64", "float32")


def named(name: str) -> Case:
    """The CPU or GPU case called ``name``; a custom one from ``R,n,d,k,steps[,lr]``."""
    if name in CASES:
        return CASES[name]
    if name in GPU_CASES:
        return GPU_CASES[name]
    return custom(name)


def custom(spec: str) -> Case:
    """A case from ``R,n,d,k,steps[,lr]``."""
    parts = spec.split(",")
    if len(parts) not in (5, 6):
        raise ValueError(f"a custom case is R,n,d,k,steps[,lr], got {spec!r}")
    try:
        R, n, d, k, steps = (int(p) for p in parts[:5])
        lr = float(parts[5]) if len(parts) == 6 else 0.05
    except ValueError:
        raise ValueError(f"a custom case is R,n,d,k,steps[,lr] with whole numbers R..steps, got {spec!r}") from None
    if min(R, n, d, k, steps) < 1 or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"custom case {spec!r}: R, n, d, k and steps must be at least 1 and lr a positive number")
    largest = R * n * k * 8  # the peers' (R, n, k) activations in float64
    memory = physical_memory()
    if memory is not None and largest > memory // 2:
        raise ValueError(
            f"custom case {spec!r}: its (R, n, k) arrays take {size(largest)}, more than half of this "
            f"machine's {size(memory)} of memory"
        )
    return Case(f"R{R}-n{n}-d{d}-k{k}", R, n, d, k, steps, lr, "custom")


def problem(case: Case, seed: int = 0):
    """``X (n, d)``, ``y (n,)``, ``W0 (R, d, k)``, ``v0 (R, k)``, all float64."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case.n, case.d))
    teacher = rng.standard_normal((case.d, case.k)) / np.sqrt(case.d)
    y = np.maximum(X @ teacher, 0.0).sum(axis=1)
    W0 = rng.standard_normal((case.R, case.d, case.k)) / np.sqrt(case.d)
    v0 = rng.standard_normal((case.R, case.k)) / np.sqrt(case.k)
    return X, y, W0, v0


def cast(arrays, dtype: str):
    """The float64 arrays of :func:`problem` as ``dtype`` (``float64`` or ``float32``)."""
    return tuple(np.asarray(a, dtype=dtype) for a in arrays)
