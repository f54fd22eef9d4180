"""The ``numpy`` backend: the reference kernels on NumPy arrays. Always usable."""

from __future__ import annotations

import platform

import numpy as np
from array_api_compat import array_namespace

from .base import Backend
from .reference import ReferenceKernel


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_device() -> str:
    """This machine's processor and core count, as `nnkit backends` shows it."""
    import os

    return f"CPU: {_cpu_name()} ({os.cpu_count()} cores)"


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        self.device = cpu_device()
        self.xp = array_namespace(np.zeros(0))

    def kernel(self, model, spec):
        return ReferenceKernel(model, spec, self.xp)


def probe():
    return True, cpu_device(), ""


def make():
    return NumpyBackend()
