"""The backend registry: ``get(name)`` returns a :class:`Backend`, ``probe_all()`` says
which backends this machine can run and why the others cannot.

A backend module defines ``probe() -> (usable: bool, device: str, reason: str)`` and
``make() -> Backend``; it imports its GPU or JIT libraries only inside those functions,
so ``import nnkit`` never pulls in CuPy or Numba. Adding a backend means adding one
module and one line to :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import Backend, BackendError

__all__ = ["Backend", "BackendError", "BackendInfo", "REGISTRY", "get", "probe", "probe_all"]

#: name -> (module, what to install to get it)
REGISTRY = {
    "numpy": ("nnkit.backends.numpy_backend", ""),
    "numba": ("nnkit.backends.numba_backend", "pip install numba"),
    "cupy": ("nnkit.backends.cupy_backend", "pip install 'nnkit[cuda12]' on a GPU machine"),
    "cuda": ("nnkit.backends.cuda_backend", "pip install 'nnkit[cuda12]' on a GPU machine"),
}

#: the order in which ``auto`` tries the backends: fastest first
AUTO_ORDER = ("cuda", "cupy", "numba", "numpy")


@dataclass(frozen=True)
class BackendInfo:
    name: str
    usable: bool
    device: str
    reason: str


def _module(name):
    module_name, _ = REGISTRY[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def probe(name: str) -> BackendInfo:
    """Whether backend ``name`` can run here, on which device, or why not."""
    if name not in REGISTRY:
        raise BackendError(
            f"unknown backend {name!r} (expected one of {', '.join(['auto', *REGISTRY])})"
        )
    module = _module(name)
    if module is None:
        return BackendInfo(name, False, "", "not implemented in this version of nnkit")
    usable, device, reason = module.probe()
    if not usable and REGISTRY[name][1]:
        reason = f"{reason} ({REGISTRY[name][1]})"
    return BackendInfo(name, usable, device, reason)


def _automatic(name) -> bool:
    """Whether ``auto`` may pick ``name`` (a module may say no, as the CUDA simulator does)."""
    check = getattr(_module(name), "automatic", None)
    return check is None or check()


def probe_all() -> list[BackendInfo]:
    """:func:`probe` for every registered backend."""
    return [probe(name) for name in REGISTRY]


def resolve(name: str) -> str:
    """The concrete backend that ``name`` stands for (``auto`` picks the fastest usable)."""
    if name == "auto":
        for candidate in AUTO_ORDER:
            if probe(candidate).usable and _automatic(candidate):
                return candidate
        return "numpy"
    info = probe(name)
    if not info.usable:
        raise BackendError(f"backend {name!r} is unavailable: {info.reason}")
    return name


def get(name: str = "auto") -> Backend:
    """A ready :class:`Backend` for ``name`` (``numpy``, ``numba``, ``cupy``, ``cuda`` or
    ``auto``). Raises :class:`BackendError` with one line saying why when it cannot run."""
    return _module(resolve(name)).make()
