"""How to make a run again, for its report: the commands that train, analyse and
survey it as it was (:func:`commands`), from its experiment file (its resolved config
as TOML: :func:`nnkit.report.formats.toml`)."""

from __future__ import annotations

import dataclasses
import shlex

from .. import backends
from ..study import config
from . import formats
from .words import settings


def commands(run) -> list[tuple[str, str]]:
    """The commands that make ``run`` again from its experiment file
    ``experiment.toml``, each with what it does: ``nnkit run``, then ``nnkit minima
    RUN`` and ``nnkit landscape RUN`` where the run was analysed or surveyed apart
    from ``nnkit run``, or with settings other than its experiment file's (given as
    ``--set``)."""
    exp = run.experiment
    trained_on = str(run.meta.get("backend", ""))
    named = trained_on in backends.names() and trained_on != exp.run.backend
    words = ["nnkit", "run", "experiment.toml", *(["--backend", trained_on] if named else [])]
    does = "trains every init"
    if named:
        does += f" on {trained_on}, the backend this run trained on (for the same last digits)"
    if exp.analysis.enabled:
        does += ", then maps the minima" + (" and surveys the landscape" if exp.landscape.enabled else "")
    out = [(shlex.join(words), does)]
    if run.analysed:
        out += _stages(run, exp, [e for _, e in config.expand_sweep(exp)])
    if len(out) > 1:
        out[0] = (out[0][0], out[0][1] + "; it prints the run folder, RUN below")
    return out


def _stages(run, exp, points) -> list[tuple[str, str]]:
    """The commands after ``nnkit run`` that analyse and survey the run as it was."""
    out = []
    analysis = _changes(points, "analysis", settings(run.folder.analysis_file))
    again = not exp.analysis.enabled or bool(analysis)
    if again:
        with_them = " with the settings this run was analysed with" if analysis else ""
        out.append((_stage("minima", analysis), "maps the minima" + with_them))
    if run.has_landscape:
        landscape = _changes(points, "landscape", settings(run.folder.landscape_file))
        if again or not exp.landscape.enabled or landscape:
            with_them = " with the settings of this run's survey" if landscape else ""
            out.append((_stage("landscape", landscape), "surveys the landscape between the minima" + with_them))
    return out


def _stage(command: str, changes: list[str]) -> str:
    words = ["nnkit", command, "RUN"]
    for item in changes:
        words += ["--set", item]
    return shlex.join(words)


def _changes(points, section: str, used: list[dict]) -> list[str]:
    """``section.KEY=VALUE`` for every setting the run used that differs from its
    experiment file's on some point (and is the same on every point)."""
    wanted = [dataclasses.asdict(getattr(exp, section)) for exp in points]
    used = used if len(used) == len(wanted) else [used[0]] * len(wanted)
    out = []
    for key in wanted[0]:
        if key == "enabled" or any(key not in u for u in used):
            continue
        values = [u[key] for u in used]
        if all(v == values[0] for v in values) and any(_plain(v) != _plain(w[key]) for v, w in zip(values, wanted)):
            out.append(f"{section}.{key}={formats.value(values[0])}")
    return out


def _plain(value):
    return list(value) if isinstance(value, tuple) else value
