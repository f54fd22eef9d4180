"""The backend registry: ``get(name)`` returns a :class:`Backend`, ``probe_all()`` says
which backends this machine can run and why the others cannot.

A backend module defines ``probe() -> (usable: bool, device: str, reason: str)`` and
``make() -> Backend`` (and may define ``automatic() -> bool``, whether ``auto`` may pick
it); it imports its GPU or JIT libraries only inside those functions, so ``import nnkit``
never pulls in CuPy or Numba. Adding a backend means adding one module (its
:class:`Backend` and :class:`Kernel`, see :mod:`.base`) and one entry to
:data:`REGISTRY`: the CLI, the config checks and the run's provenance read it from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..about import install_hint
from .base import Backend, BackendError, Fused, Kernel

__all__ = [
    "AUTO_ORDER", "Backend", "BackendError", "BackendInfo", "Fused", "Kernel", "REGISTRY",
    "get", "names", "packages", "pickable", "probe", "probe_all", "resolve",
]  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """A registered backend: its module, what to install to get it, the distributions
    whose versions a run on it records, and its rank for ``auto`` (which takes the
    usable backend of the highest ``speed``)."""

    module: str
    install: str = ""
    packages: tuple[str, ...] = ()
    speed: int = 0


_GPU = f"{install_hint('cuda12')} on a GPU machine"

REGISTRY = {
    "numpy": Entry("nnkit.backends.numpy_backend", "", ("numpy", "array-api-compat"), speed=0),
    "numba": Entry("nnkit.backends.numba_backend", "pip install numba", ("numba", "llvmlite"), speed=1),
    "cupy": Entry("nnkit.backends.cupy_backend", _GPU, ("cupy-cuda12x", "cupy-cuda13x"), speed=2),
    "cuda": Entry("nnkit.backends.cuda_backend", _GPU, ("numba-cuda", "cupy-cuda12x", "cupy-cuda13x"), speed=3),
}

#: the order in which ``auto`` tries the backends: fastest first
AUTO_ORDER = tuple(sorted(REGISTRY, key=lambda name: -REGISTRY[name].speed))


def names() -> tuple[str, ...]:
    """Every name ``get`` takes: ``auto`` and the registered backends."""
    return ("auto", *REGISTRY)


def packages() -> tuple[str, ...]:
    """The distributions of every backend, for the versions a run records."""
    return tuple(dict.fromkeys(p for entry in REGISTRY.values() for p in entry.packages))


@dataclass(frozen=True)
class BackendInfo:
    name: str
    usable: bool
    device: str
    reason: str


def _module(name):
    module_name = REGISTRY[name].module
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def probe(name: str) -> BackendInfo:
    """Whether backend ``name`` can run here, on which device, or why not."""
    if name not in REGISTRY:
        raise BackendError(f"unknown backend {name!r} (expected one of {', '.join(names())})")
    module = _module(name)
    if module is None:
        return BackendInfo(name, False, "", "not implemented in this version of nnkit")
    usable, device, reason = module.probe()
    if not usable and REGISTRY[name].install:
        reason = f"{reason} ({REGISTRY[name].install})"
    return BackendInfo(name, usable, device, reason)


def _automatic(name) -> bool:
    """Whether ``auto`` may pick ``name`` (a module may say no, as the CUDA simulator does)."""
    check = getattr(_module(name), "automatic", None)
    return check is None or check()


def probe_all() -> list[BackendInfo]:
    """:func:`probe` for every registered backend."""
    return [probe(name) for name in REGISTRY]


def pickable(name: str) -> bool:
    """Whether ``auto`` may pick backend ``name`` here: usable, and not one that only
    runs when asked for by name (the CUDA simulator)."""
    return probe(name).usable and _automatic(name)


def resolve(name: str) -> str:
    """The concrete backend that ``name`` stands for (``auto`` picks the fastest usable)."""
    if name == "auto":
        return next((candidate for candidate in AUTO_ORDER if pickable(candidate)), "numpy")
    info = probe(name)
    if not info.usable:
        raise BackendError(f"backend {name!r} is unavailable: {info.reason}")
    return name


def get(name: str = "auto") -> Backend:
    """A ready :class:`Backend` for ``name`` (one of :func:`names`). Raises
    :class:`BackendError` with one line saying why when it cannot run. Raises the
    process's malloc thresholds first (:mod:`nnkit.backends.allocator`)."""
    from .allocator import keep_freed_memory

    keep_freed_memory()
    return _module(resolve(name)).make()
