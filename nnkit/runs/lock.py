"""One writer per run folder: an exclusive, non-blocking lock that the operating system
drops when its process ends, however it ends (a kill included), so a crashed run never
leaves a stale lock behind.

On POSIX systems the lock is ``flock`` on the folder itself, which writes nothing into
it; on Windows it is ``msvcrt.locking`` on a ``.lock`` file inside the folder.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class Busy(UserError):
    """The run folder is held by another process."""


def _busy(path: Path) -> Busy:
    return Busy(
        f"run {path} is being written by another nnkit process (a run, a resume or an "
        f"analysis of it); wait until it ends, or stop it, and try again"
    )


#: the folders this process holds: path -> a record ``[count]`` of the ``hold`` blocks
_HELD: dict[str, list] = {}


def moved(old, new) -> None:
    """The held folder ``old`` was renamed to ``new`` (the lock goes with it)."""
    record = _HELD.pop(os.path.abspath(old), None)
    if record is not None:
        _HELD[os.path.abspath(new)] = record


@contextmanager
def hold(path):
    """Hold the lock of the folder ``path`` for the ``with`` block; :class:`Busy` if
    another process holds it. Blocks of one process nest: an inner ``hold`` of a
    folder the process holds already takes nothing more."""
    path = Path(path)
    record = _HELD.get(os.path.abspath(path))
    if record is not None:
        record[0] += 1
        try:
            yield
        finally:
            record[0] -= 1
        return
    record = [1]
    with _take(path):
        _HELD[os.path.abspath(path)] = record
        try:
            yield
        finally:
            for key in [key for key, value in _HELD.items() if value is record]:
                del _HELD[key]


def busy(path) -> bool:
    """Whether another process holds the lock of the folder ``path`` now (this process
    holding it counts as not busy); a folder that cannot be opened is not busy."""
    if os.path.abspath(path) in _HELD:
        return False
    try:
        with _take(Path(path)):
            return False
    except Busy:
        return True
    except OSError:
        return False


@contextmanager
def _take(path: Path):
    if fcntl is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(path) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
        return
    import msvcrt  # pragma: no cover - Windows

    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT)  # pragma: no cover
    try:  # pragma: no cover
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise _busy(path) from None
        yield
    finally:  # pragma: no cover
        os.close(fd)
