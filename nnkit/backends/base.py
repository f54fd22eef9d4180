"""What every backend provides."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


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

    def kernel(self, model, objective):
        """An object with ``value_and_grad(theta, X, y)``, ``value(theta, X, y)`` and
        ``predict(theta, X)`` for networks of ``model`` under ``objective``."""
        raise NotImplementedError
