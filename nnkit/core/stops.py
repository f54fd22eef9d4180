"""Why an init stopped training, as one set of codes shared by the trainer and every
fused kernel (the generated Numba kernels and the CUDA kernels write these numbers).

The rules, applied to each init at every step after its objective and gradient are
evaluated, in increasing precedence: ``MAX_STEPS`` at the last step, ``TARGET`` when the
loss is at most the target, ``CONVERGED`` when the gradient norm is at most the
tolerance, ``DIVERGED`` when a value is not finite or the loss exceeds the bound.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np


class Stop(IntEnum):
    """Status codes; 0 while an init is still running."""

    RUNNING = 0
    CONVERGED = 1
    TARGET = 2
    MAX_STEPS = 3
    DIVERGED = 4

    @property
    def label(self) -> str:
        """The status as ``runs.parquet`` stores it: ``converged``, ``max_steps``, ..."""
        return self.name.lower()


#: the status labels of stopped inits, in code order (code ``c`` is ``STATUSES[c - 1]``)
STATUSES = tuple(code.label for code in Stop if code is not Stop.RUNNING)


def labels(codes) -> np.ndarray:
    """Status labels ``(R,)`` of the stop codes ``codes (R,)``; every init must have
    stopped (a RUNNING code, or one out of range, is a kernel's bug: ValueError)."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and not ((codes >= Stop.CONVERGED) & (codes <= Stop.DIVERGED)).all():
        raise ValueError(f"stop codes must be {int(Stop.CONVERGED)}..{int(Stop.DIVERGED)}, got {sorted(set(codes.tolist()))}")
    return np.asarray(STATUSES)[codes - 1]


_RUNNING, _CONVERGED, _TARGET, _MAX_STEPS, _DIVERGED = (int(code) for code in Stop)


def stop_code(t, max_steps, value, norm, loss_target, grad_tol, max_loss):
    """The code of an init whose objective is ``value`` and gradient norm ``norm`` after
    ``t`` steps, by the rules above (``RUNNING``: take another step). Plain Python, so
    that each fused kernel compiles the very same rules for its target."""
    finite = math.isfinite(value) and math.isfinite(norm)
    code = _MAX_STEPS if t == max_steps else _RUNNING
    if finite and value <= loss_target:
        code = _TARGET
    if grad_tol > 0 and finite and norm <= grad_tol:
        code = _CONVERGED
    if not finite or value > max_loss:
        code = _DIVERGED
    return code
