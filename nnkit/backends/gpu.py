"""What the GPU backends share: finding the CUDA device, its free memory, telling an
out-of-memory error apart, and importing the Numba-CUDA kernels.

Nothing here is imported by ``import nnkit``; CuPy and Numba are imported inside the
functions, when a GPU backend is probed or made.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from .base import BackendError, import_problem

#: share of the device's free memory one chunk may take
MEMORY_SHARE = 0.6


def simulated() -> bool:
    """Whether Numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def cupy_device():
    """``(usable, device, reason)`` for CUDA device 0 as CuPy sees it."""
    problem = import_problem("cupy", "CuPy")
    if problem:
        return False, "", problem
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, "", f"no usable CUDA device ({first_line(exc)})"
    if count < 1:
        return False, "", "no CUDA device found"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        free, total = cupy.cuda.Device(0).mem_info
    except Exception as exc:
        return False, "", f"CUDA device 0 is not usable ({first_line(exc)})"
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return True, (
        f"GPU 0 of {count}: {name}, {total / 2**30:.0f} GiB ({free / 2**30:.0f} GiB free), "
        f"compute capability {props['major']}.{props['minor']}"
    ), ""  # fmt: skip


def free_bytes() -> int:
    """Device memory a new allocation can get: free on the device plus what CuPy's
    memory pool holds unused."""
    import cupy

    return int(cupy.cuda.Device().mem_info[0] + cupy.get_default_memory_pool().free_bytes())


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device ran out of memory (CuPy or Numba-CUDA)."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return "OUT_OF_MEMORY" in str(exc) or "out of memory" in str(exc)


def release_memory() -> None:
    """Hand CuPy's cached blocks back to the device (after an out-of-memory error)."""
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()


def kernels(name: str):
    """Kernel module ``name`` of the Numba-CUDA kernels (``small_mlp``, ...).

    Installed, they are the package ``nnkit.kernels``; in a source checkout used
    without installing, they are read from the ``kernels/`` folder beside ``nnkit/``.
    """
    try:
        importlib.import_module("nnkit.kernels")
    except ModuleNotFoundError as exc:
        if exc.name != "nnkit.kernels":
            raise
        folder = Path(__file__).resolve().parents[2] / "kernels"
        if not (folder / "__init__.py").is_file():
            raise BackendError(
                "the CUDA kernels are missing from this installation of nnkit (reinstall it)"
            ) from None
        spec = importlib.util.spec_from_file_location(
            "nnkit.kernels", folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["nnkit.kernels"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"nnkit.kernels.{name}")
