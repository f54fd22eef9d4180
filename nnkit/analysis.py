"""The analysis stage of a run: map the minima of every sweep point of a finished run.

Reads the run's final parameters, polishes and classifies every init and groups the
minima (:mod:`nnkit.minima`), then writes

* ``minima.parquet``: one row per distinct minimum and sweep point;
* ``runs.parquet``: gains per init ``minimum`` (id, -1 for no converged minimum),
  ``kind``, ``index``, ``nullity``, ``eig_min``, ``eig_max``, ``polished_loss``,
  ``polished_grad_norm``, ``polished_test_loss``, ``polish_steps``, ``polish_move``;
* ``params/point-NNN-polished.npy``: the polished points;
* ``analysis.json``: the settings used (one set per point when a sweep varies them)
  and the time taken;
* ``figures/``: minima by frequency and loss, Hessian spectra of the most frequent.

``nnkit run`` calls it when the experiment's ``[analysis]`` has ``enabled = true``;
``nnkit minima RUN --set analysis.KEY=VALUE`` redoes it with other settings.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, storage
from . import hessian as hess
from .backends.reference import ReferenceKernel
from .errors import UserError
from .minima import Landscape, analyse

#: the per-init columns the analysis adds to runs.parquet
ANALYSIS_COLUMNS = (
    "minimum", "kind", "index", "nullity", "eig_min", "eig_max", "polished_loss",
    "polished_grad_norm", "polished_test_loss", "polish_steps", "polish_move",
)  # fmt: skip


def landscape_for(exp: config.Experiment, model, ds, y, y_test):
    """``(Landscape, test_loss(theta))`` of one sweep point, in float64 on the CPU: the
    sample objective, or the exact population objective when the data ask for it. The
    test loss is the data term on the test samples either way."""
    objective = exp.objective
    kernel = ReferenceKernel(model, objective)

    def test_loss(theta):
        if ds.X_test.shape[0] == 0:
            return np.full(theta.shape[0], np.nan)
        return objective.data_loss(np, kernel.predict(theta, ds.X_test), y_test)[0]

    if getattr(exp.data, "population", False):
        from .population import population_for

        pop = population_for(exp, model, ds)
        return Landscape(pop.value_and_grad, pop.hessian), test_loss
    return Landscape(
        lambda th: kernel.value_and_grad(th, ds.X, y),
        lambda th: hess.hessian(model, objective, th, ds.X, y),
    ), test_loss


def rows_per_slice(model, n: int, memory_mb: int) -> int:
    """Inits analysed at once: their Hessians, eigenvectors and the Hessian's own
    intermediates must fit in ``memory_mb``."""
    P = model.size
    per_init = 8 * (4 * P * P + 4 * n * (sum(model.layout.widths) + 1) * min(P, 64))
    return max(1, memory_mb * 2**20 // per_init)


def analyse_run(run, overrides=(), echo=None):
    """Map the minima of the finished run ``run`` (a :class:`nnkit.results.Run`) with
    its ``[analysis]`` settings changed by ``overrides`` (``analysis.KEY=VALUE``); swept
    ``analysis.*`` keys apply to their own points. Returns the minima table."""
    from .runner import _problems

    raw = copy.deepcopy(run.config)
    for item in overrides:
        if not item.split("=", 1)[0].strip().startswith("analysis."):
            raise UserError(f"--set {item}: only analysis.* settings can change on a finished run")
        config.apply_override(raw, item)
    exp = config.from_dict(raw)
    points = config.expand_sweep(exp)
    problems = _problems(points)
    runs = run.runs.drop(columns=[c for c in ANALYSIS_COLUMNS if c in run.runs.columns])
    started = time.perf_counter()
    per_point, tables, settings = [], [], []
    with np.errstate(all="ignore"):  # diverged inits are expected, and flagged
        for p, ((_, point_exp), (ds, y, y_test)) in enumerate(zip(points, problems)):
            rows = runs.index[runs["point"] == p]
            model = point_exp.build_model(ds.d)
            cfg = point_exp.analysis
            land, test_loss = landscape_for(point_exp, model, ds, y, y_test)
            t0 = time.perf_counter()
            theta, per_init, minima = analyse(
                land, model, run.params(p), cfg, runs.loc[rows, "init"].to_numpy(), test_loss,
                rows_per_slice(model, ds.n, point_exp.run.memory_mb),
            )  # fmt: skip
            per_init.index = rows
            per_point.append(per_init)
            storage.write_npy(run.path / "params" / f"point-{p:03d}-polished.npy", theta)
            for i, key in enumerate(run.sweep_keys):
                minima.insert(i, key, runs.loc[rows[0], key])
            minima.insert(0, "point", p)
            tables.append(minima)
            settings.append(dataclasses.asdict(cfg))
            if echo is not None:
                echo(f"point {p}: {len(minima)} minima from {len(rows)} inits "
                     f"({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    runs = runs.join(pd.concat(per_point)[list(ANALYSIS_COLUMNS)])
    minima = pd.concat(tables, ignore_index=True)
    storage.write_parquet(run.path / "minima.parquet", minima)
    storage.write_parquet(run.path / "runs.parquet", runs)
    storage.write_json(run.path / "analysis.json", {
        "settings": settings[0] if all(s == settings[0] for s in settings) else settings,
        "seconds": round(time.perf_counter() - started, 3),
    })  # fmt: skip
    run.__dict__.pop("runs", None)  # the cached table is stale now
    from .plots import plot_run

    plot_run(run)  # the final-loss histogram, the minima and their spectra among them
    return minima


def landing(runs: pd.DataFrame, minima: pd.DataFrame, sweep_keys) -> pd.DataFrame:
    """Per sweep point, where the inits ended: at a global minimum, at a spurious one,
    at a saddle, or not converged; the fraction at spurious minima with its 95% Wilson
    interval, and how many distinct spurious minima (and loss levels) there are."""
    from .minima import wilson

    spurious = minima.set_index(["point", "minimum"])["spurious"]
    rows = []
    for p, group in runs.groupby("point", sort=True):
        ids = group["minimum"].to_numpy()
        is_spurious = np.array([bool(spurious.get((p, i), False)) for i in ids])
        at_min = ids >= 0
        found = minima[(minima["point"] == p) & minima["spurious"]]
        low, high = wilson(is_spurious.sum(), len(group))
        rows.append({
            "point": p, **{key: group[key].iloc[0] for key in sweep_keys}, "inits": len(group),
            "global": int((at_min & ~is_spurious).sum()), "spurious": int(is_spurious.sum()),
            "saddle": int((group["kind"] == "saddle").sum()),
            "not_converged": int((group["kind"] == "not converged").sum()),
            "spurious_fraction": is_spurious.mean(), "spurious_low": float(low), "spurious_high": float(high),
            "spurious_minima": len(found), "spurious_levels": found["level"].nunique(),
        })  # fmt: skip
    return pd.DataFrame(rows)


def minima_summary(minima: pd.DataFrame, sweep_keys, top: int = 10) -> pd.DataFrame:
    """The minima table as ``nnkit show`` prints it: per point the ``top`` most frequent."""
    cols = ["point", *sweep_keys, "minimum", "level", "loss", "test_loss", "count", "fraction",
            "fraction_low", "fraction_high", "kind", "nullity", "eig_min", "spurious"]  # fmt: skip
    shown = minima.sort_values(["point", "count"], ascending=[True, False])
    return shown.groupby("point", sort=True).head(top)[[c for c in cols if c in minima.columns]]


def load_minima(path: Path) -> pd.DataFrame | None:
    path = Path(path) / "minima.parquet"
    return pd.read_parquet(path) if path.is_file() else None
