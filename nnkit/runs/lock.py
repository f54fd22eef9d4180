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


@contextmanager
def hold(path):
    """Hold the lock of the folder ``path`` for the ``with`` block; :class:`Busy` if
    another process holds it."""
    path = Path(path)
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
