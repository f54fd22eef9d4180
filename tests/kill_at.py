"""Run the ``nnkit`` command and kill the process, as SIGKILL would, just before its
N-th change to the files under a folder.

    python tests/kill_at.py N FOLDER nnkit-arguments...

A change is a rename into place, a file or folder removed, or a folder made (the steps
of the run store); the process ends with ``os._exit(137)`` before the N-th one, with no
``finally`` block or ``atexit`` handler run. ``N = 0`` never kills; the count of changes
made is printed to stderr at exit as ``changes: K``, so a harness can cover every
instant of a run's life.
"""

from __future__ import annotations

import atexit
import os
import sys


def main() -> None:
    target, folder, args = int(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3:]
    count = 0
    mkdir = os.mkdir

    def watched(fn):
        def step(*a, **kw):
            nonlocal count
            path = os.fspath(a[0]) if a and isinstance(a[0], (str, os.PathLike)) else ""
            mine = "dir_fd" in kw or os.path.abspath(path).startswith(folder)
            if mine and not (fn is mkdir and os.path.isdir(path)):  # a mkdir that fails changes nothing
                count += 1
                if count == target:
                    os._exit(137)
            return fn(*a, **kw)

        return step

    for name in (  # shutil.rmtree looks these up on os as it goes
        "replace", "rename", "unlink", "remove", "rmdir", "mkdir"):
        setattr(os, name, watched(getattr(os, name)))
    atexit.register(lambda: print(f"changes: {count}", file=sys.stderr))
    from nnkit.cli import main as nnkit

    nnkit(args, prog_name="nnkit")


if __name__ == "__main__":
    main()
