"""The figures a run's report shows, each with a title and a caption
(:func:`collect`): the run's figures (:func:`nnkit.report.figures.figures`), the
spurious fraction against each swept numeric key, and the landscape survey's
``RUN/figures/landscape-*.png``. A figure file older than the run's tables is drawn
afresh."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures

#: the resolution figures are drawn at (that of the figures in a run folder)
DPI = 120


@dataclass
class Shown:
    """A figure of the report: ``path``, its file in ``RUN/figures/``; ``title`` (also
    its alt text) and ``caption``; ``figure``, the matplotlib figure to draw it from,
    or None when the file is up to date; ``section``, ``run`` or ``landscape``."""

    path: Path
    title: str
    caption: str
    figure: object = None
    section: str = "run"

    def png(self) -> bytes:
        """The figure as PNG bytes: the file, or drawn afresh when it is stale."""
        if self.figure is None:
            return self.path.read_bytes()
        buffer = io.BytesIO()
        self.figure.savefig(buffer, dpi=DPI, format="png")
        return buffer.getvalue()


#: figure kind (its file name up to the first dot or dash) -> title, caption
CAPTIONS = {
    "final_loss": (
        "Final loss of every init",
        ("The training loss where each init stopped, on a log axis, stacked by how training ended: converged "
         "(gradient norm at most train.grad_tol), target (loss target reached), max_steps (stopped by the step "
         "limit) or diverged."),
    ),
    "training": (
        "Training curves",
        "The loss against the step for up to 50 inits of each point, on log axes, coloured by how each init ended.",
    ),
    "minima": (
        "Where the inits ended, by loss level",
        ("One marker per loss level of the distinct minima (minima of one loss, often images of each other under "
         "a symmetry of the data): the fraction of inits that reached it, with its 95% Wilson interval; blue "
         "global, red spurious, squares degenerate minima; labels count the distinct minima at a level."),
    ),
    "spectra": (
        "Hessian spectra",
        ("The sorted Hessian eigenvalues at the five most frequent minima of each point, on a symmetric log axis "
         "(zero and negative eigenvalues show)."),
    ),
    "spurious": (
        "Spurious minima against {key}",
        ("Left: the fraction of inits at spurious minima against the swept {key}, with its 95% Wilson interval. "
         "Right: the number of distinct spurious minima (modulo the network's symmetries; dashed, modulo the "
         "problem's where the analysis had one)."),
    ),
    "barriers": (
        "Barriers between the minima",
        ("The loss along the straight line between pairs of minima, the second aligned onto the first by the "
         "network's symmetries, drawn above the lower end; on the right, where the paths tool ran, along the "
         "relaxed nudged elastic bands, whose highest points are the transition states."),
    ),
    "disconnectivity": (
        "Disconnectivity graph",
        ("The minima as leaves at their loss, joined at the level of the lowest transition state that connects "
         "them: how high an init must climb to get from one minimum to another."),
    ),
    "slice": ("A slice of the loss", "The loss on a plane through the parameter space: {plane}."),
    "trajectory": (
        "A training path",
        ("One init's training path, retrained, projected onto its two principal components, over the loss on that "
         "plane: from the circle (start) to the star (end)."),
    ),
    "density": (
        "Hessian spectral density",
        ("The density of the Hessian's eigenvalues at the most frequent minimum by stochastic Lanczos quadrature, "
         "beside the exact eigenvalues where the network is small enough."),
    ),
}
#: ``landscape.slice`` -> the plane its slice lies in
PLANES = {
    "random": "two filter-normalised random directions around the most frequent minimum",
    "hessian": "the Hessian's two softest eigenvectors at the most frequent minimum",
    "minima": "the plane through the three most frequent minima",
}
#: the landscape figures in the order the report shows them
LANDSCAPE = ("barriers", "disconnectivity", "slice", "trajectory", "density")


def collect(run, landscape_settings=()) -> list[Shown]:
    """Every figure of ``run`` the report shows, in order: the run's figures, the
    spurious fraction against each swept numeric key, and the survey's figures
    (``landscape_settings``: the survey's settings per point, which name the plane of
    each slice). Nothing is written."""
    folder = run.folder
    tables = (folder.meta_file, folder.runs_file, folder.history_file, folder.minima_file, folder.analysis_file)
    newest = max(f.stat().st_mtime for f in tables if f.is_file())

    def shown(name, figure, key=None):
        path = folder.figures / name
        fresh = path.is_file() and path.stat().st_mtime >= newest
        title, caption = (text.format(key=key) for text in CAPTIONS[re.split(r"[.-]", name)[0]])
        return Shown(path, title, caption, None if fresh else figure)

    drawn = figures.figures(run)
    out = [shown(name, fig) for name, fig in drawn.items() if fig is not None and name != "spurious.png"]
    keys, default = swept_numbers(run)
    for key in keys:  # the one figures.figures draws goes under the pipeline's name
        if key == default and drawn.get("spurious.png") is not None:
            out.append(shown("spurious.png", drawn["spurious.png"], key))
        else:
            name = f"spurious-{re.sub(r'[^A-Za-z0-9_.]', '_', key)}.png"
            out.append(shown(name, figures.spurious_against([run], key), key))
    if run.has_landscape:
        out += _landscape(run, list(landscape_settings) or [{}])
    return out


def swept_numbers(run) -> tuple[list[str], str | None]:
    """The swept keys whose values are numbers, finite and not all equal, in sweep
    order (none before the analysis), and the key
    :func:`~nnkit.report.figures.spurious_against` draws against by default (the first
    numeric one, or None)."""
    if run.minima is None or run.points < 2:
        return [], None
    table = run.landing()
    numeric = [k for k in run.sweep_keys if pd.api.types.is_numeric_dtype(table[k])]
    shown = [k for k in numeric if np.isfinite(table[k].astype(float)).all() and table[k].nunique() > 1]
    return shown, (numeric[0] if numeric else None)


def _landscape(run, settings: list[dict]) -> list[Shown]:
    found = []
    for path in run.folder.figures.glob("landscape-*.png"):
        match = re.fullmatch(r"landscape-([a-z_]+?)(?:-point-(\d+))?\.png", path.name)
        if match is not None:
            kind, point = match.group(1), int(match.group(2) or 0)
            found.append((point, LANDSCAPE.index(kind) if kind in LANDSCAPE else len(LANDSCAPE), kind, path))
    out = []
    for point, _, kind, path in sorted(found):
        plane = PLANES.get(settings[min(point, len(settings) - 1)].get("slice", "random"), "two directions")
        title, caption = CAPTIONS.get(kind, (f"Landscape: {kind}", "A figure of the landscape survey."))
        if run.points > 1:
            title += f" ({figures.point_title(run, point)})"
        out.append(Shown(path, title, caption.format(plane=plane), section="landscape"))
    return out
