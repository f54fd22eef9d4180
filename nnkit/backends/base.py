"""What every backend provides."""

from __future__ import annotations

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


class Backend:
    """A place to run the hot loops: an array namespace plus kernels.

    Attributes
    ----------
    name : registry name (``numpy``, ``numba``, ...).
    device : human-readable device description.
    xp : the array namespace of the backend's arrays.
    """

    name = "base"
    device = ""
    xp = np
    #: seconds spent compiling kernels in this process (JIT backends), kept apart from
    #: the training time
    compile_seconds = 0.0

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
        """Whether ``exc`` says this backend's device ran out of memory (the runner then
        trains the chunk in halves)."""
        return isinstance(exc, MemoryError)

    def release_memory(self) -> None:
        """Give cached device memory back before a retry."""

    def kernel(self, model, objective):
        """An object with ``value_and_grad(theta, X, y)``, ``value(theta, X, y)`` and
        ``predict(theta, X)`` for networks of ``model`` under ``objective``."""
        raise NotImplementedError
