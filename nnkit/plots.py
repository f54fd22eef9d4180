"""Figures of a run, written under ``<run>/figures/``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STATUS_COLOURS = {
    "converged": "tab:blue",
    "target": "tab:green",
    "max_steps": "tab:orange",
    "diverged": "tab:red",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_histogram(run, path) -> Path:
    """Final loss of every init on a log axis, stacked by status, one panel per point."""
    plt = _pyplot()
    runs = run.runs
    points = sorted(runs["point"].unique())
    fig, axes = plt.subplots(len(points), 1, figsize=(7, 2.6 * len(points)), squeeze=False)
    finite = runs.loc[np.isfinite(runs["loss"]) & (runs["loss"] > 0), "loss"]
    low, high = (finite.min(), finite.max()) if len(finite) else (1e-16, 1.0)
    bins = np.geomspace(low / 1.5, high * 1.5, 60)
    for ax, p in zip(axes[:, 0], points):
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
            ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_ylabel("inits")
        ax.set_title(_point_title(run, group, p), fontsize=9)
    axes[-1, 0].set_xlabel("final loss")
    return _save(fig, path)


def training_curves(run, path, per_point: int = 50) -> Path | None:
    """Loss against step for up to ``per_point`` inits of each point (needs history)."""
    history = run.history
    if history is None:
        return None
    plt = _pyplot()
    points = sorted(history["point"].unique())
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 3.6), squeeze=False)
    status = run.runs.set_index(["point", "init"])["status"]
    for ax, p in zip(axes[0], points):
        group = history[history["point"] == p]
        for init in group["init"].unique()[:per_point]:
            curve = group[group["init"] == init]
            colour = STATUS_COLOURS.get(status.get((p, init)), "grey")
            ax.plot(curve["step"].clip(lower=0.5), curve["loss"], color=colour, alpha=0.4, lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step (0 drawn at 0.5)")
        ax.set_ylabel("loss")
        ax.set_title(_point_title(run, run.runs[run.runs["point"] == p], p), fontsize=9)
    return _save(fig, path)


def plot_run(run) -> list[Path]:
    """Every figure of ``run``; returns the files written."""
    out = run.path / "figures"
    made = [loss_histogram(run, out / "final_loss.png"), training_curves(run, out / "training.png")]
    from .analysis import load_minima

    made += minima_figures(run, load_minima(run.path))
    return [p for p in made if p is not None]


def minima_figures(run, minima) -> list[Path]:
    """``figures/minima.png`` (every minimum: fraction of inits against loss, with 95%
    intervals) and ``figures/spectra.png`` (Hessian spectra of the most frequent)."""
    out = run.path / "figures"
    if minima is None or minima.empty:  # no minima (now): no stale figures of earlier ones
        for name in ("minima.png", "spectra.png"):
            (out / name).unlink(missing_ok=True)
        return []
    return [_minima_map(run, minima, out / "minima.png"), _spectra(run, minima, out / "spectra.png")]


def _panels(plt, count, width=3.6, height=3.0, columns=4):
    """A grid of ``count`` panels, at most ``columns`` wide; unused ones hidden."""
    cols = min(columns, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def _minima_map(run, minima, path, floor=1e-16):
    plt = _pyplot()
    points = sorted(minima["point"].unique())
    fig, axes = _panels(plt, len(points))
    for ax, p in zip(axes, points):
        m = minima[minima["point"] == p]
        for spurious, colour, label in ((False, "tab:blue", "global"), (True, "tab:red", "spurious")):
            sel = m[m["spurious"] == spurious]
            if sel.empty:
                continue
            err = np.clip(np.vstack([sel["fraction"] - sel["fraction_low"], sel["fraction_high"] - sel["fraction"]]), 0, None)
            degenerate = sel["kind"] == "degenerate minimum"
            for mask, marker in ((~degenerate, "o"), (degenerate, "s")):
                if mask.any():
                    ax.errorbar(sel["loss"][mask].clip(lower=floor), sel["fraction"][mask],
                                yerr=err[:, mask.to_numpy()], fmt=marker, color=colour, ms=5,
                                capsize=2, label=f"{label}{' (degenerate)' if marker == 's' else ''}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(f"loss (below {floor:g} drawn at it)", fontsize=8)
        ax.set_ylabel("fraction of inits (95% interval)", fontsize=8)
        ax.set_title(_point_title(run, run.runs[run.runs["point"] == p], p, short=True), fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"{run.meta['experiment']}: distinct minima", fontsize=10)
    return _save(fig, path)


def _spectra(run, minima, path, top=5):
    plt = _pyplot()
    points = sorted(minima["point"].unique())
    fig, axes = _panels(plt, len(points))
    for ax, p in zip(axes, points):
        m = minima[minima["point"] == p].sort_values("count", ascending=False).head(top)
        for _, row in m.iterrows():
            eig = np.sort(np.asarray(row["eigenvalues"], dtype=float))
            ax.plot(np.arange(1, eig.size + 1), eig, marker=".", lw=0.8,
                    label=f"#{row['minimum']}: loss {row['loss']:.3g}, {row['count']} inits")  # fmt: skip
        ax.set_yscale("symlog", linthresh=1e-8)
        ax.set_xlabel("eigenvalue rank", fontsize=8)
        ax.set_ylabel("Hessian eigenvalue", fontsize=8)
        ax.set_title(_point_title(run, run.runs[run.runs["point"] == p], p, short=True), fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(f"{run.meta['experiment']}: Hessian spectra of the {top} most frequent minima", fontsize=10)
    return _save(fig, path)


def _point_title(run, group, p, short=False):
    """``experiment, point p: key = value, ...`` (``short``: without the experiment,
    keys without their section)."""
    name = (lambda key: key.split(".")[-1]) if short else (lambda key: key)
    values = ", ".join(f"{name(c)} = {group[c].iloc[0]}" for c in run.sweep_keys)
    head = f"point {p}" if short else f"{run.meta['experiment']}, point {p}"
    return head + (f": {values}" if values else "")


def _save(fig, path) -> Path:
    from .storage import atomic_path

    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip("."))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
