"""The landscape between the minima of one sweep point, tool by tool (the
``[landscape]`` table; ``nnkit landscape RUN``): interpolation barriers
(:mod:`.barriers`), bands, transition states and the minima found on the way
(:mod:`.connect`), the disconnectivity graph (:mod:`.disconnectivity`, with the
PATHSAMPLE files of :mod:`.pathsample`), slices (:mod:`.slices`), training
trajectories (:mod:`.trajectory`) and spectral densities (:mod:`.spectral`).

:func:`survey` is a function of the objective, the minima of the analysis and their
parameters: it returns tables and figures, and writes nothing (the pipeline does).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ..core import validate
from ..errors import ConfigError, UserError
from . import barriers, batches, connect, disconnectivity, pathsample, slices, spectral, trajectory
from .eigensteps import eigh

TOOLS = ("barriers", "paths", "graph", "slices", "trajectories", "density")
#: the tables of ``landscape/``, one Parquet file each
TABLES = ("barriers", "transition_states", "paths", "minima", "slices", "trajectories", "density")
Tool = Literal["barriers", "paths", "graph", "slices", "trajectories", "density"]


@dataclass(frozen=True)
class LandscapeConfig:
    """The ``[landscape]`` table: what ``nnkit landscape RUN`` computes between the
    minima of an analysed run (``enabled``: also at the end of ``nnkit run``).

    ``tools``: any of ``barriers`` (straight lines between aligned minima), ``paths``
    (nudged elastic bands, transition states, minima found on the way), ``graph``
    (the disconnectivity graph and the PATHSAMPLE files; needs ``paths``), ``slices``,
    ``trajectories`` (the PCA of training paths, retrained from their inits) and
    ``density`` (the Hessian's spectral density at the minima, by stochastic Lanczos
    quadrature).

    The ``max_minima`` most frequent minima of each point take part; the pairs are
    each minimum with its ``neighbours`` nearest (``pairs = "nearest"``, aligned
    distance) or all pairs (``"all"``), at most ``max_pairs``, nearest first. Lines
    have ``line_points`` points. Bands have ``images`` images (``spring`` relative to
    the curvature), relaxed to a largest force of ``neb_tol`` in at most
    ``neb_steps`` steps; transition states are refined to a gradient norm of
    ``ts_tol`` in at most ``ts_steps`` steps; minima found on the way are connected in
    up to ``rounds`` rounds.

    The graph has ``levels`` levels from ``top`` down (inf: just above the highest
    transition state) ``spacing`` apart (0: evenly down to the lowest minimum), keeps
    the minima with at least ``min_connections`` transition states, in the component of
    minimum ``reference`` (-1: the lowest).

    The slice is ``slice_points`` x ``slice_points`` around minimum ``slice_minimum``
    (-1: the most frequent) along two filter-normalised random directions
    (``slice = "random"``) or the Hessian's two softest eigenvectors (``"hessian"``),
    from ``-slice_span`` to ``slice_span`` (times the point's norm for eigenvectors),
    or the plane through the three most frequent minima (``"minima"``). Trajectories
    retrain ``trajectory_inits`` inits recording ``trajectory_points`` points each.
    Densities take ``density_steps`` Lanczos steps and ``density_probes`` probes at
    each of the ``density_minima`` most frequent minima. ``seed`` draws the random
    directions and probes.
    """

    #: survey when ``nnkit run`` has analysed (needs ``analysis.enabled``;
    #: ``nnkit landscape RUN`` does it any time)
    enabled: bool = False
    #: the tools to run (``graph`` needs ``paths``)
    tools: tuple[Tool, ...] = ("barriers", "paths", "graph", "slices")
    #: the most frequent minima of each point that take part
    max_minima: int = 30
    #: ``nearest``: each minimum with its ``neighbours`` nearest (aligned distance);
    #: ``all``: every pair
    pairs: Literal["nearest", "all"] = "nearest"
    #: nearest neighbours per minimum
    neighbours: int = 2
    #: the most pairs, nearest first
    max_pairs: int = 100
    #: points on each straight line
    line_points: int = 33
    # the settings of the bands and transition states have their defaults in one place
    #: images per band, the two minima included
    images: int = connect.PathSettings.images
    #: spring constant, relative to the curvature of the straight band (largest Hessian
    #: eigenvalue by power iteration)
    spring: float = connect.PathSettings.spring
    #: a band is converged when its largest force is at most this
    neb_tol: float = connect.PathSettings.neb_tol
    #: the most FIRE steps of a band at its full ``images`` (the coarse band before it
    #: takes at most half as many)
    neb_steps: int = connect.PathSettings.neb_steps
    #: the gradient norm a transition state must reach
    ts_tol: float = connect.PathSettings.ts_tol
    #: the most eigenvector-following steps per transition state
    ts_steps: int = connect.PathSettings.ts_steps
    #: rounds of bands: the minima found in one are connected to the ends of their band
    #: in the next
    rounds: int = connect.PathSettings.rounds
    #: energy levels of the disconnectivity graph
    levels: int = 20
    #: the highest level (``inf``: just above the highest transition state)
    top: float = math.inf
    #: the spacing of the levels (0: evenly down to the lowest minimum)
    spacing: float = 0.0
    #: the graph keeps the minima with at least this many transition states
    min_connections: int = 1
    #: the graph is the component of this minimum id (-1: the lowest)
    reference: int = -1
    #: ``random`` (filter-normalised directions), ``hessian`` (the two softest
    #: eigenvectors, times ``max(1, norm(theta))``) or ``minima`` (the plane through the
    #: three most frequent; ``slice_span`` and ``slice_minimum`` do not apply)
    slice: Literal["random", "hessian", "minima"] = "random"
    #: the minimum id the slice is centred on (-1: the most frequent)
    slice_minimum: int = -1
    #: grid points per axis of the slice
    slice_points: int = 41
    #: the slice's grid runs from ``-slice_span`` to ``slice_span``
    slice_span: float = 1.0
    #: inits trained again for their paths (the first of the point)
    trajectory_inits: int = 4
    #: parameter snapshots per path (log-spaced steps, and the end)
    trajectory_points: int = 50
    #: the most frequent minima whose spectral density is estimated
    density_minima: int = 3
    #: Lanczos steps of stochastic Lanczos quadrature
    density_steps: int = 30
    #: random probes of stochastic Lanczos quadrature
    density_probes: int = 10
    #: draws the random directions and probes
    seed: int = 0

    def check(self):
        validate.check(
            self, "landscape", max_minima=">= 2", neighbours=">= 1", max_pairs=">= 1", line_points=">= 3",
            images=">= 3", spring="> 0", neb_tol="> 0", neb_steps=">= 0", ts_tol="> 0", ts_steps=">= 0",
            rounds=">= 1", levels=">= 1", spacing=">= 0", min_connections=">= 0", slice_points=">= 3",
            slice_span="> 0", trajectory_inits=">= 1", trajectory_points=">= 3", density_minima=">= 1",
            density_steps=">= 2", density_probes=">= 1", seed=">= 0",
        )  # fmt: skip
        if not self.tools:
            raise ConfigError(f"landscape.tools is empty (name at least one of: {', '.join(TOOLS)})")
        if "graph" in self.tools and "paths" not in self.tools:
            raise ConfigError("landscape.tools: 'graph' needs 'paths' (the transition states it is drawn from)")
        if len(set(self.tools)) != len(self.tools):
            raise ConfigError(f"landscape.tools = {list(self.tools)} names a tool twice")

    def path_settings(self, analysis, rows: int = 0) -> connect.PathSettings:
        return connect.PathSettings(rows=rows,
            images=self.images, spring=self.spring, neb_tol=self.neb_tol, neb_steps=self.neb_steps,
            ts_tol=self.ts_tol, ts_steps=self.ts_steps, min_tol=analysis.grad_tol, eig_tol=analysis.eig_tol,
            loss_tol=analysis.loss_tol,
            distance_tol=analysis.distance_tol, rounds=self.rounds,
        )  # fmt: skip


@dataclass
class Survey:
    """What :func:`survey` found for one point: ``tables`` by name (``barriers``,
    ``transition_states``, ``paths``, ``minima``, ``slices``, ``trajectories``,
    ``density``), ``figures`` by file stem, ``pathsample`` (the rows of ``min.data``
    and ``ts.data``, or None), the ``seconds`` of each tool and ``notes`` (one line per
    tool that had nothing to work on)."""

    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    pathsample: dict | None = None
    seconds: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def chosen(minima: pd.DataFrame, cfg: LandscapeConfig) -> pd.DataFrame:
    """The minima that take part: the ``cfg.max_minima`` most frequent (ties: lower
    loss first), in order of loss."""
    top = minima.sort_values(["count", "loss"], ascending=[False, True], kind="stable").head(cfg.max_minima)
    return top.sort_values("loss", kind="stable").reset_index(drop=True)


def survey(objective, minima: pd.DataFrame, theta, cfg: LandscapeConfig, analysis, *, retrain=None,
           on_tool=None, on_note=None, next_id=0, hessian_rows=0) -> Survey:  # fmt: skip
    """Every tool of ``cfg.tools`` for the ``minima`` of one point (the rows of the
    analysis' minima table that :func:`chosen` picked, columns ``minimum``, ``loss``,
    ``count``, ``kind``) with parameters ``theta (N, P)`` (host float64, row for row);
    minima found on the way are numbered from ``next_id`` (one above every id of the
    point's analysis, taken or not); exact Hessians are taken ``hessian_rows`` points
    at a time (0: all at once).

    ``analysis`` is the point's :class:`~nnkit.landscape.minima.AnalysisConfig` (its
    tolerances tell minima apart); ``retrain(count, points) -> (inits (R,), paths (R,
    T, P))`` retrains inits recording their paths (for ``trajectories``);
    ``on_tool(name)`` is called as each tool is done, ``on_note(text)`` as a long one
    moves on (progress). The tools run in the order of :data:`TOOLS`; minimum ids that
    the settings name (``reference``, ``slice_minimum``) are checked first."""
    out = Survey()
    theta = np.asarray(theta, dtype=np.float64)
    minima = minima.reset_index(drop=True)  # rows are positions into theta from here on
    ids = minima["minimum"].to_numpy()
    if minima.empty:
        out.notes.append("no certified minima: nothing to survey")
        return out
    _check_ids(minima, cfg)  # before any tool has spent its time
    for tool in (t for t in TOOLS if t in cfg.tools):  # paths before graph, whatever order they are given in
        started = time.perf_counter()
        with np.errstate(all="ignore"):
            _TOOLS[tool](out, objective, minima, theta, ids, cfg, analysis, retrain, on_note or (lambda text: None),
                         (next_id, hessian_rows))  # fmt: skip
        out.seconds[tool] = round(time.perf_counter() - started, 3)
        if on_tool is not None:
            on_tool(tool)
    return out


def _barriers(out, objective, minima, theta, ids, cfg, analysis, retrain, note, numbering):
    pair = barriers.pairs(objective.model, theta, cfg.pairs, cfg.neighbours, cfg.max_pairs)
    out.tables["pairs"] = pair
    if not len(pair):
        out.notes.append("barriers: fewer than two minima, no pairs")
        return
    table = barriers.barriers(objective, theta, ids, pair, cfg.line_points)
    out.tables["barriers"] = table
    out.figures["barriers"] = _profiles(table)


def _paths(out, objective, minima, theta, ids, cfg, analysis, retrain, note, numbering):
    pair = out.tables.get("pairs")
    if pair is None:
        pair = barriers.pairs(objective.model, theta, cfg.pairs, cfg.neighbours, cfg.max_pairs)
    if not len(pair):
        out.notes.append("paths: fewer than two minima, no bands")
        return
    done = [0]

    def on_round(bands):
        done[0] += 1
        note(f"paths: round {done[0]} of at most {cfg.rounds} done ({bands} bands)")

    note(f"paths: {len(pair)} bands of {cfg.images} images")
    found = connect.connect(objective, theta, minima["loss"].to_numpy(), ids, minima["kind"].to_numpy(), pair,
                            cfg.path_settings(analysis, numbering[1]), on_band=on_round, next_id=numbering[0])  # fmt: skip
    out.tables["transition_states"] = found.transition_states
    out.tables["paths"] = found.paths
    out.tables["minima"] = found.minima
    out.tables["theta"] = found.theta
    if "barriers" in out.tables:
        out.figures["barriers"] = _profiles(out.tables["barriers"], found.paths)


def _graph(out, objective, minima, theta, ids, cfg, analysis, retrain, note, numbering):
    ts = out.tables.get("transition_states")
    if ts is None:
        note("graph: no bands, so no transition states to draw it from")
        out.notes.append("graph: no transition states (no bands)")
        return
    lm = out.tables["minima"]
    joined = ts[(ts["minimum_a"] >= 0) & (ts["minimum_b"] >= 0)]
    # PATHSAMPLE's database: every minimum, and the transition states whose both sides are known minima
    e = eigh(objective.hessian(out.tables["theta"]), vectors=False)
    row = {m: k for k, m in enumerate(lm["minimum"])}
    ts_eigs = np.array(joined["eigenvalues"].tolist()) if len(joined) else np.zeros((0, e.shape[1]))
    out.pathsample = {
        "min": (lm["loss"].to_numpy(), pathsample.log_product(np.nan_to_num(e, nan=0.0), analysis.eig_tol)),
        "ts": (joined["loss"].to_numpy(), np.array([row[m] for m in joined["minimum_a"]], dtype=np.int64),
               np.array([row[m] for m in joined["minimum_b"]], dtype=np.int64),
               pathsample.log_product(ts_eigs, analysis.eig_tol) if len(joined) else np.zeros(0)),
    }  # fmt: skip
    between = joined[joined["minimum_a"] != joined["minimum_b"]]
    if between.empty:
        out.notes.append("graph: no transition state joins two different minima")
        return
    reference = int(lm["minimum"].iloc[int(np.argmin(lm["loss"].to_numpy()))]) if cfg.reference < 0 else cfg.reference
    try:
        tree = disconnectivity.from_tables(
            lm, between, reference=reference, min_connections=cfg.min_connections,
            first=None if math.isinf(cfg.top) else cfg.top, spacing=cfg.spacing or None, count=cfg.levels,
        )  # fmt: skip
    except UserError as exc:  # the bands are not lost for a graph that cannot be drawn
        out.notes.append(f"graph: not drawn from minimum {reference}: {exc}")
        return
    fig = disconnectivity.figure(tree, labels=lm["minimum"].tolist())
    fig.axes[0].set_title(f"disconnectivity graph of {len(tree.leaves())} minima around minimum {reference} "
                          f"(leaves: minimum ids)", fontsize=9)  # fmt: skip
    out.figures["disconnectivity"] = fig


def _slices(out, objective, minima, theta, ids, cfg, analysis, retrain, note, numbering):
    rng = np.random.default_rng(cfg.seed)
    grid = np.linspace(-cfg.slice_span, cfg.slice_span, cfg.slice_points)
    at = _row(minima, cfg.slice_minimum)
    origin, points, labels = theta[at], None, None
    if cfg.slice == "minima":
        if len(theta) < 3:
            out.notes.append("slices: the plane through minima needs three; none drawn")
            return
        top = _frequent(minima)[:3]
        aligned = np.concatenate([theta[top[:1]], barriers.align_pairs(objective.model, theta, [[top[0], top[1]],
                                                                                         [top[0], top[2]]])[1]])  # fmt: skip
        plane = slices.through(aligned)
        origin, (d1, d2), points = plane.origin, plane.directions, plane.coords
        labels = [str(ids[k]) for k in top]
        grid = np.linspace(-0.5, 1.5, cfg.slice_points)
    elif cfg.slice == "hessian":
        d1, d2 = slices.hessian_directions(objective, origin, which=(0, 1))
        scale = max(1.0, float(np.linalg.norm(origin)))
        d1, d2 = d1 * scale, d2 * scale
    else:
        d1, d2 = slices.filter_normalised(objective.model, np.stack([origin, origin]), rng)
    losses = slices.slice_2d(objective, origin, d1, d2, grid, grid)
    frame = slices.slice_frame(grid, grid, losses)
    frame.insert(0, "minimum", ids[at])
    out.tables["slices"] = frame
    title = f"loss around minimum {ids[at]} ({cfg.slice} directions)" if cfg.slice != "minima" else \
        "loss on the plane through three minima"  # fmt: skip
    out.figures["slice"] = slices.contour(grid, grid, losses, points=points, point_labels=labels, title=title)


def _trajectories(out, objective, minima, theta, ids, cfg, analysis, retrain, note, numbering):
    if retrain is None:
        out.notes.append("trajectories: no way to retrain inits here")
        return
    inits, paths = retrain(cfg.trajectory_inits, cfg.trajectory_points)
    rows = []
    for init, path in zip(inits, paths):
        keep = np.isfinite(path).all(axis=1)
        fit = trajectory.pca(path[keep])
        loss = batches.values(objective, path[keep])
        for t, (c, value) in enumerate(zip(fit.coords, loss)):
            rows.append({"init": int(init), "point_index": t, "loss": value, "pc1": c[0], "pc2": c[1],
                         "explained_1": fit.explained[0], "explained_2": fit.explained[1]})  # fmt: skip
    out.tables["trajectories"] = pd.DataFrame(rows)
    fit = trajectory.pca(paths[0][np.isfinite(paths[0]).all(axis=1)])
    plane = trajectory.plane_losses(objective, fit.centre, fit.components, fit.coords, size=cfg.slice_points)
    out.figures["trajectory"] = trajectory.figure(plane.alpha, plane.beta, plane.losses, fit.coords, fit.explained,
                                                  title=f"training path of init {int(inits[0])}")  # fmt: skip


def _density(out, objective, minima, theta, ids, cfg, analysis, retrain, note, numbering):
    top = _frequent(minima)[: cfg.density_minima]
    at = theta[top]
    found = spectral.slq(objective, at, steps=cfg.density_steps, probes=cfg.density_probes,
                         rng=np.random.default_rng(cfg.seed))  # fmt: skip
    rows = [{"minimum": ids[k], "node": n, "weight": w} for r, k in enumerate(top)
            for n, w in zip(found.nodes[r], found.weights[r])]  # fmt: skip
    out.tables["density"] = pd.DataFrame(rows)
    exact = None
    if theta.shape[1] <= 2000:  # small enough to draw the exact spectrum beside it
        exact = eigh(objective.hessian(at[:1]), vectors=False)[0]
    first = spectral.SpectralDensity(found.nodes[:1], found.weights[:1], found.size)
    fig = spectral.figure(first, exact=exact)
    fig.axes[0].set_title(f"Hessian spectral density at minimum {ids[top[0]]}\n(stochastic Lanczos quadrature: "
                          f"{cfg.density_steps} steps, {cfg.density_probes} probes)", fontsize=8)  # fmt: skip
    out.figures["density"] = fig


_TOOLS = {
    "barriers": _barriers, "paths": _paths, "graph": _graph, "slices": _slices,
    "trajectories": _trajectories, "density": _density,
}  # fmt: skip


def _frequent(minima) -> np.ndarray:
    """Row positions of ``minima``, most frequent first (ties: lower loss first)."""
    return np.lexsort((minima["loss"].to_numpy(), -minima["count"].to_numpy()))


def _row(minima, minimum: int) -> int:
    """The row of minimum id ``minimum`` (-1: the most frequent)."""
    if minimum < 0:
        return int(_frequent(minima)[0])
    return int(np.flatnonzero(minima["minimum"].to_numpy() == minimum)[0])


def _check_ids(minima, cfg) -> None:
    """:class:`ConfigError` for a minimum id of the settings that is not among ``minima``."""
    taken = set(minima["minimum"].tolist())
    named = [("slice_minimum", cfg.slice_minimum, "slices" in cfg.tools and cfg.slice != "minima"),
             ("reference", cfg.reference, "graph" in cfg.tools)]  # fmt: skip
    for key, value, used in named:
        if used and value >= 0 and value not in taken:
            raise ConfigError(f"landscape.{key} = {value} is not among the minima taken "
                              f"({', '.join(map(str, sorted(taken)))}; see landscape.max_minima)")  # fmt: skip


def _profiles(table: pd.DataFrame, paths: pd.DataFrame | None = None):
    """The loss along every straight line (left) and along every relaxed band (right,
    against the band's arc length as a fraction), each drawn relative to its lower end."""
    from matplotlib.figure import Figure

    panels = 1 if paths is None or paths.empty else 2
    fig = Figure(figsize=(4.6 * panels, 3.4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for profile in table["profile"]:
        p = np.asarray(profile)
        axes[0].plot(np.linspace(0, 1, p.size), p - min(p[0], p[-1]), lw=0.8, alpha=0.6)
    axes[0].set_xlabel("t (straight line, aligned)", fontsize=8)
    axes[0].set_ylabel("loss above the lower end", fontsize=8)
    axes[0].set_title(f"{len(table)} straight lines", fontsize=9)
    if panels == 2:
        for _, band in paths.groupby("band"):
            s = band["arc_length"].to_numpy()
            e = band["loss"].to_numpy()
            axes[1].plot(s / max(s[-1], 1e-300), e - min(e[0], e[-1]), lw=0.8, alpha=0.6, marker=".", ms=2)
        axes[1].set_xlabel("arc length (fraction, relaxed band)", fontsize=8)
        axes[1].set_title(f"{paths['band'].nunique()} bands", fontsize=9)
        top = max(ax.get_ylim()[1] for ax in axes)
        for ax in axes:
            ax.set_ylim(top=top)
    for ax in axes:
        ax.tick_params(labelsize=7)
    return fig
