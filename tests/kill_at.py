"""Run the ``nnkit`` command and kill the process, as SIGKILL would, just before its
N-th change to the files of one run.

    python tests/kill_at.py N RUN-FOLDER nnkit-arguments...

A change is a rename into place, a file or folder removed, or a folder made (the steps
of the run store), in ``RUN-FOLDER`` or in the folder a new run is made in beside it
(``.NAME.*``); the process ends with ``os._exit(137)`` before the N-th one, with no
``finally`` block or ``atexit`` handler run. ``N = 0`` never kills; the count of changes
made is printed to stderr at exit as ``changes: K``, so a harness can cover every
instant of a run's life. Changes to other runs (another process's leftovers swept
away) are not counted, so the count does not depend on what else is in the results
folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys


def main() -> None:
    target, run, args = int(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3:]
    aside = os.path.join(os.path.dirname(run), "." + os.path.basename(run) + ".")
    count = 0
    mkdir = os.mkdir
    removing = []  # the folder shutil.rmtree is removing, if any

    def ours(path: str) -> bool:
        path = os.path.abspath(path)
        return path == run or path.startswith(run + os.sep) or path.startswith(aside)

    def watched(fn):
        def step(*a, **kw):
            nonlocal count
            path = os.fspath(a[0]) if a and isinstance(a[0], (str, os.PathLike)) else ""
            mine = ours(removing[-1]) if "dir_fd" in kw and removing else ours(path)
            if mine and not (fn is mkdir and os.path.isdir(path)):  # a mkdir that fails changes nothing
                count += 1
                if count == target:
                    os._exit(137)
            return fn(*a, **kw)

        return step

    for name in ("replace", "rename", "unlink", "remove", "rmdir", "mkdir"):  # rmtree looks them up on os
        setattr(os, name, watched(getattr(os, name)))
    rmtree = shutil.rmtree

    def tracked_rmtree(path, *a, **kw):
        removing.append(os.fspath(path))
        try:
            return rmtree(path, *a, **kw)
        finally:
            removing.pop()

    shutil.rmtree = tracked_rmtree
    atexit.register(lambda: print(f"changes: {count}", file=sys.stderr))
    from nnkit.cli import main as nnkit

    nnkit(args, prog_name="nnkit")


if __name__ == "__main__":
    main()
