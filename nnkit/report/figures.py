"""Figures of a run, built with matplotlib's object API: every function returns a
:class:`matplotlib.figure.Figure` and never touches pyplot, so a notebook's figures and
backend are left alone. Given ``ax=`` (an Axes of the caller's), a function draws one
sweep point into it (``point=``, or the run's only one) and returns ``ax.figure``;
without, it makes a figure with one panel per sweep point. Writing files is the
pipeline's job (:func:`nnkit.pipeline.write_figures`).

``run`` is anything with the attributes of :class:`nnkit.runs.Run` (``runs``,
``history``, ``minima``, ``sweep_keys``, ``name``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..landscape.minima import wilson

STATUS_COLOURS = {
    "converged": "tab:blue",
    "target": "tab:green",
    "max_steps": "tab:orange",
    "diverged": "tab:red",
}
#: panels per row in a figure of several sweep points
COLUMNS = 3


def final_loss(run, point=None, ax=None):
    """Histogram of the final loss of every init on a log axis, stacked by status."""
    runs = run.runs
    finite = runs.loc[np.isfinite(runs["loss"]) & (runs["loss"] > 0), "loss"]
    low, high = (finite.min(), finite.max()) if len(finite) else (1e-16, 1.0)
    bins = np.geomspace(low / 1.5, high * 1.5, 60)

    def draw(ax, p):
        group = runs[runs["point"] == p]
        stacks, labels, colours = [], [], []
        for status, colour in STATUS_COLOURS.items():
            losses = group.loc[group["status"] == status, "loss"]
            losses = losses[np.isfinite(losses)].clip(lower=bins[0])
            if len(losses):
                stacks.append(losses.to_numpy())
                labels.append(f"{status} ({len(losses)})")
                colours.append(colour)
        if stacks:
            ax.hist(stacks, bins=bins, stacked=True, label=labels, color=colours)
            ax.legend(fontsize=7)
        ax.set_xscale("log")
        _log_ticks(ax.xaxis)
        ax.set_xlabel("final loss" + (f" ({low_note})" if low_note else ""), fontsize=8)
        ax.set_ylabel("inits", fontsize=8)

    low_note = f"{bins[0]:.2g} and below drawn at {bins[0]:.2g}" if (runs["loss"] < bins[0]).any() else ""
    return _per_point(run, runs, point, ax, draw, f"{run.name}: final loss of every init")


def training_curves(run, point=None, ax=None, per_point: int = 50):
    """Loss against step for up to ``per_point`` inits of each point, coloured by how
    they ended; None when the run kept no history (``train.history = 0``)."""
    history = run.history
    if history is None:
        return None
    status = run.runs.set_index(["point", "init"])["status"]

    def draw(ax, p):
        group = history[history["point"] == p]
        seen = set()
        for init in group["init"].unique()[:per_point]:
            curve = group[group["init"] == init]
            ended = status.get((p, init))
            ax.plot(curve["step"].clip(lower=0.5), curve["loss"], color=STATUS_COLOURS.get(ended, "grey"),
                    alpha=0.4, lw=0.8)  # fmt: skip
            seen.add(ended)
        _status_legend(ax, [s for s in STATUS_COLOURS if s in seen])
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax.xaxis)
        _log_ticks(ax.yaxis)
        ax.set_xlabel("step (0 drawn at 0.5)", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)

    title = f"{run.name}: training curves (up to {per_point} inits per point)"
    return _per_point(run, history, point, ax, draw, title)


def minima_map(run, point=None, ax=None):
    """The loss levels of the distinct minima (minima of one loss, often images of each
    other under a symmetry of the data, form one level): the fraction of inits that
    reached each level, with its 95% Wilson interval, against the level's loss; each
    point is labelled with the number of distinct minima at that level. None before
    the analysis or when no init reached a minimum."""
    minima = run.minima
    if minima is None or minima.empty:
        return None
    levels = _levels(minima)
    inits = run.runs.groupby("point").size()
    every = levels["loss"].to_numpy()  # one loss axis for all panels

    def draw(ax, p):
        m = levels[levels["point"] == p]
        total = int(inits.get(p, m["count"].sum()))
        low, high = wilson(m["count"].to_numpy(), total)
        fraction = m["count"].to_numpy() / total
        err = np.clip(np.vstack([fraction - low, high - fraction]), 0, None)
        for spurious, colour, label in ((False, "tab:blue", "global"), (True, "tab:red", "spurious")):
            for degenerate, marker in ((False, "o"), (True, "s")):
                sel = ((m["spurious"] == spurious) & (m["degenerate"] == degenerate)).to_numpy()
                if sel.any():
                    ax.errorbar(m["loss"].to_numpy()[sel], fraction[sel], yerr=err[:, sel], fmt=marker,
                                color=colour, ms=5, capsize=2,
                                label=label + (" (degenerate)" if degenerate else ""))  # fmt: skip
        for x, y, n in zip(m["loss"], fraction, m["minima"]):
            if n > 1:
                ax.annotate(f"{n} minima", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6)
        _loss_axis(ax, every)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("loss of the level", fontsize=8)
        ax.set_ylabel("fraction of inits (95% interval)", fontsize=8)
        ax.legend(fontsize=7)

    return _per_point(run, minima, point, ax, draw, f"{run.name}: where the inits ended, by loss level")


def spectra(run, point=None, ax=None, top: int = 5):
    """Sorted Hessian eigenvalues of the ``top`` most frequent minima of each point;
    None before the analysis or when no init reached a minimum."""
    minima = run.minima
    if minima is None or minima.empty:
        return None

    def draw(ax, p):
        m = minima[minima["point"] == p].sort_values("count", ascending=False).head(top)
        for _, row in m.iterrows():
            eig = np.sort(np.asarray(row["eigenvalues"], dtype=float))
            ax.plot(np.arange(1, eig.size + 1), eig, marker=".", lw=0.8,
                    label=f"#{row['minimum']}: loss {row['loss']:.3g}, {row['count']} inits")  # fmt: skip
        ax.set_yscale("symlog", linthresh=1e-8)
        ax.set_xlabel("eigenvalue rank", fontsize=8)
        ax.set_ylabel("Hessian eigenvalue", fontsize=8)
        ax.legend(fontsize=6)

    title = f"{run.name}: Hessian spectra\nof the {top} most frequent minima"
    return _per_point(run, minima, point, ax, draw, title)


#: file name -> figure function, in the order the pipeline writes them
FIGURES = {
    "final_loss.png": final_loss,
    "training.png": training_curves,
    "minima.png": minima_map,
    "spectra.png": spectra,
}


def spurious_against(runs, key=None, labels=None):
    """The fraction of inits at spurious minima against the sweep key ``key`` (default:
    the first numeric one), with its 95% Wilson interval, one curve per run of
    ``runs`` (a run or a list; ``labels`` name the curves, default the runs' names);
    beside it the count of distinct spurious minima (modulo the network's symmetries,
    and, where the analysis had ``problem_symmetry``, modulo the problem's, dashed).
    None when no run was analysed or none sweeps a numeric key."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    from .tables import landing

    runs = [runs] if not isinstance(runs, (list, tuple)) else list(runs)
    tables = []
    for run in runs:
        if run.minima is None:
            continue
        table = landing(run.runs, run.minima, run.sweep_keys)
        numeric = [k for k in run.sweep_keys if pd.api.types.is_numeric_dtype(table[k])]
        chosen = key if key is not None else (numeric[0] if numeric else None)
        if chosen is None or chosen not in numeric:
            continue
        tables.append((run, table.sort_values(chosen), chosen))
    if not tables:
        return None
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    frac, count = fig.subplots(1, 2)
    names = labels or [run.name for run, _, _ in tables]
    for (run, table, chosen), name in zip(tables, names):
        x = table[chosen].to_numpy(dtype=float)
        y = table["spurious_fraction"].to_numpy()
        err = np.vstack([y - table["spurious_low"].to_numpy(), table["spurious_high"].to_numpy() - y])
        line = frac.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=name)
        colour = line[0].get_color()
        count.plot(x, table["spurious_minima"], marker="o", ms=3, color=colour, label=f"{name}: modulo the network")
        if "spurious_orbits" in table:
            count.plot(x, table["spurious_orbits"], marker="s", ms=3, ls="--", color=colour,
                       label=f"{name}: modulo the problem")  # fmt: skip
    frac.set_xlabel(tables[0][2], fontsize=8)
    frac.set_ylabel("fraction of inits at spurious minima (95% interval)", fontsize=8)
    frac.set_ylim(bottom=0)
    count.set_xlabel(tables[0][2], fontsize=8)
    count.set_ylabel("distinct spurious minima", fontsize=8)
    count.set_yscale("symlog", linthresh=1)
    count.yaxis.set_major_formatter(ScalarFormatter())
    for ax in (frac, count):
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.suptitle("spurious minima against " + tables[0][2], fontsize=10)
    return fig


def figures(run) -> dict:
    """Every figure of ``run`` by file name; None for those that do not apply (no
    history, no analysis, no minima)."""
    out = {name: draw(run) for name, draw in FIGURES.items()}
    out["spurious.png"] = spurious_against(run) if len(run.sweep_keys) and run.points > 1 else None
    return out


# -- helpers --------------------------------------------------------------------------


def _per_point(run, table, point, ax, draw, title):
    """``draw(ax, p)`` for the sweep point ``point`` into ``ax``, or for every point of
    ``table`` into a grid of panels of a new figure."""
    points = sorted(table["point"].unique()) if point is None else [point]
    if ax is not None:
        if len(points) != 1:
            raise ValueError(f"the run has {len(points)} sweep points: with ax=, say which to draw (point=...)")
        draw(ax, points[0])
        ax.set_title(point_title(run, points[0]), fontsize=8)
        return ax.figure
    from matplotlib.figure import Figure

    cols = min(COLUMNS, len(points))
    rows = -(-len(points) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for panel, p in zip(axes.flat, points):
        draw(panel, p)
        panel.set_title(point_title(run, p), fontsize=8)
        panel.tick_params(which="both", labelsize=7)
    for panel in axes.flat[len(points):]:
        panel.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return fig


def point_title(run, p) -> str:
    """``point p: key = value, ...`` (keys without their section)."""
    runs = run.runs
    row = runs[runs["point"] == p]
    values = ", ".join(f"{key.split('.')[-1]} = {row[key].iloc[0]}" for key in run.sweep_keys if len(row))
    return f"point {p}" + (f": {values}" if values else "")


def _levels(minima):
    """One row per sweep point and loss level: its mean loss, count of inits, number of
    distinct minima, and whether it is spurious and holds a degenerate minimum."""
    frame = minima.assign(degenerate=minima["kind"] == "degenerate minimum")
    return (frame.groupby(["point", "level"], sort=True)
            .agg(loss=("loss", "mean"), count=("count", "sum"), minima=("minimum", "size"),
                 spurious=("spurious", "all"), degenerate=("degenerate", "any"))
            .reset_index())  # fmt: skip


def _loss_axis(ax, losses):
    """An axis for the loss ``losses`` of every level: linear from 0, or symmetric-log
    when the positive losses span more than a factor 30, so that each level stays apart
    from the others (and a run whose minima all lie at 0 gets an axis from 0 to 1)."""
    top = float(np.abs(losses).max()) if losses.size else 0.0
    if not top > 1e-12:
        ax.set_xlim(-0.05, 1.0)
        return
    positive = losses[losses > 1e-9 * top]
    if positive.size and positive.max() / positive.min() > 30:
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
        ax.set_xlim(-0.05 * float(positive.min()), 3 * top)
    else:
        ax.set_xlim(-0.05 * top, 1.2 * top)


def _log_ticks(axis, most: int = 6):
    """At most ``most`` labelled decades on a log axis and, when it spans less than a
    factor 30, labels at 2 and 5 times a power of ten between them: labels never run
    into each other."""
    from matplotlib.ticker import Formatter, LogLocator

    class MinorLabels(Formatter):
        def __call__(self, x, pos=None):
            low, high = self.axis.get_view_interval()
            if not (x > 0 and low > 0 and high / low < 30):
                return ""
            exponent = int(np.floor(np.log10(x) + 1e-9))
            mantissa = round(x / 10.0**exponent, 6)
            return f"${mantissa:g}\\times10^{{{exponent}}}$" if mantissa in (2, 5) else ""

    axis.set_major_locator(LogLocator(numticks=most))
    axis.set_minor_formatter(MinorLabels())


def _status_legend(ax, statuses):
    from matplotlib.lines import Line2D

    if statuses:
        handles = [Line2D([], [], color=STATUS_COLOURS[s], lw=1.5) for s in statuses]
        ax.legend(handles, statuses, fontsize=7, title="ended", title_fontsize=7)
