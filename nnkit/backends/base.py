"""The contracts every backend and its kernels keep, in one place.

A backend is a place to run the hot loops: an array namespace ``xp`` plus, for each
model and objective spec, a :class:`Kernel` with the forward pass, the loss and
back-propagation of a whole batch of networks. Everything the rest of nnkit reads from
a backend or a kernel is declared here, with its default.

Shapes: ``theta (R, P)`` (one network per row, see :class:`nnkit.core.layout.Layout`);
data ``X (n, d)`` shared by all R networks (full batch) or ``X (R, n, d)`` one batch per
network (minibatch SGD); targets ``y (n,)`` or ``(R, n)``. Arrays are the backend's own
(NumPy on the CPU, CuPy on a GPU) in the dtype of ``theta``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

from ..errors import UserError


def import_problem(module: str, label: str) -> str:
    """Why ``module`` cannot be used here ("" when it imports): not installed, or a
    broken install (its first error line). Imported only when a backend is probed."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{label} is not installed"
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken install: say so instead of picking it
        lines = str(exc).strip().splitlines()
        return f"{label} fails to import: {lines[0] if lines else type(exc).__name__}"
    return ""


class BackendError(UserError):
    """A backend was asked for that does not exist or cannot run here."""


class Fused(NamedTuple):
    """What a fused training run returns, on the host: ``theta (R, P)`` float64, ``stop
    (R,)`` the :class:`nnkit.core.stops.Stop` code of each init, ``steps (R,)`` the
    updates it took, ``loss (R,)`` and ``grad_norm (R,)`` at its final parameters."""

    theta: np.ndarray
    stop: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray


class Kernel(ABC):
    """The hot loops for networks of one ``model`` under one objective ``spec``
    (:class:`nnkit.core.losses.ObjectiveSpec`), on one backend."""

    model = None
    spec = None

    @abstractmethod
    def value_and_grad(self, theta, X, y):
        """Objective ``(R,)`` (data term and penalty) and its gradient ``(R, P)``."""

    def value(self, theta, X, y):
        """Objective ``(R,)``."""
        return self.value_and_grad(theta, X, y)[0]

    @abstractmethod
    def predict(self, theta, X):
        """Outputs ``f (R, n)`` of every network on ``X``."""

    def fuses(self, cfg) -> bool:
        """Whether :meth:`train_fused` can run the whole of training with ``cfg`` (a
        :class:`nnkit.training.TrainConfig`) on shared data. None can by default."""
        return False

    def train_fused(self, theta0, X, y, cfg) -> Fused:
        """All of full-batch training of ``theta0 (R, P)`` (host, float64) on shared
        host data ``X (n, d)``, ``y (n,)`` in one compiled loop, by the same updates and
        stopping rules as :func:`nnkit.training.train`; only where :meth:`fuses` says so."""
        raise NotImplementedError(f"{type(self).__name__} has no fused training")


class Backend(ABC):
    """A place to run the hot loops.

    Attributes
    ----------
    name : registry name (``numpy``, ``numba``, ...).
    device : human-readable device description.
    xp : the array namespace of the backend's arrays.
    compile_seconds : seconds spent compiling kernels in this process (JIT backends),
        kept apart from the training time.
    chunk_multiple : a chunk of inits smaller than the whole run is cut to a multiple
        of this (the ``numba`` backend's blocks of SIMD lanes, one per thread).
    """

    name = "base"
    device = ""
    xp = np
    compile_seconds = 0.0
    chunk_multiple = 1

    @abstractmethod
    def kernel(self, model, spec) -> Kernel:
        """The :class:`Kernel` for networks of ``model`` under ``spec``."""

    def asarray(self, a, dtype):
        """Host array ``a`` on this backend's device, as ``dtype``."""
        return self.xp.asarray(np.asarray(a), dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Array ``a`` of this backend back on the host."""
        return np.asarray(a)

    def memory_budget(self, memory_mb: int) -> int:
        """Bytes one chunk of inits may take: ``run.memory_mb`` on the CPU; GPU backends
        answer from the device's free memory."""
        return memory_mb * 2**20

    def stored_per_sample(self, model, sgd: bool) -> int:
        """Numbers per init and per sample that a step keeps on the device (per-layer
        pre-activations, activations and their gradients, outputs and residuals);
        fused kernels keep none."""
        return 3 * sum(model.layout.widths) + 4

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` says this backend's device ran out of memory (a chunk is then
        trained in halves)."""
        return isinstance(exc, MemoryError)

    def release_memory(self) -> None:
        """Give cached device memory back before a retry."""
