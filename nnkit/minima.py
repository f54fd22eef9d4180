"""Which distinct minima the runs reached, how often, how good: the analysis of a batch
of final points of one model on one objective.

For every init: polish (:mod:`nnkit.polish`), the exact Hessian and its spectrum
(:mod:`nnkit.hessian`), the kind of critical point, and a canonical form modulo the
network's symmetries (:mod:`nnkit.symmetry`). Converged minima are then grouped: two are
one minimum when their losses and canonical forms agree within the tolerances of
:class:`nnkit.config.AnalysisConfig`. Greedy grouping in order of loss: each point joins
the first group whose representative (its first, lowest-loss member) is close enough,
else starts a group; a tight tolerance relative to the spread of distinct minima makes
the order immaterial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from . import hessian as hess
from . import symmetry
from .polish import polish

MINIMA_KINDS = ("strict minimum", "degenerate minimum")


@dataclass
class Landscape:
    """The objective of one model as a function of the parameters alone:
    ``value_and_grad(theta (m, P))`` and ``hessian(theta (m, P)) -> (m, P, P)``."""

    value_and_grad: object
    hessian: object


def wilson(count, total, level: float = 0.95):
    """Wilson score interval ``(low, high)`` of the fraction ``count / total``."""
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


def certify(landscape: Landscape, theta, cfg, slice_rows=None):
    """Polish (if ``cfg.polish``) and classify every row of ``theta (R, P)``.

    Returns ``(theta (R, P), per-init DataFrame, eigenvalues (R, P))``; the frame has
    ``polished_loss``, ``polished_grad_norm``, ``polish_steps``, ``polish_move`` (the
    distance polishing moved the point, relative to ``max(1, |theta|)``), ``kind``,
    ``index``, ``nullity``, ``eig_min``, ``eig_max``. A point that polishing moved by
    more than ``cfg.polish_radius`` is "not converged": the critical point it reached is
    not the one training was approaching.
    """
    start = np.asarray(theta, dtype=np.float64)
    step = slice_rows or max(1, start.shape[0])
    if start.shape[0] > step:  # a slice of inits at a time keeps the Hessians in memory
        parts = [certify(landscape, start[a : a + step], cfg) for a in range(0, start.shape[0], step)]
        return (np.concatenate([p[0] for p in parts]),
                pd.concat([p[1] for p in parts], ignore_index=True),
                np.concatenate([p[2] for p in parts]))  # fmt: skip
    if cfg.polish and cfg.polish_steps > 0:
        res = polish(landscape.value_and_grad, landscape.hessian, start, cfg.grad_tol, cfg.polish_steps)
        theta, loss, norm, steps = res.theta, res.loss, res.grad_norm, res.steps
    else:
        theta = start
        loss, grad = landscape.value_and_grad(theta)
        norm, steps = np.linalg.norm(grad, axis=1), np.zeros(theta.shape[0], dtype=np.int64)
    with np.errstate(invalid="ignore"):
        moved = np.linalg.norm(theta - start, axis=1) / np.maximum(1.0, np.linalg.norm(start, axis=1))
    finite = np.isfinite(theta).all(axis=1) & np.isfinite(loss)
    eigs = np.full(theta.shape, np.nan)
    if finite.any():
        eigs[finite] = hess.spectrum(landscape.hessian(theta[finite]))
    # a critical point far from where training stopped is not where training went
    certified = finite & (moved <= cfg.polish_radius)
    kinds = hess.classify(eigs, np.where(certified, norm, np.inf), cfg.grad_tol, cfg.eig_tol)
    frame = pd.DataFrame({
        "polished_loss": loss, "polished_grad_norm": norm, "polish_steps": steps,
        "polish_move": moved,
        "kind": kinds["kind"], "index": kinds["index"], "nullity": kinds["nullity"],
        "eig_min": kinds["eig_min"], "eig_max": kinds["eig_max"],
    })  # fmt: skip
    return theta, frame, eigs


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
    reps: list[int] = []
    for i in np.flatnonzero(is_minimum)[np.argsort(loss[is_minimum], kind="stable")]:
        for gid, r in enumerate(reps):
            close_loss = same_loss(loss[i], loss[r], cfg)
            scale = max(1.0, float(np.linalg.norm(canon[r])))
            near = flat[i] and flat[r] or np.linalg.norm(canon[i] - canon[r]) <= cfg.distance_tol * scale
            if close_loss and near:
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


def analyse(landscape: Landscape, model, theta, cfg, inits, test_loss=None, slice_rows=None):
    """The whole analysis of one sweep point: ``(theta (R, P) polished, per-init
    DataFrame with the minimum id, minima DataFrame)``; ``slice_rows`` inits at a time."""
    theta, per_init, eigs = certify(landscape, theta, cfg, slice_rows)
    loss = per_init["polished_loss"].to_numpy()
    kinds = per_init["kind"]
    ids = group(model, theta, loss, kinds.isin(MINIMA_KINDS).to_numpy(), cfg,
                (kinds == "degenerate minimum").to_numpy())  # fmt: skip
    per_init["minimum"] = ids
    test = np.full(theta.shape[0], np.nan) if test_loss is None else np.asarray(test_loss(theta))
    per_init["polished_test_loss"] = test
    return theta, per_init, table(per_init, ids, eigs, test, cfg, np.asarray(inits))
