"""Which distinct minima the runs reached, how often, how good: the analysis of a batch
of final points of one model on one objective.

For every init: polished and classified by the exact Hessian's spectrum
(:mod:`.critical`), and a canonical form modulo the network's symmetries
(:mod:`.symmetry`). Converged minima are then grouped: two are one minimum when their
losses and canonical forms agree within the tolerances of :class:`AnalysisConfig`
(the ``[analysis]`` table). Greedy grouping in order of loss: each point joins
the first group whose representative (its first, lowest-loss member) is close enough,
else starts a group; a tight tolerance relative to the spread of distinct minima makes
the order immaterial.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..core import validate
from ..errors import ConfigError
from ..objective.hessian import MEMORY_BUDGET, jacobian_bytes
from . import problem_symmetry, symmetry
from .critical import certify

MINIMA_KINDS = ("strict minimum", "degenerate minimum")


@dataclass(frozen=True)
class AnalysisConfig:
    """The ``[analysis]`` table: mapping the minima after training (``enabled``;
    ``nnkit minima RUN`` redoes it).

    ``descend``: first carry each final point on downhill with damped Newton steps
    (:mod:`nnkit.landscape.descent`) until its gradient norm is at most
    ``descend_tol`` (at most ``descend_steps``), for runs that stopped far from a
    critical point; polishing's radius is then measured from where descent ended.

    ``polish``: drive each final point's gradient norm down to ``grad_tol`` with
    Levenberg-Marquardt steps on the gradient norm (at most ``polish_steps``;
    :mod:`nnkit.landscape.polishing`); points that do not get there, or get there
    only by moving more than ``polish_radius`` (relative to ``max(1, |theta|)``), are
    "not converged". Eigenvalues of the Hessian within ``eig_tol`` times the largest one in
    magnitude count as zero. Two converged minima are one when their losses differ by
    at most ``loss_tol`` (relative to ``max(1, |loss|)``) and their canonical forms
    (modulo the network's symmetries) by at most ``distance_tol`` (relative to
    ``max(1, |theta|)``). A minimum is global when its loss is within ``global_tol`` of
    ``optimum`` (the known optimal loss, e.g. 0 for a realisable teacher; -inf: unknown,
    the lowest loss found stands for it); the other minima are spurious.

    ``problem_symmetry``: a symmetry group of the problem (not of the network) to count
    minima modulo as well (:mod:`nnkit.landscape.problem_symmetry`): the column
    ``orbit`` of minima.parquet, ``spurious_orbits`` in the landing table.
    """

    #: analyse when ``nnkit run`` finishes (``nnkit minima RUN`` does it any time)
    enabled: bool = False
    #: before polishing, carry each final point on downhill with damped saddle-free
    #: Newton steps (exact Hessian) to a gradient norm of ``descend_tol``: for runs that
    #: stopped far from a minimum
    descend: bool = False
    #: the gradient norm at which descent stops
    descend_tol: float = 1e-8
    #: the most descent steps per init
    descend_steps: int = 200
    #: polish each final point before classifying it
    polish: bool = True
    #: the gradient norm a point must reach to count as a critical point
    grad_tol: float = 1e-10
    #: polishing steps per init, at most
    polish_steps: int = 100
    #: a point that polishing moves further than this (relative to
    #: ``max(1, norm(theta))``) is "not converged": the critical point it reached is not
    #: the one training approached
    polish_radius: float = 0.05
    #: Hessian eigenvalues within this times the largest in magnitude count as zero
    eig_tol: float = 1e-7
    #: two minima are one only if their losses differ by at most this (relative to
    #: ``max(1, abs(loss))``)
    loss_tol: float = 1e-8
    #: ... and, for strict minima, their canonical forms by at most this (relative to
    #: ``max(1, norm(theta))``)
    distance_tol: float = 1e-4
    #: a minimum within this of ``optimum`` (relative to ``max(1, abs(optimum))``) is
    #: global
    global_tol: float = 1e-6
    #: the known optimal loss (0 for a realisable teacher); ``-inf``: unknown, the
    #: lowest minimum found stands for it
    optimum: float = -math.inf
    #: also count minima modulo a symmetry group of the problem: ``teacher_permutations``
    #: (the population loss against an orthonormal teacher with equal output weights);
    #: adds ``orbit`` to minima.parquet and ``spurious_orbits`` to the landing table
    problem_symmetry: Literal["none", "teacher_permutations"] = "none"

    def check(self):
        validate.check(
            self, "analysis", grad_tol="> 0", polish_steps=">= 0", descend_tol="> 0", descend_steps=">= 0",
            polish_radius="> 0", eig_tol=">= 0", loss_tol=">= 0", distance_tol=">= 0", global_tol=">= 0",
        )  # fmt: skip
        if self.optimum == math.inf:
            raise ConfigError("analysis.optimum = inf is not allowed (a number, or -inf for unknown)")


def wilson(count, total, level: float = 0.95):
    """Wilson score interval ``(low, high)`` of the fraction ``count / total``."""
    from scipy import stats  # here, not at the top: import nnkit stays light

    count, total = np.asarray(count, dtype=float), np.asarray(total, dtype=float)
    z = stats.norm.ppf(0.5 + level / 2)
    p = count / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total**2)) / (1 + z * z / total)
    # exact at the ends (the formula leaves a rounding residue there)
    low = np.where(count == 0, 0.0, np.clip(centre - half, 0, 1))
    high = np.where(count == total, 1.0, np.clip(centre + half, 0, 1))
    return low, high


def same_loss(a, b, cfg) -> bool:
    """Whether losses ``a`` and ``b`` are one within ``cfg.loss_tol`` (relative to
    ``max(1, |b|)``)."""
    return abs(a - b) <= cfg.loss_tol * max(1.0, abs(b))


def group(model, theta, loss, is_minimum, cfg, degenerate=None) -> np.ndarray:
    """Minimum id of every init (-1 for points that are not converged minima), ids
    numbered from the lowest loss up.

    Strict minima are one when their losses and canonical forms agree. A degenerate
    minimum is a set of points (a flat valley: the exact fits of an over-parameterised
    network, say) that inits reach at different places, so degenerate minima are one
    when their losses agree."""
    canon = symmetry.canonical(model, theta)
    flat = np.zeros(theta.shape[0], bool) if degenerate is None else np.asarray(degenerate)
    ids = np.full(theta.shape[0], -1, dtype=np.int64)
    order = np.flatnonzero(is_minimum)[np.argsort(loss[is_minimum], kind="stable")]
    ids[order] = greedy(canon[order], loss[order], flat[order], cfg)
    return ids


def greedy(keys, loss, flat, cfg) -> np.ndarray:
    """Group ids of points in the order given (by loss): each joins the first group
    whose representative (its first member) has the same loss (:func:`same_loss`) and
    a key within ``cfg.distance_tol`` (relative to ``max(1, |key|)``), else starts a
    group; points that are both ``flat`` (degenerate) need only the same loss."""
    ids = np.full(len(loss), -1, dtype=np.int64)
    reps: list[int] = []
    for i in range(len(loss)):
        for gid, r in enumerate(reps):
            scale = max(1.0, float(np.linalg.norm(keys[r])))
            near = (flat[i] and flat[r]) or np.linalg.norm(keys[i] - keys[r]) <= cfg.distance_tol * scale
            if same_loss(loss[i], loss[r], cfg) and near:
                ids[i] = gid
                break
        else:
            ids[i] = len(reps)
            reps.append(i)
    return ids


def table(per_init: pd.DataFrame, ids, eigs, test_loss, cfg, inits) -> pd.DataFrame:
    """One row per distinct minimum (see the README's results section for the columns)."""
    rows = []
    for gid in range(int(ids.max()) + 1 if (ids >= 0).any() else 0):
        members = np.flatnonzero(ids == gid)
        rep = members[np.argmin(per_init["polished_grad_norm"].to_numpy()[members])]
        kinds = per_init["kind"].to_numpy()[members]
        rows.append({
            "minimum": gid,
            "loss": float(per_init["polished_loss"].iloc[rep]),
            "test_loss": float(np.nanmean(test_loss[members])) if np.isfinite(test_loss[members]).any() else np.nan,
            "count": members.size,
            "kind": "degenerate minimum" if (kinds == "degenerate minimum").any() else "strict minimum",
            "index": int(per_init["index"].iloc[rep]),
            "nullity": int(per_init["nullity"].iloc[rep]),
            "eig_min": float(per_init["eig_min"].iloc[rep]),
            "eig_max": float(per_init["eig_max"].iloc[rep]),
            "representative": int(inits[rep]),
            "eigenvalues": eigs[rep].tolist(),
        })  # fmt: skip
    out = pd.DataFrame(rows, columns=[
        "minimum", "loss", "test_loss", "count", "kind", "index", "nullity", "eig_min",
        "eig_max", "representative", "eigenvalues",
    ])  # fmt: skip
    total = len(per_init)
    out.insert(4, "fraction", out["count"] / total)
    low, high = wilson(out["count"].to_numpy(), total)
    out.insert(5, "fraction_low", low)
    out.insert(6, "fraction_high", high)
    # minima of one loss are often images of each other under a symmetry of the data
    # (an orthonormal teacher's unit permutations), which the network's do not cover
    level = np.zeros(len(out), dtype=np.int64)
    for i in range(1, len(out)):  # rows are in order of loss
        level[i] = level[i - 1] + (not same_loss(out["loss"].iloc[i], out["loss"].iloc[i - 1], cfg))
    out.insert(2, "level", level)
    best = cfg.optimum if np.isfinite(cfg.optimum) else out["loss"].min() if len(out) else np.nan
    out["is_global"] = np.abs(out["loss"] - best) <= cfg.global_tol * max(1.0, abs(best))
    out["spurious"] = ~out["is_global"]
    return out


def rows_per_slice(model, n: int, memory_mb: int) -> int:
    """Inits analysed at once: their Hessians and eigenvectors (about six ``(P, P)``
    arrays each, with the ones polishing keeps) must fit in ``memory_mb``, beside the
    Hessian's own intermediates (cache-sized slices, or the R-operator's blocks for
    a network too large for those)."""
    P = model.size
    per_init = 8 * 6 * P * P
    if jacobian_bytes(n, model.layout) > MEMORY_BUDGET:
        per_init += 8 * 4 * n * (sum(model.layout.widths) + 1) * min(P, 64)
    return max(1, memory_mb * 2**20 // per_init)


def analyse(objective, theta, cfg, inits, test_loss=None, slice_rows=None, certifier=certify,
            on_rows=None, seconds=None, orbit_keys=None):  # fmt: skip
    """The whole analysis of one sweep point: ``(theta (R, P) polished, per-init
    DataFrame with the minimum id, minima DataFrame)``; ``slice_rows`` inits at a time.

    ``objective``: a :class:`nnkit.objective.Objective` on the host (float64);
    ``test_loss(theta) -> (R,)`` gives the test loss of the polished points, if any.
    ``certifier`` polishes and classifies the points, as
    :func:`~nnkit.landscape.critical.certify` does here (a cluster does it on its
    workers), calling ``on_rows(k)`` as ``k`` more are done; ``seconds`` (a dict)
    gains the time of each stage. ``orbit_keys(theta) -> (R, m)`` gives the invariants
    under the problem's symmetries (:func:`.problem_symmetry.invariants`), which add
    the column ``orbit`` to the minima.
    """
    model = objective.model
    seconds = {} if seconds is None else seconds
    theta, per_init, eigs = certifier(objective, theta, cfg, slice_rows, on_rows, seconds)
    started = time.perf_counter()
    loss = per_init["polished_loss"].to_numpy()
    kinds = per_init["kind"]
    ids = group(model, theta, loss, kinds.isin(MINIMA_KINDS).to_numpy(), cfg,
                (kinds == "degenerate minimum").to_numpy())  # fmt: skip
    per_init["minimum"] = ids
    seconds["group"] = seconds.get("group", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    test = np.full(theta.shape[0], np.nan) if test_loss is None else np.asarray(test_loss(theta))
    per_init["polished_test_loss"] = test
    seconds["test_loss"] = seconds.get("test_loss", 0.0) + time.perf_counter() - started
    minima = table(per_init, ids, eigs, test, cfg, np.asarray(inits))
    if orbit_keys is not None:
        where = {int(init): row for row, init in enumerate(np.asarray(inits))}
        rows = [where[int(rep)] for rep in minima["representative"]]
        keys = orbit_keys(theta[rows]) if rows else np.zeros((0, 1))
        orbit = problem_symmetry.orbits(keys, minima["loss"].to_numpy(),
                                        (minima["kind"] == "degenerate minimum").to_numpy(), cfg)  # fmt: skip
        minima.insert(3, "orbit", orbit)
    return theta, per_init, minima
